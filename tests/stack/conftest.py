"""The real MLflow stack for the integration tests: PostgreSQL backend store, an S3 artifact
store, a ``mlflow server`` process (see :mod:`mlpipeline.stack`).

- PostgreSQL comes from ``MLPIPELINE_TEST_POSTGRES_URL`` (``.ci/run`` sets it); every stack
  and every test's feature store get a database of their own, dropped afterwards.
- S3 is ``moto_server`` started by the stack, or the endpoint in ``MLPIPELINE_TEST_S3_ENDPOINT``
  (e.g. a real MinIO, keys from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``).
- Either missing is :func:`service_missing`: a skip locally, a failure in CI.

``mlflow_stack`` (session) serves the tests that leave it intact; tests that kill, pause or
restart a part use ``fault_stack`` (one per module). A failing test gets the tail of each
running stack's logs in its report.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from mlpipeline.featuresets.definition import Definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import SqlFeatureStore, open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.settings import Settings
from mlpipeline.stack import Stack, StackConfig, StackError, port_open

from ..conftest import service_missing

_RUNNING: list[Stack] = []


def admin_url() -> str:
    """The test role's URL (it may create databases), checked to answer."""
    url = os.environ.get("MLPIPELINE_TEST_POSTGRES_URL")
    if not url:
        service_missing("PostgreSQL not configured: set MLPIPELINE_TEST_POSTGRES_URL (CI does)")
    assert url
    engine = create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        why = str(getattr(exc, "orig", None) or exc.__class__.__name__).strip().splitlines()[0]
        service_missing(f"PostgreSQL at MLPIPELINE_TEST_POSTGRES_URL does not answer: {why}")
    finally:
        engine.dispose()
    return url


def _start_stack(tmp_path_factory: pytest.TempPathFactory, label: str) -> Stack:
    url = admin_url()
    endpoint = os.environ.get("MLPIPELINE_TEST_S3_ENDPOINT") or None
    if endpoint is None and importlib.util.find_spec("moto") is None:
        service_missing(
            "no S3 endpoint: moto[server] is not installed and MLPIPELINE_TEST_S3_ENDPOINT is unset"
        )
    if endpoint is not None:
        where = urlparse(endpoint)
        if not where.hostname or not port_open(where.hostname, where.port or 80, timeout_s=3):
            service_missing(f"the S3 endpoint MLPIPELINE_TEST_S3_ENDPOINT={endpoint} does not answer")
    token = secrets.token_hex(4)
    try:
        stack = Stack(
            StackConfig(
                postgres_url=url,
                database=f"mlp_{label}_{token}",
                recreate_database=True,
                s3_endpoint=endpoint,
                # A shared endpoint gets a bucket per stack; moto is private to the stack.
                bucket=f"mlp-{label}-{token}" if endpoint else "mlflow",
                workdir=tmp_path_factory.mktemp(f"stack-{label}"),
                startup_timeout_s=120,
            )
        )
    except StackError as exc:
        service_missing(f"the S3 endpoint {endpoint} cannot be used: {exc}")
        raise
    try:
        stack.start()
    except StackError as exc:
        with contextlib.suppress(SQLAlchemyError):
            stack.drop_database()
        if endpoint is not None and "S3 endpoint" in str(exc):
            service_missing(f"the S3 endpoint {endpoint} cannot be used: {exc}")
        pytest.fail(f"the MLflow stack did not start: {exc}\n{exc.log_tail}")
    _RUNNING.append(stack)
    return stack


def _finish_stack(stack: Stack) -> None:
    _RUNNING.remove(stack)
    stack.stop()
    with contextlib.suppress(SQLAlchemyError):  # PostgreSQL left down by a failed fault test
        stack.drop_database()


@pytest.fixture(scope="session")
def mlflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = _start_stack(tmp_path_factory, "session")
    yield stack
    _finish_stack(stack)


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = _start_stack(tmp_path_factory, "faults")
    yield stack
    _finish_stack(stack)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    if report.failed:
        for stack in _RUNNING:
            report.sections.append((f"stack logs ({stack.tracking_uri})", stack.logs_tail(60)))
    return report


@pytest.fixture
def featurestore_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test's feature store and production pointer."""
    url = make_url(admin_url())
    name = f"mlp_fs_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)  # survives restarts
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    ensure_postgres_running()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def stack_settings(tmp_path: Path, stack: Stack, featurestore_url: str, **extra: object) -> Settings:
    """Settings of one test against ``stack``: its own home, feature store and registry names.

    ``extra`` is applied without validation, so a test may ask for e.g. a negative
    ``min_improvement`` (every model that passes the floor gets promoted).
    """
    home = tmp_path / "dur"
    settings = Settings(
        home=home,
        featurestore_url=featurestore_url,
        mlflow_tracking_uri=stack.tracking_uri,
        log_dir=home / "logs",
        featuresets_dir=tmp_path / "featuresets",
        ingest_chunk_rows=1_000,
        registry_prefix=f"mlp-{secrets.token_hex(3)}-",
        _env_file=None,  # type: ignore[call-arg]
    )
    return settings.model_copy(update=extra)


def demo_store(settings: Settings, d: Definition, days: int = 3) -> SqlFeatureStore:
    store = open_store(settings)
    store.create_schema([d])
    ingest_frame(store, d, generate_stream(StreamConfig(rows_per_day=400), days))
    return store


# -- the PostgreSQL cluster (fault tests restart it) -----------------------------------------


def _local_cluster() -> tuple[str, str]:
    """(version, name) of the Debian cluster behind MLPIPELINE_TEST_POSTGRES_URL."""
    url = make_url(admin_url())
    if url.host not in (None, "", "127.0.0.1", "localhost", "::1"):
        service_missing(f"PostgreSQL at {url.host} is not local: it cannot be restarted by the tests")
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        service_missing("restarting PostgreSQL needs Debian's pg_ctlcluster and pg_lsclusters")
    if os.geteuid() != 0:
        service_missing("restarting PostgreSQL with pg_ctlcluster needs root")
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    port = str(url.port or 5432)
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == port:
            return fields[0], fields[1]
    service_missing(f"no local PostgreSQL cluster listens on port {port}")
    raise AssertionError("unreachable")


def _pg_ctl(action: str) -> None:
    """Run pg_ctlcluster; a non-zero exit fails only if the cluster did not end up as asked.

    pg_ctlcluster's restart has been seen to exit 1 after a clean restart (the server log shows
    it down and up again within 0.1 s): the outcome, not the exit code, is what the tests need.
    """
    version, name = _local_cluster()
    done = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode == 0:
        return
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    state = next((ln.split()[3] for ln in listing.splitlines() if ln.split()[:2] == [version, name]), "?")
    wanted = "down" if action == "stop" else "online"
    if state != wanted:
        raise AssertionError(
            f"pg_ctlcluster {action} exited {done.returncode} and the cluster is {state}: "
            f"{(done.stderr or done.stdout).strip()[:500]}"
        )


def wait_for_postgres(timeout_s: float = 60.0) -> float:
    """Seconds until the test role can run a query again (fails after ``timeout_s``)."""
    url = os.environ["MLPIPELINE_TEST_POSTGRES_URL"]
    t0 = time.monotonic()
    while True:
        engine = create_engine(url, pool_pre_ping=True)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return time.monotonic() - t0
        except SQLAlchemyError:
            if time.monotonic() - t0 > timeout_s:
                raise
            time.sleep(0.2)
        finally:
            engine.dispose()


def restart_postgres() -> float:
    """Restart the shared cluster (fast shutdown: sessions are cut) and wait until it answers."""
    t0 = time.monotonic()
    _pg_ctl("restart")
    wait_for_postgres()
    return time.monotonic() - t0


def ensure_postgres_running() -> None:
    """After a fault test: start the cluster again if a failure left it down."""
    try:
        wait_for_postgres(timeout_s=2)
    except SQLAlchemyError:
        _pg_ctl("start")
        wait_for_postgres()
