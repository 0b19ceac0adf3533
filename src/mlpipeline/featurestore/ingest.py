"""Validated batch ingest: read a CSV/Parquet file or take a DataFrame, validate, write once.

The batch is validated in full before anything is written, then written in one
transaction. Its content hash (of the validated values, so the same data as CSV or
Parquet hashes alike) is recorded, and a batch seen before is skipped with the reason.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from mlpipeline.errors import DataValidationError, EmptyBatchError, NotFoundError, Problem
from mlpipeline.featuresets.definition import Definition
from mlpipeline.featurestore.base import FeatureStore, IngestOutcome, ProgressCallback
from mlpipeline.featurestore.validation import validate_batch

__all__ = ["content_hash", "ingest_file", "ingest_frame", "read_batch_file"]

log = logging.getLogger(__name__)

#: Text read as a missing value in numeric columns (categorical columns: only the empty field).
NUMERIC_NA = ["", "NA", "N/A", "NaN", "nan", "-nan", "NULL", "null", "None", "#N/A"]
#: Files larger than this are refused: ingest them in several batches.
MAX_FILE_BYTES = 4 * 1024**3


def read_batch_file(path: Path, d: Definition) -> pd.DataFrame:
    """Read a CSV (UTF-8, comma-separated, header row), Parquet or JSON-lines file into a raw frame."""
    source = str(path)
    if not path.is_file():
        raise NotFoundError(f"file '{path}' does not exist or is not a file")
    size = path.stat().st_size
    if size == 0:
        raise EmptyBatchError(source)
    if size > MAX_FILE_BYTES:
        raise DataValidationError(
            [Problem("*", "size", f"the file is {size / 1024**3:.1f} GiB; split it into smaller batches")],
            source=source,
        )
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path)
    if suffix in (".jsonl", ".ndjson"):
        return _read_json_lines(path)
    if suffix not in (".csv", ".txt", ""):
        raise DataValidationError(
            [Problem("*", "format", f"unknown file type '{suffix}'; give a .csv, .parquet or .jsonl file")],
            source=source,
        )
    return _read_csv(path, d)


def _read_csv(path: Path, d: Definition) -> pd.DataFrame:
    text_columns = [n for n, f in d.features.items() if f.type == "categorical"]
    text_columns += [k for k in d.key_columns if d.entity_key.type_of(k) == "string"]
    na_values: dict[str, list[str]] = {}
    for name in [*d.features, d.target.column, *d.key_columns]:
        na_values[d.input_name(name)] = [""] if name in text_columns else NUMERIC_NA
    text_columns = [d.input_name(n) for n in text_columns]
    try:
        frame = pd.read_csv(
            path,
            encoding="utf-8-sig",
            dtype=dict.fromkeys(text_columns, "string"),
            keep_default_na=False,
            na_values=na_values,
            low_memory=False,
        )
    except UnicodeDecodeError as exc:
        raise DataValidationError(
            [
                Problem(
                    "*",
                    "encoding",
                    f"not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8",
                )
            ],
            source=str(path),
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise EmptyBatchError(str(path)) from exc
    except (pd.errors.ParserError, ValueError, OverflowError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DataValidationError(
            [
                Problem(
                    "*",
                    "csv",
                    f"the file is not well-formed CSV ({message}); check quoting and the field count",
                )
            ],
            source=str(path),
        ) from exc
    _unique_header(path)
    return frame


def _unique_header(path: Path) -> None:
    """pandas renames a repeated column ('x' becomes 'x.1'); name the repeated column instead."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), [])
    except csv.Error:  # a header field beyond the csv module's size limit: pandas read it already
        return
    repeated = sorted(name for name, n in Counter(header).items() if n > 1)
    if repeated:
        raise DataValidationError(
            [
                Problem(
                    ", ".join(repeated),
                    "unique columns",
                    "the column appears more than once in the header; keep one of them",
                )
            ],
            source=str(path),
        )


def _read_json_lines(path: Path) -> pd.DataFrame:
    """One JSON object per line; values keep their JSON types (validation converts them)."""
    try:
        return pd.read_json(path, lines=True, dtype=False, encoding="utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DataValidationError(
            [Problem("*", "jsonl", f"not JSON lines ({detail}); write one JSON object per line")],
            source=str(path),
        ) from exc


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataValidationError(
            [Problem("*", "parquet", f"not a readable Parquet file ({exc.__class__.__name__}: {exc})")],
            source=str(path),
        ) from exc


def content_hash(d: Definition, frame: pd.DataFrame) -> str:
    """sha256 of a validated batch's values, independent of the file format it came in."""
    h = hashlib.sha256(d.name.encode())
    for name in frame.columns:
        series = frame[name]
        h.update(b"\x1e" + str(name).encode())
        if pd.api.types.is_datetime64_any_dtype(series):
            h.update(series.isna().to_numpy().tobytes())
            h.update(series.astype("int64", errors="ignore").to_numpy(dtype=np.int64, na_value=0).tobytes())
        elif pd.api.types.is_integer_dtype(series):
            h.update(series.isna().to_numpy().tobytes())
            h.update(series.to_numpy(dtype=np.int64, na_value=0).tobytes())
        elif pd.api.types.is_float_dtype(series):
            h.update(series.to_numpy(dtype=np.float64, na_value=np.nan).tobytes())
        else:
            h.update("\x1f".join("\x00" if v is None else str(v) for v in series.tolist()).encode())
    return h.hexdigest()


def ingest_frame(
    store: FeatureStore,
    d: Definition,
    frame: pd.DataFrame,
    *,
    source: str = "dataframe",
    progress: ProgressCallback | None = None,
    strict: bool = False,
) -> IngestOutcome:
    """Validate ``frame`` against ``d`` and write it as one batch (or skip a known batch).

    With a generated key, rows an earlier batch already stored are skipped and counted in
    ``skipped_rows``; ``strict`` refuses such a batch instead.
    """
    clean = validate_batch(frame, d, source=source)
    digest = content_hash(d, clean)
    outcome = store.ingest(d, clean, content_sha256=digest, source=source, progress=progress, strict=strict)
    ignored = tuple(clean.attrs.get("ignored_columns", ()))
    if ignored:
        outcome = dataclasses.replace(outcome, ignored_columns=ignored)
    if outcome.skipped:
        assert outcome.duplicate_of is not None
        log.info(
            "batch already ingested; nothing written",
            extra={"featureset": d.name, "batch_id": outcome.duplicate_of.batch_id, "source": source},
        )
    return outcome


def ingest_file(
    store: FeatureStore,
    d: Definition,
    path: Path,
    *,
    progress: ProgressCallback | None = None,
    strict: bool = False,
) -> IngestOutcome:
    """Read, validate and ingest one file as a batch."""
    frame = read_batch_file(path, d)
    return ingest_frame(store, d, frame, source=str(path), progress=progress, strict=strict)
