"""What a classifier's holdout looks like, for the MLflow run: pictures and per-class numbers.

An average hides where a classifier fails. For every classifier the run gets the confusion
matrix (counts, classes in the target's order) and each class's precision, recall and F1; a
binary one also gets its ROC and precision-recall curves with the decision threshold marked.
Drawn with scikit-learn's displays on a matplotlib figure of its own (no pyplot state left in
a long-running process).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlpipeline.featuresets import portable

__all__ = ["classification_report"]


def classification_report(
    spec: dict[str, Any], y_codes: npt.NDArray[np.float64], scores: npt.NDArray[np.float64], folder: Path
) -> tuple[list[Path], dict[str, float]]:
    """Write the pictures into ``folder``; return their paths and the per-class metrics
    (``class.<name>.precision`` …, keyed by the class as the target writes it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import (
        ConfusionMatrixDisplay,
        PrecisionRecallDisplay,
        RocCurveDisplay,
        precision_recall_fscore_support,
    )

    folder.mkdir(parents=True, exist_ok=True)
    classes = [str(c) for c in spec["classes"]]
    truth = np.asarray(y_codes, dtype=np.float64).astype(np.int64)
    predicted = portable.predicted_codes(spec, scores)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    metrics: dict[str, float] = {}
    for i, name in enumerate(classes):
        metrics[f"class.{name}.precision"] = float(precision[i])
        metrics[f"class.{name}.recall"] = float(recall[i])
        metrics[f"class.{name}.f1"] = float(f1[i])
        metrics[f"class.{name}.support"] = float(support[i])

    paths = []
    fig = Figure(figsize=(5.5, 4.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ConfusionMatrixDisplay.from_predictions(
        truth, predicted, labels=labels, display_labels=classes, ax=ax, colorbar=False
    )
    ax.set_title("holdout: true class (rows) against predicted (columns)", fontsize=9)
    paths.append(folder / "confusion_matrix.png")
    fig.savefig(paths[-1])

    if portable.task_of(spec) == "binary" and len(np.unique(truth)) == 2:
        positive = int(spec["positive"])
        is_positive = (truth == positive).astype(np.int64)
        fig = Figure(figsize=(10, 4.5), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        roc_ax, pr_ax = fig.subplots(1, 2)
        RocCurveDisplay.from_predictions(
            is_positive, scores, ax=roc_ax, name=f"positive: {classes[positive]}"
        )
        PrecisionRecallDisplay.from_predictions(
            is_positive, scores, ax=pr_ax, name=f"positive: {classes[positive]}"
        )
        cut = float(spec.get("threshold", 0.5))
        hit = scores >= cut
        tp = float((hit & (is_positive == 1)).sum())
        recall_at = tp / max(float(is_positive.sum()), 1.0)
        precision_at = tp / max(float(hit.sum()), 1.0)
        fpr_at = float((hit & (is_positive == 0)).sum()) / max(float((is_positive == 0).sum()), 1.0)
        roc_ax.plot([fpr_at], [recall_at], "o", color="#d62728", label=f"threshold {cut:.3f}")
        pr_ax.plot([recall_at], [precision_at], "o", color="#d62728", label=f"threshold {cut:.3f}")
        roc_ax.legend(loc="lower right", fontsize=8)
        pr_ax.legend(loc="lower left", fontsize=8)
        # The displays name the encoded label (1); the reader wants the class itself.
        roc_ax.set_xlabel(f"false positive rate (positive class: {classes[positive]})")
        roc_ax.set_ylabel(f"true positive rate (positive class: {classes[positive]})")
        pr_ax.set_xlabel(f"recall (positive class: {classes[positive]})")
        pr_ax.set_ylabel(f"precision (positive class: {classes[positive]})")
        paths.append(folder / "roc_pr_curves.png")
        fig.savefig(paths[-1])
    return paths, metrics
