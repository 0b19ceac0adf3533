"""The prediction API under load while the production model changes.

``mlpipeline serve`` runs as its own process; N client threads send single-row ``/predict``
requests as fast as it answers for S seconds; after a third of them, ``mlpipeline promote`` moves the
pointer to another version in a separate process. It reports every error (any non-200 or
transport failure), latency percentiles before, around and after the swap, when the new
version was first served, and the server's resident memory sampled every second::

    python -m benchmarks.load_hot_swap [--seconds 60] [--clients 8]

Without ``--home`` it builds a demo home first (two versions, the first in production).
The test suite runs :func:`run_load` for a few seconds on its own trained home.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from benchmarks.serving import child_env, free_port, local_settings, records_of, start, stop
from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.promotion import Promoter
from mlpipeline.registry.tracking import Tracker
from mlpipeline.settings import Settings
from mlpipeline.training.pipeline import train

CLI = str(Path(sys.executable).with_name("mlpipeline"))
POLL_S = 1.0


@dataclass
class LoadReport:
    seconds: float
    clients: int
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    swap_p99_ms: float = 0.0  # the two seconds after the promotion
    requests_per_s: float = 0.0
    promoted_after_s: float = 0.0
    first_new_version_after_s: float | None = None  # after the promote command returned
    first_new_version_after_pointer_s: float | None = None  # after the pointer row was written
    served_old_after_new: int = 0
    rss_mb: list[float] = field(default_factory=list)

    @property
    def rss_growth_mb(self) -> float:
        """Median resident memory of the last quarter minus that of the second quarter."""
        n = len(self.rss_mb)
        if n < 4:
            return 0.0
        q = n // 4
        return statistics.median(self.rss_mb[3 * q :]) - statistics.median(self.rss_mb[q : 2 * q])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_load(
    settings: Settings,
    featureset: str,
    records: list[dict[str, Any]],
    *,
    to_version: str,
    seconds: float = 60,
    clients: int = 8,
    poll_s: float = 1.0,
    work: Path,
) -> LoadReport:
    """Load ``mlpipeline serve`` for ``seconds``; promote ``to_version`` after a third of them."""
    env = child_env(settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [CLI, "serve", "-f", featureset, "--port", str(port), "--poll", str(poll_s)]
    server = start(command, env, f"{url}/health", work)
    report = LoadReport(seconds, clients)
    samples: list[list[tuple[float, float, str | None]]] = [[] for _ in range(clients)]
    errors: list[str] = []
    done = threading.Event()  # set after ``seconds``, and not before the swap has been seen
    started = time.monotonic()
    started_wall = time.time()

    def client(j: int) -> None:
        bodies = [json.dumps([r]).encode() for r in records[j::clients] or records]
        with httpx.Client(base_url=url, timeout=10, headers={"content-type": "application/json"}) as http:
            i = 0
            while not done.is_set():
                t0 = time.perf_counter()
                try:
                    r = http.post("/predict", content=bodies[i % len(bodies)])
                    elapsed = (time.perf_counter() - t0) * 1000
                    if r.status_code != 200:
                        errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                        continue
                    samples[j].append((time.monotonic() - started, elapsed, r.json()["model"]["version"]))
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                i += 1

    def memory() -> None:
        while not done.wait(1.0):
            report.rss_mb.append(rss_mb(server.pid))

    threads = [threading.Thread(target=client, args=(j,)) for j in range(clients)]
    threads.append(threading.Thread(target=memory))
    try:
        for t in threads:
            t.start()
        time.sleep(seconds / 3)
        promoted = subprocess.run(
            [CLI, "promote", to_version, "-f", featureset, "-r", "load test"],
            env=env, cwd=work, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        report.promoted_after_s = time.monotonic() - started
        if promoted.returncode != 0:
            errors.append(f"promote failed: {promoted.stderr.strip()[-300:]}")
        # Run the whole ``seconds``, and at least two poll intervals past the promotion.
        time.sleep(max(seconds - (time.monotonic() - started), 2 * poll_s + 1.0))
    finally:
        done.set()
        for t in threads:
            t.join()
        stop(server)
    report.seconds = time.monotonic() - started
    merged = sorted(s for per in samples for s in per)
    report.errors = errors
    report.requests = len(merged) + len(errors)
    if merged:
        latencies = np.array([ms for _, ms, _ in merged])
        report.p50_ms, report.p99_ms = (float(v) for v in np.percentile(latencies, [50, 99]))
        report.max_ms = float(latencies.max())
        window = [ms for t, ms, _ in merged if report.promoted_after_s <= t <= report.promoted_after_s + 2]
        report.swap_p99_ms = float(np.percentile(window, 99)) if window else 0.0
        report.requests_per_s = len(merged) / report.seconds
        first_new = next((t for t, _, v in merged if v == to_version), None)
        if first_new is not None:
            report.first_new_version_after_s = first_new - report.promoted_after_s
            moved = _pointer_moved_at(settings, featureset)
            if moved is not None:
                report.first_new_version_after_pointer_s = started_wall + first_new - moved
            late = [v for t, _, v in merged if t > first_new + 0.05]
            report.served_old_after_new = sum(1 for v in late if v != to_version)
    return report


def _pointer_moved_at(settings: Settings, featureset: str) -> float | None:
    """When the production pointer was last written (epoch seconds)."""
    from datetime import UTC

    store = open_store(settings)
    try:
        pointer = SqlPointerStore(store).get(featureset)
    finally:
        store.dispose()
    if pointer is None or pointer.promoted_at is None:
        return None
    return pointer.promoted_at.replace(tzinfo=UTC).timestamp()


def build_home(home: Path) -> tuple[Settings, list[dict[str, Any]]]:
    """A demo home with version 1 in production and version 2 registered beside it."""
    settings = local_settings(home)
    d = load_definition("demo")
    store = open_store(settings)
    store.create_schema([d])
    stream = generate_stream(StreamConfig(rows_per_day=1_000, seed=7), 4)
    first = stream[stream["ordered_at"] < stream["ordered_at"].min() + pd.Timedelta(days=2)]
    ingest_frame(store, d, first)
    train(settings, store, d, reason="load test v1")
    ingest_frame(store, d, stream.drop(first.index))
    train(settings, store, d, reason="load test v2")
    pointers = SqlPointerStore(store)
    current = pointers.get("demo")
    if current is not None and current.version == "2":
        Promoter(Tracker(settings), pointers).rollback("demo", reason="the load test promotes v2")
    store.dispose()
    return settings, records_of(stream[[d.entity_key.column, *d.features]].head(2_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory(prefix="mlpipeline-load-") as tmp:
        work = Path(tmp)
        settings, records = build_home(work / "dur")
        report = run_load(
            settings,
            "demo",
            records,
            to_version="2",
            seconds=args.seconds,
            clients=args.clients,
            poll_s=POLL_S,
            work=work,
        )
    summary = asdict(report)
    summary["rss_mb"] = [round(v, 1) for v in report.rss_mb]
    summary["rss_growth_mb"] = round(report.rss_growth_mb, 1)
    summary["errors"] = report.errors[:20]
    summary["error_count"] = len(report.errors)
    sys.stdout.write(json.dumps(summary, indent=1) + "\n")
    sys.stdout.write(
        f"\n{report.requests:,} requests in {report.seconds:g} s from {report.clients} clients "
        f"({report.requests_per_s:,.0f}/s), {len(report.errors)} errors; "
        f"p50 {report.p50_ms:.2f} ms, p99 {report.p99_ms:.2f} ms, max {report.max_ms:.1f} ms; "
        f"p99 in the 2 s after the promotion {report.swap_p99_ms:.2f} ms; new version first served "
        f"{report.first_new_version_after_pointer_s or float('nan'):.2f} s after the pointer moved "
        f"(poll {POLL_S:g} s), old version served after that: {report.served_old_after_new} times; "
        f"server RSS "
        f"{min(report.rss_mb, default=0):.0f}–{max(report.rss_mb, default=0):.0f} MB, "
        f"growth {report.rss_growth_mb:+.1f} MB (last quarter vs second)\n"
    )


if __name__ == "__main__":
    main()
