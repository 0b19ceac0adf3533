"""Derived-feature evaluation and the shared feature-matrix function."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlpipeline.featuresets.definition import load_definition, parse_definition
from mlpipeline.featuresets.expressions import compile_expression
from mlpipeline.featuresets.features import category_vocabulary, encode_categorical, feature_matrix


def test_arithmetic_matches_python() -> None:
    expr = compile_expression("(a + 2) * b / c - a ** 2 + -b", where="x")
    a, b, c = np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([5.0, 8.0])
    got = expr.evaluate({"a": a, "b": b, "c": c}, 2)
    want = (a + 2) * b / c - a**2 + -b
    np.testing.assert_allclose(got, want)
    assert expr.names == {"a", "b", "c"}


def test_functions_and_constants() -> None:
    expr = compile_expression("log1p(x) + sqrt(abs(y)) + max(x, k) - min(x, k) + exp(0) + log(k)", where="x")
    x, y = np.array([0.0, 3.0]), np.array([-4.0, 9.0])
    got = expr.evaluate({"x": x, "y": y, "k": 1.0}, 2)
    want = np.log1p(x) + np.sqrt(np.abs(y)) + np.maximum(x, 1) - np.minimum(x, 1) + 1 + 0
    np.testing.assert_allclose(got, want)


def test_division_by_zero_and_bad_log_give_nan_not_inf() -> None:
    expr = compile_expression("a / b + log(b)", where="x")
    got = expr.evaluate({"a": np.array([1.0, 1.0, 1.0]), "b": np.array([0.0, -1.0, 1.0])}, 3)
    assert math.isnan(got[0])
    assert math.isnan(got[1])
    assert got[2] == 1.0


def test_constant_only_expression_broadcasts() -> None:
    assert compile_expression("2 * 3", where="x").evaluate({}, 4).tolist() == [6.0] * 4


def test_canonical_form_ignores_spacing_and_redundant_parentheses() -> None:
    one = compile_expression("total_rooms/households", where="x")
    two = compile_expression("( total_rooms ) / (households)", where="x")
    assert one.canonical == two.canonical == "(total_rooms / households)"


def test_housing_derived_features_match_hand_computation() -> None:
    d = load_definition("housing")
    cols = {
        "longitude": [-122.23],
        "latitude": [37.88],
        "housing_median_age": [41.0],
        "total_rooms": [880.0],
        "total_bedrooms": [np.nan],
        "population": [322.0],
        "households": [126.0],
        "median_income": [8.3252],
        "ocean_proximity": ["NEAR BAY"],
    }
    m = feature_matrix(d, cols)
    names = list(d.model_features)
    assert m.shape == (1, len(names))
    assert m[0, names.index("rooms_per_household")] == pytest.approx(880 / 126)
    assert math.isnan(m[0, names.index("bedrooms_per_room")])  # native missing propagates
    assert m[0, names.index("population_per_household")] == pytest.approx(322 / 126)
    assert m[0, names.index("ocean_proximity")] == 3.0  # position in the declared values


def test_constant_fill_applies_before_derived_features() -> None:
    d = parse_definition(
        {
            "name": "t",
            "table": "t",
            "entity_key": {"column": "id"},
            "target": {"column": "y"},
            "features": {
                "a": {"type": "float", "missing": "constant", "fill_value": 2.0},
                "c": {"type": "categorical", "missing": "constant", "fill_value": "zz"},
            },
            "derived": {"twice_a": "a * 2"},
        }
    )
    m = feature_matrix(d, {"a": [np.nan, 1.0], "c": [None, "aa"]}, {"c": ("aa", "zz")})
    assert m[:, 0].tolist() == [2.0, 1.0]
    assert m[:, 1].tolist() == [1.0, 0.0]
    assert m[:, 2].tolist() == [4.0, 2.0]


def test_unknown_or_missing_category_is_nan() -> None:
    codes = encode_categorical(["b", "zzz", None, "a"], ("a", "b"))
    assert codes[0] == 1.0
    assert math.isnan(codes[1])
    assert math.isnan(codes[2])
    assert codes[3] == 0.0


def test_vocabulary_uses_declared_values_else_observed() -> None:
    d = parse_definition(
        {
            "name": "t",
            "table": "t",
            "entity_key": {"column": "id"},
            "target": {"column": "y"},
            "features": {
                "declared": {"type": "categorical", "values": ["x", "y"]},
                "free": {"type": "categorical", "missing": "native"},
            },
        }
    )
    vocab = category_vocabulary(d, {"free": ["b", "a", None, "b"]})
    assert vocab == {"declared": ("x", "y"), "free": ("a", "b")}
