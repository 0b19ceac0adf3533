"""The CT loop against the real stack: PostgreSQL backend store, S3 artifacts, ``mlflow server``.

ingest → train → register → promote → load through the model cache (cold, then warm with no
MLflow at all) → predict (cache model, predictor and MLflow's own pyfunc agree) → more data →
retrain → promote → the predictor swaps → drifted data → check (metrics on the new labels, the
series logged to the monitoring experiment) → retrain. What the client says is checked against where it
lands: the artifacts in the bucket through boto3, the registry in MLflow's PostgreSQL tables.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from mlpipeline.featuresets.definition import Definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.monitoring.check import run_check
from mlpipeline.registry.digests import digest, manifest_of_bytes
from mlpipeline.registry.model_cache import ModelCache
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.tracking import CHAMPION, Tracker
from mlpipeline.serving.predictor import Predictor
from mlpipeline.stack import Stack
from mlpipeline.training.pipeline import train
from mlpipeline.training.steps import columns_of

from .conftest import demo_store, stack_settings

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]


def registry_rows(stack: Stack, name: str) -> dict[str, Any]:
    """What MLflow's own tables in PostgreSQL say about registered model ``name``."""
    engine = stack.backend_engine()
    try:
        with engine.connect() as conn:
            versions = conn.execute(
                text(
                    "SELECT version, status, run_id, source FROM model_versions "
                    "WHERE name = :name ORDER BY version"
                ),
                {"name": name},
            ).all()
            aliases = conn.execute(
                text("SELECT alias, version FROM registered_model_aliases WHERE name = :name"),
                {"name": name},
            ).all()
            digests = conn.execute(
                text("SELECT version, value FROM model_version_tags WHERE name = :name AND key = 'sha256'"),
                {"name": name},
            ).all()
            runs = conn.execute(
                text(
                    "SELECT run_uuid, status FROM runs "
                    "WHERE run_uuid IN (SELECT run_id FROM model_versions WHERE name = :name)"
                ),
                {"name": name},
            ).all()
    finally:
        engine.dispose()
    return {
        "versions": [(int(v.version), v.status, v.run_id, v.source) for v in versions],
        "aliases": {a.alias: int(a.version) for a in aliases},
        "digests": {int(d.version): d.value for d in digests},
        "runs": {r.run_uuid: r.status for r in runs},
    }


def bucket_files(stack: Stack, artifact_uri: str, path: str) -> dict[str, bytes]:
    """The objects under ``<run artifacts>/<path>/`` in the bucket, by relative path."""
    parsed = urlparse(artifact_uri)
    assert parsed.scheme == "mlflow-artifacts", artifact_uri  # proxied: clients hold no S3 keys
    prefix = f"{parsed.path.strip('/')}/{path}/"
    s3 = stack.s3_client()
    files: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.config.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=stack.config.bucket, Key=obj["Key"])["Body"].read()
            files[obj["Key"][len(prefix) :]] = body
    return files


def records(frame: pd.DataFrame, d: Definition) -> list[dict[str, Any]]:
    names = [d.entity_key.column, *d.features]
    return [
        {k: (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)) for k, v in r.items()}
        for r in frame[names].to_dict("records")
    ]


def test_ct_loop_against_the_stack(
    mlflow_stack: Stack,
    featurestore_url: str,
    tmp_path: Path,
    demo_def: Definition,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = stack_settings(tmp_path, mlflow_stack, featurestore_url)
    store: SqlFeatureStore = demo_store(settings, demo_def)
    pointers = SqlPointerStore(store)
    tracker = Tracker(settings)
    name = tracker.model_name("demo")

    # -- train, register, promote ---------------------------------------------------------
    first = train(settings, store, demo_def, reason="stack e2e")
    assert first.version == "1"
    assert first.decision is not None
    assert first.decision.action == "promote"
    pointer = pointers.get("demo")
    assert pointer is not None
    assert pointer.version == "1"
    assert tracker.alias_version("demo", CHAMPION) == "1"

    # The registry, as PostgreSQL holds it.
    registry = registry_rows(mlflow_stack, name)
    assert registry["aliases"] == {"champion": 1}
    assert [(v, status) for v, status, *_ in registry["versions"]] == [(1, "READY")]
    assert registry["versions"][0][2] == first.run_id
    assert registry["digests"] == {1: pointer.sha256}
    assert registry["runs"] == {first.run_id: "FINISHED"}

    # The artifacts, as the bucket holds them: exactly the registered bytes.
    run = tracker.client.get_run(first.run_id)
    model_files = bucket_files(mlflow_stack, run.info.artifact_uri, "model")
    assert {"MLmodel", "artifacts/model.txt", "artifacts/features.json", "requirements.txt"} <= set(
        model_files
    )
    assert digest(manifest_of_bytes(model_files)) == pointer.sha256
    assert "explainer.json" in bucket_files(mlflow_stack, run.info.artifact_uri, "explainer")

    # -- serve through the cache: cold (download through the server), then warm (no MLflow)
    cache_root = tmp_path / "serving-cache"
    downloads: list[Tracker] = []

    def tracker_factory() -> Tracker:
        downloads.append(Tracker(settings))
        return downloads[-1]

    def no_mlflow() -> Tracker:
        raise AssertionError("a warm cache must not contact MLflow")

    t0 = time.perf_counter()
    cold = ModelCache(cache_root, tracker_factory).load(pointer.ref)
    cold_s = time.perf_counter() - t0
    assert len(downloads) == 1
    t0 = time.perf_counter()
    warm = ModelCache(cache_root, no_mlflow).load(pointer.ref)
    warm_s = time.perf_counter() - t0
    assert warm_s < cold_s
    assert (cache_root / name / "1" / "model" / "artifacts" / "model.txt").read_bytes() == model_files[
        "artifacts/model.txt"
    ]

    # -- predict: the cached model, the predictor and MLflow's pyfunc through the server agree
    fresh = generate_stream(StreamConfig(rows_per_day=60, seed=11), 1, first_day=3)
    feature_names = [f["name"] for f in warm.spec["features"]]
    ours = warm.predict_columns(columns_of(fresh, feature_names))
    np.testing.assert_array_equal(ours, cold.predict_columns(columns_of(fresh, feature_names)))

    predictor = Predictor("demo", pointers, ModelCache(cache_root, no_mlflow), poll_s=3600)
    try:
        served = predictor.predict_records(records(fresh, demo_def))
        assert served.version == "1"
        np.testing.assert_allclose(served.values, ours, rtol=1e-12)

        monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_stack.tracking_uri)
        (tmp_path / "pyfunc").mkdir()
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}", dst_path=str(tmp_path / "pyfunc"))
        theirs = np.asarray(pyfunc.predict(fresh[[demo_def.entity_key.column, *demo_def.features]]))
        np.testing.assert_allclose(theirs, ours, rtol=1e-9)

        # -- more data, retrain, promote: the predictor swaps to the new champion ---------
        ingest_frame(store, demo_def, generate_stream(StreamConfig(rows_per_day=400), 2, first_day=3))
        second = train(
            settings.model_copy(update={"min_improvement": -1.0}), store, demo_def, reason="new data"
        )
        assert second.version == "2"
        assert second.decision is not None
        assert second.decision.action == "promote"
        assert second.champion_version == "1"
        assert pointers.get("demo") is not None
        assert tracker.alias_version("demo", CHAMPION) == "2"
        registry = registry_rows(mlflow_stack, name)
        assert registry["aliases"] == {"champion": 2}
        assert [v for v, *_ in registry["versions"]] == [1, 2]
        assert set(registry["runs"].values()) == {"FINISHED"}
        # train downloaded v2 into the cache before promoting it; the predictor needs no MLflow
        predictor.cache = ModelCache(settings.home / "models", no_mlflow)
        assert predictor.refresh()
        assert predictor.predict_records(records(fresh, demo_def)).version == "2"
        history = pointers.history("demo")
        assert [(h.action, h.from_version, h.to_version) for h in history] == [
            ("promote", "1", "2"),
            ("promote", None, "1"),
        ]

        # -- the world drifts; a check measures the champion on the new labels and retrains --
        drifted = generate_stream(StreamConfig(rows_per_day=400, drift_day=5), 2, first_day=5)
        ingest_frame(store, demo_def, drifted)
        check = run_check(settings, store, demo_def, manual=True)
        assert check.metrics is not None
        assert check.n_rows > 0
        assert check.model_version == "2"
        assert check.decision is not None
        assert check.decision.retrain
        assert check.retrain.get("version") == "3", check.retrain
        assert check.mlflow_error is None  # the monitoring series went to the tracking server
        pointer = pointers.get("demo")
        assert pointer is not None
        assert tracker.alias_version("demo", CHAMPION) == pointer.version  # promoted or held: consistent
        registry = registry_rows(mlflow_stack, name)
        assert [v for v, *_ in registry["versions"]] == [1, 2, 3]
        assert registry["aliases"] == {"champion": int(pointer.version)}
        engine = mlflow_stack.backend_engine()
        try:
            with engine.connect() as conn:
                series = conn.execute(
                    text(
                        "SELECT count(*) FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid "
                        "JOIN experiments e ON e.experiment_id = r.experiment_id "
                        "WHERE e.name = :name AND m.key = 'data/rows_judged'"
                    ),
                    {"name": f"{name}-monitoring"},
                ).scalar_one()
        finally:
            engine.dispose()
        assert series == 1
    finally:
        predictor.close()
        store.dispose()
