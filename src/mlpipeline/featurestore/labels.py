"""Labels that arrive after their rows: attached by key, in one transaction, corrections audited.

In continuous training the label is known days after the row (was the patient readmitted, did
the delivery arrive late). :func:`attach_labels` takes a validated labels frame (key, target,
optionally label time), and in one transaction:

1. records a label batch in the batch ledger;
2. writes the labels into ``mlp_label_staging`` in bulk (COPY on PostgreSQL);
3. refuses the whole file if any key is not stored, or if a stored label differs and
   ``relabel`` was not asked for (each refusal names the keys, first rows and count);
4. with ``relabel``, copies every replaced label (old, new, when, batch) to ``mlp_label_audit``;
5. updates the rows whose label is missing or replaced with one ``UPDATE … WHERE key IN
   (SELECT …)``, which costs in proportion to the labels, not to the table; the rows' label
   batch (``_labelled_batch``) becomes this batch, so monitoring's watermark sees them exactly
   as it sees labels that came with their rows;
6. clears its staging rows.

A file whose every label is already stored (the same file again, say) changes nothing, leaves no
batch behind and says so; after a correction, the original file is a conflict like any other.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    DateTime,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from mlpipeline.errors import DataValidationError, Problem
from mlpipeline.featuresets.definition import Definition
from mlpipeline.featuresets.keys import KEY_SEPARATOR
from mlpipeline.featurestore.base import BatchRecord
from mlpipeline.featurestore.ingest import content_hash, read_batch_file
from mlpipeline.featurestore.rowhash import row_hashes
from mlpipeline.featurestore.validation import validate_labels

if TYPE_CHECKING:
    from mlpipeline.featurestore.sql import SqlFeatureStore

__all__ = ["LabelOutcome", "attach_labels", "label_file"]

log = logging.getLogger(__name__)

#: Keys and rows an error message shows.
_SHOWN = 5


@dataclass(frozen=True)
class LabelOutcome:
    """What a labels file did. ``batch`` is ``None`` when nothing changed."""

    batch: BatchRecord | None
    rows: int
    labelled: int = 0
    relabelled: int = 0
    unchanged: int = 0
    duplicate_of: BatchRecord | None = None

    @property
    def changed(self) -> int:
        return self.labelled + self.relabelled


class _NothingChangedError(Exception):
    def __init__(self, unchanged: int) -> None:
        super().__init__("every label is already stored")
        self.unchanged = unchanged


def label_file(store: SqlFeatureStore, d: Definition, path: Path, *, relabel: bool = False) -> LabelOutcome:
    """Read a CSV, Parquet or JSON-lines file of keys and labels, validate it and attach it."""
    labels = validate_labels(read_batch_file(path, d), d, source=str(path))
    return attach_labels(store, d, labels, source=str(path), relabel=relabel)


def attach_labels(
    store: SqlFeatureStore,
    d: Definition,
    labels: pd.DataFrame,
    *,
    source: str,
    relabel: bool = False,
    now: datetime | None = None,
) -> LabelOutcome:
    """Attach validated ``labels`` (see :func:`~mlpipeline.featurestore.validation.validate_labels`)."""
    from mlpipeline.featurestore.sql import utcnow

    now = now or utcnow()
    # Labels are compared with what is stored, never skipped by their file's hash: the same file
    # may rightly be sent again after a correction. The ledger entry is unique per attachment.
    digest = hashlib.sha256(f"{content_hash(d, labels)}:{now.isoformat()}".encode()).hexdigest()
    n = len(labels.index)
    try:
        with store.guarded(f"attach labels to '{d.table}'"), store.transaction() as conn:
            b = store.tables.batches
            batch_id = int(
                conn.execute(
                    insert(b).values(
                        featureset=d.name,
                        content_sha256=digest,
                        source=source[:1024],
                        row_count=n,
                        ingested_at=now,
                        kind="labels",
                        definition_sha256=d.content_hash,
                        skipped_rows=0,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )
            _stage(store, conn, d, labels, batch_id, now)
            counts = _apply(store, conn, d, batch_id, source=source, relabel=relabel, now=now)
            if d.entity_key.generate:
                _refingerprint(store, conn, d, batch_id)
            # Every label transaction empties the staging table before it commits, so it holds only
            # this batch's rows (other transactions' uncommitted rows are invisible to it): a plain
            # DELETE with no condition, which SQLite runs as a truncation and PostgreSQL without
            # an index lookup per row.
            conn.execute(delete(store.staging_for(d)))
            labelled, relabelled, unchanged = counts
            if labelled + relabelled == 0:
                raise _NothingChangedError(unchanged)
    except _NothingChangedError as nothing:
        return LabelOutcome(batch=None, rows=n, unchanged=nothing.unchanged)
    record = BatchRecord(batch_id, d.name, digest, source, n, now)
    log.info(
        "labels attached",
        extra={
            "featureset": d.name,
            "batch_id": batch_id,
            "labelled": labelled,
            "relabelled": relabelled,
            "unchanged": unchanged,
            "source": source,
        },
    )
    return LabelOutcome(record, n, labelled, relabelled, unchanged)


def _stage(
    store: SqlFeatureStore, conn: Any, d: Definition, labels: pd.DataFrame, batch_id: int, now: datetime
) -> None:
    n = len(labels.index)
    # In key order, so the staging index and the join with the feature table's primary key are
    # walked in order rather than at random (several times faster for a million labels).
    ordered = labels.assign(_position=np.arange(1, n + 1)).sort_values(list(d.key_columns), kind="stable")
    labels = ordered.reset_index(drop=True)
    columns: dict[str, Any] = {"batch_id": [batch_id] * n, "position": labels["_position"].tolist()}
    for key in d.key_columns:
        columns[key] = labels[key]
    columns["target"] = labels[d.target.column]
    if d.label_time:
        columns["label_time"] = labels[d.label_time].fillna(pd.Timestamp(now)).astype("datetime64[us]")
    store.bulk_insert(conn, store.staging_for(d), columns, n)


def _refingerprint(store: SqlFeatureStore, conn: Any, d: Definition, batch_id: int) -> None:
    """A row's fingerprint covers its label: refresh it for the rows just labelled, so an
    export that re-sends them with their label is recognised as already stored."""
    from mlpipeline.featurestore.sql import frame_of_rows

    t = store.table_for(d)
    key = d.key_columns[0]
    result = conn.execute(select(t).where(t.c._labelled_batch == batch_id))
    frame = frame_of_rows(d, list(result.keys()), result.all())
    if frame.empty:
        return
    hashes = row_hashes(d, frame).tolist()
    statement = update(t).where(t.c[key] == bindparam("b_key")).values(_row_hash=bindparam("b_hash"))
    keys = frame[key].astype("int64").tolist()
    chunk = store.chunk_rows
    for lo in range(0, len(keys), chunk):
        pairs = zip(keys[lo : lo + chunk], hashes[lo : lo + chunk], strict=True)
        conn.execute(statement, [{"b_key": k, "b_hash": h} for k, h in pairs])


def update_from_supported(dialect: str) -> bool:
    """Whether ``UPDATE … FROM`` is used (SQLite, PostgreSQL); other dialects get standard SQL."""
    return dialect in ("sqlite", "postgresql")


def key_text_sql(columns: list[Any]) -> Any:
    """The key as text in SQL, as :func:`mlpipeline.featuresets.keys.key_text` writes it."""
    text: Any = cast(columns[0], String)
    for column in columns[1:]:
        text = text + literal(KEY_SEPARATOR, String) + cast(column, String)
    return text


def _apply(
    store: SqlFeatureStore,
    conn: Any,
    d: Definition,
    batch_id: int,
    *,
    source: str,
    relabel: bool,
    now: datetime,
) -> tuple[int, int, int]:
    """Check the staged labels against the stored rows, audit, update; (labelled, relabelled, unchanged)."""
    t = store.table_for(d)
    s = store.staging_for(d)
    keys = list(d.key_columns)
    same_key = and_(*(s.c[k] == t.c[k] for k in keys))
    target = t.c[d.target.column]
    mine = s.c.batch_id == batch_id
    joined = s.join(t, same_key)
    skeys = [s.c[k] for k in keys]

    def shown_keys(rows: list[Any]) -> str:
        return ", ".join(repr(r[1] if len(keys) == 1 else tuple(r[1 : 1 + len(keys)])) for r in rows)

    # One pass over the staged labels: how many are unknown, new, the same, or different.
    outer = s.outerjoin(t, same_key)
    stored = t.c[keys[0]]
    tally = conn.execute(
        select(
            func.count(),
            func.sum(case((stored.is_(None), 1), else_=0)),
            func.sum(case((and_(stored.is_not(None), target.is_(None)), 1), else_=0)),
            func.sum(case((target == s.c.target, 1), else_=0)),
            func.sum(case((target != s.c.target, 1), else_=0)),
        )
        .select_from(outer)
        .where(mine)
    ).one()
    n_unknown, missing, unchanged, n_conflict = (int(v or 0) for v in tally[1:])
    if n_unknown:
        unknown = and_(mine, stored.is_(None))
        rows = conn.execute(
            select(s.c.position, *skeys)
            .select_from(outer)
            .where(unknown)
            .order_by(s.c.position)
            .limit(_SHOWN)
        ).all()
        raise DataValidationError(
            [
                Problem(
                    ", ".join(keys),
                    "stored key",
                    f"{n_unknown:,} key(s) are not stored ({shown_keys(rows)}); "
                    "ingest those rows first, or remove them from the labels file",
                    [int(r[0]) for r in rows],
                    n_unknown,
                )
            ],
            source=source,
        )
    if d.label_time and d.event_time:
        early = and_(mine, s.c.label_time < t.c[d.event_time])
        n_early = conn.execute(select(func.count()).select_from(joined).where(early)).scalar_one()
        if n_early:
            positions = (
                conn.execute(
                    select(s.c.position).select_from(joined).where(early).order_by(s.c.position).limit(_SHOWN)
                )
                .scalars()
                .all()
            )
            raise DataValidationError(
                [
                    Problem(
                        d.label_time,
                        "order",
                        f"{n_early:,} label(s) arrive before their row's {d.event_time}; fix the times",
                        [int(p) for p in positions],
                        int(n_early),
                    )
                ],
                source=source,
            )
    conflict = and_(mine, target.is_not(None), target != s.c.target)
    if n_conflict and not relabel:
        rows = conn.execute(
            select(s.c.position, *skeys, target, s.c.target)
            .select_from(joined)
            .where(conflict)
            .order_by(s.c.position)
            .limit(_SHOWN)
        ).all()
        pairs = ", ".join(f"{shown_keys([r])}: stored {r[-2]:g}, file {r[-1]:g}" for r in rows)
        raise DataValidationError(
            [
                Problem(
                    d.target.column,
                    "relabel",
                    f"{n_conflict:,} key(s) already have another label ({pairs}); pass --relabel to "
                    "replace them (each change is audited), or remove them from the file",
                    [int(r[0]) for r in rows],
                    n_conflict,
                )
            ],
            source=source,
        )
    if n_conflict:
        audit = store.tables.label_audit
        conn.execute(
            insert(audit).from_select(
                ["featureset", "entity_key", "old_value", "new_value", "batch_id", "relabelled_at", "source"],
                select(
                    literal(d.name, String),
                    key_text_sql(skeys),
                    target,
                    s.c.target,
                    literal(batch_id),
                    literal(now, DateTime),
                    literal(source[:1024], String),
                )
                .select_from(joined)
                .where(conflict),
            )
        )
    changes: Any = target.is_(None)
    if relabel:
        changes = or_(changes, target != s.c.target)
    if update_from_supported(conn.dialect.name):
        # UPDATE … FROM: one join of the staged labels with the rows, each row written once.
        values: dict[str, Any] = {d.target.column: s.c.target, "_labelled_batch": batch_id}
        if d.label_time:
            values[d.label_time] = s.c.label_time
        conn.execute(update(t).where(mine, same_key, changes).values(values))
    else:
        # Standard SQL for the other dialects: the leading key column narrows the update to the
        # labelled rows through the primary key's index; scalar subqueries fetch the values.
        staged = select(s.c.target).where(mine, same_key).scalar_subquery()
        values = {d.target.column: staged, "_labelled_batch": batch_id}
        if d.label_time:
            values[d.label_time] = select(s.c.label_time).where(mine, same_key).scalar_subquery()
        fallback: Any = target.is_(None)
        if relabel:
            fallback = or_(fallback, target != staged)
        lead = t.c[keys[0]]
        conn.execute(
            update(t)
            .where(lead.in_(select(s.c[keys[0]]).where(mine)), staged.is_not(None), fallback)
            .values(values)
        )
    return missing, n_conflict, unchanged
