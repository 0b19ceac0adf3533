"""The copy of housing batches into MLpipeline.FeatureStore, on SQLite with a database attached as
schema "MLpipeline" (in IRIS the schema comes from the class's package)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import event, text

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.iris.projection import PROJECTIONS, projection_table, refresh_projection
from tests.iris import objectscript as os_
from tests.iris.conftest import housing_sample


def _store_with_schema(tmp_path: Path) -> SqlFeatureStore:
    store = SqlFeatureStore(f"sqlite:///{tmp_path / 'store.db'}", chunk_rows=1_000)
    attached = str(tmp_path / "mlpipeline_schema.db")

    @event.listens_for(store.engine, "connect")
    def attach(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.execute("ATTACH DATABASE ? AS MLpipeline", (attached,))

    return store


def test_class_and_copy_agree_on_table_and_columns() -> None:
    cls = os_.all_classes()["MLpipeline.FeatureStore"]
    schema, table = PROJECTIONS["housing"]
    assert cls.name == f"{schema}.{table}", "package -> schema, class -> table (no SqlTableName)"
    assert "SqlTableName" not in cls.keywords
    stored = {p.sql_name for p in cls.properties.values() if "SqlComputed" not in p.keywords}
    written = {c.name for c in projection_table(load_definition("housing"), schema, table).columns}
    assert written == stored, "the copy writes every stored property and no computed one"


def test_new_batches_are_copied_once(tmp_path: Path) -> None:
    d = load_definition("housing")
    store = _store_with_schema(tmp_path)
    try:
        store.create_schema([d])
        assert "does not exist" in refresh_projection(store, d)["skipped"]
        columns = ", ".join(f"{c.name} {'TEXT' if c.name == 'ocean_proximity' else 'REAL'}" for c in
                            projection_table(d, "MLpipeline", "FeatureStore").columns)  # fmt: skip
        with store.engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE MLpipeline.FeatureStore ({columns})"))
        sample = housing_sample(300, seed=5)
        ingest_frame(store, d, sample.iloc[:200])
        first = refresh_projection(store, d)
        assert (first["batches"], first["rows"], first["table"]) == ([1], 200, "MLpipeline.FeatureStore")
        assert refresh_projection(store, d)["batches"] == [], "idempotent"
        ingest_frame(store, d, sample.iloc[200:])
        assert refresh_projection(store, d)["batches"] == [2]
        with store.engine.connect() as conn:
            copied = conn.execute(
                text(
                    "SELECT block_id, total_rooms, total_bedrooms, ocean_proximity, batch_id "
                    "FROM MLpipeline.FeatureStore ORDER BY block_id"
                )
            ).all()
        source = store.training_window(d).sort_values("block_id")
        assert len(copied) == 300
        assert [r.block_id for r in copied] == source["block_id"].tolist()
        np.testing.assert_allclose([r.total_rooms for r in copied], source["total_rooms"])
        assert sum(r.total_bedrooms is None for r in copied) == source["total_bedrooms"].isna().sum()
        assert [r.ocean_proximity for r in copied] == source["ocean_proximity"].tolist()
        assert sorted({r.batch_id for r in copied}) == [1, 2]
    finally:
        store.dispose()


def test_a_feature_set_without_a_class_is_skipped(tmp_path: Path) -> None:
    d = load_definition("demo")
    store = _store_with_schema(tmp_path)
    try:
        assert "no IRIS persistent class" in refresh_projection(store, d)["skipped"]
    finally:
        store.dispose()
