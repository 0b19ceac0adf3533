"""Feature-store backends behind one protocol; :func:`open_store` picks one from settings."""

from __future__ import annotations

from mlpipeline.settings import Settings
from mlpipeline.store.base import BatchRecord, FeatureStore, IngestOutcome, ProgressCallback, Watermark
from mlpipeline.store.sql import SqlFeatureStore

__all__ = [
    "BatchRecord",
    "FeatureStore",
    "IngestOutcome",
    "ProgressCallback",
    "SqlFeatureStore",
    "Watermark",
    "open_store",
]


def open_store(settings: Settings) -> SqlFeatureStore:
    """The feature store named by ``settings.featurestore_url`` (SQLite, PostgreSQL or IRIS)."""
    return SqlFeatureStore(
        settings.featurestore_url,
        busy_timeout_s=settings.sqlite_busy_timeout_s,
        chunk_rows=settings.ingest_chunk_rows,
    )
