"""Files in and out of ``mlpipeline predict``: format detection, reading requests, writing predictions."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpipeline.errors import DataValidationError
from mlpipeline.featuresets import portable
from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featuresets.features import feature_spec
from mlpipeline.serving.batch_io import detect_format, read_requests, render_predictions
from mlpipeline.serving.predictor import Prediction
from mlpipeline.serving.scoring import InputContract

DEMO_HEADER = "order_id,distance_km,items,hour,weekday,temperature_c,courier_rating,region"


@pytest.fixture(scope="module")
def demo_spec() -> dict[str, Any]:
    return feature_spec(load_definition("demo"))


@pytest.fixture(scope="module")
def code_spec() -> dict[str, Any]:
    """A categorical whose categories look like numbers, and a text key."""
    features = [
        {"name": "x", "type": "float", "missing": "native", "fill_value": None, "min": None, "max": None},
        {"name": "code", "type": "categorical", "missing": "error", "fill_value": None}
        | {"categories": ["1", "01", "10"], "strict": True},
    ]
    return {
        "format": portable.FORMAT,
        "key": "id",
        "features": features,
        "constants": {},
        "derived": [],
        "order": ["x", "code"],
    }


def reject(call: Callable[[], object]) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        call()
    return info.value


def format_problem(call: Callable[[], object]) -> tuple[str, tuple[int, ...]]:
    err = reject(call)
    assert len(err.problems) == 1, err.problems
    problem = err.problems[0]
    assert (problem.column, problem.rule) == ("*", "format")
    assert str(err).startswith("in.dat rejected, no prediction made")
    return problem.detail, tuple(problem.rows)


def read(data: bytes, fmt: str, spec: dict[str, Any]) -> dict[str, Any]:
    return read_requests(data, fmt, spec, source="in.dat")  # type: ignore[arg-type]


# -- detect_format -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "want"),
    [
        ("requests.csv", b'{"a": 1}', "csv"),
        ("REQUESTS.CSV", b"[", "csv"),
        ("notes.txt", b"a,b", "csv"),
        ("notes.txt", b"[{}]", "json"),
        ("requests.json", b"a,b\n1,2", "json"),
        ("requests.jsonl", b"", "json"),
        ("dir.v2/requests.NDJSON", b"a,b", "json"),
        ("-", b'{"a": 1}\n', "json"),
        ("-", b"  \n\t[{}]", "json"),
        ("-", b"a,b\n1,2\n", "csv"),
        ("-", b"", "csv"),
        ("requests.parquet", b"[", "json"),
        ("json", b"a,b", "csv"),  # the name must end with the suffix, not merely contain it
    ],
)
def test_detect_format(name: str, data: bytes, want: str) -> None:
    assert detect_format(name, data) == want


def test_detect_format_sees_json_behind_a_byte_order_mark() -> None:
    assert detect_format("-", b'\xef\xbb\xbf{"a": 1}\n') == "json"


# -- CSV -----------------------------------------------------------------------------------------


def test_csv_columns_numbers_text_and_empty_cells(demo_spec: dict[str, Any]) -> None:
    data = (
        f"{DEMO_HEADER}\n007,3.25,2,12,3,,4.1,north\n8,0.5,1,0,6,-3.5,,\n,1e-3,3,23,0,10,5,west\n"
    ).encode()
    cols = read(data, "csv", demo_spec)
    assert list(cols) == DEMO_HEADER.split(",")
    assert cols["order_id"] == ["007", "8", None]  # the key stays text: leading zeros survive
    assert cols["region"] == ["north", None, "west"]
    for name in ("distance_km", "items", "temperature_c", "courier_rating"):
        assert isinstance(cols[name], np.ndarray)
        assert cols[name].dtype == np.float64
    assert cols["distance_km"].tolist() == [3.25, 0.5, 0.001]
    assert cols["items"].tolist() == [2.0, 1.0, 3.0]
    np.testing.assert_array_equal(cols["temperature_c"], [np.nan, -3.5, 10.0])
    np.testing.assert_array_equal(cols["courier_rating"], [4.1, np.nan, 5.0])


def test_csv_feeds_the_input_contract(demo_spec: dict[str, Any]) -> None:
    data = f"{DEMO_HEADER}\n007,3.25,2,12,3,,,north\n8,0.5,1,0,6,-3.5,4.75,west\n".encode()
    inputs = InputContract(demo_spec).from_columns(read(data, "csv", demo_spec))
    assert inputs.keys == ["007", "8"]
    assert inputs.values["region"].tolist() == [1.0, 4.0]
    assert math.isnan(inputs.values["temperature_c"][0])
    assert inputs.values["courier_rating"][1] == 4.75


def test_csv_empty_required_cells_are_reported_by_row(demo_spec: dict[str, Any]) -> None:
    data = f"{DEMO_HEADER}\n1,3.25,2,12,3,,,north\n2,,1,0,6,1,,\n3,2,1,0,6,1,,south\n".encode()
    err = reject(lambda: InputContract(demo_spec).from_columns(read(data, "csv", demo_spec)))
    got = sorted((p.column, p.rule, list(p.rows)) for p in err.problems)
    assert got == [("distance_km", "not null", [2]), ("region", "not null", [2])]


def test_categorical_and_key_columns_are_text_even_when_they_look_numeric(code_spec: dict[str, Any]) -> None:
    cols = read(b"id,code,x\n1,01,2\n002,1,3\n3.0,10,\n", "csv", code_spec)
    assert cols["id"] == ["1", "002", "3.0"]
    assert cols["code"] == ["01", "1", "10"]
    np.testing.assert_array_equal(cols["x"], [2.0, 3.0, np.nan])
    inputs = InputContract(code_spec).from_columns(cols)
    assert inputs.values["code"].tolist() == [1.0, 0.0, 2.0]
    assert inputs.keys == ["1", "002", "3.0"]


def test_csv_quoting_and_spaces_after_commas(code_spec: dict[str, Any]) -> None:
    cols = read(b'id, code, x\n"a,1", 10, 1.5\n"say ""hi""",1,-2\n', "csv", code_spec)
    assert list(cols) == ["id", "code", "x"]
    assert cols["id"] == ["a,1", 'say "hi"']
    assert cols["code"] == ["10", "1"]
    assert cols["x"].tolist() == [1.5, -2.0]


def test_csv_floats_are_read_exactly(code_spec: dict[str, Any]) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=3000) * 10.0 ** rng.integers(-12, 12, 3000)
    x[:3] = [0.1 + 0.2, 5e-324, 1.7976931348623157e308]
    text = "x,code\n" + "".join(f"{float(v)!r},1\n" for v in x)
    got = read(text.encode(), "csv", code_spec)["x"]
    np.testing.assert_array_equal(got.view(np.uint64), x.view(np.uint64))


def test_csv_with_a_byte_order_mark(code_spec: dict[str, Any]) -> None:
    cols = read(b"\xef\xbb\xbfid,x,code\nk,1,1\n", "csv", code_spec)
    assert list(cols) == ["id", "x", "code"]
    assert cols["id"] == ["k"]


def test_a_csv_header_without_rows_gives_empty_columns(code_spec: dict[str, Any]) -> None:
    cols = read(b"id,x,code\n", "csv", code_spec)
    assert list(cols) == ["id", "x", "code"]
    assert all(len(v) == 0 for v in cols.values())
    err = reject(lambda: InputContract(code_spec).from_columns(cols))
    assert "no rows" in err.problems[0].detail


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize(
    ("data", "byte"),
    [(b"x,code\n\xff,1\n", 7), (b"x,code\n1,caf\xe9\n", 12), (b"\x80", 0)],
)
def test_bytes_that_are_not_utf8(code_spec: dict[str, Any], fmt: str, data: bytes, byte: int) -> None:
    detail, _ = format_problem(lambda: read(data, fmt, code_spec))
    assert f"not UTF-8 text (byte {byte})" in detail
    assert "save the file as UTF-8" in detail


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("data", [b"", b"   ", b"\n\n \t\n", b"\xef\xbb\xbf"])
def test_empty_input(code_spec: dict[str, Any], fmt: str, data: bytes) -> None:
    detail, _ = format_problem(lambda: read(data, fmt, code_spec))
    assert "the input is empty" in detail


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_a_header_separated_by_something_else(code_spec: dict[str, Any], sep: str) -> None:
    data = sep.join(["id", "x", "code"]) + "\n" + sep.join(["a", "1.5", "1"]) + "\n"
    detail, _ = format_problem(lambda: read(data.encode(), "csv", code_spec))
    assert "separated by something other than commas" in detail


def test_an_unreadable_csv(code_spec: dict[str, Any]) -> None:
    detail, _ = format_problem(lambda: read(b"x,code\n1,1\n2,1,3,4\n", "csv", code_spec))
    assert detail.startswith("not a readable CSV file: ")
    assert "\n" not in detail


@pytest.mark.parametrize("data", [b"x,y\n1,2,\n3,4,\n", b"x,y\n1,2,3\n", b"x,y\n1,2,3\n4,5\n"])
def test_extra_fields_never_shift_values_into_the_wrong_column(data: bytes) -> None:
    spec = {
        "format": portable.FORMAT,
        "features": [{"name": "x", "type": "float"}, {"name": "y", "type": "float"}],
    }
    try:
        cols = read(data, "csv", spec)
    except DataValidationError:
        return  # rejecting the file is fine; shifting its values is not
    assert cols["x"][0] == 1.0
    assert cols["y"][0] == 2.0


def test_one_bad_number_in_a_csv_column_is_reported_on_its_row(code_spec: dict[str, Any]) -> None:
    cols = read(b"id,x,code\na,1.5,1\nb,abc,1\nc,2.5,1\nd,,1\n", "csv", code_spec)
    assert cols["x"] == [1.5, "abc", 2.5, None]
    err = reject(lambda: InputContract(code_spec).from_columns(cols))
    assert [(p.column, p.rule, list(p.rows)) for p in err.problems] == [("x", "type", [2])]
    assert "'abc'" in err.problems[0].detail


def test_numbers_beside_text_in_a_column_are_read_exactly(code_spec: dict[str, Any]) -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=2000) * 10.0 ** rng.integers(-12, 12, 2000)
    text = "x,code\n" + "".join(f"{float(v)!r},1\n" for v in x) + "n/a?,1\n"
    got = read(text.encode(), "csv", code_spec)["x"]
    assert got[-1] == "n/a?"
    np.testing.assert_array_equal(np.array(got[:-1], dtype=np.float64).view(np.uint64), x.view(np.uint64))


# -- JSON ----------------------------------------------------------------------------------------


def test_json_lines(code_spec: dict[str, Any]) -> None:
    data = b'{"id": "a", "x": 1, "code": "10"}\n\n  {"x": 2.5, "id": 7}\r\n{"code": null, "extra": [1]}\n'
    cols = read(data, "json", code_spec)
    assert list(cols) == ["id", "x", "code", "extra"]  # first-seen order
    assert cols["id"] == ["a", 7, None]
    assert cols["x"] == [1, 2.5, None]
    assert cols["code"] == ["10", None, None]
    assert cols["extra"] == [None, None, [1]]


def test_json_array(code_spec: dict[str, Any]) -> None:
    data = b'\n  [{"id": "a", "x": 0.1, "code": "1"},\n   {"id": "b", "code": "01"}]\n'
    cols = read(data, "json", code_spec)
    assert cols == {"id": ["a", "b"], "x": [0.1, None], "code": ["1", "01"]}


def test_json_with_a_byte_order_mark(code_spec: dict[str, Any]) -> None:
    assert read(b'\xef\xbb\xbf{"x": 1}\n', "json", code_spec) == {"x": [1]}


def test_a_bad_json_line_is_named(code_spec: dict[str, Any]) -> None:
    data = b'{"x": 1}\n\n{"x": 2,}\n{"x": 3}\n'
    detail, _ = format_problem(lambda: read(data, "json", code_spec))
    assert detail.startswith("line 3 is not valid JSON")
    assert "one object per line" in detail


def test_pretty_printed_json_object_is_rejected_with_the_line(code_spec: dict[str, Any]) -> None:
    detail, _ = format_problem(lambda: read(b'{\n  "x": 1\n}\n', "json", code_spec))
    assert detail.startswith("line 1 is not valid JSON")


@pytest.mark.parametrize("data", [b'[{"x": 1},', b"[" * 200_000, b'[{"x": 1}] trailing'])
def test_a_broken_json_array(code_spec: dict[str, Any], data: bytes) -> None:
    detail, _ = format_problem(lambda: read(data, "json", code_spec))
    assert detail.startswith("not valid JSON")


@pytest.mark.parametrize(
    ("data", "rows"),
    [
        (b'[{"x": 1}, 2, "s", {"x": 3}, null]', (2, 3, 5)),
        (b'{"x": 1}\n[1, 2]\n5\n{"x": 2}\n', (2, 3)),
        (b"[[1], [2], [3], [4], [5], [6], [7]]", (1, 2, 3, 4, 5)),
    ],
)
def test_records_that_are_not_objects(code_spec: dict[str, Any], data: bytes, rows: tuple[int, ...]) -> None:
    err = reject(lambda: read(data, "json", code_spec))
    problem = err.problems[0]
    assert problem.detail == "each record must be a JSON object"
    assert tuple(problem.rows) == rows


@pytest.mark.parametrize("data", [b"[]", b" [ ] "])
def test_no_records(code_spec: dict[str, Any], data: bytes) -> None:
    detail, _ = format_problem(lambda: read(data, "json", code_spec))
    assert "no records found" in detail


def test_json_feeds_the_input_contract(demo_spec: dict[str, Any]) -> None:
    good = {
        "order_id": 5,
        "distance_km": 1.5,
        "items": 1,
        "hour": 2,
        "weekday": 3,
        "temperature_c": None,
        "courier_rating": 4.0,
        "region": "south",
    }
    missing = {k: v for k, v in good.items() if k != "hour"}
    data = "\n".join(json.dumps(r) for r in (good, missing, good)).encode()
    contract = InputContract(demo_spec)
    err = reject(lambda: contract.from_columns(read(data, "json", demo_spec)))
    assert [(p.column, p.rule, list(p.rows)) for p in err.problems] == [("hour", "not null", [2])]
    inputs = contract.from_columns(read(json.dumps(good).encode(), "json", demo_spec))
    assert inputs.keys == ["5"]
    assert inputs.values["region"].tolist() == [2.0]


# -- render_predictions --------------------------------------------------------------------------

FEATURES = ("distance_km", "items", "region")


def prediction(*, keys: bool = True, contributions: bool = True) -> Prediction:
    rng = np.random.default_rng(8)
    values = np.array([0.1 + 0.2, -1.5e-300, 123456.789, 1 / 3, 0.0, 1e22])
    contrib = rng.normal(size=(len(values), len(FEATURES) + 1)) * 10.0 ** rng.integers(-5, 5, (6, 4))
    return Prediction(
        values=values,
        model_name="demo",
        version="12",
        keys=["a", None, "x,y", 'q"uote', "007", "\u00e9t\u00e9"] if keys else None,
        contributions=contrib if contributions else None,
        feature_names=FEATURES,
    )


def parse_csv(text: str) -> list[list[str]]:
    assert text.endswith("\n")
    return list(csv.reader(io.StringIO(text)))


def test_csv_round_trip() -> None:
    result = prediction()
    text = render_predictions(result, "csv", explain=False)
    table = parse_csv(text)
    assert table[0] == ["key", "prediction", "model_version"]
    assert len(table) == 1 + len(result.values)
    assert result.keys is not None
    for i, line in enumerate(table[1:]):
        key, value, version = line
        assert key == (result.keys[i] or "")
        assert float(value) == result.values[i]
        assert version == "12"
    # and a dataframe reader sees the same numbers
    frame = pd.read_csv(io.StringIO(text), dtype={"key": "string", "model_version": "string"})
    np.testing.assert_array_equal(frame["prediction"].to_numpy(), result.values)


def test_csv_with_explanations_round_trips() -> None:
    result = prediction()
    assert result.contributions is not None
    table = parse_csv(render_predictions(result, "csv", explain=True))
    assert table[0] == [
        "key",
        "prediction",
        "model_version",
        "base_value",
        "contribution_distance_km",
        "contribution_items",
        "contribution_region",
        "outside_training",
    ]
    for i, line in enumerate(table[1:]):
        assert float(line[1]) == result.values[i]
        assert float(line[3]) == result.contributions[i, -1]
        assert [float(v) for v in line[4:-1]] == result.contributions[i, :-1].tolist()
        assert line[-1] == ""  # no input outside the training ranges


def test_csv_without_keys() -> None:
    result = prediction(keys=False)
    table = parse_csv(render_predictions(result, "csv", explain=True))
    assert table[0][:3] == ["prediction", "model_version", "base_value"]
    assert [float(line[0]) for line in table[1:]] == result.values.tolist()


def test_csv_explain_is_off_unless_asked_and_needs_contributions() -> None:
    plain = render_predictions(prediction(), "csv", explain=False)
    assert "base_value" not in plain
    assert render_predictions(prediction(contributions=False), "csv", explain=True) == plain


def test_json_lines_round_trip() -> None:
    result = prediction()
    text = render_predictions(result, "json", explain=False)
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == len(result.values)
    assert result.keys is not None
    for i, line in enumerate(lines):
        row = json.loads(line)
        assert list(row) == ["key", "prediction", "model_version"]
        assert row["key"] == result.keys[i]
        assert row["prediction"] == result.values[i]
        assert type(row["prediction"]) is float
        assert row["model_version"] == "12"


def test_json_with_explanations_round_trips() -> None:
    result = prediction(keys=False)
    assert result.contributions is not None
    lines = render_predictions(result, "json", explain=True).splitlines()
    for i, line in enumerate(lines):
        row = json.loads(line)
        assert "key" not in row
        assert row["prediction"] == result.values[i]
        assert row["base_value"] == result.contributions[i, -1]
        assert list(row["contributions"]) == list(FEATURES)
        assert list(row["contributions"].values()) == result.contributions[i, :-1].tolist()


def test_json_explain_is_off_unless_asked() -> None:
    row = json.loads(render_predictions(prediction(), "json", explain=False).splitlines()[0])
    assert "contributions" not in row
    assert "base_value" not in row
    row = json.loads(
        render_predictions(prediction(contributions=False), "json", explain=True).splitlines()[0]
    )
    assert "contributions" not in row


def test_a_single_prediction() -> None:
    one = Prediction(values=np.array([42.5]), model_name="demo", version="3")
    assert render_predictions(one, "csv", explain=False) == "prediction,model_version\n42.5,3\n"
    assert json.loads(render_predictions(one, "json", explain=False)) == {
        "prediction": 42.5,
        "model_version": "3",
    }
