"""Bad request bodies against the real FastAPI app on one client: each gets the exact 4xx with a
message naming the problem, changes nothing, and the next good request gets the same prediction.

The kinds here complement tests/serving/test_api.py: nesting in keys and values, bodies too
large with and without a declared length, SQL in names and values, NaN and infinities written
as JSON literals, duplicate keys, other encodings and oversized numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlpipeline.featurestore.sql import SqlFeatureStore, open_store
from mlpipeline.registry.model_cache import ModelCache
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.tracking import Tracker
from mlpipeline.serving.api import MEDIA_TYPE, MLFLOW_CODES, TOO_LARGE, UNREADABLE, create_app
from mlpipeline.serving.prediction_log import PredictionLog
from mlpipeline.serving.predictor import Predictor
from tests.badinput.corpus import HttpCase, copy_home, snapshot
from tests.trained_home import Trained

pytestmark = pytest.mark.slow

MAX_BODY = 20_000
JSON = {"content-type": "application/json"}
SQL = "'; DROP TABLE demo_deliveries; --"
#: Every good request is logged; the log is the one table whose content may change between cases.
LOGGED = ("mlp_prediction_log",)


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def raw_record(row: dict[str, Any], **literals: str) -> bytes:
    """A one-record body with some values written as raw JSON text (NaN, Infinity, 1e999…)."""
    parts = [f"{json.dumps(k)}: {literals.get(k, json.dumps(v))}" for k, v in row.items()]
    return ("[{" + ", ".join(parts) + "}]").encode()


def chunks(data: bytes, size: int = 4_096) -> Iterator[bytes]:
    """A streamed body: no Content-Length, so only the server's count can stop it."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def nested(depth: int) -> Any:
    value: Any = "north"
    for _ in range(depth):
        value = [value]
    return value


CASES = [
    HttpCase(
        "objects-nested-3000-deep",
        lambda row: ("/predict", b'{"":' * 3_000 + b"1" + b"}" * 3_000, JSON),
        ("nested too deeply",),
        400,
    ),
    HttpCase(
        "value-nested-40-deep",
        lambda row: ("/predict", body([dict(row, region=nested(40))]), JSON),
        ("nested deeper than 32 levels",),
        400,
    ),
    HttpCase(
        "object-as-category",
        lambda row: ("/predict", body([dict(row, region={"name": "north"})]), JSON),
        ("region", "not text", "send the category as a JSON string"),
        422,
        columns=("region",),
    ),
    HttpCase(
        "oversized-declared-length",
        lambda row: ("/predict", body([row] * 200), JSON),
        ("larger than 20000 bytes", "smaller batches"),
        413,
    ),
    HttpCase(
        "oversized-streamed",
        lambda row: ("/invocations", chunks(body({"inputs": [row] * 200})), JSON),
        ("larger than 20000 bytes",),
        413,
    ),
    HttpCase(
        "sql-in-a-column-name",
        lambda row: (
            "/predict",
            body([{("distance_km" + SQL if k == "distance_km" else k): v for k, v in row.items()}]),
            JSON,
        ),
        ("distance_km", "missing from the request"),
        422,
        columns=("distance_km",),
    ),
    HttpCase(
        "sql-in-split-column-names",
        lambda row: (
            "/invocations",
            body(
                {
                    "dataframe_split": {
                        "columns": [c + SQL if c == "region" else c for c in row],
                        "data": [[*row.values()]],
                    }
                }
            ),
            JSON,
        ),
        ("region", "missing from the request"),
        422,
        columns=("region",),
    ),
    HttpCase(
        "sql-in-a-number",
        lambda row: ("/predict", body([dict(row, distance_km="1" + SQL)]), JSON),
        ("distance_km", "not a number", "DROP TABLE"),
        422,
        columns=("distance_km",),
    ),
    HttpCase(
        "nan-literal-in-integer",
        lambda row: ("/predict", raw_record(row, items="NaN"), JSON),
        ("items", "missing value"),
        422,
        columns=("items",),
    ),
    HttpCase(
        "infinity-literal-where-missing-allowed",
        lambda row: ("/predict", raw_record(row, temperature_c="-Infinity"), JSON),
        ("temperature_c", "infinite value"),
        422,
        columns=("temperature_c",),
    ),
    HttpCase(
        "exponent-overflows-to-infinity",
        lambda row: ("/explain", raw_record(row, distance_km="1e999"), JSON),
        ("distance_km", "infinite value"),
        422,
        columns=("distance_km",),
    ),
    HttpCase(
        "integer-with-5000-digits",
        lambda row: ("/predict", raw_record(row, items="7" * 5_000), JSON),
        ("number", "too long"),
        400,
    ),
    HttpCase(
        "duplicate-keys-in-a-record",
        lambda row: ("/predict", raw_record(row)[:-2] + b', "distance_km": 99.5}]', JSON),
        ("duplicate key 'distance_km'",),
        400,
    ),
    HttpCase(
        "duplicate-format-key",
        lambda row: (
            "/invocations",
            b'{"inputs": ' + body([row]) + b', "inputs": ' + body([row]) + b"}",
            JSON,
        ),
        ("duplicate key 'inputs'",),
        400,
    ),
    HttpCase(
        "latin1-body",
        lambda row: (
            "/predict",
            json.dumps([dict(row, region="nörth")], ensure_ascii=False).encode("latin-1"),
            JSON,
        ),
        ("not UTF-8",),
        400,
    ),
    HttpCase(
        "utf16-body",
        lambda row: ("/predict", json.dumps([row]).encode("utf-16"), JSON),
        ("not UTF-8",),
        400,
    ),
    HttpCase(
        "truncated-inside-a-string",
        lambda row: ("/predict", body([row])[:-12], JSON),
        ("not valid JSON", "line 1 column"),
        400,
    ),
    HttpCase(
        "huge-text-value",
        lambda row: ("/predict", body([dict(row, region="n" * 15_000)]), JSON),
        ("region", "unknown category", "allowed"),
        422,
        columns=("region",),
    ),
    HttpCase(
        "lone-surrogate-in-category",
        lambda row: ("/predict", raw_record(row, region='"\\ud800"'), JSON),
        ("region", "unknown category"),
        422,
        columns=("region",),
    ),
    HttpCase(
        "json-null",
        lambda row: ("/predict", b"null", JSON),
        ("expected a list of records", "got null"),
        422,
    ),
]


@pytest.fixture(scope="module")
def home(_trained_template: Trained, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return copy_home(_trained_template, tmp_path_factory.mktemp("badinput-http"))


@pytest.fixture(scope="module")
def tracker(home: Trained) -> Tracker:
    return Tracker(home.settings)


@pytest.fixture(scope="module")
def store(home: Trained) -> Iterator[SqlFeatureStore]:
    s = open_store(home.settings)
    yield s
    s.dispose()


@pytest.fixture(scope="module")
def client(home: Trained, store: SqlFeatureStore, tracker: Tracker) -> Iterator[TestClient]:
    """One real app for the whole corpus: a bad body must not spoil it for the next one."""
    predictor = Predictor(
        "demo",
        SqlPointerStore(store),
        ModelCache(home.settings.home / "models", lambda: tracker),
        poll_s=60,
        prediction_log=PredictionLog(store, "demo"),
    )
    app = create_app(predictor, max_body_bytes=MAX_BODY)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def row(home: Trained) -> dict[str, Any]:
    return home.records(1)[0]


@pytest.fixture(scope="module")
def expected(client: TestClient, row: dict[str, Any]) -> list[float]:
    response = client.post("/predict", json=[row])
    assert response.status_code == 200, response.text
    return list(response.json()["predictions"])


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 15
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_body_gets_a_4xx_naming_the_problem_and_serving_goes_on(
    case: HttpCase,
    client: TestClient,
    home: Trained,
    tracker: Tracker,
    row: dict[str, Any],
    expected: list[float],
) -> None:
    before = snapshot(home.settings, tracker, volatile=LOGGED)
    path, content, headers = case.make(row)
    response = client.post(path, content=content, headers=headers)

    assert response.status_code == case.status, response.text[:2_000]
    assert len(response.content) < 4_000, "an error answer stays short whatever the input"
    body = response.json()
    error = body["error"]
    code = case.code or {400: UNREADABLE, 413: TOO_LARGE, 415: MEDIA_TYPE}.get(case.status, "MLP-200")
    assert error["code"] == code
    assert (body["error_code"], body["message"]) == (MLFLOW_CODES[case.status], error["message"])
    for word in case.words:
        assert word in error["message"], (word, error["message"])
    if case.status == 422:
        named = {p["column"] for p in error["problems"]}
        assert all(any(c in n for n in named) for c in case.columns), named

    # The server keeps serving the same model, and nothing changed.
    again = client.post("/predict", json=[row])
    assert again.status_code == 200, again.text
    assert again.json()["predictions"] == expected
    assert snapshot(home.settings, tracker, volatile=LOGGED) == before
