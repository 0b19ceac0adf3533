"""The production pointer: which model version serves each feature set, with its audit trail.

A small protocol with a SQL implementation (the table from the feature store); an IRIS
global implementation joins later. ``set`` replaces the pointer and appends the history
row in one transaction, so the two never disagree.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from mlpipeline.errors import StoreError
from mlpipeline.featurestore.sql import SqlFeatureStore, utcnow
from mlpipeline.registry.model_cache import ModelRef

__all__ = ["HistoryEntry", "Pointer", "PointerStore", "SqlPointerStore"]

log = logging.getLogger(__name__)

#: Attempts of one pointer move that collides with a concurrent move of the same feature set.
_MOVE_ATTEMPTS = 5


@dataclass(frozen=True)
class Pointer:
    """The production model of one feature set."""

    featureset: str
    model_name: str
    version: str
    run_id: str
    model_uri: str
    sha256: str
    local_path: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    promoted_at: datetime | None = None
    promoted_by: str = ""
    reason: str = ""

    @property
    def ref(self) -> ModelRef:
        """What the model cache needs to load (and verify) this version."""
        return ModelRef(self.featureset, self.model_name, self.version, self.run_id, self.sha256)


@dataclass(frozen=True)
class HistoryEntry:
    featureset: str
    action: str
    model_name: str
    from_version: str | None
    to_version: str | None
    run_id: str | None
    at: datetime
    by: str
    reason: str
    metrics: dict[str, float]


class PointerStore(Protocol):
    def get(self, featureset: str) -> Pointer | None: ...

    def set(self, pointer: Pointer, *, action: str, from_version: str | None) -> Pointer:
        """Replace the pointer and append to the history atomically; returns the stored pointer."""

    def history(self, featureset: str, limit: int = 50) -> list[HistoryEntry]:
        """Newest first."""

    def record(self, entry: HistoryEntry) -> None:
        """Append a history entry that does not move the pointer (e.g. a rejection)."""


class SqlPointerStore:
    """Pointer and history in the feature store's ``mlp_production_pointer`` / ``mlp_promotion_history``."""

    def __init__(self, store: SqlFeatureStore) -> None:
        self.store = store
        self.pointer = store.tables.production_pointer
        self.hist = store.tables.promotion_history

    def get(self, featureset: str) -> Pointer | None:
        with self.store.guarded("read the production pointer"), self.store.engine.connect() as conn:
            row = conn.execute(select(self.pointer).where(self.pointer.c.featureset == featureset)).first()
        if row is None:
            return None
        return Pointer(
            featureset=row.featureset,
            model_name=row.model_name,
            version=row.model_version,
            run_id=row.run_id,
            model_uri=row.model_uri,
            sha256=row.sha256,
            local_path=row.local_path,
            metrics=json.loads(row.metrics_json or "{}"),
            promoted_at=row.promoted_at,
            promoted_by=row.promoted_by,
            reason=row.reason,
        )

    def set(self, pointer: Pointer, *, action: str, from_version: str | None) -> Pointer:
        now = utcnow()
        values: dict[str, Any] = {
            "featureset": pointer.featureset,
            "model_name": pointer.model_name,
            "model_version": pointer.version,
            "run_id": pointer.run_id,
            "model_uri": pointer.model_uri,
            "local_path": pointer.local_path,
            "sha256": pointer.sha256,
            "metrics_json": json.dumps(pointer.metrics),
            "promoted_at": now,
            "promoted_by": pointer.promoted_by[:255],
            "reason": pointer.reason[:1024],
        }
        # An update of the existing row: concurrent moves queue on its row lock. Only the very
        # first moves of a feature set can both find no row and collide on the primary key
        # (READ COMMITTED); the loser then moves again, as an update.
        for attempt in range(1, _MOVE_ATTEMPTS + 1):
            try:
                with self.store.guarded("move the production pointer"), self.store.transaction() as conn:
                    mine = self.pointer.c.featureset == pointer.featureset
                    if not conn.execute(update(self.pointer).where(mine).values(**values)).rowcount:
                        conn.execute(insert(self.pointer).values(**values))
                    conn.execute(
                        insert(self.hist).values(
                            **self._history_values(
                                HistoryEntry(
                                    pointer.featureset,
                                    action,
                                    pointer.model_name,
                                    from_version,
                                    pointer.version,
                                    pointer.run_id,
                                    now,
                                    pointer.promoted_by,
                                    pointer.reason,
                                    pointer.metrics,
                                )
                            )
                        )
                    )
                break
            except StoreError as exc:
                if attempt == _MOVE_ATTEMPTS or not isinstance(exc.__cause__, IntegrityError):
                    raise
                log.info("pointer moved concurrently; moving again", extra={"featureset": pointer.featureset})
                time.sleep(0.01 * attempt)
        return self.get(pointer.featureset) or pointer

    def record(self, entry: HistoryEntry) -> None:
        with self.store.guarded("record the promotion history"), self.store.transaction() as conn:
            conn.execute(insert(self.hist).values(**self._history_values(entry)))

    @staticmethod
    def _history_values(e: HistoryEntry) -> dict[str, Any]:
        return {
            "featureset": e.featureset,
            "action": e.action,
            "model_name": e.model_name,
            "from_version": e.from_version,
            "to_version": e.to_version,
            "run_id": e.run_id,
            "acted_at": e.at,
            "actor": e.by[:255],
            "reason": e.reason[:1024],
            "metrics_json": json.dumps(e.metrics),
        }

    def history(self, featureset: str, limit: int = 50) -> list[HistoryEntry]:
        h = self.hist
        with self.store.guarded("read the promotion history"), self.store.engine.connect() as conn:
            rows = conn.execute(
                select(h).where(h.c.featureset == featureset).order_by(h.c.id.desc()).limit(limit)
            ).all()
        return [
            HistoryEntry(
                r.featureset,
                r.action,
                r.model_name,
                r.from_version,
                r.to_version,
                r.run_id,
                r.acted_at,
                r.actor,
                r.reason,
                json.loads(r.metrics_json or "{}"),
            )
            for r in rows
        ]
