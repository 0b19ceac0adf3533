"""The retraining trigger policy's decision table, exhaustively, and duration parsing."""

from __future__ import annotations

import ast
import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mlpipeline.errors import ConfigError
from mlpipeline.monitoring import triggers
from mlpipeline.monitoring.triggers import (
    REASONS,
    TriggerDecision,
    TriggerPolicy,
    TriggerState,
    decide_retrain,
)
from mlpipeline.settings import format_duration, parse_duration

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
POLICY = TriggerPolicy(
    max_model_age=timedelta(days=7),
    new_data_rows=1_000,
    r2_threshold=0.7,
    psi_threshold=0.25,
    min_samples=100,
    min_training_rows=200,
    cooldown=timedelta(hours=1),
)
# A champion in good health: nothing fires.
HEALTHY = TriggerState(
    manual=False,
    champion_trained_at=NOW - timedelta(days=1),
    labelled_rows_since_training=10,
    r2=0.9,
    sample_size=500,
    psi={"distance_km": 0.01, "region": 0.02},
    last_retrain_started_at=NOW - timedelta(days=1),
)
DISABLED = replace(POLICY, max_model_age=None, new_data_rows=None, r2_threshold=None, psi_threshold=None)


def state(**changes: Any) -> TriggerState:
    return replace(HEALTHY, **changes)


def decide(s: TriggerState, policy: TriggerPolicy = POLICY, now: datetime = NOW) -> TriggerDecision:
    return decide_retrain(s, policy, now)


# -- every reason alone, and its boundary ------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reasons", "words"),
    [
        pytest.param(
            {}, (), ["no retrain", "≤ max_model_age 7d", "R² 0.9000 ≥ r2_threshold 0.7000"], id="healthy"
        ),
        pytest.param({"manual": True}, ("manual",), ["requested by hand"], id="manual"),
        # schedule: older than max_model_age, strictly
        pytest.param(
            {"champion_trained_at": NOW - timedelta(days=8)},
            ("schedule",),
            ["champion is 8d old > max_model_age 7d"],
            id="schedule",
        ),
        pytest.param(
            {"champion_trained_at": NOW - timedelta(days=7)},
            (),
            ["champion age 7d ≤"],
            id="schedule-at-limit",
        ),
        pytest.param(
            {"champion_trained_at": NOW - timedelta(days=7) - US},
            ("schedule",),
            ["> max_model_age"],
            id="schedule-just-over",
        ),
        # new_data: at least new_data_rows
        pytest.param(
            {"labelled_rows_since_training": 1_000},
            ("new_data",),
            ["1,000 labelled rows since the last training ≥ new_data_rows 1,000"],
            id="new-data-at-limit",
        ),
        pytest.param(
            {"labelled_rows_since_training": 999},
            (),
            ["999 labelled rows since the last training <"],
            id="new-data-just-under",
        ),
        # performance: strictly below r2_threshold, only with min_samples rows
        pytest.param(
            {"r2": 0.5}, ("performance",), ["R² 0.5000 < r2_threshold 0.7000 on 500 rows"], id="performance"
        ),
        pytest.param({"r2": 0.7}, (), ["R² 0.7000 ≥ r2_threshold 0.7000"], id="performance-at-threshold"),
        pytest.param({"r2": 0.7 - 1e-9}, ("performance",), ["< r2_threshold"], id="performance-just-under"),
        pytest.param({"r2": -3.0}, ("performance",), ["R² -3.0000"], id="performance-negative-r2"),
        pytest.param(
            {"r2": 0.1, "sample_size": 99},
            (),
            ["R² 0.1000 on 99 rows: no verdict below min_samples 100"],
            id="performance-too-few-rows",
        ),
        pytest.param(
            {"r2": 0.1, "sample_size": 100}, ("performance",), ["on 100 rows"], id="performance-min-samples"
        ),
        pytest.param({"r2": float("nan")}, (), ["R² undefined"], id="performance-nan"),
        pytest.param({"r2": None}, (), ["no R² measured"], id="performance-not-measured"),
        # drift: strictly above psi_threshold on any feature, gated by min_samples
        pytest.param(
            {"psi": {"distance_km": 0.4, "region": 0.02}},
            ("drift",),
            ["PSI > psi_threshold 0.250 on distance_km 0.400"],
            id="drift",
        ),
        pytest.param(
            {"psi": {"distance_km": 0.25, "region": 0.1}},
            (),
            ["max PSI 0.250 (distance_km) ≤ psi_threshold 0.250"],
            id="drift-at-threshold",
        ),
        pytest.param(
            {"psi": {"distance_km": 0.25 + 1e-9}}, ("drift",), ["on distance_km 0.250"], id="drift-just-over"
        ),
        pytest.param(
            {"psi": {"distance_km": 3.0}, "sample_size": 99},
            (),
            ["max PSI 3.000 (distance_km) on 99 rows: no verdict below min_samples 100"],
            id="drift-too-few-rows",
        ),
        pytest.param({"psi": {}}, (), ["no PSI measured"], id="drift-not-measured"),
        pytest.param(
            {"psi": {"distance_km": None, "region": float("nan")}},
            (),
            ["no PSI measured"],
            id="drift-no-verdicts",
        ),
        pytest.param(
            {"psi": {"distance_km": None, "region": 0.3}},
            ("drift",),
            ["on region 0.300"],
            id="drift-ignores-none",
        ),
    ],
)
def test_each_reason_alone(changes: dict[str, Any], reasons: tuple[str, ...], words: list[str]) -> None:
    d = decide(state(**changes))
    assert d.reasons == reasons
    assert d.action == ("retrain" if reasons else "none")
    assert d.retrain == bool(reasons)
    assert d.allowed_at is None
    for w in words:
        assert w in d.explanation, (w, d.explanation)


def test_drift_names_every_feature_over_the_threshold_highest_first() -> None:
    psi = {"a": 0.3, "b": 0.9, "c": 0.1, "d": 0.3, "e": None}
    d = decide(state(psi=psi))
    assert d.reasons == ("drift",)
    assert d.drifted == ("b", "a", "d")  # by PSI, then by name
    assert "on b 0.900, a 0.300, d 0.300" in d.explanation
    assert "c" not in d.drifted


def test_drift_ranking_does_not_depend_on_mapping_order() -> None:
    items = [("x", 0.5), ("y", 0.5), ("z", 0.7)]
    decisions = {decide(state(psi=dict(p))) for p in itertools.permutations(items)}
    assert len(decisions) == 1  # the same decision, explanation included, for every insertion order
    assert next(iter(decisions)).drifted == ("z", "x", "y")


def test_drifted_is_empty_when_drift_did_not_fire() -> None:
    assert decide(state(psi={"a": 0.1})).drifted == ()
    assert decide(state(psi={"a": 0.9}, sample_size=1)).drifted == ()


# -- combinations ------------------------------------------------------------------------------

OLD = {"champion_trained_at": NOW - timedelta(days=30)}
MANY = {"labelled_rows_since_training": 50_000}
BAD = {"r2": 0.2}
DRIFT = {"psi": {"distance_km": 0.6}}
MANUAL = {"manual": True}
SINGLE: dict[str, dict[str, Any]] = {
    "manual": MANUAL,
    "schedule": OLD,
    "new_data": MANY,
    "performance": BAD,
    "drift": DRIFT,
}


@pytest.mark.parametrize(
    "combo",
    [c for k in range(2, 6) for c in itertools.combinations(SINGLE, k)],
    ids="+".join,
)
def test_every_combination_lists_all_reasons_in_stable_order(combo: tuple[str, ...]) -> None:
    changes: dict[str, Any] = {}
    for reason in reversed(combo):  # build in a different order than REASONS
        changes.update(SINGLE[reason])
    d = decide(state(**changes))
    assert d.reasons == tuple(r for r in REASONS if r in combo)
    assert d.action == "retrain"
    assert d.label == "+".join(d.reasons)
    assert d.explanation.startswith(f"retrain ({', '.join(d.reasons)}): ")


def test_all_five_fire_together() -> None:
    d = decide(state(**OLD, **MANY, **BAD, **DRIFT, **MANUAL))
    assert d.reasons == ("manual", "schedule", "new_data", "performance", "drift")
    assert d.label == "manual+schedule+new_data+performance+drift"
    for words in ("requested by hand", "30d old", "50,000 labelled rows", "R² 0.2000", "distance_km 0.600"):
        assert words in d.explanation


def test_explanation_of_a_retrain_also_reports_the_checks_that_did_not_fire() -> None:
    d = decide(state(**BAD))
    assert d.explanation == (
        "retrain (performance): R² 0.2000 < r2_threshold 0.7000 on 500 rows; "
        "other checks: champion age 1d ≤ max_model_age 7d; "
        "10 labelled rows since the last training < new_data_rows 1,000; "
        "max PSI 0.020 (region) ≤ psi_threshold 0.250"
    )


def test_min_samples_gates_performance_and_drift_together_but_not_the_others() -> None:
    d = decide(state(**BAD, **DRIFT, **OLD, **MANY, sample_size=5))
    assert d.reasons == ("schedule", "new_data")


# -- no champion -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reasons", "words"),
    [
        pytest.param(
            {"labelled_rows_since_training": 200},
            ("no_model",),
            ["no champion and 200 labelled rows stored ≥ min_training_rows 200"],
            id="enough-rows",
        ),
        pytest.param(
            {"labelled_rows_since_training": 199},
            (),
            ["no champion, but only 199 labelled rows < min_training_rows 200"],
            id="too-few-rows",
        ),
        pytest.param(
            {"labelled_rows_since_training": 0, "manual": True},
            ("manual",),
            ["requested by hand"],
            id="manual-without-rows",
        ),
        pytest.param(
            {"labelled_rows_since_training": 5_000, "manual": True},
            ("manual", "no_model"),
            ["5,000 labelled rows"],
            id="manual-and-no-model",
        ),
        # Without a champion nothing can be old, scored or compared, and new_data is subsumed.
        pytest.param(
            {"labelled_rows_since_training": 50_000, **BAD, **DRIFT},
            ("no_model",),
            ["no_model"],
            id="only-no-model-fires",
        ),
        pytest.param(
            {"labelled_rows_since_training": 150, **BAD, **DRIFT}, (), ["only 150"], id="nothing-to-judge"
        ),
    ],
)
def test_no_champion(changes: dict[str, Any], reasons: tuple[str, ...], words: list[str]) -> None:
    d = decide(state(champion_trained_at=None, last_retrain_started_at=None, **changes))
    assert d.reasons == reasons
    assert d.action == ("retrain" if reasons else "none")
    for w in words:
        assert w in d.explanation


def test_no_model_is_subject_to_the_cooldown() -> None:
    """A model the gate held back is not retrained again at once."""
    s = state(champion_trained_at=None, labelled_rows_since_training=5_000, last_retrain_started_at=NOW)
    d = decide(s)
    assert (d.action, d.reasons) == ("deferred", ("no_model",))
    assert d.allowed_at == NOW + timedelta(hours=1)


# -- cooldown ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "action"),
    [
        (timedelta(0), "deferred"),
        (timedelta(minutes=30), "deferred"),
        (timedelta(hours=1) - US, "deferred"),
        (timedelta(hours=1), "retrain"),  # elapsed == cooldown: allowed again
        (timedelta(hours=1) + US, "retrain"),
        (timedelta(days=3), "retrain"),
        (-timedelta(minutes=10), "deferred"),  # a start in the future (clock skew) still counts
    ],
)
def test_cooldown_boundary(elapsed: timedelta, action: str) -> None:
    started = NOW - elapsed
    d = decide(state(**BAD, last_retrain_started_at=started))
    assert d.action == action
    assert d.reasons == ("performance",)  # a deferred decision still says what is waiting
    assert d.retrain == (action == "retrain")
    if action == "deferred":
        assert d.allowed_at == started + timedelta(hours=1)
        assert d.explanation.startswith("retrain deferred (performance): ")
        assert "deferred until " in d.explanation
        assert "cooldown 1h" in d.explanation
    else:
        assert d.allowed_at is None
        assert "cooldown" not in d.explanation


def test_deferred_explanation_names_the_time_and_the_window() -> None:
    d = decide(state(**DRIFT, last_retrain_started_at=NOW - timedelta(minutes=20)))
    assert (
        "deferred until 2024-06-01 12:40:00 UTC (last retrain started 20m ago, cooldown 1h)" in d.explanation
    )


def test_manual_overrides_the_cooldown() -> None:
    d = decide(state(**MANUAL, last_retrain_started_at=NOW - timedelta(minutes=5)))
    assert (d.action, d.reasons, d.allowed_at) == ("retrain", ("manual",), None)
    assert (
        "a manual request overrides the cooldown (last retrain started 5m ago, cooldown 1h)" in d.explanation
    )


def test_manual_overrides_the_cooldown_for_every_reason_that_fired_with_it() -> None:
    d = decide(state(**MANUAL, **BAD, **DRIFT, last_retrain_started_at=NOW - timedelta(minutes=5)))
    assert (d.action, d.reasons) == ("retrain", ("manual", "performance", "drift"))


def test_manual_outside_the_cooldown_says_nothing_about_it() -> None:
    d = decide(state(**MANUAL, last_retrain_started_at=NOW - timedelta(hours=2)))
    assert d.action == "retrain"
    assert "cooldown" not in d.explanation


def test_no_previous_retrain_means_no_cooldown() -> None:
    assert decide(state(**BAD, last_retrain_started_at=None)).action == "retrain"


def test_zero_cooldown_never_defers() -> None:
    policy = replace(POLICY, cooldown=timedelta(0))
    assert decide(state(**BAD, last_retrain_started_at=NOW), policy).action == "retrain"


def test_cooldown_alone_never_makes_a_retrain() -> None:
    d = decide(state(last_retrain_started_at=NOW - timedelta(minutes=1)))
    assert (d.action, d.allowed_at) == ("none", None)


# -- disabled triggers -------------------------------------------------------------------------


def test_disabled_triggers_never_fire() -> None:
    d = decide(state(**OLD, **MANY, **BAD, **DRIFT), DISABLED)
    assert (d.action, d.reasons) == ("none", ())
    for words in (
        "schedule disabled",
        "new-data trigger disabled",
        "performance trigger disabled",
        "drift trigger disabled",
    ):
        assert words in d.explanation


def test_manual_and_no_model_cannot_be_disabled() -> None:
    assert decide(state(**MANUAL), DISABLED).reasons == ("manual",)
    s = state(champion_trained_at=None, labelled_rows_since_training=1_000)
    assert decide(s, DISABLED).reasons == ("no_model",)


# -- time zones --------------------------------------------------------------------------------

PLUS2 = timezone(timedelta(hours=2))


def _naive(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


def _plus2(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(PLUS2)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        OLD,
        {"champion_trained_at": NOW - timedelta(days=7)},
        {"champion_trained_at": NOW - timedelta(days=7) - US},
        {**BAD, "last_retrain_started_at": NOW - timedelta(minutes=59)},
        {**BAD, "last_retrain_started_at": NOW - timedelta(hours=1)},
        {**MANUAL, "last_retrain_started_at": NOW - timedelta(minutes=1)},
    ],
)
@pytest.mark.parametrize(
    "convert_now", [_naive, _plus2, lambda m: m], ids=["now-naive", "now-plus2", "now-utc"]
)
@pytest.mark.parametrize(
    "convert_state", [_naive, _plus2, lambda m: m], ids=["state-naive", "state-plus2", "state-utc"]
)
def test_naive_means_utc_and_offsets_do_not_matter(
    changes: dict[str, Any], convert_now: Any, convert_state: Any
) -> None:
    s = state(**changes)
    expected = decide(s)
    converted = replace(
        s,
        champion_trained_at=convert_state(s.champion_trained_at),
        last_retrain_started_at=convert_state(s.last_retrain_started_at),
    )
    got = decide(converted, now=convert_now(NOW))
    assert got == expected


def test_allowed_at_is_utc_aware_even_from_naive_and_offset_inputs() -> None:
    started = datetime(2024, 6, 1, 13, 50, tzinfo=PLUS2)  # 11:50 UTC
    d = decide(state(**BAD, last_retrain_started_at=started), now=datetime(2024, 6, 1, 12, 0))
    assert d.allowed_at == datetime(2024, 6, 1, 12, 50, tzinfo=UTC)
    assert d.allowed_at is not None
    assert d.allowed_at.tzinfo is UTC
    assert "deferred until 2024-06-01 12:50:00 UTC" in d.explanation


def test_allowed_at_from_naive_inputs_is_utc() -> None:
    d = decide(
        state(**BAD, last_retrain_started_at=datetime(2024, 6, 1, 11, 30)), now=datetime(2024, 6, 1, 12)
    )
    assert d.allowed_at is not None
    assert d.allowed_at.tzinfo is UTC
    assert d.allowed_at == datetime(2024, 6, 1, 12, 30, tzinfo=UTC)


def test_now_must_be_a_datetime() -> None:
    with pytest.raises(TypeError, match="now must be a datetime"):
        decide_retrain(HEALTHY, POLICY, "2024-06-01")  # type: ignore[arg-type]


# -- an independent oracle over a grid ---------------------------------------------------------


def _oracle(s: TriggerState, p: TriggerPolicy, now: datetime) -> tuple[str, tuple[str, ...]]:
    """The rules restated plainly, to cross-check the implementation on many combinations."""
    fired = set()
    if s.manual:
        fired.add("manual")
    if s.champion_trained_at is None:
        if s.labelled_rows_since_training >= p.min_training_rows:
            fired.add("no_model")
    else:
        if p.max_model_age is not None and now - s.champion_trained_at > p.max_model_age:
            fired.add("schedule")
        if p.new_data_rows is not None and s.labelled_rows_since_training >= p.new_data_rows:
            fired.add("new_data")
        if s.sample_size >= p.min_samples:
            if p.r2_threshold is not None and s.r2 is not None and s.r2 < p.r2_threshold:
                fired.add("performance")
            if p.psi_threshold is not None and any(
                v is not None and v > p.psi_threshold for v in s.psi.values()
            ):
                fired.add("drift")
    reasons = tuple(r for r in REASONS if r in fired)
    if not reasons:
        return "none", ()
    cooling = s.last_retrain_started_at is not None and now - s.last_retrain_started_at < p.cooldown
    return ("deferred" if cooling and not s.manual else "retrain"), reasons


def test_decision_matches_the_oracle_over_a_grid() -> None:
    grid = itertools.product(
        [False, True],  # manual
        [None, NOW - timedelta(days=1), NOW - timedelta(days=7), NOW - timedelta(days=9)],  # champion
        [0, 199, 200, 999, 1_000],  # labelled rows since training
        [None, 0.5, 0.7, 0.9],  # r2
        [0, 99, 100],  # sample size
        [{}, {"a": 0.25}, {"a": 0.3, "b": 0.1}],  # psi
        [None, NOW - timedelta(minutes=30), NOW - timedelta(hours=1)],  # last retrain
        [POLICY, DISABLED],
    )
    count = 0
    for manual, champion, rows, r2, n, psi, last, policy in grid:
        s = TriggerState(manual, champion, rows, r2, n, psi, last)
        d = decide_retrain(s, policy, NOW)
        assert (d.action, d.reasons) == _oracle(s, policy, NOW), s
        assert (d.allowed_at is not None) == (d.action == "deferred")
        assert d.explanation
        count += 1
    assert count == 2 * 4 * 5 * 4 * 3 * 3 * 3 * 2


def test_decisions_are_deterministic() -> None:
    s = state(**OLD, **BAD, **DRIFT, last_retrain_started_at=NOW - timedelta(minutes=3))
    assert decide(s) == decide(s) == decide(replace(s))


# -- policy validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"max_model_age": timedelta(0)}, "max_model_age must be a positive duration"),
        ({"max_model_age": -timedelta(hours=1)}, "max_model_age must be a positive duration, got -1h"),
        ({"max_model_age": "7d"}, "max_model_age must be a duration (timedelta), got '7d'; parse text"),
        ({"max_model_age": 3600}, "max_model_age must be a duration"),
        ({"cooldown": -timedelta(seconds=1)}, "cooldown must not be negative, got -1s"),
        ({"cooldown": None}, "cooldown must be a duration"),
        ({"cooldown": "1h"}, "cooldown must be a duration"),
        ({"new_data_rows": 0}, "new_data_rows must be a whole number of rows of at least 1, got 0"),
        ({"new_data_rows": -5}, "new_data_rows must be"),
        ({"new_data_rows": 10.0}, "new_data_rows must be"),
        ({"new_data_rows": True}, "new_data_rows must be"),
        ({"min_samples": 0}, "min_samples must be a whole number of rows of at least 1"),
        ({"min_samples": None}, "min_samples must be"),
        ({"min_training_rows": 0}, "min_training_rows must be"),
        ({"r2_threshold": 1.5}, "r2_threshold must be at most 1 (R² never exceeds 1), got 1.5"),
        ({"r2_threshold": float("nan")}, "r2_threshold must be a finite number, got nan"),
        ({"r2_threshold": float("-inf")}, "r2_threshold must be a finite number"),
        ({"r2_threshold": "0.7"}, "r2_threshold must be a finite number"),
        (
            {"psi_threshold": 0.0},
            "psi_threshold must be positive (usual values: 0.1 moderate, 0.25 significant)",
        ),
        ({"psi_threshold": -0.1}, "psi_threshold must be positive"),
        ({"psi_threshold": float("inf")}, "psi_threshold must be a finite number"),
        ({"psi_threshold": False}, "psi_threshold must be a finite number"),
    ],
)
def test_policy_validation(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        replace(POLICY, **changes)
    assert words in str(info.value)
    assert info.value.code == "MLP-100"


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"r2_threshold": 1.0},
        {"r2_threshold": -0.5},
        {"r2_threshold": 0},
        {"cooldown": timedelta(0)},
        {"max_model_age": timedelta(seconds=1)},
        {"new_data_rows": 1, "min_samples": 1, "min_training_rows": 1},
        {"max_model_age": None, "new_data_rows": None, "r2_threshold": None, "psi_threshold": None},
    ],
)
def test_policy_accepts_edge_values(changes: dict[str, Any]) -> None:
    replace(POLICY, **changes)


def test_default_policy_is_valid_and_uses_the_usual_psi_threshold() -> None:
    p = TriggerPolicy()
    assert p.psi_threshold == 0.25
    assert p.cooldown > timedelta(0)


def test_policy_and_state_are_frozen() -> None:
    with pytest.raises(AttributeError):
        POLICY.cooldown = timedelta(0)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        HEALTHY.manual = True  # type: ignore[misc]


@pytest.mark.parametrize(
    "changes",
    [{"labelled_rows_since_training": -1}, {"sample_size": -1}, {"sample_size": 1.5}, {"sample_size": True}],
)
def test_state_rejects_impossible_counts(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be a whole number of rows"):
        state(**changes)


# -- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("0s", timedelta(0)),
        ("90m", timedelta(minutes=90)),
        (" 2h ", timedelta(hours=2)),
        ("2 h", timedelta(hours=2)),
        ("1H", timedelta(hours=1)),
        ("365d", timedelta(days=365)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "1", "h", "1.5h", "-1h", "+1h", "1w", "1hr", "1h30m", "one hour", "1 d 2", "PT1H", "1e3s"],
)
def test_parse_duration_rejects_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(text)
    message = str(info.value)
    assert repr(text) in message
    assert "'30s', '15m', '1h', '7d'" in message


def test_parse_duration_rejects_non_text() -> None:
    with pytest.raises(ConfigError, match="is not text"):
        parse_duration(3600)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(milliseconds=400), "0s"),
        (timedelta(seconds=45), "45s"),
        (timedelta(minutes=15), "15m"),
        (timedelta(minutes=90), "1h 30m"),
        (timedelta(days=7), "7d"),
        (timedelta(days=1, hours=2, minutes=3), "1d 2h"),
        (timedelta(days=2, seconds=5), "2d 5s"),
        (-timedelta(minutes=5), "-5m"),
    ],
)
def test_format_duration(span: timedelta, text: str) -> None:
    assert format_duration(span) == text


@pytest.mark.parametrize("text", ["30s", "15m", "1h", "7d", "45m", "2d"])
def test_format_duration_round_trips_single_units(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


# -- the module stays pure ---------------------------------------------------------------------


def test_triggers_imports_only_the_standard_library_errors_durations_and_metrics() -> None:
    source = Path(triggers.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module if node.module.startswith("mlpipeline") else node.module.split(".")[0])
    assert imported <= {
        "__future__",
        "math",
        "re",
        "collections",
        "dataclasses",
        "datetime",
        "typing",
        "mlpipeline.errors",
        "mlpipeline.settings",  # parse_duration and format_duration live beside the settings
        "mlpipeline.featuresets.metrics",  # each metric's direction (numpy at import time)
    }


def test_public_surface() -> None:
    assert [n for n in triggers.__all__ if not hasattr(triggers, n)] == []
    assert set(REASONS) == {
        "manual",
        "no_model",
        "schedule",
        "new_data",
        "performance",
        "drift",
        "out_of_range",
    }
    assert len(REASONS) == len(set(REASONS))


@pytest.mark.parametrize(
    ("stored", "since", "action"),
    [
        (500, 31, "retrain"),  # a held first model: new rows, and enough stored, so try again
        (500, 0, "none"),  # nothing changed since the last attempt: do not retrain on the same rows
        (150, 31, "none"),  # still too few rows for a first model
    ],
)
def test_without_a_champion_all_stored_rows_count_once_something_changed(
    stored: int, since: int, action: str
) -> None:
    state = TriggerState(labelled_rows_since_training=since, labelled_rows_stored=stored)
    decision = decide_retrain(state, POLICY, NOW)
    assert decision.action == action, decision.explanation


# -- verdicts with their uncertainty -------------------------------------------------------------


def test_a_noisy_window_retrains_only_when_even_its_upper_bound_is_below_the_threshold() -> None:
    noisy = state(r2=0.65, sample_size=300, interval=(0.55, 0.75))  # threshold 0.7 inside the interval
    assert decide(noisy).action == "none"
    assert "upper bound 0.7500 of its 95% interval" in decide(noisy).explanation
    assert decide(noisy, replace(POLICY, decide_on="point")).action == "retrain"
    clear = state(r2=0.62, sample_size=300, interval=(0.58, 0.66))
    assert decide(clear).reasons == ("performance",)
    assert decide(state(r2=0.65, sample_size=300)).action == "retrain"  # no interval: the point


def test_a_loss_is_judged_on_its_lower_bound() -> None:
    from mlpipeline.featuresets.metrics import METRICS

    policy = replace(POLICY, metric=METRICS["log_loss"], r2_threshold=0.5)
    assert decide(state(r2=0.55, sample_size=300, interval=(0.45, 0.6)), policy).action == "none"
    fired = decide(state(r2=0.6, sample_size=300, interval=(0.52, 0.7)), policy)
    assert fired.reasons == ("performance",)
    assert "log loss 0.6000 (lower bound 0.5200 of its 95% interval) > threshold 0.5000" in fired.explanation


def test_a_champion_trained_after_the_checks_moment_has_no_age() -> None:
    later = state(champion_trained_at=NOW + timedelta(days=900))
    decision = decide(later)
    assert decision.action == "none"
    assert "trained 900d after this moment" in decision.explanation
    assert "-900d" not in decision.explanation
