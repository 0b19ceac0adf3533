"""``mlpipeline score``: a file or folder scored in chunks by one pinned model version.

Memory stays bounded whatever the input's size: CSV is read ``chunk_rows`` rows at a time,
Parquet one row group batch at a time, a folder file by file (its ``*.parquet`` or ``*.csv``
in name order, as a Parquet dataset is laid out). Each chunk goes through the model's input
contract, exactly as a request to the API does, is predicted and appended to the output.

- **One version for the whole job.** The champion is resolved once, from the verified cache,
  at the start; a promotion during the job does not mix two models in one output.
- **Nothing half-written.** The output is written beside its target under a hidden name and
  renamed into place at the end; a failure leaves no output (and no partial reject file).
- **Bad rows.** By default the first chunk with a bad row stops the job with its problems
  listed (rows numbered in the whole input). With ``reject_to`` the bad rows are set aside
  instead, each with its ``input_row`` and the problem that rejected it, and the rest is
  scored: a failing chunk is halved until the bad rows are alone, so the cost grows with the
  bad rows, not the chunk.
- **Output.** The key columns (when the input has them), the ``keep`` columns, ``prediction``
  (the number, or a classifier's class), one ``proba_<class>`` column per class for a
  classifier, and ``model_version``. CSV or Parquet by the output's suffix; a path without a
  suffix is a folder holding ``part-00000.parquet``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.errors import ConfigError, DataValidationError, NotFoundError, Problem
from mlpipeline.featuresets import portable
from mlpipeline.serving.batch_io import csv_options, frame_columns
from mlpipeline.serving.predictor import Predictor, Serving

__all__ = [
    "ROW_COLUMN",
    "ScoreOutcome",
    "check_keep",
    "input_files",
    "output_kind",
    "remove_path",
    "score_files",
    "score_frames",
]

log = logging.getLogger(__name__)

_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class ScoreOutcome:
    """What a scoring job did."""

    rows_read: int
    rows_scored: int
    rows_rejected: int
    model_name: str
    version: str
    seconds: float
    output: Path


def input_files(path: Path) -> list[tuple[Path, str]]:
    """The files to read, with their format: the file itself, or a folder's data files."""
    if path.is_file():
        kind = _SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise ConfigError(f"{path.name}: score reads .csv or .parquet files (or a folder of them)")
        return [(path, kind)]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)
        kinds = {_SUFFIXES[p.suffix.lower()] for p in files}
        if not files:
            raise NotFoundError(f"the folder {path} holds no .csv or .parquet file")
        if len(kinds) > 1:
            raise ConfigError(f"the folder {path} mixes CSV and Parquet files; keep one format per folder")
        return [(p, _SUFFIXES[p.suffix.lower()]) for p in files]
    raise NotFoundError(f"input {path} does not exist")


def output_kind(path: Path) -> str:
    """``csv``, ``parquet`` (a file) or ``folder`` (a Parquet dataset) from the output path."""
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if suffix:
        raise ConfigError(f"{path.name}: write .csv or .parquet, or give a folder (no suffix)")
    return "folder"


def chunks(
    files: Sequence[tuple[Path, str]], spec: dict[str, Any], chunk_rows: int, keep: Sequence[str]
) -> Iterator[tuple[str, pd.DataFrame]]:
    """The input, ``chunk_rows`` rows at a time (never more in memory)."""
    import pyarrow.parquet as pq

    for path, kind in files:
        if kind == "csv":
            try:
                reader = pd.read_csv(path, chunksize=chunk_rows, **csv_options(spec, keep))
                for frame in reader:
                    yield path.name, frame
            except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
                raise DataValidationError(
                    [Problem("-", "format", f"not a readable CSV file: {' '.join(str(exc).split())[:300]}")],
                    source=path.name,
                ) from exc
        else:
            try:
                parquet = pq.ParquetFile(path)
                for batch in parquet.iter_batches(batch_size=chunk_rows):
                    yield path.name, batch.to_pandas()
            except OSError as exc:  # pyarrow's ArrowInvalid is an OSError subclass for bad files
                raise DataValidationError(
                    [Problem("-", "format", f"not a readable Parquet file ({exc.__class__.__name__})")],
                    source=path.name,
                ) from exc


def score_files(
    predictor: Predictor,
    files: Sequence[tuple[Path, str]],
    output: Path,
    *,
    keep: Sequence[str] = (),
    reject_to: Path | None = None,
    chunk_rows: int = 50_000,
    progress: Callable[[int], None] | None = None,
) -> ScoreOutcome:
    """Score ``files`` into ``output`` with the champion of the moment, pinned (see module doc)."""
    spec = predictor.current().model.spec
    return score_frames(
        predictor,
        chunks(files, spec, chunk_rows, keep),
        output,
        source=files[0][0].name if len(files) == 1 else files[0][0].parent.name,
        keep=keep,
        reject_to=reject_to,
        progress=progress,
    )


def score_frames(
    predictor: Predictor,
    frames: Iterable[tuple[str, pd.DataFrame]],
    output: Path,
    *,
    source: str,
    keep: Sequence[str] = (),
    reject_to: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> ScoreOutcome:
    """Score ``frames`` (name, chunk) into ``output``: files' chunks, or rows streamed from the
    feature store (``score --from-store``)."""
    started = time.perf_counter()
    serving = predictor.current()
    kind = output_kind(output)
    if reject_to is not None and reject_to.resolve() == output.resolve():
        raise ConfigError("--reject-to must differ from --output")
    writer = _Writer(output, kind)
    rejects = _Writer(reject_to, output_kind(reject_to) if reject_to else "csv") if reject_to else None
    read = scored = rejected = 0
    try:
        for name, chunk in frames:
            frame = chunk.reset_index(drop=True)
            if read == 0:
                check_keep(keep, frame.columns, name)
            if frame.empty:  # a header-only file, an empty row group
                continue
            good, bad = _split(predictor, serving, frame, name, offset=read, collect=rejects is not None)
            for part, prediction in good:
                writer.add(_output_frame(serving, part, prediction, keep))
                scored += len(part)
            if bad is not None and rejects is not None:
                rejects.add(bad.astype("string"))  # the input's cells as read: one type per column
                rejected += len(bad)
            if predictor.prediction_log is not None:
                predictor.prediction_log.flush()  # chunk by chunk: the log's queue stays small
            read += len(frame)
            if progress is not None:
                progress(read)
        if read == 0:
            raise DataValidationError([Problem("-", "rows", "the input has no data rows")], source=source)
        writer.commit()
        if rejects is not None:
            rejects.commit()
    except BaseException:
        writer.abort()
        if rejects is not None:
            rejects.abort()
        raise
    return ScoreOutcome(
        read, scored, rejected, serving.pointer.model_name, serving.pointer.version,
        time.perf_counter() - started, output,
    )  # fmt: skip


def _split(
    predictor: Predictor,
    serving: Serving,
    frame: pd.DataFrame,
    source: str,
    *,
    offset: int,
    collect: bool,
) -> tuple[list[tuple[pd.DataFrame, Any]], pd.DataFrame | None]:
    """The chunk's scored parts and (with ``collect``) its rejected rows with their problems."""
    spec = serving.model.spec
    try:
        columns = frame_columns(frame, spec)
        return [(frame, predictor.score_pinned(serving, columns, source=source))], None
    except DataValidationError as exc:
        # A problem without rows (a missing or unexpected column) is the input's, not a row's.
        if not collect or any(not p.rows for p in exc.problems):
            raise _renumbered(exc, offset) from None
        if len(frame) == 1:
            bad = frame.copy()
            bad.insert(0, ROW_COLUMN if ROW_COLUMN not in bad.columns else f"_{ROW_COLUMN}", offset + 1)
            bad["problem"] = "; ".join(f"{p.column}: {p.detail}" for p in exc.problems)
            return [], bad
    half = len(frame) // 2
    left, right = frame.iloc[:half], frame.iloc[half:]
    good_l, bad_l = _split(predictor, serving, left, source, offset=offset, collect=True)
    good_r, bad_r = _split(predictor, serving, right, source, offset=offset + half, collect=True)
    bads = [b for b in (bad_l, bad_r) if b is not None]
    return good_l + good_r, (pd.concat(bads, ignore_index=True) if bads else None)


#: The reject file's first column: the row's 1-based position among the input's data rows.
ROW_COLUMN = "input_row"
#: Columns every output has: a --keep column may not take one of their names.
OUTPUT_COLUMNS = ("prediction", "model_version")


def check_keep(keep: Sequence[str], columns: Any, source: str) -> None:
    """Refuse ``--keep`` names the input lacks or the output already uses, naming what exists."""
    taken = [c for c in keep if c in OUTPUT_COLUMNS or c.startswith("proba_")]
    if taken:
        raise ConfigError(f"--keep {', '.join(taken)}: the output already has a column of that name")
    present = [str(c) for c in columns]
    absent = [c for c in keep if c not in present]
    if absent:
        shown = ", ".join(present[:20]) + (", …" if len(present) > 20 else "")
        raise ConfigError(f"--keep {', '.join(absent)}: not a column of {source} (it has: {shown})")


def _renumbered(exc: DataValidationError, offset: int) -> DataValidationError:
    """The chunk's problems with rows numbered in the whole input (1-based data rows)."""
    problems = [
        Problem(p.column, p.rule, p.detail, tuple(r + offset for r in p.rows), p.count) for p in exc.problems
    ]
    return DataValidationError(problems, source=exc.source, outcome="nothing written")


def _output_frame(
    serving: Serving, frame: pd.DataFrame, prediction: Any, keep: Sequence[str]
) -> pd.DataFrame:
    spec = serving.model.spec
    key = spec.get("key")
    keys = [key] if isinstance(key, str) else list(key or [])
    sources = dict(spec.get("sources") or {})
    columns: dict[str, Any] = {}
    for name in keys:
        column = name if name in frame.columns else sources.get(name, name)
        if column in frame.columns:
            columns[name] = frame[column].to_numpy()
    for name in keep:
        columns[name] = frame[name].to_numpy()
    columns["prediction"] = prediction.answers
    if prediction.probabilities is not None:
        for i, cls in enumerate(prediction.classes):
            columns[f"proba_{cls}"] = prediction.probabilities[:, i]
    columns["model_version"] = np.full(len(frame), serving.pointer.version, dtype=object)
    for name in [*keys, *keep]:  # text as text in every chunk (an all-empty chunk is not "null")
        if name in columns and columns[name].dtype == object:
            columns[name] = pd.array(columns[name], dtype="string")
    if portable.task_of(spec) == "regression":
        columns["prediction"] = np.asarray(prediction.values, dtype=np.float64)
    return pd.DataFrame(columns)


class _Writer:
    """Appends frames to a hidden file (or folder) beside ``target``; renamed into place at the end."""

    def __init__(self, target: Path, kind: str) -> None:
        if not target.parent.is_dir():
            raise NotFoundError(f"the folder of {target} does not exist; create it or choose another path")
        self.target, self.kind = target, kind
        self.partial = target.with_name(f".{target.name}.partial")
        self._parquet: Any = None
        self._rows = 0
        if kind == "folder" and target.is_dir():
            strays = [p.name for p in target.iterdir() if not p.name.startswith("part-")]
            if strays:
                raise ConfigError(
                    f"{target} holds files other than a previous output's parts ({', '.join(strays[:5])}); "
                    "give a new folder"
                )
        if self.partial.exists():
            remove_path(self.partial)
        if kind == "folder":
            self.partial.mkdir()

    def add(self, frame: pd.DataFrame) -> None:
        if self.kind == "csv":
            frame.to_csv(self.partial, mode="a", header=self._rows == 0, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                path = self.partial / "part-00000.parquet" if self.kind == "folder" else self.partial
                self._parquet = pq.ParquetWriter(path, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))
        self._rows += len(frame)

    def commit(self) -> None:
        """Put the output in place; with no row at all, remove any previous one (nothing to read)."""
        if self._parquet is not None:
            self._parquet.close()
        if self._rows == 0:
            self.abort()
            remove_path(self.target)
            return
        if self.kind == "folder" and self.target.is_dir():
            shutil.rmtree(self.target)
        os.replace(self.partial, self.target)  # readers never see half an output

    def abort(self) -> None:
        if self._parquet is not None:
            try:
                self._parquet.close()
            except Exception:  # already broken: the partial file goes anyway
                log.debug("closing a failed Parquet writer", exc_info=True)
        remove_path(self.partial)


def remove_path(path: Path) -> None:
    """A file or a folder gone (a partial output, a stale one); nothing when absent."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
