"""The main job on the embedded default, end to end, as far as the pipeline goes today.

It replays the synthetic ``demo`` stream day by day into the feature store, the way
production data lands: each day is written to a CSV file under ``dur/demo/`` and
ingested as one batch (ingesting a day again is a no-op). Later stages of the loop
(training, promotion, serving, monitoring, retraining) join here as they are built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

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


def run_demo(
    settings: Settings,
    *,
    days: int = 14,
    rows_per_day: int = 2_000,
    drift_day: int | None = 10,
    seed: int = 7,
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
        total = store.count_rows(d)
    finally:
        store.dispose()
    log.info("demo finished", extra={"featureset": d.name, "rows": total})
    return DemoReport(days, written, skipped, rows, total)
