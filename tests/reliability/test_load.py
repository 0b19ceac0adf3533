"""The HTTP API under 8 concurrent clients with a promotion in the middle (a short form of the
60-second run ``python -m benchmarks.load_hot_swap`` reports): no request fails, the new
version is served within the poll interval and never reverts, memory stays level."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from benchmarks.load_hot_swap import run_load

from tests.trained_home import Trained

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SECONDS = float(os.environ.get("MLPIPELINE_TEST_LOAD_SECONDS", "12"))
POLL_S = 1.0


def test_eight_clients_through_a_promotion(trained: Trained, tmp_path: Path) -> None:
    report = run_load(
        trained.settings,
        "demo",
        trained.records(200),
        to_version="2",
        seconds=SECONDS,
        clients=8,
        poll_s=POLL_S,
        work=tmp_path,
    )
    assert report.errors == []
    assert report.requests > 50 * SECONDS, "the clients kept the server busy"
    assert report.first_new_version_after_pointer_s is not None, "version 2 was never served"
    assert report.first_new_version_after_pointer_s <= POLL_S + 1.0
    assert report.served_old_after_new == 0, "once swapped, never back"
    assert report.p99_ms < 1_000
    # Level memory: no growth per request (a leak would grow with the 1,000s of requests).
    assert report.rss_growth_mb < 25, report.rss_mb
