"""The feature-store protocol every backend implements, and the values it exchanges.

One contract test suite (``tests/contract``) runs against every implementation; the
SQL implementation covers SQLite, PostgreSQL and IRIS through SQLAlchemy dialects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Protocol

import pandas as pd

from mlpipeline.featuresets.definition import Definition

__all__ = ["BatchRecord", "FeatureStore", "IngestOutcome", "ProgressCallback", "Watermark"]

#: Called with (rows written so far, rows in the batch) while a batch is written.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Watermark:
    """How far monitoring has read: labels up to ``label_time`` and batches up to ``batch_id``.

    A row counts as new when its label is known by the check's ``as_of`` time and either its
    label arrived after ``label_time`` or it came in a batch after ``batch_id`` (so labels
    ingested late are not skipped).
    """

    batch_id: int = 0
    label_time: datetime | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["label_time"] = self.label_time.isoformat() if self.label_time else None
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Watermark:
        data = json.loads(text)
        label_time = datetime.fromisoformat(data["label_time"]) if data.get("label_time") else None
        return cls(batch_id=int(data.get("batch_id", 0)), label_time=label_time)


@dataclass(frozen=True)
class BatchRecord:
    """A batch as recorded in the store's batch ledger."""

    batch_id: int
    featureset: str
    content_sha256: str
    source: str
    row_count: int
    ingested_at: datetime


@dataclass(frozen=True)
class IngestOutcome:
    """What an ingest did: ``written`` rows in batch ``batch``; ``duplicate_of`` when skipped.

    ``skipped_rows``: rows of the batch identical to rows an earlier batch stored (feature sets
    with a generated key only), which were not written again.
    """

    batch: BatchRecord | None  # None when every row was already stored: no batch is recorded
    written: int
    duplicate_of: BatchRecord | None = None
    skipped_rows: int = 0
    ignored_columns: tuple[str, ...] = ()  # unknown columns dropped (extra_columns = "ignore")
    unlabelled_rows: int = 0  # written without a label: 'mlpipeline label' attaches it later
    generated_keys: tuple[int, int] | None = None  # first and last key assigned (generated keys)

    @property
    def skipped(self) -> bool:
        return self.duplicate_of is not None


class FeatureStore(Protocol):
    """Storage for feature-set rows and the pipeline's own records."""

    def create_schema(self, definitions: list[Definition]) -> None:
        """Create missing tables and indexes; existing ones are left untouched."""

    def ingest(
        self,
        d: Definition,
        frame: pd.DataFrame,
        *,
        content_sha256: str,
        source: str,
        progress: ProgressCallback | None = None,
        strict: bool = False,
    ) -> IngestOutcome:
        """Write a validated batch in one transaction, or nothing at all.

        With a generated key, rows already stored by an earlier batch are skipped and counted,
        or, with ``strict``, make the whole batch fail.
        """

    def count_rows(self, d: Definition) -> int: ...

    def batches(self, d: Definition) -> list[BatchRecord]: ...

    def training_window(
        self,
        d: Definition,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        as_of: datetime | None = None,
    ) -> pd.DataFrame:
        """Labelled rows with event time in [start, end) whose label is known at ``as_of``."""

    def labelled_since(
        self, d: Definition, watermark: Watermark, *, as_of: datetime | None = None
    ) -> tuple[pd.DataFrame, Watermark]:
        """Rows labelled since ``watermark`` and the watermark to store once they are processed."""

    def rows_to_score(self, d: Definition, *, after_batch: int = 0, limit: int | None = None) -> pd.DataFrame:
        """Unlabelled rows from batches after ``after_batch``, oldest first."""

    def get_state(self, featureset: str, key: str) -> str | None: ...

    def set_state(self, featureset: str, key: str, value: str) -> None: ...

    def dispose(self) -> None: ...
