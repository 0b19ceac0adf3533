"""schemathesis against the API's own OpenAPI document: generated requests (valid and not) to
every operation, in process, bounded in examples and time. Every answer must be documented
(status and content type), never a 5xx, and conform to the document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from mlpipeline.featurestore.sql import open_store
from mlpipeline.registry.model_cache import ModelCache
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.tracking import Tracker
from mlpipeline.serving.api import create_app
from mlpipeline.serving.predictor import Predictor
from tests.trained_home import Trained

pytestmark = pytest.mark.slow


@pytest.fixture
def api_schema(trained: Trained) -> Iterator[Any]:
    store = open_store(trained.settings)
    predictor = Predictor(
        "demo",
        SqlPointerStore(store),
        ModelCache(trained.settings.home / "models", lambda: Tracker(trained.settings)),
        poll_s=60,
    )
    app = create_app(predictor, max_body_bytes=200_000)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    predictor.close()
    store.dispose()


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_generated_request_gets_a_documented_answer(api_schema: Any, mode: str) -> None:
    """Each operation gets up to 100 generated requests in each mode (valid by the document, and
    not); schemathesis's checks run on every answer."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/predict",
        "/invocations",
        "/explain",
        "/health",
        "/model",
        "/ping",
    }
    for operation in operations:
        if mode == "negative" and not operation.body:
            continue  # a GET without parameters has no invalid request to make
        strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

        @given(case=strategy)
        @settings(
            max_examples=100,
            deadline=None,
            database=None,
            derandomize=True,  # the same requests in every run: CI is repeatable (explore: drop it)
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            # Schema-valid yet refused is allowed: a split's column names and the equal length
            # of columns are the input contract's to check (a documented 422), not JSON Schema's.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
