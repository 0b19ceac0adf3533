"""A real 'mlpipeline serve' process under continuous requests while 'mlpipeline promote' runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from benchmarks.serving import child_env as env_for  # one way to hand settings to a child CLI
from sqlalchemy import func, select

from mlpipeline.featurestore.sql import open_store
from tests.trained_home import Trained

pytestmark = [pytest.mark.slow, pytest.mark.integration]

POLL_S = 0.5
CLI = str(Path(sys.executable).with_name("mlpipeline"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become healthy")


def test_promotion_is_served_within_the_poll_interval_with_zero_failed_requests(
    trained: Trained, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = env_for(trained.settings)
    server = subprocess.Popen(
        [CLI, "serve", "-f", "demo", "--port", str(port), "--poll", str(POLL_S)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    seen: list[tuple[float, int, str | None]] = []
    stop = threading.Event()

    def hammer() -> None:
        rows = trained.records(10)
        with httpx.Client(base_url=url, timeout=5) as client:
            i = 0
            while not stop.is_set():
                try:
                    r = client.post("/predict", json=[rows[i % len(rows)]])
                    version = r.json()["model"]["version"] if r.status_code == 200 else None
                    seen.append((time.monotonic(), r.status_code, version))
                except httpx.HTTPError as exc:
                    seen.append((time.monotonic(), 0, repr(exc)))
                i += 1

    try:
        wait_healthy(url, server)
        worker = threading.Thread(target=hammer)
        worker.start()
        time.sleep(1.0)
        promoted = subprocess.run(
            [CLI, "promote", "2", "-f", "demo", "-r", "hot swap test"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        promoted_at = time.monotonic()
        assert promoted.returncode == 0, promoted.stderr
        time.sleep(POLL_S + 1.5)
        stop.set()
        worker.join(timeout=10)
    finally:
        stop.set()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
    failed = [s for s in seen if s[1] != 200]
    assert not failed, failed[:5]
    assert len(seen) > 100, "the client kept the server busy"
    versions = [v for _, _, v in seen]
    assert versions[0] == "1"
    first_v2 = next(t for t, _, v in seen if v == "2")
    assert first_v2 - promoted_at <= POLL_S + 0.5, first_v2 - promoted_at
    after = versions[versions.index("2") :]
    assert set(after) == {"2"}, "once swapped, never back"
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the parent sees why it ended.
    assert server.returncode in (0, -signal.SIGTERM)
    # The shutdown was clean: the prediction log was flushed, every answered request is in it.
    store = open_store(trained.settings)
    with store.engine.connect() as conn:
        logged = conn.execute(select(func.count()).select_from(store.tables.prediction_log)).scalar_one()
    store.dispose()
    assert logged == len(seen)
