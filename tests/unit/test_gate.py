"""The promotion gate's decision table, exhaustively."""

from __future__ import annotations

import itertools
import math

import pytest

from mlpipeline.training.gate import GatePolicy, decide

AUTO = GatePolicy(r2_floor=0.5, min_improvement=0.01, mode="auto")
MANUAL = GatePolicy(r2_floor=0.5, min_improvement=0.01, mode="manual")


@pytest.mark.parametrize(
    ("challenger", "champion", "policy", "action", "words"),
    [
        (0.80, None, AUTO, "promote", "first model"),
        (0.80, None, MANUAL, "await_approval", "waiting for approval"),
        (0.40, None, AUTO, "hold", "below the floor"),
        (0.40, None, MANUAL, "hold", "below the floor"),
        (0.85, 0.80, AUTO, "promote", "beats champion"),
        (0.85, 0.80, MANUAL, "await_approval", "beats champion"),
        (0.805, 0.80, AUTO, "hold", "less than the required"),
        (0.805, 0.80, MANUAL, "hold", "less than the required"),
        (0.70, 0.80, AUTO, "hold", "less than the required"),
        (0.45, 0.30, AUTO, "hold", "below the floor"),  # better, but below the floor
        (0.81, 0.80, AUTO, "promote", "beats champion"),  # exactly the required gain
        (float("nan"), None, AUTO, "hold", "undefined"),
        (0.80, float("nan"), AUTO, "promote", "first model"),
    ],
)
def test_decision_table(
    challenger: float, champion: float | None, policy: GatePolicy, action: str, words: str
) -> None:
    decision = decide(challenger, champion, policy)
    assert decision.action == action
    assert words in decision.reason
    assert decision.passed == (action != "hold")


def test_gate_is_consistent_over_a_grid() -> None:
    """Promotion implies floor cleared and the required gain reached, for every combination."""
    values = [-0.5, 0.0, 0.49, 0.5, 0.6, 0.7, 0.705, 0.71, 0.9, 1.0]
    for challenger, champion, mode in itertools.product(values, [None, *values], ["auto", "manual"]):
        policy = GatePolicy(0.5, 0.01, mode)  # type: ignore[arg-type]
        d = decide(challenger, champion, policy)
        ok = challenger >= 0.5 and (champion is None or challenger - champion >= 0.01 - 1e-12)
        if not ok:
            assert d.action == "hold", (challenger, champion, mode)
        else:
            assert d.action == ("promote" if mode == "auto" else "await_approval"), (challenger, champion)
        assert d.challenger_r2 == challenger or math.isnan(d.challenger_r2)


def test_a_loss_without_a_ceiling_is_judged_on_the_champion_alone() -> None:
    from mlpipeline.featuresets.metrics import METRICS

    loss = GatePolicy(r2_floor=None, min_improvement=0.01, metric=METRICS["log_loss"])
    first = decide(0.62, None, loss)
    assert first.action == "promote"
    assert "no ceiling set" in first.reason
    assert decide(0.62, 0.60, loss).action == "hold"  # a higher loss is worse
    assert decide(0.55, 0.60, loss).action == "promote"
    capped = GatePolicy(r2_floor=0.5, metric=METRICS["log_loss"])
    assert "above the ceiling 0.5000" in decide(0.62, None, capped).reason
