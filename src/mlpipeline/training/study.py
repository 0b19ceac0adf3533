"""A tuning study: Optuna over the training part, stored in the feature store, shown in MLflow.

The study is kept in the feature set's database through Optuna's journal storage (see
:mod:`mlpipeline.featurestore.tuning_journal`), so a study interrupted by ``kill -9`` resumes
where it stopped: trials complete at the interruption count towards the budget, the one
running is marked failed, and the same MLflow parent run is reopened. A study resumes only
while its inputs are the same (training rows, space, metric, folds, starting parameters);
otherwise a new one starts and the old one is closed with the reason.

The first trial of a new study is the starting configuration (the champion's parameters),
so the best trial is never worse on the folds than what is in production. Each trial is
logged as a nested MLflow run by a background thread, so tracking costs the study almost no
time; the parent run carries the best value per trial, Optuna's history and importance plots,
and the best trial's run id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import queue
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mlpipeline.errors import TuningError
from mlpipeline.featuresets.definition import Definition, ParamRange
from mlpipeline.featuresets.metrics import metric_for
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.registry.tracking import Tracker
from mlpipeline.training.steps import training_data_hash
from mlpipeline.training.tuning import (
    canonical_name,
    check_tuning,
    in_range,
    merged_params,
    prepare_folds,
    suggest,
    tuning_of,
)

__all__ = [
    "ACTIVE_STUDY_KEY",
    "LAST_STUDY_KEY",
    "Progress",
    "StudyOutcome",
    "TuneRequest",
    "run_study",
]

log = logging.getLogger(__name__)

#: State keys: the study in progress (to resume) and the last finished one (for ``status``).
ACTIVE_STUDY_KEY = "tuning.active"
LAST_STUDY_KEY = "tuning.last"

#: LightGBM's defaults of the parameters a default space searches (canonical names): what the
#: starting trial reports to the sampler for a parameter the starting configuration leaves unset.
_LIGHTGBM_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.1,
    "num_leaves": 31,
    "max_depth": -1,
    "min_data_in_leaf": 20,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "lambda_l1": 0.0,
    "lambda_l2": 0.0,
    "num_iterations": 100,
}

#: Fewest complete trials behind a parameter-importance plot (fewer rank noise).
MIN_TRIALS_FOR_IMPORTANCE = 10

#: (complete trials, trials wanted, best value so far or NaN, the metric's label)
Progress = Callable[[int, int, float, str], None]


@dataclass(frozen=True)
class TuneRequest:
    """A study's budget: it ends with ``trials`` complete trials, or after ``timeout_s``."""

    trials: int
    timeout_s: float | None = None


@dataclass
class StudyOutcome:
    """What a study found and what it cost."""

    name: str
    run_id: str
    params: dict[str, Any]
    best_value: float
    best_trial: int
    best_run_id: str | None
    complete: int
    failed: int
    resumed: int  # complete trials found in storage when this process started
    folds: str
    seconds: float  # the whole study: folds, trials, plots
    search_seconds: float  # the trials, their storage and their MLflow runs
    fit_seconds: float  # the fits and scores inside the trials
    overhead: dict[str, float] = field(default_factory=dict)

    def summary(self, metric: str) -> dict[str, Any]:
        return {
            "study": self.name,
            "run_id": self.run_id,
            "metric": metric,
            "best_value": self.best_value,
            "best_trial": self.best_trial,
            "best_run_id": self.best_run_id,
            "complete": self.complete,
            "failed": self.failed,
            "params": self.params,
            "finished_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        }


def run_study(
    store: SqlFeatureStore,
    d: Definition,
    tracker: Tracker,
    experiment: str,
    train: pd.DataFrame,
    base: Mapping[str, Any],
    request: TuneRequest,
    progress: Progress | None = None,
) -> StudyOutcome:
    """Search hyperparameters on ``train`` (the training part only), starting from ``base``.

    The caller holds the feature set's training lease: the study's journal is written by this
    process alone (see :class:`~mlpipeline.featurestore.tuning_journal.SqlJournalBackend`).
    """
    from optuna.trial import TrialState

    _quiet_optuna()
    started = time.perf_counter()
    space = check_tuning(d)
    tuning = tuning_of(d)
    metric = metric_for(d.quality.metric, d.target.task)
    folds, method = prepare_folds(d, train, tuning.cv)
    study, run_id = _open_study(store, d, tracker, experiment, train, base, space, request, method)
    complete_states = (TrialState.COMPLETE,)
    resumed = len(study.get_trials(deepcopy=False, states=complete_states))
    logger = _TrialLogger(tracker, experiment, run_id, d.name, metric.name)

    def objective(trial: Any) -> float:
        if trial.user_attrs.get("warm_start"):
            chosen = set(trial.user_attrs.get("suggested", ()))
            suggest(trial, {n: r for n, r in space.items() if n in chosen})  # recorded for the sampler
            params = dict(base)
        else:
            params = merged_params(d, base, suggest(trial, space))
        trial.set_user_attr("params", params)
        try:
            value, seconds = _score(d, folds, params)
        except Exception as exc:
            reason = f"{exc.__class__.__name__}: {exc}"[:500]
            trial.set_user_attr("error", reason)
            log.warning("tuning trial failed", extra={"trial": trial.number, "detail": reason})
            raise
        trial.set_user_attr("fit_seconds", seconds)
        return value

    def after_trial(study: Any, trial: Any) -> None:
        done = len(study.get_trials(deepcopy=False, states=complete_states))
        best = _best_value(study)
        logger.submit(trial, best)
        if progress is not None:
            progress(done, request.trials, best, metric.label)
        if done >= request.trials:
            study.stop()

    remaining = request.trials - resumed
    search_started = time.perf_counter()
    done_before = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    try:
        logger.catch_up(study)
        if progress is not None:
            progress(resumed, request.trials, _best_value(study), metric.label)
        if remaining > 0:
            # Failed trials do not count; allow as many failures as trials before giving up.
            study.optimize(
                objective,
                n_trials=remaining + max(request.trials, 5),
                timeout=request.timeout_s,
                callbacks=[after_trial],
                catch=(Exception,),
                gc_after_trial=False,
            )
    finally:
        logger.close()
    search_seconds = time.perf_counter() - search_started
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    timed_out = request.timeout_s is not None and search_seconds >= request.timeout_s
    if not complete or (len(complete) < request.trials and not timed_out):
        _give_up(store, d, tracker, run_id, len(complete), request.trials, failed)
    best = study.best_trial
    fit_seconds = sum(
        float(t.user_attrs.get("fit_seconds", 0.0)) for t in trials if t.number not in done_before
    )
    outcome = StudyOutcome(
        name=study.study_name,
        run_id=run_id,
        params=dict(best.user_attrs["params"]),
        best_value=float(best.value if best.value is not None else math.nan),
        best_trial=best.number,
        best_run_id=logger.run_ids.get(best.number),
        complete=len(complete),
        failed=len(failed),
        resumed=resumed,
        folds=f"{tuning.cv} folds, {method}",
        seconds=time.perf_counter() - started,
        search_seconds=search_seconds,
        fit_seconds=fit_seconds,
        overhead=logger.overhead(),
    )
    _finish_parent(tracker, study, outcome, metric.name, metric.label)
    # The study is over: a failure of the refit that follows starts a new study next time.
    store.set_state(d.name, ACTIVE_STUDY_KEY, "")
    store.set_state(d.name, LAST_STUDY_KEY, json.dumps(outcome.summary(metric.name), sort_keys=True))
    return outcome


def _quiet_optuna() -> None:
    """Optuna's own log lines (a traceback per failed trial) stay out of the terminal: each
    failure is logged once by mlpipeline and recorded on its trial and nested run."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.disable_propagation()
    optuna_log = logging.getLogger("optuna")
    if not any(isinstance(h, logging.NullHandler) for h in optuna_log.handlers):
        optuna_log.addHandler(logging.NullHandler())


def _open_study(
    store: SqlFeatureStore,
    d: Definition,
    tracker: Tracker,
    experiment: str,
    train: pd.DataFrame,
    base: Mapping[str, Any],
    space: Mapping[str, ParamRange],
    request: TuneRequest,
    method: str,
) -> tuple[Any, str]:
    """The interrupted study when its inputs are the same, else a new one; and its parent run."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.trial import TrialState

    from mlpipeline.featurestore.tuning_journal import SqlJournalBackend

    tuning = tuning_of(d)
    metric = metric_for(d.quality.metric, d.target.task)
    fingerprint = _fingerprint(d, train, space, base)
    active = json.loads(store.get_state(d.name, ACTIVE_STUDY_KEY) or "null")
    if active and active.get("fingerprint") == fingerprint:
        storage = JournalStorage(SqlJournalBackend(store, d.name, active["study"], sole_writer=True))
        study = optuna.load_study(
            study_name=active["study"], storage=storage, sampler=_sampler(d, active["study"], resumed=True)
        )
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL)  # its process died: it never finished
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.WAITING))
        if not any(t.user_attrs.get("warm_start") for t in trials):  # it died in the first trial
            _enqueue_start(study, d, base, space)
        run_id = str(active["run_id"])
        tracker.reopen_run(run_id)
        log.info("tuning study resumed", extra={"study": study.study_name, "trials": len(study.trials)})
        return study, run_id
    if active:
        _close_superseded(tracker, active)
    name = f"{d.name}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    study = optuna.create_study(
        study_name=name,
        storage=JournalStorage(SqlJournalBackend(store, d.name, name, sole_writer=True)),
        direction="maximize" if metric.higher_is_better else "minimize",
        sampler=_sampler(d, name),
    )
    run_id = tracker.start_run(
        experiment,
        f"tune-{d.name}",
        {"mlpipeline.kind": "tune", "mlpipeline.featureset": d.name, "mlpipeline.study": name},
    )
    store.set_state(
        d.name, ACTIVE_STUDY_KEY, json.dumps({"study": name, "fingerprint": fingerprint, "run_id": run_id})
    )
    tracker.log(
        run_id,
        params={
            "tuning.trials": request.trials,
            "tuning.timeout_s": request.timeout_s or "none",
            "tuning.cv": f"{tuning.cv} folds, {method}",
            "tuning.metric": metric.name,
            "tuning.train_rows": len(train),
            "tuning.space": json.dumps({k: v.model_dump(exclude_none=True) for k, v in space.items()})[:6000],
            "tuning.start_params": json.dumps(dict(base), sort_keys=True)[:6000],
        },
    )
    _enqueue_start(study, d, base, space)
    return study, run_id


def _sampler(d: Definition, study: str, *, resumed: bool = False) -> Any:
    """TPE seeded by the definition's seed and the study's name: a study is repeatable, and the
    next study of the feature set explores other configurations instead of the same ones again."""
    import optuna

    digest = hashlib.sha256(f"{d.model.seed}:{study}:{int(resumed)}".encode()).hexdigest()
    return optuna.samplers.TPESampler(seed=int(digest[:8], 16))


def _enqueue_start(
    study: Any, d: Definition, base: Mapping[str, Any], space: Mapping[str, ParamRange]
) -> None:
    """The starting configuration (the champion's parameters) as the next trial."""
    warm = {n: v for n, v in _start_values(d, base, space).items() if in_range(space[n], v)}
    study.enqueue_trial(warm, user_attrs={"warm_start": True, "suggested": sorted(warm)})


def _give_up(
    store: SqlFeatureStore,
    d: Definition,
    tracker: Tracker,
    run_id: str,
    complete: int,
    wanted: int,
    failed: list[Any],
) -> None:
    """Too many trials failed to reach the budget: the study ends, with every distinct error."""
    errors = sorted({str(t.user_attrs.get("error", "unknown error")) for t in failed})
    what = "every trial" if not complete else f"{len(failed)} trials"
    tracker.log(run_id, tags={"mlpipeline.failure": f"{what} failed: " + "; ".join(errors)[:4000]})
    tracker.end_run(run_id, "FAILED")
    store.set_state(d.name, ACTIVE_STUDY_KEY, "")
    raise TuningError(
        f"the tuning study of '{d.name}' ended with {complete} of {wanted} complete trials: {what} failed "
        f"({'; '.join(errors)[:800]}); narrow [model.tuning.space] to values the estimator accepts"
    )


def _score(d: Definition, folds: Any, params: Mapping[str, Any]) -> tuple[float, float]:
    from mlpipeline.training.tuning import cv_score

    value, seconds = cv_score(d, folds, params)
    if math.isnan(value):
        raise ValueError("the metric is undefined on every fold (a single class in each validation part)")
    return value, seconds


def _best_value(study: Any) -> float:
    try:
        return float(study.best_value)
    except ValueError:  # no complete trial yet
        return math.nan


def _start_values(d: Definition, base: Mapping[str, Any], space: Mapping[str, ParamRange]) -> dict[str, Any]:
    """The starting configuration's value of each searched parameter: set in ``base`` (by any
    alias), or the estimator's default."""
    by_canonical = {canonical_name(d, k): v for k, v in base.items()}
    if d.model.estimator == "lightgbm":
        defaults = _LIGHTGBM_DEFAULTS
    else:
        from mlpipeline.training.steps import _sklearn_estimator

        defaults = _sklearn_estimator(d.model.estimator, {}, d.model.seed, d.target.task).get_params()
    out = {}
    for name in space:
        canonical = canonical_name(d, name)
        if canonical in by_canonical:
            out[name] = by_canonical[canonical]
        elif canonical in defaults:
            out[name] = defaults[canonical]
    return out


def _fingerprint(
    d: Definition, train: pd.DataFrame, space: Mapping[str, ParamRange], base: Mapping[str, Any]
) -> str:
    """What a resumed study must share with the one it continues."""
    tuning = tuning_of(d)
    facts = {
        "rows": training_data_hash(d, train),
        "space": {k: v.model_dump() for k, v in space.items()},
        "metric": metric_for(d.quality.metric, d.target.task).name,
        "cv": tuning.cv,
        "group": d.model.group,
        "estimator": d.model.estimator,
        "base": dict(base),
        "seed": d.model.seed,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def _close_superseded(tracker: Tracker, active: Mapping[str, Any]) -> None:
    run_id = str(active.get("run_id") or "")
    if not run_id:
        return
    try:
        tracker.log(
            run_id,
            tags={
                "mlpipeline.failure": "superseded: the training rows, the space or the starting parameters "
                "changed before this study finished; a new study started"
            },
        )
        tracker.end_run(run_id, "KILLED")
    except Exception as exc:  # a lost run must not stop the new study
        log.warning(
            "could not close a superseded study run", extra={"run_id": run_id, "detail": str(exc)[:300]}
        )


def _finish_parent(tracker: Tracker, study: Any, outcome: StudyOutcome, metric: str, label: str) -> None:
    tracker.log(
        outcome.run_id,
        metrics={"trials_complete": outcome.complete, "trials_failed": outcome.failed},
        tags={
            "mlpipeline.tuning.best_trial": str(outcome.best_trial),
            f"mlpipeline.tuning.best_cv_{metric}": f"{outcome.best_value:.6g}",
            "mlpipeline.tuning.best_run": outcome.best_run_id or "",
            "mlpipeline.tuning.best_params": json.dumps(outcome.params, sort_keys=True)[:5000],
        },
    )
    with tempfile.TemporaryDirectory(prefix="mlpipeline-tune-") as tmp:
        for picture in _plots(study, Path(tmp), f"cross-validated {label}"):
            tracker.log_artifact(outcome.run_id, picture, "tuning")
    tracker.end_run(outcome.run_id, "FINISHED")


def _plots(study: Any, work: Path, target: str) -> list[Path]:
    """Optuna's optimisation history and parameter importances, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as ov

    work.mkdir(parents=True, exist_ok=True)
    out = []
    complete = len([t for t in study.trials if t.state.name == "COMPLETE"])
    plots: list[tuple[str, Any]] = [("optimization_history.png", ov.plot_optimization_history)]
    if complete >= MIN_TRIALS_FOR_IMPORTANCE:
        plots.append(("param_importances.png", ov.plot_param_importances))
    else:
        log.info("no importance plot: too few complete trials", extra={"complete": complete})
    for name, draw in plots:
        try:
            with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
                warnings.simplefilter("ignore", ExperimentalWarning)
                draw(study, target_name=target)
            axes = plt.gca()
            for loc in ("left", "center"):  # the study's name under Optuna's title, wherever it is
                if axes.get_title(loc=loc):
                    axes.set_title(f"{axes.get_title(loc=loc)}\n{study.study_name}", loc=loc, fontsize=10)
            plt.gcf().savefig(work / name, dpi=110, bbox_inches="tight")
            out.append(work / name)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few trials to rank
            log.info("tuning plot skipped", extra={"plot": name, "detail": str(exc)[:200]})
        finally:
            plt.close("all")
    return out


class _TrialLogger:
    """Logs each finished trial as a nested MLflow run from a background thread.

    The study never waits for MLflow; :meth:`close` waits for the queue to drain. A trial a
    ``kill -9`` left unlogged is logged on resume (:meth:`catch_up`). Failures are logged as
    warnings: the study's result does not depend on its pictures.
    """

    def __init__(self, tracker: Tracker, experiment: str, parent: str, featureset: str, metric: str) -> None:
        self.tracker = tracker
        self.experiment = experiment
        self.parent = parent
        self.featureset = featureset
        self.metric = metric
        self.run_ids: dict[int, str] = {}
        self.submit_seconds = 0.0
        self.submitted = 0
        self.failures = 0
        self._queue: queue.Queue[tuple[Any, float] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="mlpipeline-trial-logger", daemon=True)
        self._thread.start()

    def catch_up(self, study: Any) -> None:
        """Queue the finished trials of a resumed study that have no run yet."""
        from optuna.trial import TrialState

        logged = self.tracker.child_runs(self.experiment, self.parent, "mlpipeline.trial")
        self.run_ids.update({int(k): v for k, v in logged.items() if k.isdigit()})
        best = math.nan
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            if t.state == TrialState.COMPLETE and t.value is not None:
                better = math.isnan(best) or (
                    t.value > best if study.direction.name == "MAXIMIZE" else t.value < best
                )
                best = float(t.value) if better else best
            if t.number not in self.run_ids:
                self.submit(t, best)

    def submit(self, trial: Any, best: float) -> None:
        t0 = time.perf_counter()
        self._queue.put((trial, best))
        self.submit_seconds += time.perf_counter() - t0
        self.submitted += 1

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def overhead(self) -> dict[str, float]:
        """What logging cost the study's own thread, and how it went."""
        return {
            "submit_s": self.submit_seconds,
            "trials_logged": float(len(self.run_ids)),
            "log_failures": float(self.failures),
        }

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._log(*item)
            except Exception as exc:
                self.failures += 1
                log.warning("could not log a tuning trial to MLflow", extra={"detail": str(exc)[:300]})

    def _log(self, trial: Any, best: float) -> None:
        from optuna.trial import TrialState

        state = "FINISHED" if trial.state == TrialState.COMPLETE else "FAILED"
        run_id = self.tracker.start_run(
            self.experiment,
            f"trial {trial.number}",
            {
                "mlflow.parentRunId": self.parent,
                "mlpipeline.kind": "trial",
                "mlpipeline.featureset": self.featureset,
                "mlpipeline.trial": str(trial.number),
                "mlpipeline.trial.state": trial.state.name,
                **(
                    {"mlpipeline.trial.warm_start": "champion's parameters"}
                    if trial.user_attrs.get("warm_start")
                    else {}
                ),
                **(
                    {"mlpipeline.failure": str(trial.user_attrs["error"])}
                    if "error" in trial.user_attrs
                    else {}
                ),
            },
        )
        metrics = {"fit_seconds": float(trial.user_attrs.get("fit_seconds", 0.0))}
        if trial.value is not None:
            metrics[f"cv_{self.metric}"] = float(trial.value)
        try:
            self.tracker.log(run_id, params=trial.user_attrs.get("params", trial.params), metrics=metrics)
        except Exception:
            state = "FAILED"  # the run exists but lacks its figures: never leave it RUNNING
            raise
        finally:
            self.tracker.end_run(run_id, state)
        self.run_ids[trial.number] = run_id
        parent_metrics = {f"cv_{self.metric}": float(trial.value)} if trial.value is not None else {}
        if not math.isnan(best):
            parent_metrics[f"best_cv_{self.metric}"] = best
        if parent_metrics:
            self.tracker.log(self.parent, metrics=parent_metrics, step=trial.number)
