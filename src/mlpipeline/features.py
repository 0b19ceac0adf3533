"""The one function that turns raw columns into the model's input matrix.

Training, monitoring and serving all call :func:`feature_matrix`, so the missing-value
policy, the category encoding and the derived features are computed identically
everywhere (no train/serve skew). It works on a mapping of column name to numpy array,
so a single prediction pays for a few numpy operations and no DataFrame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from mlpipeline.definition import Definition, Feature

__all__ = ["category_vocabulary", "derive", "encode_categorical", "feature_matrix"]

FloatArray = npt.NDArray[np.float64]


def category_vocabulary(
    d: Definition, observed: Mapping[str, Sequence[object]] | None = None
) -> dict[str, tuple[str, ...]]:
    """Category order per categorical feature: the declared values, else the sorted observed ones.

    The vocabulary is stored with a model so that serving encodes exactly as training did.
    """
    vocab: dict[str, tuple[str, ...]] = {}
    for name, spec in d.features.items():
        if spec.type != "categorical":
            continue
        if spec.values is not None:
            vocab[name] = tuple(spec.values)
        else:
            seen = observed.get(name, ()) if observed else ()
            vocab[name] = tuple(sorted({str(v) for v in seen if v is not None}))
    return vocab


def encode_categorical(values: Sequence[object] | np.ndarray, categories: Sequence[str]) -> FloatArray:
    """Codes 0..k-1 as floats in vocabulary order; missing or unknown values become NaN."""
    lookup = {c: float(i) for i, c in enumerate(categories)}
    return np.fromiter((lookup.get(v, np.nan) for v in values), dtype=np.float64)  # type: ignore[arg-type]


def _numeric_column(values: object, spec: Feature) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if spec.missing == "constant":
        arr = np.where(np.isnan(arr), float(spec.fill_value), arr)  # type: ignore[arg-type]
    return arr


def derive(d: Definition, numeric: Mapping[str, FloatArray], rows: int) -> dict[str, FloatArray]:
    """Compute the derived features in definition order from numeric columns and constants."""
    env: dict[str, FloatArray | float] = dict(numeric)
    env.update(d.constants)
    out: dict[str, FloatArray] = {}
    for item in d.derived:
        value = item.compiled.evaluate(env, rows)
        env[item.name] = value
        out[item.name] = value
    return out


def feature_matrix(
    d: Definition,
    columns: Mapping[str, object],
    vocabulary: Mapping[str, Sequence[str]] | None = None,
) -> FloatArray:
    """Build the (rows × model_features) float matrix for the model.

    ``columns`` maps each raw feature to an array-like of equal length (missing values as
    NaN or None). Constant-fill policies are applied before derived features, so a derived
    feature sees the same value the model sees.
    """
    vocab = vocabulary if vocabulary is not None else category_vocabulary(d)
    names = d.model_features
    first = columns[next(iter(d.features))]
    rows = len(first)  # type: ignore[arg-type]
    matrix = np.empty((rows, len(names)), dtype=np.float64)
    numeric: dict[str, FloatArray] = {}
    for j, (name, spec) in enumerate(d.features.items()):
        raw = columns[name]
        if spec.type == "categorical":
            values = list(raw)  # type: ignore[call-overload]
            if spec.missing == "constant":
                values = [spec.fill_value if v is None else v for v in values]
            matrix[:, j] = encode_categorical(values, vocab.get(name, ()))
        else:
            col = _numeric_column(raw, spec)
            numeric[name] = col
            matrix[:, j] = col
    offset = len(d.features)
    for k, value in enumerate(derive(d, numeric, rows).values()):
        matrix[:, offset + k] = value
    return matrix
