"""The data lifecycle on every backend: labels that come later, composite keys, re-sent rows,
definitions that gain a column, and tables made by an earlier version of the package."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, text

from mlpipeline.errors import DataValidationError, SchemaChangeError
from mlpipeline.featuresets.definition import Definition, parse_definition
from mlpipeline.featurestore.base import Watermark
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.labels import attach_labels
from mlpipeline.featurestore.sql import SqlFeatureStore, utcnow
from mlpipeline.featurestore.synthetic import StreamConfig, generate_day
from mlpipeline.featurestore.validation import validate_labels

CFG = StreamConfig(seed=5, rows_per_day=50)


def unlabelled_day(day: int) -> pd.DataFrame:
    return generate_day(CFG, day).drop(columns=["delivery_minutes", "delivered_at"])


def labels_of(day: int, n: int | None = None) -> pd.DataFrame:
    frame = generate_day(CFG, day)[["order_id", "delivery_minutes"]]
    return frame if n is None else frame.head(n)


def attach(store: SqlFeatureStore, d: Definition, frame: pd.DataFrame, *, relabel: bool = False) -> object:
    return attach_labels(store, d, validate_labels(frame, d), source="labels.csv", relabel=relabel)


def test_labels_attached_later_are_stored_and_seen_by_monitoring(
    store: SqlFeatureStore, demo_def: Definition
) -> None:
    ingest_frame(store, demo_def, generate_day(CFG, 0))
    _, mark = store.labelled_since(demo_def, Watermark(), as_of=utcnow())
    ingest_frame(store, demo_def, unlabelled_day(1))
    assert len(store.rows_to_score(demo_def)) == 50
    before = utcnow()
    outcome = attach(store, demo_def, labels_of(1, 30))
    assert (outcome.labelled, outcome.relabelled, outcome.unchanged) == (30, 0, 0)  # type: ignore[attr-defined]
    assert len(store.rows_to_score(demo_def)) == 20
    new, _ = store.labelled_since(demo_def, mark, as_of=utcnow() + timedelta(seconds=1))
    assert sorted(new["order_id"].tolist()) == sorted(labels_of(1, 30)["order_id"].tolist())
    np.testing.assert_allclose(
        new.sort_values("order_id")["delivery_minutes"],
        labels_of(1, 30).sort_values("order_id")["delivery_minutes"],
    )
    assert (new["delivered_at"] >= pd.Timestamp(before) - pd.Timedelta(seconds=1)).all(), "label time: now"
    assert (new["_labelled_batch"] == outcome.batch.batch_id).all()  # type: ignore[attr-defined]


def test_the_standard_sql_update_path_labels_the_same_rows(
    store: SqlFeatureStore, demo_def: Definition, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dialects without UPDATE … FROM (IRIS) take correlated subqueries: same outcome."""
    from mlpipeline.featurestore import labels

    monkeypatch.setattr(labels, "update_from_supported", lambda dialect: False)
    ingest_frame(store, demo_def, generate_day(CFG, 0))
    ingest_frame(store, demo_def, unlabelled_day(1))
    done = attach(store, demo_def, labels_of(1, 10))
    assert done.labelled == 10  # type: ignore[attr-defined]
    changed = labels_of(0, 3).assign(delivery_minutes=lambda f: f["delivery_minutes"] + 2)
    again = attach(store, demo_def, changed, relabel=True)
    assert again.relabelled == 3  # type: ignore[attr-defined]
    window = store.training_window(demo_def).set_index("order_id")
    for key, value in zip(changed["order_id"], changed["delivery_minutes"], strict=True):
        assert window.loc[key, "delivery_minutes"] == value
    assert len(store.rows_to_score(demo_def)) == 40


def test_labels_for_unknown_keys_are_refused_and_nothing_is_written(
    store: SqlFeatureStore, demo_def: Definition
) -> None:
    ingest_frame(store, demo_def, unlabelled_day(0))
    batches = len(store.batches(demo_def))
    wrong = pd.concat([labels_of(0, 2), labels_of(3, 3)], ignore_index=True)
    with pytest.raises(DataValidationError, match=r"3 key\(s\) are not stored") as info:
        attach(store, demo_def, wrong)
    assert info.value.problems[0].rows == [3, 4, 5]
    assert len(store.rows_to_score(demo_def)) == 50, "not even the two known keys were labelled"
    assert len(store.batches(demo_def)) == batches


def test_conflicting_labels_need_relabel_and_are_audited(
    store: SqlFeatureStore, demo_def: Definition
) -> None:
    ingest_frame(store, demo_def, generate_day(CFG, 0))
    changed = labels_of(0, 2).assign(delivery_minutes=lambda f: f["delivery_minutes"] + 1)
    with pytest.raises(DataValidationError, match=r"2 key\(s\) already have another label.*--relabel"):
        attach(store, demo_def, changed)
    same = attach(store, demo_def, labels_of(0, 5))
    assert (same.batch, same.unchanged) == (None, 5)  # type: ignore[attr-defined]
    done = attach(store, demo_def, changed, relabel=True)
    assert (done.relabelled, done.labelled) == (2, 0)  # type: ignore[attr-defined]
    audit = store.tables.label_audit
    with store.engine.connect() as conn:
        rows = conn.execute(select(audit).order_by(audit.c.id)).all()
    expected = labels_of(0, 2)
    assert [r.entity_key for r in rows] == [str(k) for k in expected["order_id"]]
    np.testing.assert_allclose([r.old_value for r in rows], expected["delivery_minutes"])
    np.testing.assert_allclose([r.new_value for r in rows], expected["delivery_minutes"] + 1)
    assert {r.batch_id for r in rows} == {done.batch.batch_id}  # type: ignore[attr-defined]
    again = attach(store, demo_def, changed, relabel=True)
    assert (again.batch, again.unchanged) == (None, 2), "the same file again: nothing to do"  # type: ignore[attr-defined]
    original = labels_of(0, 2)
    with pytest.raises(DataValidationError, match="already have another label"):
        attach(store, demo_def, original)
    back = attach(store, demo_def, original, relabel=True)
    assert back.relabelled == 2, "after a correction the original file may be sent again"  # type: ignore[attr-defined]


@pytest.fixture
def panel_def() -> Definition:
    return parse_definition(
        {
            "name": "panel",
            "table": "panel",
            "entity_key": {"columns": ["id", "year"]},
            "target": {"column": "visits", "min": 0},
            "features": {"age": {"type": "integer"}, "income": {"type": "float", "missing": "native"}},
        }
    )


@pytest.fixture
def panel_store(store: SqlFeatureStore, panel_def: Definition) -> SqlFeatureStore:
    store.create_schema([panel_def])
    return store


def panel_rows(years: list[int], labelled: bool = True) -> pd.DataFrame:
    rows = [
        {"id": i, "year": y, "age": 30 + i + y - 2000, "income": 1.5 * i, "visits": float((i + y) % 4)}
        for y in years
        for i in range(1, 6)
    ]
    frame = pd.DataFrame(rows)
    return frame if labelled else frame.drop(columns=["visits"])


def test_a_composite_key_names_rows_for_ingest_and_labels(
    panel_store: SqlFeatureStore, panel_def: Definition
) -> None:
    ingest_frame(panel_store, panel_def, panel_rows([2000, 2001]))
    ingest_frame(panel_store, panel_def, panel_rows([2002], labelled=False))
    assert panel_store.count_rows(panel_def) == 15
    clash = panel_rows([2001]).head(2)
    with pytest.raises(DataValidationError, match=r"already stored \(\(1, 2001\), \(2, 2001\)\)"):
        ingest_frame(panel_store, panel_def, clash)
    in_batch = pd.concat([panel_rows([2003]).head(1)] * 2, ignore_index=True)
    with pytest.raises(DataValidationError, match="duplicate key within the batch"):
        ingest_frame(panel_store, panel_def, in_batch)
    labels = panel_rows([2002])[["id", "year", "visits"]]
    done = attach(panel_store, panel_def, labels)
    assert done.labelled == 5  # type: ignore[attr-defined]
    fix = labels.head(1).assign(visits=9.0)
    attach(panel_store, panel_def, fix, relabel=True)
    with panel_store.engine.connect() as conn:
        keys = conn.execute(select(panel_store.tables.label_audit.c.entity_key)).scalars().all()
    assert keys == ["1|2002"]
    window = panel_store.training_window(panel_def)
    assert len(window) == 15
    assert window.loc[(window["id"] == 1) & (window["year"] == 2002), "visits"].tolist() == [9.0]
    unknown = labels.head(1).assign(year=1999)
    with pytest.raises(DataValidationError, match=r"not stored \(\(1, 1999\)\)"):
        attach(panel_store, panel_def, unknown)


def housing_rows(n: int, start: int = 0) -> pd.DataFrame:
    i = np.arange(start, start + n, dtype=np.float64)
    return pd.DataFrame(
        {
            "longitude": -122.0 + i / 1000,
            "latitude": 37.0 + i / 1000,
            "housing_median_age": 10.0 + i % 40,
            "total_rooms": 100.0 + i,
            "total_bedrooms": np.where(i % 7 == 0, np.nan, 10.0 + i),
            "population": 50.0 + i,
            "households": 10.0 + i % 9,
            "median_income": 3.0 + i % 5,
            "median_house_value": 100_000.0 + i,
            "ocean_proximity": np.where(i % 2 == 0, "INLAND", "NEAR BAY"),
        }
    )


def test_rows_sent_again_are_skipped_with_a_generated_key(
    store: SqlFeatureStore, housing_def: Definition
) -> None:
    ingest_frame(store, housing_def, housing_rows(30))
    second = ingest_frame(store, housing_def, housing_rows(30, start=20))
    assert (second.written, second.skipped_rows) == (20, 10)
    assert store.count_rows(housing_def) == 50
    with pytest.raises(DataValidationError, match=r"10 row\(s\) are identical"):
        ingest_frame(store, housing_def, housing_rows(20, start=40), strict=True)
    assert store.count_rows(housing_def) == 50
    twice = pd.concat([housing_rows(2, start=100)] * 2, ignore_index=True)
    kept = ingest_frame(store, housing_def, twice)
    assert (kept.written, kept.skipped_rows) == (4, 0), "identical rows within one batch are kept"
    keys = store.training_window(housing_def)["block_id"].tolist()
    assert keys == list(range(1, 55))


def test_a_new_feature_is_added_by_evolve_and_old_rows_hold_null(
    store: SqlFeatureStore, demo_def: Definition
) -> None:
    ingest_frame(store, demo_def, generate_day(CFG, 0))
    data = demo_def.model_dump()
    data["features"]["traffic"] = {"type": "float", "missing": "native"}
    data["derived"] = [{"name": "traffic_per_km", "expression": "traffic / distance_km"}]
    grown = parse_definition({**data, "derived": {"traffic_per_km": "traffic / distance_km"}})
    fresh = SqlFeatureStore(store.url)
    try:
        with pytest.raises(
            SchemaChangeError, match=r"lack column\(s\) demo_deliveries.traffic.*mlpipeline init"
        ):
            fresh.create_schema([grown])
        plan = fresh.evolve_schema([grown], dry_run=True)
        assert [a.column.name for a in plan.added] == ["traffic"]
        with pytest.raises(SchemaChangeError):
            fresh.create_schema([grown])  # the dry run changed nothing
        fresh.evolve_schema([grown])
        fresh.create_schema([grown])
        ingest_frame(fresh, grown, generate_day(CFG, 1).assign(traffic=2.0))
        window = fresh.training_window(grown)
        assert window["traffic"].isna().sum() == 50
        assert (window["traffic"].dropna() == 2.0).all()
        assert fresh.evolve_schema([grown]).empty, "running it again changes nothing"
    finally:
        fresh.dispose()


@pytest.mark.parametrize("change", ["type", "removed", "not_null", "key"])
def test_other_changes_are_refused_with_the_manual_path(
    store: SqlFeatureStore, demo_def: Definition, change: str
) -> None:
    ingest_frame(store, demo_def, generate_day(CFG, 0))
    data = demo_def.model_dump(mode="json")
    data["derived"] = {x["name"]: x["expression"] for x in data["derived"]}
    if change == "type":
        data["features"]["weekday"] = {"type": "categorical"}
        expected = r"'weekday' .* stored as integer but the definition now says categorical.*_v2"
    elif change == "removed":
        del data["features"]["courier_rating"]
        expected = r"holds column 'courier_rating'.*ALTER TABLE demo_deliveries DROP COLUMN courier_rating"
    elif change == "not_null":
        data["features"]["traffic"] = {"type": "float"}
        expected = r"feature 'traffic' is new but may not be missing.*missing = 'native'"
    else:
        data["entity_key"] = {"column": "ticket", "type": "integer"}
        expected = r"the key column is now 'ticket'"
    changed = parse_definition(data)
    fresh = SqlFeatureStore(store.url)
    try:
        with pytest.raises(SchemaChangeError, match=expected):
            fresh.evolve_schema([changed], dry_run=True)
        with pytest.raises(SchemaChangeError, match=expected):
            fresh.evolve_schema([changed])
    finally:
        fresh.dispose()
    assert store.count_rows(demo_def) == 50


def test_tables_of_an_earlier_version_are_brought_up_to_date(
    store: SqlFeatureStore, demo_def: Definition
) -> None:
    """A table made before labels could come later: init adds the column and fills it in."""
    ingest_frame(store, demo_def, generate_day(CFG, 0))
    ingest_frame(store, demo_def, unlabelled_day(1))
    with store.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_demo_deliveries_labelled"))
        conn.execute(text("ALTER TABLE demo_deliveries DROP COLUMN _labelled_batch"))
    fresh = SqlFeatureStore(store.url)
    try:
        with pytest.raises(SchemaChangeError, match="_labelled_batch"):
            fresh.create_schema([demo_def])
        plan = fresh.evolve_schema([demo_def])
        assert [a.column.name for a in plan.added] == ["_labelled_batch"]
        fresh.create_schema([demo_def])
        rows, _ = fresh.labelled_since(demo_def, Watermark(), as_of=utcnow())
        assert len(rows) == 50, "the labelled rows of the first batch count as labelled in it"
        assert (rows["_labelled_batch"] == rows["_batch_id"]).all()
    finally:
        fresh.dispose()


def test_two_feature_sets_may_not_share_a_table(store: SqlFeatureStore, demo_def: Definition) -> None:
    data = demo_def.model_dump(mode="json")
    data["derived"] = {x["name"]: x["expression"] for x in data["derived"]}
    twin = parse_definition(data | {"name": "twin"})
    with pytest.raises(SchemaChangeError, match=r"'demo' and 'twin' both use table 'demo_deliveries'"):
        store.create_schema([twin])
    fresh = SqlFeatureStore(store.url)
    try:
        with pytest.raises(SchemaChangeError, match="both use table"):
            fresh.evolve_schema([demo_def, twin], dry_run=True)
    finally:
        fresh.dispose()


def test_strict_refuses_a_file_ingested_before(store: SqlFeatureStore, housing_def: Definition) -> None:
    ingest_frame(store, housing_def, housing_rows(5))
    with pytest.raises(DataValidationError, match=r"the same content was ingested as batch 1"):
        ingest_frame(store, housing_def, housing_rows(5), strict=True)
    assert ingest_frame(store, housing_def, housing_rows(5)).skipped


def test_a_day_may_be_both_the_key_and_the_event_time(store: SqlFeatureStore) -> None:
    daily = parse_definition(
        {
            "name": "daily",
            "table": "daily",
            "event_time": "day",
            "entity_key": {"column": "day"},
            "target": {"column": "demand"},
            "features": {"temp": {"type": "float"}},
            "derived": {"weekday": "weekday(day)"},
        }
    )
    store.create_schema([daily])
    days = pd.date_range("2026-01-01", periods=6, freq="D")
    rows = pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "temp": [1.0, 2, 3, 4, 5, 6]})
    ingest_frame(store, daily, rows.head(4).assign(demand=[10.0, 11, 12, 13]))
    ingest_frame(store, daily, rows.tail(2))
    with pytest.raises(DataValidationError, match="already stored"):
        ingest_frame(store, daily, rows.head(1).assign(demand=[1.0]))
    labels = pd.DataFrame({"day": ["2026-01-05T00:00:00Z", "2026-01-06"], "demand": [14.0, 15.0]})
    assert attach(store, daily, labels).labelled == 2  # type: ignore[attr-defined]
    window = store.training_window(daily)
    assert window["day"].dt.strftime("%Y-%m-%d").tolist() == list(days.strftime("%Y-%m-%d"))
    assert window["demand"].tolist() == [10.0, 11, 12, 13, 14, 15]


def test_a_row_labelled_later_and_sent_again_with_its_label_is_skipped(
    store: SqlFeatureStore, housing_def: Definition
) -> None:
    rows = housing_rows(6)
    ingest_frame(store, housing_def, rows.drop(columns=["median_house_value"]))
    labels = pd.DataFrame({"block_id": [1, 2, 3], "median_house_value": rows["median_house_value"].head(3)})
    attach(store, housing_def, labels)
    again = ingest_frame(store, housing_def, rows.head(4))
    assert (again.written, again.skipped_rows) == (1, 3), "rows 1-3 now match; row 4 is new (labelled)"


def test_an_event_time_cannot_be_added_to_a_table_with_rows(
    store: SqlFeatureStore, housing_def: Definition
) -> None:
    ingest_frame(store, housing_def, housing_rows(3))
    data = housing_def.model_dump(mode="json")
    data["derived"] = {x["name"]: x["expression"] for x in data["derived"]}
    timed = parse_definition(data | {"event_time": "surveyed_at"})
    fresh = SqlFeatureStore(store.url)
    try:
        with pytest.raises(SchemaChangeError, match=r"'surveyed_at' is new as the event time.*housing_v2"):
            fresh.evolve_schema([timed], dry_run=True)
    finally:
        fresh.dispose()
