"""Shared fixtures: settings in a temporary folder, feature-store backends, services.

A backend whose server is not configured is skipped with the reason, except when
``MLPIPELINE_REQUIRE_SERVICES=1`` (set by CI), where it fails instead: CI never skips
silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine

from mlpipeline.featuresets.definition import Definition, load_definition
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.settings import Settings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HOUSING_CSV = SHARED_DATA / "california_housing.csv"

# The trained demo home (fixtures ``trained`` and ``_trained_template``) for every folder.
pytest_plugins = ["tests.trained_home"]


def service_missing(reason: str) -> None:
    """Skip, or fail when the run requires every service (CI)."""
    if os.environ.get("MLPIPELINE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's .env or MLPIPELINE_* variables by accident."""
    for key in list(os.environ):
        if key.startswith("MLPIPELINE_") and not key.startswith(("MLPIPELINE_TEST_", "MLPIPELINE_REQUIRE")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "dur"
    return Settings(
        home=home,
        featurestore_url=f"sqlite:///{home / 'featurestore.db'}",
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        mlflow_artifact_root=str(home / "mlflow" / "artifacts"),
        log_dir=home / "logs",
        featuresets_dir=tmp_path / "featuresets",
        ingest_chunk_rows=1_000,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture(scope="session")
def demo_def() -> Definition:
    return load_definition("demo")


@pytest.fixture(scope="session")
def housing_def() -> Definition:
    return load_definition("housing")


def _postgres_url() -> str:
    url = os.environ.get("MLPIPELINE_TEST_POSTGRES_URL")
    if not url:
        service_missing("PostgreSQL not configured: set MLPIPELINE_TEST_POSTGRES_URL (CI does)")
    assert url
    return url


def _drop_everything(url: str) -> None:
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
    engine.dispose()


def iris_url() -> str:
    """``MLPIPELINE_TEST_IRIS_URL``, or skip: IRIS cannot run on the CI machines, so an IRIS
    test skips with this reason (never ``service_missing``, which fails CI)."""
    url = os.environ.get("MLPIPELINE_TEST_IRIS_URL")
    if not url:
        pytest.skip(
            "IRIS not configured: set MLPIPELINE_TEST_IRIS_URL=iris://USER:PASSWORD@HOST:1972/NAMESPACE "
            "(a namespace for tests only: the suite drops its tables)"
        )
    return url


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("iris", marks=pytest.mark.iris),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty feature store on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    if request.param == "iris":
        url = iris_url()
        _drop_everything(url)
        yield url
        _drop_everything(url)
        return
    url = _postgres_url()
    try:
        _drop_everything(url)
    except Exception as exc:  # a configured server that is down
        service_missing(f"PostgreSQL at the configured URL is unreachable: {exc.__class__.__name__}")
    yield url
    _drop_everything(url)


@pytest.fixture
def store(store_url: str, demo_def: Definition, housing_def: Definition) -> Iterator[SqlFeatureStore]:
    s = SqlFeatureStore(store_url, chunk_rows=1_000)
    s.create_schema([demo_def, housing_def])
    yield s
    s.dispose()
