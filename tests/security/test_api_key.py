"""The prediction API's key: every rejection is the same 401 and the compare is constant time.

Timing is not measured: on a shared 2-core machine the noise of one HTTP request (tens of
microseconds) dwarfs what a byte-by-byte compare would leak, so a timing assertion could
only flake or pass vacuously. Instead the tests show *why* the time cannot depend on the
key: every comparison is ``hmac.compare_digest`` over two 32-byte SHA-256 digests, whatever
was sent, and the rejection happens before anything else about the request is looked at.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import inspect
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.registry.model_cache import ModelCache
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.tracking import Tracker
from mlpipeline.serving import api
from mlpipeline.serving.api import create_app
from mlpipeline.serving.predictor import Predictor
from tests.trained_home import Trained

pytestmark = pytest.mark.slow

KEY = "k3y-Security-Test-0123456789abcdef"


def wrong_variants() -> dict[str, dict[str, str]]:
    """Headers of requests that must all be refused the same way."""
    return {
        "missing": {},
        "empty": {"x-api-key": ""},
        "wrong, same length": {"x-api-key": "x" * len(KEY)},
        "shorter": {"x-api-key": KEY[:-1]},
        "longer": {"x-api-key": KEY + "0"},
        "last character differs": {"x-api-key": KEY[:-1] + ("e" if KEY[-1] != "e" else "f")},
        "first character differs": {"x-api-key": "K" + KEY[1:]},
        "case differs": {"x-api-key": KEY.upper()},
        "bearer, wrong": {"authorization": "Bearer " + KEY[:-1]},
        "basic scheme with the key": {"authorization": "Basic " + KEY},
        "bearer without a key": {"authorization": "Bearer "},
        "key twice": {"x-api-key": KEY + KEY},
    }


def make_client(trained: Trained, store: SqlFeatureStore, featureset: str = "demo") -> TestClient:
    predictor = Predictor(
        featureset,
        SqlPointerStore(store),
        ModelCache(trained.settings.home / "models", lambda: Tracker(trained.settings)),
        poll_s=60,
    )
    return TestClient(create_app(predictor, api_key=KEY, max_body_bytes=5_000), raise_server_exceptions=False)


@pytest.fixture
def client(trained: Trained, store: SqlFeatureStore) -> Iterator[TestClient]:
    with make_client(trained, store) as c:
        yield c


ENDPOINTS = [("POST", "/predict"), ("POST", "/explain"), ("POST", "/invocations"), ("GET", "/model")]


def send(c: TestClient, method: str, path: str, headers: dict[str, str], body: Any) -> Any:
    if method == "GET":
        return c.get(path, headers=headers)
    payload = {"inputs": body} if path == "/invocations" else body
    return c.post(path, json=payload, headers=headers)


#: The one 401 body: MLflow's error_code and message, and mlpipeline's code; nothing else.
EXPECTED_401 = (
    b'{"error_code":"UNAUTHENTICATED","message":"missing or invalid API key",'
    b'"error":{"code":"MLP-401","message":"missing or invalid API key"}}'
)


def test_every_rejection_is_the_same_401_with_no_detail(client: TestClient, trained: Trained) -> None:
    rows = trained.records(2)
    answers: dict[tuple[str, str], tuple[int, bytes, str]] = {}
    for method, path in ENDPOINTS:
        for name, headers in wrong_variants().items():
            r = send(client, method, path, headers, rows)
            answers[(path, name)] = (r.status_code, r.content, r.headers.get("content-type", ""))
        ok = send(client, method, path, {"x-api-key": KEY}, rows)
        assert ok.status_code == 200, (path, ok.text)
        ok_bearer = send(client, method, path, {"authorization": f"Bearer {KEY}"}, rows)
        assert ok_bearer.status_code == 200, (path, ok_bearer.text)
    distinct = set(answers.values())
    assert len(distinct) == 1, f"rejections differ: {sorted(distinct)}"
    status, body, media = distinct.pop()
    assert status == 401
    assert media == "application/json"
    assert body == EXPECTED_401
    assert KEY.encode() not in body


def test_the_key_is_checked_before_the_body_or_the_model(trained: Trained, store: SqlFeatureStore) -> None:
    """Without the key nothing about the request or the server shows through: a malformed
    body, a wrong media type, an oversized body and a feature set with no model all get the
    same 401 as a good request."""
    expected = EXPECTED_401
    with make_client(trained, store) as c:
        probes = [
            c.post("/predict", content=b"{not json", headers={"content-type": "application/json"}),
            c.post("/predict", content=b"a,b\n1,2", headers={"content-type": "text/csv"}),
            c.post("/predict", content=b"[" + b"1," * 10_000 + b"1]"),
            c.post("/invocations", json={"nonsense": 1}),
            c.post("/predict", json=[{"no_such_column": 1}]),
            c.post("/invocations", content=b"", headers={"content-type": "text/csv"}),
            c.post(
                "/invocations",
                content=b"PAR1garbage",
                headers={"content-type": "application/vnd.apache.parquet"},
            ),
            c.post(
                "/invocations", content=b"a\n" + b"1\n" * 10_000_000, headers={"content-type": "text/csv"}
            ),
        ]
        for r in probes:
            assert (r.status_code, r.content) == (401, expected), r.text
        # With the key, the same requests get their real (different) answers: the 401 above
        # was the key check, not a coincidence of the payloads.
        keyed = c.post(
            "/predict", content=b"{not json", headers={"content-type": "application/json", "x-api-key": KEY}
        )
        assert keyed.status_code == 400
    with make_client(trained, store, featureset="nothing") as c:
        r = c.post("/predict", json=trained.records(1))
        assert (r.status_code, r.content) == (401, expected)
        assert c.post("/predict", json=trained.records(1), headers={"x-api-key": KEY}).status_code == 503


def test_compare_is_over_fixed_length_digests(
    client: TestClient, trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every call of hmac.compare_digest gets two 32-byte digests, whatever the key's length."""
    calls: list[tuple[type, int, type, int]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((type(a), len(a), type(b), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    rows = trained.records(1)
    variants = wrong_variants()
    for headers in variants.values():
        assert client.post("/predict", json=rows, headers=headers).status_code == 401
    assert client.post("/predict", json=rows, headers={"x-api-key": KEY}).status_code == 200
    assert client.post("/predict", json=rows, headers={"x-api-key": "y" * 10_000}).status_code == 401
    assert len(calls) == len(variants) + 2
    assert set(calls) == {(bytes, 32, bytes, 32)}


def test_the_check_hashes_before_it_compares_and_never_uses_equality() -> None:
    """The source of the check: the sent key reaches compare_digest only through sha256(...).digest(),
    and no ``==``/``!=``/``in`` touches it (those stop at the first differing byte)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(api.create_app)))
    checks = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "compare_digest"
    ]
    assert len(checks) == 1, "one place compares the key"
    call = checks[0]
    assert isinstance(call.func.value, ast.Name)
    assert call.func.value.id == "hmac"
    sent, stored = call.args
    assert ast.unparse(sent) == "hashlib.sha256(given.encode()).digest()"
    assert ast.unparse(stored) == "key_digest"
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            presence = all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops) and all(
                isinstance(c, ast.Constant) and c.value is None for c in node.comparators
            )
            assert "given" not in names or presence, f"the sent key is compared with {ast.unparse(node)}"
    # The digest kept in memory is the key's sha256, not the key.
    source = inspect.getsource(api.create_app)
    assert "key_digest = hashlib.sha256(api_key.encode()).digest() if api_key else None" in source
    assert hashlib.sha256(KEY.encode()).digest_size == 32


def test_health_and_docs_policy(client: TestClient, trained: Trained) -> None:
    """/health stays open for load balancers but says only whether and what it serves unless
    the key is given; /docs and /openapi.json stay open and carry no key or model detail (the
    served model's input contract is in the document only for a caller with the key)."""
    anonymous = client.get("/health")
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ok", "featureset": "demo", "serving_version": "1"}
    keyed = client.get("/health", headers={"x-api-key": KEY})
    assert keyed.status_code == 200
    detail = keyed.json()
    assert {"last_error", "last_poll", "swaps", "model_name"} <= set(detail)
    assert client.get("/health", headers={"x-api-key": KEY[:-1]}).json() == anonymous.json()
    for path in ("/docs", "/openapi.json"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert KEY not in r.text
        assert "sha256" not in r.text
        assert "run_id" not in r.text
        assert "distance_km" not in r.text, "the model's features need the key"
    keyed_document = client.get("/openapi.json", headers={"x-api-key": KEY}).json()
    assert "region" in keyed_document["components"]["schemas"]["Record"]["properties"]
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/ping").status_code == 200, "MLflow's readiness check stays open, as /health"
    assert client.get("/model").status_code == 401


def test_health_without_the_key_hides_the_reason_a_model_failed(
    trained: Trained, store: SqlFeatureStore
) -> None:
    """A failing load's message names folders and digests: only a caller with the key sees it."""
    with make_client(trained, store, featureset="nothing") as c:
        anonymous = c.get("/health")
        assert anonymous.status_code == 503
        assert anonymous.json() == {"status": "unavailable", "featureset": "nothing", "serving_version": None}
        keyed = c.get("/health", headers={"x-api-key": KEY})
        assert keyed.status_code == 503
        assert keyed.json()["status"] == "unavailable"
        assert "last_error" in keyed.json()
