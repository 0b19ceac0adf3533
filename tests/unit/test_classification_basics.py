"""Classification foundations: categorical and derived targets, their validation, and the metrics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from mlpipeline.errors import DataValidationError, DefinitionError
from mlpipeline.featuresets.definition import Definition, parse_definition
from mlpipeline.featuresets.metrics import (
    DEFAULT_METRIC,
    METRICS,
    bootstrap_interval,
    compute,
    gain,
    metric_for,
    metric_problem,
    one,
    optimistic,
    paired_difference_interval,
    worse_than,
)
from mlpipeline.featurestore.validation import validate_batch, validate_labels


def definition(target: dict[str, Any], **extra: Any) -> Definition:
    data: dict[str, Any] = {
        "name": "churn",
        "table": "churn",
        "entity_key": {"column": "customer_id"},
        "target": target,
        "features": {"tenure": {"type": "float"}, "plan": {"type": "categorical"}},
        **extra,
    }
    return parse_definition(data)


# -- the definition ------------------------------------------------------------------------------


def test_two_values_are_binary_more_are_multiclass() -> None:
    yes_no = definition({"column": "churned", "type": "categorical", "values": ["no", "yes"]}).target
    assert (yes_no.task, yes_no.classes, yes_no.positive_index) == ("binary", ("no", "yes"), 1)
    first = definition(
        {"column": "churned", "type": "categorical", "values": ["yes", "no"], "positive": "yes"}
    ).target
    assert first.positive_index == 0
    ints = definition({"column": "churned", "type": "categorical", "values": [0, 1], "positive": 1}).target
    assert (ints.task, ints.classes, ints.positive_index) == ("binary", ("0", "1"), 1)
    three = definition({"column": "grade", "type": "categorical", "values": ["a", "b", "c"]}).target
    assert three.task == "multiclass"
    assert definition({"column": "amount"}).target.task == "regression"


def test_a_comparison_derives_a_binary_target_from_constants() -> None:
    d = definition(
        {"column": "late", "derived": "delivery_minutes > late_after"}, constants={"late_after": 45}
    )
    assert (d.target.task, d.target.classes) == ("binary", ("0", "1"))
    assert d.target.compiled is not None
    assert d.target.compiled.names == {"delivery_minutes", "late_after"}
    numeric = definition({"column": "net", "derived": "gross - fees"})
    assert numeric.target.task == "regression"


@pytest.mark.parametrize(
    ("target", "extra", "words"),
    [
        ({"column": "c", "type": "categorical"}, {}, ["needs values = [...] with at least two classes"]),
        ({"column": "c", "type": "categorical", "values": ["a"]}, {}, ["at least two classes"]),
        ({"column": "c", "type": "categorical", "values": ["a", "a"]}, {}, ["listed twice"]),
        (
            {"column": "c", "type": "categorical", "values": ["no", "yes"], "positive": "maybe"},
            {},
            ["positive = 'maybe' is not one of the values ('no', 'yes')"],
        ),
        (
            {"column": "c", "type": "categorical", "values": ["a", "b", "c"], "positive": "a"},
            {},
            ["positive is for binary targets"],
        ),
        (
            {"column": "c", "type": "categorical", "values": [0, 1], "min": 0},
            {},
            ["min and max are for numeric"],
        ),
        ({"column": "c", "values": [0, 1]}, {}, ["add type = 'categorical'"]),
        ({"column": "amount"}, {"quality": {"metric": "roc_auc"}}, ["'roc_auc' does not judge a regression"]),
        (
            {"column": "c", "type": "categorical", "values": ["a", "b"]},
            {"quality": {"metric": "f1_macro"}},
            ["'f1_macro' does not judge a binary target", "roc_auc"],
        ),
        ({"column": "amount"}, {"quality": {"metric": "auc"}}, ["unknown metric 'auc'", "r2, rmse, mae"]),
        ({"column": "amount"}, {"quality": {"min_class_recall": 0.5}}, ["min_class_recall", "no classes"]),
        ({"column": "late", "derived": "late > 3"}, {}, ["cannot be computed from itself"]),
        ({"column": "late", "derived": "a < b < c"}, {}, ["target.derived", "not allowed"]),
    ],
)
def test_a_wrong_target_is_refused_with_the_fix(
    target: dict[str, Any], extra: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(DefinitionError) as caught:
        definition(target, **extra)
    for word in words:
        assert word in str(caught.value)


# -- ingest and labels --------------------------------------------------------------------------


BINARY = {"column": "churned", "type": "categorical", "values": ["no", "yes"]}


def test_class_labels_are_stored_as_their_positions() -> None:
    d = definition(BINARY)
    frame = pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "tenure": [1.0, 2.0, 3.0],
            "plan": ["a", "b", "a"],
            "churned": ["yes", "no", None],
        }
    )
    out = validate_batch(frame, d)
    assert out["churned"].tolist()[:2] == [1.0, 0.0]
    assert math.isnan(out["churned"].iloc[2])  # not labelled yet


def test_whole_numbers_match_integer_classes_whatever_the_reader_made_of_them() -> None:
    d = definition({"column": "churned", "type": "categorical", "values": [0, 1]})
    frame = pd.DataFrame({"customer_id": [1, 2, 3], "tenure": [1.0, 2.0, 3.0], "plan": ["a"] * 3})
    for column in ([0, 1, 1], [0.0, 1.0, np.nan], ["0", "1", " 1 "], [False, True, True]):
        out = validate_batch(frame.assign(churned=column), d)
        assert out["churned"].tolist()[:2] == [0.0, 1.0], column


def test_a_label_outside_the_values_refuses_the_batch_naming_them() -> None:
    d = definition(BINARY)
    frame = pd.DataFrame(
        {"customer_id": [1, 2], "tenure": [1.0, 2.0], "plan": ["a", "b"], "churned": ["yes", "maybe"]}
    )
    with pytest.raises(DataValidationError) as caught:
        validate_batch(frame, d)
    text = str(caught.value)
    assert "churned" in text
    assert "not one of the target's values 'no', 'yes'" in text
    assert "maybe" in text
    labels = pd.DataFrame({"customer_id": [1], "churned": ["Yes"]})  # case matters: say so
    with pytest.raises(DataValidationError, match="'Yes': did you mean 'yes'"):
        validate_labels(labels, d)


def test_a_derived_target_is_computed_at_ingest_and_from_a_labels_file() -> None:
    d = definition({"column": "late", "derived": "minutes > late_after"}, constants={"late_after": 45})
    frame = pd.DataFrame(
        {"customer_id": [1, 2, 3], "tenure": [1.0, 2.0, 3.0], "plan": ["a"] * 3, "minutes": [30, 60, None]}
    )
    out = validate_batch(frame, d)
    assert out["late"].tolist()[:2] == [0.0, 1.0]
    assert math.isnan(out["late"].iloc[2])
    assert "minutes" not in out.columns  # an input of the target, not a stored column
    labels = validate_labels(pd.DataFrame({"customer_id": [3], "minutes": [50]}), d)
    assert labels["late"].tolist() == [1.0]


# -- metrics ---------------------------------------------------------------------------------------


def test_metrics_equal_scikit_learns_on_random_data() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    got = compute("binary", y, p, threshold=0.5)
    cut = (p >= 0.5).astype(int)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, p))
    assert got["f1"] == pytest.approx(skm.f1_score(y, cut))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, cut))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert got["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    k = rng.integers(0, 3, 400)
    proba = rng.dirichlet([1, 1, 1], 400)
    proba[np.arange(400), k] += 0.5
    proba /= proba.sum(axis=1, keepdims=True)
    multi = compute("multiclass", k, proba, classes=3)
    assert multi["f1_macro"] == pytest.approx(skm.f1_score(k, proba.argmax(1), average="macro"))
    assert multi["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(k, proba.argmax(1)))
    assert multi["log_loss"] == pytest.approx(skm.log_loss(k, proba))
    t = rng.normal(size=300)
    pred = t + rng.normal(scale=0.5, size=300)
    regression = compute("regression", t, pred)
    assert regression["r2"] == pytest.approx(skm.r2_score(t, pred))
    assert regression["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(t, pred)))


def test_one_class_present_leaves_auc_undefined_not_wrong() -> None:
    got = compute("binary", np.ones(10), np.linspace(0.1, 0.9, 10))
    assert math.isnan(got["roc_auc"])
    assert got["recall"] == pytest.approx(0.5)


def test_direction_is_known_for_every_metric() -> None:
    loss, score = METRICS["log_loss"], METRICS["roc_auc"]
    assert gain(score, 0.9, 0.8) == pytest.approx(0.1)
    assert gain(loss, 0.3, 0.4) == pytest.approx(0.1)  # a lower loss is a gain
    assert worse_than(score, 0.6, 0.7)
    assert worse_than(loss, 0.5, 0.4)
    assert not worse_than(score, math.nan, 0.7)
    assert metric_for(None, "binary").name == DEFAULT_METRIC["binary"] == "roc_auc"
    assert metric_for(None, "multiclass").name == "f1_macro"
    assert metric_problem("brier", "multiclass") is not None
    assert metric_problem(None, "regression") is None


@pytest.mark.parametrize(
    "name", ["roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy", "log_loss", "brier"]
)
def test_one_metric_alone_equals_the_full_computation(name: str) -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    p = np.clip(y * 0.25 + rng.random(300) * 0.75, 0, 1)
    assert one("binary", name, y, p, threshold=0.4) == pytest.approx(
        compute("binary", y, p, threshold=0.4)[name]
    )


def test_the_bootstrap_interval_covers_the_true_value_at_the_stated_rate() -> None:
    """Seeded simulation: a classifier right 80 % of the time, judged on 300 rows, 200 times."""
    rng = np.random.default_rng(11)
    covered = 0
    trials = 200
    for trial in range(trials):
        y = rng.integers(0, 2, 300)
        right = rng.random(300) < 0.8
        p = np.where(right, y, 1 - y).astype(float)
        interval = bootstrap_interval("binary", "accuracy", y, p, seed=trial)
        assert interval is not None
        covered += interval[0] <= 0.8 <= interval[1]
    assert 0.90 <= covered / trials <= 0.99  # stated 95 %


def test_the_interval_is_seeded_and_the_paired_difference_has_a_sign() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    good = np.clip(y * 0.3 + rng.random(400) * 0.7, 0, 1)
    poor = rng.random(400)
    first = bootstrap_interval("binary", "roc_auc", y, good, seed=3)
    assert first == bootstrap_interval("binary", "roc_auc", y, good, seed=3)
    assert first is not None
    assert first[0] < compute("binary", y, good)["roc_auc"] < first[1]
    gain_interval = paired_difference_interval("binary", "roc_auc", y, good, poor)
    assert gain_interval is not None
    assert gain_interval[0] > 0  # the better model is better on every plausible resample
    loss = paired_difference_interval("binary", "log_loss", y, good, poor)
    assert loss is not None
    assert loss[0] > 0  # a lower loss is a gain too
    assert bootstrap_interval("binary", "roc_auc", np.ones(50), good[:50]) is None  # one class: undefined
    assert optimistic(METRICS["roc_auc"], 0.7, (0.6, 0.8)) == 0.8
    assert optimistic(METRICS["log_loss"], 0.5, (0.4, 0.6)) == 0.4
    assert optimistic(METRICS["r2"], 0.5, None) == 0.5


@pytest.mark.parametrize("name", ["r2", "rmse", "mae"])
def test_the_vectorised_regression_bootstrap_covers_the_point_and_is_seeded(name: str) -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(size=3000)
    pred = y + rng.normal(scale=0.5, size=3000)
    interval = bootstrap_interval("regression", name, y, pred, seed=1)
    assert interval is not None
    assert interval[0] < compute("regression", y, pred)[name] < interval[1]
    assert interval == bootstrap_interval("regression", name, y, pred, seed=1)
    assert bootstrap_interval("regression", "r2", np.ones(50), pred[:50]) is None  # constant truth
