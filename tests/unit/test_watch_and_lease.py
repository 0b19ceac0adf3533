"""The watch loop (back-off, stop, no overlap) and leases (exclusive, renewable, expiring)."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest

from mlpipeline.errors import StoreError
from mlpipeline.featurestore.lease import LeaseHolder, holder_is_gone, new_owner
from mlpipeline.featurestore.sql import SqlFeatureStore, utcnow
from mlpipeline.monitoring.watch import watch_loop


def test_watch_runs_until_the_iteration_limit_and_waits_the_rest_of_the_period() -> None:
    calls: list[int] = []
    waits: list[float] = []
    stop = threading.Event()
    stats = watch_loop(
        lambda: calls.append(1), timedelta(seconds=0.01), stop, max_iterations=3, on_wait=waits.append
    )
    assert stats.iterations == 3
    assert len(calls) == 3
    assert len(waits) == 2
    assert all(0 <= w <= 0.01 for w in waits)


def test_watch_survives_failures_and_backs_off_then_resets() -> None:
    outcomes = iter([StoreError("db down"), StoreError("db down"), StoreError("db down"), None, None])
    waits: list[float] = []

    def once() -> None:
        exc = next(outcomes)
        if exc:
            raise exc

    stats = watch_loop(
        once,
        timedelta(seconds=0.8),
        threading.Event(),
        max_iterations=5,
        on_wait=lambda w: waits.append(round(w, 3)),
    )
    assert stats.failures == 3
    assert stats.consecutive_failures == 0
    assert waits[:3] == [0.1, 0.2, 0.4]  # doubling from interval/8
    assert waits[3] > 0.7  # after a success: the rest of the period


def test_watch_stops_at_once_when_told() -> None:
    stop = threading.Event()
    running = threading.Event()
    overlapping = []
    active = [0]

    def once() -> None:
        active[0] += 1
        overlapping.append(active[0])
        running.set()
        active[0] -= 1

    worker = threading.Thread(target=watch_loop, args=(once, timedelta(hours=1), stop))
    worker.start()
    assert running.wait(5)
    stop.set()
    worker.join(timeout=5)
    assert not worker.is_alive(), "the hour-long wait ends when the stop event is set"
    assert max(overlapping) == 1


def test_a_bug_is_not_swallowed() -> None:
    def once() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        watch_loop(once, timedelta(seconds=1), threading.Event(), max_iterations=2)


def test_lease_is_exclusive_renewable_and_expires(store: SqlFeatureStore) -> None:
    leases = LeaseHolder(store, "demo")
    now = utcnow()
    ttl = timedelta(minutes=10)
    first = leases.acquire("retrain", "a", ttl, now=now)
    assert first is not None
    assert leases.acquire("retrain", "b", ttl, now=now + timedelta(minutes=5)) is None
    renewed = leases.acquire("retrain", "a", ttl, now=now + timedelta(minutes=5))
    assert renewed is not None
    assert renewed.acquired_at == first.acquired_at
    assert renewed.expires_at == now + timedelta(minutes=15)
    # A holder that died: once the lease has expired, someone else takes it.
    taken = leases.acquire("retrain", "b", ttl, now=now + timedelta(minutes=16))
    assert taken is not None
    assert taken.owner == "b"
    leases.release("retrain", "a")  # not the holder: no effect
    current = leases.current("retrain")
    assert current is not None
    assert current.owner == "b"
    leases.release("retrain", "b")
    assert leases.current("retrain") is None
    assert LeaseHolder(store, "other").acquire("retrain", "c", ttl) is not None  # per feature set


def test_only_one_of_many_racing_processes_gets_the_lease(store: SqlFeatureStore) -> None:
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def contend(owner: str) -> None:
        barrier.wait()
        if LeaseHolder(store, "demo").acquire("check", owner, timedelta(minutes=5)) is not None:
            winners.append(owner)

    threads = [threading.Thread(target=contend, args=(f"p{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_a_lease_whose_local_holder_died_is_taken_over_at_once(store: SqlFeatureStore) -> None:
    import socket
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(dead.stdout)  # that process has exited
    host = socket.gethostname()
    leases = LeaseHolder(store, "demo")
    ttl = timedelta(minutes=30)
    assert leases.acquire("train", f"{host}:{dead_pid}:abcd1234", ttl) is not None
    taken = leases.acquire("train", new_owner(), ttl)
    assert taken is not None, "a dead holder's lease must not be waited out for 30 minutes"
    leases.release("train", taken.owner)

    # A live holder here (our parent), a holder on another machine, or an owner in another
    # form keeps its lease until it expires.
    for owner in (f"{host}:{os.getppid()}:abcd1234", f"elsewhere-{host}:{dead_pid}:x", "a"):
        assert leases.acquire("check", owner, ttl) is not None
        assert leases.acquire("check", new_owner(), ttl) is None, owner
        leases.release("check", owner)


def test_holder_is_gone_judges_only_this_machine() -> None:
    import socket

    host = socket.gethostname()
    assert not holder_is_gone(f"{host}:{os.getpid()}:x")  # ourselves
    assert not holder_is_gone(f"{host}:{os.getppid()}:x")
    assert not holder_is_gone(f"{host}:not-a-pid:x")
    assert not holder_is_gone("other-host:1:x")
    assert not holder_is_gone("")
