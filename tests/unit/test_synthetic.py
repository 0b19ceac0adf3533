"""The synthetic stream: deterministic, valid for the demo definition, drift when asked."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.synthetic import StreamConfig, generate_day, generate_stream
from mlpipeline.featurestore.validation import validate_batch


def test_same_seed_same_data_and_days_are_independent() -> None:
    cfg = StreamConfig(seed=3, rows_per_day=300)
    a = generate_stream(cfg, 3)
    b = generate_stream(cfg, 3)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(generate_day(cfg, 2), a.iloc[600:].reset_index(drop=True))
    assert not generate_day(StreamConfig(seed=4, rows_per_day=300), 0).equals(generate_day(cfg, 0))


def test_stream_is_valid_for_demo_definition() -> None:
    d = load_definition("demo")
    frame = generate_stream(StreamConfig(rows_per_day=2_000), 2)
    clean = validate_batch(frame, d)
    assert len(clean) == 4_000
    assert clean["temperature_c"].isna().sum() > 0  # sensor gaps
    assert clean["courier_rating"].isna().sum() > 0  # new couriers
    assert (clean["delivered_at"] > clean["ordered_at"]).all()  # labels arrive later
    assert clean["order_id"].is_unique


def test_drift_shifts_covariates_and_relationship() -> None:
    base = StreamConfig(seed=1, rows_per_day=5_000)
    drifted = StreamConfig(seed=1, rows_per_day=5_000, drift_day=5)
    before = generate_day(drifted, 4)
    pd.testing.assert_frame_equal(before, generate_day(base, 4))  # no drift before the day
    after, same_day_no_drift = generate_day(drifted, 6), generate_day(base, 6)
    assert after["distance_km"].mean() > 1.3 * same_day_no_drift["distance_km"].mean()
    assert (after["region"] == "east").mean() > 2 * (same_day_no_drift["region"] == "east").mean()

    # Concept change: same distance bucket in the centre takes longer after the drift.
    def centre_minutes_per_km(frame: pd.DataFrame) -> float:
        c = frame[(frame["region"] == "center") & frame["distance_km"].between(3, 6)]
        return float(np.median(c["delivery_minutes"] / c["distance_km"]))

    assert centre_minutes_per_km(after) > 1.15 * centre_minutes_per_km(same_day_no_drift)
