"""'mlpipeline ui' as a user runs it: ready only when the port answers; SIGTERM stops it all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def descendants(pid: int) -> list[int]:
    found = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    children: dict[int, list[int]] = {}
    for line in found.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().split()[2] == "Z")


def test_ui_reports_ready_when_the_port_answers_and_sigterm_stops_its_workers(tmp_path: Path) -> None:
    home = tmp_path / "dur"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPELINE_")}
    env |= {
        "MLPIPELINE_HOME": str(home),
        "MLPIPELINE_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "MLPIPELINE_FEATURESTORE_URL": f"sqlite:///{home / 'fs.db'}",
        "MLPIPELINE_LOG_DIR": str(home / "logs"),
    }
    port = free_port()
    cli = subprocess.Popen(
        [sys.executable, "-c", "from mlpipeline.cli import main; main()", "ui", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def drain() -> None:  # the server logs to the same pipe: keep it from filling up
        assert cli.stderr is not None
        for text in cli.stderr:
            lines.append(text)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any("MLflow UI ready" in x for x in lines):
            assert cli.poll() is None, "".join(lines)
            time.sleep(0.1)
        assert any("MLflow UI ready" in x for x in lines), "".join(lines)
        assert answers(port), "ready means the port answers"
        workers = descendants(cli.pid)
        assert workers, "the UI runs in child processes"
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=30) == 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (answers(port) or any(alive(p) for p in workers)):
            time.sleep(0.2)
        assert not answers(port), "nothing serves after SIGTERM"
        assert [p for p in workers if alive(p)] == [], "every worker stopped"
    finally:
        if cli.poll() is None:
            cli.kill()
