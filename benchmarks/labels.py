"""B9, attaching labels later: ``attach_labels`` vs a per-row UPDATE loop and vs inserting the rows.

For each database (SQLite always, PostgreSQL when ``MLPIPELINE_TEST_POSTGRES_URL`` is set),
on fresh databases (a new SQLite file, a new PostgreSQL database dropped afterwards):

* ours: ``validate_labels`` + ``attach_labels`` of N labels (shuffled keys) to N stored,
  unlabelled rows of a feature set with an integer key that is not generated;
* anchor 1: the same labels written the way a user would write them: one transaction, one
  ``executemany`` through SQLAlchemy of ``UPDATE t SET y = :y, _labelled_batch = :b WHERE
  id = :id`` (building the parameter list is timed too). When the loop would take more than
  ``LOOP_BUDGET_S``, it is timed on its first ``LOOP_CHUNK`` rows and scaled linearly, and
  the row's text says so;
* anchor 2: ``ingest_frame`` of the same N rows (what B7 measures for ours), best of the
  two ingests the benchmark makes anyway (one per database).

    .venv/bin/python -m benchmarks.labels [--rows 1000000 | --quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mlpipeline.featuresets.definition import Definition, parse_definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.labels import attach_labels
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.featurestore.validation import validate_labels

if TYPE_CHECKING:
    from benchmarks.suite import Row

#: The per-row UPDATE loop runs in chunks of this many rows (one executemany each) ...
LOOP_CHUNK = 100_000
#: ... and stops after the first chunk, scaled linearly, when the whole would take longer.
LOOP_BUDGET_S = 60.0
FEATURES = ("x1", "x2", "x3", "x4")


def definition() -> Definition:
    return parse_definition(
        {
            "name": "bench_labels",
            "table": "bench_labels",
            "entity_key": {"column": "id", "type": "integer"},
            "target": {"column": "y"},
            "features": {name: {"type": "float"} for name in FEATURES},
        },
        source="benchmarks.labels",
    )


def data(n: int, seed: int = 9) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(unlabelled rows, raw labels): N rows with shuffled integer keys; labels in another order."""
    rng = np.random.default_rng(seed)
    keys = rng.permutation(np.arange(1, n + 1, dtype=np.int64)) * 7 + 1_000_000
    rows = pd.DataFrame({"id": keys, **{name: rng.normal(size=n) for name in FEATURES}})
    labels = pd.DataFrame({"id": rng.permutation(keys), "y": rng.uniform(0, 100, size=n)})
    return rows, labels


@dataclass
class Figures:
    backend: str
    rows: int
    validate: float
    attach: float
    ingest: float
    loop: float
    loop_rows: int  # rows the loop actually updated (loop is scaled to ``rows`` when fewer)

    @property
    def ours(self) -> float:
        return self.validate + self.attach


@contextmanager
def fresh_databases(backend: str, work: Path, pg_url: str | None) -> Iterator[tuple[str, str]]:
    """Two empty databases (ours, the loop's): SQLite files, or PostgreSQL databases dropped after."""
    if backend == "SQLite":
        yield f"sqlite:///{work / 'labels-ours.db'}", f"sqlite:///{work / 'labels-loop.db'}"
        return
    assert pg_url is not None
    base = make_url(pg_url)
    names = [f"mlp_bench_labels_{secrets.token_hex(4)}" for _ in range(2)]
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f"CREATE DATABASE {name}"))
        ours, loop = (base.set(database=name).render_as_string(hide_password=False) for name in names)
        yield ours, loop
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def loaded_store(url: str, d: Definition, rows: pd.DataFrame) -> tuple[SqlFeatureStore, float]:
    """A store on ``url`` holding ``rows`` unlabelled; and the seconds ``ingest_frame`` took."""
    store = SqlFeatureStore(url)
    store.create_schema([d])
    started = time.perf_counter()
    outcome = ingest_frame(store, d, rows, source="bench rows")
    seconds = time.perf_counter() - started
    assert outcome.written == len(rows.index), outcome
    return store, seconds


def update_loop(url: str, d: Definition, labels: pd.DataFrame, batch_id: int) -> tuple[float, int]:
    """Per-row UPDATEs in one transaction; (seconds, rows updated). See the module docstring."""
    engine = create_engine(url)
    statement = text(
        f"UPDATE {d.table} SET {d.target.column} = :y, _labelled_batch = :b WHERE {d.entity_key.column} = :id"
    )
    n = len(labels.index)
    done = 0
    started = time.perf_counter()
    with engine.begin() as conn:
        keys, values = labels["id"].tolist(), labels["y"].tolist()
        while done < n:
            hi = min(done + LOOP_CHUNK, n)
            params = [
                {"y": y, "b": batch_id, "id": k} for k, y in zip(keys[done:hi], values[done:hi], strict=True)
            ]
            conn.execute(statement, params)
            done = hi
            if done < n and (time.perf_counter() - started) * n / done > LOOP_BUDGET_S:
                break
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        labelled = conn.execute(text(f"SELECT count(*) FROM {d.table} WHERE {d.target.column} IS NOT NULL"))
        assert labelled.scalar_one() == done
    engine.dispose()
    return seconds, done


def measure(backend: str, work: Path, n: int, pg_url: str | None = None) -> Figures:
    d = definition()
    rows, raw_labels = data(n)
    with fresh_databases(backend, work, pg_url) as (ours_url, loop_url):
        store, ingest_ours = loaded_store(ours_url, d, rows)
        started = time.perf_counter()
        labels = validate_labels(raw_labels, d, source="bench labels")
        validate = time.perf_counter() - started
        started = time.perf_counter()
        outcome = attach_labels(store, d, labels, source="bench labels")
        attach = time.perf_counter() - started
        assert outcome.labelled == n, outcome
        assert store.count_rows(d) == n
        store.dispose()

        loop_store, ingest_loop = loaded_store(loop_url, d, rows)
        loop_store.dispose()
        loop, loop_rows = update_loop(loop_url, d, labels, batch_id=2)
    return Figures(
        backend, n, validate, attach, min(ingest_ours, ingest_loop), loop * n / loop_rows, loop_rows
    )


def label_cases(work: Path, quick: bool, n: int | None = None) -> list[Row]:
    """B9 on SQLite, and on PostgreSQL when ``MLPIPELINE_TEST_POSTGRES_URL`` is set."""
    from benchmarks.suite import Row

    n = n or (50_000 if quick else 1_000_000)
    pg = os.environ.get("MLPIPELINE_TEST_POSTGRES_URL")
    backends = ["SQLite"] + (["PostgreSQL"] if pg else [])
    out: list[Row] = []
    for backend in backends:
        f = measure(backend, work, n, pg)
        print(
            f"  B9 {backend}: validate_labels {f.validate:.2f} s + attach_labels {f.attach:.2f} s; "
            f"ingest {f.ingest:.2f} s; per-row UPDATE {f.loop:.2f} s"
            + ("" if f.loop_rows == n else f" (scaled from {f.loop_rows:,} rows)"),
            flush=True,
        )
        loop_note = (
            "" if f.loop_rows == n else f"; loop timed on its first {f.loop_rows:,} rows, scaled linearly"
        )
        what = f"attach {n:,} labels to {n:,} stored rows, validation included ({backend})"
        out += [
            Row(
                "B9",
                what + loop_note,
                f.ours,
                f.loop,
                "per-row UPDATE executemany, 1 transaction",
                "s",
                "<= 0.1x (10x faster)",
                f.loop >= 10 * f.ours,
            ),
            Row(
                "B9",
                what,
                f.ours,
                f.ingest,
                f"ingest_frame of the {n:,} rows",
                "s",
                "<= 3x",
                f.ours <= 3 * f.ingest,
            ),
        ]
    return out


def main() -> None:
    import tempfile

    from benchmarks.suite import markdown

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="default 1,000,000 (50,000 with --quick)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="mlpipeline-bench-labels-") as tmp:
        rows = label_cases(Path(tmp), args.quick, args.rows)
    print()
    print(markdown(rows, {"when": "now", "machine": os.uname().machine, "command": "benchmarks.labels"}))


if __name__ == "__main__":
    main()
