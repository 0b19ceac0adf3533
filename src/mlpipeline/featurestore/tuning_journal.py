"""Optuna's journal storage on the feature store's own database.

A study lives where the feature set's data lives (SQLite, PostgreSQL or IRIS), so it survives
``kill -9`` and a resumed ``mlpipeline tune`` carries on from the trials already complete.
Optuna's journal storage keeps a study as an append-only list of operations; this backend
stores them as rows of ``mlp_tuning_journal`` (feature set, study, log number, JSON), one journal
per study, so resuming a study replays its own operations only, and a finished study's rows
can be deleted without renumbering another's. Optuna's
relational storage would need its own schema and migrations, which IRIS's SQL dialect is not
known to support; two portable statements are all a journal needs. One writer at a time is
guaranteed by the feature set's training lease, and the primary key refuses a second writer's
clashing log number instead of interleaving it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from optuna.storages.journal import BaseJournalBackend
from sqlalchemy import func, insert, select

from mlpipeline.featurestore.sql import SqlFeatureStore

__all__ = ["SqlJournalBackend"]


class SqlJournalBackend(BaseJournalBackend):
    """The journal of one tuning study of one feature set, in ``mlp_tuning_journal``."""

    def __init__(
        self, store: SqlFeatureStore, featureset: str, study: str, *, sole_writer: bool = False
    ) -> None:
        """``sole_writer``: this process holds the feature set's training lease, so no other
        process appends. The backend then keeps the journal it has read and written in memory
        and answers Optuna's reads from it (Optuna reads the journal before nearly every
        operation, some twenty times a trial); only appends reach the database."""
        self.store = store
        self.featureset = featureset
        self.study = study
        self.table = store.tables.tuning_journal
        self.sole_writer = sole_writer
        self._mirror: list[dict[str, Any]] | None = None  # every log, from 0 (sole writer only)

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        if self._mirror is not None:
            return self._mirror[log_number_from:]
        t = self.table
        query = (
            select(t.c.log_entry)
            .where(
                t.c.featureset == self.featureset, t.c.study == self.study, t.c.log_number >= log_number_from
            )
            .order_by(t.c.log_number)
        )
        with self.store.guarded("read the tuning journal"), self.store.engine.connect() as conn:
            logs = [json.loads(row) for row in conn.execute(query).scalars().all()]
        if self.sole_writer and log_number_from == 0:
            self._mirror = list(logs)
        return logs

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if not logs:
            return
        t = self.table
        with self.store.guarded("write the tuning journal"), self.store.transaction() as conn:
            if self._mirror is not None:
                start = len(self._mirror)
            else:
                last = conn.execute(
                    select(func.max(t.c.log_number)).where(
                        t.c.featureset == self.featureset, t.c.study == self.study
                    )
                ).scalar()
                start = 0 if last is None else int(last) + 1
            conn.execute(
                insert(t),
                [
                    {
                        "featureset": self.featureset,
                        "study": self.study,
                        "log_number": start + i,
                        "log_entry": json.dumps(log),
                    }
                    for i, log in enumerate(logs)
                ],
            )
        if self._mirror is not None:
            self._mirror.extend(json.loads(json.dumps(log)) for log in logs)
