"""Serving, side by side on one model in one run: in-process predict, model load, HTTP latency.

Trains the housing model (or the synthetic 'demo' one with ``--synthetic``) into a fresh
embedded store, then measures against the anchors a user would otherwise use:

* single-row predict: mlpipeline's predictor on a JSON-like record (validation and derived
  features included) vs raw ``lightgbm.Booster.predict`` on a fresh one-row numpy array of
  the finished features vs ``mlflow.pyfunc`` ``predict`` on a one-row DataFrame;
* model load: mlpipeline's warm cache (every file hashed and checked) vs raw
  ``lightgbm.Booster(model_file=…)`` vs ``mlflow.pyfunc.load_model("models:/…@champion")``;
* HTTP single-row latency (p50/p99) with one client, and throughput with 8 concurrent
  clients: ``mlpipeline serve`` vs ``mlflow models serve`` (one worker each, same model).

    .venv/bin/python -m benchmarks.serving [--csv PATH | --synthetic] [--requests 2000]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from mlpipeline.featuresets import portable
from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.ingest import ingest_file, ingest_frame
from mlpipeline.featurestore.sql import open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.serving.predictor import open_predictor
from mlpipeline.settings import Settings
from mlpipeline.training.pipeline import train

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "california_housing.csv"
BIN = Path(sys.executable).parent


def per_call_us(fn: Callable[[int], Any], n: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean time per call (µs), after a warm-up."""
    for i in range(min(n, 200)):
        fn(i)
    results = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(n):
            fn(i)
        results.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(results)


def local_settings(home: Path, **extra: Any) -> Settings:
    """The embedded default under ``home``: SQLite feature store, local MLflow store, no .env."""
    return Settings(
        home=home,
        featurestore_url=f"sqlite:///{home / 'fs.db'}",
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        mlflow_artifact_root=str(home / "mlflow" / "artifacts"),
        log_dir=home / "logs",
        _env_file=None,  # type: ignore[call-arg]
        **extra,
    )


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment with ``settings`` as MLPIPELINE_* variables, for a child CLI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPELINE_")}
    env.update(
        MLPIPELINE_HOME=str(settings.home),
        MLPIPELINE_FEATURESTORE_URL=settings.featurestore_url,
        MLPIPELINE_MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri,
        MLPIPELINE_MLFLOW_ARTIFACT_ROOT=settings.mlflow_artifact_root,
        MLPIPELINE_LOG_DIR=str(settings.log_dir),
        **extra,
    )
    return env


def setup(home: Path, csv: Path | None, featureset: str | None = None) -> tuple[Settings, str, pd.DataFrame]:
    """A trained champion: housing from ``csv``, else ``featureset`` (default ``demo``) on five
    days of the synthetic stream; the settings, its name and 2,000 rows of its raw features."""
    settings = local_settings(home)
    name = "housing" if csv else featureset or "demo"
    d = load_definition(name)
    store = open_store(settings)
    store.create_schema([d])
    if csv:
        ingest_file(store, d, csv)
        raw = pd.read_csv(csv)
    else:
        raw = generate_stream(StreamConfig(rows_per_day=2000), 5)
        ingest_frame(store, d, raw)
    result = train(settings, store, d, reason="benchmark")
    store.dispose()
    assert result.decision is not None
    assert result.decision.action == "promote", result.decision
    return settings, name, raw[list(d.features)].head(2000).reset_index(drop=True)


def records_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in frame.to_dict("records")]


def in_process(settings: Settings, name: str, frame: pd.DataFrame, n: int) -> dict[str, float]:
    import mlflow

    records = records_of(frame)
    with open_predictor(settings, name, log_predictions=False) as predictor:
        serving = predictor.current()
        booster = serving.model.model
        rows = [
            portable.build_matrix(serving.model.spec, {c: [r[c]] for c in frame.columns}) for r in records
        ]
        k = len(records)
        ours = per_call_us(lambda i: predictor.predict_records(records[i % k]), n)
        raw = per_call_us(lambda i: booster.predict(np.array(rows[i % k])), n)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/mlpipeline-{name}@champion")
    frames = [frame.iloc[[i]] for i in range(min(k, 500))]
    pyfunc = per_call_us(lambda i: model.predict(frames[i % len(frames)]), max(n // 10, 200), repeats=3)
    return {"ours": ours, "raw": raw, "pyfunc": pyfunc}


def loading(settings: Settings, name: str) -> dict[str, float]:
    import lightgbm
    import mlflow

    with open_predictor(settings, name, log_predictions=False) as predictor:
        pointer = predictor.current().pointer
        cache = predictor.cache
        model_txt = cache.folder(pointer.ref) / "model" / "artifacts" / "model.txt"
        ours = per_call_us(lambda _: cache.load(pointer.ref), 30, repeats=3) / 1000
    raw = per_call_us(lambda _: lightgbm.Booster(model_file=str(model_txt)), 30, repeats=3) / 1000
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    uri = f"models:/mlpipeline-{name}@champion"
    pyfunc = per_call_us(lambda _: mlflow.pyfunc.load_model(uri), 10, repeats=3) / 1000
    return {"ours": ours, "raw": raw, "pyfunc": pyfunc}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], env: dict[str, str], url: str, cwd: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{' '.join(cmd[:3])} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def latency(url: str, bodies: list[bytes], n: int) -> tuple[float, float]:
    timings = []
    with httpx.Client(timeout=10, headers={"content-type": "application/json"}) as client:
        for i in range(n + 100):
            started = time.perf_counter()
            r = client.post(url, content=bodies[i % len(bodies)])
            elapsed = time.perf_counter() - started
            if r.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {r.status_code}: {r.text[:200]}")
            if i >= 100:
                timings.append(elapsed * 1000)
    q = np.percentile(timings, [50, 99])
    return float(q[0]), float(q[1])


def throughput(url: str, bodies: list[bytes], clients: int, seconds: float) -> float:
    done = [0] * clients
    stop_at = time.monotonic() + seconds

    def work(j: int) -> None:
        with httpx.Client(timeout=10, headers={"content-type": "application/json"}) as client:
            i = j
            while time.monotonic() < stop_at:
                client.post(url, content=bodies[i % len(bodies)]).raise_for_status()
                done[j] += 1
                i += clients

    threads = [threading.Thread(target=work, args=(j,)) for j in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


def http(settings: Settings, name: str, frame: pd.DataFrame, n: int, work: Path) -> dict[str, Any]:
    import json

    records = records_of(frame)[:500]
    columns = list(frame.columns)
    ours_body = [json.dumps([r]).encode() for r in records]
    split_body = [
        json.dumps({"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns]]}}).encode()
        for r in records
    ]
    env = child_env(
        settings,
        MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri,
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow models serve runs 'uvicorn'
        PYTHONWARNINGS="ignore",
    )
    out: dict[str, Any] = {}
    port = free_port()
    proc = start(
        [str(BIN / "mlpipeline"), "serve", "-f", name, "--port", str(port)],
        env,
        f"http://127.0.0.1:{port}/health",
        work,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        out["ours /predict"] = latency(f"{base}/predict", ours_body, n)
        out["ours /invocations split"] = latency(f"{base}/invocations", split_body, n)
        out["ours 8 clients rps"] = throughput(f"{base}/predict", ours_body, 8, 5)
    finally:
        stop(proc)
    port = free_port()
    proc = start(
        [
            str(BIN / "mlflow"), "models", "serve", "-m", f"models:/mlpipeline-{name}@champion",
            "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1", "-w", "1",
        ],
        env,
        f"http://127.0.0.1:{port}/ping",
        work,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        out["mlflow /invocations split"] = latency(f"{base}/invocations", split_body, n)
        out["mlflow 8 clients rps"] = throughput(f"{base}/invocations", split_body, 8, 5)
    finally:
        stop(proc)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--synthetic", action="store_true", help="use the synthetic demo stream")
    parser.add_argument("--requests", type=int, default=2000, help="HTTP requests per latency run")
    parser.add_argument("--calls", type=int, default=3000, help="in-process calls per timing")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    logging.captureWarnings(True)  # library warnings go to (disabled) logging, not the table
    warnings.filterwarnings("ignore")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    csv = None if args.synthetic or not args.csv.is_file() else args.csv
    with tempfile.TemporaryDirectory(prefix="mlpipeline-bench-") as tmp:
        work = Path(tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            settings, name, frame = setup(work / "dur", csv)
        print(
            f"model: mlpipeline-{name} ({'housing CSV' if csv else 'synthetic demo'}), {os.cpu_count()} cores"
        )

        r = in_process(settings, name, frame, args.calls)
        print("\nsingle-row predict, in process (µs per call, median of 5 runs)")
        print(f"  mlpipeline predictor (record dict)  {r['ours']:9.1f}")
        ratio = r["ours"] / r["raw"]
        print(f"  raw Booster.predict (numpy row)     {r['raw']:9.1f}   ours/raw = {ratio:.2f} (<= 2)")
        speedup = r["pyfunc"] / r["ours"]
        print(
            f"  mlflow.pyfunc predict (1-row frame) {r['pyfunc']:9.1f}   pyfunc/ours = {speedup:.1f} (>= 5)"
        )

        load = loading(settings, name)
        print("\nmodel load (ms)")
        print(f"  mlpipeline warm cache (verified)    {load['ours']:9.2f}")
        ratio = load["ours"] / load["raw"]
        print(f"  raw Booster(model_file=...)         {load['raw']:9.2f}   ours/raw = {ratio:.2f} (<= 5)")
        speedup = load["pyfunc"] / load["ours"]
        print(
            f"  mlflow.pyfunc.load_model(@champion) {load['pyfunc']:9.2f}   pyfunc/ours = {speedup:.1f} (>=5)"
        )

        h = http(settings, name, frame, args.requests, work)
        print(f"\nHTTP single row on loopback, one client, {args.requests} requests (ms: p50, p99)")
        for key in ("ours /predict", "ours /invocations split", "mlflow /invocations split"):
            p50, p99 = h[key]
            print(f"  {key:30s} {p50:7.3f} {p99:7.3f}")
        ours50, ours99 = h["ours /invocations split"]
        theirs50, theirs99 = h["mlflow /invocations split"]
        print(f"  same body: ours/mlflow p50 = {ours50 / theirs50:.2f}, p99 = {ours99 / theirs99:.2f} (< 1)")
        print("\nHTTP throughput, 8 concurrent clients for 5 s (requests/s)")
        ours_rps, theirs_rps = h["ours 8 clients rps"], h["mlflow 8 clients rps"]
        print(f"  mlpipeline serve    {ours_rps:8.0f}")
        print(f"  mlflow models serve {theirs_rps:8.0f}   ours/mlflow = {ours_rps / theirs_rps:.2f}")


if __name__ == "__main__":
    main()
