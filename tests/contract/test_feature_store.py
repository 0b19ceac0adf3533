"""The feature-store contract: every backend (SQLite always, PostgreSQL when configured) passes it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpipeline.errors import DataValidationError, EmptyBatchError
from mlpipeline.featuresets.definition import Definition
from mlpipeline.featurestore.base import Watermark
from mlpipeline.featurestore.ingest import content_hash, ingest_file, ingest_frame
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.featurestore.synthetic import StreamConfig, generate_day, generate_stream

CFG = StreamConfig(seed=11, rows_per_day=200)


def test_create_schema_is_idempotent(store: SqlFeatureStore, demo_def: Definition) -> None:
    ingest_frame(store, demo_def, generate_day(CFG, 0))
    store.create_schema([demo_def])
    store.create_schema([demo_def])
    assert store.count_rows(demo_def) == 200
    assert store.has_table(demo_def)


def test_ingest_round_trips_values(store: SqlFeatureStore, demo_def: Definition) -> None:
    frame = generate_day(CFG, 0)
    outcome = ingest_frame(store, demo_def, frame, source="day0")
    assert outcome.written == 200
    assert not outcome.skipped
    back = store.training_window(demo_def)
    assert len(back) == 200
    assert list(back.columns[: len(demo_def.raw_columns)]) == list(demo_def.raw_columns)
    back = back.sort_values("order_id").reset_index(drop=True)
    np.testing.assert_allclose(back["distance_km"], frame["distance_km"])
    np.testing.assert_allclose(back["temperature_c"], frame["temperature_c"])  # NaN stays missing
    assert back["temperature_c"].isna().sum() == frame["temperature_c"].isna().sum()
    assert back["region"].tolist() == frame["region"].tolist()
    assert back["items"].tolist() == frame["items"].tolist()
    assert (back["ordered_at"] - frame["ordered_at"]).abs().max() < pd.Timedelta(milliseconds=1)
    assert (back["_batch_id"] == outcome.batch.batch_id).all()


def test_reingest_same_batch_writes_nothing(store: SqlFeatureStore, demo_def: Definition) -> None:
    frame = generate_day(CFG, 0)
    first = ingest_frame(store, demo_def, frame, source="a.csv")
    same_order = ingest_frame(store, demo_def, frame, source="b.parquet")
    assert same_order.skipped
    assert same_order.duplicate_of == first.batch
    assert store.count_rows(demo_def) == 200
    # A shuffled copy is other content, but every key clashes: rejected, nothing written.
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    with pytest.raises(DataValidationError, match=r"already stored .*\(\+195 more\)"):
        ingest_frame(store, demo_def, shuffled)
    assert store.count_rows(demo_def) == 200
    assert len(store.batches(demo_def)) == 1


def test_overlapping_keys_rejected_with_nothing_written(store: SqlFeatureStore, demo_def: Definition) -> None:
    ingest_frame(store, demo_def, generate_day(CFG, 0))
    overlap = pd.concat([generate_day(CFG, 1), generate_day(CFG, 0).head(3)], ignore_index=True)
    with pytest.raises(DataValidationError) as info:
        ingest_frame(store, demo_def, overlap, source="overlap.csv")
    problem = info.value.problems[0]
    assert problem.column == "order_id"
    assert "already stored" in problem.detail
    assert problem.rows == [201, 202, 203]
    assert store.count_rows(demo_def) == 200
    assert len(store.batches(demo_def)) == 1


@pytest.mark.parametrize(
    "breakage",
    [
        "text_in_number",
        "missing_column",
        "unexpected_column",
        "null",
        "range",
        "category",
        "dup_key",
        "bad_time",
    ],
)
def test_every_bad_batch_kind_writes_nothing(
    store: SqlFeatureStore, demo_def: Definition, breakage: str
) -> None:
    ingest_frame(store, demo_def, generate_day(CFG, 0))
    bad = generate_day(CFG, 1).astype({"distance_km": object, "ordered_at": object})
    if breakage == "text_in_number":
        bad.loc[150, "distance_km"] = "twelve"
    elif breakage == "missing_column":
        bad = bad.drop(columns=["hour"])
    elif breakage == "unexpected_column":
        bad["extra"] = 1
    elif breakage == "null":
        bad.loc[199, "distance_km"] = None
    elif breakage == "range":
        bad.loc[0, "items"] = 0
    elif breakage == "category":
        bad.loc[10, "region"] = "mars"
    elif breakage == "dup_key":
        bad.loc[5, "order_id"] = bad.loc[6, "order_id"]
    elif breakage == "bad_time":
        bad.loc[3, "ordered_at"] = "31/02/2026"
    with pytest.raises(DataValidationError):
        ingest_frame(store, demo_def, bad)
    assert store.count_rows(demo_def) == 200
    assert len(store.batches(demo_def)) == 1


def test_empty_batch_rejected(store: SqlFeatureStore, demo_def: Definition, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(EmptyBatchError):
        ingest_file(store, demo_def, empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(generate_day(CFG, 0).columns) + "\n")
    with pytest.raises(EmptyBatchError):
        ingest_file(store, demo_def, header_only)
    assert store.count_rows(demo_def) == 0


def test_csv_and_parquet_of_same_data_hash_alike(demo_def: Definition, tmp_path: Path) -> None:
    from mlpipeline.featurestore.ingest import read_batch_file
    from mlpipeline.featurestore.validation import validate_batch

    frame = generate_day(CFG, 0)
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    hashes = {
        content_hash(demo_def, validate_batch(read_batch_file(tmp_path / name, demo_def), demo_def))
        for name in ("d.csv", "d.parquet")
    }
    assert len(hashes) == 1


def test_generated_keys_continue_across_batches(store: SqlFeatureStore, housing_def: Definition) -> None:
    rows = pd.DataFrame(
        {
            "longitude": [-122.0, -121.0, -120.0],
            "latitude": [37.0, 38.0, 39.0],
            "housing_median_age": [10.0, 20.0, 30.0],
            "total_rooms": [100.0, 200.0, 300.0],
            "total_bedrooms": [10.0, np.nan, 30.0],
            "population": [50.0, 60.0, 70.0],
            "households": [10.0, 20.0, 30.0],
            "median_income": [3.0, 4.0, 5.0],
            "median_house_value": [100_000.0, 200_000.0, 300_000.0],
            "ocean_proximity": ["INLAND", "NEAR BAY", "ISLAND"],
        }
    )
    ingest_frame(store, housing_def, rows.head(2))
    ingest_frame(store, housing_def, rows.tail(1))
    back = store.training_window(housing_def)
    assert back["block_id"].tolist() == [1, 2, 3]
    assert back["total_bedrooms"].isna().tolist() == [False, True, False]


def test_training_window_filters_time_and_label_arrival(store: SqlFeatureStore, demo_def: Definition) -> None:
    frame = generate_stream(CFG, 3)
    ingest_frame(store, demo_def, frame)
    start = CFG.start + timedelta(days=1)
    end = CFG.start + timedelta(days=2)
    window = store.training_window(demo_def, start=start, end=end)
    assert len(window) == 200
    assert window["ordered_at"].min() >= start
    assert window["ordered_at"].is_monotonic_increasing
    as_of = CFG.start + timedelta(days=1, hours=12)
    known = store.training_window(demo_def, as_of=as_of)
    expected = int((frame["delivered_at"] <= as_of).sum())
    assert len(known) == expected
    assert 0 < expected < len(frame)


def test_labelled_since_watermark_is_incremental(store: SqlFeatureStore, demo_def: Definition) -> None:
    ingest_frame(store, demo_def, generate_stream(CFG, 2))
    t1 = CFG.start + timedelta(days=1)
    first, mark1 = store.labelled_since(demo_def, Watermark(), as_of=t1)
    assert len(first) > 0
    assert (first["delivered_at"] <= t1).all()
    t2 = CFG.start + timedelta(days=30)
    second, mark2 = store.labelled_since(demo_def, mark1, as_of=t2)
    assert len(first) + len(second) == 400
    assert set(first["order_id"]).isdisjoint(set(second["order_id"]))
    nothing, mark3 = store.labelled_since(demo_def, mark2, as_of=t2)
    assert len(nothing) == 0
    assert mark3.batch_id == mark2.batch_id
    # A batch ingested late whose labels predate the watermark is still picked up.
    late = generate_day(CFG, 0).assign(order_id=lambda f: f["order_id"] + 5_000)
    ingest_frame(store, demo_def, late)
    caught_up, _ = store.labelled_since(demo_def, mark3, as_of=t2)
    assert len(caught_up) == 200


def test_labelled_since_without_label_time_uses_batches(
    store: SqlFeatureStore, housing_def: Definition
) -> None:
    row = {
        "longitude": -122.0, "latitude": 37.0, "housing_median_age": 10.0, "total_rooms": 5.0,
        "total_bedrooms": 1.0, "population": 3.0, "households": 1.0, "median_income": 2.0,
        "median_house_value": 1.0, "ocean_proximity": "INLAND",
    }  # fmt: skip
    ingest_frame(store, housing_def, pd.DataFrame([row]))
    first, mark = store.labelled_since(housing_def, Watermark())
    assert len(first) == 1
    ingest_frame(store, housing_def, pd.DataFrame([row | {"population": 4.0}, row | {"population": 5.0}]))
    second, _ = store.labelled_since(housing_def, mark)
    assert second["population"].tolist() == [4.0, 5.0]


def test_rows_to_score_are_unlabelled(store: SqlFeatureStore, demo_def: Definition) -> None:
    frame = generate_day(CFG, 0)
    frame.loc[:49, ["delivery_minutes", "delivered_at"]] = [np.nan, pd.NaT]
    ingest_frame(store, demo_def, frame)
    todo = store.rows_to_score(demo_def)
    assert len(todo) == 50
    assert todo["delivery_minutes"].isna().all()
    assert len(store.rows_to_score(demo_def, limit=10)) == 10
    assert len(store.rows_to_score(demo_def, after_batch=1)) == 0


def test_stream_rows_yields_every_row_once_in_chunks(store: SqlFeatureStore, demo_def: Definition) -> None:
    frame = generate_stream(CFG, 3)
    first = ingest_frame(store, demo_def, frame.iloc[:250]).batch
    ingest_frame(store, demo_def, frame.iloc[250:])
    assert first is not None
    chunks = list(store.stream_rows(demo_def, chunk_rows=64))
    assert [len(c) for c in chunks[:-1]] == [64] * (len(chunks) - 1)
    streamed = pd.concat(chunks, ignore_index=True)
    assert len(streamed) == len(frame)
    assert streamed["order_id"].is_unique
    assert not [c for c in streamed.columns if c.startswith("_")], "no bookkeeping columns"
    assert streamed["ordered_at"].is_monotonic_increasing
    later = pd.concat(store.stream_rows(demo_def, after_batch=first.batch_id), ignore_index=True)
    assert len(later) == len(frame) - 250
    only_first = list(store.stream_rows(demo_def, through_batch=first.batch_id))
    assert sum(len(c) for c in only_first) == 250
    start = CFG.start + timedelta(days=1)
    day = pd.concat(store.stream_rows(demo_def, since=start, until=start + timedelta(days=1)))
    assert len(day) == 200
    assert day["ordered_at"].min() >= start


def test_state_round_trip(store: SqlFeatureStore) -> None:
    assert store.get_state("demo", "watermark") is None
    store.set_state("demo", "watermark", Watermark(3, datetime(2026, 1, 2)).to_json())
    store.set_state("demo", "watermark", Watermark(4, datetime(2026, 1, 3)).to_json())
    value = store.get_state("demo", "watermark")
    assert value is not None
    assert Watermark.from_json(value) == Watermark(4, datetime(2026, 1, 3))
    assert store.get_state("housing", "watermark") is None


def test_progress_is_reported_per_chunk(store: SqlFeatureStore, demo_def: Definition) -> None:
    seen: list[tuple[int, int]] = []
    ingest_frame(
        store,
        demo_def,
        generate_stream(StreamConfig(rows_per_day=1_250), 2),
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen == [(1_000, 2_500), (2_000, 2_500), (2_500, 2_500)]


def test_sql_looking_text_is_stored_verbatim(store: SqlFeatureStore, tmp_path: Path) -> None:
    from mlpipeline.featuresets.definition import parse_definition

    d = parse_definition(
        {
            "name": "notes",
            "table": "notes",
            "entity_key": {"column": "note_id", "type": "string"},
            "target": {"column": "score"},
            "features": {"tag": {"type": "categorical", "missing": "native"}},
        }
    )
    store.create_schema([d])
    evil = ["x'); DROP TABLE notes; --", "Robert'); --", "ünïcode ✓"]
    ingest_frame(store, d, pd.DataFrame({"note_id": evil, "tag": evil, "score": [1.0, 2.0, 3.0]}))
    back = store.training_window(d)
    assert sorted(back["note_id"]) == sorted(evil)
    assert store.count_rows(d) == 3
