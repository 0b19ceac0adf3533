"""The thin IRIS boundary, in memory: the only stand-ins the IRIS tests use.

:class:`FakeGref` stands for the object ``iris.gref("^MLpipeline")`` returns inside IRIS and
mirrors exactly the four methods mlpipeline calls on it (see ``mlpipeline.iris.globals``),
with the real API's conventions (IRIS.md, and the embedded API's stubs shipped with
``iris-embedded-python-wrapper``): the key is a list of subscripts, ``None`` or ``[]`` is the
root node; reading an undefined node gives ``None``; ``data`` answers like ``$DATA``
(0, 1, 10, 11); ``kill`` removes the node and everything below it. As in IRIS, an empty
string is not a valid subscript (<SUBSCRIPT> error) and a subscript must be a string or a
number. Nothing else of IRIS is imitated: no transactions, no locks, no collation beyond
Python's ordering.

:class:`FakeSystem` stands for ``iris.cls("%SYS.System")`` and records the calls of its one
method mlpipeline uses, ``WriteToConsoleLog(message, 0, severity)``.
"""

from __future__ import annotations

import threading
from typing import Any

Key = tuple[Any, ...]


class FakeGref:
    """In-memory ``iris.gref(...)``: ``get``, ``set``, ``kill``, ``data`` (nothing else)."""

    def __init__(self) -> None:
        self.nodes: dict[Key, Any] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(key: list[Any] | None) -> Key:
        subs = tuple(key or ())
        for sub in subs:
            if isinstance(sub, bool) or not isinstance(sub, str | int | float):
                raise TypeError(f"<SUBSCRIPT> invalid subscript type {type(sub).__name__}: {sub!r}")
            if sub == "":
                raise ValueError("<SUBSCRIPT> a null subscript is not allowed")
        return subs

    def get(self, key: list[Any] | None = None) -> Any:
        with self._lock:
            return self.nodes.get(self._key(key))

    def set(self, key: list[Any] | None, value: Any) -> None:
        if value is None or not isinstance(value, str | int | float | bytes):
            raise TypeError(f"cannot store a {type(value).__name__} in a global node")
        with self._lock:
            self.nodes[self._key(key)] = value

    def kill(self, key: list[Any] | None = None) -> None:
        k = self._key(key)
        with self._lock:
            for node in [n for n in self.nodes if n[: len(k)] == k]:
                del self.nodes[node]

    def data(self, key: list[Any] | None = None) -> int:
        k = self._key(key)
        with self._lock:
            defined = k in self.nodes
            below = any(len(n) > len(k) and n[: len(k)] == k for n in self.nodes)
        return (1 if defined else 0) + (10 if below else 0)


class FakeSystem:
    """In-memory ``iris.cls("%SYS.System")``: records ``WriteToConsoleLog`` calls."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, int, int]] = []
        self.threads: set[int] = set()

    def WriteToConsoleLog(self, message: str, prefix: int = 0, severity: int = 0) -> int:
        self.lines.append((message, prefix, severity))
        self.threads.add(threading.get_ident())
        return 1
