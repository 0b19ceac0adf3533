"""The global's layout and mirroring, the Native API adapter, and the console-log handler."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from mlpipeline.errors import StoreError
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.iris.console_log import ConsoleLogHandler, install_console_log, severity_of
from mlpipeline.iris.globals import (
    ROOT,
    embedded_gref,
    inside_iris,
    lock_reference,
    native_connection,
)
from mlpipeline.iris.pointer_store import HISTORY, PRODUCTION, GlobalPointerStore, MirroredPointerStore
from mlpipeline.logs import log_context
from mlpipeline.registry.pointer import SqlPointerStore
from tests.contract.test_pointer_store import pointer
from tests.iris.fakes import FakeGref, FakeSystem


def test_the_global_layout_is_the_documented_one() -> None:
    node = FakeGref()
    store = GlobalPointerStore(node)
    store.set(pointer("1"), action="promote", from_version=None)
    store.set(pointer("2"), action="promote", from_version="1")
    head = json.loads(node.get([PRODUCTION, "demo"]))
    assert head["seq"] == 2
    assert head["pointer"]["version"] == "2"
    entry = json.loads(node.get([PRODUCTION, "demo", HISTORY, 1]))
    assert (entry["action"], entry["to_version"]) == ("promote", "1")
    assert node.data([PRODUCTION, "demo"]) == 11  # a value and children, like $DATA
    assert all(isinstance(v, str) and v.isascii() for v in node.nodes.values()), "ASCII JSON text only"


def test_an_entry_written_before_a_crash_is_invisible_and_overwritten() -> None:
    node = FakeGref()
    store = GlobalPointerStore(node)
    store.set(pointer("1"), action="promote", from_version=None)
    # a writer died after writing entry 2 but before the head: readers do not see it
    node.set([PRODUCTION, "demo", HISTORY, 2], '{"half": "written"}')
    assert [e.to_version for e in store.history("demo")] == ["1"]
    store.set(pointer("2"), action="promote", from_version="1")
    assert [e.to_version for e in store.history("demo")] == ["2", "1"]


class _BrokenNode(FakeGref):
    def set(self, key: list[Any] | None, value: Any) -> None:
        raise RuntimeError("<PROTECT> ^MLpipeline")


def test_a_failing_global_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="PROTECT"):
        GlobalPointerStore(_BrokenNode()).set(pointer("1"), action="promote", from_version=None)


def test_mirror_follows_the_sql_pointer_and_survives_a_failing_global(
    store: SqlFeatureStore, caplog: pytest.LogCaptureFixture
) -> None:
    node = FakeGref()
    mirrored = MirroredPointerStore(SqlPointerStore(store), GlobalPointerStore(node))
    stored = mirrored.set(pointer("1"), action="promote", from_version=None)
    shown = GlobalPointerStore(node).get("demo")
    assert shown == stored, "the global holds exactly the SQL pointer, promoted_at included"
    assert mirrored.sync("demo") is None

    broken = MirroredPointerStore(SqlPointerStore(store), GlobalPointerStore(_BrokenNode()))
    with caplog.at_level(logging.ERROR, logger="mlpipeline"):
        moved = broken.set(pointer("2"), action="force", from_version="1")
    assert moved.version == "2"
    assert SqlPointerStore(store).get("demo").version == "2"
    assert "could not be updated" in caplog.text
    # the next IRIS call publishes it
    assert "published version 2" in (mirrored.sync("demo") or "")
    assert GlobalPointerStore(node).get("demo").version == "2"  # type: ignore[union-attr]
    assert GlobalPointerStore(node).history("demo")[0].action == "force", "the action of the SQL move"


def test_sync_clears_the_global_when_there_is_no_production_model(store: SqlFeatureStore) -> None:
    node = FakeGref()
    GlobalPointerStore(node).set(pointer("9"), action="promote", from_version=None)
    mirrored = MirroredPointerStore(SqlPointerStore(store), GlobalPointerStore(node))
    assert "cleared" in (mirrored.sync("demo") or "")
    assert GlobalPointerStore(node).get("demo") is None
    assert len(GlobalPointerStore(node).history("demo")) == 1, "the history stays"


def test_lock_names_are_objectscript_references() -> None:
    assert lock_reference(ROOT, ["Production", "housing"]) == '^MLpipeline("Production","housing")'
    assert lock_reference(ROOT, ['a"b', 3]) == '^MLpipeline("a""b",3)'
    assert lock_reference(ROOT, []) == "^MLpipeline"


def _sdk_parameters(method: str) -> list[str]:
    """The parameter list the installed Native SDK documents, e.g. set(value, globalName, subscripts...)."""
    import iris

    doc = getattr(iris.IRIS, method).__doc__ or ""
    line = next(x for x in doc.splitlines() if x.strip().startswith(f"{method}("))
    return [p.strip() for p in line.strip()[len(method) + 1 : -1].split(",")]


_ROLES = {
    "value": "value",
    "self.name": "globalName",
    "*key": "subscripts...",
    "'E'": "lockMode",
    "LOCK_TYPE": "lockMode",
}


@pytest.mark.parametrize(
    ("adapter", "method", "sdk"),
    [
        ("NativeGlobal.get", "get", "get"),
        ("NativeGlobal.set", "set", "set"),
        ("NativeGlobal.kill", "kill", "kill"),
        ("NativeGlobal.data", "isDefined", "isDefined"),
        ("NativeLock.acquire", "lock", "lock"),
        ("NativeLock.release", "unlock", "unlock"),
    ],
)
def test_native_adapter_calls_the_sdk_with_its_documented_argument_order(
    adapter: str, method: str, sdk: str
) -> None:
    """Read from the adapter's source and the installed SDK's docstrings: no stand-in involved."""
    import ast
    import inspect
    import textwrap

    from mlpipeline.iris import globals as module

    cls_name, func_name = adapter.split(".")
    source = textwrap.dedent(inspect.getsource(getattr(getattr(module, cls_name), func_name)))
    call = next(
        n
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == method
    )
    roles = []
    for arg in call.args:
        text = ast.unparse(arg)
        roles.append(_ROLES.get(text, "timeout" if "timeout" in text else text))
    assert roles == _sdk_parameters(sdk), f"{adapter} passes {roles}"


def test_outside_iris_there_is_no_embedded_global() -> None:
    assert inside_iris() is False
    assert embedded_gref() is None


def test_a_native_connection_needs_an_iris_url() -> None:
    from mlpipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="iris://"):
        native_connection("sqlite:///x.db")
    with pytest.raises(ConfigError, match="iris://"):
        native_connection("iris+emb:///USER")


def test_an_unreachable_iris_is_store_unavailable() -> None:
    from mlpipeline.errors import StoreUnavailableError

    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1:9"):
        native_connection("iris://u:p@127.0.0.1:9/USER")


# -- the console-log handler ----------------------------------------------------------------


def test_severities_are_0_1_2() -> None:
    levels = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
    assert [severity_of(level) for level in levels] == [0, 0, 1, 2, 2]


@pytest.fixture
def console() -> Any:
    system = FakeSystem()
    handler = install_console_log(system, logging.INFO)
    yield system
    install_console_log(None)
    assert handler is not None
    assert handler not in logging.getLogger("mlpipeline").handlers


def test_events_go_to_write_to_console_log_as_one_line(console: FakeSystem) -> None:
    log = logging.getLogger("mlpipeline.training.pipeline")
    with log_context(featureset="housing", run_id="abc"):
        log.info("step done", extra={"step": "fit", "seconds": 1.25})
        log.warning("slow\nmulti-line")
    try:
        raise ValueError("boom")
    except ValueError:
        log.error("training failed", exc_info=True)
    log.debug("not at INFO")
    lines = console.lines
    assert [(prefix, sev) for _, prefix, sev in lines] == [(0, 0), (0, 1), (0, 2)]
    first = lines[0][0]
    assert first.startswith("mlpipeline.training.pipeline: step done")
    assert "featureset=housing" in first
    assert "run_id=abc" in first
    assert "step=fit" in first
    assert lines[1][0] == "mlpipeline.training.pipeline: slow multi-line featureset=housing run_id=abc", (
        "one line"
    )
    assert lines[2][0].endswith("error=ValueError: boom")


def test_long_events_are_cut() -> None:
    system = FakeSystem()
    handler = ConsoleLogHandler(system, max_line=50)
    handler.emit(logging.LogRecord("mlpipeline.x", logging.INFO, __file__, 1, "x" * 500, (), None))
    assert len(system.lines[0][0]) == 50
    assert system.lines[0][0].endswith("…")


def test_events_of_other_threads_are_written_by_the_owner_thread(console: FakeSystem) -> None:
    log = logging.getLogger("mlpipeline.serving.prediction_log")
    worker = threading.Thread(target=lambda: log.warning("from a worker"))
    worker.start()
    worker.join()
    assert console.lines == [], "nothing written from a thread that is not IRIS's"
    for handler in logging.getLogger("mlpipeline").handlers:
        handler.flush()
    assert [m for m, _, _ in console.lines] == ["mlpipeline.serving.prediction_log: from a worker"]
    assert console.threads == {threading.get_ident()}


def test_a_failing_console_does_not_break_the_caller(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    class Down:
        def WriteToConsoleLog(self, *args: Any) -> None:
            raise RuntimeError("console unavailable")

    handler = ConsoleLogHandler(Down())
    handler.emit(logging.LogRecord("mlpipeline.x", logging.ERROR, __file__, 1, "msg", (), None))
    assert "console unavailable" in capsys.readouterr().err  # logging's own error report
