"""The IRIS global ``^MLpipeline`` from Python: ``iris.gref`` inside IRIS, the Native API outside.

mlpipeline uses four methods of the object ``iris.gref("^MLpipeline")`` returns inside
IRIS (embedded Python), each taking the subscripts as a list:

- ``get(key)``: the node's value, or ``None`` when the node is undefined;
- ``set(key, value)``: store a value;
- ``kill(key)``: delete the node and everything below it;
- ``data(key)``: ``$DATA`` of the node (0 undefined, 1 value, 10 children only, 11 both).

:class:`GlobalNode` names that subset; :class:`NativeGlobal` offers the same four methods
over the Native API object from ``iris.createIRIS(conn)`` (``get(name, *subs)``,
``set(value, name, *subs)``, ``kill(name, *subs)``, ``isDefined(name, *subs)``), so the
code above it is the same inside and outside IRIS. Writers also hold an IRIS ``LOCK`` on
the node they change (:class:`EmbeddedLock`, :class:`NativeLock`) so that processes, not
only threads, take turns.

This module and the rest of :mod:`mlpipeline.iris` are the only code that imports ``iris``;
nothing here runs at import time (IRIS keeps an imported module for the life of a process).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mlpipeline.errors import ConfigError, StoreUnavailableError

__all__ = [
    "ROOT",
    "EmbeddedLock",
    "GlobalLock",
    "GlobalNode",
    "NativeGlobal",
    "NativeLock",
    "Subscript",
    "embedded_gref",
    "embedded_lock",
    "inside_iris",
    "lock_reference",
    "native_connection",
]

log = logging.getLogger(__name__)

#: The global that holds mlpipeline's state in IRIS.
ROOT = "^MLpipeline"

Subscript = str | int


class GlobalNode(Protocol):
    """The part of ``iris.gref(...)``'s interface mlpipeline uses (see the module docstring)."""

    def get(self, key: list[Subscript]) -> Any: ...

    def set(self, key: list[Subscript], value: Any) -> None: ...

    def kill(self, key: list[Subscript]) -> None: ...

    def data(self, key: list[Subscript]) -> int: ...


#: The ObjectScript lock type both lock classes pass. ``"E"`` is *escalating*, not a synonym
#: for exclusive: a lock without a type is already exclusive, and ``"E"`` keeps it exclusive
#: while also letting IRIS escalate many locks on one subscript level to their parent (past
#: the escalation threshold, 1,000 by default). A writer here holds one lock at a time, so it
#: never escalates; each unlock names the same type as its lock.
LOCK_TYPE = "E"


class GlobalLock(Protocol):
    """An exclusive lock on one node of the global, between processes (type :data:`LOCK_TYPE`)."""

    def acquire(self, key: Sequence[Subscript], timeout_s: float) -> None:
        """Take the lock or raise :class:`StoreUnavailableError` after ``timeout_s``."""

    def release(self, key: Sequence[Subscript]) -> None: ...


# -- inside IRIS: embedded Python ---------------------------------------------------------


def _embedded_gref(name: str) -> Any | None:
    try:
        import iris
    except ImportError:
        return None
    # The SDK's facade warns on its logger each time it finds no embedded runtime.
    facade_log = logging.getLogger("_iris_ep")
    level = facade_log.level
    facade_log.setLevel(logging.ERROR)
    try:
        # Outside IRIS this raises (RuntimeError from the SDK's facade, or AttributeError).
        # Other calls of that facade may return a stand-in object instead of failing, so
        # gref is the one probe that tells whether an embedded runtime is present.
        return iris.gref(name)
    except Exception:  # any failure means "not inside IRIS"
        return None
    finally:
        facade_log.setLevel(level)


def inside_iris() -> bool:
    """Whether this process runs embedded Python inside an IRIS instance."""
    return _embedded_gref(ROOT) is not None


def embedded_gref(name: str = ROOT) -> GlobalNode | None:
    """``iris.gref(name)`` inside IRIS; ``None`` elsewhere.

    The one place the production pointer reaches IRIS from inside it: tests replace this
    function with one returning a small in-memory stand-in for the gref object.
    """
    node: GlobalNode | None = _embedded_gref(name)
    return node


def lock_reference(name: str, key: Sequence[Subscript]) -> str:
    """The ObjectScript name of a global node, e.g. ``^MLpipeline("Production","housing")``."""
    parts = []
    for sub in key:
        if isinstance(sub, int):
            parts.append(str(sub))
        else:
            parts.append('"' + str(sub).replace('"', '""') + '"')
    return f"{name}({','.join(parts)})" if parts else name


class EmbeddedLock:
    """``LOCK +^MLpipeline(...)#"E":timeout`` (exclusive, escalating) via ``iris.lock``/``iris.unlock``."""

    def __init__(self, iris_module: Any, name: str = ROOT) -> None:
        self._iris = iris_module
        self._name = name

    def acquire(self, key: Sequence[Subscript], timeout_s: float) -> None:
        ref = lock_reference(self._name, key)
        try:
            got = self._iris.lock([ref], max(int(timeout_s), 0), LOCK_TYPE)
        except Exception as exc:
            raise StoreUnavailableError(
                f"could not lock {ref} within {timeout_s:g} s ({exc.__class__.__name__}: {exc}); "
                "another process holds it"
            ) from exc
        # Documented to return nothing; a False return is read as a timeout (defensive).
        if got is False:
            raise StoreUnavailableError(
                f"could not lock {ref} within {timeout_s:g} s; another process holds it"
            )

    def release(self, key: Sequence[Subscript]) -> None:
        self._iris.unlock([lock_reference(self._name, key)], 0, LOCK_TYPE)


def embedded_lock(name: str = ROOT) -> EmbeddedLock | None:
    """The IRIS lock inside IRIS, ``None`` elsewhere (callers then lock within the process only)."""
    if not inside_iris():
        return None
    import iris

    return EmbeddedLock(iris, name)


# -- outside IRIS: the Native API -----------------------------------------------------------


class NativeGlobal:
    """:class:`GlobalNode` over the Native API object returned by ``iris.createIRIS(conn)``."""

    def __init__(self, db: Any, name: str = ROOT) -> None:
        self.db = db
        self.name = name

    def get(self, key: list[Subscript]) -> Any:
        return self.db.get(self.name, *key)

    def set(self, key: list[Subscript], value: Any) -> None:
        self.db.set(value, self.name, *key)

    def kill(self, key: list[Subscript]) -> None:
        self.db.kill(self.name, *key)

    def data(self, key: list[Subscript]) -> int:
        return int(self.db.isDefined(self.name, *key))


class NativeLock:
    """``db.lock("E", timeout, name, *subs)`` and ``db.unlock("E", name, *subs)`` (exclusive, escalating)."""

    def __init__(self, db: Any, name: str = ROOT) -> None:
        self.db = db
        self.name = name

    def acquire(self, key: Sequence[Subscript], timeout_s: float) -> None:
        try:
            self.db.lock(LOCK_TYPE, max(int(timeout_s), 0), self.name, *key)
        except Exception as exc:  # the SDK raises on <TIMEOUT>
            raise StoreUnavailableError(
                f"could not lock {lock_reference(self.name, key)} within {timeout_s:g} s "
                f"({exc.__class__.__name__}: {exc}); another process holds it"
            ) from exc

    def release(self, key: Sequence[Subscript]) -> None:
        self.db.unlock(LOCK_TYPE, self.name, *key)


def native_connection(url: str) -> tuple[Any, Any]:
    """``(connection, iris)`` of the Native API for an ``iris://user:password@host:port/NAMESPACE`` URL.

    The caller closes the connection. Credentials come from the URL (i.e. from settings or
    the environment), never from code.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"not an IRIS URL: {exc}") from exc
    if parsed.get_backend_name() != "iris" or parsed.get_driver_name() == "emb":
        raise ConfigError(
            "the Native API needs an iris://USER:PASSWORD@HOST:PORT/NAMESPACE URL "
            f"(got the driver '{parsed.drivername}')"
        )
    if not parsed.host or not parsed.username:
        raise ConfigError("the IRIS URL needs a host and a user: iris://USER:PASSWORD@HOST:PORT/NAMESPACE")
    import iris

    try:
        connection = iris.createConnection(
            parsed.host,
            int(parsed.port or 1972),
            parsed.database or "USER",
            parsed.username,
            parsed.password or "",
        )
    except Exception as exc:
        raise StoreUnavailableError(
            f"IRIS at {parsed.host}:{parsed.port or 1972} did not accept a Native API connection "
            f"({exc.__class__.__name__}); is it running, and are the user and namespace right?"
        ) from exc
    return connection, iris.createIRIS(connection)


@contextmanager
def native_global(url: str, name: str = ROOT) -> Iterator[tuple[NativeGlobal, NativeLock]]:
    """The global and its lock over a Native API connection, closed afterwards."""
    connection, db = native_connection(url)
    try:
        yield NativeGlobal(db, name), NativeLock(db, name)
    finally:
        try:
            connection.close()
        except Exception:  # closing a broken connection must not hide the real error
            log.debug("closing the IRIS connection failed", exc_info=True)
