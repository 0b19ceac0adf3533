"""``mlpipeline watch``: run the check on a schedule until told to stop.

One loop, one thread: iterations never overlap (and the check's lease keeps other
processes out too). A failing iteration is logged and the loop backs off (doubling from
``interval / 8`` up to ``interval``) instead of hammering a database or tracking server
that is down; the first success resets the back-off. SIGINT or SIGTERM ends the wait at
once, and a running check is allowed to finish, so a shutdown never leaves a check half
recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from mlpipeline.errors import MlpipelineError

__all__ = ["WatchStats", "watch_loop"]

log = logging.getLogger(__name__)


@dataclass
class WatchStats:
    iterations: int = 0
    failures: int = 0
    consecutive_failures: int = 0


def watch_loop(
    run_once: Callable[[], None],
    interval: timedelta,
    stop: threading.Event,
    *,
    max_iterations: int | None = None,
    on_wait: Callable[[float], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
) -> WatchStats:
    """Call ``run_once`` every ``interval`` until ``stop`` is set (or ``max_iterations`` ran)."""
    period = interval.total_seconds()
    if period <= 0:
        raise ValueError("the watch interval must be positive")
    stats = WatchStats()
    while not stop.is_set():
        started = clock()
        try:
            run_once()
            stats.consecutive_failures = 0
        except (MlpipelineError, OSError) as exc:
            stats.failures += 1
            stats.consecutive_failures += 1
            log.error(
                "watch iteration failed; backing off",
                extra={"detail": f"{getattr(exc, 'code', type(exc).__name__)}: {exc}"[:500]},
            )
        stats.iterations += 1
        if max_iterations is not None and stats.iterations >= max_iterations:
            break
        if stats.consecutive_failures:
            wait = min(period, period / 8 * 2 ** (stats.consecutive_failures - 1))
        else:
            wait = max(0.0, period - (clock() - started))
        on_wait(wait)
        stop.wait(wait)
    return stats
