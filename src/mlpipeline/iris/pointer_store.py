"""The production pointer in the IRIS global ``^MLpipeline("Production", featureset, …)``.

Layout (every value is JSON text, ASCII only, so it reads the same through embedded
Python, the Native API and ObjectScript's ``%DynamicObject``)::

    ^MLpipeline("Production", fs)                = {"seq": n, "pointer": {...} or null}
    ^MLpipeline("Production", fs, "History", i)  = history entry i, for i = 1 … n (oldest first)

A move writes entry n + 1 first and then the head node with one ``set``, which IRIS
applies atomically: a reader sees the pointer and the history either before or after a
move, never half of it, and needs no lock. A process that dies between the two writes
leaves an entry past ``seq`` that nothing reads and the next move overwrites. Writers
take turns under a thread lock and, across processes, the IRIS ``LOCK`` on
``^MLpipeline("Production", fs)``. From ObjectScript::

    write {}.%FromJSON(^MLpipeline("Production","housing")).pointer.version

:class:`GlobalPointerStore` implements :class:`~mlpipeline.registry.pointer.PointerStore` and passes
the same contract tests as the SQL store. In the compose stack the training pipeline and
the checks move the SQL pointer (a table in IRIS); :class:`MirroredPointerStore` keeps
the global equal to it, so the global always names the production model.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from mlpipeline.errors import StoreError
from mlpipeline.featurestore.sql import utcnow
from mlpipeline.iris.globals import ROOT, GlobalLock, GlobalNode, Subscript
from mlpipeline.registry.pointer import HistoryEntry, Pointer, PointerStore

__all__ = ["HISTORY", "PRODUCTION", "GlobalPointerStore", "MirroredPointerStore"]

log = logging.getLogger(__name__)

PRODUCTION = "Production"
HISTORY = "History"
#: The SQL store's column widths; the global keeps the same limits so both behave alike.
_ACTOR_MAX = 255
_REASON_MAX = 1024


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def pointer_to_json(p: Pointer) -> dict[str, Any]:
    return {
        "featureset": p.featureset,
        "model_name": p.model_name,
        "version": p.version,
        "run_id": p.run_id,
        "model_uri": p.model_uri,
        "sha256": p.sha256,
        "local_path": p.local_path,
        "metrics": p.metrics,
        "promoted_at": _time(p.promoted_at),
        "promoted_by": p.promoted_by,
        "reason": p.reason,
    }


def pointer_from_json(data: dict[str, Any]) -> Pointer:
    return Pointer(
        featureset=data["featureset"],
        model_name=data["model_name"],
        version=str(data["version"]),
        run_id=data["run_id"],
        model_uri=data["model_uri"],
        sha256=data["sha256"],
        local_path=data.get("local_path"),
        metrics={k: float(v) for k, v in (data.get("metrics") or {}).items()},
        promoted_at=_parse_time(data.get("promoted_at")),
        promoted_by=data.get("promoted_by", ""),
        reason=data.get("reason", ""),
    )


def entry_to_json(e: HistoryEntry) -> dict[str, Any]:
    return {
        "featureset": e.featureset,
        "action": e.action,
        "model_name": e.model_name,
        "from_version": e.from_version,
        "to_version": e.to_version,
        "run_id": e.run_id,
        "at": _time(e.at),
        "by": e.by,
        "reason": e.reason,
        "metrics": e.metrics,
    }


def entry_from_json(data: dict[str, Any]) -> HistoryEntry:
    at = _parse_time(data.get("at"))
    assert at is not None
    return HistoryEntry(
        featureset=data["featureset"],
        action=data["action"],
        model_name=data["model_name"],
        from_version=data.get("from_version"),
        to_version=data.get("to_version"),
        run_id=data.get("run_id"),
        at=at,
        by=data.get("by", ""),
        reason=data.get("reason", ""),
        metrics={k: float(v) for k, v in (data.get("metrics") or {}).items()},
    )


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"))


class GlobalPointerStore:
    """:class:`~mlpipeline.registry.pointer.PointerStore` on ``^MLpipeline("Production", …)``.

    ``node`` is what ``iris.gref("^MLpipeline")`` returns inside IRIS, or a
    :class:`~mlpipeline.iris.globals.NativeGlobal` outside; ``lock`` is the matching IRIS
    lock (``None``: writers take turns within this process only).
    """

    def __init__(self, node: GlobalNode, *, lock: GlobalLock | None = None, lock_timeout_s: float = 30.0):
        self.node = node
        self.lock = lock
        self.lock_timeout_s = lock_timeout_s
        self._local = threading.RLock()

    # -- reads ---------------------------------------------------------------------------

    def get(self, featureset: str) -> Pointer | None:
        _, pointer = self._head(featureset)
        return pointer_from_json(pointer) if pointer else None

    def history(self, featureset: str, limit: int = 50) -> list[HistoryEntry]:
        seq, _ = self._head(featureset)
        out: list[HistoryEntry] = []
        for i in range(seq, max(seq - limit, 0), -1):
            raw = self._get([PRODUCTION, featureset, HISTORY, i], "read the promotion history")
            if raw is not None:
                out.append(entry_from_json(json.loads(raw)))
        return out

    # -- writes --------------------------------------------------------------------------

    def set(self, pointer: Pointer, *, action: str, from_version: str | None) -> Pointer:
        stored = replace(
            pointer,
            promoted_at=utcnow(),
            promoted_by=pointer.promoted_by[:_ACTOR_MAX],
            reason=pointer.reason[:_REASON_MAX],
        )
        return self.mirror(stored, _entry_for(stored, action, from_version))

    def record(self, entry: HistoryEntry) -> None:
        entry = replace(entry, by=entry.by[:_ACTOR_MAX], reason=entry.reason[:_REASON_MAX])
        self._append(entry.featureset, entry, None, move=False)

    def mirror(self, pointer: Pointer, entry: HistoryEntry) -> Pointer:
        """Store ``pointer`` as it is (its own ``promoted_at``) with ``entry`` appended."""
        if pointer.promoted_at is None:
            pointer = replace(pointer, promoted_at=utcnow())
        self._append(pointer.featureset, entry, pointer, move=True)
        return pointer

    def clear(self, featureset: str) -> None:
        """No production model any more (the history stays)."""
        with self._writing(featureset):
            seq, _ = self._head(featureset)
            self._set([PRODUCTION, featureset], _dumps({"seq": seq, "pointer": None}))

    # -- internals -----------------------------------------------------------------------

    def _append(self, featureset: str, entry: HistoryEntry, pointer: Pointer | None, *, move: bool) -> None:
        with self._writing(featureset):
            seq, current = self._head(featureset)
            n = seq + 1
            self._set([PRODUCTION, featureset, HISTORY, n], _dumps(entry_to_json(entry)))
            head = {"seq": n, "pointer": pointer_to_json(pointer) if move and pointer else current}
            self._set([PRODUCTION, featureset], _dumps(head))

    def _head(self, featureset: str) -> tuple[int, dict[str, Any] | None]:
        raw = self._get([PRODUCTION, featureset], "read the production pointer")
        if raw is None:
            return 0, None
        data = json.loads(raw)
        return int(data.get("seq") or 0), data.get("pointer")

    @contextmanager
    def _writing(self, featureset: str) -> Iterator[None]:
        key: list[Subscript] = [PRODUCTION, featureset]
        with self._local:
            if self.lock is not None:
                self.lock.acquire(key, self.lock_timeout_s)
            try:
                yield
            finally:
                if self.lock is not None:
                    self.lock.release(key)

    def _get(self, key: list[Subscript], what: str) -> str | None:
        try:
            value = self.node.get(key)
        except Exception as exc:
            raise StoreError(f"could not {what} in {ROOT}: {exc.__class__.__name__}: {exc}") from exc
        if value is None or value == "":
            return None
        return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)

    def _set(self, key: list[Subscript], value: str) -> None:
        try:
            self.node.set(key, value)
        except Exception as exc:
            raise StoreError(
                f"could not move the production pointer in {ROOT}: {exc.__class__.__name__}: {exc}"
            ) from exc


def _entry_for(p: Pointer, action: str, from_version: str | None) -> HistoryEntry:
    assert p.promoted_at is not None
    return HistoryEntry(
        p.featureset,
        action,
        p.model_name,
        from_version,
        p.version,
        p.run_id,
        p.promoted_at,
        p.promoted_by,
        p.reason,
        p.metrics,
    )


class MirroredPointerStore:
    """The SQL pointer (``primary``, the one training and checks move) with the global kept equal.

    Reads come from the primary. A move goes to the primary first (that is the truth) and
    then to the global; if the global cannot be written, the move still stands, the
    failure is logged at ERROR (severity 2 in messages.log inside IRIS), and :meth:`sync`,
    which every IRIS entry point runs, repairs it.
    """

    def __init__(self, primary: PointerStore, mirror: GlobalPointerStore) -> None:
        self.primary = primary
        self.mirror = mirror

    def get(self, featureset: str) -> Pointer | None:
        return self.primary.get(featureset)

    def history(self, featureset: str, limit: int = 50) -> list[HistoryEntry]:
        return self.primary.history(featureset, limit)

    def set(self, pointer: Pointer, *, action: str, from_version: str | None) -> Pointer:
        stored = self.primary.set(pointer, action=action, from_version=from_version)
        self._quietly(
            stored.featureset,
            lambda: self.mirror.mirror(stored, _entry_for_stored(stored, action, from_version)),
        )
        return stored

    def record(self, entry: HistoryEntry) -> None:
        self.primary.record(entry)
        self._quietly(entry.featureset, lambda: self.mirror.record(entry))

    def sync(self, featureset: str) -> str | None:
        """Make the global name the primary's pointer; returns what changed, if anything."""
        truth = self.primary.get(featureset)
        shown = self.mirror.get(featureset)
        if truth is None:
            if shown is None:
                return None
            self.mirror.clear(featureset)
            return f"cleared: there is no production model of '{featureset}'"
        if shown is not None and _same(shown, truth):
            return None
        last = next(
            (
                e
                for e in self.primary.history(featureset, limit=20)
                if e.to_version == truth.version and e.action != "reject"
            ),
            None,
        )
        self.mirror.mirror(
            truth,
            _entry_for_stored(
                truth, last.action if last else "sync", shown.version if shown is not None else None
            ),
        )
        return f"published version {truth.version} (was {shown.version if shown else 'none'})"

    def _quietly(self, featureset: str, write: Callable[[], object]) -> None:
        try:
            write()
        except Exception:
            log.error(
                "the production global could not be updated; the pointer moved and the next IRIS "
                "call publishes it again",
                exc_info=True,
                extra={"featureset": featureset},
            )


def _entry_for_stored(p: Pointer, action: str, from_version: str | None) -> HistoryEntry:
    return _entry_for(
        p if p.promoted_at is not None else replace(p, promoted_at=utcnow()), action, from_version
    )


def _same(a: Pointer, b: Pointer) -> bool:
    return (a.version, a.sha256, a.run_id, a.promoted_at) == (b.version, b.sha256, b.run_id, b.promoted_at)
