"""Tuning's pure parts: the ``when`` decision table, the space and its refusals, the folds, the
merged parameters, and the journal storage on every store backend."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpipeline.errors import ConfigError, DataValidationError, DefinitionError
from mlpipeline.featuresets.definition import Definition, parse_definition
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.monitoring.triggers import REASONS, decide_tuning
from mlpipeline.training.tuning import (
    DEFAULT_LIGHTGBM_SPACE,
    check_tuning,
    cv_folds,
    merged_params,
    search_space,
)


def _definition(model: dict[str, Any] | None = None, **extra: Any) -> Definition:
    data: dict[str, Any] = {
        "name": "t",
        "table": "t",
        "entity_key": {"column": "id"},
        "target": {"column": "y"},
        "features": {"x": {"type": "float"}, "g": {"type": "integer"}},
        "model": model or {},
        **extra,
    }
    return parse_definition(data)


# -- when --------------------------------------------------------------------------------------

WHEN_TABLE = [
    # when, reasons, studied before, last tuned, last held -> tune
    ("never", ("performance",), False, None, None, False),
    ("never", ("drift",), True, False, True, False),
    ("every_retrain", ("schedule",), True, True, False, True),
    ("every_retrain", ("manual",), False, None, None, True),
    ("first", ("no_model",), False, None, None, True),
    ("first", ("performance",), True, True, False, False),
    ("first", ("drift",), True, False, True, False),
    ("gate_failed", ("performance",), False, False, True, True),
    ("gate_failed", ("performance",), True, True, True, False),
    ("gate_failed", ("performance",), False, False, False, False),
    ("gate_failed", ("no_model",), False, None, None, False),
    ("drift", ("drift",), True, True, False, True),
    ("drift", ("schedule", "out_of_range"), False, False, False, True),
    ("drift", ("performance", "new_data"), True, False, True, False),
]


@pytest.mark.parametrize(("when", "reasons", "studied", "tuned", "held", "expected"), WHEN_TABLE)
def test_when_decision_table(
    when: Any, reasons: Any, studied: bool, tuned: bool | None, held: bool | None, expected: bool
) -> None:
    decision = decide_tuning(
        when, reasons, studied_before=studied, last_training_tuned=tuned, last_training_held=held
    )
    assert decision.tune is expected
    assert f"when = {when}" in decision.why


def test_the_policy_knows_every_when_the_definition_accepts() -> None:
    from typing import get_args

    from mlpipeline.featuresets import definition
    from mlpipeline.monitoring import triggers

    assert get_args(triggers.TuneWhen) == get_args(definition.TuneWhen)
    assert {row[0] for row in WHEN_TABLE} == set(get_args(definition.TuneWhen))


def test_every_reason_under_drift_is_decided() -> None:
    tuned = {
        r
        for r in REASONS
        if decide_tuning(
            "drift", (r,), studied_before=True, last_training_tuned=False, last_training_held=False
        ).tune
    }
    assert tuned == {"drift", "out_of_range"}


# -- the space and its refusals ------------------------------------------------------------------


def test_default_space_is_lightgbms_main_parameters() -> None:
    d = _definition()
    assert set(search_space(d)) == {
        "learning_rate",
        "num_leaves",
        "max_depth",
        "min_child_samples",
        "feature_fraction",
        "bagging_fraction",
        "lambda_l1",
        "lambda_l2",
    }
    assert check_tuning(d) == DEFAULT_LIGHTGBM_SPACE


def test_a_given_space_replaces_the_default() -> None:
    d = _definition({"tuning": {"space": {"eta": {"low": 0.01, "high": 0.2, "log": True}}}})
    assert list(check_tuning(d)) == ["eta"]


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"learning_rat": {"low": 0.01, "high": 0.2}},
            "'learning_rat' is not a parameter of LightGBM (did you mean 'learning_rate'?)",
        ),
        ({"objective": {"choices": ["huber", "l2"]}}, "'objective' is set by mlpipeline"),
        (
            {"eta": {"low": 0.01, "high": 0.2}, "learning_rate": {"low": 0.01, "high": 0.3}},
            "are the same LightGBM parameter",
        ),
    ],
)
def test_unknown_or_reserved_parameters_are_refused(space: dict[str, Any], message: str) -> None:
    d = _definition({"tuning": {"space": space}})
    with pytest.raises(ConfigError, match=r"model\.tuning\.space") as err:
        check_tuning(d)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("tuning", "message"),
    [
        ({"space": {"num_leaves": {"low": 64, "high": 8}}}, "the range 64..8 is empty"),
        ({"space": {"num_leaves": {"low": 8, "high": 8}}}, "is empty"),
        ({"space": {"lambda_l1": {"low": 0.0, "high": 1.0, "log": True}}}, "log = true needs low > 0"),
        ({"space": {"boosting": {"choices": []}}}, "choices is empty"),
        ({"space": {"boosting": {"choices": ["gbdt"], "low": 1}}}, "not both"),
        ({"space": {}}, "space is empty"),
        ({"trials": 0}, "greater than or equal to 1"),
        ({"trials": -3}, "greater than or equal to 1"),
        ({"timeout": "0s"}, "not a positive duration"),
        ({"timeout": "soon"}, "timeout"),
        ({"when": "sometimes"}, "when"),
        ({"cv": 1}, "greater than or equal to 2"),
        ({"trails": 5}, "trails"),
        (
            {"space": {"trials": 5, "cv": 2, "eta": {"low": 0.01, "high": 0.2}}},
            "trials, cv ended up in [model.tuning.space]",
        ),
    ],
)
def test_bad_tuning_sections_fail_when_the_definition_loads(tuning: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=r"model\.tuning") as err:
        _definition({"tuning": tuning})
    assert message in str(err.value)


def test_a_scikit_learn_estimator_needs_a_space() -> None:
    with pytest.raises(DefinitionError, match="has no default search space"):
        _definition({"estimator": "sklearn.ensemble.HistGradientBoostingRegressor", "tuning": {"trials": 5}})
    d = _definition({"estimator": "sklearn.ensemble.HistGradientBoostingRegressor"})
    with pytest.raises(ConfigError, match="has no default search space"):
        check_tuning(d)  # `mlpipeline tune` on a definition without [model.tuning]
    spaced = _definition(
        {
            "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
            "tuning": {"space": {"max_depht": {"low": 2, "high": 8}}},
        }
    )
    with pytest.raises(ConfigError, match="did you mean 'max_depth'"):
        check_tuning(spaced)
    seeded = _definition(
        {
            "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
            "tuning": {"space": {"random_state": {"low": 1, "high": 8}}},
        }
    )
    with pytest.raises(ConfigError, match=r"model\.seed"):
        check_tuning(seeded)


def test_merged_parameters_replace_aliases_and_turn_bagging_on() -> None:
    d = _definition()
    base = {"colsample_bytree": 0.9, "eta": 0.05, "n_estimators": 300}
    merged = merged_params(d, base, {"feature_fraction": 0.6, "learning_rate": 0.1, "bagging_fraction": 0.7})
    assert merged == {
        "n_estimators": 300,
        "feature_fraction": 0.6,
        "learning_rate": 0.1,
        "bagging_fraction": 0.7,
        "bagging_freq": 1,
    }
    assert "bagging_freq" not in merged_params(d, {}, {"bagging_fraction": 1.0})
    assert merged_params(d, {"subsample_freq": 3}, {"bagging_fraction": 0.5})["subsample_freq"] == 3
    # a bagging fraction the search does not touch changes nothing else
    assert merged_params(d, {"subsample": 0.8}, {"learning_rate": 0.1}) == {
        "subsample": 0.8,
        "learning_rate": 0.1,
    }


def test_a_group_with_an_event_time_is_refused() -> None:
    with pytest.raises(DefinitionError, match="folds are time-ordered"):
        _definition({"group": "g"}, event_time="t")
    with pytest.raises(DefinitionError, match="'nope' is not a key column or feature"):
        _definition({"group": "nope"})


def test_losing_the_training_lease_stops_the_study() -> None:
    from mlpipeline.errors import BusyError
    from mlpipeline.training.pipeline import _with_heartbeat

    seen: list[int] = []
    report = _with_heartbeat(lambda done, *_: seen.append(done), object)
    report(1, 5, 0.5, "R²")
    assert seen == [1]
    lost = _with_heartbeat(None, lambda: None)
    with pytest.raises(BusyError, match="the training lease was lost"):
        lost(2, 5, 0.5, "R²")


# -- folds ---------------------------------------------------------------------------------------


def _frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "x": rng.normal(size=n),
            "g": rng.integers(0, 30, size=n),
            "y": rng.normal(size=n),
            "t": pd.date_range("2024-01-01", periods=n, freq="h")[rng.permutation(n)],
        }
    )


def test_time_ordered_folds_validate_on_later_rows() -> None:
    d = _definition(event_time="t")
    frame = _frame()
    folds, method = cv_folds(d, frame, 3, seed=0)
    assert method == "time-ordered"
    for train, valid in folds:
        assert frame["t"].iloc[train].max() < frame["t"].iloc[valid].min()


def test_time_ordered_folds_never_cut_through_one_event_time() -> None:
    d = _definition(event_time="t")
    frame = _frame(400)
    frame["t"] = pd.Timestamp("1984-01-01") + pd.to_timedelta(np.arange(400) % 5 * 365, unit="D")  # 5 years
    folds, _ = cv_folds(d, frame, 3, seed=0)
    assert len(folds) == 3
    for train, valid in folds:
        assert frame["t"].iloc[train].max() < frame["t"].iloc[valid].min()
    assert sorted(np.concatenate([folds[0][0], *[v for _, v in folds]]).tolist()) == list(range(400))
    two_years = frame[frame["t"] <= sorted(frame["t"].unique())[1]]
    with pytest.raises(
        DataValidationError, match="2 distinct event times in the training part cannot make 3"
    ):
        cv_folds(d, two_years.reset_index(drop=True), 3, seed=0)


def test_grouped_folds_keep_each_group_in_one_fold() -> None:
    d = _definition({"group": "g"})
    frame = _frame()
    folds, method = cv_folds(d, frame, 3, seed=0)
    assert method == "grouped by g"
    for train, valid in folds:
        assert not set(frame["g"].iloc[train]) & set(frame["g"].iloc[valid])
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(len(frame)))


def test_stratified_folds_keep_the_class_shares() -> None:
    d = _definition(target={"column": "y", "type": "categorical", "values": ["no", "yes"]})
    frame = _frame()
    frame["y"] = (np.arange(len(frame)) % 10 == 0).astype(float)  # 10 % positive
    folds, method = cv_folds(d, frame, 3, seed=0)
    assert method == "stratified"
    for _, valid in folds:
        assert frame["y"].iloc[valid].sum() == 10


def test_too_few_rows_for_the_folds_is_a_clear_error() -> None:
    d = _definition()
    with pytest.raises(DataValidationError, match=r"lower \[model\.tuning\] cv"):
        cv_folds(d, _frame(20), 3, seed=0)
    grouped = _definition({"group": "g", "tuning": {"cv": 5}})
    frame = _frame()
    frame["g"] = frame["g"] % 3
    with pytest.raises(DataValidationError, match="3 distinct 'g' values cannot fill 5 folds"):
        cv_folds(grouped, frame, 5, seed=0)


# -- the journal storage -------------------------------------------------------------------------


def test_the_tuning_journal_numbers_logs_in_order_per_feature_set(store: SqlFeatureStore) -> None:
    from mlpipeline.featurestore.tuning_journal import SqlJournalBackend

    a, b = SqlJournalBackend(store, "demo", "s1"), SqlJournalBackend(store, "housing", "s1")
    a.append_logs([{"op": 1}, {"op": 2}])
    b.append_logs([{"op": "other"}])
    a.append_logs([{"op": 3, "value": float("inf")}])
    a.append_logs([])
    assert [log["op"] for log in a.read_logs(0)] == [1, 2, 3]
    assert [log["op"] for log in a.read_logs(2)] == [3]
    assert list(a.read_logs(3)) == []
    assert [log["op"] for log in b.read_logs(0)] == ["other"]
    # the lease holder answers reads from memory once it has read the journal, and numbers its
    # appends on from what it knows; other readers see them in the database
    writer = SqlJournalBackend(store, "demo", "s1", sole_writer=True)
    assert len(list(writer.read_logs(0))) == 3
    writer.append_logs([{"op": 4}, {"op": 5}])
    assert [log["op"] for log in writer.read_logs(3)] == [4, 5]
    assert list(writer.read_logs(5)) == []
    assert [log["op"] for log in a.read_logs(3)] == [4, 5]
    assert [log["op"] for log in SqlJournalBackend(store, "demo", "s1").read_logs(0)] == [1, 2, 3, 4, 5]
    assert list(SqlJournalBackend(store, "demo", "s2").read_logs(0)) == [], "one journal per study"


def test_an_optuna_study_round_trips_through_the_journal(store: SqlFeatureStore) -> None:
    import optuna
    from optuna.storages import JournalStorage

    from mlpipeline.featurestore.tuning_journal import SqlJournalBackend

    storage = JournalStorage(SqlJournalBackend(store, "demo", "s"))
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.optimize(lambda t: -((t.suggest_float("x", -3, 3) - 1) ** 2), n_trials=4)
    again = optuna.load_study(study_name="s", storage=JournalStorage(SqlJournalBackend(store, "demo", "s")))
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    assert again.best_value == study.best_value


# -- the gate's holdout ---------------------------------------------------------------------------


def test_the_time_holdout_never_cuts_through_one_event_time() -> None:
    from mlpipeline.training.steps import split_holdout

    d = _definition(event_time="t")
    frame = _frame(500)
    frame["t"] = pd.Timestamp("1984-06-30") + pd.to_timedelta(
        np.arange(500) // 100 * 365, unit="D"
    )  # 5 x 100
    split = split_holdout(d, frame)  # 20 %: exactly the last year
    assert len(split.holdout) == 100
    frame = frame.iloc[:-30]  # the last year has 70 rows: 94 held would cut the year before
    split = split_holdout(d, frame)
    assert split.train["t"].max() < split.holdout["t"].min()
    assert len(split.holdout) == 70, "the nearer change of year: 24 rows away, against 76"


def test_the_grouped_holdout_keeps_each_group_on_one_side() -> None:
    from mlpipeline.training.steps import split_holdout

    d = _definition({"group": "g"})
    frame = _frame(600)
    split = split_holdout(d, frame)
    assert split.method == "grouped by g, random"
    assert not set(split.train["g"]) & set(split.holdout["g"])
    assert 120 <= len(split.holdout) < 120 + frame["g"].value_counts().max()
    assert len(split.train) + len(split.holdout) == 600
