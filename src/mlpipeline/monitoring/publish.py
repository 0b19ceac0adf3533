"""A check in MLflow: one point per check on the champion's monitoring run, which is finished
after every check, and the timeline picture linked from its description.

The monitoring run of a feature set (experiment ``<prefix><name>-monitoring``) holds one
series per measure. A check adds one point to each, at the check's own time and at a step
that counts what the command line counts: with an event time, **the day of the data** (day 0
is the date of the earliest event time stored; a check as of midnight covers the day before,
as the demo's day table says); without one, **the batch** (batch 0 is the first ingested, as
a replay's table numbers them).
Series are named by section (see :func:`check_metrics`): the chosen metric sits beside its
threshold (``champion/r2`` and ``champion/r2_threshold``), each feature's PSI beside the drift
threshold, so the line a retrain is measured against is on the same screen. The run is marked
finished after each check (MLflow accepts points on a finished run), so the UI never shows
monitoring as a run "Running" for ever.

Nothing here may fail a check: the check is already stored; an MLflow failure is returned
as text for the check's record.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from mlpipeline.errors import MlpipelineError
from mlpipeline.featuresets.definition import Definition
from mlpipeline.featuresets.metrics import metric_for
from mlpipeline.featurestore.checks import CheckRecord, CheckRecords
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.tracking import EXPERIMENT_KIND_TAG, NOTE_TAG, experiment_kind
from mlpipeline.settings import Settings

__all__ = [
    "DAY_ORIGIN_KEY",
    "MLFLOW_RUN_KEY",
    "batch_of",
    "check_metrics",
    "day_of",
    "monitoring_note",
    "publish_check",
    "timeline_path",
]

log = logging.getLogger(__name__)

MLFLOW_RUN_KEY = "monitor.mlflow_run"
#: Day 0 of the monitoring charts (ISO date), fixed at the first check that reaches MLflow.
DAY_ORIGIN_KEY = "monitor.day_origin"


def timeline_path(settings: Settings, featureset: str) -> Path:
    return settings.home / "reports" / f"{featureset}-timeline.png"


def day_of(checked_at: datetime, origin: date) -> int:
    """The day of the data a check covers: a check as of midnight covers the day before."""
    covered = (checked_at - timedelta(microseconds=1)).date()
    return max(0, (covered - origin).days)


def batch_of(batches: int) -> int:
    """The batch a check follows, numbered from 0 as a replay's table numbers them."""
    return max(0, batches - 1)


def check_metrics(check: CheckRecord, *, threshold: float | None, psi_threshold: float) -> dict[str, float]:
    """The points one check adds, named by section (MLflow charts a ``section/name`` series in
    its section, sections in name order): ``champion/`` the chosen metric beside its threshold
    and its 95 % interval, and the version measured; ``data/`` the rows judged; ``drift/`` each
    PSI beside the drift threshold; ``metrics/`` the other metrics."""
    details = check.details
    chosen = details.get("metric") or {}
    name = str(chosen.get("name") or "")
    metrics: dict[str, float] = {}
    if check.model_version:  # without a champion nothing was judged
        metrics["data/rows_judged"] = float(check.n_rows)
    if details.get("verdict"):
        for key, value in (details.get("metrics") or {}).items():
            if value is not None and math.isfinite(value):
                section = "champion" if key == name else "metrics"
                metrics[f"{section}/{key}"] = float(value)
        if chosen.get("interval"):
            lower, upper = chosen["interval"]
            metrics[f"champion/{name}_lower_95"], metrics[f"champion/{name}_upper_95"] = lower, upper
    if name and threshold is not None:
        metrics[f"champion/{name}_threshold"] = float(threshold)
    if check.model_version:
        metrics["champion/version"] = float(check.model_version)
    drift = details.get("prediction_drift") or {}
    if drift.get("psi") is not None:
        metrics["drift/psi.prediction"] = float(drift["psi"])
    psi = {k: v for k, v in (details.get("psi") or {}).items() if v is not None and math.isfinite(v)}
    for feature, value in psi.items():
        metrics[f"drift/psi.{feature}"] = float(value)
    if psi or drift.get("psi") is not None:
        metrics["drift/psi_threshold"] = float(psi_threshold)
    return metrics


def monitoring_note(
    d: Definition,
    check: CheckRecord,
    *,
    step: int,
    unit: str,
    origin: date | None,
    threshold: float | None,
    run_id: str,
    picture: str | None,
) -> str:
    """The monitoring run's description: what the series are, the latest check, the timeline."""
    metric = metric_for(d.quality.metric, d.target.task)
    details = check.details
    value = (details.get("metric") or {}).get("value") if details.get("verdict") else None
    bound = "at least" if metric.higher_is_better else "at most"
    measured = (
        f"{metric.label} {value:.4f} on {check.n_rows:,} newly labelled rows"
        if value is not None
        else f"no verdict ({check.n_rows:,} newly labelled rows)"
    )
    wanted = f" (threshold: {bound} {threshold:g})" if threshold is not None else ""
    reasons = ", ".join(details.get("reasons") or []) or "-"
    lines = [
        f"### Monitoring of the champion of '{d.name}'",
        "",
        f"- **Latest check:** {unit} {step} ({check.checked_at:%Y-%m-%d %H:%M} UTC), champion "
        f"v{check.model_version or '-'}: {measured}{wanted}; decision: "
        f"{details.get('decision') or '-'} (reasons: {reasons}).",
        f"- **Steps:** one point per check, at the check's time and at step = {unit} of the data "
        f"({_step_zero(unit, origin)}).",
        f"- **Sections:** *champion*: `{metric.name}` beside `{metric.name}_threshold`, its 95 % "
        "interval, the version measured; *drift*: each `psi.<feature>` beside `psi_threshold`; "
        "*data*: the rows judged; *metrics*: the other metrics.",
    ]
    if picture:
        link = f"get-artifact?path={picture}&run_uuid={run_id}"
        lines += ["", f"**Timeline** ([open the picture]({link})):", "", f"![timeline of '{d.name}']({link})"]
    return "\n".join(lines) + "\n"


def publish_check(
    settings: Settings,
    store: SqlFeatureStore,
    d: Definition,
    records: CheckRecords,
    check: CheckRecord,
    tracker_factory: Callable[[], Any],
    threshold: float | None,
) -> str | None:
    """Metric series and the timeline PNG in the monitoring experiment; the error text on failure."""
    png = _draw(settings, store, d, records, threshold)
    try:
        tracker = tracker_factory()
        run_id = _monitoring_run(tracker, store, d)
        origin = _origin(store, d)
        if origin is not None:
            step, unit = day_of(check.checked_at, origin), "day"
        else:
            step, unit = batch_of(len(store.batches(d))), "batch"
        tracker.log(
            run_id,
            metrics=check_metrics(check, threshold=threshold, psi_threshold=settings.psi_threshold),
            step=step,
            timestamp_ms=int(check.checked_at.replace(tzinfo=UTC).timestamp() * 1000),
        )
        if png is not None:
            tracker.log_artifact(run_id, png)
        note = monitoring_note(
            d,
            check,
            step=step,
            unit=unit,
            origin=origin,
            threshold=threshold,
            run_id=run_id,
            picture=png.name if png is not None else None,
        )
        tracker.log(run_id, tags={NOTE_TAG: note, "mlpipeline.last_check_step": f"{unit} {step}"})
        tracker.end_run(run_id, "FINISHED")
    except MlpipelineError as exc:
        log.warning(
            "could not log the check to MLflow; it is kept in the store", extra={"detail": str(exc)[:300]}
        )
        return f"{exc.code}: {exc}"[:500]
    return None


def _draw(
    settings: Settings,
    store: SqlFeatureStore,
    d: Definition,
    records: CheckRecords,
    threshold: float | None,
) -> Path | None:
    """The timeline picture (:mod:`mlpipeline.monitoring.reports`); None when it cannot be drawn."""
    from mlpipeline.monitoring.reports import draw_timeline

    png = timeline_path(settings, d.name)
    metric = metric_for(d.quality.metric, d.target.task)
    try:
        draw_timeline(
            records.history(limit=500),
            SqlPointerStore(store).history(d.name, limit=200),
            threshold=threshold,
            psi_threshold=settings.psi_threshold,
            path=png,
            title=f"'{d.name}': champion {metric.label} on newly labelled rows",
            metric=metric.label,
        )
    except (OSError, ValueError) as exc:  # a picture must never fail a check
        log.warning("could not draw the monitoring timeline", extra={"detail": str(exc)[:300]})
    return png if png.is_file() else None


def _origin(store: SqlFeatureStore, d: Definition) -> date | None:
    """Day 0 of the charts (None without an event time), read once and kept: rows backfilled
    later must not renumber the days already charted."""
    if not d.event_time:
        return None
    kept = store.get_state(d.name, DAY_ORIGIN_KEY)
    if kept:
        return date.fromisoformat(kept)
    first = store.first_event_time(d)
    if first is None:
        return None
    store.set_state(d.name, DAY_ORIGIN_KEY, first.date().isoformat())
    return first.date()


def _step_zero(unit: str, origin: date | None) -> str:
    if unit == "day" and origin is not None:
        return f"day 0 = {origin.isoformat()}, the date of the first event time"
    return "batch 0 = the first batch ingested"


def _monitoring_run(tracker: Any, store: SqlFeatureStore, d: Definition) -> str:
    """The run that holds the monitoring series (created once per feature set)."""
    run_id = store.get_state(d.name, MLFLOW_RUN_KEY)
    if run_id:
        return run_id
    experiment = tracker.experiment_id(d.name, suffix="-monitoring", tags=_experiment_tags(tracker, d))
    run_id = str(
        tracker.start_run(
            experiment,
            f"champion monitoring · {d.name}",
            {"mlpipeline.featureset": d.name, "mlpipeline.kind": "monitoring"},
        )
    )
    store.set_state(d.name, MLFLOW_RUN_KEY, run_id)
    return run_id


def _experiment_tags(tracker: Any, d: Definition) -> Mapping[str, str]:
    name = tracker.model_name(d.name)
    note = (
        f"Monitoring of the production model of feature set **{d.name}** "
        f"([{name}](#/models/{name})): one run, one point per check, at the day of the data."
    )
    return {EXPERIMENT_KIND_TAG: experiment_kind(d.target.task), NOTE_TAG: note}
