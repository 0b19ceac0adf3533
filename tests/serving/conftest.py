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
