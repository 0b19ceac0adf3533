"""Ingest 1,000,000 synthetic rows into SQLite: mlpipeline vs ``pandas.DataFrame.to_sql`` defaults.

Both start from the same in-memory DataFrame and write to a fresh SQLite file on the same
disk. Ours also validates every row and hashes the batch; ``to_sql`` does neither.

    .venv/bin/python -m benchmarks.ingest_sqlite [--rows 1000000]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    d = load_definition("demo")
    days = max(1, args.rows // 50_000)
    frame = generate_stream(StreamConfig(rows_per_day=args.rows // days), days)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = SqlFeatureStore(f"sqlite:///{folder / 'ours.db'}")
        store.create_schema([d])
        t0 = time.perf_counter()
        outcome = ingest_frame(store, d, frame, source="bench")
        ours = time.perf_counter() - t0
        assert store.count_rows(d) == len(frame)
        store.dispose()

        engine = create_engine(f"sqlite:///{folder / 'pandas.db'}")
        t0 = time.perf_counter()
        frame.to_sql("demo_deliveries", engine)
        anchor = time.perf_counter() - t0
        engine.dispose()
    n = outcome.written
    print(f"rows: {n:,}")
    print(f"{'case':<42}{'seconds':>10}{'rows/s':>14}")
    print(f"{'mlpipeline ingest (validate+hash+write)':<42}{ours:>10.2f}{n / ours:>14,.0f}")
    print(f"{'pandas.DataFrame.to_sql (defaults)':<42}{anchor:>10.2f}{n / anchor:>14,.0f}")
    print(f"ratio ours/pandas time: {ours / anchor:.2f} (<= 1.00 means ours is at least as fast)")


if __name__ == "__main__":
    main()
