"""Derived features from timestamps: the same portable code in training, serving and the logged model."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpipeline.errors import DataValidationError, DefinitionError
from mlpipeline.featuresets import portable
from mlpipeline.featuresets.definition import Definition, load_definition, parse_definition
from mlpipeline.featuresets.features import feature_spec
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.serving.scoring import InputContract
from mlpipeline.training.steps import fit

MOMENTS = [
    dt.datetime(2026, 3, 15, 13, 45),  # a Sunday
    dt.datetime(2024, 12, 31, 23, 59, 59),  # leap year, Tuesday
    dt.datetime(1969, 12, 31, 6, 0),  # before 1970
    dt.datetime(2000, 2, 29, 0, 0),
]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_time_functions_agree_with_the_standard_library(moment: dt.datetime) -> None:
    seconds = portable.epoch_seconds(np.array([moment], dtype="datetime64[us]"))
    functions = portable.TIME_FUNCTIONS
    assert functions["hour"][1](seconds)[0] == moment.hour
    assert functions["weekday"][1](seconds)[0] == moment.weekday()
    assert functions["day"][1](seconds)[0] == moment.day
    assert functions["month"][1](seconds)[0] == moment.month
    assert functions["dayofyear"][1](seconds)[0] == moment.timetuple().tm_yday
    start = dt.datetime(1990, 1, 1, tzinfo=dt.UTC).timestamp()
    expected = (moment.replace(tzinfo=dt.UTC).timestamp() - start) / 86400
    assert functions["days_since"][1](seconds, start)[0] == pytest.approx(expected)


def test_every_form_of_a_timestamp_reads_the_same() -> None:
    forms: list[Any] = [
        "2026-03-15T13:45:00Z",
        "2026-03-15T15:45:00+02:00",
        "2026-03-15T13:45:00",
        dt.datetime(2026, 3, 15, 13, 45),
        pd.Timestamp("2026-03-15 13:45"),
        np.datetime64("2026-03-15T13:45"),
        1773582300.0,
    ]
    seconds = portable.epoch_seconds(forms)
    assert np.all(seconds == 1773582300.0), seconds
    assert np.isnan(portable.epoch_seconds([None, "", "not a time", float("nan")])).all()


def timed_definition(extra: dict[str, Any] | None = None) -> Definition:
    data = load_definition("demo").model_dump(mode="json")
    data["derived"] = {x["name"]: x["expression"] for x in data["derived"]}
    data["derived"] |= {
        "order_hour": "hour(ordered_at)",
        "order_weekday": "weekday(ordered_at)",
        "order_month": "month(ordered_at)",
        "days_open": "days_since(ordered_at, opened)",
    }
    data["constants"] = {**data["constants"], "opened": dt.date(2025, 6, 1)}
    return parse_definition(data | (extra or {}))


def test_a_definition_reads_the_event_time_and_a_date_constant() -> None:
    d = timed_definition()
    assert d.time_inputs == ("ordered_at",)
    spec = feature_spec(d)
    assert spec["times"] == ["ordered_at"]
    assert spec["constants"]["opened"] == dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp()
    assert load_definition("demo").time_inputs == (), "no expression reads it: not an input"


def test_the_label_time_cannot_feed_a_feature() -> None:
    data = load_definition("demo").model_dump(mode="json")
    data["derived"] = {"late_hour": "hour(delivered_at)"}
    with pytest.raises(DefinitionError, match="label time is not known when a prediction is made"):
        parse_definition(data)


@pytest.fixture(scope="module")
def trained() -> tuple[Definition, Any, pd.DataFrame]:
    d = timed_definition()
    d = d.model_copy(update={"model": d.model.model_copy(update={"params": {"n_estimators": 20}})})
    rows = generate_stream(StreamConfig(seed=4, rows_per_day=120), days=5)
    rows = rows[rows["delivery_minutes"].notna()].reset_index(drop=True)
    return d, fit(d, rows), rows


def test_serving_computes_the_time_features_as_training_did(
    trained: tuple[Definition, Any, pd.DataFrame],
) -> None:
    d, fitted, rows = trained
    sample = rows.head(8)
    expected = fitted.predict(sample)
    records = []
    for r in sample.to_dict("records"):
        record = {k: (None if pd.isna(v) else v) for k, v in r.items() if k in d.features or k == "order_id"}
        record["ordered_at"] = r["ordered_at"].isoformat() + "Z"
        records.append(record)
    inputs = InputContract(fitted.spec).from_records(records)
    matrix = portable.assemble(fitted.spec, inputs.values, inputs.rows)
    np.testing.assert_allclose(fitted.predict_matrix(matrix), expected)
    with pytest.raises(DataValidationError, match="ordered_at"):
        InputContract(fitted.spec).from_records([{k: v for k, v in records[0].items() if k != "ordered_at"}])
    bad = dict(records[0], ordered_at="yesterday")
    with pytest.raises(DataValidationError, match="not an ISO-8601 timestamp"):
        InputContract(fitted.spec).from_records([bad])


def test_the_logged_model_computes_them_too(
    trained: tuple[Definition, Any, pd.DataFrame], tmp_path: Path
) -> None:
    import mlflow

    from mlpipeline.training.artifacts import build_model_dir

    _, fitted, rows = trained
    folder = build_model_dir(fitted, rows, tmp_path)
    sys.modules.pop("mlpipeline_portable", None)
    model = mlflow.pyfunc.load_model(str(folder))
    sample = rows.head(8)
    columns = [f["name"] for f in fitted.spec["features"]] + ["ordered_at"]
    np.testing.assert_allclose(model.predict(sample[columns]), fitted.predict(sample))


def test_the_logged_model_has_type_hints_and_mlflow_keeps_its_signature(
    trained: tuple[Definition, Any, pd.DataFrame], tmp_path: Path
) -> None:
    import warnings

    import mlflow

    from mlpipeline.training.artifacts import build_model_dir

    _, fitted, rows = trained
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = build_model_dir(fitted, rows, tmp_path)
        sys.modules.pop("mlpipeline_portable", None)
        model = mlflow.pyfunc.load_model(str(folder))
        columns = [f["name"] for f in fitted.spec["features"]] + ["ordered_at"]
        model.predict(rows.head(8)[columns])
    hints = [str(w.message) for w in caught if "type hint" in str(w.message).lower()]
    assert hints == []
    signature = model.metadata.signature
    assert signature is not None
    assert set(signature.inputs.input_names()) >= set(columns)  # still the recorded contract
