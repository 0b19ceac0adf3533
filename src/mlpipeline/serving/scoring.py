"""The input contract of a served model: request data in, validated feature values out.

Built once per loaded model from the feature spec the model was trained with (see
:mod:`mlpipeline.featuresets.portable`), so a request is judged by the rules the model learned under,
not by whatever the definition file says today. It accepts the three shapes requests come
in (JSON records, MLflow's ``dataframe_split``, and columns of arrays) and checks every
rule at once: missing columns, wrong types, non-finite numbers, values out of range,
fractional integers, missing values where the definition forbids them, and unknown
categories where the categories were declared. Every broken rule is reported in one
:class:`~mlpipeline.errors.DataValidationError` with its column, rule and first rows. Valid
values outside what the model saw in training (a number beyond the training range, a
category it never met) are not errors: they are flagged in :attr:`Inputs.outside`.

Pure numpy and the standard library: one row costs a few microseconds, a million rows a
few vectorised passes.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mlpipeline.errors import DataValidationError, Problem
from mlpipeline.featuresets import portable
from mlpipeline.featuresets.envelope import Envelope
from mlpipeline.featuresets.keys import key_texts

__all__ = ["MAX_ROWS_SHOWN", "InputContract", "Inputs"]

FloatArray = npt.NDArray[np.float64]

#: How many offending row numbers a problem lists.
MAX_ROWS_SHOWN = 5
_ABSENT = object()


@dataclass(frozen=True)
class Inputs:
    """Validated request data: encoded raw feature values and the entity keys, if sent."""

    values: dict[str, FloatArray]
    rows: int
    keys: list[str | None] | None
    ignored: tuple[str, ...] = ()  # unknown columns dropped (the feature set's extra_columns = "ignore")
    # Rows outside the training envelope, per column that has any (see featuresets.envelope).
    outside: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Numeric:
    name: str
    lo: float
    hi: float
    integer: bool
    required: bool


@dataclass(frozen=True)
class _Categorical:
    name: str
    lookup: dict[str, float]
    strict: bool
    fill: str | None
    required: bool


class _Report:
    """Collects problems; row numbers are 1-based positions in the request."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def rows(self, column: str, rule: str, detail: str, index: Sequence[int] | npt.NDArray[Any]) -> None:
        if len(index) == 0:
            return
        idx = np.asarray(index, dtype=np.int64).ravel()
        if idx.size:
            shown = [int(i) + 1 for i in idx[:MAX_ROWS_SHOWN]]
            self.problems.append(Problem(column, rule, f"{idx.size} row(s): {detail}", shown, int(idx.size)))

    def mask(self, column: str, rule: str, detail: str, mask: npt.NDArray[np.bool_]) -> None:
        if mask.any():
            self.rows(column, rule, detail, np.flatnonzero(mask))

    def whole(self, column: str, rule: str, detail: str) -> None:
        self.problems.append(Problem(column, rule, detail))

    def raise_if_any(self) -> None:
        if self.problems:
            raise DataValidationError(self.problems, source=self.source, outcome="no prediction made")


class InputContract:
    """Validates and encodes request data for one model's feature spec."""

    def __init__(self, spec: Mapping[str, Any], *, known: Iterable[str] = ()) -> None:
        """``known``: more columns that are not extra, e.g. those the feature set gained after
        this model was trained (a request may carry them while the old model still serves)."""
        self.spec = spec
        key = spec.get("key")  # one column name, or a composite key's list (older models: a name)
        self.keys: list[str] = [] if key is None else [key] if isinstance(key, str) else [str(k) for k in key]
        # Source names map to the feature set's names; columns the feature set knows besides the
        # features and key (target, times) are accepted; any other follows extra_columns. Models
        # logged before these fields existed ignore unknown columns, as they always did.
        self.sources: dict[str, str] = dict(spec.get("sources") or {})
        self.known = set(self.keys) | set(spec.get("accepted") or ()) | set(known)
        self.refuse_extra = spec.get("extra_columns", "ignore") == "error"
        self.numeric: list[_Numeric] = []
        self.categorical: list[_Categorical] = []
        for f in spec["features"]:
            required = f.get("missing", "error") == "error"
            if f["type"] == "categorical":
                fill = f.get("fill_value") if f.get("missing") == "constant" else None
                self.categorical.append(
                    _Categorical(
                        f["name"],
                        {c: float(i) for i, c in enumerate(f.get("categories") or ())},
                        bool(f.get("strict", False)),
                        None if fill is None else str(fill),
                        required,
                    )
                )
            else:
                lo, hi = f.get("min"), f.get("max")
                self.numeric.append(
                    _Numeric(
                        f["name"],
                        -math.inf if lo is None else float(lo),
                        math.inf if hi is None else float(hi),
                        f["type"] == "integer",
                        required,
                    )
                )
        # Timestamps that derived features read (hour(ordered_at), …): required inputs too.
        self.times: list[str] = [str(n) for n in spec.get("times") or ()]
        self.names = [f["name"] for f in spec["features"]] + self.times
        self.numeric_names = [r.name for r in self.numeric]
        self.name_set = frozenset(self.names)
        self.lo = np.array([r.lo for r in self.numeric], dtype=np.float64)
        self.hi = np.array([r.hi for r in self.numeric], dtype=np.float64)
        biggest = np.finfo(np.float64).max
        self.lo_finite = np.maximum(self.lo, -biggest)
        self.hi_finite = np.minimum(self.hi, biggest)
        self.integer_mask = np.array([r.integer for r in self.numeric], dtype=bool)
        self.any_integer = bool(self.integer_mask.any())
        self.optional_mask = np.array([not r.required for r in self.numeric], dtype=bool)
        self.envelope = Envelope.of(spec)
        self.bounds = self.envelope.bounds_for(self.numeric_names) if self.envelope else None

    # -- the three request shapes ------------------------------------------------------------

    def from_records(self, records: object, *, source: str = "request") -> Inputs:
        """A list of JSON objects (or one object), one per row."""
        if isinstance(records, Mapping):
            records = [records]
        if not isinstance(records, list):
            raise _shape(source, f"expected a list of records (JSON objects), got {_kind(records)}")
        if not records:
            raise _shape(source, "no records: send at least one row")
        if not all(isinstance(r, Mapping) for r in records):
            report = _Report(source)
            bad = [i for i, r in enumerate(records) if not isinstance(r, Mapping)]
            report.rows("*", "record", "each record must be a JSON object of column: value", bad)
            report.raise_if_any()
        present: set[str] = set()
        for r in records:
            present.update(r)
        if self.sources and not present.isdisjoint(self.sources):
            records = [{self.sources.get(k, k): v for k, v in r.items()} for r in records]
            present = {self.sources.get(k, k) for k in present}
        numeric = [[r.get(n, _ABSENT) for n in self.numeric_names] for r in records]
        categorical = {c.name: [r.get(c.name, _ABSENT) for r in records] for c in self.categorical}
        keys = (
            _key_texts([[r.get(k) for r in records] for k in self.keys], self.keys, source)
            if self.keys and set(self.keys) <= present
            else None
        )
        times = {n: [r.get(n) for r in records] for n in self.times if n in present}
        return self._rows(numeric, categorical, keys, len(records), present, source, times)

    def from_split(self, payload: object, *, source: str = "request") -> Inputs:
        """MLflow's ``dataframe_split``: ``{"columns": [...], "data": [[...], ...]}``."""
        if not isinstance(payload, Mapping):
            raise _shape(source, f"dataframe_split must be an object, got {_kind(payload)}")
        names, data = payload.get("columns"), payload.get("data")
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise _shape(source, "dataframe_split.columns must be a list of column names")
        names = [self.sources.get(n, n) for n in names] if self.sources else names
        if len(set(names)) != len(names):
            raise _shape(source, "dataframe_split.columns names a column twice")
        if not isinstance(data, list) or not data:
            raise _shape(source, "dataframe_split.data must be a non-empty list of rows")
        width = len(names)
        if not all(isinstance(row, list) and len(row) == width for row in data):
            report = _Report(source)
            bad = [i for i, row in enumerate(data) if not isinstance(row, list) or len(row) != width]
            report.rows("*", "row", f"each row must be a list of {width} values", bad)
            report.raise_if_any()
        at = {name: i for i, name in enumerate(names)}
        num_at = [at.get(n) for n in self.numeric_names]
        numeric = [[_ABSENT if j is None else row[j] for j in num_at] for row in data]
        categorical = {
            c.name: [row[at[c.name]] for row in data] if c.name in at else [_ABSENT] * len(data)
            for c in self.categorical
        }
        keys = (
            _key_texts([[row[at[k]] for row in data] for k in self.keys], self.keys, source)
            if self.keys and all(k in at for k in self.keys)
            else None
        )
        times = {n: [row[at[n]] for row in data] for n in self.times if n in at}
        return self._rows(numeric, categorical, keys, len(data), set(names), source, times)

    def from_columns(self, columns: Mapping[str, Any], *, source: str = "request") -> Inputs:
        """Columns of equal length: lists or numpy arrays (numeric arrays take a vectorised path)."""
        if not isinstance(columns, Mapping) or not columns:
            raise _shape(source, "expected an object of column name: list of values")
        lengths = {}
        for name, column in columns.items():
            if isinstance(column, (str, bytes, Mapping)) or not hasattr(column, "__len__"):
                raise _shape(source, f"column '{name}' must be a list of values, got {_kind(column)}")
            lengths[name] = len(column)
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k}={v}" for k, v in list(lengths.items())[:8])
            raise _shape(source, f"columns differ in length ({shown}); every column needs one value per row")
        rows = next(iter(lengths.values()))
        if rows == 0:
            raise _shape(source, "no rows: send at least one value per column")
        if self.sources and not self.sources.keys().isdisjoint(columns):
            columns = {self.sources.get(k, k): v for k, v in columns.items()}
        report = _Report(source)
        ignored = self._screen(set(columns), report)
        values: dict[str, FloatArray] = {}
        unseen: dict[str, npt.NDArray[np.bool_]] = {}
        for rule in self.numeric:
            if rule.name in columns:
                values[rule.name] = _numeric(rule, columns[rule.name], report)
        for cat in self.categorical:
            if cat.name in columns:
                values[cat.name] = _categorical(cat, columns[cat.name], report, unseen)
        for name in self.times:
            if name in columns:
                values[name] = _timestamps(name, columns[name], report)
        report.raise_if_any()
        keys = None
        if self.keys and all(k in columns for k in self.keys):
            keys = _key_texts([columns[k] for k in self.keys], self.keys, source)
        return Inputs(values, rows, keys, ignored, self._outside(values, None, unseen))

    # -- the rules ---------------------------------------------------------------------------

    def _rows(
        self,
        numeric: list[list[Any]],
        categorical: dict[str, list[Any]],
        keys: list[Any] | None,
        rows: int,
        present: set[str],
        source: str,
        times: Mapping[str, Any] | None = None,
    ) -> Inputs:
        """Row-shaped requests: one vectorised check of the numeric block, details only on failure."""
        matrix = _as_matrix(numeric, rows, len(self.numeric))
        values: dict[str, FloatArray] = {}
        unseen: dict[str, npt.NDArray[np.bool_]] = {}
        report = _Report(source)
        ignored = self._screen(present, report)
        clean = matrix is not None and self._clean(matrix)
        if clean:
            assert matrix is not None
            for j, name in enumerate(self.numeric_names):
                values[name] = matrix[:, j]
        else:
            for j, rule in enumerate(self.numeric):
                if rule.name in present:
                    raw: Any = matrix[:, j] if matrix is not None else [row[j] for row in numeric]
                    values[rule.name] = _numeric(rule, raw, report)
        for cat in self.categorical:
            if cat.name in present:
                values[cat.name] = _categorical(cat, categorical[cat.name], report, unseen)
        for name, raw in (times or {}).items():
            values[name] = _timestamps(name, raw, report)
        report.raise_if_any()
        return Inputs(values, rows, keys, ignored, self._outside(values, matrix if clean else None, unseen))

    def _outside(
        self,
        values: Mapping[str, FloatArray],
        matrix: FloatArray | None,
        unseen: dict[str, npt.NDArray[np.bool_]],
    ) -> dict[str, npt.NDArray[np.bool_]]:
        """Rows outside the model's training envelope (none for a model that recorded none)."""
        if self.envelope is None:
            return {}
        if matrix is not None and self.bounds is not None:
            flags = self.envelope.matrix_flags(self.numeric_names, matrix, self.bounds)
        else:
            flags = self.envelope.numeric_flags(values)
        # Only the categorical features the model watches (drift = true) are flagged.
        flags.update((name, mask) for name, mask in unseen.items() if name in self.envelope.categories)
        return flags

    def _clean(self, m: FloatArray) -> bool:
        """True when no numeric rule is broken anywhere in ``m`` (a few whole-matrix operations).

        The bounds are clipped to the finite range, so one pair of comparisons also rejects
        infinities and flags NaN; NaN is then forgiven where the feature may be missing.
        """
        ok = (m >= self.lo_finite) & (m <= self.hi_finite)
        if ok.all():
            return not (self.any_integer and ((np.floor(m) != m) & self.integer_mask).any())
        nan = np.isnan(m)
        if (~ok & ~(nan & self.optional_mask)).any():
            return False
        return not (self.any_integer and ((np.floor(m) != m) & self.integer_mask & ~nan).any())

    def _screen(self, present: set[str], report: _Report) -> tuple[str, ...]:
        """Report missing features and, when the feature set refuses them, unknown columns;
        return the unknown columns that are ignored."""
        suggested = self._missing_columns(present, report)
        if present <= self.name_set:
            return ()
        unknown = sorted(present - self.name_set - self.known)
        named = [c for c in unknown if c not in suggested]  # a misspelling is reported once
        if named and self.refuse_extra:
            unknown = named
            shown = ", ".join(unknown[:10]) + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else "")
            report.whole(
                shown,
                "unexpected column",
                "not in the feature set; remove it, or set extra_columns = 'ignore' in the definition",
            )
            return ()
        return tuple(unknown)

    def _missing_columns(self, present: set[str], report: _Report) -> set[str]:
        """Report missing features; returns the sent columns offered as "did you mean"."""
        if self.name_set <= present:
            return set()
        missing = [n for n in self.names if n not in present]
        suggested: set[str] = set()
        if missing:
            extra = sorted(present - set(self.names) - set(self.keys))
            labels, hints = [], []
            shown_as = {v: k for k, v in self.sources.items()}  # the name the sender's files use
            for name in missing:
                expected = shown_as.get(name, name)
                labels.append(f"{expected} (as {name})" if name in shown_as else name)
                close = difflib.get_close_matches(expected, extra, n=1)
                close = close or difflib.get_close_matches(name, extra, n=1)
                if close:  # the request's near miss, offered the right way round
                    hints.append(f"the request's '{close[0]}' may be a misspelling of '{expected}'")
                suggested.update(close)
            detail = "missing from the request; add " + ("it" if len(missing) == 1 else "them")
            report.whole(", ".join(labels), "required column", "; ".join([detail, *hints]))
        return suggested


_NUMBER_TYPES = frozenset({int, float})


def _as_matrix(numeric: list[list[Any]], rows: int, width: int) -> FloatArray | None:
    """The numeric block as a float matrix when every value is a plain number or null, else None."""
    types = {type(v) for row in numeric for v in row}
    types.discard(type(None))
    if not types <= _NUMBER_TYPES:
        return None
    try:
        return np.array(numeric, dtype=np.float64).reshape(rows, width)
    except (OverflowError, ValueError):
        return None


def _numeric(rule: _Numeric, raw: Any, report: _Report) -> FloatArray:
    absent: list[int] = []
    wrong: list[int] = []
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "fiu":
        arr = raw.astype(np.float64, copy=False)
    else:
        arr = np.empty(len(raw), dtype=np.float64)
        for i, v in enumerate(raw):
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
                try:
                    arr[i] = v
                except OverflowError:
                    wrong.append(i)
                    arr[i] = math.nan
            elif v is None:
                arr[i] = math.nan
            elif v is _ABSENT:
                absent.append(i)
                arr[i] = math.nan
            else:
                wrong.append(i)
                arr[i] = math.nan
        if wrong:
            shown = ", ".join(_show(raw[i]) for i in wrong[:3])
            report.rows(rule.name, "type", f"not a number ({shown})", wrong)
    report.rows(rule.name, "required column", "the record has no such field", absent)
    finite = np.isfinite(arr)
    nan = np.isnan(arr)
    report.mask(rule.name, "finite", "infinite value; send a finite number", ~finite & ~nan)
    if rule.lo > -math.inf:
        report.mask(rule.name, "range", f"below the minimum {rule.lo:g}", finite & (arr < rule.lo))
    if rule.hi < math.inf:
        report.mask(rule.name, "range", f"above the maximum {rule.hi:g}", finite & (arr > rule.hi))
    if rule.integer:
        with np.errstate(invalid="ignore"):
            report.mask(rule.name, "type", "not a whole number", finite & (np.floor(arr) != arr))
    if rule.required:
        missing = nan.copy()
        if absent or wrong:
            missing[absent + wrong] = False
        report.mask(rule.name, "not null", "missing value; this feature must be given", missing)
    return arr


def _categorical(
    rule: _Categorical, raw: Any, report: _Report, unseen: dict[str, npt.NDArray[np.bool_]]
) -> FloatArray:
    """Codes of one categorical column; categories the model never saw are noted in ``unseen``
    (refused instead when the feature declares its values)."""
    if len(raw) > 64 and all(type(v) is str and v for v in raw):
        # The common batch: every value is text. One dict lookup per value; the detailed
        # loop below runs only when something needs reporting.
        codes = np.fromiter((rule.lookup.get(v, math.nan) for v in raw), dtype=np.float64, count=len(raw))
        if not (rule.strict and np.isnan(codes).any()):
            nan = np.isnan(codes)
            if nan.any():
                unseen[rule.name] = nan
            return codes
    out = np.empty(len(raw), dtype=np.float64)
    absent: list[int] = []
    wrong: list[int] = []
    unknown: list[int] = []
    nulls: list[int] = []
    for i, given in enumerate(raw):
        # A category coded as a number (a state code) is its text, as stored at ingest.
        v = str(int(given)) if _whole_number(given) else given
        if isinstance(v, str) and v:
            code = rule.lookup.get(v)
            if code is None:
                code = math.nan
                unknown.append(i)
            out[i] = code
            continue
        if v is _ABSENT:
            absent.append(i)
        elif not _missing(v) and v != "":
            wrong.append(i)
        elif rule.fill is not None:
            out[i] = rule.lookup.get(rule.fill, math.nan)
            continue
        else:
            nulls.append(i)
        out[i] = math.nan
    report.rows(rule.name, "required column", "the record has no such field", absent)
    if wrong:
        shown = ", ".join(_show(raw[i]) for i in wrong[:3])
        report.rows(rule.name, "type", f"not text ({shown}); send the category as a JSON string", wrong)
    if unknown and not rule.strict:
        mask = np.zeros(len(raw), dtype=bool)
        mask[unknown] = True
        unseen[rule.name] = mask
    elif unknown:
        shown = ", ".join(_show(raw[i]) for i in unknown[:3])
        allowed = ", ".join(repr(c) for c in rule.lookup)
        report.rows(rule.name, "category", f"unknown category ({shown}); allowed: {allowed}", unknown)
    if rule.required:
        report.rows(rule.name, "not null", "missing value; this feature must be given", nulls)
    return out


def _whole_number(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()


def _timestamps(name: str, raw: Any, report: _Report) -> FloatArray:
    """A timestamp column as seconds since 1970 UTC; text that is not ISO-8601 is reported."""
    items = list(raw)
    shaped = [
        i
        for i, v in enumerate(items)
        if isinstance(v, list | dict | bool | bytes) or getattr(v, "ndim", 0) > 0
    ]
    if shaped:  # never reaches the parser: a list or an object is not a moment
        report.rows(
            name, "timestamp", "a timestamp is ISO-8601 text or seconds, not a list or an object", shaped
        )
        return np.full(len(items), np.nan)
    seconds = portable.epoch_seconds(raw)
    unread = np.isnan(seconds)
    if unread.any():
        bad = [i for i in np.flatnonzero(unread).tolist() if not _missing(items[i])]
        if bad:
            report.rows(
                name,
                "timestamp",
                f"not an ISO-8601 timestamp ({_clip(items[bad[0]])}); write e.g. 2026-01-31T12:00:00Z",
                bad,
            )
    return seconds


def _missing(v: object) -> bool:
    # pandas' NA arrives from data frames; it is recognised by name to keep pandas out of here.
    return v is None or (isinstance(v, float) and math.isnan(v)) or type(v).__name__ in ("NAType", "NaTType")


def _show(value: object) -> str:
    """A value as the user sent it: text quoted, numbers and booleans bare."""
    return repr(_clip(value)) if isinstance(value, str) else _clip(value)


def _clip(value: object, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return names.get(type(value), type(value).__name__)


def _key_texts(columns: list[Any], names: tuple[str, ...] | list[str], source: str) -> list[str | None]:
    """The key text of every row, refusing a key value that is a list or an object."""
    report = None
    for name, values in zip(names, columns, strict=True):
        bad = [
            i
            for i, v in enumerate(values)
            if isinstance(v, list | dict | bool | bytes)
            or getattr(v, "ndim", 0) > 0
            or (isinstance(v, float) and math.isinf(v))
        ]
        if bad:
            report = report or _Report(source)
            report.rows(
                name, "key", "a key is a finite number or text, not true/false, a list or an object", bad
            )
    if report is not None:
        report.raise_if_any()
    return key_texts(columns)


def _shape(source: str, detail: str) -> DataValidationError:
    return DataValidationError([Problem("*", "shape", detail)], source=source, outcome="no prediction made")
