"""End to end on the embedded default: ingest, train, gate, force-promote, roll back, approve."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlpipeline.errors import DataValidationError
from mlpipeline.featuresets.definition import Definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import SqlFeatureStore, open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.promotion import Promoter, PromotionError
from mlpipeline.registry.tracking import CHALLENGER, CHAMPION, Tracker
from mlpipeline.registry.version_tags import facts_of
from mlpipeline.settings import Settings
from mlpipeline.training.pipeline import train

pytestmark = pytest.mark.slow


@pytest.fixture
def store(settings: Settings, demo_def: Definition) -> Iterator[SqlFeatureStore]:
    s = open_store(settings)
    s.create_schema([demo_def])
    ingest_frame(s, demo_def, generate_stream(StreamConfig(rows_per_day=400), 3))
    yield s
    s.dispose()


def state(settings: Settings, store: SqlFeatureStore) -> tuple[str | None, str | None]:
    pointer = SqlPointerStore(store).get("demo")
    return (pointer.version if pointer else None), Tracker(settings).alias_version("demo", CHAMPION)


def test_train_gate_promote_rollback(
    settings: Settings, store: SqlFeatureStore, demo_def: Definition
) -> None:
    first = train(settings, store, demo_def, reason="initial")
    assert first.version == "1"
    assert first.decision is not None
    assert first.decision.action == "promote"
    assert state(settings, store) == ("1", "1")
    steps = {
        "extract",
        "validate",
        "train",
        "evaluate",
        "gate",
        "log_model",
        "explainer",
        "register",
        "promote",
    }
    assert set(first.timings) >= steps

    tracker = Tracker(settings)
    run = tracker.client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlpipeline.trigger"] == "initial"
    assert run.info.run_name == "v1 · initial · promoted"
    experiment = tracker.client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "regression"
    assert run.data.tags["mlpipeline.definition_sha256"] == demo_def.content_hash
    assert len(run.data.params["lineage.training_data_sha256"]) == 64
    assert run.data.params["lineage.split"] == "time"
    assert run.data.metrics["holdout_r2"] == pytest.approx(first.metrics.r2 if first.metrics else 0)
    assert any(k.startswith("shap_mean_abs.") for k in run.data.metrics)
    artifacts = {a.path for a in tracker.client.list_artifacts(first.run_id)}
    assert {"model", "explainer", "shap_summary.png"} <= artifacts
    requirements = tracker.client.download_artifacts(
        first.run_id, "model/requirements.txt", str(settings.home)
    )
    assert "lightgbm==" in Path(requirements).read_text()

    second = train(settings, store, demo_def, reason="same data again")
    assert second.version == "2"
    assert second.decision is not None
    assert second.decision.action == "hold"
    assert second.champion_version == "1"
    held = tracker.version("demo", "2")
    # Four readable tags and one JSON tag; the verdict and the reasons in full in the description.
    assert set(held.tags) == {"sha256", "trigger", "gate", "r2", "mlpipeline"}
    assert held.tags["gate"] == "hold"
    assert held.tags["trigger"] == "same data again"
    facts = facts_of(held.tags)
    assert "less than the required" in facts["gate"]["reason"]
    assert facts["gate"]["champion"] is not None
    assert facts["gate"]["champion_version"] == "1"
    assert facts["gate"]["metric"] == "r2"
    assert facts["metrics"]["r2"] == pytest.approx(float(held.tags["r2"]), abs=1e-4)
    description = tracker.client.get_model_version(held.name, "2").description
    assert facts["gate"]["reason"] in description
    assert "Why it was trained: same data again" in description
    run = tracker.client.get_run(second.run_id)
    assert run.info.run_name == "v2 · same data again · held"
    assert facts["gate"]["reason"] in run.data.tags["mlflow.note.content"]
    assert state(settings, store) == ("1", "1")

    promoter = Promoter(tracker, SqlPointerStore(store))
    promoter.promote("demo", "2", reason="forced for the test", action="force")
    assert state(settings, store) == ("2", "2")
    promoter.rollback("demo", reason="back")
    assert state(settings, store) == ("1", "1")
    with pytest.raises(PromotionError, match="first champion"):
        promoter.rollback("demo", reason="again")
    history = SqlPointerStore(store).history("demo")
    assert [(h.action, h.from_version, h.to_version) for h in history] == [
        ("rollback", "2", "1"),
        ("force", "1", "2"),
        ("promote", None, "1"),
    ]
    assert history[1].reason == "forced for the test"
    promotion = facts_of(tracker.version("demo", "1").tags)["promotion"]
    assert promotion["reason"] == "back"


def test_manual_policy_waits_for_approval(
    settings: Settings, store: SqlFeatureStore, demo_def: Definition
) -> None:
    manual = settings.model_copy(update={"promotion_policy": "manual", "min_improvement": -1.0})
    first = train(manual, store, demo_def)
    assert first.decision is not None
    assert first.decision.action == "await_approval"
    tracker = Tracker(settings)
    assert tracker.alias_version("demo", CHALLENGER) == "1"
    assert state(settings, store) == (None, None)
    promoter = Promoter(tracker, SqlPointerStore(store))
    with pytest.raises(PromotionError, match="not awaiting approval"):
        promoter.approve("demo", "7", reason="x")
    promoter.approve("demo", "1", reason="looks good")
    assert state(settings, store) == ("1", "1")
    assert tracker.alias_version("demo", CHALLENGER) is None
    train(manual, store, demo_def)
    promoter.reject("demo", "2", reason="not convinced")
    assert tracker.alias_version("demo", CHALLENGER) is None
    rejected = tracker.version("demo", "2").tags
    assert rejected["gate"] == "rejected"
    assert facts_of(rejected)["rejection"]["reason"] == "not convinced"
    assert state(settings, store) == ("1", "1")


def test_failures_leave_production_unchanged(
    settings: Settings, store: SqlFeatureStore, demo_def: Definition, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(settings, store, demo_def)
    better = settings.model_copy(update={"min_improvement": -1.0})

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("mlpipeline.training.pipeline.build_model_dir", broken)
    with pytest.raises(OSError, match="disk full"):
        train(better, store, demo_def)
    assert state(settings, store) == ("1", "1")
    failed = Tracker(settings).client.search_runs(
        [Tracker(settings).experiment_id("demo")], order_by=["attributes.start_time DESC"]
    )[0]
    assert failed.info.status == "FAILED"
    assert "disk full" in failed.data.tags["mlpipeline.failure"]
    monkeypatch.undo()

    # The pointer write fails after the alias moved: the alias goes back at once.
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database gone")

    monkeypatch.setattr(SqlPointerStore, "set", refuse)
    with pytest.raises(RuntimeError, match="database gone"):
        train(better, store, demo_def)
    assert state(settings, store) == ("1", "1")


def test_reconcile_repairs_an_alias_moved_behind_the_pointers_back(
    settings: Settings, store: SqlFeatureStore, demo_def: Definition
) -> None:
    train(settings, store, demo_def)
    train(settings.model_copy(update={"min_improvement": 1.0}), store, demo_def)  # v2 held
    tracker = Tracker(settings)
    tracker.set_alias("demo", CHAMPION, "2")  # as if a crash hit between alias and pointer
    note = Promoter(tracker, SqlPointerStore(store)).reconcile("demo")
    assert note is not None
    assert "moved to 1" in note
    assert state(settings, store) == ("1", "1")


def test_unusable_data_stops_before_registration(settings: Settings, demo_def: Definition) -> None:
    s = open_store(settings)
    s.create_schema([demo_def])
    ingest_frame(s, demo_def, generate_stream(StreamConfig(rows_per_day=100), 1))
    with pytest.raises(DataValidationError, match="at least 500"):
        train(settings, s, demo_def)
    assert Tracker(settings).versions("demo") == []
    s.dispose()


def test_one_training_at_a_time_and_abandoned_runs_are_closed(
    settings: Settings, store: SqlFeatureStore, demo_def: Definition
) -> None:
    from datetime import timedelta

    from mlpipeline.errors import BusyError
    from mlpipeline.featurestore.lease import LeaseHolder
    from mlpipeline.training.pipeline import TRAIN_LEASE

    leases = LeaseHolder(store, "demo")
    assert leases.acquire(TRAIN_LEASE, "someone-else", timedelta(minutes=5)) is not None
    with pytest.raises(BusyError, match="another training of 'demo' is running"):
        train(settings, store, demo_def, reason="second opinion")
    leases.release(TRAIN_LEASE, "someone-else")

    # A training process that died left its run RUNNING: the next training closes it.
    tracker = Tracker(settings)
    experiment = tracker.experiment_id("demo")
    dead = tracker.start_run(
        experiment, "train-demo", {"mlpipeline.kind": "train", "mlpipeline.featureset": "demo"}
    )
    result = train(settings, store, demo_def, reason="after a crash")
    run = tracker.client.get_run(dead)
    assert run.info.status == "FAILED"
    assert "abandoned" in run.data.tags["mlpipeline.failure"]
    assert tracker.client.get_run(result.run_id).info.status == "FINISHED"
    assert leases.current(TRAIN_LEASE) is None, "the lease is released after training"
