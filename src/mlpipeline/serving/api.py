"""The HTTP prediction API (FastAPI): JSON in, predictions out, hot-swapped champion.

Endpoints: ``POST /predict`` (JSON records), ``POST /invocations`` (MLflow's scoring
protocol: JSON with ``dataframe_split``, ``dataframe_records``, ``inputs``/``instances`` and
``params``, or a ``text/csv`` or Parquet body), ``POST /explain`` (per-feature
contributions), ``GET /health``, ``GET /model``, MLflow's ``GET /ping`` and ``GET /version``,
and the OpenAPI page at ``/docs``.

Bodies are read and parsed here rather than by FastAPI's model validation: one
``json.loads`` and the model's own :class:`~mlpipeline.serving.scoring.InputContract` are both
faster and more precise (every problem named with its column and rows). Any bad input is a
4xx; only a bug is a 500. An error body carries MLflow's ``error_code`` and ``message`` at the
top level (what MLflow's clients read) and mlpipeline's own ``error`` object with a stable
code and, for invalid rows, the problems::

    status  error_code                code      when
    400     BAD_REQUEST               MLP-210   the body cannot be read (not UTF-8, not JSON, too deep)
    400     BAD_REQUEST               MLP-213   the request's shape is wrong (format keys, params)
    400     BAD_REQUEST               MLP-800   the model cannot do it (explain a non-tree model)
    401     UNAUTHENTICATED           MLP-401   missing or wrong API key
    413     RESOURCE_EXHAUSTED        MLP-212   the body is larger than the limit
    415     BAD_REQUEST               MLP-211   a media type other than JSON, CSV or Parquet
    422     INVALID_PARAMETER_VALUE   MLP-200   rows that break the model's input contract
    500     INTERNAL_ERROR            MLP-000   a bug (details in the server log only)
    503     TEMPORARILY_UNAVAILABLE   MLP-3xx…  no model can be served right now
An optional API key (``X-API-Key`` or ``Authorization: Bearer``) is compared in constant
time against its digest: both sides are hashed to 32 bytes first, so neither the key's
length nor its content changes the comparison's time, and every rejection is the same
401 body. ``/health`` stays open for load balancers, but without the key it says only
whether a model is served and which version (no error detail, no paths); ``/docs`` and
``/openapi.json`` describe the API and stay open too. See SECURITY.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from mlpipeline import __version__
from mlpipeline.errors import (
    DataValidationError,
    MlpipelineError,
    ModelIntegrityError,
    NotFoundError,
    Problem,
    StoreError,
    TrackingError,
    UnsupportedError,
)
from mlpipeline.serving.batch_io import json_error, loads_strict, read_requests
from mlpipeline.serving.openapi import ERROR_RESPONSES, example_record, record_schema
from mlpipeline.serving.predictor import Prediction, Predictor

__all__ = ["ApiError", "create_app"]

log = logging.getLogger(__name__)

#: Requests with more rows than this are predicted on a worker thread, not the event loop.
THREAD_ROWS = 2_000
MAX_JSON_DEPTH = 32

_RECORD = {"$ref": "#/components/schemas/Record"}
_RECORDS = {"type": "array", "items": _RECORD, "description": "one object per row"}
_RECORDS_SCHEMA = {"oneOf": [{**_RECORDS, "minItems": 1}, {**_RECORD, "description": "a single row"}]}
_PARAMS = {
    "type": "object",
    "properties": {"output": {"type": "string", "enum": ["labels", "probabilities"]}},
    "additionalProperties": False,
}


def _invocation_form(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: schema, "params": _PARAMS},
        "additionalProperties": False,
    }


_INVOCATIONS_SCHEMA = {
    "description": (
        "MLflow's scoring protocol: exactly one of the format keys, and optionally params. "
        "A split's columns must be the model's, and columns ('inputs' as an object of arrays) of "
        "equal length: the input contract checks what JSON Schema cannot say (422)."
    ),
    "oneOf": [
        _invocation_form(
            "dataframe_split",
            {
                "type": "object",
                "required": ["columns", "data"],
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "data": {"type": "array", "items": {"type": "array"}},
                    "index": {"type": "array"},
                },
            },
        ),
        _invocation_form("dataframe_records", _RECORDS),
        _invocation_form(
            "inputs",
            {"anyOf": [_RECORDS, _RECORD, {"type": "object", "additionalProperties": {"type": "array"}}]},
        ),
        _invocation_form(
            "instances",
            {"anyOf": [_RECORDS, _RECORD, {"type": "object", "additionalProperties": {"type": "array"}}]},
        ),
    ],
}
_TABLE_BODY = {"type": "string", "format": "binary"}


#: The API's own codes (see the module docstring).
UNREADABLE, MEDIA_TYPE, TOO_LARGE, SHAPE, UNAUTHORISED = "MLP-210", "MLP-211", "MLP-212", "MLP-213", "MLP-401"
#: MLflow's ``error_code`` for each status.
MLFLOW_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    413: "RESOURCE_EXHAUSTED",
    415: "BAD_REQUEST",
    422: "INVALID_PARAMETER_VALUE",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}
CSV_TYPE, PARQUET_TYPE = "text/csv", "application/vnd.apache.parquet"


class ApiError(Exception):
    """A client error found before the predictor: bad JSON, wrong media type, too large, no key."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _json(payload: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(payload, allow_nan=False, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
    )


def _error_body(status: int, code: str, message: str, problems: tuple[Problem, ...] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if problems:
        body["problems"] = [
            {"column": p.column, "rule": p.rule, "detail": p.detail, "rows": list(p.rows), "count": p.count}
            for p in problems
        ]
    return {"error_code": MLFLOW_CODES.get(status, "BAD_REQUEST"), "message": message, "error": body}


def status_of(exc: MlpipelineError) -> int:
    """HTTP status of a library error: the caller's fault is 4xx, ours or a backend's 5xx."""
    if isinstance(exc, DataValidationError):
        return 422
    if isinstance(exc, UnsupportedError):
        return 400
    if isinstance(exc, NotFoundError | ModelIntegrityError | TrackingError | StoreError):
        return 503  # no usable model right now; retry later
    return 500


def _depth_ok(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return True


def _parse(body: bytes) -> Any:
    if not body:
        raise ApiError(400, UNREADABLE, "empty body: send JSON")
    try:
        # Strictly UTF-8 (RFC 8259; json.loads would guess UTF-16 or UTF-32 from the bytes).
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, UNREADABLE, "the body is not UTF-8 text; send UTF-8 encoded JSON") from exc
    try:
        payload = loads_strict(text)
    except RecursionError as exc:
        raise ApiError(400, UNREADABLE, "the JSON is nested too deeply") from exc
    except ValueError as exc:  # malformed, a duplicate key, or a number too long to read
        raise ApiError(400, UNREADABLE, f"the body is not valid JSON: {json_error(exc)}") from exc
    if isinstance(payload, dict | list) and not _depth_ok(payload):
        raise ApiError(400, UNREADABLE, f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    return payload


def create_app(
    predictor: Predictor,
    *,
    api_key: str | None = None,
    max_body_bytes: int = 10_000_000,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The API around ``predictor``; the predictor polls the pointer while the app runs, and
    ``on_shutdown`` (e.g. closing the store a worker process opened) runs after it stops."""
    key_digest = hashlib.sha256(api_key.encode()).digest() if api_key else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            predictor.current()
        except MlpipelineError as exc:  # serve anyway: /health says why, the poller keeps trying
            log.warning("starting without a model", extra={"detail": str(exc)[:300]})
        predictor.start_polling()
        yield
        predictor.close()
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(
        title="mlpipeline prediction API",
        summary=f"Predictions of the production model of feature set '{predictor.featureset}'",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # served below from the app's own copy of Swagger UI: no CDN, works offline
        redoc_url=None,
        openapi_url=None,  # served below: the model's contract only for a caller with the key
    )

    def authorised(request: Request) -> bool:
        if key_digest is None:
            return True
        given = request.headers.get("x-api-key")
        if given is None:
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth[:7].lower() == "bearer " else ""
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), key_digest)

    def authorise(request: Request) -> None:
        if not authorised(request):
            raise ApiError(401, UNAUTHORISED, "missing or invalid API key")

    def media_of(request: Request, accepted: tuple[str, ...]) -> str:
        media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        media = media or "application/json"
        if media not in accepted:
            raise ApiError(415, MEDIA_TYPE, f"unsupported media type '{media}': send {' or '.join(accepted)}")
        return media

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise ApiError(413, TOO_LARGE, f"body larger than {max_body_bytes} bytes; send smaller batches")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise ApiError(
                    413, TOO_LARGE, f"body larger than {max_body_bytes} bytes; send smaller batches"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_table(data: bytes, media: str) -> dict[str, Any]:
        """A CSV or Parquet body as columns; what cannot be read is MLP-210, as for JSON."""
        if not data.strip():
            raise ApiError(400, UNREADABLE, "empty body: send a header row and the rows")
        if media == PARQUET_TYPE:
            if data[:4] != b"PAR1":
                raise ApiError(400, UNREADABLE, "the body is not a Parquet file (no PAR1 magic bytes)")
            cells = _parquet_cells(data)
            if cells > max_body_bytes // 2:  # what a JSON or CSV body within the limit can hold
                raise ApiError(
                    413, TOO_LARGE, f"the Parquet file holds {cells:,} values; send smaller batches"
                )
        elif data[:4] == b"PAR1":
            raise ApiError(400, UNREADABLE, f"a Parquet file sent as text/csv: send it as {PARQUET_TYPE}")
        spec = predictor.current().model.spec
        try:
            return await run_in_threadpool(read_requests, data, "csv", spec, "request")
        except DataValidationError as exc:
            if all(p.rule == "format" for p in exc.problems):
                raise ApiError(400, UNREADABLE, "; ".join(p.detail for p in exc.problems)) from exc
            raise

    async def read_json(request: Request) -> Any:
        authorise(request)
        media_of(request, ("application/json",))
        return _parse(await read_body(request))

    async def run(call: Callable[[], Prediction], rows: int) -> Prediction:
        if rows > THREAD_ROWS:
            return await run_in_threadpool(call)
        return call()

    _document(app, predictor, authorised, keyed=key_digest is not None)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return _json(_error_body(exc.status, exc.code, exc.message), exc.status)

    @app.exception_handler(MlpipelineError)
    async def _library_error(_: Request, exc: MlpipelineError) -> Response:
        status = status_of(exc)
        if status >= 500:
            log.error("request failed", extra={"code": exc.code, "detail": str(exc)[:500]})
        problems = exc.problems if isinstance(exc, DataValidationError) else ()
        return _json(_error_body(status, exc.code, exc.message, problems), status)

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error while serving a request")
        return _json(
            _error_body(500, "MLP-000", f"internal error ({type(exc).__name__}); see the server log"), 500
        )

    def answer(result: Prediction, *, explain: bool = False) -> Response:
        body: dict[str, Any] = {
            "model": {"name": result.model_name, "version": result.version},
            "predictions": result.answers,
        }
        if result.probabilities is not None:
            body["probabilities"] = result.probability_records()
        if result.keys is not None:
            body["keys"] = result.keys
        if result.ignored_columns:
            body["ignored_columns"] = list(result.ignored_columns)
        body["warnings"] = result.warnings()
        if explain and result.contributions is not None:
            body.update(_contributions(result))
        return _json(body)

    @app.post(
        "/predict",
        summary="Predict for JSON records",
        responses=ERROR_RESPONSES,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": _RECORDS_SCHEMA}}}
        },
    )
    async def predict(request: Request) -> Response:
        payload = await read_json(request)
        rows = len(payload) if isinstance(payload, list) else 1
        return answer(await run(lambda: predictor.predict_records(payload), rows))

    @app.post(
        "/explain",
        summary="Predict and return each feature's contribution (SHAP values)",
        responses=ERROR_RESPONSES,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": _RECORDS_SCHEMA}}}
        },
    )
    async def explain(request: Request) -> Response:
        payload = await read_json(request)
        rows = len(payload) if isinstance(payload, list) else 1
        return answer(await run(lambda: predictor.predict_records(payload, explain=True), rows), explain=True)

    @app.post(
        "/invocations",
        summary="MLflow-compatible scoring",
        responses=ERROR_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _INVOCATIONS_SCHEMA},
                    CSV_TYPE: {"schema": _TABLE_BODY},
                    PARQUET_TYPE: {"schema": _TABLE_BODY},
                },
            }
        },
    )
    async def invocations(request: Request) -> Response:
        authorise(request)
        media = media_of(request, ("application/json", CSV_TYPE, PARQUET_TYPE))
        if media == "application/json":
            payload = _parse(await read_body(request))
            call, rows = _invocation(predictor, payload)
            output = _output_param(payload)
            names = _named_columns(payload)
        else:
            columns = await read_table(await read_body(request), media)
            first: Any = next(iter(columns.values()), [])
            call, rows, output = (lambda: predictor.predict_columns(columns)), len(first), "labels"
            names = list(columns)
        if rows == 0:  # MLflow answers an empty frame with no predictions, once its columns fit
            _check_columns(predictor.current().model.spec, names)
            return _json({"predictions": []})
        result = await run(call, rows)
        if output == "probabilities" and result.probabilities is not None:
            return _json({"predictions": result.probability_records()})
        return _json({"predictions": result.answers})

    @app.get(
        "/ping",
        summary="MLflow's readiness check: 200 while a model is served, else 503",
        response_class=PlainTextResponse,
        responses={503: {"description": "no model can be served", "content": {"text/plain": {}}}},
    )
    async def ping() -> Response:
        served = predictor.status()["serving_version"] is not None
        return PlainTextResponse("\n", status_code=200 if served else 503)

    @app.get(
        "/version",
        summary="The server's version (MLflow's scoring servers answer theirs)",
        response_class=PlainTextResponse,
    )
    async def version() -> Response:
        return PlainTextResponse(__version__)

    @app.get("/health", summary="Liveness and the served version (503 while no model can be served)")
    async def health(request: Request) -> Response:
        status = predictor.status()
        ok = status["serving_version"] is not None
        status["status"] = "ok" if ok else "unavailable"
        if not authorised(request):  # open for load balancers, but no detail without the key
            status = {k: status[k] for k in ("status", "featureset", "serving_version")}
        return _json(status, 200 if ok else 503)

    @app.get(
        "/model",
        summary="The served model: version, provenance, metrics and input contract",
        responses={k: ERROR_RESPONSES[k] for k in (401, 503)},
    )
    async def model(request: Request) -> Response:
        authorise(request)
        serving = predictor.current()
        p = serving.pointer
        features = [
            {
                k: v
                for k, v in f.items()
                if k in ("name", "type", "missing", "min", "max", "categories", "strict")
            }
            for f in serving.model.spec["features"]
        ]
        return _json(
            {
                "featureset": p.featureset,
                "name": p.model_name,
                "version": p.version,
                "run_id": p.run_id,
                "model_uri": p.model_uri,
                "sha256": p.sha256,
                "metrics": p.metrics,
                "promoted_at": p.promoted_at.isoformat() if p.promoted_at else None,
                "promoted_by": p.promoted_by,
                "reason": p.reason,
                "loaded_at": serving.loaded_at.isoformat(),
                "load_ms": round(serving.load_seconds * 1000, 3),
                "input": {"key": serving.model.spec.get("key"), "features": features},
                "output": _output_of(serving.model.spec),
                "derived": serving.model.spec.get("derived", []),
                "feature_order": list(serving.feature_names),
            }
        )

    return app


def _document(
    app: FastAPI, predictor: Predictor, authorised: Callable[[Request], bool], *, keyed: bool
) -> None:
    """``/docs`` from the package's own Swagger UI files, and an OpenAPI document whose request
    schema and examples are the served model's input contract (rebuilt at each request of
    ``/openapi.json``, so a hot swap shows). With an API key set, a caller without it gets the
    request formats only: the feature names, ranges and categories describe the model."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.openapi.utils import get_openapi
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title}: {predictor.featureset}",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )

    anonymous: dict[str, Any] = {}  # the document without the contract does not change: built once

    def openapi(with_contract: bool) -> dict[str, Any]:
        if not with_contract and anonymous:
            return anonymous
        document = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        if keyed:  # Swagger UI's Authorize button; the open endpoints say they need nothing
            document.setdefault("components", {})["securitySchemes"] = {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            }
            document["security"] = [{"ApiKey": []}, {"Bearer": []}]
            for path in ("/health", "/ping", "/version"):
                for operation in document["paths"].get(path, {}).values():
                    operation["security"] = []
        record: dict[str, Any] = {"type": "object", "description": "one row: the model's features by name"}
        example = None
        if with_contract:
            try:
                spec = predictor.current().model.spec
            except MlpipelineError:
                record["description"] = "one row (no model is served yet)"
            else:
                record, example = record_schema(spec), example_record(spec)
        document.setdefault("components", {}).setdefault("schemas", {})["Record"] = record
        if example is not None:
            paths = document["paths"]
            for path in ("/predict", "/explain"):
                paths[path]["post"]["requestBody"]["content"]["application/json"]["example"] = [example]
            body = paths["/invocations"]["post"]["requestBody"]["content"]["application/json"]
            body["example"] = {"dataframe_records": [example]}
        elif not with_contract:
            anonymous.update(document)
        return document

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> Response:
        return _json(openapi(authorised(request)))


def _output_of(spec: dict[str, Any]) -> dict[str, Any]:
    """What the model answers: a number, or one of its classes (with the positive class and the
    decision threshold of a binary model)."""
    task = spec.get("task") or "regression"
    if task == "regression":
        return {"task": "regression"}
    out: dict[str, Any] = {"task": task, "classes": list(spec.get("classes") or ())}
    if task == "binary":
        out["positive"] = out["classes"][int(spec["positive"])]
        out["threshold"] = spec.get("threshold", 0.5)
    return out


def _named_columns(payload: Any) -> list[str] | None:
    """The column names an empty JSON request gives (a split's, or an object of columns')."""
    data = next((payload[k] for k in ("dataframe_split", "inputs", "instances") if k in payload), None)
    if isinstance(data, dict) and "columns" in data and isinstance(data.get("data"), list):
        return [str(c) for c in data["columns"]]
    if isinstance(data, dict):
        return [str(c) for c in data]
    return None  # an empty list of records names no column


def _check_columns(spec: dict[str, Any], names: list[str] | None) -> None:
    """The input contract's column rules, for a request without rows."""
    if names is None:
        return
    sources = spec.get("sources") or {}
    given = {sources.get(n, n) for n in names}
    needed = [f["name"] for f in spec["features"]] + [str(t) for t in spec.get("times") or ()]
    key = spec.get("key")
    keys = [key] if isinstance(key, str) else list(key or ())
    problems = []
    missing = [n for n in needed if n not in given]
    if missing:
        problems.append(Problem(", ".join(missing), "required column", "missing from the request; add it"))
    known = {*needed, *keys, *(spec.get("accepted") or ())}
    unknown = sorted(given - known) if spec.get("extra_columns", "ignore") == "error" else []
    if unknown:
        problems.append(
            Problem(
                ", ".join(unknown),
                "unexpected column",
                "not in the feature set; remove it, or set extra_columns = 'ignore' in the definition",
            )
        )
    if problems:
        raise DataValidationError(problems, source="request", outcome="no prediction made")


def _parquet_cells(data: bytes) -> int:
    """Rows x columns of a Parquet file, from its footer alone (a few compressed bytes can hold
    millions of values: the body's size says nothing about the memory reading it takes)."""
    import io

    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise ApiError(400, UNREADABLE, f"not a readable Parquet file ({exc.__class__.__name__})") from exc
    return int(meta.num_rows) * max(1, int(meta.num_columns))


def _output_param(payload: Any) -> str:
    """MLflow's ``"params": {"output": "labels" | "probabilities"}`` (labels when absent)."""
    if not isinstance(payload, dict) or "params" not in payload:
        return "labels"
    params = payload["params"]
    if not isinstance(params, dict) or set(params) - {"output"}:
        raise ApiError(400, SHAPE, "params must be an object with at most the key 'output'")
    output = params.get("output", "labels") if isinstance(params, dict) else None
    if output not in ("labels", "probabilities"):
        raise ApiError(400, SHAPE, "params.output must be 'labels' or 'probabilities'")
    return str(output)


def _contributions(result: Prediction) -> dict[str, Any]:
    """Per-feature contributions (SHAP values) with the base value: in the model's raw score
    (a binary model's log-odds of the positive class), and per class for a multiclass model."""
    assert result.contributions is not None
    names = list(result.feature_names)
    width = len(names) + 1
    raw = np.asarray(result.contributions, dtype=np.float64)
    if result.probabilities is not None and len(result.classes) > 2:
        per_class = raw.reshape(len(raw), len(result.classes), width)
        classes = [str(c) for c in result.classes]
        return {
            "base_value": {c: float(per_class[0, i, -1]) for i, c in enumerate(classes)},
            "contributions": [
                {c: dict(zip(names, row[i, :-1].tolist(), strict=True)) for i, c in enumerate(classes)}
                for row in per_class
            ],
            "contribution_scale": "raw score of each class (softmax of the sums gives the probabilities)",
        }
    out: dict[str, Any] = {
        "base_value": float(raw[0, -1]),
        "contributions": [dict(zip(names, row[:-1].tolist(), strict=True)) for row in raw],
    }
    if result.probabilities is not None:
        out["contribution_scale"] = "log-odds of the positive class"
    return out


def _invocation(predictor: Predictor, payload: Any) -> tuple[Callable[[], Prediction], int]:
    """Dispatch MLflow's scoring formats to the predictor."""
    formats = ("dataframe_split", "dataframe_records", "inputs", "instances")
    if not isinstance(payload, dict):
        raise ApiError(400, SHAPE, f"expected a JSON object with one of the keys {', '.join(formats)}")
    given = [k for k in formats if k in payload]
    unknown = sorted(set(payload) - {*formats, "params"})
    if len(given) != 1 or unknown:
        found = ", ".join(sorted(payload)[:8]) or "none"
        raise ApiError(
            400,
            SHAPE,
            f"expected exactly one of the keys {', '.join(formats)} (and optionally params); "
            f"got keys: {found}",
        )
    kind = given[0]
    data = payload[kind]
    if kind == "dataframe_split":
        if not isinstance(data, dict) or set(data) - {"columns", "data", "index"}:
            raise ApiError(
                400,
                SHAPE,
                "'dataframe_split' must be an object with 'columns', 'data' and optionally 'index'",
            )
        columns, index = data.get("columns"), data.get("index", [])
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ApiError(400, SHAPE, "dataframe_split.columns must be a list of column names")
        if not isinstance(index, list):
            raise ApiError(400, SHAPE, "dataframe_split.index must be a list")
        rows = len(data["data"]) if isinstance(data.get("data"), list) else -1
        return (lambda: predictor.predict_split(data)), rows
    if isinstance(data, list):
        return (lambda: predictor.predict_records(data)), len(data)
    if kind == "dataframe_records":  # as MLflow: records come as a list, even one
        raise ApiError(
            400, SHAPE, "'dataframe_records' must be a list of records; send [{...}] even for one row"
        )
    if isinstance(data, dict) and not any(isinstance(v, list) for v in data.values()):
        # One row, {"col": value, ...}: MLflow's server refuses it for a model like ours, clients send it.
        return (lambda: predictor.predict_records([data])), 1
    if isinstance(data, dict):
        values = list(data.values())
        # Zero rows only when every column is an empty list; anything else the contract judges.
        rows = len(values[0]) if values and all(isinstance(v, list) for v in values) else -1
        if rows == 0 and any(values):
            rows = -1
        return (lambda: predictor.predict_columns(data)), rows
    raise ApiError(400, SHAPE, f"'{kind}' must be a list of records or an object of columns")
