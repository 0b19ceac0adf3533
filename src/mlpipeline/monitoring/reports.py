"""Pictures of live performance: R² over time with the threshold, retrains and promotions.

One function draws the timeline from the monitoring records and the promotion history;
``mlpipeline check`` uploads it to the monitoring run in MLflow after every check and the
demo writes it to ``dur/reports/demo.png``. Drawn with matplotlib's Agg backend: no
display needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from mlpipeline.featurestore.checks import CheckRecord
from mlpipeline.registry.pointer import HistoryEntry

__all__ = ["draw_timeline"]


def draw_timeline(
    checks: Sequence[CheckRecord],
    promotions: Sequence[HistoryEntry],
    *,
    threshold: float,
    path: Path,
    title: str,
    psi_threshold: float | None = None,
) -> Path:
    """Write the timeline PNG to ``path`` (checks oldest first or newest first: both work)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    ordered = sorted(checks, key=lambda c: c.checked_at)
    with_r2 = [c for c in ordered if c.r2 is not None]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    try:
        times = [c.checked_at for c in with_r2]
        top.plot(times, [c.r2 for c in with_r2], marker="o", color="#1f77b4", label="R² on new labels")
        top.axhline(
            threshold, color="#d62728", linestyle="--", linewidth=1.2, label=f"threshold {threshold:g}"
        )
        by_version: dict[str, list[CheckRecord]] = {}
        for c in with_r2:
            by_version.setdefault(c.model_version or "?", []).append(c)
        for version, items in by_version.items():
            top.annotate(
                f"v{version}",
                (items[0].checked_at, items[0].r2 or 0.0),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                fontsize=8,
            )
        retrains = [c for c in ordered if c.details.get("retrain", {}).get("reasons")]
        for i, c in enumerate(retrains):
            reasons = ", ".join(c.details["retrain"]["reasons"])
            top.axvline(
                c.checked_at, color="#ff7f0e", linewidth=1, alpha=0.8, label="retrain" if i == 0 else None
            )
            top.annotate(
                reasons, (c.checked_at, threshold), rotation=90, fontsize=7, color="#ff7f0e", va="bottom"
            )
        moves = [p for p in promotions if p.action != "reject" and _within(p.at, ordered)]
        for i, p in enumerate(moves):
            top.axvline(
                p.at, color="#2ca02c", linestyle=":", linewidth=1.5, label="promotion" if i == 0 else None
            )
        top.set_ylabel("R²")
        top.set_title(title)
        top.grid(alpha=0.3)
        top.legend(loc="lower left", fontsize=8)

        features = sorted({k for c in ordered for k in (c.details.get("psi") or {})})
        for name in features:
            points = [
                (c.checked_at, c.details["psi"][name])
                for c in ordered
                if name in (c.details.get("psi") or {})
            ]
            points = [(t, v) for t, v in points if v is not None]
            if points:
                bottom.plot([t for t, _ in points], [v for _, v in points], linewidth=1, label=name)
        if psi_threshold is not None:
            bottom.axhline(psi_threshold, color="#d62728", linestyle="--", linewidth=1)
        bottom.set_ylabel("PSI (drift)")
        bottom.grid(alpha=0.3)
        if features:
            bottom.legend(loc="upper left", fontsize=7, ncol=4)
        bottom.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))  # type: ignore[no-untyped-call]
        fig.autofmt_xdate()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def _within(at: datetime, checks: Sequence[CheckRecord]) -> bool:
    if not checks:
        return False
    return checks[0].checked_at <= at <= checks[-1].checked_at
