"""MLflow's own scoring server on a classifier champion answers like mlpipeline: classes, and
each class's probability with ``"params": {"output": "probabilities"}``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.serving.predictor import open_predictor
from mlpipeline.settings import Settings
from mlpipeline.training.pipeline import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mlflow_models_serve_answers_with_classes_and_probabilities(
    settings: Settings, tmp_path: Path
) -> None:
    d = load_definition("demo_late")
    config = StreamConfig(rows_per_day=1_500)
    rows = generate_stream(config, 3)
    store = open_store(settings)
    try:
        store.create_schema([d])
        ingest_frame(store, d, rows)
        trained = train(settings, store, d, reason="served by mlflow", as_of=config.start + timedelta(days=4))
    finally:
        store.dispose()
    assert trained.decision is not None
    assert trained.decision.action == "promote", trained.decision.reason
    sample = rows[list(d.features)].head(5).astype({"distance_km": float, "temperature_c": float})
    sample = sample.astype(object).where(sample.notna(), None)
    split = {"columns": list(sample.columns), "data": sample.values.tolist()}

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPELINE_")}
    env.update(
        MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri,
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # mlflow models serve runs 'uvicorn'
        PYTHONWARNINGS="ignore",
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"), "models", "serve", "-m", "models:/mlpipeline-demo_late@champion",
            "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1", "-w", "1",
        ],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            try:
                if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not start"
            time.sleep(0.3)
        labels = httpx.post(f"{base}/invocations", json={"dataframe_split": split}, timeout=30)
        assert labels.status_code == 200, labels.text
        proba = httpx.post(
            f"{base}/invocations",
            json={"dataframe_split": split, "params": {"output": "probabilities"}},
            timeout=30,
        )
        assert proba.status_code == 200, proba.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    with open_predictor(settings, "demo_late", log_predictions=False) as predictor:
        ours = predictor.predict_records(rows[list(d.features)].head(5).to_dict("records"))
    assert ours.probabilities is not None
    assert labels.json()["predictions"] == ours.labels
    theirs = np.array([[p["0"], p["1"]] for p in proba.json()["predictions"]])
    np.testing.assert_allclose(theirs, ours.probabilities, rtol=1e-9)
