"""The IRIS-native copy of a feature set: ``MLpipeline.FeatureStore`` for ``housing``.

The pipeline keeps each feature set in the table its definition names (``SQLUser.housing``
in IRIS), through the same SQLAlchemy code as on SQLite and PostgreSQL. The persistent
class ``MLpipeline.FeatureStore`` (``iris/src/MLpipeline/FeatureStore.cls``) is the same
rows as IRIS objects: a key index, time and batch indices, and the derived features as
*stored computed properties* that IRIS computes on insert with the definition's
expressions, for SQL users, BI tools and IntegratedML. Its properties carry the
definition's column names (``SqlFieldName``) plus ``batch_id`` and ``ingested_at``.

:func:`refresh_projection` copies every batch of the pipeline's table that the class's
table lacks, one ``INSERT … SELECT … WHERE _batch_id = ?`` per batch in one transaction:
it is idempotent, catches up after a failure, and also picks up batches ingested with
the CLI. On a store without that table (SQLite, PostgreSQL) it reports that and does nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Double,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from mlpipeline.featuresets.definition import MAX_TEXT_LENGTH, Definition
from mlpipeline.featurestore.sql import SqlFeatureStore

__all__ = ["PROJECTIONS", "copy_labels", "projection_table", "refresh_projection"]

#: Feature set -> (schema, table) of its persistent class in IRIS.
PROJECTIONS: dict[str, tuple[str, str]] = {"housing": ("MLpipeline", "FeatureStore")}


def projection_table(d: Definition, schema: str, name: str) -> Table:
    """The columns the copy writes: the definition's raw columns, ``batch_id`` and ``ingested_at``.

    The derived columns are left out on purpose: IRIS computes them (``SqlComputed``).
    """
    cols: list[Column[Any]] = []
    for column in d.raw_columns:
        if column in d.key_columns and column != d.event_time:
            kind: Any = BigInteger if d.entity_key.type_of(column) == "integer" else String(MAX_TEXT_LENGTH)
        elif column in (d.event_time, d.label_time):
            kind = DateTime
        elif column in d.features and d.features[column].type == "categorical":
            kind = String(MAX_TEXT_LENGTH)
        elif column in d.features and d.features[column].type == "integer":
            kind = BigInteger
        else:
            kind = Double
        cols.append(Column(column, kind))
    cols += [Column("batch_id", Integer), Column("ingested_at", DateTime)]
    return Table(name, MetaData(), *cols, schema=schema)


def _exists(store: SqlFeatureStore, schema: str, name: str) -> bool:
    try:
        return bool(inspect(store.engine).has_table(name, schema=schema))
    except SQLAlchemyError:  # e.g. SQLite: no attached database of that name
        return False


def refresh_projection(store: SqlFeatureStore, d: Definition) -> dict[str, Any]:
    """Copy the batches the IRIS class's table lacks; returns what was copied or why nothing was."""
    target = PROJECTIONS.get(d.name)
    if target is None:
        return {"skipped": f"'{d.name}' has no IRIS persistent class"}
    schema, name = target
    if not _exists(store, schema, name):
        return {"skipped": f"table {schema}.{name} does not exist in this store (it is created in IRIS)"}
    dst = projection_table(d, schema, name)
    src = store.table_for(d)
    batches_table = store.tables.batches
    source_columns = [src.c[c] for c in d.raw_columns] + [src.c["_batch_id"], src.c["_ingested_at"]]
    copied: list[int] = []
    rows = 0
    with store.guarded(f"copy new batches into {schema}.{name}"), store.transaction() as conn:
        present = set(conn.execute(select(dst.c.batch_id).distinct()).scalars())
        known = conn.execute(
            select(batches_table.c.id)
            .where(batches_table.c.featureset == d.name)
            .order_by(batches_table.c.id)
        ).scalars()
        for batch_id in known:
            if batch_id in present:
                continue
            result = conn.execute(
                dst.insert().from_select(
                    [dst.c[c.name if not c.name.startswith("_") else c.name[1:]] for c in source_columns],
                    select(*source_columns).where(src.c["_batch_id"] == batch_id),
                )
            )
            copied.append(int(batch_id))
            rows += max(result.rowcount or 0, 0)
    return {"table": f"{schema}.{name}", "batches": copied, "rows": rows}


def copy_labels(store: SqlFeatureStore, d: Definition, batch_id: int) -> dict[str, Any]:
    """Bring the labels of one label batch into the IRIS class's table (target, label time).

    One ``UPDATE … WHERE key IN (SELECT key … WHERE _labelled_batch = ?)``: rows the copy does
    not hold yet get their label when :func:`refresh_projection` copies their batch.
    """
    target = PROJECTIONS.get(d.name)
    if target is None:
        return {"skipped": f"'{d.name}' has no IRIS persistent class"}
    schema, name = target
    if not _exists(store, schema, name):
        return {"skipped": f"table {schema}.{name} does not exist in this store (it is created in IRIS)"}
    dst = projection_table(d, schema, name)
    src = store.table_for(d)
    keys = d.key_columns
    same = and_(*(src.c[k] == dst.c[k] for k in keys))
    columns = [d.target.column] + ([d.label_time] if d.label_time else [])
    values = {c: select(src.c[c]).where(same).scalar_subquery() for c in columns}
    labelled = select(src.c[keys[0]]).where(src.c["_labelled_batch"] == batch_id)
    with store.guarded(f"copy labels into {schema}.{name}"), store.transaction() as conn:
        result = conn.execute(update(dst).where(dst.c[keys[0]].in_(labelled)).values(values))
    return {"table": f"{schema}.{name}", "labels": max(result.rowcount or 0, 0)}
