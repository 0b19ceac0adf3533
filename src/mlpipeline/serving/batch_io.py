"""Files in and out of ``mlpipeline predict``: CSV or JSON lines in, CSV or JSON lines out.

Input is read whole and validated before anything is predicted or written, so a bad row
anywhere rejects the file with every problem listed and leaves no partial output. The
format is taken from the file name (``.csv``; ``.json``, ``.jsonl``, ``.ndjson``) or, for
standard input, from the first character (``{`` or ``[`` means JSON).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlpipeline.errors import DataValidationError, Problem
from mlpipeline.serving.predictor import Prediction

__all__ = [
    "DuplicateKeyError",
    "Format",
    "csv_options",
    "detect_format",
    "frame_columns",
    "json_error",
    "loads_strict",
    "read_requests",
    "render_predictions",
]

Format = Literal["csv", "json"]
_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice: which value was meant cannot be known."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key '{key[:40]}' in a JSON object; send each field once")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return obj


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses duplicate keys (the standard module keeps the last silently)."""
    return json.loads(text, object_pairs_hook=_unique_keys)


def json_error(exc: ValueError | RecursionError) -> str:
    """What is wrong with a JSON text that :func:`loads_strict` refused, in a few words."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "arrays or objects nested too deeply"
    if isinstance(exc, DuplicateKeyError):
        return str(exc)
    # The one other ValueError: int() refuses integers longer than the interpreter's limit.
    return f"a number is too long to read (more than {sys.get_int_max_str_digits()} digits)"


def detect_format(name: str, data: bytes) -> Format:
    lowered = name.lower()
    if lowered.endswith(_JSON_SUFFIXES):
        return "json"
    if lowered.endswith(".csv"):
        return "csv"
    return "json" if data.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] in (b"{", b"[") else "csv"


def _bad(source: str, detail: str, rows: tuple[int, ...] = ()) -> DataValidationError:
    return DataValidationError(
        [Problem("*", "format", detail, rows, len(rows))], source=source, outcome="no prediction made"
    )


def read_requests(data: bytes, fmt: Format, spec: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Columns of the requests in ``data`` (validation happens in the model's input contract).

    CSV, JSON (lines or an array) or Parquet (recognised by its magic bytes, whatever ``fmt``).
    """
    if data[:4] == b"PAR1":
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise _bad(source, f"not a readable Parquet file ({exc.__class__.__name__})") from exc
        frame = frame.astype(object).where(frame.notna(), None)  # nullable types' <NA> as JSON's null
        return {str(c): frame[c].tolist() for c in frame.columns}
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _bad(source, f"not UTF-8 text (byte {exc.start}); save the file as UTF-8") from exc
    if not text.strip():
        raise _bad(source, "the input is empty; give a file with a header and at least one row")
    if fmt == "json":
        return _json_columns(text, source)
    return _csv_columns(text, spec, source)


def _json_columns(text: str, source: str) -> dict[str, Any]:
    stripped = text.lstrip()
    records: list[Any]
    if stripped.startswith("["):
        try:
            records = loads_strict(stripped)
        except (ValueError, RecursionError) as exc:
            raise _bad(source, f"not valid JSON: {json_error(exc)}") from exc
        if not isinstance(records, list):
            raise _bad(source, "expected a JSON array of objects or JSON lines")
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(loads_strict(line))
            except (ValueError, RecursionError) as exc:
                raise _bad(
                    source, f"line {number} is not valid JSON ({json_error(exc)}); write one object per line"
                ) from exc
    if not records:
        raise _bad(source, "no records found")
    not_objects = tuple(i + 1 for i, r in enumerate(records) if not isinstance(r, dict))
    if not_objects:
        raise _bad(source, "each record must be a JSON object", not_objects[:5])
    names: dict[str, None] = {}
    for r in records:
        names.update(dict.fromkeys(r))
    missing = object()
    columns: dict[str, Any] = {}
    for name in names:
        values = [r.get(name, missing) for r in records]
        columns[name] = [None if v is missing else v for v in values]
    return columns


def csv_options(spec: Mapping[str, Any], extra_text: Sequence[str] = ()) -> dict[str, Any]:
    """``pandas.read_csv`` options for request files: categories, keys and ``extra_text``
    columns read as text (a key ``007`` stays ``007``), a trailing comma shifting nothing."""
    text_columns = {f["name"] for f in spec["features"] if f["type"] == "categorical"}
    key = spec.get("key")
    if key:
        text_columns.update([key] if isinstance(key, str) else key)
    sources = dict(spec.get("sources") or {})
    by_source = {v: k for k, v in sources.items()}
    text_columns.update(by_source.get(c, c) for c in list(text_columns))
    text_columns.update(extra_text)
    return {
        "dtype": dict.fromkeys(text_columns, "string"),
        "keep_default_na": True,
        "index_col": False,  # a trailing comma must not shift every value one column left
        "skipinitialspace": True,
    }


def _csv_columns(text: str, spec: Mapping[str, Any], source: str) -> dict[str, Any]:
    try:
        frame = pd.read_csv(io.StringIO(text), **csv_options(spec))
    except (pd.errors.ParserError, ValueError) as exc:
        raise _bad(source, f"not a readable CSV file: {' '.join(str(exc).split())[:300]}") from exc
    if len(frame.columns) == 1 and any(sep in str(frame.columns[0]) for sep in (";", "\t", "|")):
        raise _bad(source, "the header looks separated by something other than commas; use commas")
    return frame_columns(frame, spec)


def frame_columns(frame: pd.DataFrame, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A request frame's columns as the input contract takes them: numbers as float arrays,
    text in a numeric column passed on for the contract to name, missing values as None."""
    numeric = {f["name"] for f in spec["features"] if f["type"] != "categorical"}
    columns: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            columns[str(name)] = series.to_numpy(dtype=np.float64, na_value=np.nan)
        elif name in numeric:
            # Text in a numeric column: keep the numbers, pass the offending text on so the
            # model's input contract names it with its row.
            coerced = pd.to_numeric(series, errors="coerce").tolist()
            columns[str(name)] = [
                c if not _nan(c) else (None if v is pd.NA or _nan(v) or not str(v).strip() else v)
                for v, c in zip(series.tolist(), coerced, strict=True)
            ]
        else:
            columns[str(name)] = [None if v is pd.NA or _nan(v) else v for v in series.tolist()]
    return columns


def _nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _plain(value: Any) -> Any:
    """A kept input value as JSON and CSV write it: numpy scalars as Python, missing as None."""
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer() and abs(value) < 2**53:  # a CSV reader's float for a whole number
            return int(value)
    return value


def render_predictions(
    result: Prediction, fmt: Format, *, explain: bool, keep: Mapping[str, Sequence[Any]] | None = None
) -> str:
    """The predictions as CSV (header + one line per row) or JSON lines, in input order.

    ``keep``: input columns copied to the output beside each prediction (``predict --keep``).
    With ``explain``, each row also names its inputs outside the model's training envelope
    (``outside_training``: columns joined by ``|`` in CSV, a list in JSON; empty when none).
    """
    names = list(result.feature_names)
    contributions = result.contributions if explain else None
    outside = result.outside_by_row() if contributions is not None else None
    classes = [str(c) for c in result.classes] if result.probabilities is not None else []
    # Contribution columns: one per feature, or per class and feature for a multiclass model.
    per_class = contributions is not None and len(classes) > 2
    contribution_names = [f"{c}_{n}" for c in classes for n in [*names, "base"]] if per_class else names
    answers = result.answers
    probabilities = result.probabilities.tolist() if result.probabilities is not None else None
    kept = dict(keep or {})
    if fmt == "json":
        lines = []
        for i, value in enumerate(answers):
            row: dict[str, Any] = {}
            if result.keys is not None:
                row["key"] = result.keys[i]
            for column, values in kept.items():
                row[column] = _plain(values[i])
            row["prediction"] = value
            if probabilities is not None:
                row["probabilities"] = dict(zip(classes, probabilities[i], strict=True))
            row["model_version"] = result.version
            if contributions is not None:
                if per_class:
                    row["contributions"] = dict(
                        zip(contribution_names, contributions[i].tolist(), strict=True)
                    )
                else:
                    row["base_value"] = float(contributions[i, -1])
                    row["contributions"] = dict(zip(names, contributions[i, :-1].tolist(), strict=True))
            if outside is not None:
                row["outside_training"] = outside[i].split("|") if outside[i] else []
            lines.append(json.dumps(row, separators=(",", ":")))
        return "\n".join(lines) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = (["key"] if result.keys is not None else []) + list(kept) + ["prediction"]
    header += [f"probability_{c}" for c in classes] + ["model_version"]
    if contributions is not None:
        if per_class:
            header += [f"contribution_{n}" for n in contribution_names]
        else:
            header += ["base_value"] + [f"contribution_{n}" for n in names]
    if outside is not None:
        header.append("outside_training")
    writer.writerow(header)
    for i, value in enumerate(answers):
        line: list[Any] = [result.keys[i]] if result.keys is not None else []
        line += ["" if _plain(values[i]) is None else _plain(values[i]) for values in kept.values()]
        line.append(repr(value) if isinstance(value, float) else value)
        if probabilities is not None:
            line += [repr(float(p)) for p in probabilities[i]]
        line.append(result.version)
        if contributions is not None:
            row_c = contributions[i]
            if per_class:
                line += [repr(float(c)) for c in row_c]
            else:
                line += [repr(float(row_c[-1]))] + [repr(float(c)) for c in row_c[:-1]]
        if outside is not None:
            line.append(outside[i])
        writer.writerow(line)
    return buffer.getvalue()
