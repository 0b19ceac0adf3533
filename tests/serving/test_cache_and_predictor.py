"""Model cache (download once, verify, repair, refuse) and the predictor (hot swap, log, explain)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from mlpipeline.errors import DataValidationError, ModelIntegrityError, NotFoundError
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.registry.model_cache import SHA_TAG, ModelCache
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.promotion import Promoter
from mlpipeline.registry.tracking import Tracker
from mlpipeline.serving.prediction_log import PredictionLog
from mlpipeline.serving.predictor import Predictor
from tests.trained_home import Trained

pytestmark = pytest.mark.slow


class CountingTracker(Tracker):
    """The real tracker, counting downloads (the cache must not download a warm model)."""

    downloads = 0

    def download(self, run_id: str, path: str, dst: Path) -> Path:
        type(self).downloads += 1
        return super().download(run_id, path, dst)


@pytest.fixture
def counting(trained: Trained) -> CountingTracker:
    CountingTracker.downloads = 0
    return CountingTracker(trained.settings)


def cold_cache(trained: Trained, tracker: Tracker) -> ModelCache:
    root = trained.settings.home / "cold-models"
    return ModelCache(root, lambda: tracker)


def test_first_load_downloads_second_does_not(
    trained: Trained, store: SqlFeatureStore, counting: CountingTracker
) -> None:
    pointer = SqlPointerStore(store).get("demo")
    assert pointer is not None
    cache = cold_cache(trained, counting)
    first = cache.load(pointer.ref)
    assert counting.downloads == 1
    manifest = json.loads((cache.folder(pointer.ref) / "manifest.json").read_text())
    assert "artifacts/model.txt" in manifest
    second = cache.load(pointer.ref)
    assert counting.downloads == 1
    matrix = np.zeros((1, len(first.spec["order"])))
    assert first.predict_matrix(matrix) == pytest.approx(second.predict_matrix(matrix))


def test_warm_cache_needs_no_mlflow(trained: Trained, store: SqlFeatureStore) -> None:
    pointer = SqlPointerStore(store).get("demo")
    assert pointer is not None

    def no_tracker() -> Tracker:
        raise AssertionError("a warm cache must not create an MLflow client")

    model = ModelCache(trained.settings.home / "models", no_tracker).load(pointer.ref)
    assert model.is_lightgbm


@pytest.mark.parametrize("damage", ["delete", "flip"])
def test_damaged_cache_is_repaired_from_mlflow(
    trained: Trained,
    store: SqlFeatureStore,
    counting: CountingTracker,
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pointer = SqlPointerStore(store).get("demo")
    assert pointer is not None
    cache = cold_cache(trained, counting)
    cache.load(pointer.ref)
    booster_file = cache.folder(pointer.ref) / "model" / "artifacts" / "model.txt"
    if damage == "delete":
        booster_file.unlink()
    else:
        data = bytearray(booster_file.read_bytes())
        data[len(data) // 2] ^= 0x01
        booster_file.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        model = cache.load(pointer.ref)
    assert counting.downloads == 2
    assert model.is_lightgbm
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert "artifacts/model.txt" in " ".join(str(getattr(r, "detail", "")) for r in caplog.records)


def test_registry_digest_mismatch_is_never_loaded(
    trained: Trained, store: SqlFeatureStore, counting: CountingTracker
) -> None:
    pointer = SqlPointerStore(store).get("demo")
    assert pointer is not None
    counting.set_version_tags("demo", pointer.version, {SHA_TAG: "0" * 64})
    # The registry now disagrees with the pointer: a download is refused before it starts.
    with pytest.raises(ModelIntegrityError, match="registry records digest 000000000000"):
        cold_cache(trained, counting).load(pointer.ref)
    assert counting.downloads == 0
    # A pointer carrying the tampered digest: the files do not hash to it, so nothing loads.
    from dataclasses import replace

    forged = replace(pointer.ref, sha256="0" * 64)
    with pytest.raises(ModelIntegrityError, match="refusing to load"):
        cold_cache(trained, counting).load(forged)
    assert not (cold_cache(trained, counting).folder(forged) / "model").exists()


def test_promotion_refuses_a_version_whose_files_do_not_match(
    trained: Trained, store: SqlFeatureStore
) -> None:
    tracker = Tracker(trained.settings)
    tracker.set_version_tags("demo", "2", {SHA_TAG: "f" * 64})
    pointers = SqlPointerStore(store)
    promoter = Promoter(tracker, pointers, ModelCache(trained.settings.home / "models", lambda: tracker))
    with pytest.raises(ModelIntegrityError):
        promoter.promote("demo", "2", reason="test", action="force")
    pointer = pointers.get("demo")
    assert pointer is not None
    assert pointer.version == "1"
    assert tracker.alias_version("demo", "champion") == "1"


def predictor_for(trained: Trained, store: SqlFeatureStore, **kwargs: Any) -> Predictor:
    tracker = Tracker(trained.settings)
    return Predictor(
        "demo",
        SqlPointerStore(store),
        ModelCache(trained.settings.home / "models", lambda: tracker),
        **kwargs,
    )


def test_predictor_swaps_after_promotion_and_keeps_requests_consistent(
    trained: Trained, store: SqlFeatureStore
) -> None:
    predictor = predictor_for(trained, store, poll_s=0.05)
    records = trained.records(20)
    before = predictor.predict_records(records)
    assert before.version == "1"
    tracker = Tracker(trained.settings)
    Promoter(tracker, SqlPointerStore(store)).promote("demo", "2", reason="test", action="force")
    import time

    time.sleep(0.06)
    after = predictor.predict_records(records)
    assert after.version == "2"
    assert predictor.swaps == 2
    assert not np.allclose(before.values, after.values)
    # Each request is answered by one model: v2's answers equal v2's booster on the same rows.
    serving = predictor.current()
    from mlpipeline.featuresets import portable

    expected = serving.model.model.predict(
        portable.assemble(serving.model.spec, serving.contract.from_records(records).values, len(records))
    )
    np.testing.assert_array_equal(after.values, expected)
    predictor.close()


def test_failed_swap_keeps_serving_the_old_model(trained: Trained, store: SqlFeatureStore) -> None:
    predictor = predictor_for(trained, store, poll_s=0.01)
    assert predictor.predict_records(trained.records(1)).version == "1"
    tracker = Tracker(trained.settings)
    Promoter(tracker, SqlPointerStore(store)).promote("demo", "2", reason="test", action="force")
    # v2 is not in the cache and its recorded digest no longer matches: the swap must fail.
    tracker.set_version_tags("demo", "2", {SHA_TAG: "e" * 64})
    import shutil
    import time

    shutil.rmtree(trained.settings.home / "models" / "mlpipeline-demo" / "2", ignore_errors=True)
    time.sleep(0.02)
    result = predictor.predict_records(trained.records(1))
    assert result.version == "1"
    status = predictor.status()
    assert status["serving_version"] == "1"
    assert status["last_error"]
    assert "MLP-600" in status["last_error"]
    predictor.close()


def test_no_champion_is_a_clear_error(trained: Trained, store: SqlFeatureStore) -> None:
    predictor = Predictor(
        "other",
        SqlPointerStore(store),
        ModelCache(trained.settings.home / "models", lambda: Tracker(trained.settings)),
    )
    with pytest.raises(NotFoundError, match="no production model yet"):
        predictor.predict_records(trained.records(1))


def test_explain_contributions_add_up_to_the_prediction(trained: Trained, store: SqlFeatureStore) -> None:
    predictor = predictor_for(trained, store)
    result = predictor.predict_records(trained.records(7), explain=True)
    assert result.contributions is not None
    assert result.contributions.shape == (7, len(result.feature_names) + 1)
    np.testing.assert_allclose(result.contributions.sum(axis=1), result.values, rtol=1e-9, atol=1e-9)


def test_single_row_fast_path_equals_batch_prediction(trained: Trained, store: SqlFeatureStore) -> None:
    predictor = predictor_for(trained, store)
    records = trained.records(50)
    batch = predictor.predict_records(records).values
    one_by_one = np.array([predictor.predict_records(r).values[0] for r in records])
    np.testing.assert_array_equal(batch, one_by_one)


def test_predictions_are_logged_in_batches(trained: Trained, store: SqlFeatureStore) -> None:
    plog = PredictionLog(store, "demo", flush_s=60, flush_rows=10_000)
    predictor = predictor_for(trained, store, prediction_log=plog)
    records = trained.records(30)
    for r in records:
        predictor.predict_records(r)
    table = store.tables.prediction_log
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 0
    assert plog.pending == 30
    predictor.close()  # flushes
    with store.engine.connect() as conn:
        rows = conn.execute(select(table).order_by(table.c.id)).all()
    assert len(rows) == 30
    assert [r.entity_key for r in rows] == [str(r["order_id"]) for r in records]
    assert {r.model_version for r in rows} == {"1"}
    assert all(r.featureset == "demo" and r.predicted_at is not None for r in rows)


def test_bad_request_is_rejected_and_not_logged(trained: Trained, store: SqlFeatureStore) -> None:
    plog = PredictionLog(store, "demo", background=False)
    predictor = predictor_for(trained, store, prediction_log=plog)
    bad = dict(trained.records(1)[0], distance_km="far", region="moon")
    with pytest.raises(DataValidationError) as info:
        predictor.predict_records([trained.records(1)[0], bad])
    rules = {(p.column, p.rule) for p in info.value.problems}
    assert ("distance_km", "type") in rules
    assert ("region", "category") in rules
    assert all(p.rows == (2,) or list(p.rows) == [2] for p in info.value.problems)
    assert plog.pending == 0
