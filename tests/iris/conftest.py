"""Fixtures of the IRIS tests: the bridge's environment on the embedded backends, a housing sample,
and the thin IRIS boundary (the gref stand-in) wired in where the bridge reaches IRIS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.iris import bridge
from tests.iris.fakes import FakeGref


def housing_sample(rows: int, seed: int) -> pd.DataFrame:
    """Rows shaped like the California housing CSV (no key: it is generated at ingest), with a
    clear signal so a small model clears the gate's R² floor."""
    d = load_definition("housing")
    rng = np.random.default_rng(seed)
    households = rng.uniform(50, 1500, rows).round()
    rooms = households * rng.uniform(3, 8, rows)
    bedrooms = rooms * rng.uniform(0.12, 0.3, rows)
    bedrooms[rng.random(rows) < 0.02] = np.nan  # like the 207 source rows without it
    income = rng.uniform(0.5, 15, rows)
    ocean = rng.choice(list(d.features["ocean_proximity"].values or []), rows, p=[0.4, 0.3, 0.15, 0.14, 0.01])
    bonus = pd.Series(ocean).map({"<1H OCEAN": 60_000, "INLAND": -40_000, "NEAR OCEAN": 80_000,
                                  "NEAR BAY": 90_000, "ISLAND": 150_000}).to_numpy()  # fmt: skip
    value = 40_000 * income + bonus + 4_000 * rooms / households + rng.normal(0, 15_000, rows)
    return pd.DataFrame(
        {
            "longitude": rng.uniform(-124.3, -114.3, rows).round(2),
            "latitude": rng.uniform(32.6, 41.9, rows).round(2),
            "housing_median_age": rng.integers(1, 52, rows).astype(float),
            "total_rooms": rooms.round(),
            "total_bedrooms": bedrooms.round(),
            "population": (households * rng.uniform(1.5, 4.5, rows)).round(),
            "households": households,
            "median_income": income.round(4),
            "median_house_value": np.clip(value, 15_000, 500_001).round(),
            "ocean_proximity": ocean,
        }
    )


@pytest.fixture
def bridge_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """What compose gives the iris container, pointed at SQLite and a local MLflow store."""
    home = tmp_path / "dur"
    values = {
        "MLPIPELINE_HOME": str(home),
        "MLPIPELINE_FEATURESTORE_URL": f"sqlite:///{home / 'featurestore.db'}",
        "MLPIPELINE_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        "MLPIPELINE_MLFLOW_ARTIFACT_ROOT": str(home / "mlflow" / "artifacts"),
        "MLPIPELINE_LOG_DIR": str(home / "logs"),
        "MLPIPELINE_FEATURESETS_DIR": str(tmp_path / "featuresets"),
        "MLPIPELINE_NEW_DATA_ROWS": "0",
        "MLPIPELINE_RETRAIN_COOLDOWN": "0s",
        "MLPIPELINE_MIN_SAMPLES": "50",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    (home / "mlflow").mkdir(parents=True)
    return home


@pytest.fixture
def gref(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGref]:
    """Inside IRIS the bridge gets ``^MLpipeline`` from ``iris.gref``; here, from the stand-in."""
    node = FakeGref()
    monkeypatch.setattr(bridge, "embedded_gref", lambda name="^MLpipeline": node)
    return node
