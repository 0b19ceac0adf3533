"""The serving tests' store fixture; the trained home comes from ``tests.trained_home``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlpipeline.featurestore.sql import SqlFeatureStore, open_store
from tests.trained_home import Trained


@pytest.fixture
def store(trained: Trained) -> Iterator[SqlFeatureStore]:
    s = open_store(trained.settings)
    yield s
    s.dispose()


@pytest.fixture
def cli_env(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Trained:
    """The trained home as the CLI finds it: its settings as MLPIPELINE_* variables."""
    from benchmarks.serving import child_env

    for key, value in child_env(trained.settings).items():
        if key.startswith("MLPIPELINE_"):
            monkeypatch.setenv(key, value)
    return trained
