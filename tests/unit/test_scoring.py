"""The served model's input contract: request shapes, every rule, one error listing all problems."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from mlpipeline.errors import DataValidationError, Problem
from mlpipeline.featuresets import portable
from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featuresets.features import feature_spec
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.serving import scoring
from mlpipeline.serving.scoring import MAX_ROWS_SHOWN, InputContract, Inputs

FloatArray = npt.NDArray[np.float64]
DROP = object()  # marks a field to leave out of a record

DEMO_GOOD: dict[str, Any] = {
    "order_id": 17,
    "distance_km": 3.25,
    "items": 2,
    "hour": 12,
    "weekday": 3,
    "temperature_c": 10.5,
    "courier_rating": 4.1,
    "region": "north",
}
DEMO_NUMERIC = ("distance_km", "items", "hour", "weekday", "temperature_c", "courier_rating")


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_spec() -> dict[str, Any]:
    return feature_spec(load_definition("demo"))


@pytest.fixture(scope="module")
def housing_spec() -> dict[str, Any]:
    return feature_spec(load_definition("housing"))


@pytest.fixture
def demo(demo_spec: dict[str, Any]) -> InputContract:
    return InputContract(demo_spec)


@pytest.fixture
def housing(housing_spec: dict[str, Any]) -> InputContract:
    return InputContract(housing_spec)


@pytest.fixture
def lenient(demo_spec: dict[str, Any]) -> InputContract:
    """The demo feature set with extra_columns = "ignore"."""
    return InputContract({**demo_spec, "extra_columns": "ignore"})


def record(**changes: Any) -> dict[str, Any]:
    """A valid demo record with ``changes`` applied (``DROP`` removes the field)."""
    out = dict(DEMO_GOOD)
    for name, value in changes.items():
        if value is DROP:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def as_split(records: list[dict[str, Any]]) -> dict[str, Any]:
    columns = list(dict.fromkeys(k for r in records for k in r))
    return {"columns": columns, "data": [[r[c] for c in columns] for r in records]}


def as_columns(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    columns = list(dict.fromkeys(k for r in records for k in r))
    return {c: [r[c] for r in records] for c in columns}


Shape = Callable[[InputContract, list[dict[str, Any]]], Inputs]
SHAPES: dict[str, Shape] = {
    "records": lambda c, recs: c.from_records(recs, source="req.json"),
    "split": lambda c, recs: c.from_split(as_split(recs), source="req.json"),
    "columns": lambda c, recs: c.from_columns(as_columns(recs), source="req.json"),
}


@pytest.fixture(params=list(SHAPES))
def shape(request: pytest.FixtureRequest) -> Shape:
    return SHAPES[request.param]


def reject(call: Callable[[], object]) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        call()
    return info.value


def summary(err: DataValidationError) -> list[tuple[str, str, list[int], int]]:
    return [(p.column, p.rule, list(p.rows), p.count) for p in err.problems]


def only_problem(err: DataValidationError) -> Problem:
    assert len(err.problems) == 1, summary(err)
    return err.problems[0]


def assert_no_cell_twice(err: DataValidationError) -> None:
    """No (column, row) pair is named by two problems (all rows must be shown, so small batches)."""
    seen: dict[tuple[str, int], str] = {}
    for p in err.problems:
        assert p.count == len(p.rows), "batch too big for this check"
        for row in p.rows:
            assert (p.column, row) not in seen, f"{p.column} row {row}: {seen[(p.column, row)]} and {p.rule}"
            seen[(p.column, row)] = p.rule


def same_bits(a: FloatArray, b: FloatArray) -> None:
    """Equal to the bit, with NaN equal to NaN wherever either has one."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype == np.float64
    assert a.shape == b.shape
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    np.testing.assert_array_equal(nan_a, nan_b)
    np.testing.assert_array_equal(a[~nan_a].view(np.uint64), b[~nan_b].view(np.uint64))


def small_spec(features: list[dict[str, Any]], key: str | None = "id") -> dict[str, Any]:
    return {
        "format": portable.FORMAT,
        "key": key,
        "features": features,
        "constants": {},
        "derived": [],
        "order": [f["name"] for f in features],
    }


def num(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "float", "missing": "error", "fill_value": None, **extra}


def cat(name: str, categories: list[str], **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"name": name, "type": "categorical", "missing": "error", "fill_value": None}
    item.update({"categories": categories, "strict": True, **extra})
    return item


def synthetic_columns(rows_per_day: int = 300) -> dict[str, np.ndarray]:
    frame = generate_stream(StreamConfig(rows_per_day=rows_per_day), 2)
    names = ["order_id", *DEMO_NUMERIC, "region"]
    return {n: frame[n].to_numpy() for n in names}


# -- valid requests in each shape --------------------------------------------------------------


def test_records_give_the_values_sent(demo: InputContract, demo_spec: dict[str, Any]) -> None:
    recs = [record(), record(order_id=18, distance_km=0.5, items=7, region="west", temperature_c=-3)]
    inputs = demo.from_records(recs)
    assert inputs.rows == 2
    categories = next(f["categories"] for f in demo_spec["features"] if f["name"] == "region")
    for name in DEMO_NUMERIC:
        assert inputs.values[name].dtype == np.float64
        assert inputs.values[name].tolist() == [float(r[name]) for r in recs]
    assert inputs.values["region"].tolist() == [float(categories.index(r["region"])) for r in recs]
    assert set(inputs.values) == {*DEMO_NUMERIC, "region"}
    assert inputs.keys == ["17", "18"]


def test_a_single_record_is_one_row(demo: InputContract) -> None:
    one = demo.from_records(record(hour=5))
    listed = demo.from_records([record(hour=5)])
    assert one.rows == 1
    assert one.keys == ["17"]
    assert set(one.values) == set(listed.values)
    for name, arr in listed.values.items():
        same_bits(one.values[name], arr)
    assert one.values["hour"].tolist() == [5.0]


def test_the_three_shapes_agree(demo: InputContract) -> None:
    recs = [
        record(),
        record(order_id="A-9", temperature_c=None, courier_rating=None, region="center"),
        record(order_id=None, hour=0, weekday=6, distance_km=100, items=100),
    ]
    got = {name: fn(demo, recs) for name, fn in SHAPES.items()}
    reference = got["records"]
    assert reference.keys == ["17", "A-9", None]
    assert math.isnan(reference.values["temperature_c"][1])
    assert math.isnan(reference.values["courier_rating"][1])
    for name, inputs in got.items():
        assert inputs.rows == 3, name
        assert inputs.keys == reference.keys, name
        assert set(inputs.values) == set(reference.values), name
        for feature, arr in reference.values.items():
            same_bits(inputs.values[feature], arr)


def test_split_columns_may_come_in_any_order_and_with_extras(lenient: InputContract) -> None:
    recs = [record(), record(hour=3, region="east")]
    split = as_split(recs)
    order = list(reversed(split["columns"])) + ["note"]
    payload = {"columns": order, "data": [[r.get(c, "ignored") for c in order] for r in recs]}
    got = lenient.from_split(payload)
    want = lenient.from_records(recs)
    for feature, arr in want.values.items():
        same_bits(got.values[feature], arr)
    assert got.keys == ["17", "17"]
    assert got.ignored == ("note",)


def test_extra_fields_are_ignored_and_named_when_the_feature_set_says_so(lenient: InputContract) -> None:
    inputs = lenient.from_records([record(comment="rush order", region_name="n")])
    assert "comment" not in inputs.values
    assert inputs.values["region"].tolist() == [1.0]
    assert inputs.ignored == ("comment", "region_name")


def test_extra_fields_are_refused_by_default_in_every_shape(shape: Shape, demo: InputContract) -> None:
    with pytest.raises(DataValidationError, match=r"'comment': unexpected column.*extra_columns = 'ignore'"):
        shape(demo, [record(comment="rush order")])
    known = shape(demo, [record(delivery_minutes=30.0, ordered_at="2026-01-01T10:00:00")])
    assert known.ignored == (), "the target and the times of the feature set are not extra"


def test_models_logged_before_the_policy_ignore_extras(demo_spec: dict[str, Any]) -> None:
    old = {k: v for k, v in demo_spec.items() if k not in ("extra_columns", "accepted", "sources")}
    inputs = InputContract(old).from_records([record(comment="x")])
    assert inputs.ignored == ("comment",)


def test_source_names_are_accepted_in_every_shape(shape: Shape, demo_spec: dict[str, Any]) -> None:
    contract = InputContract({**demo_spec, "sources": {"Distance (km)": "distance_km", "Order": "order_id"}})
    base = record()
    renamed = {
        ("Distance (km)" if k == "distance_km" else "Order" if k == "order_id" else k): v
        for k, v in base.items()
    }
    got = shape(contract, [renamed])
    want = shape(contract, [base])
    for feature, arr in want.values.items():
        same_bits(got.values[feature], arr)
    assert got.keys == want.keys == ["17"]


def test_boundaries_are_inclusive(shape: Shape, demo: InputContract) -> None:
    recs = [
        record(distance_km=0, items=1, hour=0, weekday=0, temperature_c=-40, courier_rating=1),
        record(distance_km=100, items=100, hour=23, weekday=6, temperature_c=55, courier_rating=5),
    ]
    inputs = shape(demo, recs)
    assert inputs.values["hour"].tolist() == [0.0, 23.0]
    assert inputs.values["temperature_c"].tolist() == [-40.0, 55.0]


def test_whole_floats_are_accepted_for_integer_features(shape: Shape, demo: InputContract) -> None:
    inputs = shape(demo, [record(items=3.0, hour=-0.0)])
    assert inputs.values["items"].tolist() == [3.0]


def test_null_is_allowed_where_missing_is_native_or_constant(
    shape: Shape, demo: InputContract, demo_spec: dict[str, Any]
) -> None:
    inputs = shape(demo, [record(temperature_c=None, courier_rating=None), record()])
    assert math.isnan(inputs.values["temperature_c"][0])
    assert math.isnan(inputs.values["courier_rating"][0])
    matrix = portable.assemble(demo_spec, inputs.values, inputs.rows)
    order = demo_spec["order"]
    assert math.isnan(matrix[0, order.index("temperature_c")])
    assert matrix[0, order.index("courier_rating")] == 4.5  # the declared fill, applied by assemble
    assert matrix[1, order.index("courier_rating")] == DEMO_GOOD["courier_rating"]


def test_numpy_scalars_in_records_are_numbers(demo: InputContract) -> None:
    rec = record(distance_km=np.float64(2.5), items=np.int64(4), hour=np.int32(1), weekday=np.float32(2.0))
    inputs = demo.from_records([rec])
    assert inputs.values["distance_km"].tolist() == [2.5]
    assert inputs.values["items"].tolist() == [4.0]
    assert inputs.values["weekday"].tolist() == [2.0]


# -- from_columns: lists and numpy arrays -------------------------------------------------------


def numpy_demo_columns(n: int = 4) -> dict[str, Any]:
    return {
        "order_id": np.arange(100, 100 + n, dtype=np.int64),
        "distance_km": np.linspace(0.5, 9.5, n),
        "items": np.arange(1, n + 1, dtype=np.int64),
        "hour": np.full(n, 7, dtype=np.int32),
        "weekday": np.arange(n, dtype=np.uint8) % 7,
        "temperature_c": np.array([np.nan, *range(n - 1)], dtype=np.float32),
        "courier_rating": np.array([4.25] * (n - 1) + [np.nan]),
        "region": np.array(["center", "north", "south", "east", "west"] * n, dtype=object)[:n],
    }


def test_numpy_columns_take_the_vectorised_path(demo: InputContract, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = numpy_demo_columns()
    seen: list[tuple[str, bool]] = []
    real = scoring._numeric

    def spy(rule: Any, raw: Any, report: Any) -> Any:
        seen.append((rule.name, isinstance(raw, np.ndarray) and raw.dtype.kind in "fiu"))
        return real(rule, raw, report)

    monkeypatch.setattr(scoring, "_numeric", spy)
    inputs = demo.from_columns(cols)
    assert seen == [(name, True) for name in DEMO_NUMERIC]  # the arrays reach the checks as arrays
    assert inputs.rows == 4
    for name in DEMO_NUMERIC:
        got = inputs.values[name]
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, cols[name].astype(np.float64))
    assert inputs.values["region"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert inputs.keys == ["100", "101", "102", "103"]

    # the same columns as lists give the same values
    listed = demo.from_columns({k: [None if _nan(v) else v for v in v_.tolist()] for k, v_ in cols.items()})
    for name, arr in inputs.values.items():
        same_bits(listed.values[name], arr)


def _nan(v: object) -> bool:
    return isinstance(v, float) and math.isnan(v)


@pytest.mark.parametrize(
    ("column", "array", "rule", "rows", "detail"),
    [
        pytest.param(
            "items", np.array([2.0, 2.5, 3.0, 4.75]), "type", [2, 4], "not a whole number", id="fraction"
        ),
        pytest.param("hour", np.array([0, 24, 23, 99]), "range", [2, 4], "above the maximum 23", id="above"),
        pytest.param(
            "weekday", np.array([-1, 0, 1, 2], dtype=np.int8), "range", [1], "below the minimum 0", id="below"
        ),
        pytest.param(
            "distance_km", np.array([1.0, np.nan, 2.0, np.nan]), "not null", [2, 4], "must be given", id="nan"
        ),
        pytest.param(
            "hour", np.array([True, False, True, True]), "type", [1, 2, 3, 4], "not a number", id="bool"
        ),
    ],
)
def test_numpy_columns_are_checked(
    demo: InputContract, column: str, array: np.ndarray, rule: str, rows: list[int], detail: str
) -> None:
    cols = numpy_demo_columns()
    cols[column] = array
    err = reject(lambda: demo.from_columns(cols))
    problem = only_problem(err)
    assert (problem.column, problem.rule, list(problem.rows), problem.count) == (
        column,
        rule,
        rows,
        len(rows),
    )
    assert detail in problem.detail


def test_numpy_infinity_in_an_unbounded_feature() -> None:
    contract = InputContract(small_spec([num("x"), num("y")]))
    cols = {"x": np.array([1.0, np.inf, -np.inf, 5.0]), "y": np.zeros(4)}
    problem = only_problem(reject(lambda: contract.from_columns(cols)))
    assert (problem.column, problem.rule, list(problem.rows)) == ("x", "finite", [2, 3])


def test_numpy_nan_is_fine_in_a_native_feature(housing: InputContract) -> None:
    cols = housing_columns(3)
    cols["total_bedrooms"] = np.array([np.nan, 3.0, np.nan])
    inputs = housing.from_columns(cols)
    assert np.isnan(inputs.values["total_bedrooms"]).tolist() == [True, False, True]


def test_column_keys_are_text_or_none(demo: InputContract) -> None:
    cols = as_columns([record(), record(), record(), record()])
    cols["order_id"] = [5, None, math.nan, "B7"]
    assert demo.from_columns(cols).keys == ["5", None, None, "B7"]


def test_without_a_key_column_keys_are_none(demo: InputContract, shape: Shape) -> None:
    assert shape(demo, [record(order_id=DROP)]).keys is None


def test_a_spec_without_key_never_returns_keys(shape: Shape) -> None:
    contract = InputContract(small_spec([num("x")], key=None))
    assert shape(contract, [{"x": 1.0, "id": 3}]).keys is None


def test_record_keys(demo: InputContract) -> None:
    recs = [record(order_id=1), record(order_id=DROP), record(order_id=None), record(order_id="x-1")]
    assert demo.from_records(recs).keys == ["1", None, None, "x-1"]


# -- every rule: one problem, right column, rule and 1-based rows -------------------------------

RULES = [
    pytest.param(
        {"distance_km": "3.5"}, "distance_km", "type", "not a number ('3.5', '3.5')", id="string-in-numeric"
    ),
    pytest.param({"items": True}, "items", "type", "not a number (", id="bool-in-numeric"),
    pytest.param({"temperature_c": False}, "temperature_c", "type", "not a number", id="bool-in-native"),
    pytest.param({"hour": [1]}, "hour", "type", "not a number", id="list-in-numeric"),
    pytest.param({"region": 1}, "region", "category", "unknown category (1", id="number-in-categorical"),
    pytest.param({"region": 1.5}, "region", "type", "not text (1.5", id="fraction-in-categorical"),
    pytest.param({"region": True}, "region", "type", "not text", id="bool-in-categorical"),
    pytest.param({"hour": 24}, "hour", "range", "above the maximum 23", id="above-max"),
    pytest.param({"distance_km": -0.5}, "distance_km", "range", "below the minimum 0", id="below-min"),
    pytest.param(
        {"courier_rating": 5.01}, "courier_rating", "range", "above the maximum 5", id="constant-range"
    ),
    pytest.param({"items": 2.5}, "items", "type", "not a whole number", id="fractional-integer"),
    pytest.param({"distance_km": None}, "distance_km", "not null", "must be given", id="null-numeric"),
    pytest.param({"distance_km": math.nan}, "distance_km", "not null", "must be given", id="nan-numeric"),
    pytest.param({"region": None}, "region", "not null", "must be given", id="null-categorical"),
    pytest.param({"region": ""}, "region", "not null", "must be given", id="empty-categorical"),
    pytest.param(
        {"region": "moon"}, "region", "category", "unknown category ('moon', 'moon')", id="unknown-category"
    ),
    pytest.param({"region": "North"}, "region", "category", "allowed: 'center', 'north'", id="case-matters"),
]


@pytest.mark.parametrize(("changes", "column", "rule", "detail"), RULES)
def test_each_rule(
    shape: Shape, demo: InputContract, changes: dict[str, Any], column: str, rule: str, detail: str
) -> None:
    recs = [record(), record(**changes), record(), record(**changes)]
    err = reject(lambda: shape(demo, recs))
    problem = only_problem(err)  # exactly one: a bad cell is never reported twice
    assert (problem.column, problem.rule, list(problem.rows), problem.count) == (column, rule, [2, 4], 2)
    assert detail in problem.detail
    assert problem.detail.startswith("2 row(s): ")
    assert err.code == "MLP-200"
    assert str(err).startswith("req.json rejected, no prediction made: ")
    assert f"column '{column}': {rule}: " in str(err)


def test_infinity_in_an_unbounded_feature_is_one_problem(shape: Shape) -> None:
    contract = InputContract(small_spec([num("x"), num("y", min=0)]))
    recs = [{"x": 1.0, "y": 1.0}, {"x": math.inf, "y": math.inf}, {"x": -math.inf, "y": 2.0}]
    err = reject(lambda: shape(contract, recs))
    assert summary(err) == [("x", "finite", [2, 3], 2), ("y", "finite", [2], 1)]


def test_positive_infinity_in_housing_total_rooms(shape: Shape, housing: InputContract) -> None:
    recs = [housing_record(), housing_record(total_rooms=math.inf)]
    assert summary(reject(lambda: shape(housing, recs))) == [("total_rooms", "finite", [2], 1)]


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinity_in_a_bounded_feature_is_reported_once(
    shape: Shape, demo: InputContract, value: float
) -> None:
    err = reject(lambda: shape(demo, [record(), record(temperature_c=value)]))
    assert summary(err) == [("temperature_c", "finite", [2], 1)]


def test_text_samples_are_quoted(demo: InputContract) -> None:
    err = reject(lambda: demo.from_records([record(distance_km="3.5")]))
    assert "not a number ('3.5')" in err.problems[0].detail


def test_samples_show_non_text_values_unquoted(demo: InputContract) -> None:
    err = reject(lambda: demo.from_records([record(region=1.5, items=True)]))
    details = {p.column: p.detail for p in err.problems}
    assert "not text (1.5" in details["region"]
    assert "not a number (True)" in details["items"]


def test_a_number_too_big_for_a_float_is_one_problem(shape: Shape, demo: InputContract) -> None:
    problem = only_problem(reject(lambda: shape(demo, [record(distance_km=10**400)])))
    assert (problem.column, problem.rule, list(problem.rows)) == ("distance_km", "type", [1])


def test_a_field_absent_from_some_records_only(demo: InputContract) -> None:
    recs = [record(), record(hour=DROP), record(hour=DROP, region=DROP), record(hour=None)]
    err = reject(lambda: demo.from_records(recs))
    assert summary(err) == [
        ("hour", "required column", [2, 3], 2),
        ("hour", "not null", [4], 1),
        ("region", "required column", [3], 1),
    ]
    assert "no such field" in err.problems[0].detail
    assert_no_cell_twice(err)


def test_a_field_absent_from_some_records_of_an_optional_feature(demo: InputContract) -> None:
    err = reject(lambda: demo.from_records([record(), record(temperature_c=DROP)]))
    assert summary(err) == [("temperature_c", "required column", [2], 1)]


# -- missing columns -----------------------------------------------------------------------------


def test_missing_column_with_a_near_miss_hint(shape: Shape, demo: InputContract) -> None:
    recs = [record(distance_km=DROP, distanse_km=3.0)]
    problem = only_problem(reject(lambda: shape(demo, recs)))
    assert problem.column == "distance_km"
    assert problem.rule == "required column"
    assert problem.detail == (
        "missing from the request; add it; the request's 'distanse_km' may be a misspelling of 'distance_km'"
    )
    assert list(problem.rows) == []


def test_missing_column_without_a_near_miss(
    shape: Shape, demo: InputContract, lenient: InputContract
) -> None:
    problem = only_problem(reject(lambda: shape(lenient, [record(distance_km=DROP, colour="red")])))
    assert (problem.column, problem.rule) == ("distance_km", "required column")
    both = reject(lambda: shape(demo, [record(distance_km=DROP, colour="red")])).problems
    assert [(p.column, p.rule) for p in both] == [
        ("distance_km", "required column"),
        ("colour", "unexpected column"),
    ], "refusing extras: the unrelated column is named too"


def test_missing_categorical_column_alone(shape: Shape, demo: InputContract) -> None:
    problem = only_problem(reject(lambda: shape(demo, [record(region=DROP)])))
    assert (problem.column, problem.rule) == ("region", "required column")


def test_several_missing_columns_are_one_problem(shape: Shape, demo: InputContract) -> None:
    recs = [record(weekday=DROP, region=DROP, regoin="north")]
    problem = only_problem(reject(lambda: shape(demo, recs)))
    assert problem.column == "weekday, region"
    assert problem.detail.endswith("add them; the request's 'regoin' may be a misspelling of 'region'")


def test_the_key_column_is_never_offered_as_a_hint(shape: Shape) -> None:
    contract = InputContract(small_spec([num("ids"), num("x")], key="id"))
    problem = only_problem(reject(lambda: shape(contract, [{"id": 1, "x": 2.0}])))
    assert problem.column == "ids"


# -- one error lists every problem ------------------------------------------------------------


def test_one_error_lists_every_problem(shape: Shape, demo: InputContract) -> None:
    recs = [
        record(weekday=DROP, weekdya=1, distance_km="far", hour=24),
        record(weekday=DROP, weekdya=1, items=0),
        record(weekday=DROP, weekdya=1, region="moon", temperature_c=99.5),
        record(weekday=DROP, weekdya=1, courier_rating="x", items=1.5),
        record(weekday=DROP, weekdya=1),
    ]
    err = reject(lambda: shape(demo, recs))
    assert sorted(summary(err)) == sorted(
        [
            ("weekday", "required column", [], 0),
            ("distance_km", "type", [1], 1),
            ("hour", "range", [1], 1),
            ("items", "range", [2], 1),
            ("items", "type", [4], 1),
            ("region", "category", [3], 1),
            ("temperature_c", "range", [3], 1),
            ("courier_rating", "type", [4], 1),
        ]
    )
    assert_no_cell_twice(err)
    message = str(err)
    for p in err.problems:
        assert p.describe() in message


def test_rows_shown_are_capped_but_counted(shape: Shape, demo: InputContract) -> None:
    recs = [record(hour=30 + i) for i in range(12)]
    problem = only_problem(reject(lambda: shape(demo, recs)))
    assert list(problem.rows) == list(range(1, MAX_ROWS_SHOWN + 1))
    assert problem.count == 12
    assert problem.detail.startswith("12 row(s)")
    assert f"(+{12 - MAX_ROWS_SHOWN} more)" in problem.describe()


def test_wrong_types_are_not_also_reported_as_null(shape: Shape, demo: InputContract) -> None:
    recs = [record(distance_km="x", region=3.5), record(distance_km=None, region=None), record()]
    err = reject(lambda: shape(demo, recs))
    assert sorted(summary(err)) == sorted(
        [
            ("distance_km", "type", [1], 1),
            ("distance_km", "not null", [2], 1),
            ("region", "type", [1], 1),
            ("region", "not null", [2], 1),
        ]
    )


def test_source_names_the_request(demo: InputContract) -> None:
    err = reject(lambda: demo.from_records([record(hour=99)], source="POST /predict"))
    assert err.source == "POST /predict"
    assert str(err).startswith("POST /predict rejected, no prediction made")


# -- categorical features (hand-written specs) ------------------------------------------------


def test_categorical_constant_fill(shape: Shape) -> None:
    spec = small_spec([num("x"), cat("c", ["p", "q", "r"], missing="constant", fill_value="q")])
    contract = InputContract(spec)
    recs = [{"x": 1.0, "c": v} for v in (None, math.nan, "", "r", "p")]
    inputs = shape(contract, recs)
    assert inputs.values["c"].tolist() == [1.0, 1.0, 1.0, 2.0, 0.0]


def test_categorical_fill_outside_the_categories_is_nan() -> None:
    spec = small_spec([cat("c", ["p"], missing="constant", fill_value="zz", strict=False)])
    got = InputContract(spec).from_records([{"c": None}, {"c": "p"}]).values["c"]
    assert math.isnan(got[0])
    assert got[1] == 0.0


def test_native_categorical_allows_null() -> None:
    contract = InputContract(small_spec([cat("c", ["p", "q"], missing="native")]))
    got = contract.from_records([{"c": None}, {"c": "q"}, {"c": ""}]).values["c"]
    assert np.isnan(got).tolist() == [True, False, True]
    assert got[1] == 1.0


def test_unknown_category_is_nan_when_not_strict(shape: Shape) -> None:
    contract = InputContract(small_spec([cat("c", ["p", "q"], strict=False)]))
    got = shape(contract, [{"c": "q"}, {"c": "never seen"}, {"c": "p"}]).values["c"]
    assert got[0] == 1.0
    assert math.isnan(got[1])
    assert got[2] == 0.0


def test_unknown_category_is_rejected_when_strict(shape: Shape) -> None:
    contract = InputContract(small_spec([cat("c", ["p", "q"])]))
    problem = only_problem(reject(lambda: shape(contract, [{"c": "q"}, {"c": "s"}, {"c": "t"}])))
    assert (problem.column, problem.rule, list(problem.rows)) == ("c", "category", [2, 3])
    assert "unknown category ('s', 't'); allowed: 'p', 'q'" in problem.detail


def test_categorical_accepts_numpy_strings() -> None:
    contract = InputContract(small_spec([cat("c", ["p", "q"])]))
    got = contract.from_columns({"c": np.array(["q", "p", "q"])}).values["c"]
    assert got.tolist() == [1.0, 0.0, 1.0]


def test_spec_without_numeric_features() -> None:
    contract = InputContract(small_spec([cat("c", ["p", "q"])]))
    for fn in SHAPES.values():
        assert fn(contract, [{"c": "q", "id": 4}]).values["c"].tolist() == [1.0]


@pytest.mark.parametrize(
    "name",
    [
        "records",
        "split",
        "columns",
    ],
)
def test_a_missing_categorical_column_is_listed_beside_another_categoricals_error(name: str) -> None:
    contract = InputContract(small_spec([num("x"), cat("a", ["p", "q"]), cat("b", ["u", "v"])]))
    err = reject(lambda: SHAPES[name](contract, [{"x": 1.0, "a": "zz"}]))
    assert sorted(summary(err)) == [("a", "category", [1], 1), ("b", "required column", [], 0)]


# -- shape errors ------------------------------------------------------------------------------


def shape_problem(call: Callable[[], object]) -> str:
    problem = only_problem(reject(call))
    assert (problem.column, problem.rule) == ("*", "shape")
    return problem.detail


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ("abc", "got a string"),
        (5, "got a number"),
        (None, "got null"),
        (True, "got a boolean"),
        ((), "got tuple"),
    ],
)
def test_records_must_be_a_list(demo: InputContract, payload: object, words: str) -> None:
    assert words in shape_problem(lambda: demo.from_records(payload))


def test_records_must_not_be_empty(demo: InputContract) -> None:
    assert "no records" in shape_problem(lambda: demo.from_records([]))


def test_every_record_must_be_an_object(demo: InputContract) -> None:
    err = reject(lambda: demo.from_records([record(), 5, record(), "x", None]))
    assert summary(err) == [("*", "record", [2, 4, 5], 3)]


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ([["a"]], "must be an object"),
        ({"data": [[1]]}, "columns must be a list"),
        ({"columns": "x", "data": [[1]]}, "columns must be a list"),
        ({"columns": ["x", 1], "data": [[1, 2]]}, "columns must be a list"),
        ({"columns": ["x", "x"], "data": [[1, 2]]}, "names a column twice"),
        ({"columns": ["x"], "data": []}, "non-empty list of rows"),
        ({"columns": ["x"], "data": {"x": 1}}, "non-empty list of rows"),
        ({"columns": ["x"]}, "non-empty list of rows"),
    ],
)
def test_split_shape_errors(demo: InputContract, payload: object, words: str) -> None:
    assert words in shape_problem(lambda: demo.from_split(payload))


def test_split_rows_of_the_wrong_length(demo: InputContract) -> None:
    good = as_split([record()])
    payload = {
        "columns": good["columns"],
        "data": [good["data"][0], [1, 2], good["data"][0], "row", [None] * 9],
    }
    err = reject(lambda: demo.from_split(payload))
    assert summary(err) == [("*", "row", [2, 4, 5], 3)]
    assert "list of 8 values" in err.problems[0].detail


@pytest.mark.parametrize(
    ("columns", "words"),
    [
        ({}, "expected an object"),
        ([[1.0]], "expected an object"),
        ({"x": "abc"}, "column 'x' must be a list"),
        ({"x": b"ab"}, "column 'x' must be a list"),
        ({"x": {"a": 1}}, "column 'x' must be a list"),
        ({"x": 3.0}, "column 'x' must be a list"),
        ({"x": [1.0, 2.0], "y": [1.0, 2.0, 3.0]}, "columns differ in length (x=2, y=3)"),
        ({"x": [], "y": []}, "no rows"),
    ],
)
def test_columns_shape_errors(columns: object, words: str) -> None:
    contract = InputContract(small_spec([num("x"), num("y")]))
    assert words in shape_problem(lambda: contract.from_columns(columns))  # type: ignore[arg-type]


def test_columns_differ_in_length_with_numpy(demo: InputContract) -> None:
    cols = numpy_demo_columns(4)
    cols["hour"] = cols["hour"][:3]
    assert "differ in length" in shape_problem(lambda: demo.from_columns(cols))


# -- fast path and detailed path --------------------------------------------------------------


def synthetic_records(n_per_day: int = 150) -> list[dict[str, Any]]:
    cols = synthetic_columns(n_per_day)
    out = []
    for i in range(len(cols["order_id"])):
        rec: dict[str, Any] = {"order_id": int(cols["order_id"][i]), "region": str(cols["region"][i])}
        for name in DEMO_NUMERIC:
            v = float(cols[name][i])
            rec[name] = None if math.isnan(v) and i % 2 else v  # both None and NaN for missing
        out.append(rec)
    return out


def test_fast_and_detailed_paths_give_identical_values(
    demo: InputContract, monkeypatch: pytest.MonkeyPatch
) -> None:
    recs = synthetic_records()
    assert any(r["temperature_c"] is None for r in recs)
    assert any(isinstance(r["courier_rating"], float) and math.isnan(r["courier_rating"]) for r in recs)
    calls: list[str] = []
    real = scoring._numeric

    def spy(rule: Any, raw: Any, report: Any) -> Any:
        calls.append(rule.name)
        return real(rule, raw, report)

    monkeypatch.setattr(scoring, "_numeric", spy)
    fast = demo.from_records(recs)
    assert calls == []  # plain numbers: the vectorised check accepted the whole block

    # numpy scalars are not plain int/float: the same data goes through the per-column checks
    slow_recs = [{k: np.float64(v) if isinstance(v, float) else v for k, v in r.items()} for r in recs]
    slow = demo.from_records(slow_recs)
    assert sorted(calls) == sorted(DEMO_NUMERIC)
    assert fast.keys == slow.keys
    for name in fast.values:
        same_bits(fast.values[name], slow.values[name])

    calls.clear()
    split = demo.from_split(as_split(recs))
    assert calls == []
    for name in fast.values:
        same_bits(split.values[name], fast.values[name])


@pytest.fixture(scope="module")
def valid_matrix() -> np.ndarray:
    cols = synthetic_columns(100)
    return np.column_stack([cols[n].astype(np.float64) for n in DEMO_NUMERIC])


def test_clean_accepts_valid_data_with_nan_in_optional_features(
    demo: InputContract, valid_matrix: np.ndarray
) -> None:
    m = valid_matrix.copy()
    assert np.isnan(m[:, 4]).any()  # temperature_c gaps
    assert np.isnan(m[:, 5]).any()  # courier_rating gaps
    assert demo._clean(m)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("distance_km", math.nan),
        ("distance_km", math.inf),
        ("temperature_c", math.inf),
        ("temperature_c", -math.inf),
        ("distance_km", -1e-9),
        ("hour", 23.5),
        ("items", 1.5),
        ("items", 101.0),
        ("courier_rating", 0.99),
    ],
)
def test_clean_rejects_each_broken_rule(
    demo: InputContract, valid_matrix: np.ndarray, column: str, value: float
) -> None:
    m = valid_matrix.copy()
    m[7, DEMO_NUMERIC.index(column)] = value
    assert not demo._clean(m)


def test_clean_rejects_a_fraction_beside_an_allowed_nan(
    demo: InputContract, valid_matrix: np.ndarray
) -> None:
    m = valid_matrix.copy()
    m[3, DEMO_NUMERIC.index("temperature_c")] = math.nan
    m[9, DEMO_NUMERIC.index("items")] = 2.5
    assert not demo._clean(m)


def test_clean_agrees_with_the_detailed_checks(demo: InputContract, valid_matrix: np.ndarray) -> None:
    """Random damage: the vectorised verdict equals the per-column verdict, matrix by matrix."""
    rng = np.random.default_rng(11)
    damage = [math.nan, math.inf, -math.inf, -50.0, 1e6, 0.5, 2.5, 23.5, 6.0, 7.0, 0.0, 1.0]
    region = ["north"] * 20
    verdicts = set()
    for _ in range(300):
        m = valid_matrix[rng.choice(len(valid_matrix), 20, replace=False)].copy()
        for _ in range(rng.integers(0, 3)):
            m[rng.integers(20), rng.integers(m.shape[1])] = damage[rng.integers(len(damage))]
        fast = demo._clean(m)
        cols: dict[str, Any] = {name: m[:, j].copy() for j, name in enumerate(DEMO_NUMERIC)}
        cols["region"] = region
        try:
            demo.from_columns(cols)
            detailed = True
        except DataValidationError:
            detailed = False
        assert fast == detailed, m
        rec_ok = True
        try:
            demo.from_records(
                [
                    {**{n: float(v) for n, v in zip(DEMO_NUMERIC, row, strict=True)}, "region": "east"}
                    for row in m
                ]
            )
        except DataValidationError:
            rec_ok = False
        assert rec_ok == detailed
        verdicts.add(fast)
    assert verdicts == {True, False}


# -- equivalence with the portable matrix builder -----------------------------------------------


def test_assemble_of_validated_values_equals_build_matrix(
    demo: InputContract, demo_spec: dict[str, Any]
) -> None:
    cols = synthetic_columns(300)
    n = len(cols["order_id"])
    assert n == 600
    assert np.isnan(cols["temperature_c"]).any()
    assert np.isnan(cols["courier_rating"]).any()
    inputs = demo.from_columns(cols)
    assert inputs.rows == n
    assert inputs.keys == [str(k) for k in cols["order_id"]]
    got = portable.assemble(demo_spec, inputs.values, n)
    want = portable.build_matrix(demo_spec, cols)
    assert got.shape == (n, len(demo_spec["order"]))
    same_bits(got, want)
    rating = demo_spec["order"].index("courier_rating")
    assert (got[np.isnan(cols["courier_rating"]), rating] == 4.5).all()

    # the row-shaped requests carry the same data to the same matrix
    recs = [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in zip(cols, row, strict=True)}
        for row in zip(*cols.values(), strict=True)
    ]
    same_bits(portable.assemble(demo_spec, demo.from_records(recs).values, n), want)
    same_bits(portable.assemble(demo_spec, demo.from_split(as_split(recs)).values, n), want)


def housing_columns(n: int, seed: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    bedrooms = rng.uniform(1, 500, n)
    bedrooms[rng.random(n) < 0.2] = np.nan
    return {
        "block_id": np.arange(n),
        "longitude": rng.uniform(-125, -114, n),
        "latitude": rng.uniform(32, 42.5, n),
        "housing_median_age": rng.integers(0, 100, n).astype(float),
        "total_rooms": rng.uniform(0, 5000, n),
        "total_bedrooms": bedrooms,
        "population": rng.uniform(0, 3000, n),
        "households": rng.uniform(0, 1000, n),
        "median_income": rng.uniform(0, 15, n),
        "ocean_proximity": rng.choice(["<1H OCEAN", "INLAND", "NEAR OCEAN", "NEAR BAY", "ISLAND"], n),
    }


def housing_record(**changes: Any) -> dict[str, Any]:
    cols = housing_columns(1)
    rec = {k: (v[0].item() if isinstance(v[0], np.generic) else v[0]) for k, v in cols.items()}
    rec["total_bedrooms"] = 100.0
    rec.update(changes)
    return rec


def test_housing_assemble_equals_build_matrix(housing: InputContract, housing_spec: dict[str, Any]) -> None:
    cols = housing_columns(400)
    cols["households"][:3] = 0.0  # derived divisions by zero become NaN on both sides
    inputs = housing.from_columns(cols)
    got = portable.assemble(housing_spec, inputs.values, 400)
    same_bits(got, portable.build_matrix(housing_spec, cols))
    assert np.isnan(got[:3, housing_spec["order"].index("rooms_per_household")]).all()
