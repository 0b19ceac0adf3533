"""``mlpipeline check``: measure the champion on newly labelled rows, decide, maybe retrain.

One check, in order:

1. Take the feature set's ``check`` lease, so two checks never interleave (a second one
   returns "skipped" at once; a crashed holder's lease expires after ``lock_ttl``).
2. Read the rows labelled since the watermark (incremental: the cost follows the new rows,
   not the table). Join the predictions the champion actually served (prediction log);
   score the rest with the champion from the verified cache.
3. R², RMSE and MAE with the sample size; PSI per feature and of the target against the
   histograms stored with the champion at training; the share of rows with an input outside
   the champion's training ranges or categories; each metric's seeded bootstrap interval (the
   performance trigger judges its favourable end); and, from the prediction log, the PSI of the
   predictions served since the last reading against the champion's own training outputs (an
   early warning before labels arrive, no retrain reason). Fewer new rows than ``min_samples`` are not
   judged yet: the watermark stays, so they wait for the next check's rows (none is passed
   over), until the window has waited ``max_window_age``; then it is judged with what it has.
   A window that waits when a retrain is decided is judged at once, by the champion that
   served it: the new champion learns from those rows, and no champion is judged on its own
   training rows, so later would be never.
4. Decide with the trigger policy (:mod:`mlpipeline.monitoring.triggers`).
5. Store the check and advance the watermark in one transaction. Only now are the rows
   "read": a failure before this point leaves the watermark where it was.
6. Log the metrics as series (step = check number, timestamp = check time) to the
   ``<prefix><featureset>-monitoring`` experiment and upload the timeline PNG. MLflow being
   down does not lose the check: the failure is noted in its record.
7. If the decision says so, run the training pipeline with the reasons recorded (training
   holds the feature set's ``train`` lease, so it never overlaps another training); the
   gate decides whether the new version is promoted. A retrain that fails (MLflow down,
   a crash) is recorded as pending and does not start the cooldown: the next check retries
   it even when its own rows would not trigger one, so a degradation seen once is not lost.
   A retrain skipped because another training runs is not retried (that training is it).

Before step 2 the check reconciles the registry with the production pointer (a promotion a
crash left half done); without MLflow it goes on and the next start retries.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from mlpipeline.errors import BusyError, ConfigError, DataValidationError, MlpipelineError
from mlpipeline.featuresets import portable
from mlpipeline.featuresets.definition import Definition
from mlpipeline.featuresets.envelope import Envelope, OutsideSummary, summarise
from mlpipeline.featuresets.keys import key_texts
from mlpipeline.featuresets.metrics import metric_for
from mlpipeline.featuresets.quality import quality_in_force, settings_for
from mlpipeline.featuresets.reference import Reference, prediction_values
from mlpipeline.featurestore.checks import (
    PREDICTIONS_SEEN_KEY,
    RETRAIN_PENDING_KEY,
    RETRAIN_STARTED_KEY,
    ROWS_SINCE_TRAINING_KEY,
    SIMULATED_NOW_KEY,
    TRAINED_AT_KEY,
    CheckRecord,
    CheckRecords,
)
from mlpipeline.featurestore.lease import LeaseHolder, holder_is_gone, new_owner
from mlpipeline.featurestore.sql import SqlFeatureStore, utcnow
from mlpipeline.logs import log_context
from mlpipeline.monitoring.drift import drift_report, psi
from mlpipeline.monitoring.publish import publish_check
from mlpipeline.monitoring.triggers import (
    Action,
    TriggerDecision,
    TriggerPolicy,
    TriggerState,
    TuningDecision,
    decide_retrain,
    decide_tuning,
)
from mlpipeline.registry.model_cache import LoadedModel, ModelCache
from mlpipeline.registry.pointer import Pointer, SqlPointerStore
from mlpipeline.settings import Settings, parse_duration
from mlpipeline.training.steps import Metrics, columns_of, evaluate, metric_interval
from mlpipeline.training.tuning import tuning_of

__all__ = ["CheckResult", "policy_from", "run_check"]

log = logging.getLogger(__name__)

#: When the current window of too few labelled rows started waiting ("" when none waits).
WINDOW_SINCE_KEY = "monitor.window_since"
TARGET_PSI = "target"


@dataclass
class CheckResult:
    """What one check saw and did."""

    featureset: str
    checked_at: datetime
    skipped: str | None = None
    model_version: str | None = None
    n_rows: int = 0
    n_logged: int = 0
    metrics: Metrics | None = None
    verdict: bool = False
    psi: dict[str, float | None] = field(default_factory=dict)
    decision: TriggerDecision | None = None
    retrain: dict[str, Any] = field(default_factory=dict)
    check_id: int | None = None
    mlflow_error: str | None = None
    waiting: int = 0  # labelled rows held over until the window reaches min_samples
    window: tuple[str, str] | None = None  # time span of the judged rows (event or label time)
    outside: OutsideSummary | None = None  # judged rows with inputs outside the training envelope
    interval: tuple[float, float] | None = None  # bootstrap interval of the metric in force
    # PSI of the predictions served since the last such reading against the champion's outputs
    # on its training rows: an early warning before labels arrive (it retrains nothing itself).
    prediction_drift: dict[str, Any] | None = None


def policy_from(settings: Settings, d: Definition) -> TriggerPolicy:
    """The trigger policy the settings describe (0 new-data rows disables that trigger).

    The threshold is in the feature set's metric; the R²-shaped default (0.6) also fits a
    score between 0 and 1 (ROC AUC, F1), but not a loss: a loss has a threshold only when
    ``[quality] threshold``, ``MLPIPELINE_R2_THRESHOLD`` or the IRIS task gives one.
    """
    metric = metric_for(d.quality.metric, d.target.task)
    explicit = "r2_threshold" in settings.model_fields_set  # the environment, [quality], IRIS's task
    threshold = settings.r2_threshold if metric.higher_is_better or explicit else None
    return TriggerPolicy(
        max_model_age=settings.duration("max_model_age"),
        new_data_rows=settings.new_data_rows or None,
        r2_threshold=threshold,
        metric=metric,
        decide_on=d.quality.decide_on or "upper_bound",
        psi_threshold=settings.psi_threshold,
        min_samples=settings.min_samples,
        min_training_rows=d.model.min_training_rows,
        cooldown=settings.duration("retrain_cooldown") or timedelta(0),
        out_of_range_share=settings.out_of_range_share if settings.out_of_range_share < 1 else None,
    )


def run_check(
    settings: Settings,
    store: SqlFeatureStore,
    d: Definition,
    *,
    as_of: datetime | None = None,
    manual: bool = False,
    allow_retrain: bool = True,
    tracker_factory: Callable[[], Any] | None = None,
    r2_threshold: float | None = None,
) -> CheckResult:
    """One check of ``d`` (see the module docstring). ``as_of`` is naive UTC (default now).

    The feature set's ``[quality]`` values apply over ``settings``; ``r2_threshold``, when
    given (the IRIS task's own setting), has the last word over both.
    """
    settings = settings_for(settings, d)
    if r2_threshold is not None:
        settings = settings.model_copy(update={"r2_threshold": r2_threshold})
    now = as_of or utcnow()
    ttl = settings.duration("lock_ttl")
    assert ttl is not None
    leases = LeaseHolder(store, d.name)
    owner = new_owner()
    held = leases.acquire("check", owner, ttl, now=utcnow())
    if held is None:
        other = leases.current("check")
        who = f"{other.owner} until {other.expires_at:%Y-%m-%d %H:%M:%S} UTC" if other else "another process"
        return CheckResult(d.name, now, skipped=f"another check of '{d.name}' is running ({who})")
    tracker_factory = tracker_factory or _tracker_factory(settings)
    try:
        with log_context(featureset=d.name):
            _reconcile(store, d, tracker_factory)
            return _check(settings, store, d, now, manual, allow_retrain, tracker_factory, as_of is not None)
    finally:
        leases.release("check", owner)


def _reconcile(store: SqlFeatureStore, d: Definition, tracker_factory: Callable[[], Any]) -> None:
    """Repair a promotion a crash left half done; a check goes on without MLflow (see module doc)."""
    from mlpipeline.registry.promotion import Promoter

    try:
        Promoter(tracker_factory(), SqlPointerStore(store)).reconcile(d.name)
    except MlpipelineError as exc:
        log.warning(
            "could not reconcile the registry with the production pointer; the next start retries",
            extra={"code": exc.code, "detail": str(exc)[:300]},
        )


def _tracker_factory(settings: Settings) -> Callable[[], Any]:
    cached: list[Any] = []

    def make() -> Any:
        if not cached:
            from mlpipeline.registry.tracking import Tracker

            cached.append(Tracker(settings))
        return cached[0]

    return make


def _check(
    settings: Settings,
    store: SqlFeatureStore,
    d: Definition,
    now: datetime,
    manual: bool,
    allow_retrain: bool,
    tracker_factory: Callable[[], Any],
    simulated: bool,
) -> CheckResult:
    records = CheckRecords(store, d.name)
    last = records.history(limit=1)
    if simulated and last and last[0].checked_at > now:
        raise ConfigError(
            f"checks of '{d.name}' run forward in time: the last one ran as of "
            f"{last[0].checked_at.isoformat()}; give --as-of at or after it"
        )
    mark = records.watermark()
    frame, new_mark = store.labelled_since(d, mark, as_of=now)
    pointer = SqlPointerStore(store).get(d.name)
    waiting_since = _state_time(store, d, WINDOW_SINCE_KEY)
    small = pointer is not None and 0 < len(frame) < settings.min_samples
    overdue = waiting_since is not None and now - waiting_since >= (
        settings.duration("max_window_age") or timedelta(0)
    )
    held = small and not overdue
    all_rows, next_mark = frame, new_mark
    loaded: list[LoadedModel] = []

    def champion() -> LoadedModel:
        """The champion from the verified cache, read once per check (measure and drift share it)."""
        assert pointer is not None
        if not loaded:
            loaded.append(ModelCache(settings.home / "models", tracker_factory).load(pointer.ref))
        return loaded[0]

    def judge(held: bool) -> tuple[CheckResult, TriggerDecision, int]:
        """Measure (unless the window is held) and decide; the result and the new-data count."""
        frame = all_rows.iloc[0:0] if held else all_rows
        result = CheckResult(d.name, now, model_version=pointer.version if pointer else None)
        if held:  # too few to judge: keep them (and the watermark) for the next check
            result.waiting = len(all_rows)
        else:
            result.n_rows, result.window = len(frame), _span(d, frame)
        if pointer is not None and len(frame):
            _measure(d, frame, pointer, records, champion(), result)
        result.verdict = result.metrics is not None and result.n_rows >= settings.min_samples
        rows_since = int(store.get_state(d.name, ROWS_SINCE_TRAINING_KEY) or 0) + result.n_rows
        state = TriggerState(
            manual=manual,
            champion_trained_at=_champion_trained_at(store, d, pointer),
            labelled_rows_since_training=rows_since,
            r2=result.metrics.value if result.metrics else None,
            sample_size=result.n_rows if result.metrics else 0,
            psi=result.psi,
            interval=result.interval,
            last_retrain_started_at=_state_time(store, d, RETRAIN_STARTED_KEY),
            # Without a champion, a held first model is tried again on everything stored.
            labelled_rows_stored=store.count_labelled(d) if pointer is None else None,
            out_of_range_share=result.outside.share if result.outside else None,
            out_of_range_columns=tuple(result.outside.by_column) if result.outside else (),
        )
        decision = _with_pending(
            decide_retrain(state, policy_from(settings, d), now.replace(tzinfo=UTC)),
            store.get_state(d.name, RETRAIN_PENDING_KEY),
            now.replace(tzinfo=UTC),
        )
        return result, decision, rows_since

    result, decision, rows_since = judge(held)
    if held and decision.retrain and allow_retrain:
        # The new champion will learn from the waiting rows and monitoring moves past what a
        # champion learned from: judge them now, with the champion that served them, or never.
        held = False
        result, decision, rows_since = judge(held)
    result.decision = decision
    new_mark = mark if held else next_mark
    seen = int(store.get_state(d.name, PREDICTIONS_SEEN_KEY) or 0)
    if pointer is not None:
        result.prediction_drift, seen = _prediction_drift(settings, pointer, records, champion, seen)
    if result.decision.action == "deferred":
        _record_deferred(store, d, result.decision, now)
    details = _details(result)
    check = CheckRecord(
        d.name,
        result.model_version,
        now,
        result.n_rows,
        _finite(result.metrics.r2) if result.metrics else None,
        result.metrics.rmse if result.metrics else None,
        result.metrics.mae if result.metrics else None,
        details,
    )
    clock = now.isoformat() if simulated else ""
    window_since = (waiting_since or now).isoformat() if held else ""
    result.check_id = records.record(
        check,
        new_mark,
        state={
            ROWS_SINCE_TRAINING_KEY: str(rows_since),
            SIMULATED_NOW_KEY: clock,
            WINDOW_SINCE_KEY: window_since,
            PREDICTIONS_SEEN_KEY: str(seen),
        },
    )
    log.info(
        "check recorded",
        extra={
            "model_version": result.model_version,
            "rows": result.n_rows,
            "r2": check.r2,
            "decision": result.decision.action,
            "reasons": list(result.decision.reasons),
        },
    )
    if result.decision.retrain and allow_retrain:
        result.retrain = _retrain(settings, store, d, result.decision, now, simulated)
        details["retrain"] = result.retrain
        records.update_details(result.check_id, details)
    threshold = policy_from(settings, d).r2_threshold
    result.mlflow_error = publish_check(
        settings, store, d, records, replace(check, id=result.check_id), tracker_factory, threshold
    )
    if result.mlflow_error:
        details["mlflow_error"] = result.mlflow_error
        records.update_details(result.check_id, details)
    return result


def _measure(
    d: Definition,
    frame: Any,
    pointer: Pointer,
    records: CheckRecords,
    model: LoadedModel,
    result: CheckResult,
) -> None:
    """Metrics and drift of the champion on ``frame`` (served predictions where logged)."""
    names = portable.input_names(model.spec)
    y = frame[d.target.column].to_numpy(dtype=np.float64)
    if portable.task_of(model.spec) == "multiclass":
        # The log keeps one number per prediction; class probabilities are scored again.
        predictions = model.predict_columns(columns_of(frame, names))
        result.metrics = evaluate(y, predictions, spec=model.spec, metric=d.quality.metric)
    else:
        keys = [k or "" for k in key_texts([frame[c].tolist() for c in d.key_columns])]
        logged = records.logged_predictions(keys, pointer.version)
        predictions = np.empty(len(frame), dtype=np.float64)
        have = np.array([k in logged for k in keys], dtype=bool)
        if have.any():
            predictions[have] = [logged[k] for k, h in zip(keys, have, strict=True) if h]
        if (~have).any():
            rest = frame.loc[~have]
            predictions[~have] = model.predict_columns(columns_of(rest, names))
        result.n_logged = int(have.sum())
        result.metrics = evaluate(y, predictions, spec=model.spec, metric=d.quality.metric)
    result.interval = metric_interval(y, predictions, spec=model.spec, metric=d.quality.metric)
    envelope = Envelope.of(model.spec)
    if envelope is not None:
        result.outside = summarise(envelope.flags(columns_of(frame, names)), len(frame))
    if model.reference is not None:
        reference = Reference.from_dict(model.reference)
        report = drift_report(reference, columns_of(frame, list(reference.features)), target=y)
        result.psi = dict(report.features)
        result.psi[TARGET_PSI] = report.target


def _prediction_drift(
    settings: Settings,
    pointer: Pointer,
    records: CheckRecords,
    champion: Callable[[], LoadedModel],
    seen: int,
) -> tuple[dict[str, Any] | None, int]:
    """PSI of the champion's served predictions since log row ``seen`` against its outputs on its
    training rows; fewer than ``min_samples`` wait for the next check (the cursor stays)."""
    values, last = records.logged_since(pointer.version, seen)
    if len(values) < settings.min_samples:
        return ({"psi": None, "rows": len(values), "warning": False} if values else None), seen
    model = champion()
    reference = Reference.from_dict(model.reference) if model.reference is not None else None
    if reference is None or reference.prediction is None:  # a model from before it was recorded
        return None, last
    value = psi(reference.prediction, prediction_values(model.spec, values))
    warning = value is not None and value > settings.psi_threshold
    if warning:  # reported in the check's record and output; the log keeps it at INFO
        log.info(
            "the served predictions drifted from the champion's training outputs",
            extra={"psi": value, "rows": len(values), "model_version": pointer.version},
        )
    return {"psi": value, "rows": len(values), "warning": warning}, last


def _with_pending(decision: TriggerDecision, pending: str | None, now: datetime) -> TriggerDecision:
    """A retrain decided earlier and not run (it failed, or the cooldown deferred it) is due now,
    unless this check retrains anyway; one deferred by the cooldown waits until it allows."""
    if not pending or decision.action != "none":
        return decision
    data = json.loads(pending)
    decided = f"the retrain decided at {data.get('decided_at')}"
    allowed = datetime.fromisoformat(data["allowed_at"]) if data.get("allowed_at") else None
    action: Action
    allowed_at: datetime | None
    if allowed is not None and now < allowed:
        action, allowed_at = "deferred", allowed
        why = f"{decided} waits for the cooldown until {allowed.isoformat()}"
    elif data.get("deferred"):
        action, allowed_at = "retrain", decision.allowed_at
        why = f"running {decided} and deferred by the cooldown"
    else:
        action, allowed_at = "retrain", decision.allowed_at
        why = f"retrying {decided} that could not run ({data.get('error', 'unknown error')})"
    return replace(
        decision,
        action=action,
        reasons=tuple(data.get("reasons") or ()),
        explanation=f"{why}: {data.get('explanation', '')}"[:900],
        allowed_at=allowed_at,
    )


def _champion_trained_at(store: SqlFeatureStore, d: Definition, pointer: Pointer | None) -> datetime | None:
    if pointer is None:
        return None
    return _state_time(store, d, TRAINED_AT_KEY) or pointer.promoted_at


def _span(d: Definition, frame: Any) -> tuple[str, str] | None:
    """First and last time of the judged rows: their event time, else their label time."""
    column = d.event_time or d.label_time
    if column is None or frame.empty or column not in frame:
        return None
    times = frame[column].dropna()
    return None if times.empty else (times.min().isoformat(), times.max().isoformat())


def _state_time(store: SqlFeatureStore, d: Definition, key: str) -> datetime | None:
    text = store.get_state(d.name, key)
    return datetime.fromisoformat(text) if text else None


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def _details(result: CheckResult) -> dict[str, Any]:
    decision = result.decision
    return {
        "n_logged": result.n_logged,
        "verdict": result.verdict,
        "waiting": result.waiting,
        "window": list(result.window) if result.window else None,
        "psi": dict(result.psi),
        "decision": decision.action if decision else None,
        "reasons": list(decision.reasons) if decision else [],
        "explanation": decision.explanation if decision else "",
        "drifted": list(decision.drifted) if decision else [],
        "allowed_at": decision.allowed_at.isoformat() if decision and decision.allowed_at else None,
        "metric": None
        if result.metrics is None
        else {
            "name": result.metrics.metric,
            "label": result.metrics.spec.label,
            "value": _finite(result.metrics.value),
            "interval": list(result.interval) if result.interval else None,
        },
        "metrics": {}
        if result.metrics is None
        else {k: _finite(v) for k, v in result.metrics.values.items()},
        "prediction_drift": result.prediction_drift,
        "out_of_range": None
        if result.outside is None
        else {
            "share": round(result.outside.share, 6),
            "rows": result.outside.flagged,
            "columns": dict(result.outside.by_column),
        },
    }


def _retrain(
    settings: Settings,
    store: SqlFeatureStore,
    d: Definition,
    decision: TriggerDecision,
    now: datetime,
    simulated: bool = False,
) -> dict[str, Any]:
    """Train once (``train`` holds the feature set's training lease); the outcome or the error."""
    from mlpipeline.training.pipeline import train
    from mlpipeline.training.study import TuneRequest

    outcome: dict[str, Any] = {"reasons": list(decision.reasons)}
    started_before = store.get_state(d.name, RETRAIN_STARTED_KEY) or ""
    try:
        store.set_state(d.name, RETRAIN_STARTED_KEY, now.isoformat())
        reason = f"{decision.label}: {decision.explanation}"[:480]
        tuning = _tuning_decision(store, d, decision)
        outcome["tuning"] = tuning.why
        request = None
        if tuning.tune:
            wanted = tuning_of(d)
            budget = parse_duration(wanted.timeout).total_seconds() if wanted.timeout else None
            request = TuneRequest(wanted.trials, budget)
            reason = f"{reason}; tuned: {tuning.why}"[:480]
        # A live check trains on the wall clock; a replay (--as-of) on its own clock.
        moment = now if simulated else None
        try:
            trained = train(settings, store, d, reason=reason, as_of=moment, tune=request)
        except (ConfigError, DataValidationError) as exc:
            if request is None:
                raise
            # A study that cannot run (too few rows for the folds, a space the estimator refuses)
            # must not stop the loop: the retrain goes on as a plain refit, and says why.
            log.warning(
                "tuning failed; retraining without it", extra={"code": exc.code, "detail": str(exc)[:300]}
            )
            outcome["tuning"] = (
                f"{tuning.why}, but the study failed ({exc.code}: {str(exc)[:300]}): refit instead"
            )
            trained = train(settings, store, d, reason=f"{reason} (tuning failed: refit)"[:480], as_of=moment)
        store.set_state(d.name, RETRAIN_PENDING_KEY, "")
        outcome.update(
            version=trained.version,
            action=trained.decision.action if trained.decision else None,
            r2=trained.metrics.value if trained.metrics else None,
            metric=trained.metrics.metric if trained.metrics else None,
            gate=trained.decision.reason if trained.decision else None,
        )
        if trained.decision is not None and trained.decision.action == "promote":
            outcome["promoted_version"] = trained.version
        if trained.study is not None:
            outcome["study"] = {
                "name": trained.study.name,
                "complete": trained.study.complete,
                "best_value": trained.study.best_value,
            }
    except BusyError as exc:  # another training runs: it is the retrain
        log.warning("retrain skipped: another training is running", extra={"detail": str(exc)[:300]})
        outcome["error"] = f"{exc.code}: {exc}"[:1000]
    except MlpipelineError as exc:
        log.error(
            "retrain failed; the next check retries it", extra={"code": exc.code, "detail": str(exc)[:500]}
        )
        outcome["error"] = f"{exc.code}: {exc}"[:1000]
        outcome["pending"] = True
        _record_pending(store, d, decision, now, started_before, outcome["error"])
    return outcome


def _tuning_decision(store: SqlFeatureStore, d: Definition, decision: TriggerDecision) -> TuningDecision:
    """``[model.tuning] when`` applied to this retrain (see :func:`decide_tuning`)."""
    from mlpipeline.training.pipeline import LAST_TRAINING_KEY
    from mlpipeline.training.study import LAST_STUDY_KEY

    last = json.loads(store.get_state(d.name, LAST_TRAINING_KEY) or "null")
    return decide_tuning(
        tuning_of(d).when,
        decision.reasons,
        studied_before=bool(store.get_state(d.name, LAST_STUDY_KEY)),
        last_training_tuned=None if last is None else bool(last.get("tuned")),
        last_training_held=None if last is None else last.get("action") == "hold",
    )


def _tuning_status(store: SqlFeatureStore, d: Definition, pointer: Pointer | None) -> dict[str, Any]:
    """The last study, one in progress, the policy, and where the champion's parameters came from."""
    from mlpipeline.training.pipeline import TRAIN_LEASE, params_key
    from mlpipeline.training.study import ACTIVE_STUDY_KEY, LAST_STUDY_KEY

    active = json.loads(store.get_state(d.name, ACTIVE_STUDY_KEY) or "null")
    record = json.loads(store.get_state(d.name, params_key(pointer.version)) or "null") if pointer else None
    held = LeaseHolder(store, d.name).current(TRAIN_LEASE)
    running = held is not None and held.expires_at > utcnow() and not holder_is_gone(held.owner)
    return {
        "when": tuning_of(d).when,
        "last_study": json.loads(store.get_state(d.name, LAST_STUDY_KEY) or "null"),
        "in_progress": active.get("study") if active else None,
        "in_progress_running": bool(active and running),
        "champion_params": None if record is None else ("tuned" if record.get("tuned") else "definition"),
    }


def _record_deferred(store: SqlFeatureStore, d: Definition, decision: TriggerDecision, now: datetime) -> None:
    """Keep a retrain the cooldown deferred: it runs at the first check the cooldown allows,
    with or without new rows (the earliest such decision is kept)."""
    current = store.get_state(d.name, RETRAIN_PENDING_KEY)
    if current and json.loads(current).get("deferred"):
        return
    store.set_state(
        d.name,
        RETRAIN_PENDING_KEY,
        json.dumps(
            {
                "reasons": list(decision.reasons),
                "decided_at": now.isoformat(),
                "explanation": decision.explanation[:500],
                "deferred": True,
                "allowed_at": decision.allowed_at.isoformat() if decision.allowed_at else None,
            }
        ),
    )


def _record_pending(
    store: SqlFeatureStore,
    d: Definition,
    decision: TriggerDecision,
    now: datetime,
    started_before: str,
    error: str,
) -> None:
    """Keep a failed retrain for the next check; a retrain that never ran starts no cooldown."""
    pending = {
        "reasons": list(decision.reasons),
        "decided_at": now.isoformat(),
        "explanation": decision.explanation[:500],
        "error": error[:300],
    }
    try:
        store.set_state(d.name, RETRAIN_STARTED_KEY, started_before)
        store.set_state(d.name, RETRAIN_PENDING_KEY, json.dumps(pending))
    except MlpipelineError:
        log.exception("could not record the pending retrain")


NEXT_CHECK_KEY = "watch.next_check_at"


def status_of(
    settings: Settings, store: SqlFeatureStore, d: Definition, *, with_registry: bool = True
) -> dict[str, Any]:
    """Champion and its age, recent checks, the pending challenger, trigger state, next check,
    and the quality values in force with where each comes from."""
    quality = quality_in_force(settings, d)
    settings = settings_for(settings, d)
    pointer = SqlPointerStore(store).get(d.name)
    simulated = store.get_state(d.name, SIMULATED_NOW_KEY)
    now = datetime.fromisoformat(simulated) if simulated else utcnow()
    checks = CheckRecords(store, d.name).history(limit=5)
    out: dict[str, Any] = {
        "champion": None,
        "checks": [
            {
                "checked_at": c.checked_at.isoformat(),
                "model_version": c.model_version,
                "rows": c.n_rows,
                "r2": c.r2,
                "metric": c.details.get("metric"),
                "rmse": c.rmse,
                "mae": c.mae,
                "decision": c.details.get("decision"),
                "reasons": c.details.get("reasons", []),
                "retrain": c.details.get("retrain"),
                "out_of_range": c.details.get("out_of_range"),
                "waiting": c.details.get("waiting", 0),
            }
            for c in checks
        ],
        "rows_since_training": int(store.get_state(d.name, ROWS_SINCE_TRAINING_KEY) or 0),
        "last_retrain_started_at": store.get_state(d.name, RETRAIN_STARTED_KEY) or None,
        "retrain_pending": json.loads(store.get_state(d.name, RETRAIN_PENDING_KEY) or "null"),
        "next_check_at": store.get_state(d.name, NEXT_CHECK_KEY),
        "challenger": None,
        "metric": {
            "name": metric_for(d.quality.metric, d.target.task).name,
            "label": metric_for(d.quality.metric, d.target.task).label,
        },
        "clock": "simulated" if simulated else "wall",
        "clock_at": now.isoformat(),
        "quality": quality,
        "tuning": _tuning_status(store, d, pointer),
    }
    if pointer is not None:
        trained = _champion_trained_at(store, d, pointer)
        out["champion"] = {
            "version": pointer.version,
            "promoted_at": pointer.promoted_at.isoformat() if pointer.promoted_at else None,
            "promoted_by": pointer.promoted_by,
            "reason": pointer.reason,
            # A champion trained after the clock's moment (another clock) has no age there.
            "age_hours": round((now - trained).total_seconds() / 3600, 1)
            if trained and trained <= now
            else None,
            "trained_after_clock": bool(trained and trained > now),
            "metrics": pointer.metrics,
        }
    if with_registry:
        try:
            from mlpipeline.registry.tracking import CHALLENGER, Tracker

            out["challenger"] = Tracker(settings).alias_version(d.name, CHALLENGER)
        except MlpipelineError as exc:
            out["challenger"] = f"unknown ({exc.code}: MLflow unreachable)"
    return out
