"""Tuning end to end on the real stores (SQLite feature store, MLflow's own store):

- no trial sees the gate's holdout (every row a trial fits or scores is a training row);
- the first trial is the champion's configuration, and the MLflow parent run holds one nested
  run per trial, the plots and the best trial, linked from the registered version;
- a tuned model that does not beat the champion is held; a later plain retrain reuses the tuned
  parameters of the champion; a check tunes when ``when`` says so.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpipeline.featuresets.definition import Definition, parse_definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import SqlFeatureStore, open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.monitoring.check import run_check
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.promotion import Promoter
from mlpipeline.registry.tracking import Tracker
from mlpipeline.registry.version_tags import facts_of
from mlpipeline.settings import Settings
from mlpipeline.training import pipeline, tuning
from mlpipeline.training import study as study_module
from mlpipeline.training.study import LAST_STUDY_KEY, TuneRequest
from tests.trained_home import make_settings

pytestmark = pytest.mark.slow

START_PARAMS = {"num_leaves": 15, "learning_rate": 0.08, "n_estimators": 60}


def demo_with(**model: Any) -> Definition:
    data = tomllib.loads(resources.files("mlpipeline.featuresets").joinpath("demo.toml").read_text("utf-8"))
    data["model"] = {**data["model"], "params": dict(START_PARAMS), **model}
    quality = model.pop("quality", None)
    if quality:
        data["quality"] = quality
        data["model"].pop("quality", None)
    return parse_definition(data)


@pytest.fixture
def home(tmp_path: Path) -> tuple[Settings, SqlFeatureStore]:
    settings = make_settings(tmp_path / "dur")
    store = open_store(settings)
    store.create_schema([demo_with()])
    stream = generate_stream(StreamConfig(rows_per_day=300, seed=11), 3)
    ingest_frame(store, demo_with(), stream)
    yield settings, store
    store.dispose()


def _trials(store: SqlFeatureStore, name: str) -> list[Any]:
    import optuna
    from optuna.storages import JournalStorage

    from mlpipeline.featurestore.tuning_journal import SqlJournalBackend

    return optuna.load_study(
        study_name=name, storage=JournalStorage(SqlJournalBackend(store, "demo", name))
    ).trials


def test_a_study_never_sees_the_holdout_and_starts_from_the_champion(
    home: tuple[Settings, SqlFeatureStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = home
    d = demo_with()
    splits: list[Any] = []
    real_split = pipeline.split_holdout

    def spy_split(*args: Any, **kwargs: Any) -> Any:
        splits.append(real_split(*args, **kwargs))
        return splits[-1]

    seen: list[np.ndarray] = []  # distance_km of every row a trial fitted on or scored
    real_fit, real_folds = tuning.fit_matrix, study_module.prepare_folds

    def column(spec: dict[str, Any], x: np.ndarray) -> np.ndarray:
        return x[:, list(spec["order"]).index("distance_km")]

    def spy_fit(d_: Any, spec: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(column(spec, x))
        return real_fit(d_, spec, x, *args, **kwargs)

    def spy_folds(*args: Any, **kwargs: Any) -> Any:
        folds, method = real_folds(*args, **kwargs)
        for fold in folds:  # what the trials score
            seen.append(column(fold.spec, fold.x_valid))
        return folds, method

    monkeypatch.setattr(pipeline, "split_holdout", spy_split)
    monkeypatch.setattr(tuning, "fit_matrix", spy_fit)
    monkeypatch.setattr(study_module, "prepare_folds", spy_folds)
    progress: list[tuple[int, int]] = []
    tuned = pipeline.train(
        settings,
        store,
        d,
        reason="tune",
        tune=TuneRequest(4),
        progress=lambda done, n, *_: progress.append((done, n)),
    )
    monkeypatch.undo()

    split = splits[0]
    trained = set(split.train["distance_km"].round(9))
    held_only = set(split.holdout["distance_km"].round(9)) - trained
    assert len(held_only) > 50, "the holdout has values of its own for the test to find"
    touched = set(np.round(np.concatenate(seen), 9))
    assert touched <= trained
    assert not touched & held_only, "a trial saw a holdout row"

    study = tuned.study
    assert study is not None
    assert (study.complete, study.failed, study.resumed) == (4, 0, 0)
    assert progress[-1] == (4, 4)
    trials = _trials(store, study.name)
    assert trials[0].user_attrs["warm_start"] is True
    assert trials[0].user_attrs["params"] == START_PARAMS, "the first trial is the champion's configuration"
    assert {k: trials[0].params[k] for k in ("num_leaves", "learning_rate")} == {
        "num_leaves": 15,
        "learning_rate": 0.08,
    }
    assert tuned.params == trials[study.best_trial].user_attrs["params"]
    assert tuned.params_source.startswith("tuned: study ")

    tracker = Tracker(settings)
    experiment = tracker.experiment_id("demo")
    children = tracker.child_runs(experiment, study.run_id, "mlpipeline.trial")
    assert sorted(children) == ["0", "1", "2", "3"]
    parent = tracker.client.get_run(study.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["mlpipeline.tuning.best_run"] == children[str(study.best_trial)]
    history = tracker.client.get_metric_history(study.run_id, "best_cv_r2")
    assert [m.step for m in history] == [0, 1, 2, 3]
    plots = {a.path for a in tracker.client.list_artifacts(study.run_id, "tuning")}
    assert "tuning/optimization_history.png" in plots
    version = tracker.version("demo", tuned.version or "")
    assert facts_of(version.tags)["tuning"]["best_run"] == children[str(study.best_trial)]
    assert tracker.client.get_run(tuned.run_id).data.tags["mlflow.parentRunId"] == study.run_id
    last = json.loads(store.get_state("demo", LAST_STUDY_KEY) or "{}")
    assert (last["complete"], last["version"]) == (4, tuned.version)

    # a later plain retrain fits with the champion's tuned parameters
    pointers = SqlPointerStore(store)
    if pointers.get("demo").version != tuned.version:  # type: ignore[union-attr]
        Promoter(tracker, pointers).promote("demo", tuned.version or "", reason="test: the tuned one")
    plain = pipeline.train(settings, store, d, reason="plain")
    assert plain.study is None
    assert plain.params == tuned.params
    assert plain.params_source.startswith(f"tuned: the champion v{tuned.version}")
    # and a new study starts from the tuned champion's configuration
    again = pipeline.train(settings, store, d, reason="tune again", tune=TuneRequest(2))
    assert again.study is not None
    assert _trials(store, again.study.name)[0].user_attrs["params"] == tuned.params
    # ... unless the definition's model settings changed since
    edited = demo_with(params={"num_leaves": 7})
    assert pipeline.train(settings, store, edited, reason="edited").params == {"num_leaves": 7}


def test_a_tuned_model_that_does_not_beat_the_champion_is_held(
    home: tuple[Settings, SqlFeatureStore],
) -> None:
    settings, store = home
    strict = demo_with(quality={"min_improvement": 0.5})
    first = pipeline.train(settings, store, strict, reason="first")
    tuned = pipeline.train(settings, store, strict, reason="tune", tune=TuneRequest(3))
    assert tuned.decision is not None
    assert tuned.decision.action == "hold"
    assert SqlPointerStore(store).get("demo").version == first.version  # type: ignore[union-attr]
    last = json.loads(store.get_state("demo", pipeline.LAST_TRAINING_KEY) or "{}")
    assert last == {"tuned": True, "action": "hold", "version": tuned.version}
    # the held tuned version's parameters are not the champion's: a plain retrain uses the definition's
    assert pipeline.train(settings, store, strict, reason="plain").params_source == "definition"


def test_a_study_whose_best_is_the_champion_on_its_own_rows_registers_nothing(
    home: tuple[Settings, SqlFeatureStore],
) -> None:
    settings, store = home
    d = demo_with()
    first = pipeline.train(settings, store, d, reason="first")
    assert (first.params, first.params_source) == (START_PARAMS, "definition")
    only_the_champion = pipeline.train(settings, store, d, reason="tune", tune=TuneRequest(1))
    assert only_the_champion.study is not None
    assert only_the_champion.version is None
    assert only_the_champion.decision is not None
    assert "a refit would be the champion again" in only_the_champion.decision.reason
    assert [v.version for v in Tracker(settings).versions("demo")] == [first.version]
    last = json.loads(store.get_state("demo", LAST_STUDY_KEY) or "{}")
    assert (last["complete"], last["version"], last["action"]) == (1, None, "hold")


def test_a_check_tunes_when_the_definition_says_so(home: tuple[Settings, SqlFeatureStore]) -> None:
    settings, store = home
    d = demo_with(tuning={"when": "every_retrain", "trials": 3, "cv": 2})
    result = run_check(settings, store, d, manual=True)
    assert result.retrain is not None
    assert result.retrain["tuning"] == "every retrain tunes (when = every_retrain)"
    assert result.retrain["study"]["complete"] == 3
    # a study that cannot reach its budget does not stop the loop: the retrain refits instead
    broken = demo_with(
        tuning={
            "when": "every_retrain",
            "trials": 3,
            "cv": 2,
            "space": {"min_data_in_leaf": {"low": -9, "high": -2}},
        }
    )
    fallback = run_check(settings, store, broken, manual=True)
    assert fallback.retrain is not None
    assert "study" not in fallback.retrain
    assert "MLP-104" in fallback.retrain["tuning"]
    assert fallback.retrain["tuning"].endswith("refit instead")
    assert fallback.retrain.get("version") is not None
    never = demo_with(tuning={"when": "never", "trials": 3})
    again = run_check(settings, store, never, manual=True)
    assert again.retrain is not None
    assert "study" not in again.retrain
    assert again.retrain["tuning"] == "tuning is off (when = never)"
