"""The training pipeline's pure steps: validate → split → fit → evaluate.

Each step takes and returns plain values (DataFrames, numpy arrays, dataclasses) and
does no I/O, so each is tested on small frames; :mod:`mlpipeline.training.pipeline` strings them
together with the feature store and MLflow at the edges.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlpipeline.errors import ConfigError, DataValidationError, Problem
from mlpipeline.featuresets import portable
from mlpipeline.featuresets.definition import Definition
from mlpipeline.featuresets.envelope import observed_ranges
from mlpipeline.featuresets.features import category_vocabulary, feature_spec
from mlpipeline.featuresets.metrics import (
    METRICS,
    MetricSpec,
    aligned_classes,
    bootstrap_interval,
    compute,
    metric_for,
)
from mlpipeline.featuresets.portable import build_matrix

__all__ = [
    "DataReport",
    "FittedModel",
    "Metrics",
    "Split",
    "evaluate",
    "f1_threshold",
    "fit",
    "fit_matrix",
    "metric_interval",
    "split_holdout",
    "training_data_hash",
    "training_matrix",
    "validate_training_data",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DataReport:
    """What the data check found: counts per rule, and whether training may go on."""

    rows: int
    labelled_rows: int
    checks: dict[str, str]
    problems: tuple[Problem, ...] = ()

    @property
    def usable(self) -> bool:
        return not self.problems


def validate_training_data(d: Definition, frame: pd.DataFrame) -> DataReport:
    """Check schema, types, nulls, ranges and the minimum row count of a training extract.

    The rows were validated at ingest, but definitions change and tables can be written by
    other tools (IRIS SQL): training re-checks the rules it relies on.
    """
    problems: list[Problem] = []
    checks: dict[str, str] = {}
    missing = [c for c in (*d.features, d.target.column) if c not in frame.columns]
    if missing:
        problems.append(Problem(", ".join(missing), "schema", "columns missing from the extract"))
        return DataReport(len(frame), 0, {"schema": "failed"}, tuple(problems))
    checks["schema"] = "ok"
    target = pd.to_numeric(frame[d.target.column], errors="coerce")
    labelled = int(target.notna().sum())
    for name, spec in d.features.items():
        col = frame[name]
        if spec.numeric:
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad_type = np.isnan(values) & col.notna().to_numpy()
            if bad_type.any():
                problems.append(_problem(name, "type", "non-numeric values", bad_type))
            if spec.min is not None and (values < spec.min).any():
                problems.append(_problem(name, "range", f"below {spec.min:g}", values < spec.min))
            if spec.max is not None and (values > spec.max).any():
                problems.append(_problem(name, "range", f"above {spec.max:g}", values > spec.max))
            if np.isinf(values).any():
                problems.append(_problem(name, "finite", "infinite values", np.isinf(values)))
        if spec.missing == "error" and col.isna().any():
            problems.append(_problem(name, "not null", "missing values", col.isna().to_numpy()))
    checks["types_ranges_nulls"] = "failed" if problems else "ok"
    if labelled < d.model.min_training_rows:
        problems.append(
            Problem(
                d.target.column,
                "minimum rows",
                f"{labelled} labelled rows, the definition needs at least {d.model.min_training_rows}; "
                "ingest more labelled data or lower model.min_training_rows",
            )
        )
        checks["min_rows"] = "failed"
    else:
        checks["min_rows"] = "ok"
    return DataReport(len(frame), labelled, checks, tuple(problems))


def _problem(column: str, rule: str, detail: str, mask: np.ndarray) -> Problem:
    idx = np.flatnonzero(mask)
    return Problem(column, rule, f"{idx.size} row(s): {detail}", [int(i) + 1 for i in idx[:5]], int(idx.size))


def require_usable(report: DataReport, source: str = "training data") -> None:
    """Hard stop: raise with the report's problems when the data cannot be trained on."""
    if not report.usable:
        raise DataValidationError(report.problems, source=source)


@dataclass(frozen=True)
class Split:
    """Training and holdout rows, and how they were chosen (for lineage)."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    method: str
    window: dict[str, str] = field(default_factory=dict)


def split_holdout(d: Definition, frame: pd.DataFrame, *, new_after_batch: int | None = None) -> Split:
    """Time-aware split: the most recent labelled rows are the holdout.

    With no event-time column, a random split seeded by the definition's seed, stratified by
    class for a classifier. ``new_after_batch`` (the newest batch the champion's training could
    see) draws the holdout from rows labelled later when there are enough of them (up to half,
    so the challenger learns from new rows too): the gate then compares both models on rows
    neither trained on, instead of flattering the champion with its own training rows.
    """
    labelled = frame[frame[d.target.column].notna()]
    n = len(labelled)
    n_hold = max(d.model.holdout.min_rows, round(n * d.model.holdout.fraction))
    if n_hold >= n:
        raise DataValidationError(
            [
                Problem(
                    d.target.column,
                    "holdout",
                    f"{n} labelled rows leave nothing to train on after a holdout of {n_hold}; "
                    "ingest more data or lower model.holdout.min_rows",
                )
            ],
            source="training data",
        )
    if d.event_time:
        ordered = labelled.sort_values([d.event_time, *d.key_columns], kind="stable")
        ts = ordered[d.event_time]
        cut = _time_cut(ts.to_numpy(), n - n_hold, d.model.holdout.min_rows)
        train, holdout = ordered.iloc[:cut], ordered.iloc[cut:]
        window = {
            "train_from": str(ts.iloc[0]),
            "train_to": str(ts.iloc[cut - 1]),
            "holdout_from": str(ts.iloc[cut]),
            "holdout_to": str(ts.iloc[-1]),
        }
        return Split(train.reset_index(drop=True), holdout.reset_index(drop=True), "time", window)
    rng = np.random.default_rng(d.model.seed)
    if d.model.group is not None:
        return _grouped_split(d, labelled, n_hold, rng)
    pool = np.ones(n, dtype=bool)
    method = "random"
    if new_after_batch is not None and "_labelled_batch" in labelled.columns:
        fresh = labelled["_labelled_batch"].to_numpy(dtype=np.float64) > new_after_batch
        if int(fresh.sum()) // 2 >= d.model.holdout.min_rows:
            pool, n_hold, method = fresh, min(n_hold, int(fresh.sum()) // 2), "new rows"
    if d.target.task != "regression":
        # Stratified: each class keeps its share in the holdout, so a rare class is judged too.
        codes = labelled[d.target.column].to_numpy(dtype=np.float64)
        picked: list[int] = []
        for cls in np.unique(codes[pool]):
            members = np.flatnonzero(pool & (codes == cls))
            picked += rng.permutation(members)[: round(len(members) * n_hold / int(pool.sum()))].tolist()
        method = f"stratified, {method}"
    else:
        picked = rng.permutation(np.flatnonzero(pool))[:n_hold].tolist()
    hold = np.zeros(n, dtype=bool)
    hold[picked] = True
    hold_idx, train_idx = np.flatnonzero(hold), np.flatnonzero(~hold)
    return Split(
        labelled.iloc[train_idx].reset_index(drop=True),
        labelled.iloc[hold_idx].reset_index(drop=True),
        method,
        {"seed": str(d.model.seed)},
    )


def _time_cut(times: Any, cut: int, min_rows: int) -> int:
    """The first holdout row, moved to the nearest change of event time: rows of one moment (a
    day, a panel's year) are never on both sides. The holdout grows to take the whole moment,
    or shrinks to leave it out when that is nearer and keeps ``min_rows``; the cut stays when
    every row before it shares the moment."""
    n = len(times)
    start = int(np.searchsorted(times, times[cut], side="left"))  # the moment's first row
    end = int(np.searchsorted(times, times[cut], side="right"))  # the next moment's first row
    options = [c for c in (start, end) if 0 < c < n and (c <= cut or n - c >= min_rows)]
    return min(options, key=lambda c: abs(c - cut)) if options else cut


def _grouped_split(d: Definition, labelled: pd.DataFrame, n_hold: int, rng: np.random.Generator) -> Split:
    """Whole groups (``model.group``) in the holdout, drawn at random until it has ``n_hold`` rows."""
    group = d.model.group
    assert group is not None
    values = labelled[group].astype(str).to_numpy()
    uniques, counts = np.unique(values, return_counts=True)
    order = rng.permutation(len(uniques))
    taken = np.cumsum(counts[order])
    chosen = uniques[order[: int(np.searchsorted(taken, n_hold)) + 1]]
    hold = np.isin(values, chosen)
    if hold.all() or not hold.any():
        raise DataValidationError(
            [
                Problem(
                    group,
                    "holdout",
                    f"{len(uniques)} distinct '{group}' values cannot be split into training and holdout "
                    "groups; ingest rows of more groups, or lower model.holdout.min_rows",
                )
            ],
            source="training data",
        )
    return Split(
        labelled[~hold].reset_index(drop=True),
        labelled[hold].reset_index(drop=True),
        f"grouped by {group}, random",
        {"seed": str(d.model.seed), "holdout_groups": str(len(chosen))},
    )


def columns_of(frame: pd.DataFrame, names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Raw feature columns as numpy arrays (categoricals as object arrays with None, timestamps
    as datetime64)."""
    out: dict[str, Any] = {}
    for name in names:
        col = frame[name]
        if pd.api.types.is_datetime64_any_dtype(col):
            out[name] = col.to_numpy(dtype="datetime64[us]")
        elif pd.api.types.is_numeric_dtype(col):
            out[name] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            out[name] = col.astype(object).where(col.notna(), None).to_numpy()
    return out


@dataclass
class FittedModel:
    """A trained model with what serving needs: its feature spec and a predict function."""

    estimator_name: str
    spec: dict[str, Any]
    model: Any
    categorical: list[str]

    @property
    def is_lightgbm(self) -> bool:
        return self.estimator_name == "lightgbm"

    def matrix(self, frame: pd.DataFrame) -> FloatArray:
        names = portable.input_names(self.spec)
        return build_matrix(self.spec, columns_of(frame, names))

    @property
    def task(self) -> str:
        return portable.task_of(self.spec)

    def predict_matrix(self, x: FloatArray) -> FloatArray:
        """Scores: predictions, a binary model's positive probability, or class probabilities."""
        return portable.model_scores(self.spec, self.model, x)

    def predict(self, frame: pd.DataFrame) -> FloatArray:
        return self.predict_matrix(self.matrix(frame))


def _sklearn_estimator(name: str, params: Mapping[str, Any], seed: int, task: str = "regression") -> Any:
    module_name, _, cls_name = name.rpartition(".")
    if not module_name.startswith("sklearn."):
        raise ConfigError(
            f"model.estimator '{name}' is not allowed; use 'lightgbm' or a scikit-learn regressor such as "
            "'sklearn.ensemble.HistGradientBoostingRegressor'"
        )
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"model.estimator '{name}' does not exist in scikit-learn; check the spelling"
        ) from exc
    from sklearn.base import BaseEstimator

    if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):
        raise ConfigError(f"model.estimator '{name}' is not a scikit-learn estimator class")
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise ConfigError(f"model.params do not fit {name}: {exc}") from exc
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=seed)
    from sklearn.base import is_classifier, is_regressor

    if task == "regression" and not is_regressor(estimator):
        kind = "a classifier" if is_classifier(estimator) else "not a regressor"
        raise ConfigError(
            f"model.estimator '{name}' is {kind}, and the target is a number: use a regressor such as "
            "'sklearn.ensemble.HistGradientBoostingRegressor', or declare the target categorical"
        )
    if task != "regression" and not (is_classifier(estimator) and hasattr(estimator, "predict_proba")):
        kind = "a regressor" if is_regressor(estimator) else "not a classifier with predict_proba"
        raise ConfigError(
            f"model.estimator '{name}' is {kind}, and the target is {task}: use a classifier such as "
            "'sklearn.ensemble.HistGradientBoostingClassifier'"
        )
    return estimator


def fit(d: Definition, train: pd.DataFrame, params: Mapping[str, Any] | None = None) -> FittedModel:
    """Train the definition's estimator on the training rows.

    LightGBM gets the categorical features declared as such and handles missing values
    natively; a scikit-learn estimator gets the same float matrix (use one that accepts
    NaN, e.g. HistGradientBoostingRegressor, or declare constant fills). A categorical
    target trains a classifier: LightGBM's binary or multiclass objective (or a scikit-learn
    classifier), optionally with balanced class weights; a binary model's decision threshold
    is the definition's, or the one that maximises F1 on a validation part of the training
    rows (the model is then refitted on all of them). ``params`` (default: the definition's)
    are the estimator's hyperparameters, e.g. a tuning study's best.
    """
    params = d.model.params if params is None else params
    spec, x, y, categorical = training_matrix(d, train)
    if d.target.task == "binary":
        spec["threshold"] = d.model.threshold or f1_threshold(d, spec, x, y, categorical, params)
    model = fit_matrix(d, spec, x, y, categorical, params)
    return FittedModel(d.model.estimator, spec, model, categorical)


def training_matrix(
    d: Definition, train: pd.DataFrame
) -> tuple[dict[str, Any], FloatArray, FloatArray, list[str]]:
    """What every fit on these rows shares: the feature spec (vocabularies, training ranges,
    and for a classifier its classes), the float matrix, the labels a model learns and the
    categorical features. Built once per fold by tuning, so a trial only fits."""
    task = d.target.task
    observed = {
        n: train[n].dropna().unique().tolist() for n, f in d.features.items() if f.type == "categorical"
    }
    # The envelope covers the features watched for drift: one declared drift = false (a weekday
    # in daily batches) moves out of its training range by design.
    watched = [n for n, f in d.features.items() if f.drift]
    seen: dict[str, list[float] | None] = {n: None for n in watched if d.features[n].type == "categorical"}
    seen.update(
        observed_ranges(
            {
                n: train[n].to_numpy(dtype=np.float64, na_value=np.nan)
                for n in watched
                if d.features[n].type != "categorical"
            }
        )
    )
    spec = feature_spec(d, category_vocabulary(d, observed), seen)
    categorical = [n for n, f in d.features.items() if f.type == "categorical"]
    names = portable.input_names(spec)
    x = build_matrix(spec, columns_of(train, names))
    y = train[d.target.column].to_numpy(dtype=np.float64)
    if task != "regression":
        spec.update(task=task, classes=list(d.target.values or ()), positive=d.target.positive_index)
        y = _class_labels(d, y)
    return spec, x, y, categorical


def _class_labels(d: Definition, codes: FloatArray) -> FloatArray:
    """What a classifier learns: the positive indicator (binary) or the class position, refusing
    training rows that hold a single class (nothing to tell apart)."""
    present = np.unique(codes[~np.isnan(codes)])
    if present.size < 2:
        only = d.target.classes[int(present[0])] if present.size else "none"
        raise DataValidationError(
            [
                Problem(
                    d.target.column,
                    "classes",
                    f"every training row has the same class ({only!r}); a classifier needs at least two "
                    "classes among the labelled rows: ingest rows of the other class(es)",
                )
            ],
            source="training data",
        )
    if d.target.task == "binary":
        return np.asarray(codes == d.target.positive_index, dtype=np.float64)
    return codes


def fit_matrix(
    d: Definition,
    spec: Mapping[str, Any],
    x: FloatArray,
    y: FloatArray,
    categorical: list[str],
    params: Mapping[str, Any] | None = None,
) -> Any:
    """The definition's estimator fitted on a prepared matrix (see :func:`training_matrix`)
    with ``params`` (default: the definition's)."""
    params = d.model.params if params is None else params
    task = d.target.task
    weights = None
    if d.model.class_weight == "balanced":
        from sklearn.utils.class_weight import compute_sample_weight

        weights = compute_sample_weight("balanced", y)
    name = d.model.estimator
    if name == "lightgbm":
        import lightgbm as lgb

        objective = {"regression": "regression", "binary": "binary", "multiclass": "multiclass"}[task]
        options: dict[str, Any] = {
            "objective": objective,
            "verbosity": -1,
            "seed": d.model.seed,
            "deterministic": True,
            "num_threads": 2,
        }
        if task == "multiclass":
            options["num_class"] = len(d.target.classes)
        options.update(params)
        rounds = int(options.pop("n_estimators", options.pop("num_boost_round", 100)))
        dataset = lgb.Dataset(
            x,
            label=y,
            weight=weights,
            feature_name=list(spec["order"]),
            categorical_feature=categorical,
            free_raw_data=True,
        )
        return lgb.train(options, dataset, num_boost_round=rounds)
    estimator = _sklearn_estimator(name, params, d.model.seed, task)
    if weights is None:
        estimator.fit(x, y)
    else:
        estimator.fit(x, y, sample_weight=weights)
    return estimator


def f1_threshold(
    d: Definition,
    spec: Mapping[str, Any],
    x: FloatArray,
    y: FloatArray,
    categorical: list[str],
    params: Mapping[str, Any] | None = None,
) -> float:
    """The score from which a row is positive that maximises F1 on a stratified validation part
    (a fifth) of the training rows, scored by a model fitted on the rest; 0.5 when too few."""
    rng = np.random.default_rng(d.model.seed + 1)
    val = np.zeros(len(y), dtype=bool)
    for cls in (0.0, 1.0):
        idx = np.flatnonzero(y == cls)
        val[rng.permutation(idx)[: max(1, len(idx) // 5)]] = True
    if val.sum() < 20 or len(np.unique(y[~val])) < 2 or len(np.unique(y[val])) < 2:
        return 0.5
    model = fit_matrix(d, spec, x[~val], y[~val], categorical, params)
    scores = portable.model_scores(spec, model, x[val])
    truth = y[val]
    candidates = np.unique(np.quantile(scores, np.linspace(0.02, 0.98, 49)))
    best, best_f1 = 0.5, -1.0
    positives = truth.sum()
    for t in candidates:
        hit = scores >= t
        tp = float((hit & (truth == 1)).sum())
        f1 = 2 * tp / (hit.sum() + positives) if hit.sum() + positives else 0.0
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return best


@dataclass(frozen=True)
class Metrics:
    """Every metric of the task on some rows, the one in force (``metric``) and the sample size."""

    values: Mapping[str, float]
    n: int
    metric: str = "r2"

    @property
    def value(self) -> float:
        """The metric in force: what the gate, the trigger and the timeline speak of."""
        return float(self.values.get(self.metric, math.nan))

    @property
    def spec(self) -> MetricSpec:
        return METRICS[self.metric]

    @property
    def r2(self) -> float:
        return float(self.values.get("r2", math.nan))

    @property
    def rmse(self) -> float:
        return float(self.values.get("rmse", math.nan))

    @property
    def mae(self) -> float:
        return float(self.values.get("mae", math.nan))

    def describe(self) -> str:
        """``ROC AUC 0.8123`` (the metric in force)."""
        return f"{self.spec.label} {self.value:.4f}"

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {**{f"{prefix}{k}": v for k, v in self.values.items()}, f"{prefix}n": self.n}


def evaluate(
    y_true: FloatArray,
    scores: FloatArray,
    *,
    spec: Mapping[str, Any] | None = None,
    metric: str | None = None,
) -> Metrics:
    """Every metric of the model's task (from its ``spec``; none: regression) on these rows.

    ``y_true`` holds numbers, or class positions for a classifier; ``scores`` what
    :func:`mlpipeline.featuresets.portable.model_scores` returns. R² (and ROC AUC) are NaN
    when the truth is constant.
    """
    spec = spec or {}
    task = portable.task_of(spec)
    y = np.asarray(y_true, dtype=np.float64)
    if y.size == 0 or len(scores) != y.size:
        raise ValueError("y_true and the scores must be non-empty and of equal length")
    if task == "binary":
        y = (y == int(spec["positive"])).astype(np.float64)
    scores, classes = aligned_classes(task, y, scores, len(spec.get("classes") or ()) or 2)
    values = compute(task, y, scores, classes=classes, threshold=float(spec.get("threshold", 0.5)))
    return Metrics(values, int(y.size), metric_for(metric, task).name)


def metric_interval(
    y_true: FloatArray,
    scores: FloatArray,
    *,
    spec: Mapping[str, Any] | None = None,
    metric: str | None = None,
    seed: int = 0,
) -> tuple[float, float] | None:
    """The seeded bootstrap interval of the metric in force on these rows (see
    :func:`mlpipeline.featuresets.metrics.bootstrap_interval`); inputs as for :func:`evaluate`."""
    spec = spec or {}
    task = portable.task_of(spec)
    y = np.asarray(y_true, dtype=np.float64)
    if task == "binary":
        y = (y == int(spec["positive"])).astype(np.float64)
    scores, classes = aligned_classes(task, y, scores, len(spec.get("classes") or ()) or 2)
    return bootstrap_interval(
        task,
        metric_for(metric, task).name,
        y,
        scores,
        classes=classes,
        threshold=float(spec.get("threshold", 0.5)),
        seed=seed,
    )


def training_data_hash(d: Definition, frame: pd.DataFrame) -> str:
    """sha256 of the rows a model was trained on (keys, features, target), for lineage."""
    h = hashlib.sha256()
    for name in (*d.key_columns, *d.features, d.target.column):
        col = frame[name]
        h.update(name.encode() + b"\x1e")
        if pd.api.types.is_numeric_dtype(col):
            h.update(col.to_numpy(dtype=np.float64, na_value=np.nan).tobytes())
        else:
            h.update("\x1f".join("" if v is None else str(v) for v in col.astype(object).tolist()).encode())
    return h.hexdigest()
