"""Leases: "one at a time" across processes and machines, which a crashed holder cannot keep.

A lease is a row of ``mlp_state`` (key ``lease.<name>``) holding its owner and expiry.
Taking it is one write transaction: read the row, and write ourselves in only when it is
absent, expired, already ours, or held by a process of this machine that no longer exists
(killed with ``kill -9``, the machine's OOM killer): the next start must not wait out the
``ttl`` for a holder that is certainly gone. SQLite serialises write transactions (``BEGIN
IMMEDIATE``); on PostgreSQL the row is read ``FOR UPDATE`` and a race on a first insert
ends in a unique-key violation, which counts as "taken by someone else". A holder on
another machine that dies lets the lease expire after ``ttl``; a live holder renews it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from mlpipeline.errors import StoreError
from mlpipeline.featurestore.sql import SqlFeatureStore, utcnow
from mlpipeline.processes import pid_is_gone

__all__ = ["Lease", "LeaseHolder", "holder_is_gone", "new_owner"]

log = logging.getLogger(__name__)


def new_owner() -> str:
    """An owner id naming the process (``host:pid:nonce``), for messages and the liveness check."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_gone(owner: str) -> bool:
    """True only when ``owner`` names a process of this machine that no longer runs.

    Owners from another host, or in another form, are never judged (their lease expires).
    A reused pid errs on the safe side: the lease is then kept until it expires.
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return pid_is_gone(int(pid_text))


@dataclass(frozen=True)
class Lease:
    name: str
    owner: str
    acquired_at: datetime
    expires_at: datetime


class LeaseHolder:
    """Take, renew and release named leases of one feature set."""

    def __init__(self, store: SqlFeatureStore, featureset: str) -> None:
        self.store = store
        self.featureset = featureset
        self.table = store.tables.state

    def _key(self, name: str) -> str:
        return f"lease.{name}"

    def current(self, name: str) -> Lease | None:
        s = self.table
        with self.store.guarded("read a lease"), self.store.engine.connect() as conn:
            value = conn.execute(
                select(s.c.state_value).where(
                    s.c.featureset == self.featureset, s.c.state_key == self._key(name)
                )
            ).scalar()
        return None if value is None else _parse(name, str(value))

    def acquire(self, name: str, owner: str, ttl: timedelta, *, now: datetime | None = None) -> Lease | None:
        """The lease if we got it (or already held it: renewed), else None."""
        now = now or utcnow()
        s = self.table
        key = self._key(name)
        mine = Lease(name, owner, now, now + ttl)
        value = json.dumps(
            {"owner": owner, "acquired_at": now.isoformat(), "expires_at": mine.expires_at.isoformat()}
        )
        try:
            with self.store.guarded(f"take the '{name}' lease"), self.store.transaction() as conn:
                row = conn.execute(
                    select(s.c.state_value)
                    .where(s.c.featureset == self.featureset, s.c.state_key == key)
                    .with_for_update()
                ).scalar()
                if row is None:
                    conn.execute(
                        insert(s).values(
                            featureset=self.featureset, state_key=key, state_value=value, updated_at=now
                        )
                    )
                    return mine
                held = _parse(name, str(row))
                if held.owner != owner and held.expires_at > now:
                    if not holder_is_gone(held.owner):
                        return None
                    log.warning(
                        "took over a lease whose holder is gone",
                        extra={"lease": name, "featureset": self.featureset, "detail": held.owner},
                    )
                if held.owner == owner:
                    mine = Lease(name, owner, held.acquired_at, mine.expires_at)
                    value = json.dumps(
                        {
                            "owner": owner,
                            "acquired_at": held.acquired_at.isoformat(),
                            "expires_at": mine.expires_at.isoformat(),
                        }
                    )
                conn.execute(
                    update(s)
                    .where(s.c.featureset == self.featureset, s.c.state_key == key)
                    .values(state_value=value, updated_at=now)
                )
                return mine
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                return None  # another process inserted the lease first
            raise

    def release(self, name: str, owner: str) -> None:
        """Give the lease back if we hold it (a no-op otherwise)."""
        s = self.table
        key = self._key(name)
        with self.store.guarded(f"release the '{name}' lease"), self.store.transaction() as conn:
            row = conn.execute(
                select(s.c.state_value).where(s.c.featureset == self.featureset, s.c.state_key == key)
            ).scalar()
            if row is not None and _parse(name, str(row)).owner == owner:
                conn.execute(delete(s).where(s.c.featureset == self.featureset, s.c.state_key == key))


def _parse(name: str, value: str) -> Lease:
    data = json.loads(value)
    return Lease(
        name,
        str(data["owner"]),
        datetime.fromisoformat(data["acquired_at"]),
        datetime.fromisoformat(data["expires_at"]),
    )
