"""What a model saw in training, and which inputs fall outside it.

A tree model does not extrapolate: asked about a 2.5-carat stone after training on stones
below 1 carat, it answers as if the stone weighed 1 carat, with the same confidence. The
answer is not an error (the input is valid), but it deserves a flag. At training time the
feature spec records each numeric feature's observed range (``"seen": [min, max]``, finite
values only) and which categorical features are watched (their vocabulary, ``"categories"``,
is what training saw), for the features watched for drift, and marks the spec with
``"envelope": 1``; an
:class:`Envelope` is those bounds, and :meth:`Envelope.flags` marks, per column, the rows
whose value lies outside them: a number below the training minimum or above the maximum, or
a category the model never saw. Missing values are never flagged (they have rules of their
own).

Serving flags each prediction (the API's ``warnings``, a column of ``predict --explain``);
monitoring reports the share of flagged rows in each check, and a share above
``out_of_range_share`` is a reason to retrain of its own. Models trained before the spec
recorded ranges have no envelope (:meth:`Envelope.of` returns ``None``): nothing is flagged.

Pure numpy; the serving path pays two comparisons per numeric column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Envelope", "OutsideSummary", "observed_ranges", "summarise"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def observed_ranges(columns: Mapping[str, Any]) -> dict[str, list[float] | None]:
    """``[min, max]`` of the finite values of each numeric column (``None``: none finite)."""
    ranges: dict[str, list[float] | None] = {}
    for name, values in columns.items():
        x = np.asarray(values, dtype=np.float64)
        finite = x[np.isfinite(x)]
        ranges[name] = [float(finite.min()), float(finite.max())] if finite.size else None
    return ranges


@dataclass(frozen=True)
class Envelope:
    """The training ranges and vocabularies of one model (see the module docstring)."""

    numeric: tuple[str, ...]
    lo: FloatArray
    hi: FloatArray
    categories: Mapping[str, frozenset[str]]

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> Envelope | None:
        """The envelope recorded in a model's feature spec; ``None`` for a model without one."""
        if not spec.get("envelope"):
            return None
        features = spec.get("features") or ()
        numeric = [f for f in features if f.get("type") != "categorical" and "seen" in f]
        bounds = [f["seen"] or [np.inf, -np.inf] for f in numeric]  # no finite value: all flagged
        return cls(
            tuple(str(f["name"]) for f in numeric),
            np.array([b[0] for b in bounds], dtype=np.float64),
            np.array([b[1] for b in bounds], dtype=np.float64),
            {
                str(f["name"]): frozenset(str(c) for c in f.get("categories") or ())
                for f in features
                if f.get("type") == "categorical" and "seen" in f
            },
        )

    def numeric_flags(self, values: Mapping[str, FloatArray]) -> dict[str, BoolArray]:
        """Rows whose numeric value lies outside the training range, per column with any."""
        out: dict[str, BoolArray] = {}
        for name, lo, hi in zip(self.numeric, self.lo, self.hi, strict=True):
            column = values.get(name)
            if column is None:
                continue
            with np.errstate(invalid="ignore"):
                flagged = (column < lo) | (column > hi)
            if flagged.any():
                out[name] = flagged
        return out

    def bounds_for(self, names: Sequence[str]) -> tuple[FloatArray, FloatArray]:
        """Bounds aligned with ``names`` (unwatched columns get ±inf, so they never flag): built
        once per model, so flagging a request block is two comparisons and no indexing."""
        at = {n: i for i, n in enumerate(self.numeric)}
        lo = np.array([self.lo[at[n]] if n in at else -np.inf for n in names], dtype=np.float64)
        hi = np.array([self.hi[at[n]] if n in at else np.inf for n in names], dtype=np.float64)
        return lo, hi

    @staticmethod
    def matrix_flags(
        names: Sequence[str], matrix: FloatArray, bounds: tuple[FloatArray, FloatArray]
    ) -> dict[str, BoolArray]:
        """Numeric flags for a (rows x names) block, with ``bounds`` from :meth:`bounds_for`."""
        lo, hi = bounds
        flagged = (matrix < lo) | (matrix > hi)  # NaN compares False: missing is never flagged
        if not flagged.any():
            return {}
        return {names[int(j)]: flagged[:, j] for j in np.flatnonzero(flagged.any(axis=0))}

    def flags(self, columns: Mapping[str, Any]) -> dict[str, BoolArray]:
        """Flags for raw columns (numbers, category labels), e.g. rows read from the store."""
        numeric = {n: np.asarray(columns[n], dtype=np.float64) for n in self.numeric if n in columns}
        out = self.numeric_flags(numeric)
        for name, known in self.categories.items():
            if name not in columns:
                continue
            values = columns[name]
            flagged = np.fromiter((_unseen(v, known) for v in values), dtype=bool, count=len(values))
            if flagged.any():
                out[name] = flagged
        return out

    def describe(self, name: str) -> str:
        """What the model saw for ``name``, for a warning: its range or its number of categories."""
        if name in self.categories:
            return f"with a category not seen in training ({len(self.categories[name])} known)"
        if name not in self.numeric:
            return "with a value not seen in training"
        i = self.numeric.index(name)
        if self.lo[i] > self.hi[i]:
            return "with a value where training saw none"
        return f"outside the training range {self.lo[i]:g} to {self.hi[i]:g}"


@dataclass(frozen=True)
class OutsideSummary:
    """How many rows had at least one input outside the envelope, and which columns."""

    rows: int
    flagged: int
    by_column: Mapping[str, int]

    @property
    def share(self) -> float:
        return self.flagged / self.rows if self.rows else 0.0


def summarise(flags: Mapping[str, BoolArray], rows: int) -> OutsideSummary:
    """Count flagged rows (a row with two flagged columns counts once) and each column's rows."""
    if not flags:
        return OutsideSummary(rows, 0, {})
    anywhere = np.logical_or.reduce([np.asarray(m, dtype=bool) for m in flags.values()])
    by_column = {n: int(m.sum()) for n, m in sorted(flags.items(), key=lambda kv: (-int(kv[1].sum()), kv[0]))}
    return OutsideSummary(rows, int(anywhere.sum()), by_column)


def _unseen(value: object, known: frozenset[str]) -> bool:
    """A category label the model never saw; missing values (None, NaN, NA, "") are not."""
    if isinstance(value, str):
        return value != "" and value not in known
    if value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType":
        return False
    return str(value) not in known
