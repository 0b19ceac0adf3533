"""``kill -9`` at each stage of train, promote and ingest; the next start repairs what is half done.

Each case runs the real CLI in a child process that SIGKILLs itself at one point (see
:mod:`tests.reliability.killer`), then checks what a user relies on:

- right after the crash, the production pointer is the old or the new version, never
  anything else, and the model it names loads and verifies from the cache;
- the next start (``mlpipeline check``, which reconciles first) makes the ``champion`` alias
  agree with the pointer, rolls back a promotion that had not reached the pointer and
  finishes one that had (``challenger`` alias cleared, promotion tags written);
- the next ``train`` runs at once (the dead holder's lease is taken over, not waited out for
  ``lock_ttl``) and closes the MLflow run the crash left RUNNING;
- an ingest killed mid-write leaves no rows and no ledger entry, and can simply be rerun.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_day, generate_stream
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.settings import Settings
from tests.reliability.helpers import (
    Kill,
    assert_consistent,
    assert_pointer_serves,
    registry_state,
    run_cli,
    running_train_runs,
)
from tests.trained_home import Trained, make_settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TRAIN_KILLS = [
    Kill("extract", "mlpipeline.featurestore.sql:SqlFeatureStore.training_window"),
    Kill("validate", "mlpipeline.training.pipeline:validate_training_data"),
    Kill("fit", "mlpipeline.training.pipeline:fit"),
    Kill("log_model", "mlpipeline.registry.tracking:Tracker.log_artifacts"),
    Kill("explainer", "mlpipeline.training.pipeline:_explain"),
    Kill("register", "mlpipeline.registry.tracking:Tracker.register"),
    Kill("alias_moved", "mlpipeline.registry.tracking:Tracker.set_alias"),
    Kill("pointer_moved", "mlpipeline.registry.pointer:SqlPointerStore.set"),
    Kill("tags", "mlpipeline.registry.tracking:Tracker.set_version_tags", "before"),
    Kill("training_done", "mlpipeline.featurestore.checks:CheckRecords.training_done", "before"),
]

PROMOTE_KILLS = [
    Kill("download", "mlpipeline.registry.tracking:Tracker.download"),
    Kill("cached", "mlpipeline.registry.model_cache:ModelCache.ensure"),
    Kill("alias_moved", "mlpipeline.registry.tracking:Tracker.set_alias"),
    Kill("pointer_moved", "mlpipeline.registry.pointer:SqlPointerStore.set"),
    Kill("tags", "mlpipeline.registry.tracking:Tracker.set_version_tags", "before"),
]


@pytest.fixture
def fresh(tmp_path: Path) -> Settings:
    """A home with labelled rows and no model yet: a training's gate promotes its model."""
    settings = make_settings(tmp_path / "dur")
    d = load_definition("demo")
    store = open_store(settings)
    store.create_schema([d])
    ingest_frame(store, d, generate_stream(StreamConfig(rows_per_day=300, seed=11), 3))
    store.dispose()
    return settings


@pytest.mark.parametrize("kill", TRAIN_KILLS, ids=lambda k: k.stage)
def test_kill_during_train(fresh: Settings, kill: Kill) -> None:
    crashed = run_cli(fresh, "train", "-f", "demo", kill=kill)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    promoted = kill.stage in ("pointer_moved", "tags", "training_done")
    assert assert_pointer_serves(fresh, {"1"} if promoted else {None}) == ("1" if promoted else None)
    if kill.stage in ("fit", "log_model", "explainer", "register", "alias_moved"):
        assert running_train_runs(fresh), "the crash should leave its run RUNNING"

    # The next start reconciles: the alias follows the pointer, a finished promotion is completed.
    check = run_cli(fresh, "check", "-f", "demo")
    assert check.returncode == 0, check.stderr[-2000:]
    pointer, champion, _ = registry_state(fresh)
    assert champion == pointer
    if promoted:
        assert_consistent(fresh, leases_free=False)

    # A retry runs at once (the dead holder's lease is taken over) and closes the dead run.
    retry = run_cli(fresh, "train", "-f", "demo")
    assert retry.returncode == 0, retry.stderr[-2000:]
    assert running_train_runs(fresh) == []
    assert assert_consistent(fresh) in {"1", "2"}


@pytest.mark.parametrize("kill", PROMOTE_KILLS, ids=lambda k: k.stage)
def test_kill_during_promote(trained: Trained, kill: Kill) -> None:
    settings = trained.settings
    assert registry_state(settings)[:2] == ("1", "1")
    for cached in (settings.home / "models").glob("*/2"):  # the promotion downloads it
        shutil.rmtree(cached)
    crashed = run_cli(settings, "promote", "2", "-f", "demo", kill=kill)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    took_effect = kill.stage in ("pointer_moved", "tags")
    assert assert_pointer_serves(settings, {"2"} if took_effect else {"1"})

    check = run_cli(settings, "check", "-f", "demo")
    assert check.returncode == 0, check.stderr[-2000:]
    # Rolled back before the pointer moved, finished after it.
    assert assert_consistent(settings) == ("2" if took_effect else "1")
    store = open_store(settings)
    try:
        history = SqlPointerStore(store).history("demo", limit=10)
    finally:
        store.dispose()
    moves_to_2 = [h for h in history if h.to_version == "2" and h.action == "force"]
    assert len(moves_to_2) == (1 if took_effect else 0)

    if not took_effect:  # the user's retry completes the promotion
        retry = run_cli(settings, "promote", "2", "-f", "demo")
        assert retry.returncode == 0, retry.stderr[-2000:]
        assert assert_consistent(settings) == "2"
    assert not list((settings.home / "models").rglob(".*.*.*")), "a dead download left its staging folder"


def test_kill_during_ingest_leaves_nothing_and_reruns(fresh: Settings, tmp_path: Path) -> None:
    d = load_definition("demo")
    batch = tmp_path / "batch.csv"
    later = StreamConfig(rows_per_day=500, seed=11)
    pd.concat([generate_day(later, 3), generate_day(later, 4)]).to_csv(batch, index=False)

    def counts() -> tuple[int, int]:
        store = open_store(fresh)
        try:
            with store.engine.connect() as conn:
                ledger = conn.execute(select(func.count()).select_from(store.tables.batches)).scalar_one()
            return store.count_rows(d), int(ledger)
        finally:
            store.dispose()

    before = counts()
    kill = Kill("write_rows", "mlpipeline.featurestore.sql:SqlFeatureStore._write_rows")
    crashed = run_cli(fresh, "ingest", str(batch), "-f", "demo", kill=kill)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert counts() == before
    rerun = run_cli(fresh, "ingest", str(batch), "-f", "demo")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert counts() == (before[0] + 1_000, before[1] + 1)
