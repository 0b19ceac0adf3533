"""No configured secret ever reaches a log file, stdout or stderr.

A whole continuous-training loop runs through the CLI, each command its own process, with
distinctive secrets configured where mlpipeline can meet them: the API key, MLflow and S3
client credentials in the environment, a tracking URL carrying a user and password for the
failing commands (a closed port, so the error paths run: retries, fail-fast, tracebacks in
the log, ``--verbose``), a feature-store URL with a password (an unreachable PostgreSQL, a
malformed URL, and the real PostgreSQL server when ``MLPIPELINE_TEST_POSTGRES_URL`` is set),
and the key on every served request. Then every file under the log folder and every
captured stream is searched for each secret and its URL-encoded form.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pandas as pd
import pytest
from sqlalchemy.engine import make_url

from mlpipeline.featuresets.definition import load_definition
from tests.serving.test_hot_swap_http import wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CLI = str(Path(sys.executable).with_name("mlpipeline"))

API_KEY = "ApiKey-Zq7!w@rB"
MLFLOW_PASSWORD = "MlflowPw-Kx3$vN"
AWS_SECRET = "AwsSecret/Ty9+pQ"
URL_PASSWORD = "UrlPw-Hm4!sJ"  # inside the tracking and feature-store URLs (URL-safe as written)
SECRETS = [API_KEY, MLFLOW_PASSWORD, AWS_SECRET, URL_PASSWORD]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


class Loop:
    """Runs CLI commands in one home and keeps everything they printed."""

    def __init__(self, tmp_path: Path, featurestore_url: str) -> None:
        self.home = tmp_path / "dur"
        self.cwd = tmp_path
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MLPIPELINE_", "MLFLOW_", "AWS_"))
        }
        self.env.update(
            MLPIPELINE_HOME=str(self.home),
            MLPIPELINE_FEATURESTORE_URL=featurestore_url,
            MLPIPELINE_MLFLOW_TRACKING_URI=f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}",
            MLPIPELINE_MLFLOW_ARTIFACT_ROOT=str(self.home / "mlflow" / "artifacts"),
            MLPIPELINE_LOG_DIR=str(self.home / "logs"),
            MLPIPELINE_LOG_LEVEL="DEBUG",
            MLPIPELINE_FEATURESETS_DIR=str(tmp_path / "featuresets"),
            MLPIPELINE_API_KEY=API_KEY,
            MLPIPELINE_MIN_SAMPLES="50",
            MLPIPELINE_MLFLOW_HTTP_MAX_RETRIES="1",
            MLPIPELINE_MLFLOW_HTTP_BACKOFF_FACTOR="0",
            MLPIPELINE_MLFLOW_HTTP_TIMEOUT_S="2",
            MLFLOW_TRACKING_USERNAME="mlflow-user",
            MLFLOW_TRACKING_PASSWORD=MLFLOW_PASSWORD,
            AWS_ACCESS_KEY_ID="aws-key-id",
            AWS_SECRET_ACCESS_KEY=AWS_SECRET,
        )
        self.streams: list[tuple[str, str]] = []

    def run(self, *args: str, expect: str = "ok", **env: str) -> subprocess.CompletedProcess[str]:
        """Run one command; ``expect`` is "ok", "error" (a reported failure) or "any" (not a bug)."""
        done = subprocess.run(
            [CLI, *args],
            env={**self.env, **env},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        self.streams.append((f"{' '.join(args)} (stdout)", done.stdout))
        self.streams.append((f"{' '.join(args)} (stderr)", done.stderr))
        if expect == "ok":
            assert done.returncode == 0, (args, done.stderr)
        elif expect == "error":
            assert done.returncode not in (0, 70), (args, done.returncode, done.stderr)
            assert "error MLP-" in done.stderr, (args, done.stderr)
        else:
            assert done.returncode != 70, (args, done.stderr)
        return done

    def serve(self) -> None:
        port = closed_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [CLI, "serve", "-f", "demo", "--port", str(port)],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            wait_healthy(url, server)
            d = load_definition("demo")
            rows = pd.read_csv(self.cwd / "day2.csv").head(3)
            body = rows[[d.entity_key.column, *d.features]].to_json(orient="records")
            with httpx.Client(base_url=url, timeout=10) as c:
                json_type = {"content-type": "application/json"}
                assert (
                    c.post("/predict", content=body, headers={**json_type, "x-api-key": API_KEY}).status_code
                    == 200
                )
                auth = {"authorization": f"Bearer {API_KEY}"}
                assert c.post("/explain", content=body, headers={**json_type, **auth}).status_code == 200
                assert c.get("/model", headers={"x-api-key": API_KEY}).status_code == 200
                assert c.get("/health", headers={"x-api-key": API_KEY}).status_code == 200
                assert (
                    c.post(
                        "/predict", content=body, headers={**json_type, "x-api-key": API_KEY[:-1]}
                    ).status_code
                    == 401
                )
                bad = c.post("/predict", content=b'[{"x": 1}]', headers={**json_type, "x-api-key": API_KEY})
                assert bad.status_code == 422
                assert (
                    c.post("/predict", content=b"{", headers={**json_type, "x-api-key": API_KEY}).status_code
                    == 400
                )
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                out, err = server.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                out, err = server.communicate()
        self.streams.append(("serve (stdout)", out.decode(errors="replace")))
        self.streams.append(("serve (stderr)", err.decode(errors="replace")))


def forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote(secret)}


def postgres_url_with_password() -> str | None:
    """The test PostgreSQL URL, when configured and it carries a password (else None)."""
    url = os.environ.get("MLPIPELINE_TEST_POSTGRES_URL")
    if not url or not make_url(url).password:
        return None
    return url


def test_a_full_loop_and_its_failures_log_no_secret(tmp_path: Path) -> None:
    secrets = list(SECRETS)
    postgres = postgres_url_with_password()
    if postgres is not None:
        from tests.conftest import _drop_everything

        _drop_everything(postgres)
        secrets.append(str(make_url(postgres).password))
    loop = Loop(tmp_path, postgres or f"sqlite:///{tmp_path / 'dur' / 'featurestore.db'}")
    try:
        loop.run("init")
        loop.run("generate", "stream.csv", "--days", "4", "--rows-per-day", "300", "--drift-day", "2")
        stream = pd.read_csv(tmp_path / "stream.csv")
        days = pd.to_datetime(stream["ordered_at"]).dt.normalize()
        first = days < days.min() + pd.Timedelta(days=2)
        stream[first].to_csv(tmp_path / "day1.csv", index=False)
        stream[~first].to_csv(tmp_path / "day2.csv", index=False)
        loop.run("ingest", "day1.csv", "-f", "demo")
        loop.run("train", "-f", "demo", "--reason", "first")
        loop.run("predict", "day2.csv", "-f", "demo", "-o", "predictions.csv")
        loop.run("ingest", "day2.csv", "-f", "demo")
        loop.run("check", "-f", "demo", "--force")
        loop.run("promote", "1", "-f", "demo", "-r", "back to the first", expect="any")  # v1 may be champion
        loop.serve()

        # The error paths: MLflow behind a URL with credentials, on a port nobody listens on.
        dead = f"http://tracker-user:{URL_PASSWORD}@127.0.0.1:{closed_port()}"
        loop.run("train", "-f", "demo", expect="error", MLPIPELINE_MLFLOW_TRACKING_URI=dead)
        loop.run(
            "--verbose",
            "promote",
            "1",
            "-f",
            "demo",
            "-r",
            "x",
            expect="error",
            MLPIPELINE_MLFLOW_TRACKING_URI=dead,
        )
        loop.run("models", "-f", "demo", expect="error", MLPIPELINE_MLFLOW_TRACKING_URI=dead)
        loop.run("ui", MLPIPELINE_MLFLOW_TRACKING_URI=dead)  # prints where the server is
        # A feature store behind a URL with a password: unreachable, and malformed.
        unreachable = f"postgresql+psycopg2://store-user:{URL_PASSWORD}@127.0.0.1:{closed_port()}/features"
        loop.run("--verbose", "status", "-f", "demo", expect="error", MLPIPELINE_FEATURESTORE_URL=unreachable)
        malformed = f"postgresql+psycopg2://store-user:{URL_PASSWORD}@127.0.0.1:port/features"
        loop.run("status", "-f", "demo", expect="error", MLPIPELINE_FEATURESTORE_URL=malformed)
    finally:
        if postgres is not None:
            from tests.conftest import _drop_everything

            _drop_everything(postgres)

    logs = [p for p in (tmp_path / "dur" / "logs").rglob("*") if p.is_file()]
    assert logs, "the run wrote no log file"
    sources = [(str(p.relative_to(tmp_path)), p.read_text(encoding="utf-8", errors="replace")) for p in logs]
    sources += loop.streams
    everything = "\n".join(text for _, text in sources)
    # The searches below can only pass for the right reason if the failures were logged.
    assert "MLP-500" in everything
    assert "MLP-301" in everything or "MLP-300" in everything
    assert "***@127.0.0.1" in everything, "the credentials in the URLs were redacted, not absent"
    leaks = [
        f"{name}: {form!r}"
        for name, text in sources
        for secret in secrets
        for form in forms(secret)
        if form in text
    ]
    assert not leaks, "secrets found: " + "; ".join(leaks)
