"""Batch validation rules: each broken rule is reported with column, rows and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipeline.errors import DataValidationError, EmptyBatchError
from mlpipeline.featuresets.definition import Definition
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.featurestore.validation import validate_batch


@pytest.fixture
def frame() -> pd.DataFrame:
    return generate_stream(StreamConfig(rows_per_day=20), 1)


def problems(frame: pd.DataFrame, d: Definition) -> list[tuple[str, str, list[int]]]:
    with pytest.raises(DataValidationError) as info:
        validate_batch(frame, d, source="t.csv")
    assert str(info.value).startswith("t.csv rejected, nothing written:")
    return [(p.column, p.rule, list(p.rows)) for p in info.value.problems]


def test_valid_batch_is_normalised(frame: pd.DataFrame, demo_def: Definition) -> None:
    as_text = frame.astype(str).replace({"nan": ""})  # what a CSV reader could give
    clean = validate_batch(as_text, demo_def)
    assert list(clean.columns) == list(demo_def.raw_columns)
    assert clean["distance_km"].dtype == np.float64
    assert str(clean["items"].dtype) == "Int64"
    assert str(clean["ordered_at"].dtype) == "datetime64[us]"
    np.testing.assert_allclose(clean["distance_km"], frame["distance_km"])


def test_empty_batch(demo_def: Definition) -> None:
    with pytest.raises(EmptyBatchError, match="no data rows"):
        validate_batch(pd.DataFrame(columns=list(demo_def.raw_columns)), demo_def)


def test_missing_and_unexpected_columns(frame: pd.DataFrame, demo_def: Definition) -> None:
    bad = frame.drop(columns=["distance_km"]).assign(colour="red")
    found = problems(bad, demo_def)
    assert ("distance_km", "required column", []) in found
    assert ("colour", "unexpected column", []) in found


def test_wrong_delimiter_gets_a_hint(demo_def: Definition) -> None:
    bad = pd.DataFrame({"order_id;ordered_at;distance_km": ["1;2;3"]})
    with pytest.raises(DataValidationError, match="';'-separated"):
        validate_batch(bad, demo_def)


def test_text_in_numeric_column(frame: pd.DataFrame, demo_def: Definition) -> None:
    bad = frame.astype({"distance_km": object})
    bad.loc[3, "distance_km"] = "far"
    found = problems(bad, demo_def)
    assert found == [("distance_km", "type", [4])]


def test_infinite_and_out_of_range(frame: pd.DataFrame, demo_def: Definition) -> None:
    bad = frame.copy()
    bad.loc[0, "distance_km"] = np.inf
    bad.loc[1, "distance_km"] = 1e9
    bad.loc[2, "hour"] = 24
    bad.loc[5, "delivery_minutes"] = -1
    found = problems(bad, demo_def)
    assert ("distance_km", "finite", [1]) in found
    assert ("distance_km", "range", [2]) in found
    assert ("hour", "range", [3]) in found
    assert ("delivery_minutes", "range", [6]) in found


def test_non_integer_in_integer_column(frame: pd.DataFrame, demo_def: Definition) -> None:
    bad = frame.astype({"items": float})
    bad.loc[0, "items"] = 2.5
    assert problems(bad, demo_def) == [("items", "type", [1])]


def test_nulls_follow_the_declared_policy(frame: pd.DataFrame, demo_def: Definition) -> None:
    ok = frame.copy()
    ok.loc[0, "temperature_c"] = np.nan  # native
    ok.loc[0, "courier_rating"] = np.nan  # constant fill
    validate_batch(ok, demo_def)
    bad = frame.copy()
    bad.loc[4, "distance_km"] = np.nan  # error
    assert problems(bad, demo_def) == [("distance_km", "not null", [5])]


def test_unknown_category_lists_allowed_values(frame: pd.DataFrame, demo_def: Definition) -> None:
    bad = frame.copy()
    bad.loc[2, "region"] = "moon"
    with pytest.raises(DataValidationError, match=r"unknown category \('moon'\); allowed: 'center'"):
        validate_batch(bad, demo_def)


def test_duplicate_and_missing_keys(frame: pd.DataFrame, demo_def: Definition) -> None:
    bad = frame.astype({"order_id": object})
    bad.loc[1, "order_id"] = bad.loc[0, "order_id"]
    bad.loc[7, "order_id"] = None
    found = problems(bad, demo_def)
    assert ("order_id", "unique key", [1, 2]) in found
    assert ("order_id", "not null", [8]) in found


def test_timestamps_parsed_and_checked(frame: pd.DataFrame, demo_def: Definition) -> None:
    bad = frame.astype({"ordered_at": str, "delivered_at": str})
    bad.loc[0, "ordered_at"] = "yesterday"
    bad.loc[1, "delivered_at"] = "2000-01-01T00:00:00Z"
    found = problems(bad, demo_def)
    assert ("ordered_at", "type", [1]) in found
    assert ("delivered_at", "order", [2]) in found


def test_labelled_row_needs_label_time(frame: pd.DataFrame, demo_def: Definition) -> None:
    bad = frame.copy()
    bad.loc[0, "delivered_at"] = pd.NaT
    assert problems(bad, demo_def) == [("delivered_at", "not null", [1])]
    unlabelled = frame.copy()
    unlabelled.loc[0, ["delivered_at", "delivery_minutes"]] = [pd.NaT, np.nan]
    validate_batch(unlabelled, demo_def)


def test_target_column_is_optional(frame: pd.DataFrame, demo_def: Definition) -> None:
    clean = validate_batch(frame.drop(columns=["delivery_minutes", "delivered_at"]), demo_def)
    assert clean["delivery_minutes"].isna().all()


def test_generated_key_must_not_be_in_the_batch(housing_def: Definition) -> None:
    row = {
        "block_id": 1, "longitude": -122.0, "latitude": 37.0, "housing_median_age": 10.0,
        "total_rooms": 5.0, "total_bedrooms": 1.0, "population": 3.0, "households": 1.0,
        "median_income": 2.0, "median_house_value": 1.0, "ocean_proximity": "INLAND",
    }  # fmt: skip
    with pytest.raises(DataValidationError, match="generated at ingest"):
        validate_batch(pd.DataFrame([row]), housing_def)


def test_huge_field_and_sql_looking_values_are_plain_data(frame: pd.DataFrame, demo_def: Definition) -> None:
    bad = frame.copy()
    bad.loc[0, "region"] = "x" * 10_000
    found = problems(bad, demo_def)
    assert ("region", "length", [1]) in found
    sneaky = frame.copy()
    sneaky.loc[0, "region"] = "center'; DROP TABLE demo_deliveries; --"
    with pytest.raises(DataValidationError, match="unknown category"):
        validate_batch(sneaky, demo_def)


def test_many_problems_reported_at_once_and_rows_capped(frame: pd.DataFrame, demo_def: Definition) -> None:
    bad = frame.copy()
    bad["hour"] = 99
    bad.loc[0, "region"] = "moon"
    found = problems(bad, demo_def)
    assert ("hour", "range", [1, 2, 3, 4, 5]) in found
    assert any(col == "region" for col, _, _ in found)
    with pytest.raises(DataValidationError, match=r"\(\+15 more\)"):
        validate_batch(bad, demo_def)
