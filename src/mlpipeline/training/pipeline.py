"""``train``: the automated pipeline from the feature store to a gated model version.

extract → validate → split → fit → evaluate → score the champion on the same holdout →
gate → log (params, metrics, lineage, model, explainer, SHAP plot) → register → promote,
mark for approval, or hold. Every step's duration is logged as a metric ``time_<step>_s``.
A failure marks the MLflow run FAILED and leaves the production pointer and the
``champion`` alias as they were.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlpipeline import __version__
from mlpipeline.errors import BusyError, ConfigError, MlpipelineError
from mlpipeline.featuresets import portable
from mlpipeline.featuresets.definition import Definition
from mlpipeline.featuresets.metrics import LEVEL, aligned_classes, metric_for, paired_difference_interval
from mlpipeline.featuresets.quality import settings_for
from mlpipeline.featuresets.reference import build_reference, prediction_histogram
from mlpipeline.featurestore.checks import TRAINED_BATCH_KEY, CheckRecords
from mlpipeline.featurestore.lease import LeaseHolder, new_owner
from mlpipeline.featurestore.sql import SqlFeatureStore, utcnow
from mlpipeline.logs import log_context
from mlpipeline.registry.model_cache import REFERENCE_FILE, ModelCache
from mlpipeline.registry.pointer import Pointer, SqlPointerStore
from mlpipeline.registry.promotion import Promoter
from mlpipeline.registry.tracking import CHALLENGER, EXPERIMENT_KIND_TAG, NOTE_TAG, Tracker, experiment_kind
from mlpipeline.registry.version_tags import registration_tags, trigger_label
from mlpipeline.settings import Settings
from mlpipeline.training.artifacts import build_model_dir, manifest_of, manifest_sha256, write_explainer
from mlpipeline.training.class_reports import classification_report
from mlpipeline.training.gate import Decision, GatePolicy, decide
from mlpipeline.training.run_story import TrainingStory, plain, run_name
from mlpipeline.training.steps import (
    Metrics,
    columns_of,
    evaluate,
    fit,
    require_usable,
    split_holdout,
    training_data_hash,
    validate_training_data,
)
from mlpipeline.training.study import (
    ACTIVE_STUDY_KEY,
    LAST_STUDY_KEY,
    Progress,
    StudyOutcome,
    TuneRequest,
    run_study,
)

__all__ = ["LAST_TRAINING_KEY", "TrainResult", "champion_params", "params_key", "train", "write_reference"]

log = logging.getLogger(__name__)

#: Holdout rows behind the SHAP summary plot and the mean |SHAP| metrics. Exact tree SHAP
#: costs about 2 ms a row for a 300-tree model here; 500 rows give a stable ranking.
SHAP_SAMPLE = 500
#: One training per feature set at a time, whoever starts it (CLI, check, IRIS task).
TRAIN_LEASE = "train"
#: State key of the last training's outcome: {"tuned": bool, "action": gate action, "version"}.
LAST_TRAINING_KEY = "training.last"


@dataclass
class TrainResult:
    featureset: str
    run_id: str
    version: str | None
    metrics: Metrics | None
    decision: Decision | None
    timings: dict[str, float] = field(default_factory=dict)
    champion_version: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    params_source: str = "definition"
    study: StudyOutcome | None = None


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - t0
            log.info("step done", extra={"step": name, "seconds": round(self.timings[name], 4)})


def train(
    settings: Settings,
    store: SqlFeatureStore,
    d: Definition,
    *,
    reason: str = "manual",
    tracker: Tracker | None = None,
    as_of: datetime | None = None,
    tune: TuneRequest | None = None,
    progress: Progress | None = None,
    engine: str = "local",
) -> TrainResult:
    """Run the pipeline once for ``d``; see the module docstring for the steps.

    ``engine`` ``dask`` fits on a Dask cluster (see :mod:`mlpipeline.training.dask_fit`);
    every other step is the same.

    Without ``tune`` the model is fitted with the champion's parameters when the champion was
    tuned (and the definition's model settings have not changed since), else the definition's.
    With ``tune`` a study searches the training part first (see :mod:`mlpipeline.training.study`),
    and its best configuration is refitted on the whole training part and gated like any other.

    ``as_of`` (naive UTC, default now) is the moment the training sees: only labels known by
    then, and with ``training_window`` set, only rows whose event time falls in the window
    before it. Replays and tests pass a simulated time. The feature set's ``[quality]`` values
    (floor, min_improvement) apply over ``settings``.
    """
    settings = settings_for(settings, d)
    leases = LeaseHolder(store, d.name)
    owner = new_owner()
    ttl = settings.duration("lock_ttl")
    assert ttl is not None
    if leases.acquire(TRAIN_LEASE, owner, ttl) is None:
        held = leases.current(TRAIN_LEASE)
        who = f"{held.owner}, until {held.expires_at:%Y-%m-%d %H:%M:%S} UTC" if held else "another process"
        raise BusyError(f"another training of '{d.name}' is running ({who}); try again when it has finished")
    try:
        with _fitter(settings, engine) as fit_with:
            return _train_locked(
                settings,
                store,
                d,
                reason,
                tracker,
                as_of,
                tune,
                progress,
                lambda: leases.acquire(TRAIN_LEASE, owner, ttl),
                fit_with,
            )
    finally:
        leases.release(TRAIN_LEASE, owner)


def _train_locked(
    settings: Settings,
    store: SqlFeatureStore,
    d: Definition,
    reason: str,
    tracker: Tracker | None,
    as_of: datetime | None,
    tune: TuneRequest | None,
    progress: Progress | None,
    renew: Any,
    fit_with: Fitter = fit,
) -> TrainResult:
    tracker = tracker or Tracker(settings)
    pointers = SqlPointerStore(store)
    promoter = Promoter(tracker, pointers, ModelCache(settings.home / "models", lambda: tracker))
    timer = _Timer()
    with log_context(featureset=d.name):
        promoter.reconcile(d.name)
        experiment = tracker.experiment_id(d.name, tags=experiment_tags(tracker, d))
        _close_abandoned_runs(tracker, experiment, store, d.name)
        run_id = tracker.start_run(
            experiment,
            run_name(None, reason, "training"),
            {
                "mlpipeline.trigger": trigger_label(reason),  # whole in the run's description
                "mlpipeline.version": __version__,
                "mlpipeline.definition_sha256": d.content_hash,
                "mlpipeline.featureset": d.name,
                "mlpipeline.estimator": d.model.estimator,
                "mlpipeline.kind": "train",
                **({"mlpipeline.tuning": f"{tune.trials} trials"} if tune else {}),
            },
        )
        with log_context(run_id=run_id):
            try:
                tuning = None if tune is None else (tune, experiment, _with_heartbeat(progress, renew))
                result = _run(
                    settings, store, d, tracker, promoter, pointers, timer, run_id, reason, as_of, tuning,
                    fit_with,
                )  # fmt: skip
                batches = store.batches(d)
                promoted = result.decision is not None and result.decision.action == "promote"
                CheckRecords(store, d.name).training_done(
                    as_of or utcnow(),
                    batches[-1].batch_id if batches else 0,
                    simulated=as_of is not None,
                    promoted=promoted,
                )
            except BaseException as exc:
                failure = f"{exc.__class__.__name__}: {exc}"
                tracker.log(run_id, tags={"mlpipeline.failure": failure[:4000]})
                _close_failed(tracker, run_id, reason, failure)
                raise
            tracker.end_run(run_id, "FINISHED")
    return result


#: The fit step: the local one, or one on an engine (Dask).
Fitter = Callable[[Definition, Any, dict[str, Any]], Any]


@contextmanager
def _fitter(settings: Settings, engine: str) -> Iterator[Fitter]:
    """The fit step of ``engine``, with its cluster open while the training runs."""
    if engine == "local":
        yield fit
        return
    if engine != "dask":
        raise ConfigError(f"unknown training engine {engine!r}: use local or dask")
    from mlpipeline.training.dask_fit import dask_client, fit_on_dask

    with dask_client(settings.dask_scheduler) as client:
        yield lambda d, train, params: fit_on_dask(d, train, params, client)


def experiment_tags(tracker: Tracker, d: Definition) -> dict[str, str]:
    """The training experiment's kind (classic ML: MLflow's UI opens it on runs) and description."""
    about = f" {plain(d.description, 1000)}" if d.description else ""
    note = (
        f"Training runs of feature set **{d.name}**.{about}\n\n"
        "One run per training, named *version · trigger · the gate's verdict*; its description "
        "holds the trigger's reasons and the gate's reason in full. The registered model is "
        f"[{tracker.model_name(d.name)}](#/models/{tracker.model_name(d.name)}); "
        f"the champion's monitoring is in experiment {tracker.model_name(d.name)}-monitoring."
    )
    return {EXPERIMENT_KIND_TAG: experiment_kind(d.target.task), NOTE_TAG: note}


def _close_failed(tracker: Tracker, run_id: str, reason: str, failure: str) -> None:
    """Name and describe a failed run, then close it; the original error is what propagates."""
    _tell(
        tracker,
        run_id,
        run_name(None, reason, "failed"),
        f"Why it was trained: {plain(reason, 1800)}\n\n**It failed:** {plain(failure, 2500)}\n\n"
        "The production model did not change.\n",
    )
    tracker.end_run(run_id, "FAILED")


def _tell(tracker: Tracker, run_id: str, name: str, description: str) -> None:
    """The run's name and description: for people only, so a failure to write them is logged,
    never allowed to fail (or undo) what the run did."""
    try:
        tracker.rename_run(run_id, name)
        tracker.describe_run(run_id, description)
    except MlpipelineError:
        log.warning("could not name or describe the run", extra={"run_id": run_id}, exc_info=True)


def _run(
    settings: Settings,
    store: SqlFeatureStore,
    d: Definition,
    tracker: Tracker,
    promoter: Promoter,
    pointers: SqlPointerStore,
    timer: _Timer,
    run_id: str,
    reason: str,
    as_of: datetime | None,
    tuning: tuple[TuneRequest, str, Progress] | None = None,
    fit_with: Fitter = fit,
) -> TrainResult:
    with timer.step("extract"):
        window = settings.duration("training_window")
        start = (as_of or utcnow()) - window if window is not None and d.event_time else None
        frame = store.training_window(d, start=start, as_of=as_of)
        tracker.log(
            run_id,
            params={
                "data.window_start": start.isoformat() if start else "all",
                "data.as_of": (as_of or utcnow()).isoformat(),
            },
        )
    with timer.step("validate"):
        report = validate_training_data(d, frame)
        tracker.log(
            run_id,
            params={"data.rows": report.rows, "data.labelled_rows": report.labelled_rows},
            tags={"mlpipeline.data_checks": ", ".join(f"{k} {v}" for k, v in report.checks.items())},
        )
        require_usable(report, source=f"training data of '{d.name}'")
    pointer = pointers.get(d.name)
    with timer.step("split"):
        trained_batch = store.get_state(d.name, TRAINED_BATCH_KEY) if pointer else None
        split = split_holdout(d, frame, new_after_batch=int(trained_batch) if trained_batch else None)
    champion_record = _version_record(store, d, pointer)
    params, source = champion_params(d, pointer, champion_record)
    train_sha = training_data_hash(d, split.train)
    # The champion learnt from exactly these training rows: the split (seeded) is the same.
    same_rows = champion_record is not None and champion_record.get("train_sha256") == train_sha
    study = None
    if tuning is not None:
        request, experiment, progress = tuning
        with timer.step("tune"):
            study = run_study(store, d, tracker, experiment, split.train, params, request, progress)
        tracker.log(
            run_id,
            tags={
                "mlflow.parentRunId": study.run_id,
                "mlpipeline.tuning.study": study.name,
                "mlpipeline.tuning.best_run": study.best_run_id or "",
            },
        )
        if same_rows and study.params == params:
            return _nothing_new(store, d, tracker, run_id, timer, study, params, source, pointer, reason)
        params, source = study.params, f"tuned: study {study.name}, best of {study.complete} trials"
    with timer.step("train"):
        fitted = fit_with(d, split.train, params)
    with timer.step("evaluate"):
        y_hold = split.holdout[d.target.column].to_numpy(dtype=np.float64)
        scores = fitted.predict(split.holdout)
        metrics = evaluate(y_hold, scores, spec=fitted.spec, metric=d.quality.metric)
        recalls = _class_recalls(d, fitted.spec, y_hold, scores)
    with timer.step("gate"):
        champion_metrics, champion_version, champion_scores, champion_spec = _score_champion(
            settings, tracker, pointers, d, split.holdout, y_hold
        )
        # The R²-shaped default floor fits a score in [0, 1]; a loss gets one only when it is set.
        explicit_floor = "r2_floor" in settings.model_fields_set
        policy = GatePolicy(
            settings.r2_floor if metrics.spec.higher_is_better or explicit_floor else None,
            settings.min_improvement,
            settings.promotion_policy,
            metric=metrics.spec,
            min_class_recall=d.quality.min_class_recall,
        )
        decision = decide(
            metrics.value,
            champion_metrics.value if champion_metrics else None,
            policy,
            class_recalls=recalls,
        )
        if champion_metrics is not None and split.method.endswith("random") and not same_rows:
            decision = replace(
                decision,
                reason=f"{decision.reason}; note: the champion was trained on some of these holdout "
                "rows (too few rows are new to it), which favours it",
            )
        gain_interval = None
        if champion_scores is not None and champion_spec is not None:
            gain_interval = _gain_interval(d, fitted.spec, champion_spec, y_hold, scores, champion_scores)
            if gain_interval is not None:
                decision = replace(
                    decision,
                    reason=f"{decision.reason}; {LEVEL:.0%} interval of the gain "
                    f"{gain_interval[0]:+.4f} to {gain_interval[1]:+.4f}",
                )
    lineage = {
        "lineage.split": split.method,
        "lineage.train_rows": len(split.train),
        "lineage.holdout_rows": len(split.holdout),
        "lineage.training_data_sha256": train_sha,
        "lineage.table": d.table,
        **{f"lineage.{k}": v for k, v in split.window.items()},
    }
    run_params = {
        "engine": "local" if fit_with is fit else "dask",
        "estimator": d.model.estimator,
        "seed": d.model.seed,
        **{f"model.{k}": v for k, v in params.items()},
        "model.params_source": source[:250],
        "holdout.fraction": d.model.holdout.fraction,
        **lineage,
    }
    run_metrics: dict[str, float] = {f"holdout_{k}": v for k, v in metrics.as_dict().items()}
    if champion_metrics is not None:
        run_metrics.update({f"champion_holdout_{k}": v for k, v in champion_metrics.as_dict().items()})
    tracker.log(run_id, params=run_params, metrics=run_metrics)
    with tempfile.TemporaryDirectory(prefix="mlpipeline-train-") as tmp:
        work = Path(tmp)
        with timer.step("log_model"):
            model_dir = build_model_dir(fitted, split.holdout, work)
            write_reference(d, split.train, model_dir / REFERENCE_FILE, fitted)
            digest = manifest_sha256(manifest_of(model_dir))
            tracker.log_artifacts(run_id, model_dir, "model")
        with timer.step("explainer"):
            shap_metrics = _explain(fitted, split.holdout, work, tracker, run_id)
        if d.target.task != "regression":
            pictures, per_class = classification_report(fitted.spec, y_hold, scores, work / "holdout")
            for picture in pictures:
                tracker.log_artifact(run_id, picture)
            shap_metrics.update(per_class)
    with timer.step("register"):
        gate = {
            "decision": decision.action,
            "reason": decision.reason,
            "metric": metrics.metric,
            "challenger": decision.challenger_r2,
            "champion": decision.champion_r2,
            "champion_version": champion_version,
            "gain_interval": None if gain_interval is None else [gain_interval[0], gain_interval[1]],
        }
        tags = registration_tags(
            sha256=digest,
            trigger=reason,
            gate=gate,
            metric=metrics.metric,
            metrics=metrics.as_dict(),
            tuning={"study": study.name, "best_run": study.best_run_id or ""} if study else None,
            release=__version__,
        )
        story = TrainingStory(
            featureset=d.name,
            model_name=tracker.model_name(d.name),
            reason=reason,
            metric=metrics.metric,
            decision=decision.action,
            gate_reason=decision.reason,
            metrics=metrics.as_dict(),
            champion_metrics=champion_metrics.as_dict() if champion_metrics else {},
            champion_version=champion_version,
            holdout=f"{len(split.holdout):,} rows, {split.method} split",
            params_source=source,
        )
        version = tracker.register(
            d.name, run_id, "model", tags, description=story.markdown(link_version=False)
        )
        _record_params(store, d, version, params, source, study, decision, train_sha)
    story = replace(story, version=version)
    tracker.log(
        run_id,
        tags={"mlpipeline.model_version": version, "mlpipeline.gate.decision": decision.action},
        metrics=shap_metrics,
    )
    with log_context(model_version=version), timer.step("promote"):
        if decision.action == "promote":
            promoter.promote(d.name, version, reason=f"gate: {decision.reason}", action="promote")
        elif decision.action == "await_approval":
            tracker.set_alias(d.name, CHALLENGER, version)
        log.info("gate decided", extra={"decision": decision.action, "reason": decision.reason})
    _tell(tracker, run_id, story.name, story.markdown(link_version=True))
    tracker.log(run_id, metrics={f"time_{k}_s": v for k, v in timer.timings.items()})
    return TrainResult(
        d.name,
        run_id,
        version,
        metrics,
        decision,
        dict(timer.timings),
        champion_version,
        params=dict(params),
        params_source=source,
        study=study,
    )


def params_key(version: str) -> str:
    """State key of the parameters a version was trained with."""
    return f"params.v{version}"


def _model_fingerprint(d: Definition) -> str:
    """The definition's model settings that tuned parameters stand in for."""
    facts = {"estimator": d.model.estimator, "params": d.model.params}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def champion_params(
    d: Definition, pointer: Pointer | None, record: dict[str, Any] | None
) -> tuple[dict[str, Any], str]:
    """What a plain retrain fits with: the champion's tuned parameters (from its ``record``,
    see :func:`_version_record`), or the definition's.

    Tuned parameters stop applying when the definition's estimator or ``model.params`` change
    after the tuning: an edited definition is the user's newer intent.
    """
    if pointer is not None and record and record.get("tuned"):
        if record.get("definition") == _model_fingerprint(d):
            origin = f"tuned: the champion v{pointer.version}'s, from study {record.get('study')}"
            return dict(record["params"]), origin
        log.info(
            "model settings edited since the champion was tuned: fitting with the definition's",
            extra={"champion": pointer.version},
        )
    return dict(d.model.params), "definition"


def _version_record(store: SqlFeatureStore, d: Definition, pointer: Pointer | None) -> dict[str, Any] | None:
    """What was recorded when the champion was trained (parameters, training rows), if anything."""
    raw = store.get_state(d.name, params_key(pointer.version)) if pointer else None
    return json.loads(raw) if raw else None


def _nothing_new(
    store: SqlFeatureStore,
    d: Definition,
    tracker: Tracker,
    run_id: str,
    timer: _Timer,
    study: StudyOutcome,
    params: dict[str, Any],
    source: str,
    pointer: Pointer | None,
    reason_of_run: str,
) -> TrainResult:
    """The study's best is the champion's own configuration on the champion's own training rows:
    the refit would be the champion again, so nothing is registered."""
    reason = (
        f"the champion's configuration won the study ({study.complete} trials) on the rows the champion "
        "was trained on: a refit would be the champion again, so no version is registered"
    )
    decision = Decision("hold", reason, study.best_value, study.best_value)
    tracker.log(run_id, tags={"mlpipeline.gate.decision": "hold", "mlpipeline.gate.reason": reason[:500]})
    _tell(
        tracker,
        run_id,
        run_name(None, reason_of_run, "nothing new"),
        f"Why it was trained: {plain(reason_of_run, 1800)}\n\n**Nothing registered:** {reason}.\n",
    )
    summary = study.summary(metric_for(d.quality.metric, d.target.task).name)
    summary.update(version=None, action="hold")
    store.set_state(d.name, LAST_STUDY_KEY, json.dumps(summary, sort_keys=True, default=str))
    store.set_state(d.name, LAST_TRAINING_KEY, json.dumps({"tuned": True, "action": "hold", "version": None}))
    log.info("tuning found nothing better than the champion", extra={"study": study.name})
    tracker.log(run_id, metrics={f"time_{k}_s": v for k, v in timer.timings.items()})
    return TrainResult(
        d.name,
        run_id,
        None,
        None,
        decision,
        dict(timer.timings),
        pointer.version if pointer else None,
        params=dict(params),
        params_source=source,
        study=study,
    )


def _record_params(
    store: SqlFeatureStore,
    d: Definition,
    version: str,
    params: dict[str, Any],
    source: str,
    study: StudyOutcome | None,
    decision: Decision,
    train_sha: str,
) -> None:
    """What the next plain retrain, the ``when`` policy and ``status`` need to know."""
    tuned = study is not None or source.startswith("tuned")
    origin = source.rpartition("from study ")[2] if tuned and study is None else None
    record = {
        "params": params,
        "tuned": tuned,
        "study": study.name if study else origin,
        "definition": _model_fingerprint(d),
        "train_sha256": train_sha,
    }
    store.set_state(d.name, params_key(version), json.dumps(record, sort_keys=True))
    store.set_state(
        d.name,
        LAST_TRAINING_KEY,
        json.dumps({"tuned": study is not None, "action": decision.action, "version": version}),
    )
    if study is not None:
        summary = study.summary(metric_for(d.quality.metric, d.target.task).name)
        summary.update(version=version, action=decision.action)
        store.set_state(d.name, LAST_STUDY_KEY, json.dumps(summary, sort_keys=True, default=str))
        store.set_state(d.name, ACTIVE_STUDY_KEY, "")


def _with_heartbeat(progress: Progress | None, renew: Any) -> Progress:
    """The caller's progress, and the training lease renewed after every trial (a study may
    outlast the lease's time to live)."""

    def report(done: int, wanted: int, best: float, label: str) -> None:
        if renew() is None:
            raise BusyError(
                "the training lease was lost during the study (another process took it after the lease's "
                "time to live, MLPIPELINE_LOCK_TTL, passed without a renewal): this study stops; run "
                "'mlpipeline tune' again to resume it once the other training has finished"
            )
        if progress is not None:
            progress(done, wanted, best, label)

    return report


def _close_abandoned_runs(tracker: Tracker, experiment: str, store: SqlFeatureStore, featureset: str) -> None:
    """Training, study and trial runs still RUNNING belong to processes that died (we hold the
    train lease); the interrupted study's parent run stays open for its resumption."""
    active = json.loads(store.get_state(featureset, ACTIVE_STUDY_KEY) or "null") or {}
    for run_id in tracker.running_runs(
        experiment, kind_tag="mlpipeline.kind", kinds=("train", "tune", "trial")
    ):
        if run_id == active.get("run_id"):
            continue
        tracker.log(
            run_id, tags={"mlpipeline.failure": "abandoned: its process ended before closing the run"}
        )
        tracker.end_run(run_id, "FAILED")
        log.warning("closed an abandoned run", extra={"run_id": run_id})


def write_reference(d: Definition, train: Any, path: Path, fitted: Any = None) -> None:
    """Training-time histograms of every raw feature, the target and (given the ``fitted``
    model) its predictions on these rows, for drift checks.

    Stored inside the model folder, so it is covered by the version's digest, travels with
    the model through the registry and the cache, and monitoring compares new rows with
    exactly the data this version learned from, and served predictions with what it said on it.
    """
    names = [n for n, f in d.features.items() if f.drift]
    categorical = [n for n in names if d.features[n].type == "categorical"]
    reference = build_reference(
        columns_of(train, names),
        categorical=categorical,
        target=train[d.target.column].to_numpy(dtype=np.float64),
    )
    if fitted is not None and len(train):
        reference = replace(reference, prediction=prediction_histogram(fitted.spec, fitted.predict(train)))
    path.write_text(json.dumps(reference.to_dict(), indent=1), encoding="utf-8")


def _score_champion(
    settings: Settings,
    tracker: Tracker,
    pointers: SqlPointerStore,
    d: Definition,
    holdout: Any,
    y_hold: np.ndarray,
) -> tuple[Metrics | None, str | None, np.ndarray | None, dict[str, Any] | None]:
    """The champion's metrics, scores and spec on the challenger's holdout (None without one)."""
    pointer = pointers.get(d.name)
    if pointer is None:
        return None, None, None, None
    model = ModelCache(settings.home / "models", lambda: tracker).load(pointer.ref)
    if portable.task_of(model.spec) != d.target.task:  # the target changed kind: nothing to compare
        return None, pointer.version, None, None
    names = portable.input_names(model.spec)
    scores = model.predict_columns(columns_of(holdout, names))
    metrics = evaluate(y_hold, scores, spec=model.spec, metric=d.quality.metric)
    return metrics, pointer.version, scores, model.spec


def _gain_interval(
    d: Definition,
    spec: dict[str, Any],
    champion_spec: dict[str, Any],
    y_hold: np.ndarray,
    scores: np.ndarray,
    champion_scores: np.ndarray,
) -> tuple[float, float] | None:
    """The bootstrap interval of the challenger's gain over the champion on the same rows."""
    task = d.target.task
    y = y_hold if task != "binary" else (y_hold == d.target.positive_index).astype(np.float64)
    if (
        task == "binary"
        and int(champion_spec.get("positive", d.target.positive_index)) != d.target.positive_index
    ):
        return None  # the champion scored another class as positive: no paired comparison
    scores, classes = aligned_classes(task, y, scores, len(d.target.classes) or 2)
    champion_scores, classes = aligned_classes(task, y, champion_scores, classes)
    return paired_difference_interval(
        task,
        metric_for(d.quality.metric, task).name,
        y,
        scores,
        champion_scores,
        classes=classes,
        new_threshold=float(spec.get("threshold", 0.5)),
        old_threshold=float(champion_spec.get("threshold", 0.5)),
    )


def _class_recalls(
    d: Definition, spec: dict[str, Any], y_hold: np.ndarray, scores: np.ndarray
) -> dict[str, float] | None:
    """Each class's recall on the holdout, when the definition sets a floor for it."""
    if d.quality.min_class_recall is None or d.target.task == "regression":
        return None
    codes = portable.predicted_codes(spec, scores)
    out = {}
    for i, name in enumerate(d.target.classes):
        mask = y_hold == i
        if mask.any():
            out[name] = float((codes[mask] == i).mean())
    return out


def _explain(fitted: Any, holdout: Any, work: Path, tracker: Tracker, run_id: str) -> dict[str, float]:
    """Explainer artifact, SHAP summary plot and mean |SHAP| per feature (LightGBM models)."""
    if not fitted.is_lightgbm:
        tracker.log(run_id, tags={"mlpipeline.explainer": "none (only LightGBM models get a tree explainer)"})
        return {}
    sample = holdout.sample(n=min(SHAP_SAMPLE, len(holdout)), random_state=0) if len(holdout) else holdout
    matrix = fitted.matrix(sample)
    explainer = write_explainer(fitted, matrix, work / "explainer")
    values = explainer.shap_values(matrix)
    names = explainer.feature_names
    if values.ndim == 3:  # multiclass: one summary per class
        metrics: dict[str, float] = {}
        for i, cls in enumerate(fitted.spec.get("classes") or range(values.shape[1])):
            plot = work / f"shap_summary_{cls}.png"
            _summary_plot(values[:, i, :], matrix, names, plot)
            tracker.log_artifact(run_id, plot)
            mean_abs = np.abs(values[:, i, :]).mean(axis=0)
            metrics.update(
                {f"shap_mean_abs.{cls}.{n}": float(v) for n, v in zip(names, mean_abs, strict=True)}
            )
    else:
        plot = work / "shap_summary.png"
        _summary_plot(values, matrix, names, plot)
        tracker.log_artifact(run_id, plot)
        mean_abs = np.abs(values).mean(axis=0)
        metrics = {f"shap_mean_abs.{n}": float(v) for n, v in zip(names, mean_abs, strict=True)}
    tracker.log_artifacts(run_id, work / "explainer", "explainer")
    tracker.log(run_id, tags={"mlpipeline.explainer": "explainer/explainer.json"})
    return metrics


def _summary_plot(values: np.ndarray, matrix: np.ndarray, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    shap.summary_plot(values, matrix, feature_names=names, show=False)
    plt.gcf().savefig(path, dpi=110, bbox_inches="tight")
    plt.close("all")
