"""The promotion gate: a pure decision over the challenger's and the champion's scores.

Both models are scored on the *same* holdout, on the feature set's metric (R² unless its
``[quality] metric`` says otherwise). The challenger is promoted when it clears the absolute
floor and, if there is a champion, beats it by at least ``min_improvement``; for a loss
(lower is better) "clears" means "at most" and "beats" means "lower by". With
``min_class_recall``, a classifier that lets any class's recall fall below it is held, so an
average cannot hide a rare class that got worse. Under the ``manual`` policy a passing model
is not promoted but marked for approval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from mlpipeline.featuresets.metrics import METRICS, MetricSpec, gain, worse_than

__all__ = ["Decision", "GatePolicy", "decide"]

Action = Literal["promote", "await_approval", "hold"]


@dataclass(frozen=True)
class GatePolicy:
    """Thresholds of the gate, in the metric's own units; ``mode`` is ``auto`` or ``manual``."""

    r2_floor: float | None = 0.5  # None: no floor (a loss without an explicit one)
    min_improvement: float = 0.005
    mode: Literal["auto", "manual"] = "auto"
    metric: MetricSpec = METRICS["r2"]
    min_class_recall: float | None = None


@dataclass(frozen=True)
class Decision:
    """The gate's verdict with the numbers it rested on, recorded on the model version.

    ``challenger_r2`` and ``champion_r2`` hold the values of the policy's metric (R² for a
    regression feature set that chose no other; the names stayed for the records' sake).
    """

    action: Action
    reason: str
    challenger_r2: float
    champion_r2: float | None

    @property
    def passed(self) -> bool:
        return self.action != "hold"


def decide(
    challenger: float,
    champion: float | None,
    policy: GatePolicy,
    *,
    class_recalls: Mapping[str, float] | None = None,
) -> Decision:
    """Promote, wait for approval, or hold, with a reason a person can read in the MLflow UI."""
    m = policy.metric
    name = m.label
    floor_word = "floor" if m.higher_is_better else "ceiling"
    if math.isnan(challenger):
        why = "constant holdout target" if m.name == "r2" else "a single class in the holdout"
        return Decision("hold", f"challenger {name} is undefined ({why})", challenger, champion)
    if policy.r2_floor is not None and worse_than(m, challenger, policy.r2_floor):
        side = "below" if m.higher_is_better else "above"
        reason = f"challenger {name} {challenger:.4f} is {side} the {floor_word} {policy.r2_floor:.4f}"
        return Decision("hold", reason, challenger, champion)
    weak = _weak_classes(class_recalls, policy.min_class_recall)
    if weak:
        return Decision(
            "hold", f"{weak} < min_class_recall {policy.min_class_recall:.2f}", challenger, champion
        )
    if champion is None or math.isnan(champion):
        reason = (
            f"first model: {name} {challenger:.4f} clears the {floor_word} {policy.r2_floor:.4f}"
            if policy.r2_floor is not None
            else f"first model: {name} {challenger:.4f} (no {floor_word} set)"
        )
    else:
        better = gain(m, challenger, champion)
        if better < policy.min_improvement - 1e-12:
            reason = (
                f"challenger {name} {challenger:.4f} vs champion {champion:.4f}: gain {better:+.4f} "
                f"is less than the required {policy.min_improvement:.4f}"
            )
            return Decision("hold", reason, challenger, champion)
        reason = (
            f"challenger {name} {challenger:.4f} beats champion {champion:.4f} by {better:+.4f} "
            f"(required {policy.min_improvement:.4f})"
        )
    if policy.mode == "manual":
        return Decision("await_approval", reason + "; waiting for approval", challenger, champion)
    return Decision("promote", reason, challenger, champion)


def _weak_classes(recalls: Mapping[str, float] | None, floor: float | None) -> str:
    """``class 'yes' recall 0.31`` for every class below the floor ('' when none or no floor)."""
    if floor is None or not recalls:
        return ""
    weak = [(c, r) for c, r in recalls.items() if r < floor]
    return ", ".join(f"class {c!r} recall {r:.2f}" for c, r in weak)
