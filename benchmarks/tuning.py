"""B11: tuning on the housing data, and what storage and MLflow cost per trial.

1. **What a study buys.** The definition's parameters are trained and gated first (the
   champion); then ``mlpipeline tune`` runs a study bounded by ``--seconds`` (60 by default)
   and refits its best on the same training part. Printed: both holdout metrics on the same
   holdout rows, and the trials the study completed.
2. **What a trial costs beyond its fits.** The same seeded study (``--trials`` trials, the same
   folds, sampler and objective) runs three ways: bare (Optuna's in-memory storage, nothing
   logged), mlpipeline's (the study in the feature store's journal, a nested MLflow run per
   trial), and Optuna's own ``MLflowCallback`` (in-memory storage, a nested MLflow run per
   trial through the fluent API). Overhead = the loop's time outside the fits, minus the bare
   loop's (the sampler's own time), as a share of the fits. Target: mlpipeline's at most 5 %
   and below the callback's. mlpipeline's study also runs the champion's configuration as its
   first trial, so its trials are not the same draws; the shares compare per-trial costs.

    PYTHONPATH=. .venv/bin/python -m benchmarks.tuning [--seconds 60] [--trials 20]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.serving import DEFAULT_CSV, local_settings
from mlpipeline.featuresets.definition import Definition, load_definition
from mlpipeline.featuresets.metrics import metric_for
from mlpipeline.featurestore.ingest import ingest_file
from mlpipeline.featurestore.sql import SqlFeatureStore, open_store
from mlpipeline.registry.tracking import Tracker
from mlpipeline.training.pipeline import train
from mlpipeline.training.steps import split_holdout
from mlpipeline.training.study import TuneRequest, run_study
from mlpipeline.training.tuning import check_tuning, cv_score, merged_params, prepare_folds, suggest

__all__ = ["overhead", "study_gain"]


def study_gain(home: Path, csv: Path, seconds: float) -> dict[str, float]:
    """Holdout metric of the definition's parameters and of a ``seconds`` study's best."""
    settings = local_settings(home)
    d = load_definition("housing")
    store = open_store(settings)
    try:
        store.create_schema([d])
        ingest_file(store, d, csv)
        plain = train(settings, store, d, reason="benchmark: the definition's parameters")
        tuned = train(settings, store, d, reason="benchmark", tune=TuneRequest(100_000, seconds))
    finally:
        store.dispose()
    assert plain.metrics is not None
    assert tuned.study is not None
    # Nothing registered: the definition's own configuration won the study on the same rows,
    # so the tuned model is the plain one.
    tuned_value = plain.metrics.value if tuned.metrics is None else tuned.metrics.value
    assert tuned.metrics is None or plain.metrics.n == tuned.metrics.n
    return {
        "plain": plain.metrics.value,
        "tuned": tuned_value,
        "champion_won": float(tuned.metrics is None),
        "trials": float(tuned.study.complete),
        "study_s": tuned.study.seconds,
        "higher_is_better": float(plain.metrics.spec.higher_is_better),
    }


def _training_part(store: SqlFeatureStore, d: Definition) -> Any:
    return split_holdout(d, store.training_window(d)).train


def overhead(home: Path, csv: Path, trials: int) -> dict[str, float]:
    """Seconds outside the fits per configuration, and each one's overhead share of its fits."""
    import mlflow
    import optuna
    from optuna_integration.mlflow import MLflowCallback

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = local_settings(home)
    d = load_definition("housing")
    store = open_store(settings)
    store.create_schema([d])
    ingest_file(store, d, csv)
    train_part = _training_part(store, d)
    space = check_tuning(d)
    folds, _ = prepare_folds(d, train_part, 3)
    metric = metric_for(d.quality.metric, d.target.task)
    base = dict(d.model.params)

    def bare_loop(callbacks: list[Any]) -> tuple[float, float]:
        fits: list[float] = []

        def objective(trial: Any) -> float:
            value, seconds = cv_score(d, folds, merged_params(d, base, suggest(trial, space)))
            fits.append(seconds)
            return value

        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=d.model.seed)
        )
        started = time.perf_counter()
        study.optimize(objective, n_trials=trials, callbacks=callbacks)
        return time.perf_counter() - started, float(np.sum(fits))

    wall_bare, fit_bare = bare_loop([])
    tracker = Tracker(settings)
    experiment = tracker.experiment_id("housing")
    outcome = run_study(store, d, tracker, experiment, train_part, base, TuneRequest(trials))
    wall_ours, fit_ours = outcome.search_seconds, outcome.fit_seconds
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    with mlflow.start_run(experiment_id=experiment, run_name="optuna MLflowCallback"):
        callback = MLflowCallback(
            tracking_uri=settings.mlflow_tracking_uri,
            metric_name=f"cv_{metric.name}",
            create_experiment=False,
            mlflow_kwargs={"nested": True},
        )
        wall_cb, fit_cb = bare_loop([callback])
    store.dispose()
    sampler = wall_bare - fit_bare  # Optuna's own time per study, with nothing stored or logged
    return {
        "trials": float(trials),
        "fit_per_trial_s": fit_bare / trials,
        "ours_share": max(0.0, wall_ours - fit_ours - sampler) / fit_ours,
        "callback_share": max(0.0, wall_cb - fit_cb - sampler) / fit_cb,
        "ours_ms_per_trial": 1000 * max(0.0, wall_ours - fit_ours - sampler) / trials,
        "callback_ms_per_trial": 1000 * max(0.0, wall_cb - fit_cb - sampler) / trials,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="the study's time budget")
    parser.add_argument("--trials", type=int, default=20, help="trials of each overhead run")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not args.csv.is_file():
        raise SystemExit(f"{args.csv} not found: B11 runs on the housing data (give --csv)")
    with tempfile.TemporaryDirectory(prefix="mlpipeline-bench-tune-") as tmp:
        gain = study_gain(Path(tmp) / "gain", args.csv, args.seconds)
        cost = overhead(Path(tmp) / "cost", args.csv, args.trials)
    print(
        f"B11 housing, holdout R²: definition's parameters {gain['plain']:.4f}, "
        f"after a {args.seconds:g}-second study {gain['tuned']:.4f} "
        f"({gain['trials']:.0f} trials complete, study {gain['study_s']:.0f} s"
        + (
            "; the definition's own configuration won, nothing new registered)"
            if gain["champion_won"]
            else ")"
        )
    )
    print(
        f"B11 overhead per trial ({cost['trials']:.0f} trials, "
        f"fits {cost['fit_per_trial_s']:.2f} s a trial): "
        f"mlpipeline {cost['ours_ms_per_trial']:.1f} ms = {cost['ours_share']:.1%} of the fits | "
        f"Optuna's MLflowCallback {cost['callback_ms_per_trial']:.1f} ms = {cost['callback_share']:.1%}"
    )


if __name__ == "__main__":
    main()
