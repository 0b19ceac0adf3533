"""Every Python function the classes call, called with the arguments the classes pass.

The calls are read from the .cls files (tests/iris/objectscript.py), not listed by hand: each
argument is the method's parameter (its declared default, unless the scenario gives the value a
terminal user would type), a literal, or a class parameter. They run on the embedded backends
(SQLite, a local MLflow store) with the IRIS global replaced by its in-memory stand-in.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpipeline.featurestore.sql import open_store
from mlpipeline.iris import bridge
from mlpipeline.iris.pointer_store import GlobalPointerStore
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.settings import load_settings
from tests.iris import objectscript as os_
from tests.iris.conftest import housing_sample
from tests.iris.fakes import FakeGref

CLASSES = os_.all_classes()


def _strict_json(reply: str) -> dict[str, Any]:
    def no_nan(token: str) -> Any:
        raise AssertionError(f"{token} in a reply: ObjectScript's %FromJSON would reject it")

    data = json.loads(reply, parse_constant=no_nan)
    assert isinstance(data, dict)
    return data


def arguments(call: os_.PythonCall, given: dict[str, Any]) -> list[Any]:
    """What the class passes: a given value for a parameter, else the parameter's default."""
    method = CLASSES[call.cls].methods[call.method]
    declared = {a.name: a for a in method.arguments}
    values: list[Any] = []
    for arg in call.args:
        if arg.kind == "param":
            if arg.value in given:
                values.append(given[arg.value])
            else:
                assert declared[arg.value].has_default, f"{call.method}: give a value for {arg.value}"
                values.append(declared[arg.value].default)
        elif arg.kind == "const":
            values.append(arg.value)
        elif arg.kind == "class_parameter":
            cls_name, parameter = arg.value
            values.append(CLASSES[cls_name].parameters[parameter])
        else:
            raise AssertionError(f"unexpected argument kind {arg.kind}")
    return values


class Runner:
    """Calls ``Class.Method``'s bridge function as the class would, and remembers what ran."""

    def __init__(self) -> None:
        self.calls = {f"{c.cls}.{c.method}": c for c in os_.all_python_calls()}
        self.done: set[str] = set()

    def __call__(self, where: str, **given: Any) -> dict[str, Any]:
        call = self.calls[where]
        reply = getattr(bridge, call.function)(*arguments(call, given))
        assert isinstance(reply, str)
        self.done.add(where)
        return _strict_json(reply)


def ok(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["ok"] is True, reply
    assert isinstance(reply["summary"], str)
    assert reply["summary"]
    return reply


def global_version(node: FakeGref, featureset: str = "housing") -> str | None:
    p = GlobalPointerStore(node).get(featureset)
    return p.version if p else None


def test_every_class_method_runs_through_the_bridge(bridge_env: Path, gref: FakeGref, tmp_path: Path) -> None:
    from mlpipeline.registry.tracking import CHALLENGER, Tracker
    from mlpipeline.serving.predictor import open_predictor

    run = Runner()
    data = tmp_path / "data"
    data.mkdir()
    sample = housing_sample(2400, seed=3)
    files = []
    for i, (start, stop) in enumerate([(0, 900), (900, 1500), (1500, 1950), (1950, 2400)]):
        files.append(data / f"batch{i}.csv")
        sample.iloc[start:stop].to_csv(files[-1], index=False)

    # the installer's steps
    tables = ok(run("MLpipeline.Installer.CreateTablesReply"))["result"]
    assert {"demo", "housing"} <= set(tables["featuresets"])
    plan = ok(run("MLpipeline.Installer.TaskScheduleReply"))["result"]
    assert plan["name"] == "mlpipeline check housing"
    assert (
        plan["TimePeriod"],
        plan["DailyFrequency"],
        plan["DailyFrequencyTime"],
        plan["DailyIncrement"],
    ) == (
        0,
        1,
        1,
        1,
    ), "default MLPIPELINE_WATCH_INTERVAL=1h: hourly"

    # ingest; the same file again writes nothing; the IRIS copy does not exist on SQLite
    first = ok(run("MLpipeline.FeatureStore.IngestReply", path=str(files[0])))["result"]
    assert first["written"] == 900
    assert first["batch_id"] == 1
    assert "does not exist" in first["projection"]["skipped"]
    again = ok(run("MLpipeline.FeatureStore.IngestReply", path=str(files[0])))["result"]
    assert (again["written"], again["duplicate_of"], again["rows_in_store"]) == (0, 1, 900)
    assert "skipped" in ok(run("MLpipeline.FeatureStore.RefreshReply"))["result"]

    # labels later: a key that is not stored is refused; the labels already stored change nothing
    labels = data / "labels.csv"
    pd.DataFrame({"block_id": [1, 2], "median_house_value": sample["median_house_value"].iloc[:2]}).to_csv(
        labels, index=False
    )
    same = ok(run("MLpipeline.FeatureStore.LabelReply", path=str(labels), relabel=0))["result"]
    assert (same["batch_id"], same["unchanged"], same["labelled"]) == (None, 2, 0)
    pd.DataFrame({"block_id": [99999], "median_house_value": [1.0]}).to_csv(labels, index=False)
    refused = run("MLpipeline.FeatureStore.LabelReply", path=str(labels), relabel=1)
    assert (refused["ok"], refused["code"]) == (False, "MLP-200")
    assert "99999" in refused["message"]

    # the first model is promoted and published to ^MLpipeline("Production", "housing")
    trained = ok(run("MLpipeline.Pipeline.TrainReply"))["result"]
    assert trained["version"] == "1"
    assert trained["decision"]["action"] == "promote"
    assert trained["metrics"]["r2"] > 0.5
    assert global_version(gref) == "1"
    status = ok(run("MLpipeline.Pipeline.Status"))["result"]
    assert (status["rows"], status["serving"]["champion"]["version"], status["global_version"]) == (
        900,
        "1",
        "1",
    )

    records = sample.drop(columns=["median_house_value"]).head(5)
    rows = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in records.to_dict("records")
    ]
    predicted = ok(run("MLpipeline.Pipeline.Predict", json=json.dumps(rows)))["result"]
    assert predicted["version"] == "1"
    assert len(predicted["predictions"]) == 5
    with open_predictor(load_settings(), "housing", log_predictions=False) as predictor:
        direct = predictor.predict_records(rows).values
    np.testing.assert_allclose(predicted["predictions"], direct, rtol=1e-12)

    production = ok(run("MLpipeline.ModelServing.Production"))["result"]["pointer"]
    store = open_store(load_settings())
    try:
        sql = SqlPointerStore(store).get("housing")
    finally:
        store.dispose()
    assert sql is not None
    assert (production["version"], production["sha256"], production["run_id"]) == (
        sql.version,
        sql.sha256,
        sql.run_id,
    )

    # a second model, then force, roll back, approve and reject
    ok(run("MLpipeline.FeatureStore.IngestReply", path=str(files[1])))
    assert ok(run("MLpipeline.Pipeline.TrainReply", reason="more data"))["result"]["version"] == "2"
    champion = ok(run("MLpipeline.Pipeline.Status"))["result"]["serving"]["champion"]["version"]
    other = "1" if champion == "2" else "2"
    forced = ok(run("MLpipeline.Pipeline.PromoteReply", version=other))["result"]["pointer"]
    assert forced["version"] == other == global_version(gref)
    back = ok(run("MLpipeline.Pipeline.RollbackReply"))["result"]["pointer"]
    assert back["version"] == champion == global_version(gref)
    tracker = Tracker(load_settings())
    tracker.set_alias("housing", CHALLENGER, other)  # what a training under the manual policy leaves
    approved = ok(run("MLpipeline.Pipeline.ApproveReply", version=other))["result"]["pointer"]
    assert approved["version"] == other == global_version(gref)
    tracker.set_alias("housing", CHALLENGER, champion)
    ok(run("MLpipeline.Pipeline.RejectReply", version=champion))
    assert global_version(gref) == other, "a rejection moves nothing"
    history = ok(run("MLpipeline.ModelServing.History"))["result"]["history"]
    assert [e["action"] for e in history[:4]] == ["reject", "approve", "rollback", "force"]
    assert history[-1]["action"] == "promote"
    assert history[-1]["to_version"] == "1"
    assert ok(run("MLpipeline.ModelServing.PublishReply"))["result"]["changed"] is None, "already published"

    # monitoring: a check of new labels, then the scheduled check with a threshold that fires
    ok(run("MLpipeline.FeatureStore.IngestReply", path=str(files[2])))
    checked = ok(run("MLpipeline.Pipeline.CheckReply"))["result"]
    assert checked["rows"] > 0
    assert checked["metrics"]["r2"] is not None
    assert checked["r2_threshold"] == 0.6
    ok(run("MLpipeline.FeatureStore.IngestReply", path=str(files[3])))
    scheduled = ok(run("MLpipeline.PerformanceMonitoring.CheckPerformanceReply", threshold="0.999"))["result"]
    assert scheduled["r2_threshold"] == 0.999
    assert scheduled["rows"] == 450
    assert scheduled["decision"]["action"] == "retrain"
    assert "performance" in scheduled["decision"]["reasons"]
    assert scheduled["retrain"]["version"] == "3"
    store = open_store(load_settings())
    try:
        final = SqlPointerStore(store).get("housing")
    finally:
        store.dispose()
    assert final is not None
    assert global_version(gref) == final.version, "the global names the production model"

    # tuning from IRIS: a 3-trial study on the training part, refitted as the next version
    tuned = ok(run("MLpipeline.Pipeline.TuneReply", trials=3))["result"]
    assert tuned["study"]["complete"] == 3
    assert tuned["version"] in ("4", None), "a refit, or nothing when the champion's configuration won"
    assert tuned["params_source"].startswith("tuned") or tuned["version"] is None
    refused = run("MLpipeline.Pipeline.TuneReply", trials=-2)
    assert (refused["ok"], refused["code"]) == (False, "MLP-100")
    assert "at least 1" in refused["message"]

    assert run.done == set(run.calls), f"not exercised: {set(run.calls) - run.done}"
    log = (bridge_env / "logs" / "mlpipeline.jsonl").read_text()
    assert '"entry": "iris"' in log


def test_errors_come_back_as_codes_and_messages(bridge_env: Path) -> None:
    unknown = _strict_json(bridge.train("no_such_set", "x"))
    assert unknown["ok"] is False
    assert unknown["code"] == "MLP-400"
    assert "no_such_set" in unknown["message"]
    bad_json = _strict_json(bridge.predict("housing", "{not json"))
    assert (bad_json["ok"], bad_json["code"]) == (False, "MLP-200")
    assert "not valid JSON" in bad_json["message"]
    no_tables = _strict_json(bridge.predict("housing", '[{"longitude": -122.2}]'))
    assert (no_tables["ok"], no_tables["code"]) == (False, "MLP-300"), "the installer has not run"
    _strict_json(bridge.create_tables())
    no_model = _strict_json(bridge.predict("housing", '[{"longitude": -122.2}]'))
    assert (no_model["ok"], no_model["code"]) == (False, "MLP-400"), "no production model yet"
    no_global = _strict_json(bridge.production("housing"))
    assert no_global["code"] == "MLP-100", "no IRIS, no global"
    assert "^MLpipeline" in no_global["message"]
    bad_limit = _strict_json(bridge.history("housing", "many"))
    assert bad_limit["code"] == "MLP-100"
    missing = _strict_json(bridge.ingest("housing", str(bridge_env / "nope.csv")))
    assert missing["ok"] is False
    assert missing["code"].startswith("MLP-")


def test_an_unexpected_exception_is_mlp_000_with_its_traceback_in_the_log(bridge_env: Path) -> None:
    def broken(_settings: Any) -> tuple[str, Any]:
        raise ZeroDivisionError("a bug")

    reply = _strict_json(bridge._call("something", "housing", broken))
    assert reply == {
        "ok": False,
        "code": "MLP-000",
        "message": "unexpected ZeroDivisionError: a bug (traceback in the log)",
    }
    log = (bridge_env / "logs" / "mlpipeline.jsonl").read_text()
    assert "ZeroDivisionError" in log
    assert "Traceback" in log


def test_replies_never_carry_nan() -> None:
    text = bridge._dumps({"r2": float("nan"), "psi": {"a": float("inf")}, "n": np.int64(3), "x": (1.5,)})
    assert json.loads(text) == {"r2": None, "psi": {"a": None}, "n": 3, "x": [1.5]}


@pytest.mark.parametrize(
    ("override", "env", "fallback", "expected"),
    [
        ("0.7", None, 0.6, 0.7),  # the task's setting wins
        ("", "0.55", 0.6, 0.55),  # then MLPIPELINE_R2_THRESHOLD
        ("", None, 0.65, 0.65),  # then the class parameter R2THRESHOLD
        ("", None, "", 0.6),  # then mlpipeline's default
        (0.8, None, 0.6, 0.8),  # ObjectScript may pass a number
    ],
)
def test_r2_threshold_resolution(
    monkeypatch: pytest.MonkeyPatch, override: Any, env: str | None, fallback: Any, expected: float
) -> None:
    if env is not None:
        monkeypatch.setenv("MLPIPELINE_R2_THRESHOLD", env)
    assert bridge.effective_r2_threshold(load_settings(), override, fallback) == expected


def test_a_threshold_that_is_not_a_number_is_a_config_error() -> None:
    from mlpipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="must be a number"):
        bridge.effective_r2_threshold(load_settings(), "high", 0.6)
    with pytest.raises(ConfigError, match="at most 1"):
        bridge.effective_r2_threshold(load_settings(), "2", 0.6)


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ("1h", (1, 1, 1)),
        ("3h", (1, 1, 3)),
        ("15m", (1, 0, 15)),
        ("90m", (1, 0, 90)),
        ("30s", (1, 0, 1)),  # at least a minute
        ("1d", (0, 0, 0)),  # once a day
    ],
)
def test_task_schedule_follows_the_watch_interval(
    bridge_env: Path, monkeypatch: pytest.MonkeyPatch, interval: str, expected: tuple[int, int, int]
) -> None:
    monkeypatch.setenv("MLPIPELINE_WATCH_INTERVAL", interval)
    plan = _strict_json(bridge.task_schedule("housing"))["result"]
    assert (plan["DailyFrequency"], plan["DailyFrequencyTime"], plan["DailyIncrement"]) == expected
    assert plan["interval"] == interval


def test_setup_steps_are_idempotent(bridge_env: Path, gref: FakeGref) -> None:
    """What iris_autoconf.sh runs after every start changes nothing the second time."""
    first = [_strict_json(f()) for f in (bridge.create_tables, lambda: bridge.task_schedule("housing"))]
    published = _strict_json(bridge.publish("housing"))
    nodes = dict(gref.nodes)
    second = [_strict_json(f()) for f in (bridge.create_tables, lambda: bridge.task_schedule("housing"))]
    assert first == second
    assert published["result"]["changed"] is None  # nothing to publish: no model
    assert _strict_json(bridge.publish("housing"))["result"]["changed"] is None
    assert gref.nodes == nodes


def test_bridge_logs_reach_the_console_log_with_severities(
    bridge_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.iris.fakes import FakeSystem

    system = FakeSystem()
    monkeypatch.setattr(bridge, "embedded_console", lambda: system)
    try:
        reply = _strict_json(bridge.train("no_such_set", "x"))
        assert reply["code"] == "MLP-400"
        _strict_json(bridge.create_tables())
    finally:
        monkeypatch.setattr(bridge, "embedded_console", lambda: None)
        bridge._setup()  # detach the handler again
    warnings = [(m, sev) for m, _, sev in system.lines if "no_such_set" in m]
    assert warnings, system.lines
    assert warnings[0][1] == 1, "a deliberate error is a WARNING"
    assert all(prefix == 0 for _, prefix, _ in system.lines)
    assert any(sev == 0 and "schema ready" in m for m, _, sev in system.lines), "INFO events: severity 0"
    assert logging.getLogger("mlpipeline").handlers, "file logging stays configured"


def test_a_threshold_in_a_loss_may_exceed_one_an_r2_may_not() -> None:
    from mlpipeline.errors import ConfigError

    assert bridge._number("1.5", "the log loss threshold", r2=False) == 1.5
    with pytest.raises(ConfigError, match="at most 1"):
        bridge._number("1.5", "the R² threshold")
