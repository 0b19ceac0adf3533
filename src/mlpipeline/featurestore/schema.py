"""Table layouts: the feature-set table (from a validated definition) and the pipeline's own.

Every identifier comes from a validated :class:`~mlpipeline.featuresets.definition.Definition` or
from the constants below, never from raw input. Types are SQLAlchemy's generic ones so
the same metadata creates the schema on SQLite, PostgreSQL and IRIS.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeEngine

from mlpipeline.featuresets.definition import MAX_TEXT_LENGTH, Definition

__all__ = ["PipelineTables", "feature_table", "label_staging_table", "pipeline_tables"]

TEXT_LENGTH = MAX_TEXT_LENGTH


class PipelineTables:
    """The pipeline's own tables, shared by every feature set (rows carry the feature-set name)."""

    def __init__(self, metadata: MetaData) -> None:
        self.batches = Table(
            "mlp_batches",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("featureset", String(64), nullable=False),
            Column("content_sha256", String(64), nullable=False),
            Column("source", String(1024), nullable=False),
            Column("row_count", Integer, nullable=False),
            Column("ingested_at", DateTime, nullable=False),
            # "rows" (ingest) or "labels" (labels attached to stored rows); NULL: before labels.
            Column("kind", String(16), nullable=True),
            # sha256 of the definition the batch was validated with (Definition.content_hash).
            Column("definition_sha256", String(64), nullable=True),
            # Rows of the file that were already stored and so not written again.
            Column("skipped_rows", Integer, nullable=True),
            UniqueConstraint("featureset", "content_sha256", name="uq_mlp_batches_hash"),
        )
        # Every label that replaced another one (``mlpipeline label --relabel``).
        self.label_audit = Table(
            "mlp_label_audit",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("featureset", String(64), nullable=False),
            Column("entity_key", String(TEXT_LENGTH), nullable=False),
            Column("old_value", Double, nullable=True),
            Column("new_value", Double, nullable=False),
            Column("batch_id", Integer, nullable=False),
            Column("relabelled_at", DateTime, nullable=False),
            Column("source", String(1024), nullable=False),
            Index("ix_mlp_label_audit_key", "featureset", "entity_key"),
        )
        self.prediction_log = Table(
            "mlp_prediction_log",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("featureset", String(64), nullable=False),
            Column("entity_key", String(TEXT_LENGTH), nullable=True),
            Column("model_version", String(32), nullable=False),
            Column("prediction", Double, nullable=False),
            Column("predicted_at", DateTime, nullable=False),
            Index("ix_mlp_prediction_log_key", "featureset", "entity_key"),
            Index("ix_mlp_prediction_log_time", "featureset", "predicted_at"),
        )
        self.monitoring = Table(
            "mlp_monitoring",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("featureset", String(64), nullable=False),
            Column("model_version", String(32), nullable=True),
            Column("checked_at", DateTime, nullable=False),
            Column("n_rows", Integer, nullable=False),
            Column("r2", Double, nullable=True),
            Column("rmse", Double, nullable=True),
            Column("mae", Double, nullable=True),
            Column("details_json", Text, nullable=True),
            Index("ix_mlp_monitoring_fs_time", "featureset", "checked_at"),
        )
        self.production_pointer = Table(
            "mlp_production_pointer",
            metadata,
            Column("featureset", String(64), primary_key=True),
            Column("model_name", String(255), nullable=False),
            Column("model_version", String(32), nullable=False),
            Column("run_id", String(64), nullable=False),
            Column("model_uri", String(1024), nullable=False),
            Column("local_path", String(1024), nullable=True),
            Column("sha256", String(64), nullable=False),
            Column("metrics_json", Text, nullable=True),
            Column("promoted_at", DateTime, nullable=False),
            Column("promoted_by", String(255), nullable=False),
            Column("reason", String(1024), nullable=False),
        )
        self.promotion_history = Table(
            "mlp_promotion_history",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("featureset", String(64), nullable=False),
            Column("action", String(32), nullable=False),
            Column("model_name", String(255), nullable=False),
            Column("from_version", String(32), nullable=True),
            Column("to_version", String(32), nullable=True),
            Column("run_id", String(64), nullable=True),
            Column("acted_at", DateTime, nullable=False),
            Column("actor", String(255), nullable=False),
            Column("reason", String(1024), nullable=False),
            Column("metrics_json", Text, nullable=True),
            Index("ix_mlp_promotion_history_fs", "featureset", "acted_at"),
        )
        self.state = Table(
            "mlp_state",
            metadata,
            Column("featureset", String(64), nullable=False),
            Column("state_key", String(64), nullable=False),
            Column("state_value", Text, nullable=False),
            Column("updated_at", DateTime, nullable=False),
            PrimaryKeyConstraint("featureset", "state_key", name="pk_mlp_state"),
        )
        # Optuna's journal of each tuning study: append-only, numbered from 0 per study.
        self.tuning_journal = Table(
            "mlp_tuning_journal",
            metadata,
            Column("featureset", String(64), nullable=False),
            Column("study", String(100), nullable=False),
            Column("log_number", BigInteger, nullable=False),
            Column("log_entry", Text, nullable=False),
            PrimaryKeyConstraint("featureset", "study", "log_number", name="pk_mlp_tuning_journal"),
        )


def pipeline_tables(metadata: MetaData) -> PipelineTables:
    return PipelineTables(metadata)


def _column_type(kind: str) -> TypeEngine[object]:
    if kind == "float":
        return Double()
    if kind == "integer":
        return BigInteger()  # type: ignore[return-value]
    return String(TEXT_LENGTH)  # type: ignore[return-value]


def _key_type(d: Definition, name: str) -> TypeEngine[Any]:
    if name == d.event_time:  # a date that names the row (one row per day): a timestamp key
        return DateTime()
    return BigInteger() if d.entity_key.type_of(name) == "integer" else String(TEXT_LENGTH)


def label_staging_table(d: Definition, metadata: MetaData) -> Table:
    """Labels on their way in (``mlpipeline label``): written in bulk, joined to the feature table
    on the key, then deleted, all in the transaction of one label batch. One per feature set,
    so the key columns keep their names and types (and composite keys join column by column)."""
    name = f"mlp_labels_{d.table}"
    if len(name) > 63:
        name = f"mlp_labels_{d.table[:40]}_{hashlib.sha256(d.table.encode()).hexdigest()[:8]}"
    cols: list[Column[Any]] = [
        Column("batch_id", Integer, nullable=False),
        Column("position", Integer, nullable=False),
    ]
    cols += [Column(k, _key_type(d, k), nullable=False) for k in d.key_columns]
    cols.append(Column("target", Double, nullable=False))
    cols.append(Column("label_time", DateTime, nullable=True))
    # Keyed on the entity key (a labels file never names a key twice): the one index both the
    # join with the feature table and the standard-SQL lookups use. ``position`` is the row in
    # the file, for error messages.
    return Table(
        name, metadata, *cols, PrimaryKeyConstraint("batch_id", *d.key_columns, name=f"pk_{name}"[:63])
    )


def feature_table(d: Definition, metadata: MetaData) -> Table:
    """The feature-set table: key, times, features, target and two bookkeeping columns."""
    key = d.entity_key
    cols: list[Column[object]] = [
        Column(name, _key_type(d, name), primary_key=True, autoincrement=False) for name in d.key_columns
    ]
    indexes: list[Index] = []
    if d.event_time:
        if d.event_time not in d.key_columns:
            cols.append(Column(d.event_time, DateTime, nullable=False))
        indexes.append(Index(f"ix_{d.table}_event", d.event_time))
    if d.label_time:
        cols.append(Column(d.label_time, DateTime, nullable=True))
        indexes.append(Index(f"ix_{d.table}_label", d.label_time))
    for name, spec in d.features.items():
        cols.append(Column(name, _column_type(spec.type), nullable=spec.missing != "error"))
    cols.append(Column(d.target.column, Double, nullable=True))
    cols.append(Column("_batch_id", Integer, nullable=False))
    cols.append(Column("_ingested_at", DateTime, nullable=False))
    # The batch whose label is the row's current one: its own batch when the label came with
    # the row, a label batch when it came later (monitoring's watermark reads this).
    cols.append(Column("_labelled_batch", Integer, nullable=True))
    indexes.append(Index(f"ix_{d.table}_batch", "_batch_id"))
    indexes.append(Index(f"ix_{d.table}_labelled", "_labelled_batch"))
    if key.generate:
        # 64-bit hash of every stored column: a re-sent row (overlapping exports) is skipped.
        cols.append(Column("_row_hash", BigInteger, nullable=True))
        indexes.append(Index(f"ix_{d.table}_rowhash", "_row_hash"))
    return Table(d.table, metadata, *cols, *indexes)
