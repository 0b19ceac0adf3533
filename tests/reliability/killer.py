"""Run the ``mlpipeline`` CLI and ``kill -9`` this very process at a chosen point.

    python -m tests.reliability.killer MODULE:ATTRIBUTE[@N] before|after CLI-ARGS...
    python -m tests.reliability.killer - none CLI-ARGS...      (no fault: the plain CLI)

The named function (e.g. ``mlpipeline.registry.tracking:Tracker.set_alias``) is wrapped so that the
process sends itself SIGKILL just before it runs or just after it returns (at its N-th call
with ``@N``, default the first): no ``finally``
block, ``atexit`` hook or destructor runs, exactly as when the machine's OOM killer or an
operator's ``kill -9`` strikes. Everything else is the real CLI on the real stores. A module
attribute is replaced where the caller looks it up (``mlpipeline.training.pipeline:fit``, not
``mlpipeline.training.steps:fit``); a class attribute is replaced for every caller.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
from typing import Any


def arm(target: str, when: str) -> None:
    target, _, nth = target.partition("@")  # MODULE:ATTRIBUTE@N: strike at the N-th call
    strike_at = int(nth or 1)
    calls = 0
    module_name, _, path = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    original = getattr(owner, name)
    if not callable(original):
        raise SystemExit(f"{target} is not callable")

    @functools.wraps(original)
    def dying(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls < strike_at:
            return original(*args, **kwargs)
        if when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, dying)


def main() -> None:
    target, when, *argv = sys.argv[1:]
    if when not in ("before", "after", "none"):
        raise SystemExit(f"when must be 'before', 'after' or 'none', not {when!r}")
    if when != "none":
        arm(target, when)
    from mlpipeline.cli import main as cli_main

    cli_main(argv)


if __name__ == "__main__":
    main()
