"""The main job on the embedded default, end to end, as far as the pipeline goes today.

It replays the synthetic ``demo`` stream day by day into the feature store, the way
production data lands: each day is written to a CSV file under ``dur/demo/`` and
ingested as one batch (ingesting a day again is a no-op). It trains a first model on the
days before the drift and trains again once the drifted days are in; the gate decides on
the same holdout whether the new model replaces the first. Serving, monitoring and
automatic retraining join here as they are built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlpipeline.definition import available_featuresets, load_definition
from mlpipeline.ingest import ingest_file
from mlpipeline.logs import log_context
from mlpipeline.settings import Settings
from mlpipeline.store import open_store
from mlpipeline.synthetic import StreamConfig, generate_day

__all__ = ["DemoReport", "run_demo"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoReport:
    days: int
    batches_written: int
    batches_skipped: int
    rows_written: int
    rows_in_store: int
    trained_versions: tuple[str, ...] = ()


def run_demo(
    settings: Settings,
    *,
    days: int = 14,
    rows_per_day: int = 2_000,
    drift_day: int | None = 10,
    seed: int = 7,
    train_models: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> DemoReport:
    """Create the schema and replay ``days`` days of the stream; ``say`` reports progress."""
    d = load_definition("demo", settings.featuresets_dir)
    store = open_store(settings)
    folder = settings.home / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    config = StreamConfig(seed=seed, rows_per_day=rows_per_day, drift_day=drift_day)
    written = skipped = rows = 0
    try:
        store.create_schema(
            [
                load_definition(n, settings.featuresets_dir)
                for n in available_featuresets(settings.featuresets_dir)
            ]
        )
        with log_context(featureset=d.name):
            trained: list[str] = []
            for day in range(days):
                path = folder / f"day-{day:03d}.csv"
                if not path.exists():
                    generate_day(config, day).to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%f")
                outcome = ingest_file(store, d, path)
                if outcome.skipped:
                    skipped += 1
                    say(f"day {day:>2}: already ingested as batch {outcome.batch.batch_id}, skipped")
                else:
                    written += 1
                    rows += outcome.written
                    drift = " (drifted world)" if drift_day is not None and day >= drift_day else ""
                    batch = outcome.batch.batch_id
                    say(f"day {day:>2}: ingested {outcome.written:,} rows as batch {batch}{drift}")
                if train_models and (day + 1 == (drift_day or days) or day + 1 == days):
                    trained.append(_train(settings, store, d, f"demo: data up to day {day}", say))
        total = store.count_rows(d)
    finally:
        store.dispose()
    log.info("demo finished", extra={"featureset": d.name, "rows": total})
    return DemoReport(days, written, skipped, rows, total, tuple(trained))


def _train(settings: Settings, store: Any, d: Any, reason: str, say: Callable[[str], None]) -> str:
    from mlpipeline.pipeline import train

    result = train(settings, store, d, reason=reason)
    assert result.metrics is not None
    assert result.decision is not None
    say(
        f"trained version {result.version}: holdout R² {result.metrics.r2:.3f}; "
        f"gate: {result.decision.action} ({result.decision.reason})"
    )
    return result.version or ""
