"""An entity key as one piece of text: how the prediction log, monitoring and the audit name a row.

A key of one column is its value as text (``"17"``); a composite key (``id`` and ``year``) joins
its values with ``|`` in the definition's order (``"17|1987"``). Serving, monitoring and SQL
(``CAST(id AS VARCHAR) || '|' || …``) all produce the same text, so a logged prediction finds its
label. Whole-number floats (``17.0`` from JSON) print as integers, as the store holds them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

__all__ = ["KEY_SEPARATOR", "key_text", "key_texts"]

KEY_SEPARATOR = "|"


def _part(value: Any) -> str | None:
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value)
    return None if text in ("", "<NA>", "NaT") else text


def key_text(values: Sequence[Any]) -> str | None:
    """The text of one key (its column values in order); ``None`` when any part is missing."""
    parts = [_part(v) for v in values]
    if any(p is None for p in parts):
        return None
    return KEY_SEPARATOR.join(parts)  # type: ignore[arg-type]


def key_texts(columns: Sequence[Iterable[Any]]) -> list[str | None]:
    """The key text of every row, given the key's columns (each an iterable of values)."""
    return [key_text(row) for row in zip(*columns, strict=True)]
