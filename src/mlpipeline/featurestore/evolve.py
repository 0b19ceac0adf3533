"""Definitions that evolve: bring stored tables up to their definitions, additively.

A feature set lives for years; its definition gains a feature, the package gains a
bookkeeping column. :func:`plan_schema` compares every table the definitions describe with the
table the database holds and sorts the differences:

- **additive** (applied by ``mlpipeline init``): a column that is new in the definition or in
  the package and may be NULL. Stored rows hold NULL in it, which training and monitoring treat
  with the feature's ``missing`` policy; bookkeeping columns are filled from what the table
  already knows (``_labelled_batch`` from ``_batch_id``; ``_row_hash`` from the stored values).
- **refused** (never applied): a new feature that may not be missing (stored rows have no value
  for it), a changed type, a column the definition no longer has (removed or renamed), a new
  key. Each comes with the exact manual path, because the store cannot guess what the data
  should become.

Every statement is built from the validated definition and SQLAlchemy's own DDL compiler.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, DateTime, Double, Float, Index, Integer, String, Table, inspect, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateColumn

from mlpipeline.errors import SchemaChangeError
from mlpipeline.featuresets.definition import INTERNAL_COLUMNS, Definition

__all__ = ["AddedColumn", "SchemaPlan", "apply_schema_plan", "check_tables_unique", "plan_schema"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddedColumn:
    table: Table
    column: Column[Any]
    why: str

    def describe(self) -> str:
        return f"{self.table.name}: add column {self.column.name} ({_kind(self.column.type)}; {self.why})"


@dataclass
class SchemaPlan:
    """What ``init`` would do: columns to add, indexes to create, changes it refuses."""

    added: list[AddedColumn] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    created: list[str] = field(default_factory=list)  # tables that do not exist yet

    @property
    def empty(self) -> bool:
        return not (self.added or self.indexes or self.refused)

    def describe(self, *, created: bool = False) -> list[str]:
        """One line per change; ``created`` adds the feature-set tables that will be created."""
        lines = [
            f"{name}: create the table" for name in self.created if created and not name.startswith("mlp_")
        ]
        lines += [a.describe() for a in self.added]
        lines += [f"{ix.table.name}: create index {ix.name}" for ix in self.indexes if ix.table is not None]
        return lines

    def raise_refused(self) -> None:
        if self.refused:
            raise SchemaChangeError("; ".join(self.refused) + "; nothing was changed")

    def raise_pending(self, featureset: str) -> None:
        """For commands other than ``init``: the table must already match the definition."""
        self.raise_refused()
        if self.added:
            names = ", ".join(f"{a.table.name}.{a.column.name}" for a in self.added)
            raise SchemaChangeError(
                f"the stored tables lack column(s) {names} that '{featureset}' now needs: run "
                "'mlpipeline init' to add them (see 'mlpipeline init --dry-run' first)"
            )


def check_tables_unique(definitions: Iterable[Definition]) -> None:
    """Two feature sets may not share a table: each would read the other's rows."""
    owner: dict[str, str] = {}
    for d in definitions:
        if d.table in owner and owner[d.table] != d.name:
            raise SchemaChangeError(
                f"feature sets '{owner[d.table]}' and '{d.name}' both use table '{d.table}'; "
                f'give one of them another table (table = "{d.name}")'
            )
        owner[d.table] = d.name


def plan_schema(engine: Engine, tables: Iterable[Table], definitions: dict[str, Definition]) -> SchemaPlan:
    """Compare ``tables`` with the database. ``definitions``: the feature set of each feature table."""
    plan = SchemaPlan()
    check = inspect(engine)
    for table in tables:
        if not check.has_table(table.name):
            plan.created.append(table.name)  # create_all makes it whole
            continue
        stored = {c["name"]: c for c in check.get_columns(table.name)}
        d = definitions.get(table.name)
        for column in table.columns:
            if column.name in stored:
                kind, was = _kind(column.type), _kind(stored[column.name]["type"])
                if d is not None and kind != was and "?" not in (kind, was):
                    said = d.features[column.name].type if column.name in d.features else kind
                    plan.refused.append(_type_change(d, table, column.name, was, said))
                continue
            if d is not None and column.primary_key:
                plan.refused.append(_new_key(d, table, column.name))
            elif not column.nullable:
                plan.refused.append(_not_null(d, table, column.name))
            else:
                internal = column.name in INTERNAL_COLUMNS or d is None
                why = "bookkeeping" if internal else "new in the definition"
                plan.added.append(AddedColumn(table, column, why))
        new_key = d is not None and any(c.primary_key and c.name not in stored for c in table.columns)
        if d is not None:
            old_key = set(check.get_pk_constraint(table.name).get("constrained_columns") or ())
            for name in stored:
                if name not in table.columns and not (new_key and name in old_key):
                    plan.refused.append(_removed(d, table, name))
        present = {ix["name"] for ix in check.get_indexes(table.name)}
        plan.indexes += [ix for ix in table.indexes if ix.name not in present]
    return plan


def apply_schema_plan(conn: Connection, plan: SchemaPlan, definitions: dict[str, Definition]) -> None:
    """Add the planned columns and indexes, and fill bookkeeping columns; refuses first if needed."""
    plan.raise_refused()
    prep = conn.dialect.identifier_preparer
    for added in plan.added:
        spec = CreateColumn(added.column).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {prep.format_table(added.table)} ADD COLUMN {spec}")
        log.info("column added", extra={"table": added.table.name, "column": added.column.name})
    for ix in plan.indexes:
        ix.create(conn, checkfirst=False)
    for added in plan.added:
        d = definitions.get(added.table.name)
        if d is not None and added.column.name == "_labelled_batch":
            t = added.table
            conn.execute(
                update(t).where(t.c[d.target.column].is_not(None)).values(_labelled_batch=t.c._batch_id)
            )


def _kind(kind: Any) -> str:
    if isinstance(kind, DateTime):
        return "timestamp"
    if isinstance(kind, Double | Float) or kind.__class__.__name__.upper() in ("REAL", "DOUBLE_PRECISION"):
        return "float"
    if isinstance(kind, Integer):
        return "integer"
    if isinstance(kind, String):
        return "text"
    return "?"


def _type_change(d: Definition, table: Table, name: str, was: str, now: str) -> str:
    return (
        f"{d.name}: column '{name}' of table '{table.name}' is stored as {was} but the definition now "
        f"says {now}; keep the old type in the definition, or give the feature set a new table "
        f"(table = \"{table.name}_v2\"), run 'mlpipeline init' and ingest the data again"
    )


def _removed(d: Definition, table: Table, name: str) -> str:
    return (
        f"{d.name}: table '{table.name}' holds column '{name}' that the definition no longer has "
        f"(removed or renamed); put it back in the definition, or, to drop its values for good, run "
        f"ALTER TABLE {table.name} DROP COLUMN {name} in the database and 'mlpipeline init' again"
    )


def _new_key(d: Definition, table: Table, name: str) -> str:
    return (
        f"{d.name}: the key column is now '{name}', but table '{table.name}' is keyed on another "
        f"column; a key cannot change in place: give the feature set a new table "
        f"(table = \"{table.name}_v2\"), run 'mlpipeline init' and ingest the data again"
    )


def _not_null(d: Definition | None, table: Table, name: str) -> str:
    if d is None:
        return f"table '{table.name}' lacks the required column '{name}'; recreate it with 'mlpipeline init'"
    if name not in d.features:  # the event time: every stored row would need one
        return (
            f"{d.name}: '{name}' is new as the event time, and the rows already in '{table.name}' have "
            f"no time; an event time cannot be added to a table that holds rows: give the feature set "
            f"a new table (table = \"{table.name}_v2\"), run 'mlpipeline init' and ingest the data "
            "again with the time column"
        )
    return (
        f"{d.name}: feature '{name}' is new but may not be missing (missing = 'error'), and a column "
        f"added to the existing table '{table.name}' has no value in the rows stored before; set "
        f"missing = 'native' or missing = 'constant' with a fill_value in [features.{name}], then run "
        f"'mlpipeline init' (or, if '{table.name}' holds nothing you need, drop it and run init)"
    )
