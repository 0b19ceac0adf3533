"""The real MLflow stack (PostgreSQL backend store, S3 artifacts behind ``mlflow server``) vs
mlpipeline's cache and vs the embedded store, measured in one run on the housing data.

1. Loading the champion: ``mlflow.pyfunc.load_model("models:/<name>@champion")`` through the
   tracking server (alias lookup, download, load), beside mlpipeline's cache: cold (pointer,
   download through the server, verify, load) and warm (pointer read, verify, load: no MLflow).
2. One ``train`` of the housing feature set, end to end (extract → … → register → promote),
   against the stack and against the embedded store (local MLflow store: SQLite + files), each
   into a fresh registry whose store already exists. Both use the same SQLite feature store, so
   the difference is MLflow's backend alone.

The stack is started here (moto as the S3 endpoint, a fresh database); PostgreSQL must run:

    .venv/bin/python -m benchmarks.stack_vs_embedded --postgres-url "$(bash .ci/postgres.sh)"
    (or set MLPIPELINE_TEST_POSTGRES_URL / MLPIPELINE_STACK_POSTGRES_URL; --csv to use other data)
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import secrets
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.ingest import ingest_file
from mlpipeline.featurestore.sql import open_store
from mlpipeline.registry.model_cache import ModelCache
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.tracking import CHAMPION, Tracker
from mlpipeline.settings import Settings
from mlpipeline.stack import Stack, StackConfig
from mlpipeline.training.pipeline import train
from mlpipeline.training.steps import columns_of

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "california_housing.csv"


def settings_for(home: Path, tracking_uri: str | None) -> Settings:
    return Settings(
        home=home, featurestore_url=f"sqlite:///{home / 'fs.db'}",
        mlflow_tracking_uri=tracking_uri or f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        mlflow_artifact_root=str(home / "mlflow" / "artifacts"), log_dir=home / "logs",
        registry_prefix=f"bench-{secrets.token_hex(3)}-",
        _env_file=None,  # type: ignore[call-arg]
    )  # fmt: skip


def one_train(csv: Path, home: Path, tracking_uri: str | None) -> tuple[Settings, dict[str, float]]:
    """Fresh feature store and registry; ingest (not timed), then one timed ``train``."""
    settings = settings_for(home, tracking_uri)
    d = load_definition("housing")
    store = open_store(settings)
    store.create_schema([d])
    ingest_file(store, d, csv)
    # Steady state, as after the first command: the embedded MLflow store's schema exists (its
    # creation, about a second of migrations, happens once per store, not per train).
    Tracker(settings).client.search_experiments(max_results=1)
    gc.collect()  # the ingest's garbage is not the train's cost
    t0 = time.perf_counter()
    result = train(settings, store, d, reason="benchmark")
    total = time.perf_counter() - t0
    store.dispose()
    assert result.decision is not None
    assert result.decision.action == "promote"
    return settings, {**result.timings, "total": total}


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def load_benchmark(settings: Settings, csv: Path, tmp: Path, repeat: int) -> dict[str, list[float]]:
    import mlflow

    tracker = Tracker(settings)
    name = tracker.model_name("housing")
    store = open_store(settings)
    pointers = SqlPointerStore(store)
    os.environ["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri

    def pyfunc() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")

    def no_mlflow() -> Tracker:
        raise AssertionError("the warm cache contacted MLflow")

    roots = iter(range(10_000))

    def cold() -> object:
        pointer = pointers.get("housing")
        assert pointer is not None
        return ModelCache(tmp / f"cold-{next(roots)}", lambda: tracker).load(pointer.ref)

    warm_root = tmp / "warm"

    def warm() -> object:
        pointer = pointers.get("housing")
        assert pointer is not None
        return ModelCache(warm_root, no_mlflow).load(pointer.ref)

    pointer = pointers.get("housing")
    assert pointer is not None
    assert tracker.alias_version("housing", CHAMPION) == pointer.version
    ModelCache(warm_root, lambda: tracker).load(pointer.ref)  # fill the warm cache
    pyfunc()  # first-call imports out of the figures
    times = {
        "pyfunc": timed(pyfunc, repeat),
        "cold": timed(cold, repeat),
        "warm": timed(warm, repeat * 4),
    }
    # Same predictions from both (the point of loading either).
    rows = pd.read_csv(csv).head(1000).drop(columns=[load_definition("housing").target.column])
    model = ModelCache(warm_root, no_mlflow).load(pointer.ref)
    ours = model.predict_columns(columns_of(rows, [f["name"] for f in model.spec["features"]]))
    theirs = np.asarray(pyfunc().predict(rows))  # type: ignore[attr-defined]
    np.testing.assert_allclose(theirs, ours, rtol=1e-9)
    store.dispose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MLPIPELINE_STACK_POSTGRES_URL")
        or os.environ.get("MLPIPELINE_TEST_POSTGRES_URL"),
        help="PostgreSQL role that may create databases (default: $MLPIPELINE_STACK_POSTGRES_URL "
        "or $MLPIPELINE_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="loads and trains per variant (medians)")
    args = parser.parse_args()
    if not args.csv.is_file():
        raise SystemExit(f"data file {args.csv} not found; pass --csv")
    if not args.postgres_url:
        raise SystemExit('PostgreSQL needed: pass --postgres-url "$(bash .ci/postgres.sh)"')
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    with tempfile.TemporaryDirectory(prefix="mlp-bench-") as tmp_name:
        tmp = Path(tmp_name)
        stack = Stack(
            StackConfig(
                postgres_url=args.postgres_url,
                database=f"mlp_bench_{secrets.token_hex(4)}",
                recreate_database=True,
                workdir=tmp / "stack",
            )
        )
        t0 = time.perf_counter()
        stack.start()
        started = time.perf_counter() - t0
        try:
            trains: dict[str, list[dict[str, float]]] = {"embedded": [], "stack": []}
            stack_settings = None
            for i in range(args.repeat):  # interleaved, in turn first, so the machine's drift hits both
                order = ["embedded", "stack"] if i % 2 == 0 else ["stack", "embedded"]
                for variant in order:
                    uri = stack.tracking_uri if variant == "stack" else None
                    settings, timings = one_train(args.csv, tmp / f"{variant}-{i}", uri)
                    trains[variant].append(timings)
                    if variant == "stack":
                        stack_settings = settings
            assert stack_settings is not None
            loads = load_benchmark(stack_settings, args.csv, tmp / "loads", args.repeat)
        finally:
            stack.stop()
            stack.drop_database()

    med = statistics.median
    print(f"stack: PostgreSQL backend store, moto S3, mlflow server (started in {started:.1f} s)")
    print()
    print(f"Loading the housing champion, median of {args.repeat} ({args.repeat * 4} warm)")
    warm = med(loads["warm"])
    rows = [
        ("mlflow.pyfunc.load_model(models:/…@champion)", loads["pyfunc"]),
        ("mlpipeline cache, cold (download + verify)", loads["cold"]),
        ("mlpipeline cache, warm (pointer + verify)", loads["warm"]),
    ]
    print(f"  {'':<46}{'median s':>10}{'min s':>10}{'× warm':>10}")
    for label, values in rows:
        print(f"  {label:<46}{med(values):>10.4f}{min(values):>10.4f}{med(values) / warm:>10.1f}")
    print()
    print(f"One train of 'housing' end to end, median of {args.repeat} (seconds)")
    steps = list(trains["embedded"][0])
    print(f"  {'step':<14}{'embedded':>10}{'stack':>10}{'stack/emb':>11}")
    for step in steps:
        e = med(t[step] for t in trains["embedded"])
        s = med(t[step] for t in trains["stack"])
        ratio = f"{s / e:>11.2f}" if e > 0.0005 else f"{'':>11}"
        print(f"  {step:<14}{e:>10.3f}{s:>10.3f}{ratio}")


if __name__ == "__main__":
    main()
