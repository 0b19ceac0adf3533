"""A user's script that imports only MLflow loads the champion and matches mlpipeline's predictor to 1e-9."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpipeline.featuresets.definition import Definition
from mlpipeline.featurestore.ingest import ingest_file
from mlpipeline.featurestore.sql import open_store
from mlpipeline.registry.tracking import CHAMPION, Tracker
from mlpipeline.serving.predictor import open_predictor
from mlpipeline.settings import Settings
from mlpipeline.training.pipeline import train
from mlpipeline.training.steps import columns_of

from ..conftest import HOUSING_CSV

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.slow,
    pytest.mark.skipif(not HOUSING_CSV.is_file(), reason=f"shared data set absent: {HOUSING_CSV}"),
]

USER_SCRIPT = """
import sys
sys.modules["mlpipeline"] = None  # prove the model needs no mlpipeline code
import mlflow
import pandas as pd

mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/mlpipeline-housing@champion")
rows = pd.read_csv(sys.argv[2]).head(2000)
pd.DataFrame({"prediction": model.predict(rows)}).to_json(sys.argv[3], orient="records", double_precision=15)
"""


def test_champion_loads_with_plain_mlflow_and_matches(
    settings: Settings, housing_def: Definition, tmp_path: Path
) -> None:
    store = open_store(settings)
    store.create_schema([housing_def])
    ingest_file(store, housing_def, HOUSING_CSV)
    result = train(settings, store, housing_def, reason="pyfunc test")
    store.dispose()
    assert result.version == "1"
    assert result.metrics is not None
    assert result.metrics.r2 > 0.8

    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    out = tmp_path / "pred.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPELINE_")}
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    done = subprocess.run(
        [sys.executable, str(script), settings.mlflow_tracking_uri, str(HOUSING_CSV), str(out)],
        capture_output=True, text=True, timeout=300, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = np.array([r["prediction"] for r in json.loads(out.read_text())])

    tracker = Tracker(settings)
    version = tracker.alias_version("housing", CHAMPION)
    assert version == "1"
    raw = pd.read_csv(HOUSING_CSV).head(2000)
    assert raw["total_bedrooms"].isna().any()  # the rows include the dirty ones
    scale = max(1.0, float(np.abs(theirs).max()))
    with open_predictor(settings, "housing", log_predictions=False) as predictor:
        features = [f["name"] for f in predictor.current().model.spec["features"]]
        batch = predictor.predict_columns(columns_of(raw, features)).values
        assert np.max(np.abs(theirs - batch)) <= 1e-9 * scale
        # One row at a time through the records path and LightGBM's single-row fast path.
        records = raw[features].head(300).to_dict("records")
        single = np.array([predictor.predict_records(r).values[0] for r in records])
    assert np.max(np.abs(theirs[:300] - single)) <= 1e-9 * scale
