"""Faults a CT pipeline meets unattended: a locked database, MLflow down, racing checks, a broken cache.

Every case runs the real CLI in child processes against a trained home (champion v1, v2
registered) and checks that nothing is lost or half-written and the production model does
not move because something failed.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from mlpipeline.errors import BusyError, StoreUnavailableError
from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.checks import RETRAIN_PENDING_KEY, CheckRecords
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_day
from mlpipeline.registry.tracking import Tracker
from mlpipeline.settings import Settings
from tests.reliability.helpers import REPO, registry_state, run_cli
from tests.serving.test_hot_swap_http import env_for
from tests.trained_home import Trained

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: The performance trigger fires on any realistic R², so a check of new rows always retrains.
ALWAYS_RETRAIN = {"MLPIPELINE_R2_THRESHOLD": "0.99", "MLPIPELINE_MIN_SAMPLES": "50"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_labelled_rows(settings: Settings, day: int = 6) -> int:
    """Ingest one more day of the stream (labels known long ago); returns its row count."""
    d = load_definition("demo")
    frame = generate_day(StreamConfig(rows_per_day=300, seed=7), day)
    store = open_store(settings)
    try:
        ingest_frame(store, d, frame)
    finally:
        store.dispose()
    return len(frame)


def store_counts(settings: Settings) -> tuple[int, int, int]:
    """(feature rows, batches, checks) of the demo feature set."""
    d = load_definition("demo")
    store = open_store(settings)
    try:
        return store.count_rows(d), len(store.batches(d)), len(CheckRecords(store, "demo").history(1000))
    finally:
        store.dispose()


def test_sqlite_locked_by_another_writer(trained: Trained, tmp_path: Path) -> None:
    settings = trained.settings
    batch = tmp_path / "day7.csv"
    generate_day(StreamConfig(rows_per_day=300, seed=7), 7).to_csv(batch, index=False)
    before = store_counts(settings)
    short = {"MLPIPELINE_SQLITE_BUSY_TIMEOUT_S": "1"}

    writer = sqlite3.connect(settings.home / "featurestore.db", isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        for args in (["ingest", str(batch), "-f", "demo"], ["promote", "2", "-f", "demo"]):
            done = run_cli(settings, *args, env=short)
            assert done.returncode == StoreUnavailableError.exit_code, done.stderr
            assert "locked by another writer" in done.stderr
            assert "MLPIPELINE_SQLITE_BUSY_TIMEOUT_S" in done.stderr
        checked = run_cli(settings, "check", "-f", "demo", env=short)
        assert checked.returncode == StoreUnavailableError.exit_code, checked.stderr
    finally:
        writer.execute("ROLLBACK")
    # Nothing was written, and the promotion that could not reach the pointer was undone.
    assert store_counts(settings) == before
    assert registry_state(settings)[:2] == ("1", "1")

    # A lock released within the busy timeout is waited for.
    writer.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.5, lambda: writer.execute("ROLLBACK"))
    release.start()
    try:
        done = run_cli(
            settings, "ingest", str(batch), "-f", "demo", env={"MLPIPELINE_SQLITE_BUSY_TIMEOUT_S": "30"}
        )
    finally:
        release.join()
        writer.close()
    assert done.returncode == 0, done.stderr
    assert store_counts(settings)[:2] == (before[0] + 300, before[1] + 1)


def test_mlflow_down_during_check_keeps_the_result_and_defers_the_retrain(trained: Trained) -> None:
    settings = trained.settings
    n = new_labelled_rows(settings)
    down = {
        **ALWAYS_RETRAIN,
        "MLPIPELINE_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed_port()}",
        "MLPIPELINE_MLFLOW_HTTP_MAX_RETRIES": "0",
        "MLPIPELINE_MLFLOW_HTTP_TIMEOUT_S": "2",
    }
    done = run_cli(settings, "check", "-f", "demo", env=down)
    assert done.returncode == BusyError.exit_code, done.stdout + done.stderr
    assert "retrain failed" in done.stdout
    assert "the next check retries it" in done.stderr

    store = open_store(settings)
    try:
        records = CheckRecords(store, "demo")
        (check,) = records.history(10)
        assert check.n_rows >= n  # the new day, and any rows no check has measured yet
        assert check.r2 is not None
        assert check.details["retrain"]["pending"] is True
        assert "mlflow_error" in check.details
        assert store.get_state("demo", RETRAIN_PENDING_KEY)
        # The watermark moved past the measured rows: they are not measured twice.
        rows, _ = store.labelled_since(load_definition("demo"), records.watermark())
        assert len(rows) == 0
    finally:
        store.dispose()
    assert registry_state(settings)[:2] == ("1", "1")
    assert len(Tracker(settings).versions("demo")) == 2

    # MLflow is back: the next check has no new rows, yet retries the pending retrain.
    again = run_cli(settings, "check", "-f", "demo", env=ALWAYS_RETRAIN)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "retrying the retrain" in again.stdout
    assert len(Tracker(settings).versions("demo")) == 3
    store = open_store(settings)
    try:
        assert not store.get_state("demo", RETRAIN_PENDING_KEY)
        latest = CheckRecords(store, "demo").history(1)[0]
        assert latest.n_rows == 0
        assert latest.details["retrain"]["version"] == "3"
    finally:
        store.dispose()


def test_two_check_processes_started_together_retrain_once(trained: Trained) -> None:
    settings = trained.settings
    new_labelled_rows(settings)
    env = {**env_for(settings), **ALWAYS_RETRAIN}
    command = [sys.executable, "-m", "tests.reliability.killer", "-", "none", "check", "-f", "demo"]
    procs = [
        subprocess.Popen(
            command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    retrained = [out for out, _ in outputs if "retrained: version" in out]
    assert len(retrained) == 1, outputs
    assert len(Tracker(settings).versions("demo")) == 3


def test_a_deleted_cache_is_downloaded_again_and_a_corrupt_one_is_refused_offline(
    trained: Trained, tmp_path: Path
) -> None:
    settings = trained.settings
    requests = tmp_path / "requests.csv"
    pd.DataFrame(trained.records(20)).to_csv(requests, index=False)
    first = run_cli(settings, "predict", str(requests), "-f", "demo", "--no-log")
    assert first.returncode == 0, first.stderr

    import shutil

    shutil.rmtree(settings.home / "models")
    again = run_cli(settings, "predict", str(requests), "-f", "demo", "--no-log")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout  # downloaded, verified, the same predictions

    model_file = next((settings.home / "models").rglob("model.txt"))
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_file.write_bytes(bytes(data))
    offline = {
        "MLPIPELINE_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed_port()}",
        "MLPIPELINE_MLFLOW_HTTP_MAX_RETRIES": "0",
        "MLPIPELINE_MLFLOW_HTTP_TIMEOUT_S": "2",
    }
    refused = run_cli(settings, "predict", str(requests), "-f", "demo", "--no-log", env=offline)
    assert refused.returncode != 0
    assert refused.stdout == ""  # no prediction from a model that does not verify
    assert "MLP-" in refused.stderr
    repaired = run_cli(settings, "predict", str(requests), "-f", "demo", "--no-log")
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stdout == first.stdout
