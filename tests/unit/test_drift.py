"""Reference histograms and PSI: bucket rules, edge cases, the JSON form, and a plain re-computation."""

from __future__ import annotations

import ast
import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from mlpipeline.errors import ConfigError, DataValidationError, ModelIntegrityError
from mlpipeline.featuresets import reference as reference_module
from mlpipeline.featuresets.reference import (
    FORMAT,
    CategoricalHistogram,
    Histogram,
    NumericHistogram,
    Reference,
    build_reference,
    categorical_histogram,
    current_shares,
    numeric_histogram,
)
from mlpipeline.monitoring import drift
from mlpipeline.monitoring.drift import (
    EPSILON,
    PSI_MODERATE,
    PSI_SIGNIFICANT,
    DriftReport,
    drift_report,
    psi,
    psi_from_shares,
)

FloatArray = npt.NDArray[np.float64]
NAN = float("nan")


def normal(seed: int, n: int = 20_000, loc: float = 0.0, scale: float = 1.0) -> FloatArray:
    return np.random.default_rng(seed).normal(loc, scale, n)


def measured(h: Histogram, values: Any) -> float:
    """PSI of a non-empty sample (never None)."""
    value = psi(h, values)
    assert value is not None
    return value


def plain_psi(expected: list[float], actual: list[float], eps: float = EPSILON) -> float:
    """The textbook formula, one bucket at a time."""
    total = 0.0
    for e_raw, a_raw in zip(expected, actual, strict=True):
        e, a = max(e_raw, eps), max(a_raw, eps)
        total += (a - e) * math.log(a / e)
    return total


def plain_numeric_shares(h: NumericHistogram, values: list[float]) -> list[float]:
    """Bucket shares by walking the edges by hand: (-inf, e1], (e1, e2], ..., (ek, inf), missing."""
    counts = [0] * (len(h.edges) + 2)
    for v in values:
        if math.isnan(v):
            counts[-1] += 1
            continue
        bucket = len(h.edges)
        for i, edge in enumerate(h.edges):
            if v <= edge:
                bucket = i
                break
        counts[bucket] += 1
    return [c / len(values) for c in counts]


# -- PSI formula -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "actual", "value"),
    [
        ([0.5, 0.5], [0.5, 0.5], 0.0),
        ([0.5, 0.5], [0.6, 0.4], 0.1 * math.log(1.2) - 0.1 * math.log(0.8)),
        ([1.0, 0.0], [0.0, 1.0], 2 * (1.0 - EPSILON) * math.log(1.0 / EPSILON)),
        ([0.0, 1.0], [0.0, 1.0], 0.0),  # a bucket empty on both sides costs nothing
        ([0.9, 0.1, 0.0], [0.8, 0.1, 0.1], plain_psi([0.9, 0.1, 0.0], [0.8, 0.1, 0.1])),
    ],
)
def test_psi_from_shares(expected: list[float], actual: list[float], value: float) -> None:
    assert psi_from_shares(expected, actual) == pytest.approx(value, rel=1e-12, abs=1e-15)


def test_psi_from_shares_is_symmetric_and_non_negative_on_random_distributions() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        k = int(rng.integers(2, 15))
        e = rng.dirichlet(np.ones(k)).tolist()
        a = rng.dirichlet(np.ones(k)).tolist()
        value = psi_from_shares(e, a)
        assert value >= 0.0
        assert value == pytest.approx(psi_from_shares(a, e), rel=1e-12)
        assert value == pytest.approx(plain_psi(e, a), rel=1e-12)


def test_empty_bucket_costs_about_069_when_it_gets_ten_percent() -> None:
    """The documented size of the epsilon penalty."""
    assert psi_from_shares([0.0, 1.0], [0.1, 0.9]) == pytest.approx(0.69, abs=0.02)


def test_psi_from_shares_rejects_different_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        psi_from_shares([0.5, 0.5], [1.0])


def test_thresholds_are_the_usual_ones() -> None:
    assert (PSI_MODERATE, PSI_SIGNIFICANT, EPSILON) == (0.1, 0.25, 1e-4)


# -- numeric histograms ------------------------------------------------------------------------


def test_continuous_column_gets_ten_equal_quantile_buckets() -> None:
    h = numeric_histogram(normal(1, 10_000))
    assert len(h.edges) == 9
    assert h.proportions == (0.1,) * 10
    assert (h.missing, h.count, h.kind) == (0.0, 10_000, "numeric")
    assert list(h.edges) == sorted(set(h.edges))


@pytest.mark.parametrize("bins", [2, 4, 20])
def test_bins_parameter(bins: int) -> None:
    h = numeric_histogram(normal(2, 10_000), bins=bins)
    assert len(h.proportions) == bins
    assert h.proportions == pytest.approx([1 / bins] * bins)


@pytest.mark.parametrize("bins", [0, 1, -3, 2.5, True, "10"])
def test_bins_must_be_an_integer_of_at_least_two(bins: Any) -> None:
    with pytest.raises(ConfigError, match="bins must be an integer of at least 2"):
        numeric_histogram([1.0, 2.0], bins=bins)


def test_discrete_column_gets_one_bucket_per_value_without_empty_slivers() -> None:
    h = numeric_histogram([1, 2, 3] * 10)
    assert h.edges == (1.0, 2.0)
    assert h.proportions == pytest.approx([1 / 3] * 3)
    assert all(p > 0 for p in h.proportions)


def test_binary_column() -> None:
    h = numeric_histogram([0.0] * 90 + [1.0] * 10)
    assert h.edges == (0.0,)
    assert h.proportions == (0.9, 0.1)


def test_no_training_bucket_is_ever_empty() -> None:
    """Edges are observed values and the maximum is never an edge: every bucket holds rows."""
    rng = np.random.default_rng(3)
    samples = [
        rng.integers(0, 5, 1000).astype(float),
        rng.exponential(1.0, 500),
        np.round(rng.normal(0, 1, 300), 1),
        np.concatenate([np.zeros(700), rng.uniform(1, 2, 300)]),
        rng.poisson(0.3, 2000).astype(float),
        np.array([5.0, 5.0, 5.0, 6.0]),
    ]
    for values in samples:
        h = numeric_histogram(values)
        assert all(p > 0 for p in h.proportions), h


@pytest.mark.parametrize("value", [3.0, 0.0, -2.5, 1e300])
def test_constant_column_gets_below_at_and_above_buckets(value: float) -> None:
    h = numeric_histogram([value] * 50)
    assert h.edges == (float(np.nextafter(value, -np.inf)), value)
    assert h.proportions == (0.0, 1.0, 0.0)
    assert psi(h, [value] * 7) == 0.0
    assert measured(h, [value + abs(value) + 1.0] * 7) > PSI_SIGNIFICANT  # values moved up
    assert measured(h, [value - abs(value) - 1.0] * 7) > PSI_SIGNIFICANT  # values moved down


def test_constant_column_at_the_lowest_float_still_has_finite_edges() -> None:
    lowest = float(np.finfo(np.float64).min)
    h = numeric_histogram([lowest] * 5)
    assert h.edges == (lowest,)
    assert h.proportions == (1.0, 0.0)
    json.dumps(Reference({"x": h}).to_dict(), allow_nan=False)


def test_point_mass_at_the_maximum_uses_the_same_three_buckets() -> None:
    h = numeric_histogram([1.0] + [2.0] * 99)
    assert h.edges == (float(np.nextafter(2.0, -np.inf)), 2.0)
    assert h.proportions == (0.01, 0.99, 0.0)


def test_values_equal_to_an_edge_go_into_the_lower_bucket() -> None:
    h = numeric_histogram([1, 2, 3] * 10)  # edges (1, 2): buckets (-inf, 1], (1, 2], (2, inf)
    assert current_shares(h, [1.0, 2.0, 2.5, 3.0]) == (0.25, 0.25, 0.5, 0.0)


def test_unseen_extremes_land_in_the_outer_buckets() -> None:
    h = numeric_histogram(normal(4, 5_000))
    shares = current_shares(h, [-1e12, -50.0, 50.0, 1e12, float("-inf"), float("inf")])
    assert shares is not None
    assert shares[0] == pytest.approx(0.5)
    assert shares[-2] == pytest.approx(0.5)  # the last value bucket; the last share is missing
    assert sum(shares[1:-2]) == 0.0


def test_infinite_training_values_count_but_never_become_edges() -> None:
    values = np.concatenate([normal(5, 1000), [np.inf] * 300, [-np.inf] * 10])
    h = numeric_histogram(values)
    assert all(math.isfinite(e) for e in h.edges)
    assert h.proportions[-1] >= 300 / 1310
    json.dumps(Reference({"x": h}).to_dict(), allow_nan=False)


def test_only_infinite_values_behave_like_an_all_missing_column_of_values() -> None:
    h = numeric_histogram([np.inf, -np.inf, np.nan])
    assert h.edges == ()
    assert h.proportions == pytest.approx((2 / 3,))
    assert h.missing == pytest.approx(1 / 3)


def test_missing_values_have_their_own_share() -> None:
    values = [1.0, 2.0, None, NAN, 3.0]
    h = numeric_histogram(values)
    assert h.missing == 0.4
    assert math.fsum(h.shares()) == pytest.approx(1.0)
    assert h.count == 5


def test_all_missing_training_column() -> None:
    h = numeric_histogram([NAN] * 20)
    assert (h.edges, h.proportions, h.missing) == ((), (0.0,), 1.0)
    assert psi(h, [NAN] * 3) == 0.0
    assert measured(h, [1.0, 2.0, NAN]) > PSI_SIGNIFICANT  # values appeared where there were none


def test_all_missing_current_column_is_drift() -> None:
    h = numeric_histogram(normal(6, 2_000))
    assert measured(h, [NAN] * 500) > 5.0


def test_accepts_lists_generators_pandas_and_nullable_integers() -> None:
    base = [1.0, 2.0, 3.0, 4.0, NAN]
    expected = numeric_histogram(np.array(base))
    assert numeric_histogram(base) == expected
    assert numeric_histogram(v for v in base) == expected
    assert numeric_histogram(pd.Series(base)) == expected
    ints = pd.Series([1, 2, 3, 4, None], dtype="Int64").to_numpy(dtype=np.float64, na_value=np.nan)
    assert numeric_histogram(ints) == expected


def test_text_in_a_numeric_column_is_a_validation_error() -> None:
    with pytest.raises(DataValidationError, match="is the column categorical"):
        numeric_histogram(["a", "b"], name="region")


@pytest.mark.parametrize("build", [numeric_histogram, categorical_histogram])
def test_no_training_rows_cannot_make_a_histogram(build: Callable[..., Any]) -> None:
    with pytest.raises(DataValidationError) as info:
        build([], name="distance_km")
    assert "distance_km" in str(info.value)
    assert "no training rows" in str(info.value)


def test_numeric_histogram_does_not_depend_on_row_order() -> None:
    values = np.round(normal(8, 3_000), 2)
    shuffled = np.random.default_rng(9).permutation(values)
    assert numeric_histogram(values) == numeric_histogram(shuffled)


# -- numeric PSI -------------------------------------------------------------------------------


def test_identical_distribution_gives_zero() -> None:
    values = normal(10)
    assert psi(numeric_histogram(values), values) == 0.0


def test_same_distribution_new_sample_is_near_zero() -> None:
    h = numeric_histogram(normal(11))
    value = measured(h, normal(12))
    assert value < 0.01


@pytest.mark.parametrize(
    ("loc", "scale", "low", "high"),
    [
        (0.1, 1.0, 0.0, PSI_MODERATE),  # a small shift: no meaningful change
        (0.5, 1.0, PSI_MODERATE, 0.5),  # half a standard deviation: at least moderate
        (1.0, 1.0, 0.8, 2.0),  # one standard deviation: significant
        (0.0, 2.0, PSI_SIGNIFICANT, 2.0),  # twice as wide
        (3.0, 1.0, 3.0, math.inf),  # far away: most rows in the last bucket
    ],
)
def test_shifted_normal(loc: float, scale: float, low: float, high: float) -> None:
    h = numeric_histogram(normal(13))
    value = measured(h, normal(14, loc=loc, scale=scale))
    assert low < value < high


def test_psi_grows_with_the_shift() -> None:
    h = numeric_histogram(normal(15))
    values = [measured(h, normal(16, loc=loc)) for loc in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert values == sorted(values)


def test_missing_share_change_alone_is_detected() -> None:
    train = normal(17)
    h = numeric_histogram(train)
    current = normal(18)
    current[: len(current) * 3 // 10] = np.nan  # the same values, but 30 % lost
    value = measured(h, current)
    assert value > PSI_SIGNIFICANT


def test_missing_share_that_stays_the_same_is_not_drift() -> None:
    train = normal(19)
    train[::5] = np.nan
    current = normal(20)
    current[::5] = np.nan
    value = measured(numeric_histogram(train), current)
    assert value < 0.01


def test_psi_matches_a_plain_computation_on_random_data() -> None:
    rng = np.random.default_rng(21)
    for trial in range(30):
        n = int(rng.integers(1, 2_000))
        train = rng.normal(0, 1, n) if trial % 3 else rng.integers(0, 6, n).astype(float)
        train[rng.random(n) < 0.1] = np.nan
        h = numeric_histogram(train, bins=int(rng.integers(2, 15)))
        current = rng.normal(rng.uniform(-1, 1), rng.uniform(0.5, 2), int(rng.integers(1, 500)))
        current[rng.random(current.size) < rng.uniform(0, 0.3)] = np.nan
        shares = plain_numeric_shares(h, current.tolist())
        assert current_shares(h, current) == pytest.approx(shares, abs=1e-15)
        assert psi(h, current) == pytest.approx(plain_psi(list(h.shares()), shares), rel=1e-12)


def test_empty_current_sample_has_no_verdict() -> None:
    h = numeric_histogram(normal(22, 100))
    assert psi(h, []) is None
    assert psi(h, np.array([])) is None
    assert current_shares(h, []) is None


def test_tiny_samples_get_a_number_and_are_biased_upwards() -> None:
    """One row is a valid sample; the documented small-sample bias is why the policy gates it."""
    h = numeric_histogram(normal(23))
    one = psi(h, [0.0])
    assert one is not None
    assert math.isfinite(one)
    small = [measured(h, normal(100 + i, 20)) for i in range(20)]
    large = [measured(h, normal(200 + i, 5_000)) for i in range(20)]
    assert np.mean(small) > 5 * np.mean(large)


def test_psi_is_deterministic() -> None:
    train, current = normal(24), normal(25, loc=0.3)
    first = psi(numeric_histogram(train), current)
    assert all(psi(numeric_histogram(train.copy()), current.copy()) == first for _ in range(5))


# -- categorical -------------------------------------------------------------------------------

REGIONS = ["center"] * 40 + ["north"] * 30 + ["south"] * 20 + ["east"] * 10


def test_categorical_histogram() -> None:
    h = categorical_histogram(REGIONS + [None, "", NAN, pd.NA] * 25)
    assert h.categories == ("center", "east", "north", "south")  # sorted
    assert h.proportions == (0.2, 0.05, 0.15, 0.1)
    assert (h.other, h.missing, h.count, h.kind) == (0.0, 0.5, 200, "categorical")


def test_same_categories_give_zero_and_a_shift_is_drift() -> None:
    h = categorical_histogram(REGIONS)
    assert psi(h, list(reversed(REGIONS))) == 0.0
    shifted = ["center"] * 10 + ["north"] * 30 + ["south"] * 20 + ["east"] * 40
    value = measured(h, shifted)
    assert value > PSI_SIGNIFICANT


def test_unseen_category_goes_to_other_and_is_detected() -> None:
    h = categorical_histogram(REGIONS)
    current = REGIONS[:80] + ["airport"] * 20
    shares = current_shares(h, current)
    assert shares is not None
    assert shares[-2] == 0.2  # other
    value = measured(h, current)
    assert value > PSI_SIGNIFICANT


def test_categorical_missing_share_change_is_detected() -> None:
    h = categorical_histogram(REGIONS)
    value = measured(h, REGIONS[:70] + [None] * 30)
    assert value > PSI_SIGNIFICANT


def test_all_missing_categorical_columns() -> None:
    h = categorical_histogram([None, ""] * 10)
    assert (h.categories, h.proportions, h.other, h.missing) == ((), (), 0.0, 1.0)
    assert psi(h, [None]) == 0.0
    assert measured(h, ["north"]) > PSI_SIGNIFICANT
    assert measured(categorical_histogram(REGIONS), [None] * 10) > PSI_SIGNIFICANT


def test_labels_are_compared_as_text() -> None:
    h = categorical_histogram(["1", "2", 1, 2, np.str_("2")])
    assert h.categories == ("1", "2")
    assert current_shares(h, [1, "2"]) == (0.5, 0.5, 0.0, 0.0)


def test_max_categories_folds_the_rarest_into_other_with_ties_broken_by_label() -> None:
    values = [f"c{i:02d}" for i in range(60) for _ in range(60 - i)]  # c00 most frequent
    values += ["z"] * 11 + ["y"] * 11  # tie with c49 (11 rows): y and z sort after c49
    h = categorical_histogram(values)
    assert len(h.categories) == 50
    assert h.categories == tuple(f"c{i:02d}" for i in range(50))
    assert h.other == pytest.approx((sum(range(1, 11)) + 22) / len(values))
    small = categorical_histogram(values, max_categories=3)
    assert small.categories == ("c00", "c01", "c02")
    shuffled = list(np.random.default_rng(26).permutation(np.array(values, dtype=object)))
    assert categorical_histogram(shuffled) == h


@pytest.mark.parametrize("order", [["c", "b", "a"], ["a", "b", "c"], ["b", "c", "a"]])
def test_equally_frequent_categories_are_kept_by_label_whatever_the_row_order(order: list[str]) -> None:
    values = [label for label in order for _ in range(2)] + ["d"]
    h = categorical_histogram(values, max_categories=2)
    assert h.categories == ("a", "b")
    assert h.other == 3 / 7


@pytest.mark.parametrize("limit", [0, -1, 1.5, False])
def test_max_categories_must_be_positive(limit: Any) -> None:
    with pytest.raises(ConfigError, match="max_categories must be an integer of at least 1"):
        categorical_histogram(["a"], max_categories=limit)


def test_empty_current_categorical_sample_has_no_verdict() -> None:
    assert psi(categorical_histogram(REGIONS), []) is None


def test_categorical_psi_matches_a_plain_computation() -> None:
    rng = np.random.default_rng(27)
    labels = np.array(["a", "b", "c", "d", "e", "f", None], dtype=object)
    for _ in range(30):
        train = list(rng.choice(labels, int(rng.integers(1, 500)), p=rng.dirichlet(np.ones(7))))
        h = categorical_histogram(train, max_categories=int(rng.integers(1, 7)))
        current = list(rng.choice(labels, int(rng.integers(1, 300)), p=rng.dirichlet(np.ones(7))))
        n = len(current)
        expected = [sum(v == c for v in current) / n for c in h.categories]
        expected.append(sum(v is not None and v not in h.categories for v in current) / n)
        expected.append(sum(v is None for v in current) / n)
        assert current_shares(h, current) == pytest.approx(expected, abs=1e-15)
        assert psi(h, current) == pytest.approx(plain_psi(list(h.shares()), expected), rel=1e-12)


# -- references and reports --------------------------------------------------------------------


def training_columns(seed: int = 30, n: int = 5_000) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    temperature = rng.normal(15, 8, n)
    temperature[rng.random(n) < 0.05] = np.nan
    region = rng.choice(np.array(["center", "north", "south", "east", "west", None], dtype=object), n)
    return {
        "distance_km": rng.exponential(5, n),
        "items": rng.integers(1, 8, n).astype(float),
        "temperature_c": temperature,
        "constant": np.full(n, 4.5),
        "empty": np.full(n, np.nan),
        "region": region,
    }


def test_build_reference_infers_kinds_from_dtypes_and_keeps_order() -> None:
    columns = training_columns()
    ref = build_reference(columns, target=np.arange(5_000.0))
    assert list(ref.features) == list(columns)
    assert {n: h.kind for n, h in ref.features.items()} == {
        "distance_km": "numeric",
        "items": "numeric",
        "temperature_c": "numeric",
        "constant": "numeric",
        "empty": "numeric",
        "region": "categorical",
    }
    assert isinstance(ref.target, NumericHistogram)
    assert build_reference({"r": ["a", "b"]}).features["r"].kind == "categorical"  # a list of text


def test_build_reference_with_explicit_categorical_names() -> None:
    ref = build_reference({"code": np.array([1.0, 2.0, 2.0]), "x": [1.0, 2.0, 3.0]}, categorical=["code"])
    code = ref.features["code"]
    assert isinstance(code, CategoricalHistogram)
    assert code.categories == ("1.0", "2.0")
    assert ref.features["x"].kind == "numeric"
    assert ref.target is None


def test_build_reference_rejects_unknown_categorical_names() -> None:
    with pytest.raises(ConfigError, match="not in the training columns: regoin; the columns are: x, region"):
        build_reference({"x": [1.0], "region": ["a"]}, categorical=["regoin"])


def test_build_reference_passes_bins_and_max_categories() -> None:
    ref = build_reference({"x": normal(31, 1_000), "c": list("abcdef")}, bins=4, max_categories=2)
    assert len(ref.features["x"].shares()) == 5
    c = ref.features["c"]
    assert isinstance(c, CategoricalHistogram)
    assert len(c.categories) == 2


def test_drift_report_on_the_training_rows_is_zero_everywhere() -> None:
    columns = training_columns()
    target = normal(32, 5_000)
    report = drift_report(build_reference(columns, target=target), columns, target=target)
    assert report == DriftReport(dict.fromkeys(columns, 0.0), 0.0)


def test_drift_report_finds_the_drifted_features() -> None:
    ref = build_reference(training_columns(33), target=normal(34, 5_000))
    current = training_columns(35, 2_000)
    current["distance_km"] = current["distance_km"] * 3
    current["region"] = np.array(["airport"] * 2_000, dtype=object)
    current["extra"] = np.zeros(2_000)  # ignored: the model never saw it
    report = drift_report(ref, current, target=normal(36, 2_000, loc=2.0))
    assert set(report.features) == set(ref.features)
    drifted = {n for n, v in report.features.items() if v is not None and v > PSI_SIGNIFICANT}
    assert drifted == {"distance_km", "region"}
    assert report.target is not None
    assert report.target > PSI_SIGNIFICANT
    assert report.worst() == ("region", report.features["region"])


def test_drift_report_without_a_target_on_either_side() -> None:
    columns = {"x": normal(37, 500)}
    assert drift_report(build_reference(columns), columns, target=normal(38, 500)).target is None
    assert drift_report(build_reference(columns, target=normal(39, 500)), columns).target is None


def test_drift_report_empty_batch_has_no_verdicts() -> None:
    ref = build_reference(training_columns())
    empty: dict[str, list[float]] = {name: [] for name in ref.features}
    report = drift_report(ref, empty, target=[])
    assert report == DriftReport(dict.fromkeys(ref.features), None)
    assert report.worst() is None


def test_drift_report_rejects_a_batch_without_a_reference_feature() -> None:
    ref = build_reference({"x": [1.0, 2.0], "y": [1.0, 2.0], "z": [3.0, 4.0]})
    with pytest.raises(
        ConfigError, match="lacks feature\\(s\\) the model's reference histogram describes: y, z"
    ):
        drift_report(ref, {"x": [1.0]})


def test_worst_prefers_the_first_on_ties() -> None:
    assert DriftReport({"a": 0.3, "b": 0.3, "c": None}).worst() == ("a", 0.3)
    assert DriftReport({}).worst() is None


# -- the JSON form -----------------------------------------------------------------------------


def reference() -> Reference:
    return build_reference(training_columns(), target=normal(40, 5_000))


def test_json_round_trip_is_exact() -> None:
    ref = reference()
    text = json.dumps(ref.to_dict(), allow_nan=False)
    back = Reference.from_dict(json.loads(text))
    assert back == ref
    assert json.dumps(back.to_dict(), allow_nan=False) == text  # byte for byte
    for name, h in ref.features.items():
        assert back.features[name].shares() == h.shares()


def test_json_round_trip_without_a_target() -> None:
    ref = build_reference({"x": normal(41, 100)})
    assert Reference.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref


def test_json_layout() -> None:
    data = build_reference({"x": [1.0, 2.0, 3.0, NAN], "c": ["a", "b", None, "a"]}).to_dict()
    assert data == {
        "format": FORMAT,
        "features": {
            "x": {
                "kind": "numeric",
                "count": 4,
                "edges": [1.0, 2.0],
                "proportions": [0.25, 0.25, 0.25],
                "missing": 0.25,
            },
            "c": {
                "kind": "categorical",
                "count": 4,
                "categories": ["a", "b"],
                "proportions": [0.5, 0.25],
                "other": 0.0,
                "missing": 0.25,
            },
        },
        "target": None,
    }
    assert FORMAT == "mlpipeline-reference/1"


def test_json_integers_are_read_as_floats() -> None:
    data = {
        "format": FORMAT,
        "features": {"x": {"kind": "numeric", "count": 2, "edges": [1], "proportions": [1, 0], "missing": 0}},
    }
    h = Reference.from_dict(data).features["x"]
    assert h == NumericHistogram((1.0,), (1.0, 0.0), 0.0, 2)
    assert isinstance(h, NumericHistogram)
    assert all(isinstance(v, float) for v in (*h.shares(), *h.edges))


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _drop(path: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


X = ("features", "distance_km")
R = ("features", "region")


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (
            _set(("format",), "mlpipeline-reference/2"),
            "format 'mlpipeline-reference/2', this mlpipeline reads",
        ),
        (_drop(("format",)), "format None"),
        (_set(("features",), []), "at features: expected an object"),
        (_drop(("features",)), "at features"),
        (_set(X, [1, 2]), "at distance_km: expected an object"),
        (_set((*X, "kind"), "ordinal"), "kind must be 'numeric' or 'categorical', got 'ordinal'"),
        (_set((*X, "count"), 0), "count must be a positive integer, got 0"),
        (_set((*X, "count"), True), "count must be a positive integer"),
        (_set((*X, "count"), 5.0), "count must be a positive integer"),
        (_set((*X, "edges"), "1,2"), "edges must be a list of numbers"),
        (
            _set((*X, "edges"), [3.0, 2.0, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]),
            "edges must be strictly increasing",
        ),
        (
            _set((*X, "edges"), [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
            "edges must be strictly increasing",
        ),
        (_set((*X, "edges"), [1.0]), "1 edges need 2 proportions, got 10"),
        (_set((*X, "edges"), [None] * 9), "edges must hold finite numbers, got None"),
        (_set((*X, "missing"), 1.5), "missing must be a share between 0 and 1, got 1.5"),
        (_set((*X, "missing"), "0"), "missing must hold finite numbers"),
        (_set((*X, "proportions"), [0.5] * 10), "shares sum to"),
        (_set((*X, "proportions"), [-0.1] + [0.11] * 9), "proportions must be a share between 0 and 1"),
        (_set((*R, "categories"), ["a", 1, "c", "d", "e"]), "categories must be a list of strings"),
        (_set((*R, "categories"), ["a", "a", "b", "c", "d"]), "categories lists a category twice"),
        (_set((*R, "categories"), ["a"]), "1 categories need as many proportions, got 5"),
        (_drop((*R, "other")), "other must hold finite numbers, got None"),
        (_set(("target",), "none"), "at target: expected an object"),
        (_set(("target", "kind"), None), "at target: kind must be"),
    ],
)
def test_malformed_json_is_a_model_integrity_error(
    mutate: Callable[[dict[str, Any]], None], words: str
) -> None:
    data = copy.deepcopy(reference().to_dict())
    mutate(data)
    with pytest.raises(ModelIntegrityError) as info:
        Reference.from_dict(data)
    assert words in str(info.value)
    assert info.value.code == "MLP-600"


def test_from_dict_rejects_a_non_object() -> None:
    with pytest.raises(ModelIntegrityError, match="expected an object, got list"):
        Reference.from_dict([])  # type: ignore[arg-type]


def test_non_finite_numbers_never_reach_the_json() -> None:
    data = reference().to_dict()
    json.dumps(data, allow_nan=False)
    bad = copy.deepcopy(data)
    bad["features"]["distance_km"]["missing"] = float("nan")
    with pytest.raises(ModelIntegrityError, match="finite numbers"):
        Reference.from_dict(bad)


def test_a_reference_survives_the_json_and_gives_the_same_psi() -> None:
    ref = reference()
    back = Reference.from_dict(json.loads(json.dumps(ref.to_dict())))
    current = training_columns(42, 1_000)
    assert drift_report(back, current) == drift_report(ref, current)


# -- the module stays pure ---------------------------------------------------------------------


def test_drift_imports_only_numpy_the_standard_library_and_errors() -> None:
    imported: set[str] = set()
    for module in (reference_module, drift):
        source = Path(module.__file__ or "").read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    allowed = {
        "__future__",
        "itertools",
        "math",
        "collections",
        "collections.abc",
        "dataclasses",
        "typing",
        "numpy",
        "numpy.typing",
        "mlpipeline.errors",
        "mlpipeline.featuresets.reference",
    }
    assert imported <= allowed, imported - allowed


def test_public_surface() -> None:
    for module in (reference_module, drift):
        assert [n for n in module.__all__ if not hasattr(module, n)] == []


def test_a_reference_keeps_the_models_training_outputs() -> None:
    from mlpipeline.featuresets.reference import Reference, prediction_histogram, prediction_values

    binary = prediction_histogram({"task": "binary"}, np.linspace(0, 1, 500))
    multi = prediction_histogram({"task": "multiclass"}, np.eye(3)[[0, 1, 2, 2, 1, 0] * 50])
    reference = Reference({}, None, binary)
    assert Reference.from_dict(reference.to_dict()) == reference
    assert Reference.from_dict({**reference.to_dict(), "prediction": None}).prediction is None  # older models
    assert prediction_values({"task": "multiclass"}, [2.0, 0.0]) == ["2", "0"]
    assert multi.categories == ("0", "1", "2")
