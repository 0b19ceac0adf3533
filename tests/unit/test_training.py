"""The training steps on small frames: validate, split, fit, evaluate, hash, explain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpipeline.errors import ConfigError, DataValidationError
from mlpipeline.featuresets.definition import Definition, parse_definition
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.featurestore.validation import validate_batch
from mlpipeline.training.artifacts import TreeExplainer, manifest_of, manifest_sha256, write_explainer
from mlpipeline.training.steps import (
    evaluate,
    fit,
    require_usable,
    split_holdout,
    training_data_hash,
    validate_training_data,
)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    from mlpipeline.featuresets.definition import load_definition

    return validate_batch(generate_stream(StreamConfig(rows_per_day=400), 3), load_definition("demo"))


def test_validate_accepts_clean_data(frame: pd.DataFrame, demo_def: Definition) -> None:
    report = validate_training_data(demo_def, frame)
    assert report.usable
    assert report.labelled_rows == 1_200
    assert report.checks == {"schema": "ok", "types_ranges_nulls": "ok", "min_rows": "ok"}


def test_validate_stops_on_unusable_data(frame: pd.DataFrame, demo_def: Definition) -> None:
    too_few = validate_training_data(demo_def, frame.head(100))
    assert not too_few.usable
    with pytest.raises(DataValidationError, match="at least 500"):
        require_usable(too_few)
    broken = frame.copy()
    broken.loc[3, "hour"] = 99  # written by another tool, bypassing ingest
    broken.loc[4, "distance_km"] = np.nan
    report = validate_training_data(demo_def, broken)
    rules = {(p.column, p.rule) for p in report.problems}
    assert rules == {("hour", "range"), ("distance_km", "not null")}
    missing = validate_training_data(demo_def, frame.drop(columns=["region"]))
    assert missing.checks == {"schema": "failed"}


def test_time_aware_split_holds_out_the_newest_rows(frame: pd.DataFrame, demo_def: Definition) -> None:
    split = split_holdout(demo_def, frame.sample(frac=1.0, random_state=3))
    assert split.method == "time"
    assert len(split.holdout) == 240
    assert split.train["ordered_at"].max() <= split.holdout["ordered_at"].min()
    assert split.window["holdout_to"] == str(frame["ordered_at"].max())


def test_random_split_is_seeded_when_there_is_no_time(housing_def: Definition) -> None:
    rows = pd.DataFrame({"block_id": range(1, 1001), "median_house_value": np.arange(1000.0)})
    for name in housing_def.features:
        rows[name] = 1.0
    a, b = split_holdout(housing_def, rows), split_holdout(housing_def, rows)
    assert a.method == "random"
    assert a.holdout["block_id"].tolist() == b.holdout["block_id"].tolist()
    assert len(a.holdout) == 200
    assert not a.holdout["block_id"].is_monotonic_increasing or a.holdout["block_id"].iloc[-1] < 1000


def test_split_refuses_a_holdout_that_leaves_nothing(demo_def: Definition, frame: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="nothing to train on"):
        split_holdout(demo_def, frame.head(100))


def test_fit_lightgbm_learns_and_is_deterministic(frame: pd.DataFrame, demo_def: Definition) -> None:
    split = split_holdout(demo_def, frame)
    one, two = fit(demo_def, split.train), fit(demo_def, split.train)
    p1, p2 = one.predict(split.holdout), two.predict(split.holdout)
    np.testing.assert_array_equal(p1, p2)
    metrics = evaluate(split.holdout["delivery_minutes"].to_numpy(), p1)
    assert metrics.r2 > 0.5
    assert metrics.n == 240
    assert one.categorical == ["region"]
    assert one.spec["order"][-2:] == ["free_flow_minutes", "minutes_per_item"]


def test_fit_sklearn_estimator_by_name(frame: pd.DataFrame, demo_def: Definition) -> None:
    data = demo_def.model_dump()
    data["model"]["estimator"] = "sklearn.ensemble.HistGradientBoostingRegressor"
    data["model"]["params"] = {"max_iter": 50}
    data["derived"] = {x["name"]: x["expression"] for x in data["derived"]}
    d = parse_definition(data)
    split = split_holdout(d, frame)
    fitted = fit(d, split.train)
    assert evaluate(split.holdout["delivery_minutes"].to_numpy(), fitted.predict(split.holdout)).r2 > 0.5
    data["model"]["estimator"] = "os.system"
    with pytest.raises(ConfigError, match="not allowed"):
        fit(parse_definition(data), split.train)
    data["model"]["estimator"] = "sklearn.ensemble.NoSuchRegressor"
    with pytest.raises(ConfigError, match="does not exist"):
        fit(parse_definition(data), split.train)


def test_evaluate_matches_sklearn() -> None:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(0)
    y, p = rng.normal(size=500), rng.normal(size=500)
    m = evaluate(y, p)
    assert m.r2 == pytest.approx(r2_score(y, p))
    assert m.rmse == pytest.approx(mean_squared_error(y, p) ** 0.5)
    assert m.mae == pytest.approx(mean_absolute_error(y, p))
    assert np.isnan(evaluate(np.ones(3), np.ones(3)).r2)


def test_training_data_hash_tracks_content(frame: pd.DataFrame, demo_def: Definition) -> None:
    assert training_data_hash(demo_def, frame) == training_data_hash(demo_def, frame.copy())
    changed = frame.copy()
    changed.loc[0, "delivery_minutes"] += 1
    assert training_data_hash(demo_def, frame) != training_data_hash(demo_def, changed)


def test_explainer_round_trip_equals_shap_and_pred_contrib(
    frame: pd.DataFrame, demo_def: Definition, tmp_path: Path
) -> None:
    import shap

    split = split_holdout(demo_def, frame)
    fitted = fit(demo_def, split.train)
    x = fitted.matrix(split.holdout)
    at_training = write_explainer(fitted, x, tmp_path / "explainer")
    before = at_training.shap_values(x)
    reloaded = TreeExplainer.load(tmp_path / "explainer")
    np.testing.assert_array_equal(reloaded.shap_values(x), before)
    np.testing.assert_allclose(before, fitted.model.predict(x, pred_contrib=True)[:, :-1])
    np.testing.assert_allclose(before, shap.TreeExplainer(fitted.model).shap_values(x), rtol=1e-6, atol=1e-6)
    # Contributions plus the expected value add up to the prediction.
    np.testing.assert_allclose(
        before.sum(axis=1) + reloaded.expected_value, fitted.predict_matrix(x), atol=1e-6
    )
    np.testing.assert_array_equal(reloaded.explain_frame(split.holdout), before)


def test_manifest_detects_any_change(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_text("2")
    first = manifest_sha256(manifest_of(tmp_path))
    (tmp_path / "sub" / "b").write_text("3")
    assert manifest_sha256(manifest_of(tmp_path)) != first


def test_without_event_time_the_holdout_is_drawn_from_rows_the_champion_never_saw() -> None:
    d = parse_definition(
        {
            "name": "people",
            "table": "people",
            "entity_key": {"column": "id"},
            "target": {"column": "y", "type": "categorical", "values": ["no", "yes"]},
            "features": {"x": {"type": "float"}},
            "model": {"holdout": {"min_rows": 20}},
        }
    )
    n = 1000
    frame = pd.DataFrame(
        {
            "id": range(n),
            "x": np.linspace(0, 1, n),
            "y": np.tile([0.0, 1.0, 1.0, 0.0], n // 4),
            "_labelled_batch": np.where(np.arange(n) < 800, 1, 2),  # 200 rows labelled after training
        }
    )
    split = split_holdout(d, frame, new_after_batch=1)
    assert split.method == "stratified, new rows"
    assert (split.holdout["_labelled_batch"] == 2).all()
    assert len(split.holdout) == 100  # half the new rows: the challenger learns from the rest
    assert split.holdout["y"].mean() == pytest.approx(0.5, abs=0.02)  # stratified
    few = frame.assign(_labelled_batch=np.where(np.arange(n) < 990, 1, 2))  # too few new rows
    assert split_holdout(d, few, new_after_batch=1).method == "stratified, random"
