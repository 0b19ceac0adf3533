"""``kill -9`` in the middle of a tuning study; running ``tune`` again resumes it.

The child process SIGKILLs itself as its fourth trial starts scoring: three trials are
complete in the feature store's journal and one is RUNNING for ever. The next ``tune`` with the
same budget resumes the same study (the dead holder's training lease is taken over at once),
marks the orphaned trial failed, runs only the trials still missing, and ends with exactly N
complete trials; the same MLflow parent run is reopened, holds a nested run for every trial,
and is FINISHED.
"""

from __future__ import annotations

import json
import signal
import tomllib
from importlib import resources
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.storages import JournalStorage
from optuna.trial import TrialState

from mlpipeline.featuresets.definition import parse_definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.featurestore.tuning_journal import SqlJournalBackend
from mlpipeline.training.study import ACTIVE_STUDY_KEY, LAST_STUDY_KEY
from tests.reliability.helpers import Kill, run_cli, running_train_runs
from tests.trained_home import make_settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TRIALS = 5


@pytest.mark.parametrize("nth", [4, 1], ids=["fourth-trial", "champions-trial"])
def test_a_study_killed_mid_trial_resumes_to_exactly_n_complete_trials(tmp_path: Path, nth: int) -> None:
    settings = make_settings(tmp_path / "dur")
    text = resources.files("mlpipeline.featuresets").joinpath("demo.toml").read_text("utf-8")
    text += "\n[model.tuning]\ntrials = 3\ncv = 2\n"  # the CLI's --trials overrides the 3
    settings.featuresets_dir.mkdir(parents=True)
    (settings.featuresets_dir / "demo.toml").write_text(text, encoding="utf-8")
    env = {"MLPIPELINE_FEATURESETS_DIR": str(settings.featuresets_dir)}  # the definition above
    d = parse_definition(tomllib.loads(text))
    store = open_store(settings)
    store.create_schema([d])
    ingest_frame(store, d, generate_stream(StreamConfig(rows_per_day=300, seed=11), 3))

    kill = Kill(f"trial {nth}", f"mlpipeline.training.tuning:cv_score@{nth}", "before")
    crashed = run_cli(settings, "tune", "-f", "demo", "--trials", str(TRIALS), kill=kill, env=env)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    active = json.loads(store.get_state("demo", ACTIVE_STUDY_KEY) or "null")
    assert active is not None, "the interrupted study is recorded for resumption"
    storage = JournalStorage(SqlJournalBackend(store, "demo", active["study"]))
    states = [t.state for t in optuna.load_study(study_name=active["study"], storage=storage).trials]
    assert states == [TrialState.COMPLETE] * (nth - 1) + [TrialState.RUNNING]
    assert running_train_runs(settings), "the crash leaves its training run RUNNING"

    status = run_cli(settings, "status", "-f", "demo", env=env)
    assert f"tuning study {active['study']} was interrupted" in status.stdout

    resumed = run_cli(settings, "tune", "-f", "demo", "--trials", str(TRIALS), env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    earlier = f", {nth - 1} of them from an interrupted run" if nth > 1 else ""
    assert f"study {active['study']}: {TRIALS} complete trials{earlier}, 1 failed" in resumed.stdout
    assert "2 folds" in resumed.stdout, "the user's [model.tuning] applies"
    storage = JournalStorage(SqlJournalBackend(store, "demo", active["study"]))
    study = optuna.load_study(study_name=active["study"], storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == TRIALS
    assert states[nth - 1] == TrialState.FAIL
    warm = [t for t in study.trials if t.user_attrs.get("warm_start") and t.state == TrialState.COMPLETE]
    assert len(warm) == 1, "the champion's configuration is tried even when the crash hit its trial"
    assert len(optuna.get_all_study_names(storage)) == 1, "resumed, not started again"
    assert store.get_state("demo", ACTIVE_STUDY_KEY) == ""
    assert json.loads(store.get_state("demo", LAST_STUDY_KEY) or "{}")["complete"] == TRIALS

    client = MlflowClient(settings.mlflow_tracking_uri)
    parent = client.get_run(active["run_id"])
    assert parent.info.status == "FINISHED"
    experiment = client.get_experiment_by_name(f"{settings.registry_prefix}demo")
    assert experiment is not None
    children = client.search_runs(
        [experiment.experiment_id],
        f"tags.mlflow.parentRunId = '{active['run_id']}' and tags.`mlpipeline.kind` = 'trial'",
    )
    numbers = sorted(int(r.data.tags["mlpipeline.trial"]) for r in children)
    assert numbers == list(range(TRIALS + 1)), "every trial, the failed one too, has one nested run"
    assert running_train_runs(settings) == [], "the dead training run was closed"
    store.dispose()
