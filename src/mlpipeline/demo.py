"""The main job on the embedded default: the whole continuous-training story, offline.

It replays the synthetic ``demo`` stream (:mod:`mlpipeline.featurestore.synthetic`) one simulated day
at a time, the way production runs it:

1. the first days land in the feature store and version 1 is trained and promoted;
2. every following day: the day's orders land as one batch (a CSV file under
   ``dur/demo/``); the predictor serves a prediction for each order (logged for
   monitoring); at the end of the day the check measures the champion on the orders whose
   delivery times are known by then (labels arrive late), computes drift, and the triggers
   decide;
3. from the drift day on, the world changes: R² falls below the threshold, the
   ``performance`` (and ``drift``) trigger fires, a new version trained on the recent days is
   promoted by the gate, and R² recovers.

Simulated time is passed as ``as_of`` to every check and training, so labels that would not
have arrived yet are not used. The day table, ``dur/reports/demo.png`` and the MLflow store
(runs, versions, aliases, SHAP plots, the monitoring series) tell the story afterwards.
Running it again on the same ``dur/`` is safe: ingested days are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mlpipeline.featuresets import portable
from mlpipeline.featuresets.definition import Definition, available_featuresets, load_definition
from mlpipeline.featurestore.ingest import ingest_file
from mlpipeline.featurestore.sql import SqlFeatureStore, open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_day
from mlpipeline.logs import log_context
from mlpipeline.settings import Settings

__all__ = [
    "CSV_OVERRIDES",
    "DEMO_OVERRIDES",
    "PERIODS",
    "SYNTHETIC",
    "DayRow",
    "DemoReport",
    "run_csv_demo",
    "run_demo",
]

log = logging.getLogger(__name__)

#: The demo's trigger settings: a short training window so a retrain learns the new world
#: fast; no schedule or new-data retrains, so the table shows performance and drift alone.
DEMO_OVERRIDES: dict[str, object] = {
    "r2_threshold": 0.8,
    "training_window": "4d",
    "new_data_rows": 0,
    "max_model_age": "365d",
    "retrain_cooldown": "12h",
    "min_samples": 200,
}


@dataclass(frozen=True)
class DayRow:
    """One line of the day table."""

    day: int
    date: str
    rows: int
    labelled: int
    r2: float | None
    worst_psi: tuple[str, float] | None
    decision: str
    reasons: tuple[str, ...]
    champion: str | None
    retrained: str | None = None
    waiting: int = 0  # labelled rows held for the next check (fewer than min_samples)


@dataclass
class DemoReport:
    days: int
    batches_written: int
    batches_skipped: int
    rows_in_store: int
    table: list[DayRow] = field(default_factory=list)
    trained_versions: list[str] = field(default_factory=list)
    png: Path | None = None
    judged_rows: int = 0  # labelled rows the champion was measured on, over every check


#: Feature sets built on the synthetic delivery stream, and their demo settings over DEMO_OVERRIDES.
SYNTHETIC: dict[str, dict[str, object]] = {"demo": {}, "demo_late": {}}


def run_demo(
    settings: Settings,
    *,
    featureset: str = "demo",
    days: int = 14,
    rows_per_day: int = 2_000,
    drift_day: int | None = 8,
    first_days: int = 3,
    seed: int = 7,
    train_models: bool = True,
    say: Callable[[str], None] = lambda _: None,
    on_day: Callable[[DayRow], None] = lambda _: None,
) -> DemoReport:
    """Replay ``days`` days of the synthetic stream into ``featureset`` (``demo``: delivery minutes,
    regression; ``demo_late``: late or not, a binary target derived from the same rows);
    ``say`` reports set-up steps and ``on_day`` each day's line."""
    from mlpipeline.errors import ConfigError

    if featureset not in SYNTHETIC:
        raise ConfigError(
            f"'{featureset}' is not built on the synthetic stream ({', '.join(SYNTHETIC)}); "
            "replay your own data with --csv FILE"
        )
    settings = settings.model_copy(update={**DEMO_OVERRIDES, **SYNTHETIC[featureset]})
    d = load_definition(featureset, settings.featuresets_dir)
    store = open_store(settings)
    folder = settings.home / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    config = StreamConfig(seed=seed, rows_per_day=rows_per_day, drift_day=drift_day)
    report = DemoReport(days, 0, 0, 0)
    try:
        store.create_schema(
            [
                load_definition(n, settings.featuresets_dir)
                for n in available_featuresets(settings.featuresets_dir)
            ]
        )
        if train_models:
            _start_afresh(settings, store, d, say)
        with log_context(featureset=d.name):
            for day in range(days):
                rows = _land(store, d, folder, config, day, report, say)
                end_of_day = config.start + timedelta(days=day + 1)
                if not train_models:
                    continue
                if day + 1 < first_days:
                    continue
                if day + 1 == first_days:
                    _first_model(settings, store, d, end_of_day, report, say)
                    continue
                row = _serve_and_check(settings, store, d, folder, day, rows, end_of_day, report)
                on_day(row)
        report.rows_in_store = store.count_rows(d)
        if train_models:
            report.png = _picture(settings, store, d)
    finally:
        store.dispose()
    log.info("demo finished", extra={"featureset": d.name, "rows": report.rows_in_store})
    return report


def _start_afresh(
    settings: Settings, store: SqlFeatureStore, d: Definition, say: Callable[[str], None]
) -> None:
    """A second replay would land on the first one's days and models: empty the demo feature set
    (rows, records, registered versions, runs, cached models) first. Other feature sets are
    not touched."""
    import shutil

    from mlpipeline.registry.tracking import Tracker

    tracker = Tracker(settings)
    rows = store.count_rows(d)
    versions = len(tracker.versions(d.name))
    if not rows and not versions:
        return
    tracker.forget(d.name)
    store.forget(d)
    shutil.rmtree(settings.home / "models" / tracker.model_name(d.name), ignore_errors=True)
    say(
        f"starting '{d.name}' afresh: removed {rows:,} rows and {versions} model version(s) of the "
        "previous replay (other feature sets are untouched)"
    )


def _land(
    store: SqlFeatureStore,
    d: Definition,
    folder: Path,
    config: StreamConfig,
    day: int,
    report: DemoReport,
    say: Callable[[str], None],
) -> int:
    path = folder / f"day-{day:03d}.csv"
    if not path.exists():
        frame = generate_day(config, day)
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%f")
    outcome = ingest_file(store, d, path)
    if outcome.skipped:
        report.batches_skipped += 1
    else:
        report.batches_written += 1
    return outcome.batch.row_count if outcome.batch else 0


def _first_model(
    settings: Settings,
    store: SqlFeatureStore,
    d: Definition,
    at: datetime,
    report: DemoReport,
    say: Callable[[str], None],
) -> None:
    from mlpipeline.registry.pointer import SqlPointerStore
    from mlpipeline.training.pipeline import train

    if SqlPointerStore(store).get(d.name) is not None:
        say("a champion exists already (demo ran before); continuing with it")
        return
    result = train(settings, store, d, reason="demo: first model", as_of=at)
    assert result.metrics is not None
    assert result.decision is not None
    report.trained_versions.append(result.version or "")
    say(
        f"trained version {result.version} on the first days: holdout {result.metrics.describe()}; "
        f"gate: {result.decision.action}"
    )


def _serve_and_check(
    settings: Settings,
    store: SqlFeatureStore,
    d: Definition,
    folder: Path,
    day: int,
    rows: int,
    end_of_day: datetime,
    report: DemoReport,
) -> DayRow:
    import pandas as pd

    from mlpipeline.monitoring.check import run_check
    from mlpipeline.serving.predictor import open_predictor

    frame = pd.read_csv(folder / f"day-{day:03d}.csv")
    with open_predictor(settings, d.name, background_log=False) as predictor:
        predictor.refresh()
        features = [f["name"] for f in predictor.current().model.spec["features"]]
        columns = {name: frame[name].to_numpy() for name in [*features, "order_id"]}
        columns["region"] = frame["region"].astype(object).where(frame["region"].notna(), None).tolist()
        predictor.predict_columns(columns, source=f"day {day}")
    result = run_check(settings, store, d, as_of=end_of_day)
    report.judged_rows += result.n_rows
    worst = None
    finite = {k: v for k, v in result.psi.items() if v is not None and k != "target"}
    if finite:
        name = max(finite, key=lambda k: finite[k])
        worst = (name, finite[name])
    retrained = None
    if result.retrain.get("version"):
        report.trained_versions.append(str(result.retrain["version"]))
        retrained = f"v{result.retrain['version']} {result.retrain.get('action')}"
    elif result.retrain.get("error"):
        retrained = "failed"
    from mlpipeline.registry.pointer import SqlPointerStore

    pointer = SqlPointerStore(store).get(d.name)
    decision = result.decision
    return DayRow(
        day,
        end_of_day.strftime("%m-%d"),  # the check's moment, as the timeline's axis shows it
        rows,
        result.n_rows,
        result.metrics.value if result.metrics and result.verdict else None,
        worst,
        decision.action if decision else "-",
        decision.reasons if decision else (),
        pointer.version if pointer else None,
        retrained,
        result.waiting,
    )


def _picture(settings: Settings, store: SqlFeatureStore, d: Definition) -> Path:
    from mlpipeline.featuresets.metrics import metric_for
    from mlpipeline.featuresets.quality import settings_for
    from mlpipeline.featurestore.checks import CheckRecords
    from mlpipeline.monitoring.check import policy_from
    from mlpipeline.monitoring.reports import draw_timeline
    from mlpipeline.registry.pointer import SqlPointerStore

    settings = settings_for(settings, d)
    metric = metric_for(d.quality.metric, d.target.task).label
    synthetic = d.name in SYNTHETIC
    return draw_timeline(
        CheckRecords(store, d.name).history(limit=1000),
        SqlPointerStore(store).history(d.name, limit=200),
        threshold=policy_from(settings, d).r2_threshold,
        psi_threshold=settings.psi_threshold,
        path=settings.home / "reports" / ("demo.png" if d.name == "demo" else f"demo-{d.name}.png"),
        title=(
            f"{d.name}: champion {metric} on each day's newly labelled orders "
            "(synthetic stream, drift injected)"
            if synthetic
            else f"replay of '{d.name}': champion {metric} on each new batch"
        ),
        metric=metric,
    )


#: Settings for replaying a real CSV without timestamps: every batch is checked at once on the
#: wall clock, so there is no cooldown, and only the performance and drift triggers speak. A
#: feature set with an event time replays on the data's clock with the settings as they are.
CSV_OVERRIDES: dict[str, object] = {
    "new_data_rows": 0,
    "max_model_age": "365d",
    "retrain_cooldown": "0s",
    "training_window": "",
}

#: ``--every`` periods and their pandas period codes.
PERIODS = {"day": "D", "week": "W", "month": "M", "quarter": "Q", "year": "Y"}


@dataclass(frozen=True)
class Batch:
    """One batch of a replay: its rows, its label in the table, and the moment it is checked
    (``None``: on the wall clock)."""

    rows: Any
    label: str
    as_of: datetime | None


def run_csv_demo(
    settings: Settings,
    featureset: str,
    csv: Path,
    *,
    batches: int = 8,
    first_batches: int = 2,
    order_by: str | None = None,
    every: str | None = None,
    say: Callable[[str], None] = lambda _: None,
    on_start: Callable[[int], None] = lambda _: None,
    on_day: Callable[[DayRow], None] = lambda _: None,
) -> DemoReport:
    """Replay a real data set in batches, the way it would have arrived.

    With an event time (and no other ``order_by``) the rows arrive in time order, in ``batches``
    of about equal size (rows of one moment stay together) or one batch per ``every`` period,
    and each batch is checked *as of* its end on the data's clock: labels known by then, and
    cooldown, model age and pending retrains measured on that clock, with the settings as they
    are. Without one, the rows are ordered by ``order_by`` (default: the first categorical
    feature), so later batches come from a part of the population the model has not seen, and
    checked on the wall clock with :data:`CSV_OVERRIDES`.
    """
    from mlpipeline.errors import ConfigError, DataValidationError, NotFoundError
    from mlpipeline.featurestore.ingest import ingest_frame, read_batch_file
    from mlpipeline.featurestore.validation import renamed
    from mlpipeline.monitoring.check import run_check
    from mlpipeline.registry.pointer import SqlPointerStore
    from mlpipeline.serving.predictor import open_predictor
    from mlpipeline.training.pipeline import train

    d = load_definition(featureset, settings.featuresets_dir)
    if not csv.is_file():
        raise NotFoundError(f"data file {csv} does not exist")
    if not 2 <= first_batches < batches:
        raise ConfigError("batches must exceed first_batches, and first_batches must be at least 2")
    frame = renamed(read_batch_file(csv, d), d, csv.name)  # the feature set's own column names
    on_clock = d.event_time is not None and order_by in (None, d.event_time)
    if on_clock:
        parts = _time_batches(frame, d, batches, every)
        say(
            f"replaying {len(frame):,} rows of {csv.name} in {len(parts)} batches by '{d.event_time}', "
            "each checked as of its end on the data's clock"
        )
    else:
        if every is not None:
            raise ConfigError(f"--every needs a feature set with an event_time; '{d.name}' has none")
        settings = settings.model_copy(update=CSV_OVERRIDES)
        parts, key = _ordered_batches(frame, d, batches, order_by)
        say(
            f"replaying {len(frame):,} rows of {csv.name} in {batches} batches ordered by '{key}' "
            f"('{d.name}' has no event_time: checked on the wall clock, no cooldown)"
        )
    if len(parts) <= first_batches:
        raise ConfigError(
            f"the replay has {len(parts)} batch(es): it needs more than {first_batches} "
            "(the first ones train the first model); ask for more --batches or a shorter --every"
        )
    on_start(len(parts) - first_batches)
    store = open_store(settings)
    report = DemoReport(len(parts), 0, 0, 0)
    try:
        store.create_schema([d])
        for i, batch in enumerate(parts):
            part = batch.rows
            outcome = ingest_frame(store, d, part.reset_index(drop=True), source=f"{csv.name} batch {i}")
            if outcome.skipped:
                report.batches_skipped += 1
            else:
                report.batches_written += 1
            if i + 1 < first_batches:
                continue
            if i + 1 == first_batches:
                if SqlPointerStore(store).get(d.name) is None:
                    try:
                        first = train(settings, store, d, reason="replay: first model", as_of=batch.as_of)
                    except DataValidationError as exc:  # too few rows yet: the checks retry
                        say(
                            f"no first model on batches 0-{i} ({exc}); the replay goes on, and each "
                            "check tries again (no_model) as labelled rows arrive"
                        )
                        continue
                    report.trained_versions.append(first.version or "")
                    say(f"trained version {first.version} on batches 0-{i}: {_verdict(first)}")
                continue
            if SqlPointerStore(store).get(d.name) is not None:  # the champion serves the batch
                with open_predictor(settings, d.name, background_log=False) as predictor:
                    names = portable.input_names(predictor.current().model.spec)
                    columns = {n: part[n].astype(object).where(part[n].notna(), None).tolist() for n in names}
                    predictor.predict_columns(columns, source=f"batch {i}")
            result = run_check(settings, store, d, as_of=batch.as_of)
            worst = max(
                ((k, v) for k, v in result.psi.items() if v is not None and k != "target"),
                key=lambda kv: kv[1],
                default=None,
            )
            if result.retrain.get("version"):
                report.trained_versions.append(str(result.retrain["version"]))
            pointer = SqlPointerStore(store).get(d.name)
            judged = result.n_rows if result.model_version else 0  # without a champion: not judged
            report.judged_rows += judged
            on_day(
                DayRow(
                    i,
                    batch.label,
                    len(part),
                    judged,
                    result.metrics.value if result.metrics and result.verdict else None,
                    worst,
                    result.decision.action if result.decision else "-",
                    result.decision.reasons if result.decision else (),
                    pointer.version if pointer else None,
                    f"v{result.retrain['version']} {result.retrain.get('action')}"
                    if result.retrain.get("version")
                    else ("failed" if result.retrain.get("error") else None),
                    result.waiting,
                )
            )
        report.rows_in_store = store.count_rows(d)
        report.png = _picture(settings, store, d)
    finally:
        store.dispose()
    return report


def _with_year(fmt: str) -> str:
    """The picture's date format with the year a table has no axis label to carry."""
    if "%Y" in fmt:
        return fmt
    return "%Y-" + fmt if fmt.startswith("%m") else "%Y-%m-%d " + fmt


def _verdict(trained: Any) -> str:
    """The gate's word on a first model, with the way out when it holds it back."""
    decision = trained.decision
    if decision is None:
        return "not judged"
    if decision.action == "promote":
        return "promoted"
    return (
        f"{decision.action}: {decision.reason}. If this is good for your problem, lower the floor "
        "with [quality] floor in the definition; monitoring retries as new labelled rows arrive"
    )


def _ordered_batches(
    frame: Any, d: Definition, batches: int, order_by: str | None
) -> tuple[list[Batch], str]:
    """Shuffled (seeded), then grouped by ``order_by``: each group arrives in random order, and a
    new group is a part of the population the model has not seen yet."""
    from mlpipeline.errors import ConfigError

    categorical = [n for n, f in d.features.items() if f.type == "categorical"]
    key = order_by or (categorical[0] if categorical else next(iter(d.features)))
    if key not in frame.columns:
        raise ConfigError(f"cannot order the replay by '{key}': the file has no such column")
    frame = frame.sample(frac=1.0, random_state=7).sort_values(key, kind="stable").reset_index(drop=True)
    parts = []
    for i in range(batches):
        part = frame.iloc[round(i * len(frame) / batches) : round((i + 1) * len(frame) / batches)]
        values = part[key].astype(str)
        parts.append(Batch(part, values.iloc[len(values) // 2][:10] if len(values) else "-", None))
    return parts, key


def _time_batches(frame: Any, d: Definition, batches: int, every: str | None) -> list[Batch]:
    """The rows in event-time order, cut into batches that each end at a moment of the data."""
    import pandas as pd

    from mlpipeline.errors import ConfigError, DataValidationError, Problem
    from mlpipeline.monitoring.reports import date_format

    assert d.event_time is not None
    if d.event_time not in frame.columns:
        raise ConfigError(f"the file has no '{d.event_time}' column (the event_time of '{d.name}')")
    raw = frame[d.event_time]
    times = pd.to_datetime(raw.astype("string").str.strip(), errors="coerce", utc=True, format="ISO8601")
    bad = times.isna()
    if bad.any():
        rows = [int(i) + 2 for i in bad.to_numpy().nonzero()[0][:5]]  # file lines: header is line 1
        raise DataValidationError(
            [Problem(d.event_time, "type", f"{int(bad.sum())} row(s) without an ISO-8601 time", rows)],
            source=d.name,
            outcome="nothing replayed",
        )
    times = times.dt.tz_localize(None)
    order = times.sort_values(kind="stable").index
    frame, times = frame.loc[order].reset_index(drop=True), times.loc[order].reset_index(drop=True)
    if every is not None:
        if every not in PERIODS:
            raise ConfigError(f"--every must be one of {', '.join(PERIODS)}, got '{every}'")
        periods = times.dt.to_period(PERIODS[every])
        cuts = [(p, frame.loc[periods == p]) for p in periods.unique()]
        ends = [p.end_time.floor("s").to_pydatetime() for p, _ in cuts]  # checked as the period ends
        fmt = _with_year(date_format(ends))
        return [Batch(part, end.strftime(fmt), end) for (_, part), end in zip(cuts, ends, strict=True)]
    # About equal batches; rows of one moment stay together (a batch ends where the time moves on).
    first_of_moment = ~times.duplicated()
    rank = pd.Series(range(len(times)))
    start = rank.where(first_of_moment).ffill().astype(int)
    number = (start * batches // len(times)).to_numpy()
    out = []
    ends = [times[number == b].max().to_pydatetime() for b in sorted(set(number))]
    fmt = _with_year(date_format(ends))
    for b, end in zip(sorted(set(number)), ends, strict=True):
        out.append(Batch(frame.loc[number == b], end.strftime(fmt), end))
    return out
