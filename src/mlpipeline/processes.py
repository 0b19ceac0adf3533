"""Whether a process named in a record (a lease, a staging folder) still runs on this machine."""

from __future__ import annotations

import os

__all__ = ["pid_is_gone"]


def pid_is_gone(pid: int) -> bool:
    """True only when no process ``pid`` exists here; our own pid and unknowns count as alive.

    A reused pid errs on the safe side (the record is kept), never the other way.
    """
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False
