"""The production-pointer contract: every PointerStore passes the same suite.

- ``SqlPointerStore`` on the ``store`` fixture (SQLite always, PostgreSQL and IRIS SQL when
  configured);
- ``GlobalPointerStore`` on ``^MLpipeline`` through the object ``iris.gref`` returns, here a
  small in-memory stand-in (tests/iris/fakes.py), and through the Native API against a real
  IRIS when ``MLPIPELINE_TEST_IRIS_URL`` is set (marker ``iris``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from mlpipeline.errors import StoreError
from mlpipeline.featurestore.sql import SqlFeatureStore, utcnow
from mlpipeline.iris.globals import native_global
from mlpipeline.iris.pointer_store import PRODUCTION, GlobalPointerStore
from mlpipeline.registry.pointer import HistoryEntry, Pointer, PointerStore, SqlPointerStore
from tests.conftest import iris_url
from tests.iris.fakes import FakeGref

FS = "demo"


def pointer(version: str, featureset: str = FS, **extra: object) -> Pointer:
    values: dict[str, object] = {
        "featureset": featureset,
        "model_name": f"mlpipeline-{featureset}",
        "version": version,
        "run_id": f"run{version}",
        "model_uri": f"models:/mlpipeline-{featureset}/{version}",
        "sha256": f"{int(version):064x}",
        "local_path": f"/cache/{featureset}/{version}",
        "metrics": {"r2": 0.8 + int(version) / 100, "rmse": 1.5},
        "promoted_by": "tester",
        "reason": f"why {version}",
    }
    values.update(extra)
    return Pointer(**values)  # type: ignore[arg-type]


class PointerContract:
    """The suite; subclasses provide the ``pointers`` fixture."""

    def test_unknown_featureset_has_no_pointer_and_no_history(self, pointers: PointerStore) -> None:
        assert pointers.get("nothing_here") is None
        assert pointers.history("nothing_here") == []

    def test_set_then_get_round_trips_every_field(self, pointers: PointerStore) -> None:
        before = utcnow() - timedelta(seconds=1)
        stored = pointers.set(pointer("1"), action="promote", from_version=None)
        got = pointers.get(FS)
        assert got == stored
        assert got is not None
        expected = pointer("1")
        for name in ("featureset", "model_name", "version", "run_id", "model_uri", "sha256", "local_path"):
            assert getattr(got, name) == getattr(expected, name), name
        assert got.metrics == pytest.approx(expected.metrics)
        assert (got.promoted_by, got.reason) == ("tester", "why 1")
        assert got.promoted_at is not None
        assert before <= got.promoted_at <= utcnow() + timedelta(seconds=1), "set stamps the time (UTC)"
        assert got.ref.version == "1"
        assert got.ref.sha256 == expected.sha256

    def test_a_missing_local_path_and_empty_metrics_round_trip(self, pointers: PointerStore) -> None:
        pointers.set(pointer("3", local_path=None, metrics={}), action="promote", from_version=None)
        got = pointers.get(FS)
        assert got is not None
        assert got.local_path is None
        assert got.metrics == {}

    def test_set_replaces_the_pointer_and_history_is_newest_first(self, pointers: PointerStore) -> None:
        pointers.set(pointer("1"), action="promote", from_version=None)
        pointers.set(pointer("2"), action="promote", from_version="1")
        pointers.set(pointer("1", reason="back"), action="rollback", from_version="2")
        current = pointers.get(FS)
        assert current is not None
        assert current.version == "1"
        assert current.reason == "back"
        history = pointers.history(FS)
        assert [(e.action, e.from_version, e.to_version) for e in history] == [
            ("rollback", "2", "1"),
            ("promote", "1", "2"),
            ("promote", None, "1"),
        ]
        first = history[-1]
        assert (first.featureset, first.model_name, first.run_id, first.by) == (
            FS,
            "mlpipeline-demo",
            "run1",
            "tester",
        )
        assert first.metrics == pytest.approx(pointer("1").metrics)
        assert history[0].at >= history[1].at >= history[2].at
        assert [e.to_version for e in pointers.history(FS, limit=2)] == ["1", "2"]

    def test_record_appends_without_moving_the_pointer(self, pointers: PointerStore) -> None:
        pointers.set(pointer("1"), action="promote", from_version=None)
        pointers.record(
            HistoryEntry(FS, "reject", "mlpipeline-demo", "1", "2", "run2", utcnow(), "ann", "no", {})
        )
        current = pointers.get(FS)
        assert current is not None
        assert current.version == "1"
        latest = pointers.history(FS)[0]
        assert (latest.action, latest.from_version, latest.to_version, latest.by, latest.reason) == (
            "reject",
            "1",
            "2",
            "ann",
            "no",
        )

    def test_feature_sets_are_independent(self, pointers: PointerStore) -> None:
        pointers.set(pointer("1"), action="promote", from_version=None)
        pointers.set(pointer("7", featureset="housing"), action="force", from_version=None)
        demo, housing = pointers.get(FS), pointers.get("housing")
        assert demo is not None
        assert housing is not None
        assert (demo.version, housing.version) == ("1", "7")
        assert [e.to_version for e in pointers.history("housing")] == ["7"]
        assert [e.to_version for e in pointers.history(FS)] == ["1"]

    def test_long_texts_are_cut_like_the_sql_columns(self, pointers: PointerStore) -> None:
        stored = pointers.set(
            pointer("1", reason="r" * 3000, promoted_by="p" * 400), action="force", from_version=None
        )
        got = pointers.get(FS)
        assert got is not None
        assert len(got.reason) == 1024
        assert len(got.promoted_by) == 255
        assert (stored.reason, stored.promoted_by) == (got.reason, got.promoted_by)
        assert len(pointers.history(FS)[0].reason) == 1024

    def test_text_with_quotes_and_non_ascii_round_trips(self, pointers: PointerStore) -> None:
        reason = 'R² fell to 0.41 "after" drift; naïve model\\n'
        pointers.set(pointer("1", reason=reason), action="promote", from_version=None)
        got = pointers.get(FS)
        assert got is not None
        assert got.reason == reason
        assert pointers.history(FS)[0].reason == reason

    def test_concurrent_moves_all_land_whole(self, pointers: PointerStore) -> None:
        """Six writers at once: every move lands with its history entry; the pointer is the last.

        The global store serializes writers; SQLite queues them; on PostgreSQL (READ COMMITTED)
        concurrent moves of one feature set can collide on the pointer's primary key, and the
        loser moves again after the winner.
        """
        failed: dict[str, BaseException] = {}

        def move(version: str) -> None:
            try:
                pointers.set(pointer(version), action="promote", from_version=None)
            except BaseException as exc:  # collected for the assertions below
                failed[version] = exc

        versions = [str(i + 1) for i in range(6)]
        threads = [threading.Thread(target=move, args=(v,)) for v in versions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(isinstance(e, StoreError) for e in failed.values()), failed
        landed = sorted(v for v in versions if v not in failed)
        assert landed, "at least one move lands"
        history = pointers.history(FS)
        assert sorted(e.to_version or "" for e in history) == landed
        current = pointers.get(FS)
        assert current is not None
        assert current.version == history[0].to_version, "the pointer is the last move"
        assert failed == {}, "no move is lost to a concurrent one"


class TestSqlPointerStore(PointerContract):
    @pytest.fixture
    def pointers(self, store: SqlFeatureStore) -> SqlPointerStore:
        return SqlPointerStore(store)


class TestGlobalPointerStore(PointerContract):
    @pytest.fixture(params=["gref", pytest.param("native", marks=pytest.mark.iris)])
    def pointers(self, request: pytest.FixtureRequest) -> Iterator[GlobalPointerStore]:
        if request.param == "gref":
            yield GlobalPointerStore(FakeGref())
            return
        # A real IRIS through the Native API, under a subscript of its own (killed afterwards).
        with native_global(iris_url(), name="^MLpipelineTest") as (node, lock):
            node.kill([PRODUCTION])
            try:
                yield GlobalPointerStore(node, lock=lock)
            finally:
                node.kill([PRODUCTION])
