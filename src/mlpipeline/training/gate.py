"""The promotion gate: a pure decision over the challenger's and the champion's scores.

Both models are scored on the *same* holdout. The challenger is promoted when it clears
the absolute R² floor and, if there is a champion, beats its R² by at least
``min_improvement``. Under the ``manual`` policy a passing model is not promoted but
marked for approval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["Decision", "GatePolicy", "decide"]

Action = Literal["promote", "await_approval", "hold"]


@dataclass(frozen=True)
class GatePolicy:
    """Thresholds of the gate; ``mode`` is ``auto`` or ``manual``."""

    r2_floor: float = 0.5
    min_improvement: float = 0.005
    mode: Literal["auto", "manual"] = "auto"


@dataclass(frozen=True)
class Decision:
    """The gate's verdict with the numbers it rested on, recorded on the model version."""

    action: Action
    reason: str
    challenger_r2: float
    champion_r2: float | None

    @property
    def passed(self) -> bool:
        return self.action != "hold"


def decide(challenger_r2: float, champion_r2: float | None, policy: GatePolicy) -> Decision:
    """Promote, wait for approval, or hold, with a reason a person can read in the MLflow UI."""
    if math.isnan(challenger_r2):
        return Decision(
            "hold", "challenger R² is undefined (constant holdout target)", challenger_r2, champion_r2
        )
    if challenger_r2 < policy.r2_floor:
        reason = f"challenger R² {challenger_r2:.4f} is below the floor {policy.r2_floor:.4f}"
        return Decision("hold", reason, challenger_r2, champion_r2)
    if champion_r2 is None or math.isnan(champion_r2):
        reason = f"first model: R² {challenger_r2:.4f} clears the floor {policy.r2_floor:.4f}"
    else:
        gain = challenger_r2 - champion_r2
        if gain < policy.min_improvement:
            reason = (
                f"challenger R² {challenger_r2:.4f} vs champion {champion_r2:.4f}: gain {gain:+.4f} "
                f"is less than the required {policy.min_improvement:.4f}"
            )
            return Decision("hold", reason, challenger_r2, champion_r2)
        reason = (
            f"challenger R² {challenger_r2:.4f} beats champion {champion_r2:.4f} by {gain:+.4f} "
            f"(required {policy.min_improvement:.4f})"
        )
    if policy.mode == "manual":
        return Decision("await_approval", reason + "; waiting for approval", challenger_r2, champion_r2)
    return Decision("promote", reason, challenger_r2, champion_r2)
