"""Monitoring cost follows the new rows, not the table: one check over 10,000 new labelled
rows with 10,000 rows already stored vs with 1,000,000 stored, side by side in one run.

Each store gets the synthetic stream (the history), a champion trained on its last days
(which puts the monitoring watermark at the end of the history), then 10,000 new orders.
The timed part is ``run_check`` (read the new rows through the watermark, join the
prediction log, score with the cached champion, metrics, PSI, record, MLflow series and
timeline); the watermark is reset between repetitions so each one reads the same rows.

    .venv/bin/python -m benchmarks.check_scaling [--big 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path

from benchmarks.serving import local_settings
from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.checks import WATERMARK_KEY
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_day
from mlpipeline.monitoring.check import run_check
from mlpipeline.training.pipeline import train

NEW_ROWS = 10_000


def one_store(home: Path, stored: int, repeats: int) -> tuple[float, int]:
    settings = local_settings(home, training_window="3d")
    d = load_definition("demo")
    store = open_store(settings)
    store.create_schema([d])
    days = 5
    history = StreamConfig(rows_per_day=stored // days)
    for day in range(days):
        ingest_frame(store, d, generate_day(history, day))
    trained_at = history.start + timedelta(days=days + 2)  # every history label has arrived
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(settings, store, d, reason="benchmark", as_of=trained_at)
    fresh = StreamConfig(seed=11, rows_per_day=NEW_ROWS)
    ingest_frame(store, d, generate_day(fresh, days + 3))
    as_of = history.start + timedelta(days=days + 10)
    mark = store.get_state("demo", WATERMARK_KEY)
    assert mark is not None
    timings = []
    rows = 0
    for i in range(repeats + 1):
        store.set_state("demo", WATERMARK_KEY, mark)
        started = time.perf_counter()
        result = run_check(settings, store, d, as_of=as_of + timedelta(hours=i), allow_retrain=False)
        timings.append(time.perf_counter() - started)
        rows = result.n_rows
    stored_rows = store.count_rows(d)
    store.dispose()
    assert stored_rows == stored + NEW_ROWS, stored_rows
    print(f"    ({stored:,} stored: " + ", ".join(f"{t:.3f}" for t in timings) + " s)")
    return statistics.median(timings[1:]), rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    logging.captureWarnings(True)  # library warnings go to (disabled) logging, not the table
    with tempfile.TemporaryDirectory(prefix="mlpipeline-bench-") as tmp:
        small, n_small = one_store(Path(tmp) / "small", args.small, args.repeats)
        big, n_big = one_store(Path(tmp) / "big", args.big, args.repeats)
    print(
        f"check over {NEW_ROWS:,} new orders (median of {args.repeats}; rows read: {n_small:,} / {n_big:,})"
    )
    print(f"  {args.small:>9,} rows stored  {small:7.3f} s")
    print(f"  {args.big:>9,} rows stored  {big:7.3f} s   ratio = {big / small:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
