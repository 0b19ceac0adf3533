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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_METRIC",
    "METRICS",
    "MetricSpec",
    "Task",
    "class_recalls",
    "compute",
    "gain",
    "labelled_metrics",
    "metric_for",
    "metric_problem",
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
