"""B12: past one process. Batch scoring on the pandas engine against Spark ``local[2]`` on the
same file, Spark's fixed start-up cost apart, the peak memory of ``score`` as the input grows,
and ``serve --workers 2`` against one worker under 8 clients.

Every figure comes from the real command run as a child process (``mlpipeline score``,
``mlpipeline serve``), as a user runs it. Peak memory is the largest resident set among the
processes the command waited for (for Spark: the Python driver; the JVM is not counted),
read from ``getrusage`` in a wrapper process that runs only that command. The HTTP load comes
from ``wrk`` when installed (Debian's package): a Python client would take a core of the two
for itself and hide what a second worker adds.

    .venv/bin/python -m benchmarks.scaling [--rows 1000000] [--big-rows 4000000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.serving import BIN, child_env, free_port, records_of, setup, start, stop, throughput
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.settings import Settings

_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(done.stdout + done.stderr)\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(done.returncode, time.perf_counter() - t, peak)\n"
)


def measured(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Seconds, peak RSS (MB) and output of ``cmd``, in a wrapper process of its own."""
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *cmd], env=env, cwd=cwd, capture_output=True, text=True, check=True
    )
    code, seconds, kb = done.stdout.split()
    if int(code) != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} exited with {code}: {done.stderr[-500:]}")
    return {"seconds": float(seconds), "peak_mb": int(kb) / 1024, "output": done.stderr}


def input_file(folder: Path, rows: int) -> Path:
    path = folder / f"orders-{rows}.csv"
    if not path.exists():
        days = max(1, rows // 200_000)
        frame = generate_stream(StreamConfig(rows_per_day=rows // days, seed=7), days)
        frame.drop(columns=["delivery_minutes"]).to_csv(path, index=False)
    return path


def score(settings: Settings, source: Path, engine: str, work: Path) -> dict[str, float]:
    cmd = [
        str(BIN / "mlpipeline"),
        "score",
        str(source),
        "-f",
        "demo",
        "-o",
        str(work / f"out-{engine}.parquet"),
    ]
    cmd += ["--engine", engine, "--spark-master", "local[2]"]
    return measured(cmd, child_env(settings, PYTHONWARNINGS="ignore"), work)


def engines(work: Path, rows: int, big_rows: int) -> dict[str, Any]:
    settings, _, _ = setup(work / "home", None)
    out: dict[str, Any] = {"rows": rows, "big_rows": big_rows}
    one_m = input_file(work, rows)
    small = input_file(work, 100)
    out["pandas"] = score(settings, one_m, "pandas", work)
    out["spark"] = score(settings, one_m, "spark", work)
    out["spark_fixed"] = score(settings, small, "spark", work)
    out["pandas_big"] = score(settings, input_file(work, big_rows), "pandas", work)
    return out


def wrk_rps(url: str, body: bytes, clients: int, seconds: float, work: Path) -> float:
    """Requests/s from wrk (a C load generator: the client takes little of the 2 cores)."""
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds:.0f}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for line in done.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"wrk printed no rate: {done.stdout[-300:]}")


def workers(work: Path, clients: int = 8, seconds: float = 5.0, rounds: int = 3) -> dict[str, Any]:
    """Requests/s of ``--workers 1`` and ``2``, both servers up, measured in alternation and
    each keeping its best round (this machine's CPU is shared: steal time comes and goes)."""
    settings, name, frame = setup(work / "serve-home", None)
    bodies = [json.dumps([r]).encode() for r in records_of(frame)[:500]]
    env = child_env(settings, PYTHONWARNINGS="ignore", MLPIPELINE_PREDICTION_LOG="false")
    client = "wrk" if shutil.which("wrk") else "python threads"
    out: dict[str, Any] = {"client": client}
    servers = {}
    try:
        for n in (1, 2):
            port = free_port()
            servers[n] = (
                f"http://127.0.0.1:{port}/predict",
                start(
                    [str(BIN / "mlpipeline"), "serve", "-f", name, "--port", str(port), "--workers", str(n)],
                    env,
                    f"http://127.0.0.1:{port}/health",
                    work,
                ),
            )
            throughput(servers[n][0], bodies, clients, 1.0)  # warm every worker
        for _ in range(rounds):
            for n, (url, _) in servers.items():
                if client == "wrk":
                    rate = wrk_rps(url, bodies[0], clients, seconds, work)
                else:
                    rate = throughput(url, bodies, clients, seconds)
                out[f"workers {n}"] = max(out.get(f"workers {n}", 0.0), rate)
    finally:
        for _, proc in servers.values():
            stop(proc)
    return out


def training(work: Path, rows: int) -> dict[str, Any]:
    """``train`` on ``rows`` stored rows of the synthetic stream, locally and on a Dask
    LocalCluster of two workers: seconds, the driver's peak memory, the holdout R²."""
    import re

    from benchmarks.serving import local_settings
    from mlpipeline.featuresets.definition import load_definition
    from mlpipeline.featurestore.ingest import ingest_frame
    from mlpipeline.featurestore.sql import open_store

    settings = local_settings(work / "train-home")
    d = load_definition("demo")
    store = open_store(settings)
    store.create_schema([d])
    days = max(1, rows // 200_000)
    ingest_frame(store, d, generate_stream(StreamConfig(rows_per_day=rows // days, seed=11), days))
    store.dispose()
    env = child_env(settings, PYTHONWARNINGS="ignore")
    out: dict[str, Any] = {"rows": rows}
    for engine in ("local", "dask"):
        cmd = [str(BIN / "mlpipeline"), "train", "-f", "demo", "--engine", engine, "-r", f"B12 {engine}"]
        r = measured(cmd, env, work)
        found = re.search(r"holdout R² ([0-9.-]+)", r["output"])
        r["r2"] = float(found.group(1)) if found else float("nan")
        out[engine] = r
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=4_000_000)
    parser.add_argument("--train-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlpipeline-scaling-") as tmp:
        work = Path(tmp)
        t = training(work, args.train_rows)
        e = engines(work, args.rows, args.big_rows)
        w = workers(work)
    print(f"train on {t['rows']:,} stored rows: local vs Dask LocalCluster (2 workers)")
    for engine in ("local", "dask"):
        r = t[engine]
        peak, r2 = r["peak_mb"], r["r2"]
        print(f"  {engine:<6} {r['seconds']:7.1f} s  driver peak {peak:,.0f} MB  holdout R² {r2:.4f}")
    pandas_rate = e["rows"] / e["pandas"]["seconds"]
    spark_rate = e["rows"] / e["spark"]["seconds"]
    spark_warm = e["rows"] / max(e["spark"]["seconds"] - e["spark_fixed"]["seconds"], 1e-9)
    print(f"score {e['rows']:,} rows (CSV -> Parquet), pandas engine vs Spark local[2]")
    for label, key, rate in (
        ("pandas engine", "pandas", pandas_rate),
        ("Spark local[2]", "spark", spark_rate),
    ):
        r = e[key]
        print(f"  {label:<15} {r['seconds']:7.1f} s  {rate:9,.0f} rows/s  driver peak {r['peak_mb']:,.0f} MB")
    fixed = e["spark_fixed"]["seconds"]
    print(f"  Spark fixed cost (100 rows): {fixed:.1f} s; beyond it {spark_warm:,.0f} rows/s")
    print(
        f"  pandas engine peak memory: {e['pandas']['peak_mb']:,.0f} MB at {e['rows']:,} rows, "
        f"{e['pandas_big']['peak_mb']:,.0f} MB at {e['big_rows']:,} rows "
        f"({e['pandas_big']['seconds']:.1f} s)"
    )
    print(f"serve under 8 clients, best of 3 rounds of 5 s (requests/s; load from {w['client']})")
    print(f"  --workers 1  {w['workers 1']:8,.0f}")
    print(f"  --workers 2  {w['workers 2']:8,.0f}  ({w['workers 2'] / w['workers 1']:.2f}x)")


if __name__ == "__main__":
    main()
