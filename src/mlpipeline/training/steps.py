"""The training pipeline's pure steps: validate → split → fit → evaluate.

Each step takes and returns plain values (DataFrames, numpy arrays, dataclasses) and
does no I/O, so each is tested on small frames; :mod:`mlpipeline.training.pipeline` strings them
together with the feature store and MLflow at the edges.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlpipeline.errors import ConfigError, DataValidationError, Problem, UnsupportedError
from mlpipeline.featuresets import portable
from mlpipeline.featuresets.definition import Definition
from mlpipeline.featuresets.envelope import observed_ranges
from mlpipeline.featuresets.features import category_vocabulary, feature_spec
from mlpipeline.featuresets.portable import build_matrix

__all__ = [
    "DataReport",
    "FittedModel",
    "Metrics",
    "Split",
    "evaluate",
    "fit",
    "split_holdout",
    "training_data_hash",
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


def split_holdout(d: Definition, frame: pd.DataFrame) -> Split:
    """Time-aware split: the most recent labelled rows are the holdout.

    With no event-time column, a random split seeded by the definition's seed.
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
        train, holdout = ordered.iloc[: n - n_hold], ordered.iloc[n - n_hold :]
        ts = ordered[d.event_time]
        window = {
            "train_from": str(ts.iloc[0]),
            "train_to": str(ts.iloc[n - n_hold - 1]),
            "holdout_from": str(ts.iloc[n - n_hold]),
            "holdout_to": str(ts.iloc[-1]),
        }
        return Split(train.reset_index(drop=True), holdout.reset_index(drop=True), "time", window)
    rng = np.random.default_rng(d.model.seed)
    order = rng.permutation(n)
    hold_idx, train_idx = np.sort(order[:n_hold]), np.sort(order[n_hold:])
    return Split(
        labelled.iloc[train_idx].reset_index(drop=True),
        labelled.iloc[hold_idx].reset_index(drop=True),
        "random",
        {"seed": str(d.model.seed)},
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

    def predict_matrix(self, x: FloatArray) -> FloatArray:
        return np.asarray(self.model.predict(x), dtype=np.float64)

    def predict(self, frame: pd.DataFrame) -> FloatArray:
        return self.predict_matrix(self.matrix(frame))


def _sklearn_estimator(name: str, params: Mapping[str, Any], seed: int) -> Any:
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
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise ConfigError(f"model.params do not fit {name}: {exc}") from exc
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=seed)
    if not hasattr(estimator, "predict"):
        raise ConfigError(f"model.estimator '{name}' is not a regressor (it has no predict)")
    return estimator


def fit(d: Definition, train: pd.DataFrame) -> FittedModel:
    """Train the definition's estimator on the training rows.

    LightGBM gets the categorical features declared as such and handles missing values
    natively; a scikit-learn estimator gets the same float matrix (use one that accepts
    NaN, e.g. HistGradientBoostingRegressor, or declare constant fills).
    """
    if d.target.task != "regression":
        raise UnsupportedError(
            f"'{d.name}' has a {d.target.task} target; this version trains regression models only"
        )
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
    name = d.model.estimator
    if name == "lightgbm":
        import lightgbm as lgb

        params: dict[str, Any] = {
            "objective": "regression",
            "verbosity": -1,
            "seed": d.model.seed,
            "deterministic": True,
            "num_threads": 2,
        }
        params.update(d.model.params)
        rounds = int(params.pop("n_estimators", params.pop("num_boost_round", 100)))
        dataset = lgb.Dataset(
            x, label=y, feature_name=list(spec["order"]), categorical_feature=categorical, free_raw_data=True
        )
        booster = lgb.train(params, dataset, num_boost_round=rounds)
        return FittedModel(name, spec, booster, categorical)
    estimator = _sklearn_estimator(name, d.model.params, d.model.seed)
    estimator.fit(x, y)
    return FittedModel(name, spec, estimator, categorical)


@dataclass(frozen=True)
class Metrics:
    """Holdout metrics; ``n`` is the sample size they rest on."""

    r2: float
    rmse: float
    mae: float
    n: int

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {
            f"{prefix}r2": self.r2,
            f"{prefix}rmse": self.rmse,
            f"{prefix}mae": self.mae,
            f"{prefix}n": self.n,
        }


def evaluate(y_true: FloatArray, y_pred: FloatArray) -> Metrics:
    """R², RMSE and MAE (R² is NaN when the truth is constant)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError("y_true and y_pred must be non-empty and of equal length")
    err = y_true - y_pred
    sse = float(np.dot(err, err))
    centred = y_true - y_true.mean()
    sst = float(np.dot(centred, centred))
    r2 = 1.0 - sse / sst if sst > 0 else float("nan")
    return Metrics(
        r2=r2, rmse=float(np.sqrt(sse / y_true.size)), mae=float(np.mean(np.abs(err))), n=int(y_true.size)
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
