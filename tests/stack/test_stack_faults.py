"""Faults of the real stack: the tracking server killed or hung, the S3 endpoint stopped, PostgreSQL
restarted. Each must give one clean error within bounded time, leave the production pointer and
the ``champion`` alias as they were, and the next run must succeed once the part is back.

The kill happens inside ``train`` at a chosen step (a hook on the tracker fires it right before
that step's request), so the fault lands in the same place every time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mlpipeline.errors import TrackingError
from mlpipeline.featuresets.definition import Definition
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.tracking import CHAMPION, Tracker
from mlpipeline.settings import Settings
from mlpipeline.stack import Stack
from mlpipeline.training.pipeline import train

from .conftest import demo_store, ensure_postgres_running, restart_postgres, stack_settings

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]

#: Default retry policy (4 attempts, backoff 0 + 2 + 4 s plus jitter) and a margin.
BOUNDED_S = 30.0


@pytest.fixture(autouse=True)
def _stack_whole_again(fault_stack: Stack) -> Iterator[None]:
    """Whatever a test broke runs again before the next test."""
    yield
    fault_stack.mlflow.resume()
    ensure_postgres_running()
    if fault_stack.s3_process is not None and not fault_stack.s3_process.running:
        fault_stack.start_s3()
    if not fault_stack.mlflow.running:
        fault_stack.start_mlflow()


def champion_in_postgres(stack: Stack, name: str) -> str | None:
    engine = stack.backend_engine()
    try:
        with engine.connect() as conn:
            version = conn.execute(
                text("SELECT version FROM registered_model_aliases WHERE name = :n AND alias = :a"),
                {"n": name, "a": CHAMPION},
            ).scalar()
    finally:
        engine.dispose()
    return None if version is None else str(version)


def production(settings: Settings, store: SqlFeatureStore, stack: Stack) -> tuple[str | None, str | None]:
    """(production pointer's version, champion alias's version read from PostgreSQL)."""
    pointer = SqlPointerStore(store).get("demo")
    name = f"{settings.registry_prefix}demo"
    return (pointer.version if pointer else None), champion_in_postgres(stack, name)


def fire_before(
    monkeypatch: pytest.MonkeyPatch, method: str, when: Callable[..., bool], fault: Callable[[], None]
) -> list[str]:
    """Run ``fault`` right before the first ``Tracker.<method>`` call for which ``when(*args)`` holds."""
    original = getattr(Tracker, method)
    fired: list[str] = []

    def hooked(self: Tracker, *args: Any, **kwargs: Any) -> Any:
        if not fired and when(*args, **kwargs):
            fired.append(method)
            fault()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Tracker, method, hooked)
    return fired


def assert_one_clean_line(exc: BaseException, *needles: str) -> None:
    message = str(exc)
    assert "\n" not in message, message
    assert "Traceback" not in message
    for needle in needles:
        assert needle in message, message


KILL_POINTS: dict[str, tuple[str, Callable[..., bool]]] = {
    # uploading the model folder
    "log_model": ("log_artifacts", lambda run_id, folder, path: path == "model"),
    # registering the new version
    "register": ("register", lambda *args, **kwargs: True),
    # moving the champion alias during promotion
    "promote": ("set_alias", lambda featureset, alias, version: alias == CHAMPION),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_tracking_server_killed_during_train(
    point: str,
    fault_stack: Stack,
    featurestore_url: str,
    tmp_path: Path,
    demo_def: Definition,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every model that passes the floor is promoted, so each run wants to move production.
    settings = stack_settings(tmp_path, fault_stack, featurestore_url, min_improvement=-1.0)
    store = demo_store(settings, demo_def)
    try:
        assert train(settings, store, demo_def, reason="before the fault").version == "1"
        assert production(settings, store, fault_stack) == ("1", "1")

        method, when = KILL_POINTS[point]
        with monkeypatch.context() as m:
            fired = fire_before(m, method, when, lambda: fault_stack.stop_mlflow(kill=True))
            t0 = time.monotonic()
            with pytest.raises(TrackingError) as failure:
                train(settings, store, demo_def, reason=f"server killed at {point}")
            elapsed = time.monotonic() - t0
        assert fired == [method]
        assert_one_clean_line(failure.value, "MLflow could not", fault_stack.tracking_uri, "refused")
        assert elapsed < BOUNDED_S, f"failing took {elapsed:.1f} s"
        assert SqlPointerStore(store).get("demo") is not None
        assert SqlPointerStore(store).get("demo").version == "1"  # type: ignore[union-attr]

        fault_stack.start_mlflow()
        assert production(settings, store, fault_stack) == ("1", "1")
        assert Tracker(settings).alias_version("demo", CHAMPION) == "1"

        after = train(settings, store, demo_def, reason="server back")
        assert after.decision is not None
        assert after.decision.action == "promote"
        assert after.champion_version == "1"
        assert production(settings, store, fault_stack) == (after.version, after.version)
    finally:
        store.dispose()


def test_hung_tracking_server_times_out(fault_stack: Stack, featurestore_url: str, tmp_path: Path) -> None:
    """A server that accepts connections but never answers: the request timeout bounds the wait."""
    settings = stack_settings(
        tmp_path, fault_stack, featurestore_url, mlflow_http_timeout_s=2, mlflow_http_max_retries=1
    )
    fault_stack.mlflow.pause()
    try:
        t0 = time.monotonic()
        with pytest.raises(TrackingError) as failure:
            Tracker(settings).versions("demo")
        elapsed = time.monotonic() - t0
    finally:
        fault_stack.mlflow.resume()
    assert_one_clean_line(failure.value, "did not answer within 2 s", "2 attempts")
    assert elapsed < 15, f"failing took {elapsed:.1f} s"
    assert Tracker(settings).versions("demo") == []


def test_s3_stopped_during_model_logging(
    fault_stack: Stack,
    featurestore_url: str,
    tmp_path: Path,
    demo_def: Definition,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if fault_stack.s3_process is None:
        pytest.skip("the S3 endpoint was not started by the tests, so they cannot stop it")
    settings = stack_settings(tmp_path, fault_stack, featurestore_url, min_improvement=-1.0)
    store = demo_store(settings, demo_def)
    try:
        assert train(settings, store, demo_def, reason="before the fault").version == "1"

        with monkeypatch.context() as m:
            fired = fire_before(
                m,
                "log_artifacts",
                lambda run_id, folder, path: path == "model",
                lambda: fault_stack.stop_s3(kill=True),
            )
            t0 = time.monotonic()
            with pytest.raises(TrackingError) as failure:
                train(settings, store, demo_def, reason="S3 stopped")
            elapsed = time.monotonic() - t0
        assert fired == ["log_artifacts"]
        assert_one_clean_line(failure.value, "could not upload the model artifacts", "HTTP 500")
        assert elapsed < BOUNDED_S, f"failing took {elapsed:.1f} s"
        # The tracking server stayed up: the run is closed as FAILED with the reason.
        assert production(settings, store, fault_stack) == ("1", "1")
        tracker = Tracker(settings)
        failed = tracker.client.search_runs(
            [tracker.experiment_id("demo")], order_by=["attributes.start_time DESC"]
        )[0]
        assert failed.info.status == "FAILED"
        assert "HTTP 500" in failed.data.tags["mlpipeline.failure"]
        assert [v.version for v in tracker.versions("demo")] == ["1"]

        # moto comes back empty (MinIO would keep its objects); the bucket is created again.
        fault_stack.start_s3()
        after = train(settings, store, demo_def, reason="S3 back")
        assert after.decision is not None
        assert after.decision.action == "promote"
        assert after.champion_version == "1"  # scored from the local cache, not from S3
        assert production(settings, store, fault_stack) == (after.version, after.version)
    finally:
        store.dispose()


def test_postgres_restarted_between_runs(
    fault_stack: Stack, featurestore_url: str, tmp_path: Path, demo_def: Definition
) -> None:
    """The server's pooled connections die with the restart; a retried request gets a new one."""
    settings = stack_settings(tmp_path, fault_stack, featurestore_url, min_improvement=-1.0)
    store = demo_store(settings, demo_def)
    try:
        assert train(settings, store, demo_def, reason="before the restart").version == "1"
        restart_s = restart_postgres()
        assert restart_s < 60
        after = train(settings, store, demo_def, reason="after the restart")
        assert after.version == "2"
        assert after.decision is not None
        assert after.decision.action == "promote"
        assert production(settings, store, fault_stack) == ("2", "2")
    finally:
        store.dispose()


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mlpipeline"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )
    return done, time.monotonic() - t0


def test_cli_with_the_tracking_server_down(
    fault_stack: Stack, featurestore_url: str, tmp_path: Path, demo_def: Definition
) -> None:
    """`mlpipeline train` and `models`: one line on stderr, exit 5, in bounded time; then it works."""
    settings = stack_settings(tmp_path, fault_stack, featurestore_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLPIPELINE_", "MLFLOW_"))}
    env.update(
        {
            "MLPIPELINE_HOME": str(settings.home),
            "MLPIPELINE_FEATURESTORE_URL": settings.featurestore_url,
            "MLPIPELINE_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
            "MLPIPELINE_REGISTRY_PREFIX": settings.registry_prefix,
            "MLPIPELINE_LOG_DIR": str(settings.log_dir),
        }
    )
    demo_store(settings, demo_def).dispose()

    fault_stack.stop_mlflow(kill=True)
    try:
        for args in (["train", "-f", "demo"], ["models", "-f", "demo"]):
            done, elapsed = _cli(args, env, tmp_path)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 5, done.stderr
            assert len(lines) == 1, done.stderr
            assert lines[0].startswith("error MLP-500: MLflow could not"), lines[0]
            assert fault_stack.tracking_uri in lines[0]
            assert "refused the connection" in lines[0]
            assert elapsed < BOUNDED_S, f"{args[0]} took {elapsed:.1f} s to fail"
    finally:
        fault_stack.start_mlflow()

    done, _ = _cli(["train", "-f", "demo", "--reason", "server back"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "trained 'demo' version 1" in done.stdout
    assert "View run" not in done.stdout
