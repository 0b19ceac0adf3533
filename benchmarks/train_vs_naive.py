"""One training cycle on the housing data: mlpipeline's steps vs the naive MLflow way.

Ours: ``mlpipeline.training.pipeline.train`` (extract → validate → train → evaluate → gate → log
model with explicit requirements → pickle-free explainer + SHAP plot → register → promote).
Naive: the same LightGBM work with ``mlflow.lightgbm.autolog``, default ``log_model``
(requirement inference), ``mlflow.shap.log_explainer``, ``register_model`` and an alias.
Both run in this process, each against a fresh local MLflow store whose experiment is
created before the clock starts.

    .venv/bin/python -m benchmarks.train_vs_naive [--csv ../shared/data/california_housing.csv]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.serving import local_settings
from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.ingest import ingest_file
from mlpipeline.featurestore.sql import open_store
from mlpipeline.registry.tracking import Tracker
from mlpipeline.training.pipeline import train
from mlpipeline.training.steps import split_holdout

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "california_housing.csv"


def ours(csv: Path, home: Path) -> dict[str, float]:
    settings = local_settings(home)
    d = load_definition("housing")
    store = open_store(settings)
    store.create_schema([d])
    ingest_file(store, d, csv)
    # As on the naive side (create_experiment before its clock): the tracking store and the
    # experiment exist already, as they do in a running service after the first training.
    Tracker(settings).experiment_id(d.name)
    t0 = time.perf_counter()
    result = train(settings, store, d, reason="benchmark")
    total = time.perf_counter() - t0
    store.dispose()
    return {**result.timings, "total": total}


def naive(csv: Path, home: Path) -> dict[str, float]:
    import lightgbm as lgb
    import mlflow
    import shap
    from mlflow import MlflowClient

    times: dict[str, float] = {}
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    exp = mlflow.create_experiment("naive", artifact_location=(home / "artifacts").as_uri())
    t_all = time.perf_counter()
    t = time.perf_counter()
    frame = pd.read_csv(csv)
    frame["ocean_proximity"] = frame["ocean_proximity"].astype("category")
    d = load_definition("housing")
    frame.insert(0, "block_id", np.arange(1, len(frame) + 1))
    frame["rooms_per_household"] = frame["total_rooms"] / frame["households"]
    frame["bedrooms_per_room"] = frame["total_bedrooms"] / frame["total_rooms"]
    frame["population_per_household"] = frame["population"] / frame["households"]
    split = split_holdout(d, frame)
    features = list(d.model_features)
    times["extract+prepare"] = time.perf_counter() - t
    mlflow.lightgbm.autolog(log_models=False)
    with mlflow.start_run(experiment_id=exp):
        t = time.perf_counter()
        model = lgb.LGBMRegressor(**d.model.params, random_state=d.model.seed, verbose=-1)
        model.fit(split.train[features], split.train[d.target.column])
        times["train (autolog)"] = time.perf_counter() - t
        t = time.perf_counter()
        pred = model.predict(split.holdout[features])
        y = split.holdout[d.target.column].to_numpy()
        mlflow.log_metric("r2", 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())
        times["evaluate"] = time.perf_counter() - t
        t = time.perf_counter()
        info = mlflow.lightgbm.log_model(model, name="model", input_example=split.holdout[features].head(5))
        times["log_model (default)"] = time.perf_counter() - t
        t = time.perf_counter()
        mlflow.shap.log_explainer(shap.TreeExplainer(model), name="explainer")
        times["log_explainer"] = time.perf_counter() - t
    t = time.perf_counter()
    version = mlflow.register_model(info.model_uri, "naive-housing")
    MlflowClient().set_registered_model_alias("naive-housing", "champion", version.version)
    times["register+alias"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t_all
    mlflow.lightgbm.autolog(disable=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    args = parser.parse_args()
    if not args.csv.is_file():
        raise SystemExit(f"data file {args.csv} not found; pass --csv")
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Both sides run warm, as in a long-running service: the libraries either side needs are
    # imported before the clock starts (shap alone takes ~1.8 s to import).
    import mlflow.lightgbm
    import mlflow.shap
    import shap

    del mlflow, shap
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        mine = ours(args.csv, Path(a))
        theirs = naive(args.csv, Path(b))
    print(f"{'mlpipeline step':<28}{'s':>8}    {'naive MLflow step':<24}{'s':>8}")
    left, right = list(mine.items()), list(theirs.items())
    for i in range(max(len(left), len(right))):
        lk, lv = left[i] if i < len(left) else ("", float("nan"))
        rk, rv = right[i] if i < len(right) else ("", float("nan"))
        print(f"{lk:<28}{lv:>8.3f}    {rk:<24}{rv:>8.3f}".replace("nan", "   "))
    print(f"ratio total ours/naive: {mine['total'] / theirs['total']:.2f}")


if __name__ == "__main__":
    main()
