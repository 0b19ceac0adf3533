"""'mlpipeline serve --workers 2' under load while 'mlpipeline promote' runs: every replica
answers with the new version within the poll interval plus one second, no request fails, and
the prediction log holds every answered prediction (two writers)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from benchmarks.serving import child_env as env_for
from sqlalchemy import func, select

from mlpipeline.featurestore.sql import open_store
from tests.serving.test_hot_swap_http import CLI, free_port, wait_healthy
from tests.trained_home import Trained

pytestmark = [pytest.mark.slow, pytest.mark.integration]

POLL_S = 0.5
WORKERS = 2
CLIENTS = 4


def test_every_worker_swaps_within_the_poll_interval_under_load(trained: Trained, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = env_for(trained.settings)
    server = subprocess.Popen(
        [CLI, "serve", "-f", "demo", "--port", str(port), "--poll", str(POLL_S), "--workers", str(WORKERS)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    # (time, process, served version) from /health; (time, status, version) from /predict
    health: list[tuple[float, int, str | None]] = []
    answers: list[tuple[float, int, str | None]] = []
    stop = threading.Event()

    def client() -> None:
        rows = trained.records(10)
        i = 0
        while not stop.is_set():
            try:  # a new connection each time, so the kernel spreads them over the workers
                r = httpx.post(f"{url}/predict", json=[rows[i % len(rows)]], timeout=5)
                version = r.json()["model"]["version"] if r.status_code == 200 else None
                answers.append((time.monotonic(), r.status_code, version))
                h = httpx.get(f"{url}/health", timeout=5).json()
                health.append((time.monotonic(), int(h["process"]), h["serving_version"]))
            except httpx.HTTPError as exc:
                answers.append((time.monotonic(), 0, repr(exc)))
            i += 1

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    try:
        wait_healthy(url, server)
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len({p for _, p, _ in health}) < WORKERS and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = {p for _, p, _ in health}
        assert len(workers) == WORKERS, f"requests reached {len(workers)} worker(s)"
        promoted = subprocess.run(
            [CLI, "promote", "2", "-f", "demo", "-r", "replicas test"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        promoted_at = time.monotonic()
        assert promoted.returncode == 0, promoted.stderr
        time.sleep(POLL_S + 2.0)
        stop.set()
        for t in threads:
            t.join(timeout=10)
    finally:
        stop.set()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
    failed = [a for a in answers if a[1] != 200]
    assert not failed, failed[:5]
    assert len(answers) > 50, "the clients kept the workers busy"
    assert {v for _, _, v in answers} == {"1", "2"}
    for worker in workers:
        seen = [(t, v) for t, p, v in health if p == worker]
        last_old = max((t for t, v in seen if v == "1"), default=promoted_at)
        assert last_old - promoted_at <= POLL_S + 1.0, (worker, last_old - promoted_at)
        after = [v for t, v in seen if t > promoted_at + POLL_S + 1.0]
        assert after, f"worker {worker} answered after the swap"
        assert set(after) == {"2"}, (worker, after)
    # Both workers wrote the predictions they answered; shut down cleanly, nothing is lost.
    store = open_store(trained.settings)
    with store.engine.connect() as conn:
        logged = conn.execute(select(func.count()).select_from(store.tables.prediction_log)).scalar_one()
    store.dispose()
    assert logged == len(answers)
