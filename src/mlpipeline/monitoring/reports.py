"""Pictures of live performance: the monitoring timeline.

The picture has three rows sharing one time axis, in the data's time (``checked_at``; under a
replay this is the data's clock, not the wall clock):

- an **event strip** on top: one flag per retrain, coloured by the gate's outcome
  (promoted green, held grey, awaiting approval orange, failed red) and labelled
  ``v5 promoted``, ``v6 held``, ``v7 awaits approval``, ``retrain failed``; promotions and
  rollbacks from the registry's history get dotted flags. Labels sit on up to four levels,
  placed greedily with the renderer's real text extents, so none overlaps another or another
  flag's pole; a label with no room is shortened to ``v5`` and, failing that, left out (its
  line stays).
- the **metric panel**: the champion's metric (R² by default) on newly labelled rows, one point
  per check with a verdict (a check with too few labels has no point), the threshold, and a
  vertical line per retrain and promotion. The legend, outside on the right, names the
  outcomes and counts the retrain reasons (performance, drift, schedule, ...).
- the **drift panel**: PSI per feature (and of the target), every series with point markers so
  a feature measured once is still visible; the most drifted features are named, the rest
  drawn thin and grey under one legend entry.

The x axis labels use :func:`date_format`, the same pattern the command-line tables use, so a
replay over decades shows years, a daily stream shows ``11-29`` with the year in the axis
label, and checks within one day show ``14:05``. Tick labels are thinned (and rotated only
when that keeps more of them) so they never overlap; :func:`overlapping_texts` checks any
figure for overlapping text and :func:`draw_timeline` logs a warning if it finds some.

``mlpipeline check`` uploads the picture to the monitoring run in MLflow after every check and
the demo writes it to ``dur/reports/demo.png``. Drawn on a bare Agg canvas (no pyplot): no
display, no global figure registry in long-running processes.
"""

from __future__ import annotations

import logging
import math
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlpipeline.featurestore.checks import CheckRecord
from mlpipeline.registry.pointer import HistoryEntry

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

__all__ = ["build_timeline", "date_format", "draw_timeline", "overlapping_texts"]

log = logging.getLogger(__name__)

#: With this many distinct check times or fewer, the ticks sit exactly at the checks.
_MAX_CHECK_TICKS = 12
#: Otherwise matplotlib picks about this many round dates.
_AUTO_TICKS = 8
#: Levels of labels in the event strip.
_EVENT_LEVELS = 4
#: Named PSI series; the others share one grey legend entry so the legend stays short.
_NAMED_PSI = 6
_DPI = 110
_EVENT_FONT = 8.0
_TICK_ROTATION = 30.0

#: The outcomes in the legend, best first (whatever order they happened in).
_LEGEND_ORDER = (
    "retrain → promoted",
    "retrain → awaits approval",
    "retrain → held by the gate",
    "retrain (no gate decision)",
    "retrain failed or skipped",
    "registry promotion",
    "rollback",
)
_GREEN = "#2ca02c"
_GREY = "#7f7f7f"
_ORANGE = "#ff7f0e"
_RED = "#d62728"
_PURPLE = "#9467bd"
_BROWN = "#8c564b"
_BLUE = "#1f77b4"
#: PSI colours: none of the outcome colours (green, grey, orange, red), so a drifting feature
#: is not read as a retrain; the target is drawn in near-black.
_PSI_COLORS = ("#1f77b4", "#e377c2", "#17becf", "#bcbd22", "#8c564b", "#393b79")


def date_format(times: Sequence[datetime]) -> str:  # noqa: PLR0911 (a decision table)
    """The strftime pattern that tells these times apart with the fewest characters.

    One rule for the picture's axis and the command-line tables, so both read the same: a
    yearly replay shows ``1987``, a multi-year one ``1987-03-01``, a daily stream ``11-29``
    (the year goes once into the axis label), checks at times of day ``11-29 14:05``, and
    checks within one day ``14:05`` (the date in the axis label). A check at a day's last
    second (as of the end of a month, say) counts as that date. Beyond the basic rules, a
    few seconds apart within one day adds ``:%S``, and a short span across New Year keeps the
    time of day; otherwise the labels would repeat.
    """
    if not times:
        return "%Y-%m-%d"
    lo, hi = min(times), max(times)
    # A check at a day's start or its last second (a period's end) stands for a date.
    midnight = all(t.time() in (time(0), time(23, 59, 59)) for t in times)
    if lo.year != hi.year:
        if midnight and all(t.month == 1 and t.day == 1 for t in times):
            return "%Y"
        if not midnight and hi - lo <= timedelta(days=2):
            return "%Y-%m-%d %H:%M"
        return "%Y-%m-%d"
    if midnight:
        return "%m-%d"
    if lo.date() == hi.date():
        if hi - lo < timedelta(minutes=10) and any(t.second or t.microsecond for t in times):
            return "%H:%M:%S"
        return "%H:%M"
    return "%m-%d %H:%M"


def _axis_label(times: Sequence[datetime], fmt: str) -> str:
    """The x-axis label: what the tick labels leave out (the year, or the date) goes here."""
    if not times:
        return "date"
    first = min(times)
    if fmt == "%Y":
        return "year"
    if fmt.startswith("%Y"):
        return "date and time" if "%H" in fmt else "date"
    if fmt.startswith("%H"):
        return f"time on {first:%Y-%m-%d}"
    if "%H" in fmt:
        return f"date and time ({first.year})"
    return f"date ({first.year})"


@dataclass(frozen=True)
class _Event:
    """A flag in the event strip and a vertical line in the metric panel."""

    at: datetime
    label: str
    short: str
    color: str
    legend: str
    linestyle: Literal["-", ":"]


def _retrain_event(check: CheckRecord) -> _Event | None:  # noqa: PLR0911 (one per outcome)
    """The outcome of the retrain this check started, from ``details["retrain"]``."""
    retrain = check.details.get("retrain")
    if not isinstance(retrain, dict):
        return None
    version = retrain.get("promoted_version") or retrain.get("version")
    short = f"v{version}" if version else ""
    action = retrain.get("action")
    error = retrain.get("error")
    at = check.checked_at
    if error:
        if str(error).startswith("MLP-900"):  # BusyError: another training was the retrain
            return _Event(at, "retrain skipped", "skipped", _RED, "retrain failed or skipped", "-")
        return _Event(at, "retrain failed", "failed", _RED, "retrain failed or skipped", "-")
    if action == "promote" or retrain.get("promoted_version"):
        return _Event(at, f"{short} promoted", short, _GREEN, "retrain → promoted", "-")
    if action == "hold":
        return _Event(at, f"{short} held", short, _GREY, "retrain → held by the gate", "-")
    if action == "await_approval":
        return _Event(at, f"{short} awaits approval", short, _ORANGE, "retrain → awaits approval", "-")
    if version:
        return _Event(at, f"{short} trained", short, _BROWN, "retrain (no gate decision)", "-")
    return _Event(at, "retrain", "", _BROWN, "retrain (no gate decision)", "-")


def _promotion_event(entry: HistoryEntry, promoted_by_retrain: set[str]) -> _Event | None:
    """A registry move (promote, approve, rollback); ``None`` for a rejection, or for the
    promotion a retrain's flag already shows (it happens seconds after the check)."""
    if entry.action == "reject":
        return None
    version = entry.to_version or "?"
    if entry.action == "rollback":
        return _Event(entry.at, f"rollback to v{version}", f"v{version}", _PURPLE, "rollback", ":")
    # A promotion the retrain's flag already names is that flag: drawn once, at the check.
    if entry.action == "promote":
        if version in promoted_by_retrain:
            return None
        label = f"v{version} promoted"
    elif entry.action == "approve":
        label = f"v{version} approved"
    else:
        label = f"v{version} {entry.action}"
    return _Event(entry.at, label, f"v{version}" if label else "", _GREEN, "registry promotion", ":")


def build_timeline(
    checks: Sequence[CheckRecord],
    promotions: Sequence[HistoryEntry],
    *,
    threshold: float | None,
    title: str,
    psi_threshold: float | None = None,
    metric: str = "R²",
) -> Figure:
    """The timeline figure (see the module docstring); checks in any order.

    Returned unsaved so tests can inspect its texts and :func:`draw_timeline` can save it.
    The layout is fixed once the labels are placed, so saving at another size moves nothing.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ordered = sorted(checks, key=lambda c: c.checked_at)
    times = [c.checked_at for c in ordered]
    fmt = date_format(times)

    fig = Figure(figsize=(11, 7.2), dpi=_DPI, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    strip, top, bottom = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [0.8, 3.2, 1.6]})
    fig.suptitle(title, fontsize=11, wrap=True)

    retrains = [e for e in (_retrain_event(c) for c in ordered) if e is not None]
    promoted = {
        str(c.details["retrain"].get("promoted_version"))
        for c in ordered
        if isinstance(c.details.get("retrain"), dict) and c.details["retrain"].get("promoted_version")
    }
    moves = [
        e
        for e in (_promotion_event(p, promoted) for p in promotions if _within(p.at, ordered))
        if e is not None
    ]
    events = retrains + sorted(moves, key=lambda e: e.at)

    _metric_panel(top, ordered, events, threshold=threshold, metric=metric)
    _drift_panel(bottom, ordered, events, psi_threshold=psi_threshold)
    _strip_frame(strip)
    if not ordered:
        top.text(0.5, 0.5, "no monitoring checks yet", transform=top.transAxes, ha="center", color=_GREY)
        bottom.set_xticks([])
        fig.set_layout_engine("none")
        return fig

    _set_xlim(bottom, times, fmt)
    bottom.set_xlabel(_axis_label(times, fmt))
    _initial_ticks(bottom, times, fmt)
    # Layout passes without rasterising (cheaper than a full draw): tick positions in pixels are
    # known from here on, then room is made for the final (maybe rotated) tick labels.
    fig.draw_without_rendering()
    renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]
    _thin_ticks(fig, bottom, fmt, renderer)
    fig.draw_without_rendering()
    fig.set_layout_engine("none")  # freeze: the labels below are placed in these pixels
    _thin_ticks(fig, bottom, fmt, renderer, allow_rotation=False)
    _place_events(fig, strip, retrains, moves, renderer)
    return fig


def draw_timeline(
    checks: Sequence[CheckRecord],
    promotions: Sequence[HistoryEntry],
    *,
    threshold: float | None,
    path: Path,
    title: str,
    psi_threshold: float | None = None,
    metric: str = "R²",
) -> Path:
    """Write the timeline PNG to ``path`` (checks oldest first or newest first: both work).

    The figure is built by :func:`build_timeline` (whose placement the tests check with
    :func:`overlapping_texts`; a check does not pay for a second full draw), saved at 110 dpi
    and released.
    """
    fig = build_timeline(
        checks, promotions, threshold=threshold, title=title, psi_threshold=psi_threshold, metric=metric
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=_DPI)
    finally:
        fig.clear()
    return path


def overlapping_texts(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of drawn, visible, non-empty texts whose shapes overlap (empty when readable).

    Draws the figure first, so tick labels and legends are where they will be saved. Tick
    labels outside the view are not drawn and not counted. Rotated texts are compared as
    rotated rectangles, not as their axis-aligned boxes (which overlap for any two close
    rotated tick labels that are perfectly readable).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()  # type: ignore[no-untyped-call]
    renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]
    texts = _drawn_texts(fig)
    shapes = [(t.get_text(), _corners(t, renderer)) for t in texts]
    pairs: list[tuple[str, str]] = []
    for i, (text_a, a) in enumerate(shapes):
        for text_b, b in shapes[i + 1 :]:
            if _polygons_overlap(a, b):
                pairs.append((text_a, text_b))
    return pairs


def _within(at: datetime, checks: Sequence[CheckRecord]) -> bool:
    if not checks:
        return False
    return checks[0].checked_at <= at <= checks[-1].checked_at


# --- panels -------------------------------------------------------------------------------


def _has_verdict(c: CheckRecord) -> bool:
    """A check with a measured metric on enough rows; the others get no point."""
    value = c.value
    return value is not None and math.isfinite(value) and c.details.get("verdict", True) is not False


def _metric_panel(
    ax: Axes,
    ordered: Sequence[CheckRecord],
    events: Sequence[_Event],
    *,
    threshold: float | None,
    metric: str,
) -> None:
    """The metric with markers (one check is one visible point), threshold and event lines."""
    from matplotlib.lines import Line2D

    measured = [c for c in ordered if _has_verdict(c)]
    versions = _version_path([c.model_version or "?" for c in measured])
    label = f"{metric} on newly labelled rows" + (f"\nchampion {versions}" if versions else "")
    # A check without a verdict breaks the line (NaN), so a gap is not drawn as a trend.
    ax.plot(
        _nums([c.checked_at for c in ordered]),
        [(c.value or 0.0) if _has_verdict(c) else math.nan for c in ordered],
        marker="o",
        markersize=4,
        linewidth=1.4,
        color=_BLUE,
        label=label,
    )
    bands: list[tuple[CheckRecord, list[float]]] = []
    for c in measured:
        interval = (c.details.get("metric") or {}).get("interval")
        if interval:
            bands.append((c, list(interval)))
    if bands:  # each verdict's bootstrap interval, so a noisy window looks noisy
        ax.vlines(
            _nums([c.checked_at for c, _ in bands]),
            [b[0] for _, b in bands],
            [b[1] for _, b in bands],
            color=_BLUE,
            alpha=0.35,
            linewidth=5,
            label="95% interval",
        )
    if threshold is not None:  # a loss without a threshold has none to draw
        ax.axhline(threshold, color=_RED, linestyle="--", linewidth=1.1, label=f"threshold {threshold:g}")
    legend_lines: dict[str, tuple[str, Literal["-", ":"]]] = {}
    for e in events:
        ax.axvline(_num(e.at), color=e.color, linestyle=e.linestyle, linewidth=1.3, alpha=0.85)
        legend_lines.setdefault(e.legend, (e.color, e.linestyle))
    handles, labels = ax.get_legend_handles_labels()
    for text, (color, style) in sorted(legend_lines.items(), key=lambda kv: _LEGEND_ORDER.index(kv[0])):
        handles.append(Line2D([], [], color=color, linestyle=style, linewidth=1.3))
        labels.append(text)
    reasons = _reason_counts(ordered)
    if reasons:
        handles.append(Line2D([], [], linestyle="none"))
        labels.append(textwrap.fill(f"retrain reasons: {reasons}", width=34))
    skipped = len(ordered) - len(measured)
    if skipped:
        handles.append(Line2D([], [], linestyle="none"))
        labels.append(f"{skipped} check{'s' if skipped > 1 else ''} without a verdict")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    _side_legend(ax, handles, labels, fontsize=8)


def _side_legend(ax: Axes, handles: list[Any], labels: list[str], *, fontsize: float) -> None:
    """A legend beside the panel, outside the plot, so it never hides a point."""
    ax.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        fontsize=fontsize,
        frameon=False,
        handlelength=1.6,
    )


def _version_path(versions: Sequence[str]) -> str:
    """``v3 → v5 → v7``: the champions in the order they served (long paths are elided)."""
    path: list[str] = []
    for v in versions:
        if not path or path[-1] != v:
            path.append(v)
    if not path:
        return ""
    if len(path) > 4:
        path = [path[0], "…", path[-1]]
    return " → ".join(p if p == "…" else f"v{p}" for p in path)


def _reason_counts(ordered: Iterable[CheckRecord]) -> str:
    """``performance 3, drift 1``: why the retrains in the picture ran."""
    counts: Counter[str] = Counter()
    for c in ordered:
        retrain = c.details.get("retrain")
        if isinstance(retrain, dict):
            counts.update(str(r) for r in retrain.get("reasons") or [])
    return ", ".join(f"{reason} {n}" for reason, n in counts.most_common())


def _drift_panel(
    ax: Axes, ordered: Sequence[CheckRecord], events: Sequence[_Event], *, psi_threshold: float | None
) -> None:
    """PSI per feature with markers; the most drifted named, the rest grey and unnamed."""
    from matplotlib.lines import Line2D

    series: dict[str, list[tuple[datetime, float]]] = {}
    for c in ordered:
        psi = c.details.get("psi") or {}
        if not isinstance(psi, dict):
            continue
        for name, value in psi.items():
            if isinstance(value, int | float) and math.isfinite(value):
                series.setdefault(str(name), []).append((c.checked_at, float(value)))
    ranked = sorted(series, key=lambda n: (n != "target", -max(v for _, v in series[n]), n))
    named = ranked[:_NAMED_PSI]
    others = ranked[_NAMED_PSI:]
    for name in others:
        points = series[name]
        ax.plot(
            _nums([t for t, _ in points]),
            [v for _, v in points],
            color="#bbbbbb",
            linewidth=0.8,
            marker=".",
            markersize=4,
        )
    palette = iter(_PSI_COLORS * (len(named) // len(_PSI_COLORS) + 1))
    for name in sorted(named):
        points = series[name]
        ax.plot(
            _nums([t for t, _ in points]),
            [v for _, v in points],
            color="#222222" if name == "target" else next(palette),
            linewidth=1.1,
            marker=".",
            markersize=6,
            label=name if len(name) <= 24 else name[:23] + "…",  # long names would squeeze the plot
        )
    served = [
        (c.checked_at, float(c.details["prediction_drift"]["psi"]))
        for c in ordered
        if isinstance(c.details.get("prediction_drift"), dict)
        and isinstance(c.details["prediction_drift"].get("psi"), int | float)
    ]
    if served:  # the served predictions against the champion's own training outputs
        ax.plot(
            _nums([t for t, _ in served]),
            [v for _, v in served],
            color="#222222",
            linestyle="--",
            linewidth=1.1,
            marker="x",
            markersize=5,
            label="served predictions",
        )
    for e in events:
        ax.axvline(_num(e.at), color=e.color, linestyle=e.linestyle, linewidth=1.0, alpha=0.35)
    if psi_threshold is not None:
        ax.axhline(
            psi_threshold, color=_RED, linestyle="--", linewidth=1.0, label=f"PSI threshold {psi_threshold:g}"
        )
    handles, labels = ax.get_legend_handles_labels()
    if others:
        handles.append(Line2D([], [], color="#bbbbbb", marker=".", linewidth=0.8))
        labels.append(f"{len(others)} other feature{'s' if len(others) > 1 else ''}")
    if not series:
        ax.text(0.5, 0.5, "no drift measured", transform=ax.transAxes, ha="center", va="center", color=_GREY)
    # PSI is never negative: zero at the bottom, and some room above the highest point.
    ax.set_ylim(0.0, max(ax.get_ylim()[1], 0.0) * 1.08 or 1.0)
    ax.set_ylabel("PSI (drift)")
    ax.grid(alpha=0.3)
    if handles:
        _side_legend(ax, handles, labels, fontsize=7.5)


def _strip_frame(ax: Axes) -> None:
    """The event strip: no ticks, no frame but its baseline; the flags are added last."""
    ax.set_ylim(0, 1)
    ax.tick_params(axis="both", which="both", length=0, labelleft=False, labelbottom=False)
    for side in ("top", "left", "right"):
        ax.spines[side].set_visible(False)
    ax.spines["bottom"].set_color("#cccccc")
    ax.set_yticks([])


# --- the time axis ------------------------------------------------------------------------


def _nums(times: Sequence[datetime]) -> list[float]:
    """Matplotlib's date numbers: everything is plotted in them, the axis formats them back."""
    import matplotlib.dates as mdates

    return [float(x) for x in mdates.date2num(list(times))]  # type: ignore[no-untyped-call]


def _num(at: datetime) -> float:
    return _nums([at])[0]


def _set_xlim(ax: Axes, times: Sequence[datetime], fmt: str) -> None:
    """A little room on both sides so the first and last points are not on the frame."""
    lo, hi = min(times), max(times)
    pad = (hi - lo) * 0.04
    if pad <= timedelta(0):
        pad = timedelta(days=180) if fmt == "%Y" else timedelta(hours=1) if "%H" in fmt else timedelta(days=1)
    ax.set_xlim(_num(lo - pad), _num(hi + pad))


def _initial_ticks(ax: Axes, times: Sequence[datetime], fmt: str) -> None:
    """Ticks at the checks when there are few of them, else about eight round dates."""
    import matplotlib.dates as mdates
    from matplotlib.ticker import FixedLocator

    distinct = sorted(set(times))
    if len(distinct) <= _MAX_CHECK_TICKS:
        ax.xaxis.set_major_locator(FixedLocator(_nums(distinct)))
    else:
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=_AUTO_TICKS))  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt))  # type: ignore[no-untyped-call]


def _thin_ticks(
    fig: Figure, ax: Axes, fmt: str, renderer: RendererBase, *, allow_rotation: bool = True
) -> None:
    """Keep the ticks whose labels fit side by side; rotate only if that keeps more of them.

    Measured with the renderer's text sizes at the current layout; a label equal to the one
    before it (two ticks on the same day with a date-only format) is dropped too. The kept
    ticks are fixed, so later draws do not bring the dropped ones back.
    """
    import matplotlib.dates as mdates
    from matplotlib.ticker import FixedLocator

    formatter = mdates.DateFormatter(fmt)  # type: ignore[no-untyped-call]
    lo, hi = sorted(ax.get_xlim())
    locs = [float(x) for x in ax.get_xticks() if lo <= x <= hi]
    labels = [str(formatter(x)) for x in locs]
    font = ax.xaxis.get_major_ticks()[0].label1.get_fontproperties() if locs else None
    if font is None:
        return
    sizes = [renderer.get_text_width_height_descent(s, font, ismath=False) for s in labels]
    xs = [float(ax.transData.transform((x, 0.0))[0]) for x in locs]
    height = max((h for _, h, _ in sizes), default=0.0)
    pad = 6.0
    flat = _keep(xs, labels, lambda i, j: xs[j] - xs[i] >= (sizes[i][0] + sizes[j][0]) / 2 + pad)
    rotated_now = any(t.get_rotation() for t in ax.get_xticklabels())
    sin = math.sin(math.radians(_TICK_ROTATION))
    slanted = _keep(xs, labels, lambda i, j: (xs[j] - xs[i]) * sin >= height + pad / 2)
    if rotated_now or (allow_rotation and len(slanted) > len(flat)):
        kept = slanted
        fig.autofmt_xdate(rotation=int(_TICK_ROTATION), ha="right")
    else:
        kept = flat
    ax.xaxis.set_major_locator(FixedLocator([locs[i] for i in kept]))


def _keep(xs: Sequence[float], labels: Sequence[str], fits: Any) -> list[int]:
    """Greedy left to right: a tick stays if its label fits after the last kept one."""
    kept: list[int] = []
    for j in range(len(xs)):
        if kept and (labels[j] == labels[kept[-1]] or not fits(kept[-1], j)):
            continue
        kept.append(j)
    return kept


# --- the event strip ----------------------------------------------------------------------


def _place_events(
    fig: Figure, strip: Axes, retrains: Sequence[_Event], moves: Sequence[_Event], renderer: RendererBase
) -> None:
    """Flags with labels that overlap neither each other nor another flag's pole.

    Retrains first (in time order), then registry moves. Each label tries the levels from the
    top down, right of its pole and then left of it, in full and then shortened; what fits
    nowhere keeps only a short tick on the strip's baseline (its line in the panels stays).
    Trying the top level first gives the natural staircase: a later flag under an earlier
    label goes one level lower, so its pole stops below that label.
    """
    box = strip.get_window_extent(renderer)
    probe = strip.text(0, 0, "v0 promoted", fontsize=_EVENT_FONT)
    text_height = probe.get_window_extent(renderer).height
    probe.remove()
    foot = 5.0 * fig.dpi / 72.0  # the baseline ticks' height: 5 points, in pixels
    step = text_height + 2.0
    levels = max(1, min(_EVENT_LEVELS, int((box.height - foot - 1.0) // step)))
    placed: list[Bbox] = []
    poles: list[tuple[float, float]] = []
    base = strip.get_xaxis_transform()
    if not retrains and not moves:
        strip.text(
            0.005,
            0.15,
            "no retrains in this period",
            transform=strip.transAxes,
            fontsize=_EVENT_FONT,
            color=_GREY,
            va="bottom",
        )
        return
    for event in [*retrains, *moves]:
        x_data = _num(event.at)
        x_px = float(strip.transData.transform((x_data, 0.0))[0])
        label = _try_labels(fig, strip, event, x_data, x_px, box, foot, step, levels, placed, poles, renderer)
        if label is None:
            top = foot / box.height
        else:
            bbox = label.get_window_extent(renderer)
            placed.append(bbox)
            pole_top = bbox.y0 + bbox.height / 2.0  # the pole reaches the label's middle
            poles.append((x_px, pole_top))
            top = (pole_top - box.y0) / box.height
        strip.plot(
            [x_data, x_data],
            [0.0, top],
            transform=base,
            color=event.color,
            linestyle=event.linestyle,
            linewidth=1.3,
            clip_on=False,
        )


def _try_labels(
    fig: Figure,
    strip: Axes,
    event: _Event,
    x_data: float,
    x_px: float,
    box: Bbox,
    foot: float,
    step: float,
    levels: int,
    placed: Sequence[Bbox],
    poles: Sequence[tuple[float, float]],
    renderer: RendererBase,
) -> Text | None:
    """The first label position that fits, as a Text added to the strip; ``None`` if none."""
    from matplotlib.transforms import offset_copy

    candidates = [s for s in dict.fromkeys((event.label, event.short)) if s]
    gap = 2.0  # pixels kept free around labels and poles
    for text in candidates:
        for level in reversed(range(levels)):
            y_px = box.y0 + foot + level * step
            for ha, dx in (("left", 3.0), ("right", -3.0)):
                label = strip.text(
                    x_data,
                    (y_px - box.y0) / box.height,
                    text,
                    transform=offset_copy(strip.get_xaxis_transform(), fig=fig, x=dx, units="points"),
                    ha=ha,
                    va="bottom",
                    fontsize=_EVENT_FONT,
                    color=event.color,
                    clip_on=False,
                )
                label.set_in_layout(False)
                bb = label.get_window_extent(renderer)
                own_pole_top = bb.y0 + bb.height / 2.0
                fits = (
                    bb.x0 >= box.x0 + 1.0
                    and bb.x1 <= box.x1 - 1.0
                    and bb.y1 <= box.y1 + 1.0
                    and not any(_boxes_near(bb, other, gap) for other in placed)
                    and not any(bb.x0 - gap <= px <= bb.x1 + gap and bb.y0 <= top for px, top in poles)
                    and not any(o.x0 - gap <= x_px <= o.x1 + gap and o.y0 <= own_pole_top for o in placed)
                )
                if fits:
                    return label
                label.remove()
    return None


def _boxes_near(a: Bbox, b: Bbox, gap: float) -> bool:
    return bool(a.x0 < b.x1 + gap and b.x0 < a.x1 + gap and a.y0 < b.y1 + gap / 2 and b.y0 < a.y1 + gap / 2)


# --- overlap check ------------------------------------------------------------------------


def _drawn_texts(fig: Figure) -> list[Text]:
    """Every visible, non-empty text the last draw put on the canvas.

    Tick label objects are reused and some sit outside the view (not drawn): only the labels
    of ticks inside each axis' view interval are counted.
    """
    from matplotlib.text import Text

    tick_labels: set[int] = set()
    drawn: list[Text] = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            eps = (hi - lo) * 1e-9
            for ticks, locs in (
                (axis.get_major_ticks(), axis.get_majorticklocs()),
                (axis.get_minor_ticks(), axis.get_minorticklocs()),
            ):
                for tick in ticks:
                    tick_labels.update((id(tick.label1), id(tick.label2)))
                for tick, loc in zip(ticks, locs, strict=False):
                    if lo - eps <= loc <= hi + eps and tick.get_visible():
                        drawn.extend((tick.label1, tick.label2))
    seen: set[int] = set()
    out: list[Text] = []
    for t in [*drawn, *fig.findobj(match=Text, include_self=False)]:
        if not isinstance(t, Text) or id(t) in seen:
            continue
        seen.add(id(t))
        if id(t) in tick_labels and t not in drawn:
            continue
        if t.get_visible() and t.get_text().strip() and _ancestors_visible(t):
            out.append(t)
    return out


def _ancestors_visible(t: Text) -> bool:
    ax = t.axes
    return ax is None or bool(ax.get_visible())


def _corners(t: Text, renderer: RendererBase) -> list[tuple[float, float]]:
    """The text's rectangle in pixels, rotated with the text."""
    bbox = t.get_window_extent(renderer)
    angle = t.get_rotation() % 180.0
    if angle in (0.0, 90.0):
        return [(bbox.x0, bbox.y0), (bbox.x1, bbox.y0), (bbox.x1, bbox.y1), (bbox.x0, bbox.y1)]
    rotation = t.get_rotation()
    t.set_rotation(0.0)
    flat = t.get_window_extent(renderer)
    t.set_rotation(rotation)
    w, h = flat.width, flat.height
    cx, cy = (bbox.x0 + bbox.x1) / 2.0, (bbox.y0 + bbox.y1) / 2.0
    c, s = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    ux, uy = c * w / 2.0, s * w / 2.0  # half the width, along the text
    vx, vy = -s * h / 2.0, c * h / 2.0  # half the height, across it
    return [
        (cx - ux - vx, cy - uy - vy),
        (cx + ux - vx, cy + uy - vy),
        (cx + ux + vx, cy + uy + vy),
        (cx - ux + vx, cy - uy + vy),
    ]


def _polygons_overlap(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> bool:
    """Separating-axis test of two convex polygons; touching (within half a pixel) is no overlap."""
    tolerance = 0.5
    for poly in (a, b):
        for i, (x0, y0) in enumerate(poly):
            x1, y1 = poly[(i + 1) % len(poly)]
            nx, ny = y0 - y1, x1 - x0
            norm = math.hypot(nx, ny)
            if norm == 0.0:
                continue
            nx, ny = nx / norm, ny / norm
            pa = [x * nx + y * ny for x, y in a]
            pb = [x * nx + y * ny for x, y in b]
            if min(max(pa), max(pb)) - max(min(pa), min(pb)) <= tolerance:
                return False
    return True
