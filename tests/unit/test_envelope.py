"""Inputs outside what a model saw in training: recorded at training, flagged when served and checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featuresets.envelope import Envelope, observed_ranges, summarise
from mlpipeline.featuresets.features import category_vocabulary, feature_spec
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.monitoring.triggers import TriggerPolicy, TriggerState, decide_retrain
from mlpipeline.serving.predictor import Prediction
from mlpipeline.serving.scoring import InputContract
from mlpipeline.training.steps import fit

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    """The demo spec as training writes it: distance seen from 1 to 10 km, regions north and south."""
    d = load_definition("demo")
    seen: dict[str, Any] = {n: [0.0, 1e9] for n, f in d.features.items() if f.type != "categorical"}
    seen["distance_km"] = [1.0, 10.0]
    seen["region"] = None
    del seen["weekday"]  # not watched (drift = false): never flagged
    spec = feature_spec(d, {"region": ("north", "south")}, seen)
    for f in spec["features"]:
        if f["name"] == "region":
            f["strict"] = False  # categories observed in training, not declared: others are allowed
    return spec


def record(**change: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "order_id": 1,
        "distance_km": 3.0,
        "items": 2,
        "hour": 12,
        "weekday": 3,
        "temperature_c": 10.0,
        "courier_rating": 4.0,
        "region": "north",
    }
    row.update(change)
    return row


def test_observed_ranges_take_finite_values_only() -> None:
    ranges = observed_ranges({"a": [3.0, np.nan, -1.0, np.inf], "b": [np.nan, np.nan]})
    assert ranges == {"a": [-1.0, 3.0], "b": None}


def test_a_model_without_recorded_ranges_flags_nothing() -> None:
    old = feature_spec(load_definition("demo"))
    assert Envelope.of(old) is None
    inputs = InputContract(old).from_records([record(distance_km=99.0)])
    assert inputs.outside == {}


def test_every_request_shape_flags_the_same_rows(spec: dict[str, Any]) -> None:
    contract = InputContract(spec)
    rows = [
        record(),
        record(distance_km=25.0),  # above the training maximum
        record(distance_km=0.5, region="east"),  # below, and a category training never saw
        record(weekday=0, distance_km=1.0, temperature_c=None),  # unwatched; edge value; missing
    ]
    by_records = contract.from_records(rows).outside
    columns = list(rows[0])
    by_split = contract.from_split(
        {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}
    ).outside
    by_columns = contract.from_columns(
        {c: np.array([r[c] for r in rows]) if c != "region" else [r[c] for r in rows] for c in columns}
    ).outside
    for flags in (by_records, by_split, by_columns):
        assert sorted(flags) == ["distance_km", "region"]
        assert flags["distance_km"].tolist() == [False, True, True, False]
        assert flags["region"].tolist() == [False, False, True, False]


def test_a_large_text_batch_flags_unseen_categories_too(spec: dict[str, Any]) -> None:
    regions = ["north"] * 99 + ["west"]
    inputs = InputContract(spec).from_columns(
        {c: [record()[c]] * 100 for c in record() if c != "region"} | {"region": regions}
    )
    assert np.flatnonzero(inputs.outside["region"]).tolist() == [99]


def test_warnings_name_the_column_the_rows_and_what_training_saw(spec: dict[str, Any]) -> None:
    contract = InputContract(spec)
    inputs = contract.from_records([record(), record(distance_km=25.0), record(distance_km=40.0)])
    prediction = Prediction(np.zeros(3), "m", "1", outside=inputs.outside, envelope=contract.envelope)
    [warning] = prediction.warnings()
    assert warning["column"] == "distance_km"
    assert warning["count"] == 2
    assert warning["rows"] == [2, 3]
    assert "outside the training range 1 to 10" in warning["message"]
    assert prediction.outside_by_row() == ["", "distance_km", "distance_km"]
    assert Prediction(np.zeros(2), "m", "1").warnings() == []


def test_raw_columns_from_the_store_are_flagged_like_requests(spec: dict[str, Any]) -> None:
    envelope = Envelope.of(spec)
    assert envelope is not None
    flags = envelope.flags(
        {
            "distance_km": pd.Series([3.0, 11.0, None], dtype="Float64").to_numpy(
                dtype=float, na_value=np.nan
            ),
            "region": pd.Series(["north", "west", pd.NA], dtype="string").tolist(),
            "weekday": np.array([9.0, 9.0, 9.0]),
        }
    )
    assert {k: v.tolist() for k, v in flags.items()} == {
        "distance_km": [False, True, False],
        "region": [False, True, False],
    }
    summary = summarise(flags, 3)
    assert summary.flagged == 1
    assert summary.share == pytest.approx(1 / 3)
    assert dict(summary.by_column) == {"distance_km": 1, "region": 1}


def test_training_records_the_envelope_of_watched_features() -> None:
    d = load_definition("demo")
    rows = generate_stream(StreamConfig(seed=3, rows_per_day=400), days=2)
    model = fit(d, rows)
    features = {f["name"]: f for f in model.spec["features"]}
    assert model.spec["envelope"] == 1
    assert features["distance_km"]["seen"] == [rows["distance_km"].min(), rows["distance_km"].max()]
    assert "seen" not in features["weekday"]  # drift = false
    assert features["region"]["seen"] is None
    assert features["region"]["categories"] == list(category_vocabulary(d)["region"])


def policy(**kw: Any) -> TriggerPolicy:
    base: dict[str, Any] = {"max_model_age": None, "new_data_rows": None, "r2_threshold": None}
    return TriggerPolicy(**(base | kw))


def state(share: float | None, rows: int = 500) -> TriggerState:
    return TriggerState(
        champion_trained_at=NOW - timedelta(hours=1),
        sample_size=rows,
        out_of_range_share=share,
        out_of_range_columns=("distance_km",),
    )


def test_a_share_above_the_setting_is_a_reason_of_its_own() -> None:
    decision = decide_retrain(state(0.25), policy(out_of_range_share=0.1), NOW)
    assert decision.action == "retrain"
    assert decision.reasons == ("out_of_range",)
    assert "25.0% of 500 rows outside the training ranges (distance_km) > out_of_range_share 10.0%" in (
        decision.explanation
    )
    assert decide_retrain(state(0.1), policy(out_of_range_share=0.1), NOW).action == "none"  # strictly above
    assert decide_retrain(state(0.9, rows=50), policy(out_of_range_share=0.1), NOW).action == "none"
    assert decide_retrain(state(0.9), policy(out_of_range_share=None), NOW).action == "none"
    assert "out_of_range" not in decide_retrain(state(None), policy(), NOW).explanation


def test_the_share_must_be_a_share() -> None:
    from mlpipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="out_of_range_share must be a share between 0 and 1"):
        TriggerPolicy(out_of_range_share=1.5)


def test_an_unwatched_category_is_served_without_a_flag(spec: dict[str, Any]) -> None:
    unwatched = {**spec, "features": [dict(f) for f in spec["features"]]}
    for f in unwatched["features"]:
        if f["name"] == "region":
            del f["seen"]  # drift = false: not part of the envelope
    contract = InputContract(unwatched)
    inputs = contract.from_records([record(region="east")])
    assert "region" not in inputs.outside
    prediction = Prediction(np.zeros(1), "m", "1", outside=inputs.outside, envelope=contract.envelope)
    assert prediction.warnings() == []


def test_a_multiclass_target_that_gained_a_class_is_still_judged() -> None:
    from mlpipeline.training.steps import evaluate, metric_interval

    spec = {"task": "multiclass", "classes": ["a", "b", "c"]}
    rng = np.random.default_rng(0)
    proba = rng.dirichlet([1, 1, 1], 60)
    y = np.array([0, 1, 2, 3] * 15, dtype=float)  # class 3 ("d") was added after training
    metrics = evaluate(y, proba, spec=spec)
    assert 0 <= metrics.value <= 1
    assert metric_interval(y, proba, spec=spec) is not None
