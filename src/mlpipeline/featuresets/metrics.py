"""What "good" means: the metrics a feature set may choose, by task, with their direction.

A feature set's ``[quality] metric`` names the one number the gate (``floor``,
``min_improvement``), the performance trigger (``threshold``), the monitoring series and the
timeline speak of. Every metric of the task is still computed and logged; the chosen one
decides. Losses (``rmse``, ``mae``, ``log_loss``, ``brier``) are better when lower, and every
comparison goes through :func:`gain`, so a rule written once ("beat the champion by
``min_improvement``", "retrain when worse than ``threshold``") reads right for both
directions.

Scores passed in are what a model outputs: the prediction for regression, the probability
of the positive class for a binary target, one probability per class (rows x classes) for a
multiclass one. ``y`` holds the class positions (0 .. k-1) of a categorical target, or the
numbers of a numeric one. Label metrics (``f1``, ``precision``, ``recall``, ``accuracy``,
``balanced_accuracy``) cut a binary score at ``threshold``; a multiclass row takes its most
probable class. Classification metrics are scikit-learn's; R², RMSE and MAE are three numpy
reductions (they run on every check and must stay cheap). A metric that is undefined on the
rows at hand (R² or ROC AUC when only one value or class is present) is NaN: no verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_METRIC",
    "LEVEL",
    "METRICS",
    "RESAMPLES",
    "MetricSpec",
    "Task",
    "aligned_classes",
    "bootstrap_interval",
    "class_recalls",
    "compute",
    "gain",
    "labelled_metrics",
    "metric_for",
    "metric_problem",
    "one",
    "optimistic",
    "paired_difference_interval",
    "worse_than",
]

Task = Literal["regression", "binary", "multiclass"]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MetricSpec:
    """One metric: the tasks it fits, whether higher is better, and how it is shown."""

    name: str
    tasks: frozenset[str]
    higher_is_better: bool
    label: str


def _spec(name: str, tasks: str, higher: bool, label: str) -> MetricSpec:
    return MetricSpec(name, frozenset(tasks.split()), higher, label)


#: Every metric by name, in the order they are logged.
METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        _spec("r2", "regression", True, "R²"),
        _spec("rmse", "regression", False, "RMSE"),
        _spec("mae", "regression", False, "MAE"),
        _spec("roc_auc", "binary", True, "ROC AUC"),
        _spec("pr_auc", "binary", True, "PR AUC"),
        _spec("f1", "binary", True, "F1"),
        _spec("precision", "binary", True, "precision"),
        _spec("recall", "binary", True, "recall"),
        _spec("f1_macro", "multiclass", True, "F1 (macro)"),
        _spec("f1_weighted", "multiclass", True, "F1 (weighted)"),
        _spec("accuracy", "binary multiclass", True, "accuracy"),
        _spec("balanced_accuracy", "binary multiclass", True, "balanced accuracy"),
        _spec("log_loss", "binary multiclass", False, "log loss"),
        _spec("brier", "binary", False, "Brier score"),
    )
}

#: The metric a task is judged on when the definition does not choose one.
DEFAULT_METRIC: dict[str, str] = {"regression": "r2", "binary": "roc_auc", "multiclass": "f1_macro"}


def metric_for(chosen: str | None, task: str) -> MetricSpec:
    """The metric in force: the chosen one, or the task's default."""
    return METRICS[chosen or DEFAULT_METRIC[task]]


def metric_problem(chosen: str | None, task: str) -> str | None:
    """Why ``chosen`` cannot judge a ``task`` model, or ``None`` when it can."""
    if chosen is None:
        return None
    fitting = [m.name for m in METRICS.values() if task in m.tasks]
    spec = METRICS.get(chosen)
    if spec is None:
        return f"unknown metric '{chosen}'; for a {task} target use one of {', '.join(fitting)}"
    if task not in spec.tasks:
        return f"'{chosen}' does not judge a {task} target; use one of {', '.join(fitting)}"
    return None


def gain(metric: MetricSpec, new: float, old: float) -> float:
    """How much better ``new`` is than ``old`` (positive: better), whatever the direction."""
    return new - old if metric.higher_is_better else old - new


def worse_than(metric: MetricSpec, value: float, threshold: float) -> bool:
    """True when ``value`` is strictly worse than ``threshold`` (NaN is never worse: no verdict)."""
    if math.isnan(value):
        return False
    return value < threshold if metric.higher_is_better else value > threshold


def compute(task: str, y: Any, scores: Any, *, classes: int = 2, threshold: float = 0.5) -> dict[str, float]:
    """Every metric of ``task`` on these rows (see the module docstring for the inputs)."""
    y_arr = np.asarray(y, dtype=np.float64)
    if task == "regression":
        return _regression(y_arr, np.asarray(scores, dtype=np.float64))
    from sklearn import metrics as skm

    labels = list(range(classes))
    truth = y_arr.astype(np.int64)
    if task == "binary":
        p = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
        predicted = (p >= threshold).astype(np.int64)
        both = len(np.unique(truth)) == 2
        return {
            "roc_auc": float(skm.roc_auc_score(truth, p)) if both else math.nan,
            "pr_auc": float(skm.average_precision_score(truth, p)) if both else math.nan,
            "f1": float(skm.f1_score(truth, predicted, zero_division=0)),
            "precision": float(skm.precision_score(truth, predicted, zero_division=0)),
            "recall": float(skm.recall_score(truth, predicted, zero_division=0)),
            "accuracy": float(skm.accuracy_score(truth, predicted)),
            "balanced_accuracy": _balanced(truth, predicted, [0, 1]),
            "log_loss": float(skm.log_loss(truth, np.column_stack([1 - p, p]), labels=[0, 1])),
            "brier": float(skm.brier_score_loss(truth, p)),
        }
    proba = np.asarray(scores, dtype=np.float64)
    predicted = proba.argmax(axis=1)
    return {
        "f1_macro": float(skm.f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
        "f1_weighted": float(
            skm.f1_score(truth, predicted, labels=labels, average="weighted", zero_division=0)
        ),
        "accuracy": float(skm.accuracy_score(truth, predicted)),
        "balanced_accuracy": _balanced(truth, predicted, labels),
        "log_loss": float(skm.log_loss(truth, proba, labels=labels)),
    }


def aligned_classes(task: str, y: Any, scores: Any, classes: int) -> tuple[Any, int]:
    """A multiclass model's probabilities padded with zeros for classes the target gained after
    it was trained (values are only ever added at the end), and the class count to judge with."""
    if task != "multiclass":
        return scores, classes
    proba = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(y, dtype=np.float64)
    k = max(classes, proba.shape[1], int(np.nanmax(truth)) + 1 if truth.size else 0)
    if proba.shape[1] < k:
        proba = np.hstack([proba, np.zeros((len(proba), k - proba.shape[1]))])
    return proba, k


def class_recalls(task: str, y: Any, scores: Any, *, classes: int, threshold: float = 0.5) -> list[float]:
    """Recall of every class (NaN for a class absent from ``y``), for ``min_class_recall``."""
    truth = np.asarray(y, dtype=np.float64).astype(np.int64)
    predicted = _predicted(task, scores, threshold)
    out = []
    for c in range(classes):
        mask = truth == c
        out.append(float((predicted[mask] == c).mean()) if mask.any() else math.nan)
    return out


def labelled_metrics(values: Mapping[str, float], chosen: MetricSpec) -> str:
    """``ROC AUC 0.8123`` for messages."""
    return f"{chosen.label} {values[chosen.name]:.4f}"


def _predicted(task: str, scores: Any, threshold: float) -> npt.NDArray[np.int64]:
    s = np.asarray(scores, dtype=np.float64)
    chosen = (s >= threshold) if task == "binary" else s.argmax(axis=1)
    return np.asarray(chosen, dtype=np.int64)


def _balanced(truth: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], labels: list[int]) -> float:
    """Mean recall over the classes present in ``truth`` (scikit-learn's definition, no warning)."""
    recalls = [float((predicted[truth == c] == c).mean()) for c in labels if (truth == c).any()]
    return float(np.mean(recalls)) if recalls else math.nan


def _regression(y: FloatArray, pred: FloatArray) -> dict[str, float]:
    if y.shape != pred.shape or y.size == 0:
        raise ValueError("y and the predictions must be non-empty and of equal length")
    err = y - pred
    sse = float(np.dot(err, err))
    centred = y - y.mean()
    sst = float(np.dot(centred, centred))
    return {
        "r2": 1.0 - sse / sst if sst > 0 else math.nan,
        "rmse": float(np.sqrt(sse / y.size)),
        "mae": float(np.mean(np.abs(err))),
    }


# -- uncertainty ---------------------------------------------------------------------------------

#: Resamples and coverage of every bootstrap interval (seeded: the same rows give the same interval).
RESAMPLES = 200
LEVEL = 0.95


def one(task: str, name: str, y: Any, scores: Any, *, classes: int = 2, threshold: float = 0.5) -> float:
    """One metric on these rows (what :func:`compute` gives under ``name``, computed alone:
    a bootstrap asks for it hundreds of times)."""
    if task == "regression":
        return _regression(np.asarray(y, dtype=np.float64), np.asarray(scores, dtype=np.float64))[name]
    if task == "binary" and name in _BINARY_ALONE:
        truth = np.asarray(y, dtype=np.float64).astype(np.int64)
        p = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
        return _BINARY_ALONE[name](truth, p, (p >= threshold).astype(np.int64))
    return compute(task, y, scores, classes=classes, threshold=threshold)[name]


def _ranked(name: str) -> Callable[[Any, Any, Any], float]:
    def score(truth: Any, p: Any, _: Any) -> float:
        if len(np.unique(truth)) < 2:
            return math.nan
        from sklearn import metrics as skm

        fn = skm.roc_auc_score if name == "roc_auc" else skm.average_precision_score
        return float(fn(truth, p))

    return score


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _log_loss(truth: Any, p: Any, _: Any) -> float:
    from sklearn import metrics as skm

    return float(skm.log_loss(truth, np.column_stack([1 - p, p]), labels=[0, 1]))


def _tp(truth: Any, predicted: Any) -> float:
    return float(np.sum((predicted == 1) & (truth == 1)))


#: Binary metrics computed alone, from (truth, positive score, predicted label).
_BINARY_ALONE: dict[str, Callable[[Any, Any, Any], float]] = {
    "roc_auc": _ranked("roc_auc"),
    "pr_auc": _ranked("pr_auc"),
    "log_loss": _log_loss,
    "brier": lambda t, p, _: float(np.mean((p - t) ** 2)),
    "accuracy": lambda t, _, c: float(np.mean(c == t)),
    "precision": lambda t, _, c: _ratio(_tp(t, c), float(c.sum())),
    "recall": lambda t, _, c: _ratio(_tp(t, c), float(t.sum())),
    "f1": lambda t, _, c: _ratio(2 * _tp(t, c), float(c.sum() + t.sum())),
}


def bootstrap_interval(
    task: str,
    name: str,
    y: Any,
    scores: Any,
    *,
    classes: int = 2,
    threshold: float = 0.5,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of metric ``name`` on these rows (``level`` coverage).

    Rows are drawn with replacement ``resamples`` times with a seeded generator, so a check
    and its replay agree. ``None`` when fewer than two rows, or when the metric is undefined on
    most resamples (a single class).
    """
    y_arr = np.asarray(y, dtype=np.float64)
    s_arr = np.asarray(scores, dtype=np.float64)
    if task == "regression":  # every resample at once, in blocks: a few numpy passes
        return _interval_of_draws(_regression_draws(name, y_arr, s_arr, resamples, seed), resamples, level)
    return _interval(
        len(y_arr),
        lambda idx: one(task, name, y_arr[idx], s_arr[idx], classes=classes, threshold=threshold),
        resamples,
        level,
        seed,
    )


def _regression_draws(
    name: str, y: FloatArray, pred: FloatArray, resamples: int, seed: int, cells: int = 2_000_000
) -> FloatArray:
    """R², RMSE or MAE on ``resamples`` seeded bootstrap draws, computed a block of draws at a
    time (at most ``cells`` drawn values in memory)."""
    n = len(y)
    if n < 2:
        return np.empty(0, dtype=np.float64)
    rng = np.random.default_rng(seed)
    out = []
    step = max(1, cells // n)
    for start in range(0, resamples, step):
        idx = rng.integers(0, n, size=(min(step, resamples - start), n))
        yb = y[idx]
        err = yb - pred[idx]
        if name == "mae":
            out.append(np.abs(err).mean(axis=1))
            continue
        sse = np.einsum("ij,ij->i", err, err)
        if name == "rmse":
            out.append(np.sqrt(sse / n))
            continue
        centred = yb - yb.mean(axis=1, keepdims=True)
        sst = np.einsum("ij,ij->i", centred, centred)
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(np.where(sst > 0, 1.0 - sse / sst, np.nan))
    return np.concatenate(out)


def paired_difference_interval(
    task: str,
    name: str,
    y: Any,
    new_scores: Any,
    old_scores: Any,
    *,
    classes: int = 2,
    new_threshold: float = 0.5,
    old_threshold: float = 0.5,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Interval of the gain of the new scores over the old on the same rows (positive: better),
    each resample scoring both models on the same drawn rows."""
    spec = METRICS[name]
    y_arr = np.asarray(y, dtype=np.float64)
    new, old = np.asarray(new_scores, dtype=np.float64), np.asarray(old_scores, dtype=np.float64)
    if task == "regression":  # the same seed draws the same rows for both: paired, vectorised
        a = _regression_draws(name, y_arr, new, resamples, seed)
        b = _regression_draws(name, y_arr, old, resamples, seed)
        return _interval_of_draws(a - b if spec.higher_is_better else b - a, resamples, level)

    def paired(idx: npt.NDArray[np.int64]) -> float:
        a = one(task, name, y_arr[idx], new[idx], classes=classes, threshold=new_threshold)
        b = one(task, name, y_arr[idx], old[idx], classes=classes, threshold=old_threshold)
        return gain(spec, a, b)

    return _interval(len(y_arr), paired, resamples, level, seed)


def _interval(
    n: int,
    statistic: Callable[[npt.NDArray[np.int64]], float],
    resamples: int,
    level: float,
    seed: int,
) -> tuple[float, float] | None:
    """Percentile interval of ``statistic`` over ``resamples`` seeded draws of ``n`` row indices;
    ``None`` for fewer than two rows or when most draws leave the statistic undefined."""
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    draws = np.asarray([statistic(rng.integers(0, n, size=n)) for _ in range(resamples)], dtype=np.float64)
    return _interval_of_draws(draws, resamples, level)


def _interval_of_draws(draws: FloatArray, resamples: int, level: float) -> tuple[float, float] | None:
    """The percentile interval of the finite draws; ``None`` when most are undefined."""
    draws = draws[np.isfinite(draws)]
    if draws.size < max(resamples // 2, 1):
        return None
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return float(lo), float(hi)


def optimistic(metric: MetricSpec, value: float, interval: tuple[float, float] | None) -> float:
    """The interval's most favourable end for the model (the upper bound of a score, the lower
    bound of a loss), or the point when there is no interval: a trigger that fires on it fires
    only when even the best plausible value is worse than the threshold."""
    if interval is None:
        return value
    return interval[1] if metric.higher_is_better else interval[0]
