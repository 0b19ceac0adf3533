"""What a tuning trial does, apart from storage and tracking: the search space, the folds and
the cross-validated score of one set of hyperparameters.

A trial sees only the training part of the split (the gate's holdout is never passed here),
and judges a configuration by the feature set's own metric averaged over ``cv`` folds of it:
time-ordered (each fold validates on rows later than those it learns from) when the feature
set has an event time, grouped when ``[model.tuning] group`` names a column whose rows must
stay together, stratified by class for a classifier, shuffled otherwise. The matrices of each
fold are built once, so a trial costs its fits and nothing else.
"""

from __future__ import annotations

import difflib
import functools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.errors import ConfigError, DataValidationError, Problem
from mlpipeline.featuresets import portable
from mlpipeline.featuresets.definition import Definition, ParamRange, Tuning, no_default_space
from mlpipeline.featuresets.metrics import aligned_classes, metric_for, one
from mlpipeline.training.steps import (
    FloatArray,
    columns_of,
    f1_threshold,
    fit_matrix,
    training_matrix,
)

__all__ = [
    "DEFAULT_LIGHTGBM_SPACE",
    "Fold",
    "check_tuning",
    "cv_folds",
    "cv_score",
    "merged_params",
    "prepare_folds",
    "search_space",
    "suggest",
    "tuning_of",
]

#: LightGBM's main parameters and the ranges searched when the definition gives no space.
DEFAULT_LIGHTGBM_SPACE: dict[str, ParamRange] = {
    "learning_rate": ParamRange(low=0.01, high=0.3, log=True),
    "num_leaves": ParamRange(low=8, high=256, log=True),
    "max_depth": ParamRange(low=3, high=12),
    "min_child_samples": ParamRange(low=5, high=100, log=True),
    "feature_fraction": ParamRange(low=0.5, high=1.0),
    "bagging_fraction": ParamRange(low=0.5, high=1.0),
    "lambda_l1": ParamRange(low=1e-8, high=10.0, log=True),
    "lambda_l2": ParamRange(low=1e-8, high=10.0, log=True),
}

#: LightGBM parameters mlpipeline sets itself (canonical names): a study may not move them.
_LIGHTGBM_RESERVED = frozenset(
    {"objective", "num_class", "seed", "deterministic", "num_threads", "verbosity", "task"}
)
#: Label metrics of a binary model depend on its decision threshold, chosen per fold for F1.
_THRESHOLD_METRICS = frozenset({"f1", "precision", "recall", "accuracy", "balanced_accuracy"})
#: Fewest rows a fold may validate on.
MIN_FOLD_ROWS = 10


def tuning_of(d: Definition) -> Tuning:
    """The definition's ``[model.tuning]``, or the defaults when it has none."""
    return d.model.tuning or Tuning()


def search_space(d: Definition) -> dict[str, ParamRange]:
    """The ranges a study searches: the definition's ``space``, or LightGBM's default one."""
    space = tuning_of(d).space
    if space:
        return dict(space)
    if d.model.estimator != "lightgbm":
        raise ConfigError(no_default_space(d.model.estimator))
    return dict(DEFAULT_LIGHTGBM_SPACE)


@functools.cache
def _lightgbm_aliases() -> dict[str, str]:
    """Every LightGBM parameter name and alias -> its canonical name (LightGBM's own table)."""
    import lightgbm as lgb

    table: dict[str, list[str]] = lgb.basic._ConfigAliases._get_all_param_aliases()
    out = {}
    for canonical, aliases in table.items():
        out[canonical] = canonical
        for alias in aliases:
            out.setdefault(alias, canonical)
    return out


def canonical_name(d: Definition, name: str) -> str:
    """A LightGBM parameter under its canonical name (``eta`` -> ``learning_rate``); others as given."""
    if d.model.estimator != "lightgbm":
        return name
    return _canonical_lightgbm(name) or name


def _canonical_lightgbm(name: str) -> str | None:
    if name in ("n_estimators", "num_boost_round"):  # the rounds mlpipeline passes to lgb.train
        return "num_iterations"
    return _lightgbm_aliases().get(name)


def check_tuning(d: Definition) -> dict[str, ParamRange]:
    """The search space, after checking every name against the estimator itself; raises
    :class:`ConfigError` naming each unknown or reserved parameter (before anything is written)."""
    space = search_space(d)
    problems: list[str] = []
    if d.model.estimator == "lightgbm":
        known = _lightgbm_aliases()
        seen: dict[str, str] = {}
        for name in space:
            canonical = _canonical_lightgbm(name)
            if canonical is None:
                problems.append(_unknown(name, list(known), "LightGBM"))
            elif canonical in _LIGHTGBM_RESERVED:
                problems.append(
                    f"'{name}' is set by mlpipeline for the target's task; remove it from the space"
                )
            elif canonical in seen:
                problems.append(f"'{name}' and '{seen[canonical]}' are the same LightGBM parameter; keep one")
            else:
                seen[canonical] = name
    else:
        from mlpipeline.training.steps import _sklearn_estimator

        accepted = set(
            _sklearn_estimator(d.model.estimator, d.model.params, d.model.seed, d.target.task).get_params()
        )
        for name in space:
            if name == "random_state":
                problems.append("'random_state' is model.seed; remove it from the space")
            elif name not in accepted:
                problems.append(_unknown(name, sorted(accepted), d.model.estimator))
    if problems:
        raise ConfigError("model.tuning.space: " + "; ".join(problems))
    return space


def _unknown(name: str, known: list[str], owner: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"'{name}' is not a parameter of {owner}{hint}"


def suggest(trial: Any, space: Mapping[str, ParamRange]) -> dict[str, Any]:
    """One value per range, asked of an Optuna trial."""
    out: dict[str, Any] = {}
    for name, r in space.items():
        if r.choices is not None:
            out[name] = trial.suggest_categorical(name, r.choices)
        elif r.integer:
            out[name] = trial.suggest_int(name, int(r.low or 0), int(r.high or 0), log=r.log)
        else:
            out[name] = trial.suggest_float(name, float(r.low or 0), float(r.high or 0), log=r.log)
    return out


def in_range(r: ParamRange, value: Any) -> bool:
    """Whether a trial could have drawn ``value`` from ``r`` (for the warm-start trial)."""
    if r.choices is not None:
        return value in r.choices
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if r.integer and not float(value).is_integer():
        return False
    return float(r.low or 0) <= float(value) <= float(r.high or 0)


def merged_params(d: Definition, base: Mapping[str, Any], suggested: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with the trial's values over it, whatever name (alias) ``base`` used for them.

    A searched LightGBM ``bagging_fraction`` only takes effect with bagging on: ``bagging_freq``
    becomes 1 unless the base sets it (nothing else the search does not name changes).
    """
    replaced = {canonical_name(d, n) for n in suggested}
    out = {k: v for k, v in base.items() if canonical_name(d, k) not in replaced}
    out.update(suggested)
    if d.model.estimator == "lightgbm" and "bagging_fraction" in replaced:
        names = {canonical_name(d, k) for k in out}
        fraction = next(v for k, v in suggested.items() if canonical_name(d, k) == "bagging_fraction")
        if isinstance(fraction, int | float) and fraction < 1.0 and "bagging_freq" not in names:
            out["bagging_freq"] = 1
    return out


# -- folds ------------------------------------------------------------------------------------


def cv_folds(d: Definition, frame: pd.DataFrame, k: int, seed: int) -> tuple[list[tuple[Any, Any]], str]:
    """``k`` (train rows, validation rows) index pairs over ``frame`` and how they were made."""
    from sklearn import model_selection as ms

    n = len(frame)
    group = d.model.group
    classify = d.target.task != "regression"
    y = frame[d.target.column].to_numpy(dtype=np.float64)
    if d.event_time:
        splits = _time_ordered(d, frame[d.event_time].to_numpy(), k)
        method = "time-ordered"
    elif group is not None:
        groups = frame[group].astype(str).to_numpy()
        if len(np.unique(groups)) < k:
            raise _too_few(
                d, f"{len(np.unique(groups))} distinct '{group}' values cannot fill {k} folds", group
            )
        if classify:
            splitter: Any = ms.StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            splits = list(splitter.split(np.zeros(n), y, groups))
            method = f"grouped by {group}, stratified"
        else:
            splits = list(ms.GroupKFold(n_splits=k).split(np.zeros(n), y, groups))
            method = f"grouped by {group}"
    elif classify:
        smallest = int(np.unique(y, return_counts=True)[1].min())
        if smallest < k:
            raise _too_few(d, f"the rarest class has {smallest} training rows, fewer than the {k} folds")
        splits = list(ms.StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), y))
        method = "stratified"
    else:
        splits = list(ms.KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n)))
        method = "shuffled"
    small = min(len(v) for _, v in splits)
    if small < MIN_FOLD_ROWS:
        raise _too_few(d, f"a fold would validate on {small} rows")
    return splits, method


def _time_ordered(d: Definition, times: Any, k: int) -> list[tuple[Any, Any]]:
    """Expanding-window folds: fold i learns from the oldest rows and validates on the next
    chunk, with every cut between two distinct event times (rows of one day, or one year of a
    panel, never sit on both sides of a cut)."""
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    n = len(order)
    cuts: list[int] = []
    for i in range(1, k + 1):
        at = round(i * n / (k + 1))
        at = int(
            np.searchsorted(ordered, ordered[min(at, n - 1)], side="left")
        )  # back to the time's first row
        if 0 < at < n and (not cuts or at > cuts[-1]):
            cuts.append(at)
    if len(cuts) < k:
        distinct = len(np.unique(ordered))
        raise _too_few(
            d,
            f"{distinct} distinct event times in the training part cannot make {k} time-ordered folds",
            d.event_time,
        )
    bounds = [*cuts, n]
    return [(order[: bounds[i]], order[bounds[i] : bounds[i + 1]]) for i in range(k)]


def _too_few(d: Definition, why: str, column: str | None = None) -> DataValidationError:
    return DataValidationError(
        [
            Problem(
                column or d.target.column,
                "tuning folds",
                f"{why}; lower [model.tuning] cv, or tune when more labelled rows are stored",
            )
        ],
        source=f"tuning data of '{d.name}'",
    )


@dataclass(frozen=True)
class Fold:
    """One fold's matrices, built once for every trial."""

    spec: dict[str, Any]
    x_train: FloatArray
    y_train: FloatArray
    categorical: list[str]
    x_valid: FloatArray
    y_valid: FloatArray  # the metric's truth: numbers, class positions, or 0/1 for a binary target


def prepare_folds(d: Definition, frame: pd.DataFrame, k: int) -> tuple[list[Fold], str]:
    """The folds of :func:`cv_folds`, each with its own vocabularies and ranges (learned from
    its training rows only, as a real fit would)."""
    splits, method = cv_folds(d, frame, k, d.model.seed)
    folds = []
    for train_idx, valid_idx in splits:
        train, valid = frame.iloc[train_idx], frame.iloc[valid_idx]
        spec, x, y, categorical = training_matrix(d, train)
        x_valid = portable.build_matrix(spec, columns_of(valid, portable.input_names(spec)))
        truth = valid[d.target.column].to_numpy(dtype=np.float64)
        if d.target.task == "binary":
            truth = (truth == d.target.positive_index).astype(np.float64)
        folds.append(Fold(spec, x, y, categorical, x_valid, truth))
    return folds, method


def cv_score(d: Definition, folds: list[Fold], params: Mapping[str, Any]) -> tuple[float, float]:
    """The feature set's metric averaged over the folds, and the seconds spent fitting.

    NaN when the metric is undefined on every fold (one class in each validation part).
    """
    task = d.target.task
    metric = metric_for(d.quality.metric, task)
    values = []
    t0 = time.perf_counter()
    for fold in folds:
        spec = dict(fold.spec)
        if task == "binary":
            needs_cut = metric.name in _THRESHOLD_METRICS and d.model.threshold is None
            spec["threshold"] = d.model.threshold or (
                f1_threshold(d, spec, fold.x_train, fold.y_train, fold.categorical, params)
                if needs_cut
                else 0.5
            )
        model = fit_matrix(d, spec, fold.x_train, fold.y_train, fold.categorical, params)
        scores = portable.model_scores(spec, model, fold.x_valid)
        scores, classes = aligned_classes(task, fold.y_valid, scores, len(d.target.classes) or 2)
        values.append(
            one(
                task,
                metric.name,
                fold.y_valid,
                scores,
                classes=classes,
                threshold=float(spec.get("threshold", 0.5)),
            )
        )
    seconds = time.perf_counter() - t0
    finite = [v for v in values if not math.isnan(v)]
    return (float(np.mean(finite)) if finite else math.nan), seconds
