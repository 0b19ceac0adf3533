"""Definition parsing: the shipped files load; every invalid case names its key and a fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from mlpipeline.errors import DefinitionError, ExpressionError, NotFoundError
from mlpipeline.featuresets.definition import available_featuresets, load_definition, parse_definition
from mlpipeline.featuresets.expressions import compile_expression


def base() -> dict[str, Any]:
    return {
        "name": "shop",
        "table": "shop_orders",
        "entity_key": {"column": "order_id"},
        "event_time": "ordered_at",
        "label_time": "settled_at",
        "target": {"column": "amount", "min": 0},
        "features": {
            "price": {"type": "float", "min": 0},
            "qty": {"type": "integer", "min": 1},
            "channel": {"type": "categorical", "values": ["web", "shop"]},
        },
        "constants": {"vat": 0.2},
        "derived": {"gross": "price * qty * (1 + vat)"},
        "model": {"params": {"n_estimators": 10}},
    }


def test_valid_definition_round_trip() -> None:
    d = parse_definition(base())
    assert d.raw_columns == ("order_id", "ordered_at", "settled_at", "price", "qty", "channel", "amount")
    assert d.model_features == ("price", "qty", "channel", "gross")
    assert d.model.estimator == "lightgbm"
    assert len(d.content_hash) == 64


def test_content_hash_changes_with_definition() -> None:
    other = base()
    other["features"]["price"]["max"] = 10
    assert parse_definition(base()).content_hash != parse_definition(other).content_hash


def test_shipped_definitions_load() -> None:
    assert {"housing", "demo"} <= set(available_featuresets())
    housing = load_definition("housing")
    assert housing.entity_key.generate
    assert housing.features["total_bedrooms"].missing == "native"
    assert "rooms_per_household" in housing.model_features
    demo = load_definition("demo")
    assert demo.label_time == "delivered_at"
    assert demo.features["courier_rating"].fill_value == 4.5


def _mutate(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(base())
    node: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data


_DELETE = object()

INVALID = [
    # (path, value, words the message must contain)
    ("name", _DELETE, ["name", "required"]),
    ("table", "Shop Orders", ["table", "lower-case"]),
    ("table", "mlp_orders", ["table", "reserved"]),
    ("entity_key", _DELETE, ["entity_key", "required"]),
    ("entity_key.column", "1id", ["entity_key.column", "not a valid name"]),
    ("entity_key", {"column": "id", "type": "string", "generate": True}, ["generated key"]),
    ("target", _DELETE, ["target", "required"]),
    ("features.price.type", "money", ["features.price.type", "float"]),
    ("features.price.colour", "red", ["features.price.colour", "unknown key"]),
    ("features.price.min", 5, None),  # placeholder replaced below
    ("features.channel.min", 1, ["features.channel", "numeric features only"]),
    ("features.channel.values", [], ["features.channel", "empty"]),
    ("features.channel.values", ["web", "web"], ["features.channel", "twice"]),
    ("features.qty.values", ["a"], ["features.qty", "categorical features only"]),
    ("features.price.missing", "constant", ["features.price", "fill_value"]),
    ("features.price.missing", "drop", ["features.price.missing", "error"]),
    ("features.amount", {"type": "float"}, ["features.amount", "already used"]),
    ("features", {}, ["features", "at least one"]),
    ("event_time", _DELETE, ["label_time", "event_time"]),
    ("constants.price", 1.0, ["constants.price", "clashes"]),
    ("derived", {"gross": "price * unknown_col"}, ["derived.gross", "unknown name 'unknown_col'"]),
    ("derived", {"bad": "channel * 2"}, ["derived.bad", "categorical"]),
    ("derived", {"bad": "__import__('os').system('x')"}, ["derived.bad", "not allowed"]),
    ("derived", {"bad": "price.real"}, ["derived.bad", "not allowed"]),
    ("derived", {"bad": "price >"}, ["derived.bad", "not a valid expression"]),
    ("derived", {"bad": "price if qty else 1"}, ["derived.bad", "not allowed"]),
    ("derived", {"price": "qty * 2"}, ["derived.price", "clashes"]),
    ("derived", {"bad": "sqrt(price, qty)"}, ["derived.bad", "sqrt() takes 1"]),
    ("derived", {"bad": "pow(price, 2)"}, ["derived.bad", "function 'pow' is not allowed"]),
    ("model.holdout", {"fraction": 1.5}, ["model.holdout.fraction"]),
    ("model.min_training_rows", 1, ["model.min_training_rows"]),
]
INVALID[9] = ("features.price.max", -1, ["features.price", "greater than max"])


@pytest.mark.parametrize(("path", "value", "words"), INVALID, ids=[f"{p}={v!r}"[:50] for p, v, _ in INVALID])
def test_invalid_definition_names_the_problem(path: str, value: Any, words: list[str]) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_definition(_mutate(path, value), source="shop.toml")
    message = str(info.value)
    assert message.startswith("shop.toml: ")
    for word in words:
        assert word in message, message


def test_bad_expression_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match=r"derived\.bad"):
        compile_expression("price @ qty", where="derived.bad")


def test_load_by_path_checks_name_matches_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text(
        'name = "shop"\ntable = "t"\n[entity_key]\ncolumn = "id"\n[target]\ncolumn = "y"\n'
        '[features.x]\ntype = "float"\n'
    )
    with pytest.raises(DefinitionError, match="must match the file name 'other'"):
        load_definition(path)


def test_invalid_toml_and_encoding(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(DefinitionError, match="invalid TOML"):
        load_definition(broken)
    latin = tmp_path / "latin.toml"
    latin.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(DefinitionError, match="UTF-8"):
        load_definition(latin)


def test_unknown_featureset_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"feature set 'housng' not found \(known: .*housing"):
        load_definition("housng", tmp_path)


def test_user_folder_overrides_shipped(tmp_path: Path) -> None:
    (tmp_path / "housing.toml").write_text(
        'name = "housing"\ntable = "my_housing"\n[entity_key]\ncolumn = "id"\n[target]\ncolumn = "y"\n'
        '[features.x]\ntype = "float"\n'
    )
    assert load_definition("housing", tmp_path).table == "my_housing"
    assert load_definition("housing").table == "housing"


def test_a_time_column_may_have_a_source_name() -> None:
    data = base()
    data["event_time"] = {"column": "ordered_at", "source": "Ordered At"}
    data["label_time"] = {"column": "settled_at", "source": "Settled"}
    d = parse_definition(data)
    assert d.event_time == "ordered_at"
    assert d.sources["Ordered At"] == "ordered_at"
    assert d.sources["Settled"] == "settled_at"
    data["event_time"] = {"column": "ordered_at", "name": "x"}
    with pytest.raises(DefinitionError, match="unknown key"):
        parse_definition(data)


def test_an_estimator_that_is_not_allowed_is_refused_when_the_file_loads() -> None:
    data = base()
    data["model"]["estimator"] = "xgboost"
    with pytest.raises(DefinitionError, match=r"model\.estimator: 'xgboost' is not allowed"):
        parse_definition(data)


def test_an_estimator_name_that_is_not_an_estimator_class_is_never_called() -> None:
    data = base()
    data["model"]["estimator"] = "sklearn.datasets.clear_data_home"
    with pytest.raises(DefinitionError, match="is not a scikit-learn estimator class"):
        parse_definition(data)
