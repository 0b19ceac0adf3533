"""Monitoring records: check results, the monitoring watermark, and logged predictions.

A check's result row and the watermark it advances to are written in one transaction:
either the check is recorded and its rows are marked as read, or neither happens, so a
failed check never skips data and a repeated one never counts rows twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from mlpipeline.featurestore.base import Watermark
from mlpipeline.featurestore.sql import SqlFeatureStore, utcnow

__all__ = [
    "RETRAIN_PENDING_KEY",
    "RETRAIN_STARTED_KEY",
    "ROWS_SINCE_TRAINING_KEY",
    "SIMULATED_NOW_KEY",
    "TRAINED_AT_KEY",
    "WATERMARK_KEY",
    "CheckRecord",
    "CheckRecords",
]

WATERMARK_KEY = "monitor.watermark"
TRAINED_AT_KEY = "monitor.trained_at"
#: The newest batch the champion's training could see: rows labelled later are new to it.
TRAINED_BATCH_KEY = "monitor.trained_batch"
#: Id of the last logged prediction that a check compared with the champion's training outputs.
PREDICTIONS_SEEN_KEY = "monitor.predictions_seen"
ROWS_SINCE_TRAINING_KEY = "monitor.rows_since_training"
RETRAIN_STARTED_KEY = "monitor.retrain_started_at"
#: The simulated time of the latest replayed check or training (``as_of`` given), or empty
#: after a real one: ``status`` measures ages on this clock, so a replay reads sensibly.
SIMULATED_NOW_KEY = "monitor.simulated_now"
#: A retrain that was decided but could not run (e.g. MLflow down): JSON, or empty when none.
RETRAIN_PENDING_KEY = "monitor.retrain_pending"
_KEY_CHUNK = 500


@dataclass(frozen=True)
class CheckRecord:
    """One monitoring check as stored in ``mlp_monitoring``."""

    featureset: str
    model_version: str | None
    checked_at: datetime
    n_rows: int
    r2: float | None
    rmse: float | None
    mae: float | None
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    @property
    def value(self) -> float | None:
        """The feature set's metric on the check's rows (R² unless it chose another)."""
        metric = self.details.get("metric")
        if isinstance(metric, dict):
            value = metric.get("value")
            return None if value is None else float(value)
        return self.r2


class CheckRecords:
    """Reads and writes the monitoring records of one feature set."""

    def __init__(self, store: SqlFeatureStore, featureset: str) -> None:
        self.store = store
        self.featureset = featureset

    def watermark(self) -> Watermark:
        text = self.store.get_state(self.featureset, WATERMARK_KEY)
        return Watermark.from_json(text) if text else Watermark()

    def record(self, check: CheckRecord, watermark: Watermark, *, state: dict[str, str] | None = None) -> int:
        """Store the check, advance the watermark and set ``state`` atomically; returns the check's id."""
        m = self.store.tables.monitoring
        s = self.store.tables.state
        now = utcnow()
        with self.store.guarded("record the monitoring check"), self.store.transaction() as conn:
            result = conn.execute(
                insert(m).values(
                    featureset=check.featureset,
                    model_version=check.model_version,
                    checked_at=check.checked_at,
                    n_rows=check.n_rows,
                    r2=check.r2,
                    rmse=check.rmse,
                    mae=check.mae,
                    details_json=json.dumps(check.details, default=str),
                )
            )
            for key_name, value in {WATERMARK_KEY: watermark.to_json(), **(state or {})}.items():
                changed = conn.execute(
                    update(s)
                    .where(s.c.featureset == self.featureset, s.c.state_key == key_name)
                    .values(state_value=value, updated_at=now)
                ).rowcount
                if not changed:
                    conn.execute(
                        insert(s).values(
                            featureset=self.featureset, state_key=key_name, state_value=value, updated_at=now
                        )
                    )
            key = result.inserted_primary_key
        return int(key[0]) if key else 0

    def training_done(
        self, at: datetime, top_batch: int, *, simulated: bool = False, promoted: bool = True
    ) -> None:
        """A training finished at ``at`` on the rows up to batch ``top_batch``.

        The new-data count restarts. When the new version became the champion, its age starts
        now and monitoring moves past the rows it learned from (a champion is never judged on
        its own training rows); a version that was held changes neither.
        """
        self.store.set_state(self.featureset, ROWS_SINCE_TRAINING_KEY, "0")
        if not promoted and self.store.get_state(self.featureset, WATERMARK_KEY) is not None:
            return
        self.store.set_state(self.featureset, TRAINED_AT_KEY, at.isoformat())
        self.store.set_state(self.featureset, TRAINED_BATCH_KEY, str(top_batch))
        self.store.set_state(self.featureset, SIMULATED_NOW_KEY, at.isoformat() if simulated else "")
        current = self.watermark()
        if self.store.get_state(self.featureset, WATERMARK_KEY) is None or top_batch > current.batch_id:
            label_time = max(at, current.label_time) if current.label_time is not None else at
            self.store.set_state(self.featureset, WATERMARK_KEY, Watermark(top_batch, label_time).to_json())

    def update_details(self, check_id: int, details: dict[str, Any]) -> None:
        """Add what happened after the check (MLflow logging, the retrain) to its record."""
        m = self.store.tables.monitoring
        with self.store.guarded("update the monitoring check"), self.store.transaction() as conn:
            conn.execute(
                update(m).where(m.c.id == check_id).values(details_json=json.dumps(details, default=str))
            )

    def history(self, limit: int = 20) -> list[CheckRecord]:
        """Newest first."""
        m = self.store.tables.monitoring
        with self.store.guarded("read the monitoring history"), self.store.engine.connect() as conn:
            rows = conn.execute(
                select(m).where(m.c.featureset == self.featureset).order_by(m.c.id.desc()).limit(limit)
            ).all()
        return [
            CheckRecord(
                r.featureset,
                r.model_version,
                r.checked_at,
                r.n_rows,
                r.r2,
                r.rmse,
                r.mae,
                json.loads(r.details_json or "{}"),
                r.id,
            )
            for r in rows
        ]

    def logged_since(self, version: str, after_id: int, limit: int = 1_000_000) -> tuple[list[float], int]:
        """Predictions ``version`` served after log row ``after_id`` (oldest first, at most
        ``limit``) and the id of the last one read (``after_id`` when none)."""
        p = self.store.tables.prediction_log
        with self.store.guarded("read the prediction log"), self.store.engine.connect() as conn:
            rows = conn.execute(
                select(p.c.id, p.c.prediction)
                .where(p.c.featureset == self.featureset, p.c.model_version == version, p.c.id > after_id)
                .order_by(p.c.id)
                .limit(limit)
            ).all()
        return [float(r[1]) for r in rows], (int(rows[-1][0]) if rows else after_id)

    def logged_predictions(self, keys: Sequence[str], version: str) -> dict[str, float]:
        """The latest logged prediction of ``version`` for each of ``keys`` that has one."""
        p = self.store.tables.prediction_log
        found: dict[str, float] = {}
        unique = list(dict.fromkeys(keys))
        with self.store.guarded("read the prediction log"), self.store.engine.connect() as conn:
            for start in range(0, len(unique), _KEY_CHUNK):
                chunk = unique[start : start + _KEY_CHUNK]
                rows = conn.execute(
                    select(p.c.entity_key, p.c.prediction)
                    .where(
                        p.c.featureset == self.featureset,
                        p.c.entity_key.in_(chunk),
                        p.c.model_version == version,
                    )
                    .order_by(p.c.id)
                ).all()
                for key, value in rows:
                    found[str(key)] = float(value)  # ordered by id: the latest wins
        return found
