"""The monitoring timeline stays readable on any data: dates, single points, crowded retrains.

The picture used to show ``01-01`` for every year of a replay, nothing for a feature measured
once, and retrain labels piled on top of each other. These tests read the drawn figure (tick
label texts, line markers, text extents) rather than trusting the code that made it.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mlpipeline.featurestore.checks import CheckRecord
from mlpipeline.monitoring.reports import build_timeline, date_format, draw_timeline, overlapping_texts
from mlpipeline.registry.pointer import HistoryEntry


def _check(
    at: datetime,
    r2: float | None = 0.8,
    *,
    version: str = "1",
    psi: dict[str, float | None] | None = None,
    retrain: dict[str, Any] | None = None,
    verdict: bool = True,
) -> CheckRecord:
    details: dict[str, Any] = {"verdict": verdict, "psi": psi if psi is not None else {"x": 0.05}}
    if retrain is not None:
        details["retrain"] = retrain
    return CheckRecord("fs", version, at, 500, r2, 0.1, 0.1, details)


def _retrain(outcome: str, version: int) -> dict[str, Any]:
    if outcome == "error":
        return {"reasons": ["performance"], "error": "MLP-500: tracking server unreachable", "pending": True}
    out: dict[str, Any] = {"reasons": ["drift"], "version": str(version), "action": outcome, "r2": 0.8}
    if outcome == "promote":
        out["promoted_version"] = str(version)
    return out


def _tick_labels(fig: Figure) -> list[str]:
    fig.canvas.draw()
    bottom = fig.axes[-1]
    return [t.get_text() for t in bottom.get_xticklabels() if t.get_visible() and t.get_text()]


def _strip_texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def _build(checks: list[CheckRecord], promotions: list[HistoryEntry] | None = None) -> Figure:
    return build_timeline(checks, promotions or [], threshold=0.7, title="timeline", psi_threshold=0.2)


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([datetime(1986, 1, 1), datetime(1987, 1, 1), datetime(1988, 1, 1)], "%Y"),
        ([datetime(1986, 3, 1), datetime(1987, 1, 1)], "%Y-%m-%d"),
        ([datetime(1986, 1, 1), datetime(1987, 1, 1, 12)], "%Y-%m-%d"),
        ([datetime(2026, 11, 1), datetime(2026, 11, 29)], "%m-%d"),
        ([datetime(2026, 11, 28, 9), datetime(2026, 11, 29, 14, 5)], "%m-%d %H:%M"),
        ([datetime(2026, 11, 29, 9), datetime(2026, 11, 29, 14, 5)], "%H:%M"),
        ([datetime(2026, 11, 29)], "%m-%d"),
        ([], "%Y-%m-%d"),
    ],
)
def test_date_format_shows_what_tells_the_times_apart(times: list[datetime], expected: str) -> None:
    assert date_format(times) == expected


def test_a_yearly_replay_puts_years_on_the_ticks() -> None:
    checks = [_check(datetime(year, 1, 1)) for year in (1986, 1987, 1988)]
    fig = _build(checks)
    assert _tick_labels(fig) == ["1986", "1987", "1988"]
    assert fig.axes[-1].get_xlabel() == "year"


def test_checks_within_one_day_show_times_and_the_date_in_the_axis_label() -> None:
    checks = [_check(datetime(2026, 11, 29, hour)) for hour in (8, 12, 16)]
    fig = _build(checks)
    assert _tick_labels(fig) == ["08:00", "12:00", "16:00"]
    assert fig.axes[-1].get_xlabel() == "time on 2026-11-29"


def test_a_single_check_with_one_psi_point_draws_visible_markers() -> None:
    fig = _build([_check(datetime(2026, 5, 5, 14, 30), 0.8, psi={"x": 0.1})])
    top, bottom = fig.axes[1], fig.axes[2]

    def marked(lines: list[Line2D]) -> list[Line2D]:
        return [
            line
            for line in lines
            if len(line.get_xdata()) == 1  # type: ignore[arg-type]
            and line.get_marker() not in (None, "", " ", "None", "none")
            and line.get_markersize() > 0
            and line.get_visible()
        ]

    psi = marked(bottom.get_lines())
    assert len(psi) == 1
    assert list(psi[0].get_ydata()) == [0.1]  # type: ignore[arg-type]
    assert len(marked(top.get_lines())) == 1
    lo, hi = bottom.get_ylim()
    assert lo <= 0.1 < hi  # the point is inside the panel, not on its frame


def test_a_check_without_a_verdict_has_no_point_and_breaks_the_line() -> None:
    start = datetime(2026, 3, 1)
    checks = [
        _check(start, 0.8),
        _check(start + timedelta(days=1), 0.1, verdict=False),
        _check(start + timedelta(days=2), None),
        _check(start + timedelta(days=3), 0.75),
    ]
    fig = _build(checks)
    metric_line = next(line for line in fig.axes[1].get_lines() if str(line.get_label()).startswith("R²"))
    values = list(metric_line.get_ydata())  # type: ignore[arg-type]
    assert values[0] == 0.8
    assert values[3] == 0.75
    assert math.isnan(values[1])
    assert math.isnan(values[2])  # a gap, not a straight line across it


def test_retrain_outcomes_are_labelled_in_the_event_strip() -> None:
    start = datetime(2026, 6, 1)
    checks = [
        _check(start, retrain=_retrain("promote", 5)),
        _check(start + timedelta(days=3), retrain=_retrain("hold", 6)),
        _check(start + timedelta(days=6), retrain=_retrain("await_approval", 7)),
        _check(start + timedelta(days=9), retrain=_retrain("error", 0)),
        _check(start + timedelta(days=12)),
    ]
    fig = _build(checks)
    assert _strip_texts(fig) == ["v5 promoted", "v6 held", "v7 awaits approval", "retrain failed"]
    legend = fig.axes[1].get_legend()
    assert legend is not None
    legend_texts = " ".join(t.get_text() for t in legend.get_texts())
    assert "drift 3" in legend_texts
    assert "performance 1" in legend_texts
    assert overlapping_texts(fig) == []


def test_ten_retrains_within_two_days_do_not_overlap() -> None:
    outcomes = [
        "promote",
        "hold",
        "error",
        "await_approval",
        "promote",
        "hold",
        "error",
        "promote",
        "hold",
        "await_approval",
    ]
    start = datetime(2026, 3, 1, 6)
    checks = [
        _check(
            start + timedelta(hours=4.5 * i), 0.7 + 0.01 * i, version=str(10 + i), retrain=_retrain(o, 10 + i)
        )
        for i, o in enumerate(outcomes)
    ]
    promotions = [
        HistoryEntry("fs", "rollback", "m", "14", "13", None, start + timedelta(hours=20), "ops", "", {}),
        HistoryEntry("fs", "promote", "m", "3", "4", None, start - timedelta(days=30), "ops", "", {}),
    ]
    fig = _build(checks, promotions)
    assert overlapping_texts(fig) == []
    labels = _strip_texts(fig)
    assert "v10 promoted" in labels  # the first flag always has room
    assert len(labels) >= 6  # most flags keep a label
    # Every retrain and the rollback within the span has its line in the metric panel; the
    # promotion a month before the first check is not drawn.
    event_lines = [
        line for line in fig.axes[1].get_lines() if not str(line.get_label()).startswith(("R²", "thr"))
    ]
    assert len(event_lines) == 11
    ticks = _tick_labels(fig)
    assert len(ticks) == len(set(ticks)) >= 3


def test_overlapping_texts_reports_a_real_overlap() -> None:
    fig = _build([_check(datetime(2026, 1, 1)), _check(datetime(2026, 1, 2))])
    assert overlapping_texts(fig) == []
    fig.axes[1].text(0.5, 0.5, "first words", transform=fig.axes[1].transAxes)
    fig.axes[1].text(0.52, 0.5, "second words", transform=fig.axes[1].transAxes)
    assert ("first words", "second words") in overlapping_texts(fig)


def test_fourteen_daily_checks_have_distinct_month_day_ticks() -> None:
    start = datetime(2026, 11, 16)
    retrains = {4: _retrain("promote", 4), 8: _retrain("await_approval", 5), 11: _retrain("error", 0)}
    checks = [
        _check(
            start + timedelta(days=i),
            0.8 - 0.02 * (i % 5),
            psi={"a": 0.01 * i, "b": 0.3},
            retrain=retrains.get(i),
        )
        for i in range(14)
    ]
    fig = _build(checks)
    ticks = _tick_labels(fig)
    assert len(ticks) >= 4
    assert len(ticks) == len(set(ticks))
    for text in ticks:
        assert datetime.strptime(f"2026-{text}", "%Y-%m-%d").year == 2026  # "%m-%d", nothing else
    assert fig.axes[-1].get_xlabel() == "date (2026)"
    assert _strip_texts(fig) == ["v4 promoted", "v5 awaits approval", "retrain failed"]
    assert overlapping_texts(fig) == []


def test_draw_timeline_writes_a_png(tmp_path: Path) -> None:
    checks = [
        _check(datetime(2026, 1, 1) + timedelta(days=i), retrain=_retrain("hold", 2) if i == 2 else None)
        for i in range(4)
    ]
    path = draw_timeline(
        checks,
        [],
        threshold=0.7,
        path=tmp_path / "reports" / "t.png",
        title="t",
        psi_threshold=0.2,
        metric="R²",
    )
    assert path == tmp_path / "reports" / "t.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_no_checks_still_draws(tmp_path: Path) -> None:
    path = draw_timeline([], [], threshold=0.7, path=tmp_path / "empty.png", title="nothing yet")
    assert path.read_bytes().startswith(b"\x89PNG")
