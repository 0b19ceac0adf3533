"""Prediction log: every served prediction written to ``mlp_prediction_log``, in batches.

Monitoring joins these rows with the labels that arrive later. Writing one row per request
would put a database round trip (and on SQLite a write lock) on the hot path, so
predictions are queued in memory and a background thread writes them in one
``executemany`` per flush: every ``flush_s`` seconds or as soon as ``flush_rows`` are
waiting. A failing database never fails a prediction: the rows stay queued (up to
``max_pending``; beyond that the oldest are dropped and counted) and the next flush tries
again. :meth:`close` writes what is left.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError

from mlpipeline.errors import StoreError
from mlpipeline.featurestore.sql import SqlFeatureStore, utcnow

__all__ = ["PredictionLog"]

log = logging.getLogger(__name__)


class PredictionLog:
    """Queue of (entity key, model version, prediction, time) rows with a background writer."""

    def __init__(
        self,
        store: SqlFeatureStore,
        featureset: str,
        *,
        flush_s: float = 1.0,
        flush_rows: int = 2_000,
        max_pending: int = 1_000_000,
        background: bool = True,
    ) -> None:
        self.store = store
        self.featureset = featureset
        self.flush_s = flush_s
        self.flush_rows = flush_rows
        self.max_pending = max_pending
        self.written = 0
        self.dropped = 0
        self._pending: deque[tuple[str | None, str, float, datetime]] = deque()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="mlpipeline-prediction-log", daemon=True)
            self._thread.start()

    def add(self, keys: Sequence[str | None] | None, version: str, values: Iterable[float]) -> None:
        """Queue one request's predictions (cheap: no I/O on the caller's thread)."""
        now = utcnow()
        floats = [float(v) for v in values]
        key_list: Sequence[str | None] = [None] * len(floats) if keys is None else keys
        rows = [(k, version, v, now) for k, v in zip(key_list, floats, strict=True)]
        with self._lock:
            self._pending.extend(rows)
            overflow = len(self._pending) - self.max_pending
            for _ in range(max(0, overflow)):
                self._pending.popleft()
            if overflow > 0:
                self.dropped += overflow
            full = len(self._pending) >= self.flush_rows
        if full:
            self._wake.set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write everything queued now; returns the rows written. Raises StoreError on failure."""
        with self._write_lock:
            with self._lock:
                batch = list(self._pending)
                self._pending.clear()
            if not batch:
                return 0
            table = self.store.tables.prediction_log
            params: list[dict[str, Any]] = [
                {
                    "featureset": self.featureset,
                    "entity_key": None if k is None else k[:255],
                    "model_version": v,
                    "prediction": p,
                    "predicted_at": t,
                }
                for k, v, p, t in batch
            ]
            try:
                with self.store.guarded("write the prediction log"), self.store.transaction() as conn:
                    conn.execute(insert(table), params)
            except (SQLAlchemyError, StoreError) as exc:
                with self._lock:  # put them back in front, in order, for the next try
                    self._pending.extendleft(reversed(batch))
                raise StoreError(f"could not write {len(batch)} prediction log rows: {exc}") from exc
            self.written += len(batch)
            return len(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            try:
                self.flush()
            except StoreError as exc:
                log.warning("prediction log write failed; will retry", extra={"detail": str(exc)[:300]})

    def close(self) -> None:
        """Stop the writer and write what is queued (errors are logged, not raised)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.flush()
        except StoreError as exc:
            log.error("prediction log rows lost at shutdown", extra={"detail": str(exc)[:300]})
        if self.dropped:
            log.warning("prediction log dropped rows (queue full)", extra={"rows": self.dropped})
