"""Feature drift: the Population Stability Index of new rows against a model's reference.

The reference histograms are taken at training time (:mod:`mlpipeline.featuresets.reference`);
this module compares the rows that arrived since with them.

PSI
    ``PSI = Σ (a - e) · ln(a / e)`` over the buckets, with ``e`` the training share and ``a``
    the current share. A share of zero would make the logarithm infinite, so both shares are
    floored at :data:`EPSILON` (``1e-4``, no renormalisation) — an empty bucket then costs a
    finite but large amount (a bucket that goes from 0 to 10 % adds about 0.69). The usual
    reading: below :data:`PSI_MODERATE` (0.1) no meaningful change, 0.1 to
    :data:`PSI_SIGNIFICANT` (0.25) a moderate shift worth watching, above 0.25 a significant
    shift. PSI of a small sample is biased upwards (sampling noise alone gives roughly
    ``(buckets - 1) / rows``, about 0.1 for 100 rows), which is why the trigger policy gives no
    drift verdict below its ``min_samples``. An empty current sample has no distribution at
    all: :func:`psi` returns ``None`` for it rather than a number that would look like a
    verdict.

The module is pure (numpy only) and deterministic: the same rows give the same histogram
and the same PSI, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpipeline.errors import ConfigError
from mlpipeline.featuresets.reference import Histogram, Reference, current_shares

__all__ = [
    "EPSILON",
    "PSI_MODERATE",
    "PSI_SIGNIFICANT",
    "DriftReport",
    "drift_report",
    "psi",
    "psi_from_shares",
]

#: Floor applied to every share before PSI takes a logarithm (empty buckets).
EPSILON = 1e-4
#: PSI below this: no meaningful change.
PSI_MODERATE = 0.1
#: PSI above this: a significant shift (the usual retraining threshold).
PSI_SIGNIFICANT = 0.25


@dataclass(frozen=True)
class DriftReport:
    """PSI per feature (reference order) and of the target; ``None`` where there is no verdict.

    A feature's PSI is ``None`` when its current sample is empty; the target's also when
    either the reference or the batch lacks the target.
    """

    features: Mapping[str, float | None]
    target: float | None = None

    def worst(self) -> tuple[str, float] | None:
        """The feature with the highest PSI (first in reference order on ties), if any."""
        best: tuple[str, float] | None = None
        for name, value in self.features.items():
            if value is not None and (best is None or value > best[1]):
                best = (name, value)
        return best


def psi_from_shares(expected: Sequence[float], actual: Sequence[float], *, epsilon: float = EPSILON) -> float:
    """``Σ (a - e) · ln(a / e)`` with both shares floored at ``epsilon`` (no renormalisation).

    Raises ``ValueError`` when the two lists differ in length: that is a programming error,
    not a property of the data.
    """
    if len(expected) != len(actual):
        raise ValueError(f"expected {len(expected)} bucket shares and actual {len(actual)} differ in length")
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(reference: Histogram, values: Iterable[Any]) -> float | None:
    """Population Stability Index of ``values`` against one training histogram.

    Readings: < 0.1 no meaningful change, 0.1–0.25 moderate, > 0.25 significant shift.
    ``None`` when ``values`` is empty (no sample, no verdict). Never negative; 0 when the
    sample falls into the buckets in exactly the training shares.
    """
    shares = current_shares(reference, values)
    if shares is None:
        return None
    return psi_from_shares(reference.shares(), shares)


def drift_report(reference: Reference, columns: Mapping[str, Any], *, target: Any = None) -> DriftReport:
    """PSI of every reference feature over a batch (``name → values``), plus the target's.

    Extra columns in the batch are ignored (features added to the definition after this
    model was trained have nothing to compare with). A reference feature missing from the
    batch raises :class:`ConfigError`: the check would otherwise report "no drift" for a
    column it never looked at. The target's PSI is ``None`` when the reference or the call
    has no target, so references of older models without a target histogram keep working.
    """
    absent = [name for name in reference.features if name not in columns]
    if absent:
        raise ConfigError(
            f"the batch lacks feature(s) the model's reference histogram describes: {', '.join(absent)}; "
            "pass every feature the model was trained on"
        )
    features = {name: psi(hist, columns[name]) for name, hist in reference.features.items()}
    target_psi = None if target is None or reference.target is None else psi(reference.target, target)
    return DriftReport(features, target_psi)
