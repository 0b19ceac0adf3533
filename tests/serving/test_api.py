"""The HTTP API in process: formats, every malformed body kind, the API key, health and model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.registry.model_cache import ModelCache
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.tracking import Tracker
from mlpipeline.serving.api import create_app
from mlpipeline.serving.prediction_log import PredictionLog
from mlpipeline.serving.predictor import Predictor
from tests.trained_home import Trained

pytestmark = pytest.mark.slow

KEY = "s3cret-test-key"


def make_client(
    trained: Trained, store: SqlFeatureStore, featureset: str = "demo", **kwargs: Any
) -> TestClient:
    predictor = Predictor(
        featureset,
        SqlPointerStore(store),
        ModelCache(trained.settings.home / "models", lambda: Tracker(trained.settings)),
        poll_s=60,
        prediction_log=PredictionLog(store, featureset),
    )
    return TestClient(create_app(predictor, **kwargs), raise_server_exceptions=False)


@pytest.fixture
def client(trained: Trained, store: SqlFeatureStore) -> Iterator[TestClient]:
    with make_client(trained, store, max_body_bytes=20_000) as c:
        yield c


def test_all_request_formats_agree(client: TestClient, trained: Trained) -> None:
    records = trained.records(3)
    columns = list(records[0])
    by_records = client.post("/predict", json=records)
    assert by_records.status_code == 200, by_records.text
    body = by_records.json()
    assert body["model"] == {"name": "mlpipeline-demo", "version": "1"}
    assert body["keys"] == [str(r["order_id"]) for r in records]
    expected = body["predictions"]
    assert len(expected) == 3
    payloads = [
        {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in records]}},
        {"dataframe_records": records},
        {"inputs": records},
        {"instances": records},
        {"inputs": {c: [r[c] for r in records] for c in columns}},
    ]
    for payload in payloads:
        response = client.post("/invocations", json=payload)
        assert response.status_code == 200, (payload, response.text)
        assert response.json() == {"predictions": expected}
    single = client.post("/predict", json=records[0])
    assert single.json()["predictions"] == expected[:1]


def test_explain(client: TestClient, trained: Trained) -> None:
    response = client.post("/explain", json=trained.records(2))
    assert response.status_code == 200
    body = response.json()
    for prediction, contributions in zip(body["predictions"], body["contributions"], strict=True):
        assert "minutes_per_item" in contributions  # derived features are explained too
        assert body["base_value"] + sum(contributions.values()) == pytest.approx(prediction, abs=1e-9)


def good(trained: Trained) -> dict[str, Any]:
    return trained.records(1)[0]


@pytest.mark.parametrize(
    ("case", "status", "needle"),
    [
        ("empty body", 400, "empty body"),
        ("truncated JSON", 400, "not valid JSON"),
        ("not UTF-8", 400, "not"),
        ("deeply nested", 400, "nested"),
        ("wrong media type", 415, "application/json"),
        ("oversized", 413, "larger than"),
        ("a number", 422, "expected a list of records"),
        ("list of numbers", 422, "must be a JSON object"),
        ("empty list", 422, "no records"),
        ("missing column", 422, "distance_km"),
        ("misspelled column", 422, "the request's 'distance_kms' may be a misspelling of 'distance_km'"),
        ("string for number", 422, "not a number"),
        ("boolean for number", 422, "not a number"),
        ("NaN where required", 422, "missing value"),
        ("infinity", 422, "infinite"),
        ("out of range", 422, "below the minimum"),
        ("fractional integer", 422, "whole number"),
        ("unknown category", 422, "unknown category"),
        ("number for category", 422, "unknown category (3"),
        ("SQL in a value", 422, "unknown category"),
        ("invocations without a format key", 400, "exactly one of the keys"),
        ("invocations with two format keys", 400, "exactly one of the keys"),
        ("split rows of wrong length", 422, "each row must be a list of"),
        ("split columns not names", 400, "list of column names"),
        ("columns of different lengths", 422, "differ in length"),
    ],
)
def test_malformed_bodies_get_a_4xx_naming_the_problem(
    client: TestClient, trained: Trained, case: str, status: int, needle: str
) -> None:
    row = good(trained)
    columns = list(row)
    raw: bytes | None = None
    payload: Any = None
    path = "/predict"
    headers = {"content-type": "application/json"}
    if case == "empty body":
        raw = b""
    elif case == "truncated JSON":
        raw = b'[{"distance_km": 1.0, "items"'
    elif case == "not UTF-8":
        raw = b'[{"region": "\xff\xfe"}]'
    elif case == "deeply nested":
        raw = b"[" * 100 + b"]" * 100
    elif case == "wrong media type":
        raw, headers = b"distance_km\n1.0\n", {"content-type": "text/csv"}
    elif case == "oversized":
        raw = b"[" + b",".join([b'{"distance_km": 1.0}'] * 2000) + b"]"
    elif case == "a number":
        payload = 42
    elif case == "list of numbers":
        payload = [1, 2, 3]
    elif case == "empty list":
        payload = []
    elif case == "missing column":
        payload = [{k: v for k, v in row.items() if k != "distance_km"}]
    elif case == "misspelled column":
        payload = [{("distance_kms" if k == "distance_km" else k): v for k, v in row.items()}]
    elif case == "string for number":
        payload = [dict(row, items="two")]
    elif case == "boolean for number":
        payload = [dict(row, hour=True)]
    elif case == "NaN where required":
        payload = [dict(row, distance_km=float("nan"))]  # json.dumps writes NaN, which JSON parsers accept
    elif case == "infinity":
        payload = [dict(row, distance_km=float("inf"))]
    elif case == "out of range":
        payload = [dict(row, distance_km=-5.0)]
    elif case == "fractional integer":
        payload = [dict(row, items=2.5)]
    elif case == "unknown category":
        payload = [dict(row, region="atlantis")]
    elif case == "number for category":
        payload = [dict(row, region=3)]
    elif case == "SQL in a value":
        payload = [dict(row, region="north'; DROP TABLE demo_deliveries; --")]
    elif case == "invocations without a format key":
        path, payload = "/invocations", {"rows": [row]}
    elif case == "invocations with two format keys":
        path, payload = "/invocations", {"inputs": [row], "dataframe_records": [row]}
    elif case == "split rows of wrong length":
        path = "/invocations"
        payload = {"dataframe_split": {"columns": columns, "data": [[row[c] for c in columns][:-1]]}}
    elif case == "split columns not names":
        path, payload = "/invocations", {"dataframe_split": {"columns": [1, 2], "data": [[1, 2]]}}
    elif case == "columns of different lengths":
        path = "/invocations"
        payload = {"inputs": {c: [row[c]] * (2 if c == "items" else 1) for c in columns}}
    if raw is None:
        import json

        raw = json.dumps(payload).encode()
    response = client.post(path, content=raw, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"].startswith("MLP-")
    assert needle in response.text, response.text
    if status == 422:
        assert error["problems"], "a validation error lists its problems"
    # The server keeps serving afterwards.
    assert client.post("/predict", json=[row]).status_code == 200


def test_mlflow_scoring_protocol_parity(client: TestClient, trained: Trained) -> None:
    """What MLflow's scoring server and its clients do: /ping, /version, CSV and Parquet bodies,
    a single row under any key, empty inputs, and error bodies with error_code and message."""
    import io

    import pandas as pd

    from mlpipeline import __version__

    ping = client.get("/ping")
    assert (ping.status_code, ping.text) == (200, "\n")
    assert client.get("/version").text == __version__
    records = trained.records(3)
    expected = client.post("/predict", json=records).json()["predictions"]
    frame = pd.DataFrame(records)
    as_csv = client.post(
        "/invocations", content=frame.to_csv(index=False), headers={"content-type": "text/csv"}
    )
    assert as_csv.json() == {"predictions": expected}, as_csv.text
    parquet = io.BytesIO()
    frame.to_parquet(parquet, index=False)
    as_parquet = client.post(
        "/invocations", content=parquet.getvalue(), headers={"content-type": "application/vnd.apache.parquet"}
    )
    assert as_parquet.json() == {"predictions": expected}, as_parquet.text
    for key in ("inputs", "instances"):
        one = client.post("/invocations", json={key: records[0]})
        assert one.json() == {"predictions": expected[:1]}, (key, one.text)
    as_object = client.post("/invocations", json={"dataframe_records": records[0]})
    assert as_object.status_code == 400  # as MLflow: records come as a list
    assert "must be a list of records" in as_object.json()["message"]
    columns = list(records[0])
    for empty in (
        {"dataframe_split": {"columns": columns, "data": []}},
        {"dataframe_records": []},
        {"inputs": []},
        {"inputs": {c: [] for c in columns}},
    ):
        answer = client.post("/invocations", json=empty)
        assert (answer.status_code, answer.json()) == (200, {"predictions": []}), (empty, answer.text)
    header_only = client.post(
        "/invocations", content=",".join(columns) + "\n", headers={"content-type": "text/csv"}
    )
    assert header_only.json() == {"predictions": []}, header_only.text

    def error_of(response: Any) -> tuple[int, str, str]:
        body = response.json()
        assert body["message"] == body["error"]["message"]
        return response.status_code, body["error_code"], body["error"]["code"]

    assert error_of(
        client.post("/invocations", content=b"{", headers={"content-type": "application/json"})
    ) == (
        400,
        "BAD_REQUEST",
        "MLP-210",
    )
    assert error_of(client.post("/invocations", json={"rows": records})) == (400, "BAD_REQUEST", "MLP-213")
    assert error_of(client.post("/invocations", json={"inputs": records, "params": {"output": "x"}})) == (
        400,
        "BAD_REQUEST",
        "MLP-213",
    )
    assert error_of(client.post("/invocations", json={"inputs": [dict(records[0], items=-1)]})) == (
        422,
        "INVALID_PARAMETER_VALUE",
        "MLP-200",
    )
    assert error_of(
        client.post("/invocations", content=b"<a/>", headers={"content-type": "application/xml"})
    ) == (
        415,
        "BAD_REQUEST",
        "MLP-211",
    )
    wrong_columns = client.post("/invocations", json={"dataframe_split": {"columns": ["bogus"], "data": []}})
    assert error_of(wrong_columns) == (422, "INVALID_PARAMETER_VALUE", "MLP-200")
    assert "distance_km" in wrong_columns.json()["message"]
    blank_csv = client.post("/invocations", content=b"  \n", headers={"content-type": "text/csv"})
    assert error_of(blank_csv) == (400, "BAD_REQUEST", "MLP-210")
    bad_csv = client.post("/invocations", content=b"a,b\n1,2,3,4\n\xff", headers={"content-type": "text/csv"})
    assert error_of(bad_csv)[0] == 400
    with_nulls = frame.astype({"temperature_c": "Float64"})
    with_nulls.loc[0, "temperature_c"] = pd.NA  # a nullable column, as pandas writes it
    nullable = io.BytesIO()
    with_nulls.to_parquet(nullable, index=False)
    answered = client.post(
        "/invocations",
        content=nullable.getvalue(),
        headers={"content-type": "application/vnd.apache.parquet"},
    )
    assert answered.status_code == 200, answered.text
    bomb = io.BytesIO()  # 40,000 zeros in a few hundred bytes: refused from the file's footer
    pd.DataFrame({"distance_km": [0.0] * 40_000}).to_parquet(bomb, index=False, compression="zstd")
    assert len(bomb.getvalue()) < 20_000
    refused = client.post(
        "/invocations", content=bomb.getvalue(), headers={"content-type": "application/vnd.apache.parquet"}
    )
    assert error_of(refused) == (413, "RESOURCE_EXHAUSTED", "MLP-212")
    not_parquet = client.post(
        "/invocations", content=b"a,b\n1,2\n", headers={"content-type": "application/vnd.apache.parquet"}
    )
    assert error_of(not_parquet) == (400, "BAD_REQUEST", "MLP-210")


def test_api_key_is_required_when_configured(trained: Trained, store: SqlFeatureStore) -> None:
    row = good(trained)
    with make_client(trained, store, api_key=KEY) as c:
        assert c.post("/predict", json=[row]).status_code == 401
        wrong = c.post("/predict", json=[row], headers={"x-api-key": KEY + "x"})
        assert wrong.status_code == 401
        assert KEY not in wrong.text
        assert wrong.json()["error"]["message"] == "missing or invalid API key"
        assert wrong.json()["error_code"] == "UNAUTHENTICATED"
        assert c.post("/predict", json=[row], headers={"x-api-key": KEY}).status_code == 200
        assert (
            c.post(
                "/invocations", json={"inputs": [row]}, headers={"authorization": f"Bearer {KEY}"}
            ).status_code
            == 200
        )
        assert c.get("/model").status_code == 401
        assert c.get("/health").status_code == 200  # open for load balancers


def test_health_and_model(client: TestClient) -> None:
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json()["serving_version"] == "1"
    model = client.get("/model").json()
    assert model["version"] == "1"
    assert len(model["sha256"]) == 64
    assert model["input"]["key"] == "order_id"
    names = [f["name"] for f in model["input"]["features"]]
    assert "region" in names
    assert "distance_km" in names
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/invocations", "/explain", "/health", "/model"} <= set(spec["paths"])


def test_the_api_docs_work_offline_and_describe_the_served_model(client: TestClient) -> None:
    import re

    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    assert urls, page.text
    assert all(u.startswith("/") for u in urls), f"every asset comes from the app itself: {urls}"
    for url in urls:
        if url.startswith("/docs/assets/"):
            assert client.get(url).status_code == 200, url
    document = client.get("/openapi.json").json()
    record = document["components"]["schemas"]["Record"]
    assert record["properties"]["region"]["enum"] == ["center", "north", "south", "east", "west"]
    assert record["properties"]["hour"] == {"type": "integer", "minimum": 0, "maximum": 23}
    assert "anyOf" in record["properties"]["temperature_c"], "a feature that may be missing says so"
    assert {"distance_km", "items", "region"} <= set(record["required"])
    predict = document["paths"]["/predict"]["post"]
    assert {"400", "401", "413", "415", "422", "503"} <= set(predict["responses"])
    example = predict["requestBody"]["content"]["application/json"]["example"]
    assert client.post("/predict", json=example).status_code == 200, "the documented example works"
    invocations = document["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert {"application/json", "text/csv", "application/vnd.apache.parquet"} <= set(invocations)
    answer = client.post("/invocations", json=invocations["application/json"]["example"])
    assert answer.status_code == 200, answer.text


def test_without_a_champion_the_api_says_so(trained: Trained, store: SqlFeatureStore) -> None:
    with make_client(trained, store, featureset="nothing") as c:
        health = c.get("/health")
        assert health.status_code == 503
        response = c.post("/predict", json=[{"a": 1}])
        assert response.status_code == 503
        assert "no production model yet" in response.json()["error"]["message"]
        assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert c.get("/ping").status_code == 503
        empty = c.post("/invocations", json={"dataframe_split": {"columns": ["a"], "data": []}})
        assert empty.status_code == 503, "no model: even an empty request is not answered"


def test_inputs_outside_training_are_served_with_a_warning(client: TestClient, trained: Trained) -> None:
    usual, far = trained.records(2)
    far["distance_km"] = 99.5  # valid (the definition allows up to 100), never seen in training
    body = client.post("/predict", json=[usual, far]).json()
    assert len(body["predictions"]) == 2
    [warning] = body["warnings"]
    assert warning["column"] == "distance_km"
    assert warning["rows"] == [2]
    assert warning["count"] == 1
    assert "outside the training range" in warning["message"]
    assert client.post("/predict", json=[usual]).json()["warnings"] == []
