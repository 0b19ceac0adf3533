"""The SQL feature store: one SQLAlchemy 2 Core code path for SQLite, PostgreSQL and IRIS.

Writes happen in one transaction per batch (a bad batch writes nothing). SQLite runs
in WAL mode with a busy timeout and takes its write lock at the start of a write
transaction (``BEGIN IMMEDIATE``), so two writers queue instead of deadlocking. All
statements are built with SQLAlchemy constructs and bound parameters; identifiers come
only from validated definitions.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from mlpipeline.errors import ConfigError, DataValidationError, Problem, StoreError, StoreUnavailableError
from mlpipeline.featuresets.definition import Definition
from mlpipeline.featurestore.base import BatchRecord, IngestOutcome, ProgressCallback, Watermark
from mlpipeline.featurestore.evolve import SchemaPlan, apply_schema_plan, check_tables_unique, plan_schema
from mlpipeline.featurestore.rowhash import row_hashes
from mlpipeline.featurestore.schema import PipelineTables, feature_table, label_staging_table
from mlpipeline.settings import Settings

__all__ = ["SqlFeatureStore", "open_store", "utcnow"]

log = logging.getLogger(__name__)

#: Keys looked up per statement when reporting clashes with stored rows.
_KEY_LOOKUP_CHUNK = 900


def utcnow() -> datetime:
    """Naive UTC now: every timestamp in the store is naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


class SqlFeatureStore:
    """A :class:`~mlpipeline.featurestore.base.FeatureStore` on any SQLAlchemy dialect."""

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0, chunk_rows: int = 50_000) -> None:
        self.url = url
        self.chunk_rows = chunk_rows
        self.engine = _make_engine(url, busy_timeout_s)
        self.metadata = MetaData()
        self.tables = PipelineTables(self.metadata)
        self._own_tables = list(
            self.metadata.sorted_tables
        )  # the pipeline's tables, before any feature set's
        self._feature_tables: dict[str, Table] = {}
        self._staging_tables: dict[str, Table] = {}
        self._definitions: dict[str, Definition] = {}  # the feature set of each table made here
        self._checked: set[str] = set()  # definitions whose tables were found up to date

    # -- schema -------------------------------------------------------------------------

    def table_for(self, d: Definition) -> Table:
        table = self._feature_tables.get(d.name)
        if table is None:
            check_tables_unique([*self._definitions.values(), d])
            self._definitions[d.name] = d
            table = feature_table(d, self.metadata)
            self._feature_tables[d.name] = table
            self._staging_tables[d.name] = label_staging_table(d, self.metadata)
        return table

    def staging_for(self, d: Definition) -> Table:
        """The table that labels pass through on their way to ``d``'s rows."""
        self.table_for(d)
        return self._staging_tables[d.name]

    def create_schema(self, definitions: list[Definition]) -> None:
        """Create missing tables; an existing table must already match its definition.

        A table that lacks columns its definition (or this version of the package) needs is
        not changed here: :class:`SchemaChangeError` says to run ``mlpipeline init``, which
        calls :meth:`evolve_schema`. Checked once per store object and definition.
        """
        check_tables_unique([*self._definitions.values(), *definitions])
        tables = [self.table_for(d) for d in definitions]
        tables += [self.staging_for(d) for d in definitions]
        own = self._own_tables
        with self.guarded("create the schema"):
            self.metadata.create_all(self.engine, tables=own + tables, checkfirst=True)
            unchecked = [d for d in definitions if d.content_hash not in self._checked]
            if unchecked:
                plan = self.plan_schema(unchecked)
                plan.raise_pending(", ".join(d.name for d in unchecked))
                self._checked.update(d.content_hash for d in unchecked)
        log.info("schema ready", extra={"tables": [t.name for t in own + tables]})

    def plan_schema(self, definitions: list[Definition]) -> SchemaPlan:
        """What :meth:`evolve_schema` would change for ``definitions`` (nothing is written)."""
        check_tables_unique([*self._definitions.values(), *definitions])
        by_table = {self.table_for(d).name: d for d in definitions}
        own = self._own_tables
        with self.guarded("inspect the schema"):
            return plan_schema(self.engine, own + [self.table_for(d) for d in definitions], by_table)

    def evolve_schema(self, definitions: list[Definition], *, dry_run: bool = False) -> SchemaPlan:
        """Apply additive changes (new nullable columns, their indexes and bookkeeping values).

        Refused changes raise :class:`SchemaChangeError` before anything is written; with
        ``dry_run`` the plan is returned and nothing is changed.
        """
        plan = self.plan_schema(definitions)
        plan.raise_refused()
        if dry_run or plan.empty:
            return plan
        by_table = {self.table_for(d).name: d for d in definitions}
        with self.guarded("change the schema"), self.transaction() as conn:
            apply_schema_plan(conn, plan, by_table)
        for added in plan.added:
            if added.column.name == "_row_hash" and added.table.name in by_table:
                self._backfill_row_hashes(by_table[added.table.name])
        return plan

    def _backfill_row_hashes(self, d: Definition) -> None:
        """Fingerprint the rows stored before ``_row_hash`` existed, so new batches skip them."""
        t = self.table_for(d)
        frame = self._frame(d, select(t), "read rows to fingerprint")
        if frame.empty:
            return
        (key,) = d.key_columns  # generated keys are one column
        hashes = row_hashes(d, frame).tolist()
        keys = frame[key].astype("int64").tolist()
        statement = update(t).where(t.c[key] == bindparam("b_key")).values(_row_hash=bindparam("b_hash"))
        with self.guarded("fingerprint stored rows"), self.transaction() as conn:
            for lo in range(0, len(keys), self.chunk_rows):
                chunk = zip(keys[lo : lo + self.chunk_rows], hashes[lo : lo + self.chunk_rows], strict=True)
                conn.execute(statement, [{"b_key": k, "b_hash": h} for k, h in chunk])
        log.info("stored rows fingerprinted", extra={"featureset": d.name, "rows": len(keys)})

    def forget(self, d: Definition) -> int:
        """Delete every row and record of feature set ``d`` (its table stays); returns the rows.

        For starting a feature set afresh (``mlpipeline demo`` run again); one transaction, so
        a failure leaves everything as it was.
        """
        own = self.tables
        records = [
            own.batches,
            own.monitoring,
            own.state,
            own.production_pointer,
            own.promotion_history,
            own.prediction_log,
            own.label_audit,
            own.tuning_journal,
        ]
        table = self.table_for(d)
        with self.guarded(f"remove the data of '{d.name}'"), self.transaction() as conn:
            rows = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            conn.execute(delete(table))
            for record in records:
                conn.execute(delete(record).where(record.c.featureset == d.name))
        log.info("feature set emptied", extra={"featureset": d.name, "rows": rows})
        return rows

    def has_table(self, d: Definition) -> bool:
        """Whether both the feature-set table and the pipeline tables exist."""
        with self.guarded("inspect the schema"):
            check = inspect(self.engine)
            return check.has_table(d.table) and check.has_table(self.tables.batches.name)

    # -- ingest -------------------------------------------------------------------------

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
        table = self.table_for(d)
        batches = self.tables.batches
        now = utcnow()
        skipped = 0
        generated: tuple[int, int] | None = None
        with self.guarded(f"ingest into '{d.table}'"):
            try:
                with self.transaction() as conn:
                    existing = self._find_batch(conn, d.name, content_sha256)
                    if existing is not None:
                        if strict:
                            raise _already_ingested(existing, source)
                        return IngestOutcome(batch=existing, written=0, duplicate_of=existing)
                    extra: dict[str, list[Any]] = {}
                    if d.entity_key.generate:
                        hashes = row_hashes(d, frame)
                        stored = self._stored_hashes(conn, table, hashes)
                        if stored.any():
                            skipped = int(stored.sum())
                            if strict:
                                raise _already_stored(stored, source)
                            frame, hashes = frame.loc[~stored].reset_index(drop=True), hashes[~stored]
                            if frame.empty:  # every row is stored already: record no empty batch
                                return IngestOutcome(batch=None, written=0, skipped_rows=skipped)
                        extra["_row_hash"] = hashes.tolist()
                    batch_id = conn.execute(
                        insert(batches).values(
                            featureset=d.name,
                            content_sha256=content_sha256,
                            source=source[:1024],
                            row_count=len(frame.index),
                            ingested_at=now,
                            kind="rows",
                            definition_sha256=d.content_hash,
                            skipped_rows=skipped,
                        )
                    ).inserted_primary_key[0]  # type: ignore[index]
                    if d.entity_key.generate:
                        keycol = table.c[d.key_columns[0]]
                        start = int(conn.execute(select(func.max(keycol))).scalar() or 0)
                        frame = frame.copy()
                        keys = np.arange(start + 1, start + 1 + len(frame.index), dtype=np.int64)
                        frame.insert(0, d.key_columns[0], keys)
                        if len(keys):
                            generated = (int(keys[0]), int(keys[-1]))
                    labelled = frame[d.target.column].notna().tolist()
                    extra["_labelled_batch"] = [batch_id if has else None for has in labelled]
                    self._write_rows(conn, table, frame, batch_id, now, progress, extra=extra)
            except IntegrityError as exc:
                with self.engine.connect() as conn:
                    existing = self._find_batch(conn, d.name, content_sha256)
                if existing is not None:  # the same batch committed concurrently
                    return IngestOutcome(batch=existing, written=0, duplicate_of=existing)
                raise self._clash_report(d, frame, source) from exc
            record = BatchRecord(batch_id, d.name, content_sha256, source, len(frame.index), now)
        log.info(
            "batch ingested",
            extra={
                "featureset": d.name,
                "batch_id": batch_id,
                "rows": len(frame.index),
                "skipped_rows": skipped,
                "source": source,
            },
        )
        unlabelled = int(frame[d.target.column].isna().sum())
        return IngestOutcome(
            batch=record,
            written=len(frame.index),
            skipped_rows=skipped,
            unlabelled_rows=unlabelled,
            generated_keys=generated,
        )

    def _stored_hashes(self, conn: Connection, table: Table, hashes: npt.NDArray[np.int64]) -> Any:
        """A boolean mask: which of ``hashes`` an earlier batch already stored."""
        column = table.c["_row_hash"]
        unique = np.unique(hashes)
        found: set[int] = set()
        for lo in range(0, unique.size, _KEY_LOOKUP_CHUNK):
            chunk = unique[lo : lo + _KEY_LOOKUP_CHUNK].tolist()
            found.update(int(v) for v in conn.execute(select(column).where(column.in_(chunk))).scalars())
        if not found:
            return np.zeros(hashes.size, dtype=bool)
        return np.isin(hashes, np.fromiter(found, dtype=np.int64, count=len(found)))

    def _write_rows(
        self,
        conn: Connection,
        table: Table,
        frame: pd.DataFrame,
        batch_id: int,
        now: datetime,
        progress: ProgressCallback | None,
        *,
        extra: dict[str, list[Any]] | None = None,
    ) -> None:
        """Insert a validated batch plus its bookkeeping columns (``extra``: more columns)."""
        total = len(frame.index)
        columns: dict[str, Any] = {c: frame[c] for c in frame.columns}
        columns["_batch_id"] = [batch_id] * total
        columns["_ingested_at"] = [_sqlite_time(now) if conn.dialect.name == "sqlite" else now] * total
        columns.update(extra or {})
        self.bulk_insert(conn, table, columns, total, progress)

    def bulk_insert(
        self,
        conn: Connection,
        table: Table,
        columns: dict[str, Any],
        total: int,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Insert ``total`` rows given column-wise (Series or lists) by the fastest path per driver.

        SQLite: the driver's executemany on positional tuples; PostgreSQL (psycopg2): COPY;
        others: SQLAlchemy's executemany. Lists of Python datetimes and Series of any kind
        are accepted.
        """
        names = list(columns)
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # The driver's executemany on positional tuples: no per-row dict building, and
            # timestamps formatted in one vectorised pass in SQLAlchemy's SQLite text format.
            values = [_sqlite_column(columns[n]) for n in names]
            compiled = insert(table).compile(dialect=conn.dialect, column_keys=names)
            for i, name in enumerate(names):
                kind = table.c[name].type
                if isinstance(kind, DateTime):
                    continue
                proc = kind.dialect_impl(conn.dialect).bind_processor(conn.dialect)
                if proc is not None:
                    values[i] = [None if v is None else proc(v) for v in values[i]]
            order = [names.index(p) for p in (compiled.positiontup or [])]
            values = [values[i] for i in order]
        else:
            values = [_python_column(columns[n]) for n in names]
        copy = conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2"
        if copy:
            prep = conn.dialect.identifier_preparer
            statement = (
                f"COPY {prep.format_table(table)} ({', '.join(prep.quote(n) for n in names)}) "
                "FROM STDIN WITH (FORMAT csv)"
            )
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        done = 0
        for lo in range(0, total, self.chunk_rows):
            hi = min(lo + self.chunk_rows, total)
            if copy:
                _copy_rows(cursor, statement, zip(*(c[lo:hi] for c in values), strict=True))
            elif sqlite:
                conn.exec_driver_sql(compiled.string, list(zip(*(c[lo:hi] for c in values), strict=True)))
            else:
                rows = [
                    dict(zip(names, r, strict=True)) for r in zip(*(c[lo:hi] for c in values), strict=True)
                ]
                conn.execute(insert(table), rows)
            done = hi
            if progress is not None:
                progress(done, total)

    def _clash_report(
        self, d: Definition, frame: pd.DataFrame, source: str
    ) -> StoreError | DataValidationError:
        """After a failed insert, say which keys of the batch are already stored."""
        table = self.table_for(d)
        names = list(d.key_columns)
        keys = [
            tuple(_plain(v) for v in row) for row in zip(*(frame[n].tolist() for n in names), strict=True)
        ]
        wanted = set(keys)
        first = table.c[names[0]]
        clashes: list[tuple[Any, ...]] = []
        with self.engine.connect() as conn:
            leading = list(dict.fromkeys(k[0] for k in keys))
            for lo in range(0, len(leading), _KEY_LOOKUP_CHUNK):
                chunk = leading[lo : lo + _KEY_LOOKUP_CHUNK]
                found = conn.execute(select(*(table.c[n] for n in names)).where(first.in_(chunk))).all()
                clashes += [tuple(r) for r in found if tuple(r) in wanted]
        if not clashes:
            return StoreError(f"the database refused the batch from {source}; nothing was written")
        position = {k: i for i, k in enumerate(keys)}
        rows = sorted(position[c] + 1 for c in clashes if c in position)[:5]
        shown = ", ".join(repr(c[0] if len(c) == 1 else c) for c in sorted(clashes)[:5])
        return DataValidationError(
            [
                Problem(
                    ", ".join(names),
                    "unique key",
                    f"key(s) already stored ({shown}); remove those rows or ingest only new ones, "
                    "or attach late labels with 'mlpipeline label'",
                    rows,
                    len(clashes),
                )
            ],
            source=source,
        )

    def _find_batch(self, conn: Connection, featureset: str, sha: str) -> BatchRecord | None:
        b = self.tables.batches
        row = conn.execute(select(b).where(b.c.featureset == featureset, b.c.content_sha256 == sha)).first()
        return _batch(row) if row is not None else None

    # -- reads --------------------------------------------------------------------------

    def count_rows(self, d: Definition) -> int:
        table = self.table_for(d)
        with self.guarded(f"count rows of '{d.table}'"), self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def count_labelled(self, d: Definition) -> int:
        """Rows that have a label (a full count: used only while a feature set has no champion)."""
        table = self.table_for(d)
        target = table.c[d.target.column]
        with self.guarded(f"count labelled rows of '{d.table}'"), self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(table).where(target.is_not(None))).scalar_one()
            )

    def first_event_time(self, d: Definition) -> datetime | None:
        """The earliest event time stored (None without an event time or rows): day 0 of the data."""
        if not d.event_time:
            return None
        column = self.table_for(d).c[d.event_time]
        with self.guarded(f"read the first event time of '{d.table}'"), self.engine.connect() as conn:
            value = conn.execute(select(func.min(column))).scalar_one_or_none()
        if isinstance(value, str):  # SQLite without type processing
            value = datetime.fromisoformat(value)
        return value if isinstance(value, datetime) else None

    def batches(self, d: Definition) -> list[BatchRecord]:
        b = self.tables.batches
        with self.guarded("list batches"), self.engine.connect() as conn:
            rows = conn.execute(select(b).where(b.c.featureset == d.name).order_by(b.c.id)).all()
        return [_batch(r) for r in rows]

    def training_window(
        self,
        d: Definition,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        as_of: datetime | None = None,
    ) -> pd.DataFrame:
        t = self.table_for(d)
        query = select(t).where(t.c[d.target.column].is_not(None))
        if d.event_time:
            if start is not None:
                query = query.where(t.c[d.event_time] >= start)
            if end is not None:
                query = query.where(t.c[d.event_time] < end)
            query = query.order_by(t.c[d.event_time], *_key_order(d, t))
        else:
            query = query.order_by(*_key_order(d, t))
        # Labels known by then: their label time, else (replays, backfills) their row's event time,
        # as monitoring counts them, so a model trained "as of" a moment never sees later rows.
        known_at = d.label_time or d.event_time
        if known_at and as_of is not None:
            query = query.where(t.c[known_at] <= as_of)
        return self._frame(d, query, "read the training window")

    def labelled_since(
        self, d: Definition, watermark: Watermark, *, as_of: datetime | None = None
    ) -> tuple[pd.DataFrame, Watermark]:
        # A row is new when its current label came in a batch after the watermark's (with the
        # row, or later through 'mlpipeline label'), or, with a label time, arrived after it.
        t = self.table_for(d)
        as_of = as_of or utcnow()
        labelled_in = t.c._labelled_batch
        with self.guarded("read the newest batch id"), self.engine.connect() as conn:
            top_batch = int(conn.execute(select(func.coalesce(func.max(labelled_in), 0))).scalar_one())
        query = select(t).where(t.c[d.target.column].is_not(None), labelled_in <= top_batch)
        # When a label became known: its label time, else (replays, backfills) its row's event time.
        known_at = d.label_time or d.event_time
        if known_at:
            known = t.c[known_at]
            query = query.where(known <= as_of)
            if watermark.label_time is not None:
                query = query.where(or_(known > watermark.label_time, labelled_in > watermark.batch_id))
            query = query.order_by(known, *_key_order(d, t))
            new_mark = Watermark(batch_id=top_batch, label_time=as_of)
        else:
            query = query.where(labelled_in > watermark.batch_id).order_by(*_key_order(d, t))
            new_mark = Watermark(batch_id=top_batch, label_time=watermark.label_time)
        return self._frame(d, query, "read newly labelled rows"), new_mark

    def rows_to_score(self, d: Definition, *, after_batch: int = 0, limit: int | None = None) -> pd.DataFrame:
        t = self.table_for(d)
        query = select(t).where(t.c[d.target.column].is_(None), t.c._batch_id > after_batch)
        query = query.order_by(*([t.c[d.event_time]] if d.event_time else []), *_key_order(d, t))
        if limit is not None:
            query = query.limit(limit)
        return self._frame(d, query, "read rows to score")

    def stream_rows(
        self,
        d: Definition,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        after_batch: int = 0,
        through_batch: int | None = None,
        chunk_rows: int = 50_000,
    ) -> Generator[pd.DataFrame, None, None]:
        """Stored rows, ``chunk_rows`` at a time through one streaming cursor (memory bounded
        whatever the table's size): event time in [``since``, ``until``) when given, rows of
        batches after ``after_batch`` (and up to ``through_batch``), in event-time (or key) order."""
        t = self.table_for(d)
        visible = [c for c in t.c if not c.name.startswith("_")]  # no bookkeeping columns
        query = select(*visible).where(t.c._batch_id > after_batch)
        if through_batch is not None:
            query = query.where(t.c._batch_id <= through_batch)
        if d.event_time:
            if since is not None:
                query = query.where(t.c[d.event_time] >= since)
            if until is not None:
                query = query.where(t.c[d.event_time] < until)
        query = query.order_by(*([t.c[d.event_time]] if d.event_time else []), *_key_order(d, t))
        query = self._text_times(query)
        sqlite = self.engine.dialect.name == "sqlite"
        with self.guarded(f"read rows of '{d.table}'"), self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
            names = list(result.keys())
            # Through SQLAlchemy's result, not the driver's cursor: a streaming result has
            # already buffered the first rows from the cursor.
            for rows in result.partitions(chunk_rows):
                yield _to_frame(d, names, [tuple(r) for r in rows], times_as_text=sqlite)

    def _text_times(self, query: Any) -> Any:
        """On SQLite, timestamps fetched as their ISO text (parsed column-wise in _to_frame)."""
        if self.engine.dialect.name != "sqlite":
            return query
        return query.with_only_columns(
            *(
                type_coerce(c, String).label(c.name) if isinstance(c.type, DateTime) else c
                for c in query.selected_columns
            ),
            maintain_column_froms=True,
        )

    def _frame(self, d: Definition, query: Any, what: str) -> pd.DataFrame:
        # SQLite keeps timestamps as ISO text; SQLAlchemy would parse every value in Python.
        # Fetch the text and parse whole columns at once in _to_frame instead.
        query = self._text_times(query)
        with self.guarded(what), self.engine.connect() as conn:
            result = conn.execute(query)
            names = list(result.keys())
            # The driver's own tuples: no row objects, and no per-value result processing
            # (SQLite timestamps arrive as text, see above; other drivers return native types).
            rows = result.cursor.fetchall() if result.cursor is not None else []
        return _to_frame(d, names, rows, times_as_text=self.engine.dialect.name == "sqlite")

    # -- state --------------------------------------------------------------------------

    def get_state(self, featureset: str, key: str) -> str | None:
        s = self.tables.state
        with self.guarded("read pipeline state"), self.engine.connect() as conn:
            value = conn.execute(
                select(s.c.state_value).where(s.c.featureset == featureset, s.c.state_key == key)
            ).scalar()
        return None if value is None else str(value)

    def set_state(self, featureset: str, key: str, value: str) -> None:
        s = self.tables.state
        now = utcnow()
        with self.guarded("write pipeline state"), self.transaction() as conn:
            changed = conn.execute(
                update(s)
                .where(s.c.featureset == featureset, s.c.state_key == key)
                .values(state_value=value, updated_at=now)
            ).rowcount
            if not changed:
                conn.execute(
                    insert(s).values(featureset=featureset, state_key=key, state_value=value, updated_at=now)
                )

    def dispose(self) -> None:
        self.engine.dispose()

    # -- plumbing -----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (immediate on SQLite): committed on success, rolled back otherwise."""
        with self.engine.connect().execution_options(mlp_write=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def guarded(self, what: str) -> Iterator[None]:
        """Turn database errors into StoreError that says what failed and what to do."""
        try:
            yield
        except (DataValidationError, StoreError):
            raise
        except DBAPIError as exc:
            raise _translate(exc, what, self.engine) from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"could not {what}: {exc.__class__.__name__}: {_first_line(exc)}") from exc


def _translate(exc: DBAPIError, what: str, engine: Engine) -> StoreError:
    text = _first_line(exc.orig or exc)
    where = engine.url.render_as_string(hide_password=True)
    if "locked" in text.lower() or "busy" in text.lower():
        return StoreUnavailableError(
            f"could not {what}: the database {where} stayed locked by another writer; "
            "retry, or raise MLPIPELINE_SQLITE_BUSY_TIMEOUT_S"
        )
    if exc.connection_invalidated or "connect" in text.lower():
        return StoreUnavailableError(f"could not {what}: cannot reach the database {where}: {text}")
    if "no such table" in text.lower() or "does not exist" in text.lower():
        return StoreError(f"could not {what}: the tables are missing in {where}; run 'mlpipeline init' first")
    return StoreError(f"could not {what} in {where}: {text}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _make_engine(url: str, busy_timeout_s: float) -> Engine:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise ConfigError(
            f"MLPIPELINE_FEATURESTORE_URL is not a database URL ({exc}); "
            "use e.g. sqlite:///dur/featurestore.db or postgresql+psycopg2://user:pass@host/db"
        ) from exc
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": busy_timeout_s}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(
            f"no database driver for '{parsed.drivername}' ({exc}); install the matching extra, "
            "e.g. pip install 'mlpipeline[iris]' for iris://"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine, busy_timeout_s)
    return engine


def _configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction begins.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("mlp_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _plain(value: Any) -> Any:
    """numpy scalars to Python scalars, missing values to None (what DB-API drivers accept)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _sqlite_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_values(series: pd.Series) -> list[Any]:
    """Like :func:`_python_values`, but timestamps as SQLAlchemy's SQLite text format."""
    if not pd.api.types.is_datetime64_any_dtype(series):
        return _python_values(series)
    arr = series.to_numpy(dtype="datetime64[us]")
    text: list[Any] = np.char.replace(np.datetime_as_string(arr, unit="us"), "T", " ").tolist()
    missing = np.isnat(arr)
    if missing.any():
        for i in np.flatnonzero(missing):
            text[i] = None
    return text


def _copy_rows(cursor: Any, statement: str, rows: Any) -> None:
    """PostgreSQL's COPY in CSV form: one round trip per chunk instead of one per row batch.

    ``None`` is written as an unquoted empty field, which CSV COPY reads as NULL (validated
    batches hold no empty strings). A key clash surfaces as SQLAlchemy's IntegrityError, like
    the INSERT path, so the caller's duplicate-key report works the same.
    """
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    buffer.seek(0)
    try:
        cursor.copy_expert(statement, buffer)
    except Exception as exc:
        if getattr(exc, "pgcode", None) == "23505":  # unique_violation
            raise IntegrityError("COPY", None, exc) from exc
        raise DBAPIError("COPY", None, exc) from exc


def _key_order(d: Definition, t: Table) -> list[Any]:
    return [t.c[k] for k in d.key_columns if k != d.event_time]


def _already_ingested(existing: BatchRecord, source: str) -> DataValidationError:
    return DataValidationError(
        [
            Problem(
                "(every column)",
                "already stored",
                f"the same content was ingested as batch {existing.batch_id} on "
                f"{existing.ingested_at:%Y-%m-%d %H:%M:%S} UTC; without --strict it is skipped",
            )
        ],
        source=source,
    )


def _already_stored(stored: Any, source: str) -> DataValidationError:
    rows = (np.flatnonzero(stored)[:5] + 1).tolist()
    return DataValidationError(
        [
            Problem(
                "(every column)",
                "already stored",
                f"{int(stored.sum()):,} row(s) are identical to rows an earlier batch stored; "
                "without --strict they are skipped and counted, or remove them from the file",
                rows,
                int(stored.sum()),
            )
        ],
        source=source,
    )


def _sqlite_column(values: Any) -> list[Any]:
    """A Series converted for SQLite; a list is taken as ready (timestamps already as text)."""
    return _sqlite_values(values) if isinstance(values, pd.Series) else list(values)


def _python_column(values: Any) -> list[Any]:
    return _python_values(values) if isinstance(values, pd.Series) else list(values)


def _python_values(series: pd.Series) -> list[Any]:
    """A column as a list of plain Python values with None for missing, fast for 1M rows."""
    if pd.api.types.is_datetime64_any_dtype(series):
        values = series.dt.to_pydatetime().tolist() if len(series) else []
        missing = series.isna().to_numpy()
        if missing.any():
            return [None if m else v for v, m in zip(values, missing, strict=True)]
        return values
    if pd.api.types.is_float_dtype(series) and not isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
        arr = series.to_numpy()
        values = arr.tolist()
        missing = np.isnan(arr)
        if missing.any():
            for i in np.flatnonzero(missing):
                values[i] = None
        return values
    if pd.api.types.is_integer_dtype(series):
        missing = series.isna().to_numpy()
        values = series.to_numpy(dtype=np.int64, na_value=0).tolist()
        if missing.any():
            for i in np.flatnonzero(missing):
                values[i] = None
        return values
    return [_plain(v) for v in series.tolist()]


def _batch(row: Any) -> BatchRecord:
    return BatchRecord(
        batch_id=int(row.id),
        featureset=row.featureset,
        content_sha256=row.content_sha256,
        source=row.source,
        row_count=int(row.row_count),
        ingested_at=row.ingested_at,
    )


def frame_of_rows(d: Definition, names: Sequence[str], rows: Sequence[Any]) -> pd.DataFrame:
    """Rows fetched through ``Connection.execute`` on a caller's connection as a typed frame
    (timestamps arrive parsed on every dialect; see :func:`_to_frame`)."""
    return _to_frame(d, names, rows)


def _to_frame(
    d: Definition, names: Sequence[str], rows: Sequence[Any], *, times_as_text: bool = False
) -> pd.DataFrame:
    """Rows to a typed frame: floats as float64, integers as Int64, times as datetime64[us].

    Built column-wise by pandas' C record converter, then each column is given its type in
    one vectorised step (no per-value Python work), which keeps a million-row read on par
    with ``pandas.read_sql``.
    """
    kinds: dict[str, str] = {name: spec.type for name, spec in d.features.items()}
    kinds[d.target.column] = "float"
    if d.event_time:
        kinds[d.event_time] = "time"
    if d.label_time:
        kinds[d.label_time] = "time"
    kinds["_ingested_at"] = "time"
    kinds["_batch_id"] = "integer"
    kinds["_labelled_batch"] = "integer"
    kinds["_row_hash"] = "integer"
    for key in d.key_columns:
        if key not in (d.event_time, d.label_time):
            kinds[key] = "integer" if d.entity_key.type_of(key) == "integer" else "categorical"
    frame = pd.DataFrame.from_records(list(rows), columns=list(names), coerce_float=True)
    for name in names:
        kind = kinds.get(name, "categorical")
        column = frame[name]
        if kind == "float":
            if column.dtype != np.float64:
                frame[name] = pd.to_numeric(column, errors="coerce").astype(np.float64)
        elif kind == "integer":
            frame[name] = column.astype("Int64")
        elif kind == "time":
            parsed = pd.to_datetime(column, format="ISO8601") if times_as_text else pd.to_datetime(column)
            frame[name] = parsed.astype("datetime64[us]")
        elif column.dtype != object:  # pandas may infer its own string type: text stays plain objects
            frame[name] = column.astype(object).where(column.notna(), None)
    return frame


def open_store(settings: Settings) -> SqlFeatureStore:
    """The feature store named by ``settings.featurestore_url`` (SQLite, PostgreSQL or IRIS)."""
    return SqlFeatureStore(
        settings.featurestore_url,
        busy_timeout_s=settings.sqlite_busy_timeout_s,
        chunk_rows=settings.ingest_chunk_rows,
    )
