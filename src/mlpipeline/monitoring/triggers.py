"""The retraining trigger policy: one pure decision over what the last check observed.

:func:`decide_retrain` looks at a :class:`TriggerState` (facts gathered by the caller: the
champion's age, labelled rows since the last training, the check's R² and PSI, when the last
retrain started) under a :class:`TriggerPolicy` (thresholds) at a given ``now`` and returns a
:class:`TriggerDecision`: retrain, deferred, or nothing, with *every* reason that fired and a
sentence a person can read in the logs, the MLflow run and ``mlpipeline status``. It reads no
clock, no database and no MLflow, so the whole decision table is unit-tested; taking the lock
that keeps two retrains apart and running the training are the caller's job.

Reasons, in the order they are always listed (:data:`REASONS`):

``manual``
    Someone asked for a retrain. Always fires when requested and **overrides the cooldown**:
    an operator who asks explicitly has seen something the thresholds have not, and making
    them wait would only push them to work around the system. It is the only reason that
    does not need a champion or enough rows; training itself refuses too few rows.
``no_model``
    There is no champion, the store holds at least ``min_training_rows`` labelled rows
    (``labelled_rows_stored``; when the caller does not say, the rows since the last training
    count), and something changed since the last attempt: labelled rows arrived since the last
    training. So a first model the gate held back is tried again as soon as new rows come, on
    all the rows stored, but not again and again on the same rows. Without a champion there
    is no model to age, score or compare, so ``schedule``, ``new_data``, ``performance`` and
    ``drift`` never fire then.
``schedule``
    The champion is older than ``max_model_age`` (age > limit; a model exactly that old is
    still fresh).
``new_data``
    At least ``new_data_rows`` labelled rows arrived since the last training (count >= limit).
``performance``
    The champion's R² on the check's rows is below ``r2_threshold`` (strictly: R² equal to the
    threshold is acceptable, as the name "threshold" suggests). A feature set that chose
    another metric (``policy.metric``) is judged on it, in its direction: a loss above the
    threshold fires. Only with at least
    ``min_samples`` rows; with fewer, or an undefined R² (NaN, a constant target), there is
    no verdict.
``drift``
    PSI is above ``psi_threshold`` (strictly) on at least one entry of ``psi``; the decision
    names every such feature. Gated by ``min_samples`` like ``performance``: PSI of a small
    sample is biased upwards (noise alone gives about ``(buckets - 1) / rows``) and would
    otherwise retrain on every quiet day. ``None`` and NaN entries are no verdict. Whether
    the target's PSI counts is the caller's choice: include it in ``psi`` under its name.
``out_of_range``
    More than ``out_of_range_share`` of the check's rows (strictly) have an input outside the
    champion's training envelope (a number beyond its training range, a category it never
    saw; see :mod:`mlpipeline.featuresets.envelope`). Drift of its own kind: PSI folds a new
    region into the outer bucket, while the model can only extrapolate flat there. Gated by
    ``min_samples`` like ``drift``; ``None`` (a model that recorded no ranges) is no verdict.

Cooldown: when a retrain is wanted and the last retrain *started* less than ``cooldown``
ago, the decision is ``deferred`` with ``allowed_at = last start + cooldown`` (elapsed ==
cooldown is allowed again). ``manual`` overrides it. A zero cooldown disables it.

Thresholds that are ``None`` disable their reason (``schedule``, ``new_data``,
``performance``, ``drift``); the explanation says so.

Time: every datetime (``now`` and the state's) may be timezone-aware or naive; naive ones
are taken as UTC, the store's convention (see :mod:`mlpipeline.featurestore.validation`), and everything
is compared in UTC, so a naive and an aware value for the same instant give the same
decision. ``allowed_at`` is always UTC-aware. Pass ``datetime.now(UTC)``, never the naive
local ``datetime.now()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from mlpipeline.errors import ConfigError
from mlpipeline.featuresets.metrics import LEVEL, METRICS, MetricSpec, optimistic, worse_than
from mlpipeline.settings import format_duration

__all__ = [
    "REASONS",
    "Action",
    "Reason",
    "TriggerDecision",
    "TriggerPolicy",
    "TriggerState",
    "TuneWhen",
    "TuningDecision",
    "decide_retrain",
    "decide_tuning",
]

Reason = Literal["manual", "no_model", "schedule", "new_data", "performance", "drift", "out_of_range"]
Action = Literal["retrain", "deferred", "none"]

#: Every reason, in the order a decision lists them.
REASONS: tuple[Reason, ...] = (
    "manual",
    "no_model",
    "schedule",
    "new_data",
    "performance",
    "drift",
    "out_of_range",
)


@dataclass(frozen=True)
class TriggerPolicy:
    """The thresholds of the five triggers and the cooldown; ``None`` disables a trigger.

    Validated on construction (:class:`ConfigError` naming the field and the fix), so a bad
    setting fails when the service starts, not at the first check hours later.
    """

    max_model_age: timedelta | None = timedelta(days=7)
    new_data_rows: int | None = 10_000
    r2_threshold: float | None = 0.7
    psi_threshold: float | None = 0.25
    min_samples: int = 200
    min_training_rows: int = 200
    cooldown: timedelta = timedelta(hours=1)
    out_of_range_share: float | None = 0.1
    metric: MetricSpec = METRICS["r2"]  # what r2_threshold is in: R², or the feature set's metric
    # "upper_bound": performance fires only when the interval's most favourable end is worse
    # than the threshold (a small noisy window does not retrain); "point": on the value itself.
    decide_on: Literal["upper_bound", "point"] = "upper_bound"

    def __post_init__(self) -> None:
        if self.max_model_age is not None:
            _positive_duration("max_model_age", self.max_model_age)
        if not isinstance(self.cooldown, timedelta):
            raise ConfigError(f"cooldown must be a duration (timedelta), got {self.cooldown!r}")
        if self.cooldown < timedelta(0):
            raise ConfigError(f"cooldown must not be negative, got {format_duration(self.cooldown)}")
        if self.new_data_rows is not None:
            _positive_count("new_data_rows", self.new_data_rows)
        _positive_count("min_samples", self.min_samples)
        _positive_count("min_training_rows", self.min_training_rows)
        if self.r2_threshold is not None:
            value = _finite("r2_threshold", self.r2_threshold)
            if value > 1.0 and self.metric.name == "r2":
                raise ConfigError(f"r2_threshold must be at most 1 (R² never exceeds 1), got {value}")
        if self.out_of_range_share is not None:
            value = _finite("out_of_range_share", self.out_of_range_share)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"out_of_range_share must be a share between 0 and 1, got {value}")
        if self.psi_threshold is not None:
            value = _finite("psi_threshold", self.psi_threshold)
            if value <= 0.0:
                raise ConfigError(
                    "psi_threshold must be positive (usual values: 0.1 moderate, 0.25 significant), "
                    f"got {value}"
                )


@dataclass(frozen=True)
class TriggerState:
    """What the caller knows at decision time; every field defaults to "nothing observed".

    ``champion_trained_at`` is ``None`` when there is no champion. ``labelled_rows_since_training``
    counts labelled rows since the last *completed* training, promoted or not (all labelled
    rows if none ever completed). ``r2`` and ``psi`` come from the check over ``sample_size``
    rows; ``psi`` maps feature names to PSI. ``last_retrain_started_at`` is when the last
    retrain began, whatever its outcome: the cooldown is about load and churn, and a retrain
    that failed quickly should not be retried in a tight loop either.
    """

    manual: bool = False
    champion_trained_at: datetime | None = None
    labelled_rows_since_training: int = 0
    r2: float | None = None
    sample_size: int = 0
    psi: Mapping[str, float | None] = field(default_factory=dict)
    last_retrain_started_at: datetime | None = None
    labelled_rows_stored: int | None = None  # every labelled row of the feature set, when known
    # Share of the check's rows outside the champion's training envelope, and the columns.
    out_of_range_share: float | None = None
    out_of_range_columns: tuple[str, ...] = ()
    interval: tuple[float, float] | None = None  # bootstrap interval of ``r2`` (the metric)

    def __post_init__(self) -> None:
        # The state is built by code, not typed by a person: a bad value is a programming
        # error, hence ValueError rather than ConfigError.
        for name in ("labelled_rows_since_training", "sample_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number of rows (0 or more), got {value!r}")


@dataclass(frozen=True)
class TriggerDecision:
    """The verdict: ``retrain``, ``deferred`` (wanted, but inside the cooldown) or ``none``.

    ``reasons`` lists every reason that fired in :data:`REASONS` order (also for a deferred
    decision, so the caller can record what is waiting); ``drifted`` the features whose PSI
    crossed the threshold, highest first; ``allowed_at`` (UTC) when a deferred retrain may
    run; ``explanation`` one line naming the observed values and the thresholds.
    """

    action: Action
    reasons: tuple[Reason, ...]
    explanation: str
    drifted: tuple[str, ...] = ()
    allowed_at: datetime | None = None

    @property
    def retrain(self) -> bool:
        """True when the caller should retrain now."""
        return self.action == "retrain"

    @property
    def label(self) -> str:
        """The reasons as one tag for the training run, e.g. ``performance+drift``."""
        return "+".join(self.reasons)


def decide_retrain(state: TriggerState, policy: TriggerPolicy, now: datetime) -> TriggerDecision:
    """Decide whether to retrain now, later (cooldown) or not at all; see the module docstring."""
    now = _utc(now, "now")
    fired: list[Reason] = []
    notes: dict[Reason, str] = {}
    quiet: list[str] = []
    drifted: tuple[str, ...] = ()

    if state.manual:
        fired.append("manual")
        notes["manual"] = "retrain requested by hand"

    if state.champion_trained_at is None:
        since, need = state.labelled_rows_since_training, policy.min_training_rows
        rows = since if state.labelled_rows_stored is None else state.labelled_rows_stored
        if rows >= need and since > 0:
            fired.append("no_model")
            notes["no_model"] = (
                f"no champion and {rows:,} labelled rows stored ≥ min_training_rows {need:,} "
                f"({since:,} new since the last attempt)"
            )
        elif rows >= need:
            quiet.append(f"no champion; {rows:,} labelled rows stored, none new since the last attempt")
        else:
            quiet.append(f"no champion, but only {rows:,} labelled rows < min_training_rows {need:,}")
    else:
        trained_at = _utc(state.champion_trained_at, "champion_trained_at")
        _schedule(now - trained_at, policy, fired, notes, quiet)
        _new_data(state.labelled_rows_since_training, policy, fired, notes, quiet)
        enough = state.sample_size >= policy.min_samples
        _performance(state, policy, enough, fired, notes, quiet)
        drifted = _drift(state, policy, enough, fired, notes, quiet)
        _out_of_range(state, policy, enough, fired, notes, quiet)

    reasons = tuple(r for r in REASONS if r in fired)
    details = "; ".join(notes[r] for r in reasons)
    checks = "; ".join(quiet)

    if not reasons:
        return TriggerDecision("none", (), f"no retrain: {checks}" if checks else "no retrain")

    action: Action = "retrain"
    allowed_at: datetime | None = None
    cooldown_note = ""
    if state.last_retrain_started_at is not None and policy.cooldown > timedelta(0):
        started = _utc(state.last_retrain_started_at, "last_retrain_started_at")
        elapsed = now - started
        if elapsed < policy.cooldown:
            window = (
                f"last retrain started {format_duration(elapsed)} ago, "
                f"cooldown {format_duration(policy.cooldown)}"
            )
            if "manual" in reasons:
                cooldown_note = f"; a manual request overrides the cooldown ({window})"
            else:
                action = "deferred"
                allowed_at = started + policy.cooldown
                cooldown_note = f"; deferred until {allowed_at:%Y-%m-%d %H:%M:%S} UTC ({window})"

    verb = "retrain" if action == "retrain" else "retrain deferred"
    text = f"{verb} ({', '.join(reasons)}): {details}{cooldown_note}"
    if checks:
        text += f"; other checks: {checks}"
    return TriggerDecision(action, reasons, text, drifted, allowed_at)


# -- the individual triggers -------------------------------------------------------------------


def _schedule(
    age: timedelta, policy: TriggerPolicy, fired: list[Reason], notes: dict[Reason, str], quiet: list[str]
) -> None:
    limit = policy.max_model_age
    if limit is None:
        quiet.append("schedule disabled")
    elif age < timedelta(0):
        quiet.append(
            f"champion trained {format_duration(-age)} after this moment (another clock: on a replay, "
            "train with --as-of too): no age"
        )
    elif age > limit:
        fired.append("schedule")
        notes["schedule"] = f"champion is {format_duration(age)} old > max_model_age {format_duration(limit)}"
    else:
        quiet.append(f"champion age {format_duration(age)} ≤ max_model_age {format_duration(limit)}")


def _new_data(
    rows: int, policy: TriggerPolicy, fired: list[Reason], notes: dict[Reason, str], quiet: list[str]
) -> None:
    limit = policy.new_data_rows
    if limit is None:
        quiet.append("new-data trigger disabled")
    elif rows >= limit:
        fired.append("new_data")
        notes["new_data"] = f"{rows:,} labelled rows since the last training ≥ new_data_rows {limit:,}"
    else:
        quiet.append(f"{rows:,} labelled rows since the last training < new_data_rows {limit:,}")


def _performance(
    state: TriggerState,
    policy: TriggerPolicy,
    enough: bool,
    fired: list[Reason],
    notes: dict[Reason, str],
    quiet: list[str],
) -> None:
    limit = policy.r2_threshold
    value = state.r2
    m = policy.metric
    name = m.label
    limit_name = "r2_threshold" if m.name == "r2" else "threshold"
    if limit is None:
        quiet.append("performance trigger disabled")
    elif value is None:
        quiet.append(f"no {name} measured")
    elif not enough:
        quiet.append(
            f"{name} {value:.4f} on {state.sample_size:,} rows: "
            f"no verdict below min_samples {policy.min_samples:,}"
        )
    elif math.isnan(value):
        why = "constant target" if m.name == "r2" else "undefined on these rows"
        quiet.append(f"{name} undefined on {state.sample_size:,} rows ({why}): no verdict")
    else:
        interval = state.interval if policy.decide_on == "upper_bound" else None
        judged = optimistic(m, value, interval)
        shown = f"{name} {value:.4f}"
        if interval is not None:
            bound = "upper" if m.higher_is_better else "lower"
            shown += f" ({bound} bound {judged:.4f} of its {LEVEL:.0%} interval)"
        rows = f"on {state.sample_size:,} rows"
        if worse_than(m, judged, limit):
            fired.append("performance")
            notes["performance"] = (
                f"{shown} {'<' if m.higher_is_better else '>'} {limit_name} {limit:.4f} {rows}"
            )
        else:
            quiet.append(f"{shown} {'≥' if m.higher_is_better else '≤'} {limit_name} {limit:.4f} {rows}")


def _drift(
    state: TriggerState,
    policy: TriggerPolicy,
    enough: bool,
    fired: list[Reason],
    notes: dict[Reason, str],
    quiet: list[str],
) -> tuple[str, ...]:
    limit = policy.psi_threshold
    measured = {name: v for name, v in state.psi.items() if v is not None and not math.isnan(v)}
    if limit is None:
        quiet.append("drift trigger disabled")
        return ()
    if not measured:
        quiet.append("no PSI measured")
        return ()
    # Highest PSI first, then by name, so the explanation reads the same on every run.
    ranked = sorted(measured.items(), key=lambda item: (-item[1], item[0]))
    if not enough:
        top, value = ranked[0]
        quiet.append(
            f"max PSI {value:.3f} ({top}) on {state.sample_size:,} rows: "
            f"no verdict below min_samples {policy.min_samples:,}"
        )
        return ()
    over = [(name, value) for name, value in ranked if value > limit]
    if not over:
        top, value = ranked[0]
        quiet.append(f"max PSI {value:.3f} ({top}) ≤ psi_threshold {limit:.3f}")
        return ()
    fired.append("drift")
    listed = ", ".join(f"{name} {value:.3f}" for name, value in over)
    notes["drift"] = f"PSI > psi_threshold {limit:.3f} on {listed}"
    return tuple(name for name, _ in over)


def _out_of_range(
    state: TriggerState,
    policy: TriggerPolicy,
    enough: bool,
    fired: list[Reason],
    notes: dict[Reason, str],
    quiet: list[str],
) -> None:
    limit, share = policy.out_of_range_share, state.out_of_range_share
    if limit is None:
        quiet.append("out-of-range trigger disabled")
    elif share is None:
        return  # a model trained before ranges were recorded: nothing to say
    elif not enough:
        if share > 0:
            quiet.append(
                f"{share:.1%} of rows out of range on {state.sample_size:,} rows: "
                f"no verdict below min_samples {policy.min_samples:,}"
            )
    elif share > limit:
        fired.append("out_of_range")
        columns = f" ({', '.join(state.out_of_range_columns)})" if state.out_of_range_columns else ""
        notes["out_of_range"] = (
            f"{share:.1%} of {state.sample_size:,} rows outside the training ranges{columns} "
            f"> out_of_range_share {limit:.1%}"
        )
    else:
        quiet.append(f"{share:.1%} of rows out of range ≤ out_of_range_share {limit:.1%}")


# -- validation helpers ------------------------------------------------------------------------


def _utc(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _positive_duration(name: str, value: object) -> None:
    if not isinstance(value, timedelta):
        raise ConfigError(
            f"{name} must be a duration (timedelta), got {value!r}; parse text with parse_duration"
        )
    if value <= timedelta(0):
        raise ConfigError(f"{name} must be a positive duration, got {format_duration(value)}")


def _positive_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a whole number of rows of at least 1, got {value!r}")


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


# -- tuning ------------------------------------------------------------------------------------


#: ``[model.tuning] when`` (the definition's own Literal is the same; a test keeps them equal:
#: this module imports no definition code).
TuneWhen = Literal["never", "first", "gate_failed", "drift", "every_retrain"]


@dataclass(frozen=True)
class TuningDecision:
    """Whether a retrain searches hyperparameters first, and why, in one sentence."""

    tune: bool
    why: str


def decide_tuning(  # noqa: PLR0911  (a decision table reads best as one return per row)
    when: TuneWhen,
    reasons: tuple[Reason, ...],
    *,
    studied_before: bool,
    last_training_tuned: bool | None,
    last_training_held: bool | None,
) -> TuningDecision:
    """Tune or refit, for a retrain the trigger decided (``reasons``), under ``[model.tuning] when``.

    ==============  ===========================================================================
    ``when``        the retrain tunes when …
    ==============  ===========================================================================
    never           never (``mlpipeline tune`` still does)
    first           no study has finished for the feature set yet
    gate_failed     the last training was a plain refit that the gate held back
    drift           the retrain's reasons include ``drift`` or ``out_of_range``
    every_retrain   always
    ==============  ===========================================================================

    Otherwise the retrain refits with the champion's (tuned) parameters. ``last_training_*`` are
    ``None`` when nothing was trained yet. A tuned training the gate held does not make the
    next retrain tune again under ``gate_failed``: a plain refit comes first, so a stubborn
    champion does not cost a study at every check.
    """
    if when == "never":
        return TuningDecision(False, "tuning is off (when = never)")
    if when == "every_retrain":
        return TuningDecision(True, "every retrain tunes (when = every_retrain)")
    if when == "first":
        if studied_before:
            return TuningDecision(
                False, "a study has already run (when = first): refit with the champion's parameters"
            )
        return TuningDecision(True, "no study has run yet (when = first)")
    if when == "gate_failed":
        if last_training_held and not last_training_tuned:
            return TuningDecision(True, "the last plain refit was held by the gate (when = gate_failed)")
        if last_training_held:
            return TuningDecision(
                False, "the last training was tuned and held: refit first (when = gate_failed)"
            )
        if last_training_held is None:
            return TuningDecision(False, "nothing was trained yet (when = gate_failed): refit")
        return TuningDecision(False, "the last training passed the gate (when = gate_failed): refit")
    fired = [r for r in reasons if r in ("drift", "out_of_range")]
    if fired:
        return TuningDecision(True, f"the retrain is for {' and '.join(fired)} (when = drift)")
    return TuningDecision(False, "no drift among the reasons (when = drift): refit")
