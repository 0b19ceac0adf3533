"""'train --engine dask' on a Dask LocalCluster (two worker processes): the holdout metric
within 0.02 of a local training on housing, and the Dask-trained booster logged, verified,
explained and served like a local one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from benchmarks.serving import local_settings

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.ingest import ingest_file
from mlpipeline.featurestore.sql import open_store
from mlpipeline.registry.tracking import Tracker
from mlpipeline.serving.predictor import open_predictor
from mlpipeline.settings import Settings
from mlpipeline.training.pipeline import train
from tests.conftest import HOUSING_CSV, service_missing

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(autouse=True)
def dask_available() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        service_missing("dask and distributed are not installed (make .venv/.installed)")
    if not HOUSING_CSV.is_file():
        service_missing(f"{HOUSING_CSV} is not here (shared data sets live beside the project)")


def test_dask_training_matches_local_training_and_serves_like_it(tmp_path: Path) -> None:
    settings = local_settings(tmp_path / "home")
    d = load_definition("housing")
    store = open_store(settings)
    store.create_schema([d])
    ingest_file(store, d, HOUSING_CSV)
    local = train(settings, store, d, reason="local")
    on_dask = train(settings, store, d, reason="dask", engine="dask")
    store.dispose()
    assert local.metrics is not None
    assert on_dask.metrics is not None
    assert abs(on_dask.metrics.value - local.metrics.value) <= 0.02, (on_dask.metrics, local.metrics)
    assert on_dask.metrics.value > 0.8
    tracker = Tracker(settings)
    run = tracker.client.get_run(on_dask.run_id)
    assert run.data.params["engine"] == "dask"
    assert tracker.client.get_run(local.run_id).data.params["engine"] == "local"
    artifacts = {a.path for a in tracker.client.list_artifacts(on_dask.run_id)}
    assert {"model", "explainer", "shap_summary.png"} <= artifacts
    # Served from the verified cache like any version: force it into production and predict.
    from mlpipeline.registry.pointer import SqlPointerStore
    from mlpipeline.registry.promotion import Promoter

    store = open_store(settings)
    assert on_dask.version is not None
    if SqlPointerStore(store).get("housing").version != on_dask.version:  # type: ignore[union-attr]
        Promoter(tracker, SqlPointerStore(store)).promote("housing", on_dask.version, reason="dask test")
    store.dispose()
    import pandas as pd

    rows = pd.read_csv(HOUSING_CSV).head(50)
    with open_predictor(settings, "housing", log_predictions=False) as predictor:
        served = predictor.predict_records(rows.to_dict("records"))
    assert served.version == on_dask.version
    assert np.isfinite(served.values).all()


def test_a_classifier_trains_on_dask_like_it_trains_locally(settings: Settings) -> None:
    from tests.realdata.test_classification import BENEFITS, BENEFITS_TOML

    if not BENEFITS.is_file():
        service_missing(f"{BENEFITS} is not here (shared data sets live beside the project)")
    settings.featuresets_dir.mkdir(parents=True, exist_ok=True)
    (settings.featuresets_dir / "benefits.toml").write_text(BENEFITS_TOML)
    d = load_definition("benefits", settings.featuresets_dir)
    store = open_store(settings)
    store.create_schema([d])
    ingest_file(store, d, BENEFITS)
    local = train(settings, store, d, reason="local")
    on_dask = train(settings, store, d, reason="dask", engine="dask")
    store.dispose()
    assert local.metrics is not None
    assert on_dask.metrics is not None
    assert on_dask.metrics.metric == "roc_auc"
    assert abs(on_dask.metrics.value - local.metrics.value) <= 0.03, (on_dask.metrics, local.metrics)
