"""Monitoring end to end: a shortened demo, incremental checks, failures that skip nothing."""

from __future__ import annotations

import json
import threading
from datetime import UTC, timedelta

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sqlalchemy import func, select

from mlpipeline.demo import DayRow, run_demo
from mlpipeline.errors import MlpipelineError
from mlpipeline.featuresets.definition import Definition, load_definition, parse_definition
from mlpipeline.featurestore.checks import RETRAIN_PENDING_KEY, CheckRecords
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_day
from mlpipeline.monitoring.check import run_check, status_of
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.tracking import Tracker
from mlpipeline.settings import Settings
from mlpipeline.training.pipeline import train
from mlpipeline.training.steps import evaluate

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DRIFT_DAY = 6


def test_shortened_demo_degrades_retrains_and_recovers(settings: Settings) -> None:
    rows: list[DayRow] = []
    report = run_demo(settings, days=10, rows_per_day=1_200, drift_day=DRIFT_DAY, on_day=rows.append)
    before = [r for r in rows if r.day < DRIFT_DAY]
    after = [r for r in rows if r.day >= DRIFT_DAY]
    assert before, "some days are checked before the drift"
    assert all(r.decision == "none" for r in before), [(r.day, r.reasons) for r in before]
    assert all(r.champion == "1" for r in before)
    first_retrain = next(r for r in after if r.decision == "retrain")
    assert "performance" in first_retrain.reasons
    assert first_retrain.r2 is not None
    assert first_retrain.r2 < 0.8
    assert rows[-1].champion != "1", "a retrained version serves at the end"
    assert rows[-1].r2 is not None
    assert rows[-1].r2 > first_retrain.r2, "R² recovers"

    # The promoted version beats the old champion on post-drift rows neither was trained on.
    from mlpipeline.registry.model_cache import ModelCache, ModelRef
    from mlpipeline.training.steps import columns_of

    demo_settings = settings.model_copy(update={"training_window": "4d"})
    fresh = generate_day(StreamConfig(seed=99, rows_per_day=1_500, drift_day=0), 30)
    store = open_store(demo_settings)
    pointers = SqlPointerStore(store)
    champion = pointers.get("demo")
    assert champion is not None
    tracker = Tracker(settings)
    cache = ModelCache(settings.home / "models", lambda: tracker)
    old = cache.load(ModelRef.of_version("demo", tracker.version("demo", "1")))
    new = cache.load(champion.ref)
    y = fresh["delivery_minutes"].to_numpy()
    names = [f["name"] for f in new.spec["features"]]
    r2_new = evaluate(y, new.predict_columns(columns_of(fresh, names))).r2
    r2_old = evaluate(y, old.predict_columns(columns_of(fresh, names))).r2
    assert r2_new > r2_old + 0.05

    # The monitoring experiment holds one point per check, at the demo's day and the check's time,
    # with the threshold beside the metric; the run is finished between checks.
    checks = CheckRecords(store, "demo").history(limit=100)
    run_id = store.get_state("demo", "monitor.mlflow_run")
    assert run_id
    judged = [c for c in checks if c.details.get("verdict")]
    series = tracker.client.get_metric_history(run_id, "champion/r2")
    assert len(series) == len(judged)
    assert sorted(m.step for m in series) == sorted(r.day for r in rows if r.r2 is not None)
    assert sorted(m.timestamp for m in series) == sorted(
        int(c.checked_at.replace(tzinfo=UTC).timestamp() * 1000) for c in judged
    )
    threshold = tracker.client.get_metric_history(run_id, "champion/r2_threshold")
    assert {m.step for m in threshold} >= {m.step for m in series}
    assert len({m.value for m in threshold}) == 1
    assert 0 < threshold[0].value < 1
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "demo-timeline.png" in run.data.tags["mlflow.note.content"]
    artifacts = [a.path for a in tracker.client.list_artifacts(run_id)]
    assert "demo-timeline.png" in artifacts

    # status measures ages on the replay's clock (days, not the months since the simulated dates).
    status = status_of(settings, store, load_definition("demo"), with_registry=False)
    assert status["clock"] == "simulated"
    assert 0 <= status["champion"]["age_hours"] <= 24 * 10
    # A real check (no as_of) puts status back on the wall clock.
    run_check(settings, store, load_definition("demo"), allow_retrain=False)
    assert status_of(settings, store, load_definition("demo"), with_registry=False)["clock"] == "wall"
    store.dispose()

    # The picture exists and is not blank.
    assert report.png is not None
    image = np.asarray(Image.open(report.png).convert("L"), dtype=np.float64)
    assert image.shape[0] > 300
    assert image.std() > 10


@pytest.fixture
def trained(settings: Settings, demo_def: Definition) -> Settings:
    store = open_store(settings)
    store.create_schema([demo_def])
    config = StreamConfig(rows_per_day=600)
    for day in range(3):
        ingest_frame(store, demo_def, generate_day(config, day))
    train(settings, store, demo_def, reason="first", as_of=config.start + timedelta(days=3))
    for day in range(3, 5):
        ingest_frame(store, demo_def, generate_day(config, day))
    store.dispose()
    return settings


def test_the_late_delivery_classifier_tells_the_same_story_on_its_log_loss(settings: Settings) -> None:
    """demo_late: the same rows, "late" derived from the minutes; judged on log loss (lower is
    better), so the trigger fires when the loss rises above the threshold."""
    rows: list[DayRow] = []
    run_demo(
        settings, featureset="demo_late", days=10, rows_per_day=1_200, drift_day=DRIFT_DAY, on_day=rows.append
    )
    before = [r for r in rows if r.day < DRIFT_DAY]
    after = [r for r in rows if r.day >= DRIFT_DAY]
    assert all(r.decision == "none" for r in before), [(r.day, r.reasons) for r in before]
    assert all(r.r2 is not None and r.r2 < 0.3 for r in before)  # the log loss, under the threshold
    fired = next(r for r in after if r.decision == "retrain")
    assert "performance" in fired.reasons
    assert fired.r2 is not None
    assert fired.r2 > 0.3
    assert rows[-1].champion != "1", "a retrained classifier serves at the end"
    store = open_store(settings)
    try:
        checks = sorted(CheckRecords(store, "demo_late").history(100), key=lambda c: c.checked_at)
        assert checks[-1].details["metric"]["name"] == "log_loss"
        assert checks[-1].details["metric"]["interval"] is not None
        # The served predictions drift as soon as the world does, before any label is needed.
        served = [c.details["prediction_drift"] for c in checks]
        assert all(s is not None and s["rows"] == 1_200 for s in served)
        assert not any(s["warning"] for s in served[: DRIFT_DAY - 3])
        assert served[DRIFT_DAY - 3]["warning"], served
    finally:
        store.dispose()


def test_check_is_incremental_and_matches_reference_metrics(trained: Settings, demo_def: Definition) -> None:
    store = open_store(trained)
    start = StreamConfig().start
    first = run_check(trained, store, demo_def, as_of=start + timedelta(days=5), allow_retrain=False)
    assert first.n_rows > 500
    assert first.metrics is not None
    again = run_check(trained, store, demo_def, as_of=start + timedelta(days=5), allow_retrain=False)
    assert again.n_rows == 0, "rows are counted once"
    later = run_check(trained, store, demo_def, as_of=start + timedelta(days=8), allow_retrain=False)
    assert later.waiting > 0, "labels that arrived after the first check are picked up (and wait: < 200)"

    # The metrics equal scikit-learn's on the same rows and predictions.
    # The new rows: labelled by day 5 and not already known when the model was trained (day 3),
    # late labels of the training days included.
    rows = store.training_window(demo_def, as_of=start + timedelta(days=5))
    known = set(store.training_window(demo_def, as_of=start + timedelta(days=3))["order_id"])
    rows = rows[~rows["order_id"].isin(known)]
    from mlpipeline.registry.model_cache import ModelCache
    from mlpipeline.training.steps import columns_of

    pointer = SqlPointerStore(store).get("demo")
    assert pointer is not None
    model = ModelCache(trained.home / "models", lambda: Tracker(trained)).load(pointer.ref)
    y = rows["delivery_minutes"].to_numpy()
    p = model.predict_columns(columns_of(rows, [f["name"] for f in model.spec["features"]]))
    assert first.n_rows == len(rows)
    assert first.metrics.r2 == pytest.approx(r2_score(y, p), rel=1e-9)
    assert first.metrics.rmse == pytest.approx(mean_squared_error(y, p) ** 0.5, rel=1e-9)
    assert first.metrics.mae == pytest.approx(mean_absolute_error(y, p), rel=1e-9)
    store.dispose()


def test_served_predictions_are_joined(trained: Settings, demo_def: Definition) -> None:
    from mlpipeline.serving.predictor import open_predictor

    store = open_store(trained)
    day = generate_day(StreamConfig(rows_per_day=600), 3)
    with open_predictor(trained, "demo", background_log=False) as predictor:
        features = [f["name"] for f in predictor.current().model.spec["features"]]
        predictor.predict_columns({n: day[n].tolist() for n in [*features, "order_id"]})
    result = run_check(
        trained, store, demo_def, as_of=StreamConfig().start + timedelta(days=5), allow_retrain=False
    )
    assert result.n_logged > 0
    assert result.n_logged <= 600
    store.dispose()


def test_a_failed_check_advances_nothing(trained: Settings, demo_def: Definition) -> None:
    store = open_store(trained)
    records = CheckRecords(store, "demo")
    mark = records.watermark()
    # The champion is missing from the cache and MLflow is unreachable: the check fails.
    import shutil

    shutil.rmtree(trained.home / "models")
    broken = trained.model_copy(
        update={"mlflow_tracking_uri": f"sqlite:///{trained.home / 'nowhere' / 'x.db'}"}
    )
    with pytest.raises(MlpipelineError):
        run_check(broken, store, demo_def, as_of=StreamConfig().start + timedelta(days=5))
    assert records.watermark() == mark
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(store.tables.monitoring)).scalar_one() == 0
    # Back to normal: the same rows are measured.
    result = run_check(
        trained, store, demo_def, as_of=StreamConfig().start + timedelta(days=5), allow_retrain=False
    )
    assert result.n_rows > 500
    store.dispose()


def test_two_checks_at_once_retrain_exactly_once(trained: Settings, demo_def: Definition) -> None:
    results = []
    barrier = threading.Barrier(2)

    def check() -> None:
        store = open_store(trained)
        barrier.wait()
        results.append(
            run_check(trained, store, demo_def, manual=True, as_of=StreamConfig().start + timedelta(days=5))
        )
        store.dispose()

    threads = [threading.Thread(target=check) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([r for r in results if r.skipped]) == 1
    assert len([r for r in results if r.retrain.get("version")]) == 1
    assert len(Tracker(trained).versions("demo")) == 2


def test_small_batches_wait_until_they_can_be_judged_and_none_is_passed_over(
    trained: Settings, demo_def: Definition
) -> None:
    store = open_store(trained)
    start = StreamConfig().start
    run_check(trained, store, demo_def, as_of=start + timedelta(days=5), allow_retrain=False)
    day = generate_day(StreamConfig(rows_per_day=600), 6)
    later = start + timedelta(days=30)  # every label of day 6 is known by then
    ingest_frame(store, demo_def, day.iloc[:100])  # with the late labels of days 3-4: over 200
    drained = run_check(trained, store, demo_def, as_of=later, allow_retrain=False)
    assert drained.n_rows >= 200
    assert drained.waiting == 0
    judged, waiting = [], []
    for i in range(7):  # 7 batches of 31 rows: 217 >= min_samples (200) only with the last one
        ingest_frame(store, demo_def, day.iloc[100 + i * 31 : 100 + (i + 1) * 31])
        result = run_check(trained, store, demo_def, as_of=later, allow_retrain=False)
        judged.append(result.n_rows)
        waiting.append(result.waiting)
    assert waiting == [31, 62, 93, 124, 155, 186, 0]
    assert judged == [0, 0, 0, 0, 0, 0, 217], "judged once, all together"
    last = CheckRecords(store, "demo").history(1)[0]
    assert last.n_rows == 217
    assert last.details["window"] is not None

    # A window that stays small is judged on its own once it has waited max_window_age (7d).
    ingest_frame(store, demo_def, day.iloc[317:348])
    assert run_check(trained, store, demo_def, as_of=later, allow_retrain=False).waiting == 31
    assert (
        run_check(trained, store, demo_def, as_of=later + timedelta(days=6), allow_retrain=False).waiting
        == 31
    )
    overdue = run_check(trained, store, demo_def, as_of=later + timedelta(days=7), allow_retrain=False)
    assert (overdue.n_rows, overdue.waiting) == (31, 0)
    assert overdue.metrics is not None
    assert not overdue.verdict, "measured and recorded, but too few rows for a trigger verdict"
    store.dispose()


def test_a_waiting_window_is_judged_before_a_retrain_replaces_the_champion(
    trained: Settings, demo_def: Definition
) -> None:
    """The new champion learns from the waiting rows, and no champion is judged on its own
    training rows: judged now by the champion that served them, or never."""
    store = open_store(trained)
    start = StreamConfig().start
    later = start + timedelta(days=30)
    run_check(trained, store, demo_def, as_of=start + timedelta(days=5), allow_retrain=False)
    day = generate_day(StreamConfig(rows_per_day=600), 6)
    ingest_frame(store, demo_def, day.iloc[:10])  # with the late labels of days 3-4: under 200
    waiting = run_check(trained, store, demo_def, as_of=later, allow_retrain=False).waiting
    assert 0 < waiting < trained.min_samples
    aged = trained.model_copy(update={"max_model_age": "1d"})  # the schedule fires: a retrain
    result = run_check(aged, store, demo_def, as_of=later)
    assert result.decision is not None
    assert "schedule" in result.decision.reasons
    assert (result.n_rows, result.waiting) == (waiting, 0)
    assert result.metrics is not None
    assert not result.verdict, "measured, but too few rows to be a verdict"
    assert result.retrain.get("version")
    store.dispose()


def test_a_retrain_deferred_by_the_cooldown_runs_when_the_cooldown_allows(
    trained: Settings, demo_def: Definition
) -> None:
    settings = trained.model_copy(update={"r2_threshold": 0.999})  # the performance trigger always fires
    store = open_store(settings)
    start = StreamConfig().start
    t1 = start + timedelta(days=30)
    first = run_check(settings, store, demo_def, as_of=t1)
    assert first.decision is not None
    assert first.decision.action == "retrain"
    ingest_frame(store, demo_def, generate_day(StreamConfig(rows_per_day=600), 20))
    soon = run_check(settings, store, demo_def, as_of=t1 + timedelta(minutes=10))
    assert soon.decision is not None
    assert soon.decision.action == "deferred"
    pending = json.loads(store.get_state("demo", RETRAIN_PENDING_KEY) or "null")
    assert pending["deferred"] is True
    assert pending["allowed_at"].startswith((t1 + timedelta(hours=1)).isoformat()[:16])
    waiting = run_check(settings, store, demo_def, as_of=t1 + timedelta(minutes=30))
    assert waiting.decision is not None
    assert waiting.decision.action == "deferred", "still in the cooldown, with no new rows: kept"
    later = run_check(settings, store, demo_def, as_of=t1 + timedelta(hours=2))
    assert later.n_rows == 0, "no new rows, and still the deferred retrain runs"
    assert later.decision is not None
    assert later.decision.action == "retrain"
    assert later.retrain.get("version"), later.retrain
    assert not store.get_state("demo", RETRAIN_PENDING_KEY), "done: nothing pending any more"
    store.dispose()


def test_the_feature_sets_quality_threshold_decides_and_an_explicit_one_wins(
    trained: Settings, demo_def: Definition
) -> None:
    data = demo_def.model_dump(mode="json")
    data["derived"] = {x["name"]: x["expression"] for x in data["derived"]}
    strict = parse_definition(data | {"quality": {"threshold": 0.999}})
    store = open_store(trained)
    at = StreamConfig().start + timedelta(days=5)
    result = run_check(trained, store, strict, as_of=at, allow_retrain=False)
    assert result.decision is not None
    assert "performance" in result.decision.reasons, result.decision.explanation
    assert "0.9990" in result.decision.explanation
    ingest_frame(store, demo_def, generate_day(StreamConfig(rows_per_day=600), 20))
    task = run_check(
        trained, store, strict, as_of=at + timedelta(days=30), allow_retrain=False, r2_threshold=-1
    )
    assert task.decision is not None
    assert "performance" not in task.decision.reasons, "the IRIS task's own setting has the last word"
    store.dispose()
