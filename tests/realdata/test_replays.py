"""Replays on the data's clock (issue: monitoring on real streams), on SQLite and PostgreSQL.

- rwm5yr by year: each year is checked as of its end; the schedule fires as it would live
  (a model a year old), every labelled row after the first training is judged exactly once,
  and ``status`` measures ages on the replay's clock.
- the synthetic stream by day in small batches with late labels and default settings, checked
  ``--as-of`` each day: windows wait for ``min_samples``, and still every labelled row that
  arrived after training is judged exactly once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlpipeline.demo import run_csv_demo
from mlpipeline.errors import ConfigError
from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.checks import CheckRecords
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.featurestore.synthetic import StreamConfig, generate_day
from mlpipeline.monitoring.check import run_check, status_of
from mlpipeline.settings import Settings
from mlpipeline.training.pipeline import train

from ..conftest import SHARED_DATA

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

RWM = SHARED_DATA / "rwm5yr.csv"

VISITS = """
name = "visits"
table = "visits"
event_time = "year"
extra_columns = "ignore"

[entity_key]
columns = ["id", "year"]

[target]
column = "docvis"
min = 0

[features.age]
type = "integer"
[features.hhninc]
type = "float"
[features.educ]
type = "float"
[features.female]
type = "integer"
[features.married]
type = "integer"
[features.kids]
type = "integer"

[quality]
floor = -0.5  # doctor visits are hard to predict: a first model near R² 0 still serves
"""


@pytest.fixture
def on_backend(settings: Settings, store_url: str) -> Settings:
    settings.featuresets_dir.mkdir(parents=True, exist_ok=True)
    return settings.model_copy(update={"featurestore_url": store_url})


def judged(store: SqlFeatureStore, featureset: str) -> int:
    """Rows the champion was measured on, over every check."""
    return sum(c.n_rows for c in CheckRecords(store, featureset).history(limit=10_000) if c.model_version)


def test_rwm5yr_replayed_by_year_on_the_data_clock(on_backend: Settings) -> None:
    if not RWM.is_file():
        pytest.skip(f"{RWM} is not here (shared data sets live beside the project)")
    (on_backend.featuresets_dir / "visits.toml").write_text(VISITS)
    report = run_csv_demo(on_backend, "visits", RWM, every="year")
    years = pd.read_csv(RWM, usecols=["year"])["year"]
    after_training = int((years >= 1986).sum())  # 1984 and 1985 train the first model

    assert report.judged_rows == after_training
    store = SqlFeatureStore(on_backend.featurestore_url)
    try:
        assert judged(store, "visits") == after_training
        checks = sorted(CheckRecords(store, "visits").history(limit=100), key=lambda c: c.checked_at)
        assert [c.checked_at for c in checks] == [datetime(y, 12, 31, 23, 59, 59) for y in (1986, 1987, 1988)]
        for check in checks:
            # A champion a year old retrains, as it would live: no cooldown or age on the wall clock.
            assert "schedule" in check.details["reasons"], check.details["explanation"]
            assert check.details["decision"] == "retrain"
            assert check.details["retrain"].get("version"), check.details["retrain"]
        status = status_of(on_backend, store, load_definition("visits", on_backend.featuresets_dir))
        assert status["clock"] == "simulated"
        assert status["clock_at"] == "1988-12-31T23:59:59"
        # The last retrain ran as of the last check: the champion is hours old on that clock,
        # not decades (the data's time) nor minutes (the wall clock's).
        assert status["champion"]["age_hours"] == 0
    finally:
        store.dispose()
    assert report.png is not None
    assert report.png.stat().st_size > 10_000


def test_small_daily_batches_with_late_labels_are_each_judged_once(
    on_backend: Settings, tmp_path: Path
) -> None:
    d = load_definition("demo")
    config = StreamConfig(seed=11, rows_per_day=90)  # below min_samples (200): windows must wait
    store = SqlFeatureStore(on_backend.featurestore_url)
    try:
        store.create_schema([d])
        days = 12
        frames = []
        for day in range(days):
            frame = generate_day(config, day)
            frames.append(frame)
            ingest_frame(store, d, frame, source=f"day {day}")
            end_of_day = config.start + timedelta(days=day + 1)
            if day < 6:  # 540 rows: enough for a first model
                continue
            if day == 6:
                first = train(on_backend, store, d, reason="replay: first model", as_of=end_of_day)
                assert first.decision is not None
                assert first.decision.action == "promote"
                trained_until = end_of_day
                continue
            run_check(on_backend, store, d, as_of=end_of_day)
        # Much later every label is known: the last window is judged once it is old enough.
        run_check(on_backend, store, d, as_of=config.start + timedelta(days=days + 30))
        rows = pd.concat(frames, ignore_index=True)
        labelled_after = int((rows["delivered_at"] > trained_until).sum())
        checks = CheckRecords(store, "demo").history(limit=1000)
        assert any(c.details.get("waiting") for c in checks), "small windows should have waited"
        assert judged(store, "demo") == labelled_after
    finally:
        store.dispose()


def test_a_deferred_retrain_waits_for_the_cooldown_on_the_data_clock(on_backend: Settings) -> None:
    """Performance always fires (threshold 0.999); a 2-day cooldown on the data's clock defers the
    next day's retrain, keeps it pending with its time, and runs it once the cooldown allows."""
    settings = on_backend.model_copy(update={"r2_threshold": 0.999, "retrain_cooldown": "2d"})
    d = load_definition("demo")
    config = StreamConfig(seed=5, rows_per_day=400)
    store = SqlFeatureStore(settings.featurestore_url)
    try:
        store.create_schema([d])
        for day in range(3):
            ingest_frame(store, d, generate_day(config, day), source=f"day {day}")
        start = config.start
        train(settings, store, d, reason="first", as_of=start + timedelta(days=3))
        actions = []
        retrained_at = start
        for day in range(3, 9):
            ingest_frame(store, d, generate_day(config, day), source=f"day {day}")
            now = start + timedelta(days=day + 1)
            result = run_check(settings, store, d, as_of=now)
            assert result.decision is not None
            actions.append(result.decision.action)
            if result.decision.action == "retrain":
                retrained_at = now
            else:
                pending = status_of(settings, store, d)["retrain_pending"]
                assert pending["deferred"] is True
                assert datetime.fromisoformat(pending["allowed_at"]).replace(
                    tzinfo=None
                ) == retrained_at + timedelta(days=2)
            outside = CheckRecords(store, "demo").history(1)[0].details["out_of_range"]
            assert outside is not None
            assert 0 <= outside["share"] <= 1
        # Retrain at day 4's end; days 5 and 6 fall inside the 2-day cooldown; day 7's end is
        # exactly 2 days later and runs the kept retrain; and so on.
        assert actions == ["retrain", "deferred", "retrain", "deferred", "retrain", "deferred"]
        assert status_of(settings, store, d)["clock"] == "simulated"
    finally:
        store.dispose()


SOURCED = """
name = "deliveries"
table = "deliveries"
event_time = {column = "ordered_at", source = "Ordered At"}
extra_columns = "ignore"

[entity_key]
column = "order_id"
source = "Order #"

[target]
column = "delivery_minutes"
source = "Minutes"

[features.distance_km]
type = "float"
source = "Distance (km)"
[features.items]
type = "integer"
"""


def test_a_replay_reads_files_that_name_columns_their_own_way(settings: Settings, tmp_path: Path) -> None:
    """Every column under a source name, the event time too; checks move forward only."""
    settings.featuresets_dir.mkdir(parents=True, exist_ok=True)
    (settings.featuresets_dir / "deliveries.toml").write_text(SOURCED)
    config = StreamConfig(seed=2, rows_per_day=150)
    rows = pd.concat([generate_day(config, day) for day in range(6)], ignore_index=True)
    names = {
        "order_id": "Order #",
        "ordered_at": "Ordered At",
        "delivery_minutes": "Minutes",
        "distance_km": "Distance (km)",
    }
    path = tmp_path / "deliveries.csv"
    rows.rename(columns=names).to_csv(path, index=False)
    report = run_csv_demo(settings, "deliveries", path, every="day")
    assert report.batches_written == 6
    assert report.judged_rows == 4 * 150  # days 0-1 train; each later day is judged once
    store = SqlFeatureStore(settings.featurestore_url)
    try:
        d = load_definition("deliveries", settings.featuresets_dir)
        with pytest.raises(ConfigError, match="run forward in time"):
            run_check(settings, store, d, as_of=datetime(2026, 1, 3))
    finally:
        store.dispose()


def test_training_as_of_a_moment_sees_no_later_row_without_a_label_time(on_backend: Settings) -> None:
    on_backend.featuresets_dir.mkdir(parents=True, exist_ok=True)
    (on_backend.featuresets_dir / "deliveries.toml").write_text(SOURCED)
    d = load_definition("deliveries", on_backend.featuresets_dir)
    rows = pd.concat([generate_day(StreamConfig(seed=4, rows_per_day=50), day) for day in range(4)])
    store = SqlFeatureStore(on_backend.featurestore_url)
    try:
        store.create_schema([d])
        ingest_frame(store, d, rows.drop(columns=["delivered_at"]).reset_index(drop=True))
        moment = datetime(2026, 1, 2, 23, 59, 59)
        window = store.training_window(d, as_of=moment)
        assert len(window) == 100  # days 0 and 1 only
        assert window["ordered_at"].max() <= moment
    finally:
        store.dispose()
