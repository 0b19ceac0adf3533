"""Classification end to end on data the project was not built around.

- benefits (binary ``ui``, yes/no, text categories) replayed by ``yrdispl``: ingest, train on
  ROC AUC, serve labels and probabilities (the predictor, the HTTP API, MLflow's pyfunc),
  labels that come later, checks on the chosen metric, retrain, gate;
- scikit-learn's bundled wine data (three classes) on ``f1_macro``;
- the refusals: a label outside the values, a single class to train on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from mlpipeline.demo import run_csv_demo
from mlpipeline.errors import DataValidationError
from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.checks import CheckRecords
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.labels import label_file
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.monitoring.check import run_check
from mlpipeline.serving.api import create_app
from mlpipeline.serving.predictor import open_predictor
from mlpipeline.settings import Settings
from mlpipeline.training.pipeline import train

from ..conftest import SHARED_DATA

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

USER_SCRIPT = """
import json
import sys
sys.modules["mlpipeline"] = None  # prove the model needs no mlpipeline code
import mlflow
import pandas as pd

mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/mlpipeline-benefits@champion")
rows = pd.read_parquet(sys.argv[2])
labels = [str(v) for v in model.predict(rows)]
probabilities = model.predict(rows, params={"output": "probabilities"})[["no", "yes"]].to_numpy().tolist()
json.dump({"labels": labels, "probabilities": probabilities}, open(sys.argv[3], "w"))
"""

BENEFITS = SHARED_DATA / "benefits.csv"
FLAGS = ["nwhite", "school12", "sex", "bluecol", "smsa", "married", "dkids", "dykids", "head"]

BENEFITS_TOML = (
    """
name = "benefits"
table = "benefits"

[entity_key]
column = "row_id"
generate = true

[target]
column = "ui"
type = "categorical"
values = ["no", "yes"]

[features.stateur]
type = "float"
[features.statemb]
type = "float"
[features.state]
type = "categorical"
[features.age]
type = "integer"
[features.tenure]
type = "float"
[features.joblost]
type = "categorical"
[features.yrdispl]
type = "integer"
[features.rr]
type = "float"
"""
    + "".join(f'[features.{f}]\ntype = "categorical"\n' for f in FLAGS)
    + """
[quality]
metric = "roc_auc"
floor = 0.55
threshold = 0.6
"""
)


@pytest.fixture
def home(settings: Settings) -> Settings:
    if not BENEFITS.is_file():
        pytest.skip(f"{BENEFITS} is not here (shared data sets live beside the project)")
    settings.featuresets_dir.mkdir(parents=True, exist_ok=True)
    (settings.featuresets_dir / "benefits.toml").write_text(BENEFITS_TOML)
    return settings


def test_benefits_replayed_by_year_of_displacement_on_roc_auc(home: Settings) -> None:
    report = run_csv_demo(home, "benefits", BENEFITS, batches=5, order_by="yrdispl")
    assert report.trained_versions, "a first model"
    store = SqlFeatureStore(home.featurestore_url)
    try:
        checks = CheckRecords(store, "benefits").history(limit=50)
        assert checks
        for check in checks:
            assert check.details["metric"]["name"] == "roc_auc"
            assert 0.0 <= check.details["metric"]["value"] <= 1.0
            assert set(check.details["metrics"]) >= {"roc_auc", "f1", "log_loss", "brier"}
            assert check.r2 is None  # no R² for a classifier
    finally:
        store.dispose()

    rows = pd.read_csv(BENEFITS).head(5)
    features = rows.drop(columns=["ui"])
    with open_predictor(home, "benefits", background_log=False) as predictor:
        served = predictor.predict_records(features.to_dict("records"))
        assert set(served.labels or []) <= {"no", "yes"}
        assert served.probabilities is not None
        np.testing.assert_allclose(served.probabilities.sum(axis=1), 1.0)
        client = TestClient(create_app(predictor))
        body = client.post("/predict", json=features.to_dict("records")).json()
        assert body["predictions"] == served.labels
        assert [round(p["yes"], 9) for p in body["probabilities"]] == [
            round(p, 9) for p in served.probabilities[:, 1]
        ]
        split = {"columns": list(features.columns), "data": features.values.tolist()}
        labels = client.post("/invocations", json={"dataframe_split": split}).json()
        assert labels == {"predictions": served.labels}
        proba = client.post(
            "/invocations", json={"dataframe_split": split, "params": {"output": "probabilities"}}
        ).json()["predictions"]
        assert [round(p["no"], 9) for p in proba] == [round(p, 9) for p in served.probabilities[:, 0]]
        bad = client.post("/invocations", json={"dataframe_split": split, "params": {"output": "odds"}})
        assert bad.status_code == 400
        output = client.get("/model").json()["output"]
        assert (output["task"], output["classes"], output["positive"]) == ("binary", ["no", "yes"], "yes")
        assert 0 < output["threshold"] < 1

    # MLflow's own client, in a process where mlpipeline cannot be imported.
    typed = features.astype({"stateur": float, "statemb": float, "tenure": float, "state": str})
    rows_file = home.home / "rows.parquet"
    typed.to_parquet(rows_file)
    script = home.home / "user_script.py"
    script.write_text(USER_SCRIPT)
    out = home.home / "answers.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPELINE_")}
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    done = subprocess.run(
        [sys.executable, str(script), home.mlflow_tracking_uri, str(rows_file), str(out)],
        capture_output=True, text=True, timeout=300, check=False, env=env, cwd=home.home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads(out.read_text())
    assert theirs["labels"] == served.labels
    np.testing.assert_allclose(np.array(theirs["probabilities"]), served.probabilities, rtol=1e-9)


def test_labels_that_come_later_are_judged_on_the_chosen_metric(home: Settings, tmp_path: Path) -> None:
    d = load_definition("benefits", home.featuresets_dir)
    data = pd.read_csv(BENEFITS)
    first, later = data.iloc[:3000], data.iloc[3000:3600]
    store = SqlFeatureStore(home.featurestore_url)
    try:
        store.create_schema([d])
        ingest_frame(store, d, first)
        trained = train(home, store, d, reason="first")
        assert trained.metrics is not None
        assert trained.metrics.metric == "roc_auc"
        assert trained.decision is not None
        assert "ROC AUC" in trained.decision.reason
        ingest_frame(store, d, later.drop(columns=["ui"]))
        assert run_check(home, store, d, allow_retrain=False).n_rows == 0  # nothing labelled yet
        stored = store.rows_to_score(d)
        path = tmp_path / "labels.csv"
        pd.DataFrame({"row_id": stored["row_id"], "ui": later["ui"].to_numpy()}).to_csv(path, index=False)
        label_file(store, d, path)
        result = run_check(home, store, d, allow_retrain=False)
        assert result.n_rows == 600
        assert result.metrics is not None
        assert result.metrics.metric == "roc_auc"
        assert 0.5 < result.metrics.value <= 1.0
        assert result.decision is not None
        assert "ROC AUC" in result.decision.explanation
    finally:
        store.dispose()


def test_a_label_outside_the_values_and_a_single_class_are_refused(home: Settings) -> None:
    d = load_definition("benefits", home.featuresets_dir)
    data = pd.read_csv(BENEFITS).head(400)
    store = SqlFeatureStore(home.featurestore_url)
    try:
        store.create_schema([d])
        with pytest.raises(DataValidationError, match="not one of the target's values 'no', 'yes'"):
            ingest_frame(store, d, data.assign(ui=["maybe"] + list(data["ui"].iloc[1:])))
        assert store.count_rows(d) == 0  # nothing half-written
        ingest_frame(store, d, data.assign(ui="yes"))
        with pytest.raises(DataValidationError, match="same class"):
            train(home, store, d)
    finally:
        store.dispose()


def test_wine_has_three_classes_judged_on_f1_macro(settings: Settings, tmp_path: Path) -> None:
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True)
    frame = wine.frame.rename(columns=lambda c: c.replace("/", "_").lower())
    frame["target"] = frame["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    frame.insert(0, "bottle", range(len(frame)))
    names = [c for c in frame.columns if c not in ("bottle", "target")]
    settings.featuresets_dir.mkdir(parents=True, exist_ok=True)
    (settings.featuresets_dir / "wine.toml").write_text(
        'name = "wine"\ntable = "wine"\n[entity_key]\ncolumn = "bottle"\n'
        '[target]\ncolumn = "target"\ntype = "categorical"\nvalues = ["barolo", "grignolino", "barbera"]\n'
        + "".join(f'[features.{n}]\ntype = "float"\n' for n in names)
        + "[model]\nmin_training_rows = 50\n[model.params]\nn_estimators = 50\nmin_child_samples = 5\n"
        "[model.holdout]\nmin_rows = 30\n"
    )
    d = load_definition("wine", settings.featuresets_dir)
    store = SqlFeatureStore(settings.featurestore_url)
    try:
        store.create_schema([d])
        shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
        first, later = shuffled.iloc[:120], shuffled.iloc[120:]
        ingest_frame(store, d, first)
        trained = train(settings, store, d)
        assert trained.metrics is not None
        assert trained.metrics.metric == "f1_macro"
        assert trained.metrics.value > 0.8
        with open_predictor(settings, "wine", background_log=False) as predictor:
            served = predictor.predict_records(frame[names].head(6).to_dict("records"))
            assert set(served.labels or []) <= {"barolo", "grignolino", "barbera"}
            assert served.probabilities is not None
            assert served.probabilities.shape == (6, 3)
            explained = TestClient(create_app(predictor)).post(
                "/explain", json=frame[names].head(2).to_dict("records")
            )
            assert explained.status_code == 200, explained.text
            assert set(explained.json()["contributions"][0]) == {"barolo", "grignolino", "barbera"}
        # The later bottles arrive without their class; the classes come in a labels file.
        ingest_frame(store, d, later.drop(columns=["target"]))
        labels = tmp_path / "classes.csv"
        later[["bottle", "target"]].to_csv(labels, index=False)
        label_file(store, d, labels)
        checked = run_check(settings, store, d, manual=True)
        assert checked.n_rows == len(later)
        assert checked.metrics is not None
        assert checked.metrics.metric == "f1_macro"
        assert checked.retrain.get("version") == "2"
        assert checked.retrain.get("metric") == "f1_macro"
        assert checked.retrain.get("action") in ("promote", "hold")
    finally:
        store.dispose()
