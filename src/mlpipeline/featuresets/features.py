"""The one function that turns raw columns into the model's input matrix.

Training, monitoring and serving all call :func:`feature_matrix` (and every logged model
carries the same code, see :mod:`mlpipeline.featuresets.portable`), so missing-value fills, category
encoding and derived features are computed identically everywhere: no train/serve skew.
It works on a mapping of column name to array, so a single prediction pays for a few numpy
operations and no DataFrame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mlpipeline.featuresets.definition import Definition
from mlpipeline.featuresets.portable import FORMAT, build_matrix, encode_categorical

__all__ = ["category_vocabulary", "encode_categorical", "feature_matrix", "feature_spec"]

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
            vocab[name] = tuple(sorted({str(v) for v in seen if isinstance(v, str)}))
    return vocab


def feature_spec(
    d: Definition,
    vocabulary: Mapping[str, Sequence[str]] | None = None,
    seen: Mapping[str, list[float] | None] | None = None,
) -> dict[str, Any]:
    """The portable JSON feature spec of ``d`` (see :mod:`mlpipeline.featuresets.portable`).

    Beyond what the matrix needs, it records the input contract the model was trained
    under (ranges, whether categories were declared, the entity key), so a served model
    validates requests by its own rules even after the definition file changes. ``seen``
    records the model's envelope, so serving and monitoring can flag inputs outside it
    (:mod:`mlpipeline.featuresets.envelope`): the training range of each watched numeric
    feature, and ``None`` for each watched categorical one (its vocabulary is what was seen).
    """
    vocab = vocabulary if vocabulary is not None else category_vocabulary(d)
    features = []
    for name, f in d.features.items():
        item: dict[str, Any] = {
            "name": name,
            "type": f.type,
            "missing": f.missing,
            "fill_value": f.fill_value,
        }
        if f.type == "categorical":
            item["categories"] = list(vocab.get(name, ()))
            item["strict"] = f.values is not None
        else:
            item["min"] = f.min
            item["max"] = f.max
        if seen is not None and name in seen:  # watched: flag values outside what training saw
            item["seen"] = seen[name]
        features.append(item)
    spec: dict[str, Any] = {
        "format": FORMAT,
        # One name, or the list of a composite key's columns (serving reads both forms).
        "key": d.key_columns[0] if len(d.key_columns) == 1 else list(d.key_columns),
        # What a request may carry besides features and key, and how unknown columns are treated.
        "sources": d.sources,
        "accepted": [c for c in (d.target.column, d.event_time, d.label_time) if c],
        "extra_columns": d.extra_columns,
        "features": features,
        "constants": d.constant_values(),
        "times": list(d.time_inputs),
        "derived": [{"name": x.name, "expression": x.expression} for x in d.derived],
        "order": list(d.model_features),
    }
    if seen is not None:
        spec["envelope"] = 1
    return spec


def feature_matrix(
    d: Definition,
    columns: Mapping[str, object],
    vocabulary: Mapping[str, Sequence[str]] | None = None,
) -> FloatArray:
    """Build the (rows x model_features) float matrix for ``d`` from raw columns."""
    return build_matrix(feature_spec(d, vocabulary), columns)
