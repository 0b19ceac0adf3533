"""Static checks of the ObjectScript classes (IRIS cannot run here): syntax, the Python they call,
the calls between them, and that IRIS would compute the derived features the definition does."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap

import numpy as np
import pytest

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featuresets.portable import compile_arithmetic
from mlpipeline.iris import bridge
from mlpipeline.iris.pointer_store import PRODUCTION
from mlpipeline.settings import Settings
from tests.iris import objectscript as os_

CLASSES = os_.all_classes()

#: Classes of IRIS itself the MLpipeline classes call (not checkable here; see IRIS.md).
IRIS_CLASSES = {"%DynamicObject", "%SQL.Statement", "%SYS.Task", "%SYS.System", "SYS.LogDmn"}


def test_the_issue_s_classes_exist() -> None:
    assert set(CLASSES) == {
        "MLpipeline.Base",
        "MLpipeline.FeatureStore",
        "MLpipeline.Pipeline",
        "MLpipeline.PerformanceMonitoring",
        "MLpipeline.ModelServing",
        "MLpipeline.Task.CheckPerformance",
        "MLpipeline.Installer",
    }
    for name, cls in CLASSES.items():
        expected = os_.CLASS_DIR.joinpath(*name.split(".")).with_suffix(".cls")
        assert cls.path == expected, f"{name} must live in {expected} (IRIS's LoadDir names it by content)"


@pytest.mark.parametrize("path", os_.class_files(), ids=lambda p: p.name)
def test_every_class_parses_without_error_nodes(path: os_.Path) -> None:
    tree = os_.parse_tree(path)
    assert not tree.root_node.has_error, os_.problems(tree)
    assert os_.problems(tree) == []


def test_a_syntax_error_is_caught_by_the_parser() -> None:
    """The check above can fail: a broken method body shows as an error node."""
    broken = b"Class MLpipeline.Broken\n{\nClassMethod X() As %Status\n{\n    sett x = 1\n}\n}\n"
    assert os_.parser().parse(broken).root_node.has_error


def _python_methods() -> list[tuple[str, os_.Method]]:
    return [
        (f"{c.name}.{m.name}", m)
        for c in CLASSES.values()
        for m in c.methods.values()
        if m.language == "python"
    ]


@pytest.mark.parametrize(
    ("where", "method"), _python_methods(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_python_bodies_parse_and_call_exactly_one_package_function(where: str, method: os_.Method) -> None:
    tree = ast.parse(textwrap.dedent(method.body))  # a SyntaxError fails the test
    cls = CLASSES[where.rsplit(".", 1)[0]]
    calls = os_.python_calls(cls, method)
    assert len(calls) == 1, f"{where} must call one function of the package, calls {calls}"
    statements = [s for s in tree.body if not isinstance(s, ast.Import | ast.ImportFrom)]
    assert len(statements) == 1, f"{where}: one 'return bridge.f(...)'"
    assert isinstance(statements[0], ast.Return), where
    assert len(textwrap.dedent(method.body).strip().splitlines()) <= 4, f"{where} must stay a few lines"
    assert method.returns == "%String", f"{where}: Python methods return the JSON reply as %String"
    for node in ast.walk(tree):  # only mlpipeline and iris are imported
        if isinstance(node, ast.ImportFrom):
            assert (node.module or "").startswith("mlpipeline"), where
        elif isinstance(node, ast.Import):
            assert all(a.name == "iris" for a in node.names), where


def test_every_referenced_python_function_exists_and_accepts_the_arguments_passed() -> None:
    calls = os_.all_python_calls()
    assert calls
    for call in calls:
        module = importlib.import_module(call.module)
        assert module.__name__ == "mlpipeline.iris.bridge", f"{call.cls}.{call.method} calls {call.module}"
        function = getattr(module, call.function, None)
        assert callable(function), f"{call.cls}.{call.method}: {call.module}.{call.function} does not exist"
        assert call.function in bridge.__all__, f"{call.function} is not in the bridge's public list"
        signature = inspect.signature(function)
        signature.bind(*[object() for _ in call.args])  # raises TypeError on a mismatch
        required = [p for p in signature.parameters.values() if p.default is inspect.Parameter.empty]
        assert len(call.args) >= len(required)
        method = CLASSES[call.cls].methods[call.method]
        for arg in call.args:
            if arg.kind == "class_parameter":
                cls_name, parameter = arg.value
                assert parameter in CLASSES[cls_name].parameters, f"{cls_name} has no parameter {parameter}"
            elif arg.kind == "param":
                assert arg.value in {a.name for a in method.arguments}
        # every argument of the method reaches the function (nothing silently dropped)
        passed = {a.value for a in call.args if a.kind == "param"}
        assert passed == {a.name for a in method.arguments}, f"{call.cls}.{call.method}"


def test_objectscript_calls_reach_methods_that_exist_with_fitting_arity() -> None:
    for cls in CLASSES.values():
        for method in cls.methods.values():
            for call in method.calls:
                target_name = call.cls or cls.name
                if target_name in IRIS_CLASSES or target_name.startswith("%"):
                    continue
                target = CLASSES.get(target_name)
                assert target is not None, f"{cls.name}.{method.name} calls unknown class {target_name}"
                owners = [target] + [CLASSES[e] for e in target.extends if e in CLASSES]
                callee = next((o.methods[call.method] for o in owners if call.method in o.methods), None)
                assert callee is not None, f"{cls.name}.{method.name}: {target_name}.{call.method} missing"
                assert len(call.args) <= len(callee.arguments), f"{cls.name}.{method.name} -> {call.method}"
                required = [a for a in callee.arguments if not a.has_default]
                assert len(call.args) >= len(required), f"{cls.name}.{method.name} -> {call.method}"


def test_status_methods_are_one_line_over_their_reply_twin() -> None:
    for cls in CLASSES.values():
        for name, method in cls.methods.items():
            twin = cls.methods.get(f"{name}Reply")
            if twin is None:
                continue
            assert method.returns == "%Status", name
            assert method.language == "objectscript", name
            assert [c.method for c in method.calls] == ["StatusOf", twin.name], f"{cls.name}.{name}"
            reply_call = method.calls[1]
            assert reply_call.args == [a.name for a in twin.arguments], f"{cls.name}.{name} passes all"
            assert [(a.name, a.default) for a in method.arguments][: len(twin.arguments)] == [
                (a.name, a.default) for a in twin.arguments
            ], f"{cls.name}.{name} and its twin agree on arguments and defaults"


def test_derived_features_in_iris_equal_the_definition() -> None:
    """Each SqlComputed property of FeatureStore computes a [derived] expression of housing.toml."""
    d = load_definition("housing")
    cls = CLASSES["MLpipeline.FeatureStore"]
    by_sql = {p.sql_name: p for p in cls.properties.values()}
    computed = {p.sql_name: p for p in cls.properties.values() if "SqlComputed" in p.keywords}
    assert set(computed) == {f.name for f in d.derived}, "one stored computed property per derived feature"
    ratio = re.compile(
        r"^\{\s*set \{\*\} = ##class\(MLpipeline\.FeatureStore\)\.Ratio\(\{(\w+)\}, \{(\w+)\}\)\s*\}$"
    )
    for feature in d.derived:
        prop = computed[feature.name]
        kw = prop.keywords
        assert "Calculated" not in kw, "stored, not computed on read"
        assert "Transient" not in kw
        match = ratio.match(kw["SqlComputeCode"])
        assert match, f"{prop.name}: unexpected compute code {kw['SqlComputeCode']}"
        numerator, denominator = match.groups()
        # {field} names are SQL field names (SqlFieldName), as IRIS requires when it is set
        iris_expression = f"{numerator} / {denominator}"
        assert ast.dump(ast.parse(iris_expression, mode="eval")) == ast.dump(
            ast.parse(feature.expression, mode="eval")
        ), f"{feature.name}: IRIS computes {iris_expression}, the definition {feature.expression}"
        # SqlComputeOnChange names *properties* (not SQL names): the ones behind those fields
        on_change = [s.strip() for s in kw["SqlComputeOnChange"].strip("()").split(",")]
        assert on_change == [by_sql[numerator].name, by_sql[denominator].name], prop.name
        assert prop.type == "%Library.Double"


def test_ratio_semantics_match_the_python_feature_code() -> None:
    """Ratio() gives "" (NULL) where Python gives NaN: a missing operand or a zero denominator."""
    body = CLASSES["MLpipeline.FeatureStore"].methods["Ratio"].body
    assert 'if (numerator = "") || (denominator = "") || (+denominator = 0)' in body
    assert "return $double(numerator) / $double(denominator)" in body

    def iris_ratio(a: float, b: float) -> float:  # the two lines above, in Python
        if np.isnan(a) or np.isnan(b) or b == 0:
            return float("nan")
        return float(np.float64(a) / np.float64(b))

    expression = compile_arithmetic("total_rooms / households")
    a = np.array([880.0, 0.0, 5.0, np.nan, 7.0, 0.1, 3.0])
    b = np.array([126.0, 0.0, 0.0, 3.0, np.nan, 3.0, 0.7])
    with np.errstate(all="ignore"):
        python = expression.evaluate_quietly({"total_rooms": a, "households": b}, len(a))
    iris = np.array([iris_ratio(x, y) for x, y in zip(a, b, strict=True)])
    np.testing.assert_array_equal(np.isnan(python), np.isnan(iris))
    np.testing.assert_array_equal(python[~np.isnan(python)], iris[~np.isnan(iris)])


def test_feature_store_columns_and_indices_follow_the_definition() -> None:
    d = load_definition("housing")
    cls = CLASSES["MLpipeline.FeatureStore"]
    assert cls.parameters["FEATURESET"] == d.name
    assert "%Persistent" in cls.extends
    sql_names = {p.sql_name: p for p in cls.properties.values()}
    kinds = {"float": "%Library.Double", "integer": "%Library.BigInt"}
    for column in d.raw_columns:
        assert column in sql_names, f"FeatureStore has no property for {column}"
        prop = sql_names[column]
        if column == d.entity_key.column:
            assert prop.type == "%Library.BigInt"
            assert "Required" in prop.keywords
        elif column in d.features and d.features[column].type == "categorical":
            assert prop.type.startswith("%Library.String")
        elif column in d.features:
            assert prop.type == kinds[d.features[column].type], column
    assert {"batch_id", "ingested_at"} <= set(sql_names)
    indexed = {re.search(r"On (\w+)", text).group(1): text for text in cls.indices.values()}  # type: ignore[union-attr]
    key_property = sql_names[d.entity_key.column].name
    assert "Unique" in indexed[key_property], "the key is indexed and unique"
    assert sql_names["ingested_at"].name in indexed, "time index"
    assert sql_names["batch_id"].name in indexed
    for method in ("Ingest", "Refresh"):
        assert all(a.default == d.name for a in cls.methods[method].arguments if a.name == "featureset")


def test_r2threshold_parameter_equals_the_settings_default() -> None:
    parameter = CLASSES["MLpipeline.PerformanceMonitoring"].parameters["R2THRESHOLD"]
    assert parameter == Settings.model_fields["r2_threshold"].default


def test_task_definition_is_a_task_with_public_settings() -> None:
    task = CLASSES["MLpipeline.Task.CheckPerformance"]
    assert task.extends == ["%SYS.Task.Definition"]
    assert task.parameters["TaskName"]
    assert set(task.properties) == {"FeatureSet", "R2Threshold"}
    assert task.properties["FeatureSet"].keywords["InitialExpression"] == '"housing"'
    on_task = task.methods["OnTask"]
    assert on_task.kind == "Method"
    assert on_task.returns == "%Status"
    assert [(c.cls, c.method, c.args) for c in on_task.calls] == [
        ("MLpipeline.PerformanceMonitoring", "CheckPerformance", ["..FeatureSet", "..R2Threshold", "1"])
    ]
    installer = CLASSES["MLpipeline.Installer"].methods["ScheduleTask"].body
    assert f'set task.TaskClass = "{task.name}"' in installer
    assert "..TaskId(p.name, .id)" in installer, "the task is looked up by name before it is created"


def test_model_serving_reads_the_layout_the_pointer_store_writes() -> None:
    body = CLASSES["MLpipeline.ModelServing"].methods["Version"].body
    assert f'$get(^MLpipeline("{PRODUCTION}", featureset))' in body
    assert "%FromJSON(head).pointer" in body
    assert "pointer.version" in body


def test_autoconf_and_installer_never_train() -> None:
    text = (os_.ROOT / "iris_autoconf.sh").read_text()
    installer = CLASSES["MLpipeline.Installer"]
    called = {c.method for m in installer.methods.values() for c in m.calls}
    for forbidden in ("Train", "Check", "CheckPerformance", "Promote", "Rollback", "Approve"):
        assert forbidden not in called
        assert f").{forbidden}(" not in text
