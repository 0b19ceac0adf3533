"""The remote-tracking policy without any service: timeouts and retries from settings, a port
nobody listens on gives one line quickly, then the same tracker fails at once."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlpipeline.errors import TrackingError
from mlpipeline.registry.tracking import Tracker
from mlpipeline.settings import Settings
from mlpipeline.stack import free_port, redact

VARS = (
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
)


@pytest.fixture(autouse=True)
def _no_policy_in_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in VARS:
        monkeypatch.delenv(var, raising=False)
    yield
    for var in VARS:  # what the trackers of a test set does not leak into the next one
        os.environ.pop(var, None)


def remote(tmp_path: Path, uri: str, **extra: object) -> Settings:
    return Settings(
        home=tmp_path / "dur",
        featurestore_url=f"sqlite:///{tmp_path / 'fs.db'}",
        mlflow_tracking_uri=uri,
        log_dir=tmp_path / "logs",
        _env_file=None,  # type: ignore[call-arg]
        **extra,  # type: ignore[arg-type]
    )


def test_policy_comes_from_settings_unless_the_user_set_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "5")  # the user's choice wins
    settings = remote(tmp_path, "http://127.0.0.1:1", mlflow_http_timeout_s=7, mlflow_http_max_retries=2)
    Tracker(settings)
    assert [os.environ[v] for v in VARS] == ["7", "2", "5"]
    Tracker(settings.model_copy(update={"mlflow_http_timeout_s": 9}))
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "9"  # set by us: follows newer settings
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "5"


def test_a_local_store_leaves_the_environment_alone(tmp_path: Path) -> None:
    Tracker(remote(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert not any(v in os.environ for v in VARS)


def test_nobody_listening_gives_one_line_then_fails_at_once(tmp_path: Path) -> None:
    uri = f"http://user:s3cret@127.0.0.1:{free_port()}"
    tracker = Tracker(remote(tmp_path, uri, mlflow_http_max_retries=2, mlflow_http_backoff_factor=0))
    t0 = time.monotonic()
    with pytest.raises(TrackingError) as first:
        tracker.alias_version("demo", "champion")  # a dead server is not "no alias"
    assert time.monotonic() - t0 < 10
    message = str(first.value)
    assert "\n" not in message
    assert message.startswith("MLflow could not read alias 'champion': the tracking server at http://***@")
    assert "refused the connection in 3 attempts" in message
    assert "s3cret" not in message

    t0 = time.monotonic()
    with pytest.raises(TrackingError, match="not retried: that failure was 0 s ago") as second:
        tracker.end_run("0" * 32, "FAILED")
    assert time.monotonic() - t0 < 0.5
    assert str(second.value).startswith("MLflow could not close the run: the tracking server at")


def test_redact_hides_passwords_only() -> None:
    assert (
        redact("postgresql+psycopg2://u:p%40ss@127.0.0.1:5432/db")
        == "postgresql+psycopg2://u:***@127.0.0.1:5432/db"
    )
    assert redact("http://127.0.0.1:5000/path") == "http://127.0.0.1:5000/path"
