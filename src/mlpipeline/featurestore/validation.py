"""Batch validation against a feature-set definition (pure: DataFrames in, DataFrames out).

:func:`validate_batch` checks every rule at once and either returns a normalised
frame (columns in definition order, floats as float64, integers as nullable Int64,
categories as strings, timestamps as naive UTC) or raises one
:class:`~mlpipeline.errors.DataValidationError` that lists each broken rule with the
column, the first offending rows (1-based) and a sample of the bad values. The same
rules apply to training data and to prediction requests, so what is rejected at
ingest is rejected at serving time too.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.errors import DataValidationError, EmptyBatchError, Problem
from mlpipeline.featuresets.definition import INTERNAL_COLUMNS, MAX_TEXT_LENGTH, Definition, Feature

__all__ = ["MAX_ROWS_SHOWN", "expected_columns", "renamed", "validate_batch", "validate_labels"]

#: How many offending row numbers an error message lists per rule.
MAX_ROWS_SHOWN = 5
#: Integer columns are stored as 64-bit integers; larger magnitudes cannot be stored.
INT64_LIMIT = 2.0**63


def expected_columns(d: Definition, *, for_scoring: bool = False) -> tuple[list[str], list[str]]:
    """(required, optional) input columns of a batch for this definition.

    A generated key is never part of the input. For scoring, the target and the
    label time are not expected at all.
    """
    required: list[str] = []
    if not d.entity_key.generate:
        required += list(d.key_columns)
    if d.event_time and d.event_time not in required:
        required.append(d.event_time)
    required += list(d.features)
    optional: list[str] = []
    if not for_scoring:
        optional.append(d.target.column)
        optional += [c for c in target_inputs(d) if c not in required and c not in optional]
        if d.label_time:
            optional.append(d.label_time)
    return required, optional


def target_inputs(d: Definition) -> list[str]:
    """Columns a derived target is computed from (they may come with a batch or a labels file)."""
    compiled = d.target.compiled
    if compiled is None:
        return []
    return sorted(compiled.names - set(d.constants))


def validate_batch(
    frame: pd.DataFrame, d: Definition, *, source: str = "batch", for_scoring: bool = False
) -> pd.DataFrame:
    """Validate and normalise ``frame``; raise with every problem if any rule is broken."""
    if len(frame.index) == 0:
        raise EmptyBatchError(source)
    frame = renamed(frame, d, source)
    ignored = _check_columns(frame, d, source, for_scoring)
    out: dict[str, pd.Series] = {}
    problems: list[Problem] = []
    n = len(frame.index)
    frame = frame.reset_index(drop=True)

    if not d.entity_key.generate:
        out.update(_keys(frame, d, problems))
    for col in (d.event_time, d.label_time):
        if col and col in frame.columns:
            out[col] = _timestamp(frame[col], col, allow_null=col == d.label_time, problems=problems)
    for name, spec in d.features.items():
        out[name] = _feature(frame[name], name, spec, problems)
    if not for_scoring:
        target = d.target
        values = _target(frame, d, problems)
        out[target.column] = pd.Series(np.full(n, np.nan), name=target.column) if values is None else values
        if d.label_time:
            _label_consistency(out, d, problems)
    if problems:
        raise DataValidationError(problems, source=source)
    result = pd.DataFrame(out)
    order = [c for c in d.raw_columns if c in result.columns]
    result = result[order]
    result.attrs["ignored_columns"] = ignored
    return result


def validate_labels(frame: pd.DataFrame, d: Definition, *, source: str = "labels") -> pd.DataFrame:
    """Validate a labels file: the key, the target and optionally the label time, nothing else.

    Returns the key (as stored), the target (float64) and, when the feature set has a label
    time, that column (NaT where the file has none: the time of labelling is used).
    """
    if len(frame.index) == 0:
        raise EmptyBatchError(source)
    frame = renamed(frame, d, source)
    keys, target = list(d.key_columns), d.target.column
    names = [str(c) for c in frame.columns]
    inputs = target_inputs(d)
    allowed = {*keys, target, *inputs} | ({d.label_time} if d.label_time else set())
    problems: list[Problem] = []
    computed = target not in names and bool(inputs) and all(c in names for c in inputs)
    missing = [c for c in (*keys, target) if c not in names and not (c == target and computed)]
    if missing:
        problems.append(
            Problem(
                _named(d, missing),
                "required column",
                f"a labels file needs the key ({_named(d, keys)}) and the target ({_named(d, [target])}); "
                "add it" + _delimiter_hint(names),
            )
        )
    extra = [c for c in names if c not in allowed]
    if extra:
        features = [c for c in extra if c in d.features]
        kept = [*keys, target] + ([d.label_time] if d.label_time else [])
        detail = (
            f"a labels file holds only {', '.join(kept[:-1])} and {kept[-1]}; remove the other columns"
            + (", or ingest rows with their features with 'mlpipeline ingest'" if features else "")
        )
        problems.append(Problem(", ".join(_clip(c) for c in extra[:10]), "unexpected column", detail))
    if problems:
        raise DataValidationError(problems, source=source)
    frame = frame.reset_index(drop=True)
    out: dict[str, pd.Series] = _keys(frame, d, problems)
    values = _target(frame, d, problems)
    assert values is not None  # the column, or the columns it is computed from, are present
    absent = values.isna().to_numpy(dtype=bool) & ~values.attrs.get("invalid", np.zeros(len(values), bool))
    _add(problems, target, "not null", "no label; give every row of a labels file its label", absent)
    out[target] = values.astype("float64")
    if d.label_time:
        if d.label_time in frame.columns:
            times = frame[d.label_time]
            out[d.label_time] = _timestamp(times, d.label_time, allow_null=True, problems=problems)
        else:
            out[d.label_time] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us]")
    if problems:
        raise DataValidationError(problems, source=source)
    return pd.DataFrame(out)


def renamed(frame: pd.DataFrame, d: Definition, source: str = "batch") -> pd.DataFrame:
    """Source column names (``source = "mean radius"``) to the feature set's names."""
    sources = d.sources
    if not sources or not any(str(c) in sources for c in frame.columns):
        return frame
    names = {str(c) for c in frame.columns}
    both = [f"{s} and {n}" for s, n in sources.items() if s in names and n in names]
    if both:
        raise DataValidationError(
            [
                Problem(
                    "; ".join(both),
                    "unique columns",
                    "the file has a column under its source name and under its own name; keep one",
                )
            ],
            source=source,
        )
    return frame.rename(columns={c: sources[str(c)] for c in frame.columns if str(c) in sources})


def _named(d: Definition, columns: list[str]) -> str:
    """Columns as the user's files name them: mean radius (as mean_radius)."""
    return ", ".join(c if d.input_name(c) == c else f"{d.input_name(c)} (as {c})" for c in columns)


def _check_columns(frame: pd.DataFrame, d: Definition, source: str, for_scoring: bool) -> list[str]:
    """Refuse missing and unknown columns; with ``extra_columns = 'ignore'``, list the unknown ones."""
    required, optional = expected_columns(d, for_scoring=for_scoring)
    names = [str(c) for c in frame.columns]
    problems: list[Problem] = []
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        problems.append(Problem(", ".join(dupes), "unique columns", "the column appears more than once"))
    missing = [c for c in required if c not in names]
    allowed = set(required) | set(optional)
    if for_scoring:
        allowed |= {d.target.column} | ({d.label_time} if d.label_time else set())
    unexpected = [c for c in names if c not in allowed]
    if missing:
        hint = _delimiter_hint(names)
        problems.append(
            Problem(_named(d, missing), "required column", "missing from the batch; add it" + hint)
        )
    generated = [c for c in unexpected if d.entity_key.generate and c in d.key_columns]
    internal = [c for c in unexpected if c in INTERNAL_COLUMNS]
    ignored: list[str] = []
    if d.extra_columns == "ignore":
        ignored = [c for c in unexpected if c not in generated and c not in internal]
        unexpected = [c for c in unexpected if c in generated or c in internal]
    if unexpected:
        detail = (
            "not in the feature-set definition; remove it, add it to the definition, or set "
            "extra_columns = 'ignore'"
        )
        if generated:
            detail = "the key is generated at ingest; remove the column from the batch"
        elif internal:
            detail = "reserved for the feature store's own bookkeeping; remove it"
        shown = ", ".join(_clip(c) for c in unexpected[:10])
        if len(unexpected) > 10:
            shown += f" (+{len(unexpected) - 10} more)"
        problems.append(Problem(shown, "unexpected column", detail))
    if problems:
        raise DataValidationError(problems, source=source)
    return ignored


def _target(frame: pd.DataFrame, d: Definition, problems: list[Problem]) -> pd.Series | None:
    """The batch's target as stored (a number, or a class's position in ``values``), computed
    from its expression when the file has the inputs instead; ``None`` when it has neither."""
    target = d.target
    if target.column in frame.columns:
        raw = frame[target.column]
    elif target.compiled is not None and all(c in frame.columns for c in target_inputs(d)):
        env: dict[str, Any] = dict(d.constant_values())
        for name in target_inputs(d):
            env[name] = _numeric(frame[name], name, problems).to_numpy(dtype=np.float64, na_value=np.nan)
        computed = target.compiled.evaluate(env, len(frame.index))
        raw = pd.Series(computed, index=frame.index)
        if target.task != "regression":  # a comparison: 1 or 0, the class's own value
            raw = raw.map(lambda v: None if np.isnan(v) else int(v)).astype(object)
    else:
        return None
    if target.task == "regression":
        series = _numeric(raw, target.column, problems)
        _range(series, target.column, target.min, target.max, problems)
        return series.astype("float64")
    return _classes(raw, target.column, target.classes, problems)


def _classes(series: pd.Series, column: str, classes: tuple[str, ...], problems: list[Problem]) -> pd.Series:
    """Class labels to their positions in ``classes``; a label not among them is a problem.

    Labels compare as text: ``yes``, ``1`` and a CSV reader's ``1.0`` for a whole number.
    """
    position = {c: float(i) for i, c in enumerate(classes)}

    def label_of(value: object) -> str | None:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            return None
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, (bool, np.bool_)):
            return str(int(value))
        out = str(value).strip()
        return out or None

    labels = [label_of(v) for v in series.astype(object).tolist()]
    codes = np.array([np.nan if t is None else position.get(t, np.nan) for t in labels], dtype=np.float64)
    unknown = np.array([t is not None and t not in position for t in labels], dtype=bool)
    if unknown.any():
        shown = ", ".join(repr(c) for c in classes)
        hints = []
        lowered = {c.lower(): c for c in classes}
        for label in dict.fromkeys(t for t, bad in zip(labels, unknown, strict=True) if bad and t):
            close = (
                [lowered[label.lower()]]
                if label.lower() in lowered
                else difflib.get_close_matches(label, classes, n=1)
            )
            if close:
                hints.append(f"'{label}': did you mean '{close[0]}'?")
            if len(hints) == 3:
                break
        _add(
            problems,
            column,
            "class",
            f"not one of the target's values {shown} ({_samples(series, unknown)})"
            + (f"; {'; '.join(hints)}" if hints else ""),
            unknown,
        )
    result = pd.Series(codes, index=series.index, name=column)
    result.attrs["invalid"] = unknown
    return result


def _delimiter_hint(names: list[str]) -> str:
    if len(names) == 1:
        for sep, label in ((";", "';'"), ("\t", "tab"), ("|", "'|'")):
            if sep in names[0]:
                return f" (the header looks {label}-separated; the file must be comma-separated)"
    return ""


def _clip(value: object, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rows(mask: np.ndarray) -> tuple[list[int], int]:
    idx = np.flatnonzero(mask)
    return [int(i) + 1 for i in idx[:MAX_ROWS_SHOWN]], int(idx.size)


def _add(problems: list[Problem], column: str, rule: str, detail: str, mask: np.ndarray) -> None:
    rows, count = _rows(mask)
    if count:
        problems.append(Problem(column, rule, f"{count} row(s): {detail}", rows, count))


def _samples(series: pd.Series, mask: np.ndarray) -> str:
    values = series[mask].head(3).tolist()
    return ", ".join(repr(_clip(v)) for v in values)


def _numeric(series: pd.Series, column: str, problems: list[Problem]) -> pd.Series:
    """Coerce to float64; text that is not a number, or inf, is a problem.

    Cells reported here come back as NaN with ``attrs["invalid"]`` marking them, so the
    not-null rule does not report the same cell a second time.
    """
    bad = np.zeros(len(series.index), dtype=bool)
    if pd.api.types.is_bool_dtype(series):
        series = series.astype("float64")
    if pd.api.types.is_numeric_dtype(series):
        values = series.astype("float64")
    else:
        as_text = series.astype("string").str.strip()
        values = pd.to_numeric(as_text, errors="coerce").astype("float64")
        bad = (values.isna() & as_text.notna() & (as_text != "")).to_numpy()
        if bad.any():
            _add(problems, column, "type", f"not a number ({_samples(series, bad)})", bad)
    infinite = np.isinf(values.to_numpy())
    _add(problems, column, "finite", "infinite value; use a finite number or leave it empty", infinite)
    result = values.where(~infinite)
    result.attrs["invalid"] = bad | infinite
    return result


def _range(
    series: pd.Series, column: str, lo: float | None, hi: float | None, problems: list[Problem]
) -> None:
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    if lo is not None:
        below = values < lo
        _add(problems, column, "range", f"below the minimum {lo:g} ({_samples(series, below)})", below)
    if hi is not None:
        above = values > hi
        _add(problems, column, "range", f"above the maximum {hi:g} ({_samples(series, above)})", above)


def _feature(series: pd.Series, name: str, spec: Feature, problems: list[Problem]) -> pd.Series:
    if spec.type == "categorical":
        return _categorical(series, name, spec, problems)
    values = _numeric(series, name, problems)
    _range(values, name, spec.min, spec.max, problems)
    if spec.type == "integer":
        arr = values.to_numpy()
        fractional = ~np.isnan(arr) & (np.floor(arr) != arr)
        _add(problems, name, "type", f"not a whole number ({_samples(series, fractional)})", fractional)
    _nulls(values, name, spec, problems)
    if spec.type == "integer":
        return _integers(values, name, problems, spec.min, spec.max)
    return values


def _integers(
    values: pd.Series,
    column: str,
    problems: list[Problem],
    lo: float | None = None,
    hi: float | None = None,
) -> pd.Series:
    """Whole numbers as nullable Int64. Values beyond 64 bits cannot be stored: they are
    reported (unless the declared range ``lo``..``hi`` has reported them already) and dropped."""
    arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    huge = np.abs(np.nan_to_num(arr)) >= INT64_LIMIT
    if huge.any():
        reported = (arr < (-np.inf if lo is None else lo)) | (arr > (np.inf if hi is None else hi))
        detail = f"beyond the 64-bit integer range ({_samples(values, huge)}); use a smaller number"
        _add(problems, column, "range", detail, huge & ~reported)
    invalid = np.asarray(values.attrs.get("invalid", np.zeros(len(arr), dtype=bool))) | huge
    result = values.where(~huge).round().astype("Int64")
    result.attrs["invalid"] = invalid  # reported: the not-null rule skips these cells
    return result


def _categorical(series: pd.Series, name: str, spec: Feature, problems: list[Problem]) -> pd.Series:
    text = series.astype("string")
    text = text.where(text.str.len() > 0)
    _length(text, name, problems)
    if spec.values is not None:
        unknown = (text.notna() & ~text.isin(spec.values)).to_numpy(dtype=bool)
        allowed = ", ".join(repr(v) for v in spec.values)
        _add(
            problems,
            name,
            "category",
            f"unknown category ({_samples(series, unknown)}); allowed: {allowed}",
            unknown,
        )
    _nulls(text, name, spec, problems)
    return text.astype(object).where(text.notna(), None)


def _length(text: pd.Series, name: str, problems: list[Problem]) -> None:
    long = (text.str.len() > MAX_TEXT_LENGTH).fillna(False).to_numpy(dtype=bool)
    _add(problems, name, "length", f"text longer than {MAX_TEXT_LENGTH} characters", long)


def _nulls(series: pd.Series, name: str, spec: Feature, problems: list[Problem]) -> None:
    if spec.missing == "error":
        missing = series.isna().to_numpy(dtype=bool)
        invalid = series.attrs.get("invalid")
        if invalid is not None:
            missing = missing & ~invalid
        _add(
            problems,
            name,
            "not null",
            "missing value; fill it, or declare missing = 'native' or 'constant' in the definition",
            missing,
        )


def _keys(frame: pd.DataFrame, d: Definition, problems: list[Problem]) -> dict[str, pd.Series]:
    """Every key column checked on its own; a composite key's combination must be unique."""
    names = d.key_columns
    out: dict[str, pd.Series] = {}
    for name in names:
        if name == d.event_time:
            out[name] = _timestamp(frame[name], name, allow_null=False, problems=problems)
        else:
            out[name] = _key(frame[name], name, d.entity_key.type_of(name), problems, unique=len(names) == 1)
    if len(names) > 1:
        combined = pd.DataFrame(out)
        dup = (combined.duplicated(keep=False) & combined.notna().all(axis=1)).to_numpy(dtype=bool)
        _add(problems, ", ".join(names), "unique key", "duplicate key within the batch", dup)
    return out


def _key(
    series: pd.Series, column: str, kind: str, problems: list[Problem], *, unique: bool = True
) -> pd.Series:
    if kind == "integer":
        values = _numeric(series, column, problems)
        arr = values.to_numpy()
        fractional = ~np.isnan(arr) & (np.floor(arr) != arr)
        _add(problems, column, "type", "key is not a whole number", fractional)
        result: pd.Series = _integers(values, column, problems)
    else:
        text = series.astype("string").str.strip()
        result = text.where(text.str.len() > 0)
        _length(result, column, problems)
    missing = result.isna().to_numpy(dtype=bool) & ~result.attrs.get("invalid", np.zeros(len(result), bool))
    _add(problems, column, "not null", "missing key; every row needs one", missing)
    if unique:
        dup = (result.duplicated(keep=False) & result.notna()).to_numpy(dtype=bool)
        _add(problems, column, "unique key", f"duplicate key within the batch ({_samples(series, dup)})", dup)
    if kind == "string":
        return result.astype(object).where(result.notna(), None)
    return result


def _timestamp(series: pd.Series, column: str, *, allow_null: bool, problems: list[Problem]) -> pd.Series:
    bad = np.zeros(len(series.index), dtype=bool)
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = series
    else:
        text = series.astype("string").str.strip()
        text = text.where(text.str.len() > 0)
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        bad = (parsed.isna() & text.notna()).to_numpy(dtype=bool)
        _add(
            problems,
            column,
            "type",
            f"not an ISO-8601 timestamp ({_samples(series, bad)}); write e.g. 2026-01-31T12:00:00Z",
            bad,
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    parsed = parsed.astype("datetime64[us]")
    if not allow_null:
        missing = parsed.isna().to_numpy(dtype=bool) & ~bad
        _add(problems, column, "not null", "missing timestamp", missing)
    return parsed


def _label_consistency(out: dict[str, pd.Series], d: Definition, problems: list[Problem]) -> None:
    assert d.label_time
    assert d.event_time
    target = out[d.target.column]
    label_at = out.get(d.label_time)
    if label_at is None:
        label_at = pd.Series(pd.NaT, index=target.index, dtype="datetime64[us]")
        out[d.label_time] = label_at
    unlabelled_time = (target.notna() & label_at.isna()).to_numpy(dtype=bool)
    _add(problems, d.label_time, "not null", f"a labelled row needs its {d.label_time}", unlabelled_time)
    early = (label_at < out[d.event_time]).to_numpy(dtype=bool)
    _add(problems, d.label_time, "order", f"label arrives before {d.event_time}", early)
