"""The API's OpenAPI document, written from the served model's input contract.

The request body of ``/predict``, ``/explain`` and ``/invocations`` is described column by
column (type, whether a missing value is allowed, range, categories), with an example that the
served model accepts, and every error response is documented with its body. The document is
built when it is asked for, so after a hot swap it describes the model now served. Pure: a
function of the model's feature spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ERROR_RESPONSES", "example_record", "record_schema"]

_ERROR_BODY = {
    "type": "object",
    "required": ["error_code", "message", "error"],
    "properties": {
        "error_code": {"type": "string", "description": "MLflow's code, e.g. BAD_REQUEST"},
        "message": {"type": "string"},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "mlpipeline's stable code, MLP-xxx"},
                "message": {"type": "string"},
                "problems": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "column": {"type": "string"},
                            "rule": {"type": "string"},
                            "detail": {"type": "string"},
                            "rows": {"type": "array", "items": {"type": "integer"}},
                            "count": {"type": "integer"},
                        },
                    },
                },
            },
        },
    },
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_BODY}}}


#: Every error a request can meet (see :mod:`mlpipeline.serving.api` for the codes).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("unreadable body (MLP-210), wrong request shape (MLP-213), or not possible (MLP-800)"),
    401: _error("missing or wrong API key (MLP-401)"),
    413: _error("body larger than the server's limit (MLP-212)"),
    415: _error("unsupported media type (MLP-211)"),
    422: _error("rows that break the model's input contract (MLP-200), each problem with column and rows"),
    503: _error("no model can be served right now"),
}


def _column(feature: Mapping[str, Any]) -> dict[str, Any]:
    kind = feature["type"]
    if kind == "categorical":
        schema: dict[str, Any] = {"type": "string"}
        categories = feature.get("categories")
        if categories and feature.get("strict", False):
            schema["enum"] = list(categories)
    else:
        schema = {"type": "integer" if kind == "integer" else "number"}
        if feature.get("min") is not None:
            schema["minimum"] = feature["min"]
        if feature.get("max") is not None:
            schema["maximum"] = feature["max"]
    if feature.get("missing", "error") != "error":
        schema = {
            "anyOf": [schema, {"type": "null"}],
            "description": f"may be missing ({feature['missing']})",
        }
    return schema


def _keys(spec: Mapping[str, Any]) -> list[str]:
    key = spec.get("key")
    return [] if not key else [key] if isinstance(key, str) else list(key)


def record_schema(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One request row: every feature the model needs, the entity key (optional, echoed back),
    the timestamps its derived features read, and the columns a request may carry along
    (the target, the event and label times). A feature may also come under the name the
    definition's files give it (``source``)."""
    properties: dict[str, Any] = {
        str(name): {"description": "accepted and ignored"} for name in spec.get("accepted") or ()
    }
    properties.update({f["name"]: _column(f) for f in spec["features"]})
    sources = spec.get("sources") or {}
    for source, name in sources.items():
        if name in properties:
            properties[source] = {**properties[name], "description": f"'{name}' under its name in the files"}
    for key in _keys(spec):
        properties[key] = {
            "type": ["string", "number", "null"],
            "description": "the entity key, echoed in 'keys'",
        }
    for name in spec.get("times") or ():
        properties[str(name)] = {
            "type": ["string", "number", "null"],
            "description": "ISO-8601 text, or seconds since 1970 UTC",
        }
    renamed = set(sources.values())  # required under one of two names: JSON Schema cannot say so
    required = [f["name"] for f in spec["features"] if f["name"] not in renamed]
    required += [str(n) for n in spec.get("times") or () if str(n) not in renamed]
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": spec.get("extra_columns", "ignore") != "error",
    }


def example_record(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A row the model accepts: mid-range numbers, the first category, a key."""
    row: dict[str, Any] = dict.fromkeys(_keys(spec), 1)
    for f in spec["features"]:
        if f["type"] == "categorical":
            row[f["name"]] = (f.get("categories") or ["a"])[0]
            continue
        low, high = f.get("min"), f.get("max")
        seen = f.get("seen")
        if seen:
            low, high = seen
        value = (low + high) / 2 if low is not None and high is not None else low if low is not None else high
        value = 1.0 if value is None else float(value)
        row[f["name"]] = round(value) if f["type"] == "integer" else round(value, 4)
    for name in spec.get("times") or ():
        row[str(name)] = "2026-01-01T12:00:00"
    return row
