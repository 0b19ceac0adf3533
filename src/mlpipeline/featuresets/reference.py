"""Reference histograms: a small statistical profile of the rows a model was trained on.

At training time :func:`build_reference` summarises every feature (and the target) of the
training rows in a small histogram that is stored with the model version as plain JSON
(:meth:`Reference.to_dict`). Monitoring compares the rows that arrive later with it
(:mod:`mlpipeline.monitoring.drift`), so drift is measured against the data *this* model saw,
not against whatever the table holds today; :func:`current_shares` puts new values into the
reference's buckets. Training and monitoring both import this module, so it lives with the
feature sets, below both.

Buckets
    **Numeric** features get up to ``bins`` (10) buckets whose inner edges are training
    quantiles, so each bucket holds about the same share of training rows and PSI reacts to
    a change anywhere in the distribution rather than only in the tails. Edges are taken with
    the ``inverted_cdf`` quantile (always an observed value) and deduplicated, so a discrete
    column gets one bucket per frequent value instead of empty slivers. Buckets are closed on
    the right, ``(-inf, e1], (e1, e2], …, (ek, +inf)``: the outer buckets are open-ended, so a
    value beyond anything seen in training lands in the first or last bucket. An edge equal
    to the training maximum is dropped, because it would create an upper bucket that is
    always empty in training. When every quantile equals the maximum (a constant column, or
    one value covering 90 % of rows) the edges become ``[prev, v]`` where ``prev`` is the
    float just below ``v``: buckets *below v*, *exactly v* and *above v*, so a constant
    training column still notices when its values move either way. Infinite values count in
    the outer buckets but never become edges, so the JSON stays standard (no ``Infinity``).

    **Categorical** features are compared on their *labels* (strings), not on the model's
    float codes: the codes depend on the model's vocabulary and turn every unseen category
    into NaN, which would make a new category indistinguishable from a missing value. The
    ``max_categories`` (50) most frequent training categories get a bucket each; rarer ones
    and categories never seen in training share the ``other`` bucket. A non-string value that
    is not missing is compared through ``str()`` so that labels read back as numbers still
    match.

    **Missing** values (NaN or None; for categories also ``""`` and pandas' NA, as in
    :mod:`mlpipeline.featuresets.portable`) have a bucket of their own, so a feed that starts losing a
    column is drift even when the values that do arrive look normal. All shares are of all
    rows, missing included, so the buckets of a histogram sum to 1.

The module is pure (numpy only) and deterministic: the same rows give the same histogram,
bit for bit.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlpipeline.errors import ConfigError, DataValidationError, ModelIntegrityError, Problem

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_MAX_CATEGORIES",
    "FORMAT",
    "CategoricalHistogram",
    "Histogram",
    "NumericHistogram",
    "Reference",
    "build_reference",
    "categorical_histogram",
    "current_shares",
    "numeric_histogram",
    "prediction_histogram",
    "prediction_values",
]

#: Format tag of the JSON form of a :class:`Reference`; bumped when the layout changes.
FORMAT = "mlpipeline-reference/1"
#: Buckets of a numeric histogram (training deciles) before deduplication.
DEFAULT_BINS = 10
#: Most frequent training categories that get a bucket of their own; the rest go to ``other``.
DEFAULT_MAX_CATEGORIES = 50

FloatArray = npt.NDArray[np.float64]
# How far a JSON histogram's shares may sum away from 1 (rounding of count / rows).
_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class NumericHistogram:
    """Training shares of a numeric column: buckets split at ``edges``, plus missing values.

    ``proportions`` has ``len(edges) + 1`` entries, for ``(-inf, e1], (e1, e2], …, (ek, +inf)``;
    ``missing`` is the share of NaN; ``count`` the training rows, missing included.
    """

    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    missing: float
    count: int
    kind: Literal["numeric"] = field(default="numeric", init=False)

    def shares(self) -> tuple[float, ...]:
        """Every bucket's training share in PSI order: the value buckets, then missing."""
        return (*self.proportions, self.missing)


@dataclass(frozen=True)
class CategoricalHistogram:
    """Training shares of a categorical column: one bucket per kept category, other, missing.

    ``categories`` are sorted; ``other`` is the share of rarer categories folded together
    (zero unless the column had more than ``max_categories`` values), and later also
    receives categories never seen in training.
    """

    categories: tuple[str, ...]
    proportions: tuple[float, ...]
    other: float
    missing: float
    count: int
    kind: Literal["categorical"] = field(default="categorical", init=False)

    def shares(self) -> tuple[float, ...]:
        """Every bucket's training share in PSI order: the categories, other, then missing."""
        return (*self.proportions, self.other, self.missing)


Histogram = NumericHistogram | CategoricalHistogram


@dataclass(frozen=True)
class Reference:
    """The histograms of one model version's training rows: per feature, and of the target.

    Serialise with :meth:`to_dict` (plain JSON types) and read back with :meth:`from_dict`;
    the round trip is exact.
    """

    features: Mapping[str, Histogram]
    target: Histogram | None = None
    # What the model said on its training rows, in the form the prediction log keeps (the
    # prediction, a binary model's positive score, a multiclass model's class): monitoring
    # compares the served predictions with it before any label arrives.
    prediction: Histogram | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, tagged with :data:`FORMAT`; feature order is preserved."""
        out = {
            "format": FORMAT,
            "features": {name: _hist_to_dict(h) for name, h in self.features.items()},
            "target": None if self.target is None else _hist_to_dict(self.target),
        }
        if self.prediction is not None:  # absent from models trained before it was recorded
            out["prediction"] = _hist_to_dict(self.prediction)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        """Read the JSON form back; anything malformed raises :class:`ModelIntegrityError`.

        The reference is part of a model version, so a reference that cannot be read means
        the version's files are damaged or were written by an incompatible mlpipeline.
        """
        if not isinstance(data, Mapping):
            raise _corrupt("<root>", f"expected an object, got {type(data).__name__}")
        tag = data.get("format")
        if tag != FORMAT:
            raise ModelIntegrityError(
                f"reference histogram has format {tag!r}, this mlpipeline reads {FORMAT!r}; "
                "retrain the model with this version to get a readable reference"
            )
        features = data.get("features")
        if not isinstance(features, Mapping):
            raise _corrupt("features", "expected an object mapping feature names to histograms")
        parsed = {str(name): _hist_from_dict(str(name), h) for name, h in features.items()}
        target = data.get("target")
        prediction = data.get("prediction")
        return cls(
            parsed,
            None if target is None else _hist_from_dict("target", target),
            None if prediction is None else _hist_from_dict("prediction", prediction),
        )


# -- building histograms ---------------------------------------------------------------------


def numeric_histogram(
    values: Iterable[Any], *, bins: int = DEFAULT_BINS, name: str = "values"
) -> NumericHistogram:
    """Quantile histogram of training values (see the module docstring for the bucket rules).

    ``values`` is anything numpy reads as floats (None and NaN are missing). An all-missing
    column is allowed: it gets one value bucket with share 0, so any value that shows up
    later is drift. No rows at all cannot describe anything and raises
    :class:`DataValidationError`.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ConfigError(f"bins must be an integer of at least 2, got {bins!r}")
    x = _floats(values, name)
    if x.size == 0:
        raise _empty(name)
    present = x[~np.isnan(x)]
    finite = present[np.isfinite(present)]
    edges: FloatArray = np.empty(0, dtype=np.float64)
    if finite.size:
        top = float(finite.max())
        quantiles = np.quantile(finite, np.arange(1, bins) / bins, method="inverted_cdf")
        edges = np.unique(quantiles)
        edges = edges[edges < top]
        if edges.size == 0:
            # Below the lowest float there is nothing but -inf: keep the "at or below" bucket.
            lowest = top <= float(np.finfo(np.float64).min)
            below = [] if lowest else [float(np.nextafter(top, -np.inf))]
            edges = np.array([*below, top], dtype=np.float64)
    counts = _bucket_counts(edges, present)
    n = x.size
    return NumericHistogram(
        edges=tuple(float(e) for e in edges),
        proportions=tuple(float(c) / n for c in counts),
        missing=float(n - present.size) / n,
        count=int(n),
    )


def categorical_histogram(
    values: Iterable[Any], *, max_categories: int = DEFAULT_MAX_CATEGORIES, name: str = "values"
) -> CategoricalHistogram:
    """Shares of the training categories; the ``max_categories`` most frequent are kept.

    Ties in frequency are broken by label, so the kept set does not depend on row order.
    No rows at all raises :class:`DataValidationError`.
    """
    if isinstance(max_categories, bool) or not isinstance(max_categories, int) or max_categories < 1:
        raise ConfigError(f"max_categories must be an integer of at least 1, got {max_categories!r}")
    labels, missing = _labels(values)
    n = len(labels) + missing
    if n == 0:
        raise _empty(name)
    counts = Counter(labels)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = sorted(label for label, _ in ranked[:max_categories])
    other = sum(count for _, count in ranked[max_categories:])
    return CategoricalHistogram(
        categories=tuple(kept),
        proportions=tuple(float(counts[c]) / n for c in kept),
        other=float(other) / n,
        missing=float(missing) / n,
        count=n,
    )


def build_reference(
    columns: Mapping[str, Any],
    *,
    categorical: Collection[str] | None = None,
    target: Any = None,
    bins: int = DEFAULT_BINS,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> Reference:
    """Histograms of every training column (and of the target when given), in ``columns`` order.

    ``categorical`` names the categorical columns; ``None`` infers them from the arrays
    (object, string or bytes dtype is categorical, anything else numeric), which matches
    what :func:`mlpipeline.training.steps.columns_of` returns. A name in ``categorical`` that is
    not a column raises :class:`ConfigError` (a typo would otherwise silently bin category
    labels as numbers, or fail later). The target is always binned as numeric (regression).
    """
    if categorical is not None:
        unknown = sorted(set(categorical) - set(columns))
        if unknown:
            raise ConfigError(
                f"categorical names columns that are not in the training columns: {', '.join(unknown)}; "
                f"the columns are: {', '.join(columns)}"
            )
    features: dict[str, Histogram] = {}
    for name, values in columns.items():
        is_categorical = _looks_categorical(values) if categorical is None else name in categorical
        if is_categorical:
            features[name] = categorical_histogram(values, max_categories=max_categories, name=name)
        else:
            features[name] = numeric_histogram(values, bins=bins, name=name)
    target_hist = None if target is None else numeric_histogram(target, bins=bins, name="target")
    return Reference(features, target_hist)


def prediction_histogram(spec: Mapping[str, Any], scores: Any) -> Histogram:
    """The histogram of a model's outputs as the prediction log keeps them: numbers (a
    regression's prediction, a binary model's positive score), or a multiclass model's
    predicted class position as a category."""
    s = np.asarray(scores, dtype=np.float64)
    if spec.get("task") == "multiclass":
        return categorical_histogram([str(int(c)) for c in np.argmax(s, axis=1)], name="prediction")
    return numeric_histogram(s, name="prediction")


def prediction_values(spec: Mapping[str, Any], logged: Any) -> Any:
    """Logged predictions in the form :func:`prediction_histogram` buckets them."""
    if spec.get("task") == "multiclass":
        return [str(int(v)) for v in np.asarray(logged, dtype=np.float64)]
    return np.asarray(logged, dtype=np.float64)


# -- shares of new values in the reference's buckets ------------------------------------------


def current_shares(reference: Histogram, values: Iterable[Any]) -> tuple[float, ...] | None:
    """Shares of ``values`` in the reference's buckets (same order as ``reference.shares()``).

    ``None`` for an empty sample. A categorical histogram accepts any iterable of labels; a
    numeric one anything numpy reads as floats.
    """
    if isinstance(reference, NumericHistogram):
        x = _floats(values, "values")
        if x.size == 0:
            return None
        present = x[~np.isnan(x)]
        counts = _bucket_counts(np.asarray(reference.edges, dtype=np.float64), present)
        n = x.size
        return (*(float(c) / n for c in counts), float(n - present.size) / n)
    labels, missing = _labels(values)
    n = len(labels) + missing
    if n == 0:
        return None
    tally = Counter(labels)
    known = [tally.pop(c, 0) for c in reference.categories]
    other = sum(tally.values())
    return (*(float(c) / n for c in known), float(other) / n, float(missing) / n)


# -- helpers -----------------------------------------------------------------------------------


def _floats(values: Iterable[Any], name: str) -> FloatArray:
    if not hasattr(values, "__len__"):  # a generator: numpy would make a 0-d object array of it
        values = list(values)
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(
            [Problem(name, "numeric", f"values are not numbers ({exc}); is the column categorical?")],
            source="drift histogram",
            outcome="no histogram computed",
        ) from exc
    return x.reshape(-1)


def _bucket_counts(edges: FloatArray, present: FloatArray) -> npt.NDArray[np.int64]:
    # side="left": v <= e1 -> 0, e1 < v <= e2 -> 1, ..., v > ek -> k (buckets closed on the right).
    index = np.searchsorted(edges, present, side="left")
    return np.bincount(index, minlength=edges.size + 1).astype(np.int64)


def _is_missing(value: object) -> bool:
    # The rule of mlpipeline.featuresets.portable (None, NaN, "", pandas' NA), so what serving treats as
    # missing is missing here; ordered so that pandas' NA is never asked for its truth value.
    if value is None:
        return True
    if isinstance(value, str):
        return value in ("", "<NA>")
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return str(value) == "<NA>"


def _labels(values: Iterable[Any]) -> tuple[list[str], int]:
    labels: list[str] = []
    missing = 0
    for value in values:
        if _is_missing(value):
            missing += 1
        else:
            labels.append(value if isinstance(value, str) else str(value))
    return labels, missing


def _looks_categorical(values: Any) -> bool:
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        dtype = np.asarray(list(values)).dtype
    return np.dtype(dtype).kind in "OUS"


def _empty(name: str) -> DataValidationError:
    return DataValidationError(
        [Problem(name, "non-empty", "no training rows to build a reference histogram from")],
        source="reference histogram",
        outcome="no reference built",
    )


def _corrupt(where: str, detail: str) -> ModelIntegrityError:
    return ModelIntegrityError(
        f"reference histogram is malformed at {where}: {detail}; retrain the model to rebuild it"
    )


def _hist_to_dict(h: Histogram) -> dict[str, Any]:
    if isinstance(h, NumericHistogram):
        return {
            "kind": "numeric",
            "count": h.count,
            "edges": list(h.edges),
            "proportions": list(h.proportions),
            "missing": h.missing,
        }
    return {
        "kind": "categorical",
        "count": h.count,
        "categories": list(h.categories),
        "proportions": list(h.proportions),
        "other": h.other,
        "missing": h.missing,
    }


def _hist_from_dict(name: str, data: Any) -> Histogram:
    if not isinstance(data, Mapping):
        raise _corrupt(name, f"expected an object, got {type(data).__name__}")
    kind = data.get("kind")
    count = data.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise _corrupt(name, f"count must be a positive integer, got {count!r}")
    proportions = _share_list(name, "proportions", data.get("proportions"))
    missing = _share(name, "missing", data.get("missing"))
    hist: Histogram
    if kind == "numeric":
        edges = _number_list(name, "edges", data.get("edges"))
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise _corrupt(name, "edges must be strictly increasing")
        if len(proportions) != len(edges) + 1:
            raise _corrupt(
                name, f"{len(edges)} edges need {len(edges) + 1} proportions, got {len(proportions)}"
            )
        hist = NumericHistogram(edges, proportions, missing, count)
    elif kind == "categorical":
        raw = data.get("categories")
        if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
            raise _corrupt(name, "categories must be a list of strings")
        if len(set(raw)) != len(raw):
            raise _corrupt(name, "categories lists a category twice")
        if len(proportions) != len(raw):
            raise _corrupt(name, f"{len(raw)} categories need as many proportions, got {len(proportions)}")
        hist = CategoricalHistogram(
            tuple(raw), proportions, _share(name, "other", data.get("other")), missing, count
        )
    else:
        raise _corrupt(name, f"kind must be 'numeric' or 'categorical', got {kind!r}")
    total = math.fsum(hist.shares())
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise _corrupt(name, f"shares sum to {total!r}, not 1")
    return hist


def _number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _corrupt(name, f"{key} must hold finite numbers, got {value!r}")
    return float(value)


def _number_list(name: str, key: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise _corrupt(name, f"{key} must be a list of numbers, got {type(value).__name__}")
    return tuple(_number(name, key, v) for v in value)


def _share(name: str, key: str, value: Any) -> float:
    share = _number(name, key, value)
    if not 0.0 <= share <= 1.0:
        raise _corrupt(name, f"{key} must be a share between 0 and 1, got {share!r}")
    return share


def _share_list(name: str, key: str, value: Any) -> tuple[float, ...]:
    return tuple(_share(name, key, v) for v in _number_list(name, key, value))
