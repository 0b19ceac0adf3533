"""The ``mlpipeline`` command line: a thin shell over the package's functions.

Every command exits 0 on success. On failure it prints one line,
``error MLP-xxx: what went wrong and how to fix it``, on stderr and exits with the
error's code (2 configuration, 3 invalid data, 4 storage, 1 other); ``--verbose`` adds
the traceback and INFO-level logs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mlpipeline import __version__
from mlpipeline.errors import (
    BusyError,
    ConfigError,
    DataValidationError,
    DefinitionError,
    MlpipelineError,
    Problem,
)
from mlpipeline.featuresets.definition import Definition, available_featuresets, load_definition
from mlpipeline.featuresets.metrics import METRICS, metric_for
from mlpipeline.logs import configure_logging, log_context, redact, register_secret
from mlpipeline.settings import Settings, load_settings, parse_duration

__all__ = ["app", "main"]

log = logging.getLogger(__name__)

app = typer.Typer(
    name="mlpipeline",
    help="Continuous-training pipeline: feature store, training, registry, serving, monitoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped or redirected, tables get a wide page instead of 80 columns, so nothing is cut.
_PIPED_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "0") or 0) or 240
out = Console(soft_wrap=True, width=_PIPED_WIDTH)
err = Console(stderr=True, soft_wrap=True)

#: Exit code for an unexpected error (a bug): EX_SOFTWARE.
EXIT_BUG = 70


@dataclass
class _State:
    verbose: bool = False
    settings: Settings | None = field(default=None)


_state = _State()


def _settings() -> Settings:
    """Build the settings once per process, at the entry point, and set up logging."""
    if _state.settings is None:
        settings = load_settings()
        for secret in settings.secret_values():
            register_secret(secret)
        configure_logging(
            settings.log_level,
            settings.log_dir if settings.logs_enabled else None,
            stderr_level="DEBUG" if _state.verbose else "WARNING",
        )
        _state.settings = settings
    return _state.settings


def _version(value: bool) -> None:
    if value:
        out.print(f"mlpipeline {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show INFO logs and tracebacks on errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Continuous-training pipeline: feature store, training, registry, serving, monitoring."""
    _state.verbose = verbose


FeaturesetOption = Annotated[
    str,
    typer.Option(
        "--featureset", "-f", help="Feature-set name (a definition file in the featuresets folder)."
    ),
]


def _definition(name: str, settings: Settings) -> Definition:
    return load_definition(name, settings.featuresets_dir)


@contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Any]:
    """A progress bar on stderr for long writes; a no-op callback when not useful."""
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@app.command()
def init(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the changes to existing tables; change nothing.")
    ] = False,
) -> None:
    """Create the durable folders and the feature-store tables, and bring existing tables up to
    their definitions (new features become new columns). Safe to run again."""
    from mlpipeline.featurestore.sql import open_store

    settings = _settings()
    names = available_featuresets(settings.featuresets_dir)
    definitions = [_definition(n, settings) for n in names]
    store = open_store(settings)
    try:
        plan = store.evolve_schema(definitions, dry_run=dry_run)
        if not dry_run:
            for folder in (settings.home, settings.home / "models", settings.home / "mlflow"):
                folder.mkdir(parents=True, exist_ok=True)
            store.create_schema(definitions)
    finally:
        store.dispose()
    url = store.engine.url.render_as_string(hide_password=True)
    changes = plan.describe(created=dry_run)
    if dry_run:
        out.print(f"dry run on {url}: " + ("nothing to change" if not changes else "would change:"))
        for line in changes:
            out.print(f"  {line}")
        return
    for line in changes:
        out.print(f"changed {line}")
    out.print(f"feature store ready at {url}: tables for {', '.join(names)}")


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="CSV (UTF-8, comma-separated, header) or Parquet file.")],
    featureset: FeaturesetOption,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse the batch if any row is already stored (generated keys), instead of skipping it.",
        ),
    ] = False,
) -> None:
    """Validate FILE against the feature set and write it as one batch, or nothing at all.

    A file without the target column is stored as unlabelled rows; attach their labels later
    with 'mlpipeline label'."""
    from mlpipeline.featurestore.ingest import ingest_frame, read_batch_file
    from mlpipeline.featurestore.sql import open_store

    settings = _settings()
    d = _definition(featureset, settings)
    with log_context(featureset=d.name):
        frame = read_batch_file(file, d)
        store = open_store(settings)
        try:
            store.create_schema([d])
            with _progress(
                f"ingesting {file.name}", len(frame.index) > settings.ingest_chunk_rows
            ) as progress:
                outcome = ingest_frame(store, d, frame, source=str(file), progress=progress, strict=strict)
            total = store.count_rows(d)
        finally:
            store.dispose()
    if outcome.duplicate_of is not None:
        first = outcome.duplicate_of
        out.print(
            f"skipped {file}: the same content was ingested as batch {first.batch_id} "
            f"on {first.ingested_at:%Y-%m-%d %H:%M:%S} UTC ({first.row_count:,} rows); nothing written. "
            f"'{d.name}' holds {total:,} rows."
        )
    elif outcome.batch is None:
        out.print(
            f"nothing written: all {outcome.skipped_rows:,} rows of {file} are already stored. "
            f"'{d.name}' holds {total:,} rows."
        )
    else:
        skipped = (
            f" skipped {outcome.skipped_rows:,} rows already stored by earlier batches."
            if outcome.skipped_rows
            else ""
        )
        out.print(
            f"ingested {outcome.written:,} rows from {file} into '{d.name}' as batch "
            f"{outcome.batch.batch_id};{skipped} '{d.name}' holds {total:,} rows."
        )
        if outcome.ignored_columns:
            out.print(f"ignored columns not in the definition: {', '.join(outcome.ignored_columns)}")
        if outcome.unlabelled_rows:
            where = ""
            if outcome.generated_keys is not None:
                lo, hi = outcome.generated_keys
                key = d.key_columns[0]
                where = f" (this batch's rows got {key} {lo:,}–{hi:,}, in the order they were written)"
            out.print(
                f"{outcome.unlabelled_rows:,} rows have no label yet: attach their labels later with "
                f"'mlpipeline label FILE -f {d.name}', by key{where}."
            )


@app.command()
def label(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV, Parquet or JSON-lines file: the key, the target, optionally the label time."
        ),
    ],
    featureset: FeaturesetOption,
    relabel: Annotated[
        bool,
        typer.Option(
            "--relabel", help="Replace labels that differ from the stored ones (each change is audited)."
        ),
    ] = False,
) -> None:
    """Attach labels that arrived after their rows, by key, in one transaction (or nothing at all)."""
    from mlpipeline.featurestore.labels import label_file
    from mlpipeline.featurestore.sql import open_store

    settings = _settings()
    d = _definition(featureset, settings)
    with log_context(featureset=d.name):
        store = open_store(settings)
        try:
            store.create_schema([d])
            outcome = label_file(store, d, file, relabel=relabel)
        finally:
            store.dispose()
    if outcome.duplicate_of is not None:
        first = outcome.duplicate_of
        out.print(
            f"skipped {file}: the same labels were attached as batch {first.batch_id} on "
            f"{first.ingested_at:%Y-%m-%d %H:%M:%S} UTC; nothing written."
        )
    elif outcome.batch is None:
        out.print(
            f"nothing to do: all {outcome.rows:,} labels in {file} are already stored; nothing written."
        )
    else:
        parts = [f"labelled {outcome.labelled:,} rows"]
        if outcome.relabelled:
            parts.append(f"relabelled {outcome.relabelled:,} (each audited)")
        if outcome.unchanged:
            parts.append(f"{outcome.unchanged:,} already had these labels")
        out.print(f"'{d.name}': {', '.join(parts)}; from {file} as batch {outcome.batch.batch_id}.")


@app.command()
def status(
    featureset: Annotated[
        str | None, typer.Option("--featureset", "-f", help="Only this feature set.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    no_registry: Annotated[
        bool, typer.Option("--no-registry", help="Do not ask MLflow for the pending challenger.")
    ] = False,
) -> None:
    """Rows and batches, the champion and its age, recent checks, triggers and the challenger."""
    from mlpipeline.featurestore.sql import open_store

    settings = _settings()
    names = [featureset] if featureset else available_featuresets(settings.featuresets_dir)
    store = open_store(settings)
    report: list[dict[str, Any]] = []
    try:
        for name in names:
            d = _definition(name, settings)
            ready = store.has_table(d)
            batches = store.batches(d) if ready else []
            last = batches[-1] if batches else None
            entry: dict[str, Any] = {
                "featureset": d.name,
                "table": d.table,
                "initialised": ready,
                "rows": store.count_rows(d) if ready else 0,
                "batches": len(batches),
                "last_batch_at": last.ingested_at.isoformat() if last else None,
                "last_batch_source": last.source if last else None,
            }
            if ready:
                from mlpipeline.monitoring.check import status_of

                entry["serving"] = status_of(settings, store, d, with_registry=not no_registry)
            report.append(entry)
    finally:
        store.dispose()
    if as_json:
        out.print_json(json.dumps(report, default=str))
        return
    table = Table("feature set", "table", "rows", "batches", "last batch (UTC)", "source")
    for r in report:
        table.add_row(
            r["featureset"],
            r["table"],
            f"{r['rows']:,}" if r["initialised"] else "not initialised: run 'mlpipeline init'",
            str(r["batches"]),
            r["last_batch_at"] or "-",
            r["last_batch_source"] or "-",
        )
    out.print(table)
    for r in report:
        serving = r.get("serving")
        if serving:
            _print_serving(r["featureset"], serving)


def _print_serving(name: str, s: dict[str, Any]) -> None:
    champion = s["champion"]
    if champion is None:
        out.print(f"'{name}': no champion yet (mlpipeline train -f {name})", markup=False, highlight=False)
    else:
        age = champion["age_hours"]
        replay = (
            f" on the data's clock (the last check ran as of {str(s.get('clock_at'))[:19]})"
            if s.get("clock") == "simulated"
            else ""
        )
        out.print(
            f"'{name}': champion version {champion['version']}, promoted {champion['promoted_at']} "
            f"by {champion['promoted_by']} ({_first_line(champion['reason'], 240)})"
            + (f", trained {age:g} h ago{replay}" if age is not None else "")
            + (
                ", trained after the last check's moment (another clock: on a replay, train with --as-of)"
                if champion.get("trained_after_clock")
                else ""
            ),
            markup=False,
            highlight=False,
        )
    if s.get("challenger"):
        out.print(f"  challenger awaiting approval: {s['challenger']}", markup=False, highlight=False)
    quality = s.get("quality") or {}
    defined = {k: v for k, v in quality.items() if v["source"] != "default"}
    if defined:
        shown = ", ".join(f"{k} {v['value']} ({v['source']})" for k, v in defined.items())
        out.print(f"  quality in force (others: defaults): {shown}", markup=False, highlight=False)
    _print_tuning(s.get("tuning") or {})
    pending = s.get("retrain_pending")
    if pending:
        why = "+".join(pending.get("reasons") or [])
        if pending.get("deferred"):
            when = f"the first check from {pending.get('allowed_at')} (after the cooldown) runs it"
        else:
            when = f"{pending.get('error', '')[:120]}; the next check retries it"
        out.print(
            f"  retrain pending since {pending.get('decided_at')} ({why}): {when}",
            markup=False,
            highlight=False,
        )
    out.print(
        f"  labelled rows since the last training: {s['rows_since_training']:,}; "
        f"last retrain started: {s['last_retrain_started_at'] or 'never'}; "
        f"next scheduled check: {s['next_check_at'] or 'no watch running'}",
        markup=False,
        highlight=False,
    )
    if s["checks"]:
        label = (s.get("metric") or {}).get("label", "R²")
        table = Table(
            "checked at (UTC)", "version", "rows", "waiting", label, "out of range", "decision", "reasons"
        )
        for c in s["checks"]:
            outside = c.get("out_of_range")
            value = c["metric"]["value"] if c.get("metric") else c["r2"]
            table.add_row(
                c["checked_at"][:19],
                c["model_version"] or "-",
                f"{c['rows']:,}",
                f"{c.get('waiting') or 0:,}",
                "-" if value is None else f"{value:.3f}",
                "-" if not outside else f"{outside['share']:.1%}",
                c["decision"] or "-",
                ",".join(c["reasons"]) or "-",
            )
        out.print(table)


def _print_tuning(t: dict[str, Any]) -> None:
    last = t.get("last_study")
    if last:
        label = METRICS[last["metric"]].label if last["metric"] in METRICS else last["metric"]
        if last.get("version"):
            outcome = f"refitted as version {last['version']} ({last.get('action')})"
        elif last.get("action") == "hold":
            outcome = "nothing registered (the champion's own configuration won)"
        else:
            outcome = "not refitted (the refit did not finish)"
        out.print(
            f"  last tuning study {last['study']}: {last['complete']} complete trials, best cross-validated "
            f"{label} {last['best_value']:.4f} (trial {last['best_trial']}), finished "
            f"{last['finished_at']}, {outcome}; retrains tune: {t.get('when')}",
            markup=False,
            highlight=False,
        )
    elif t.get("when") not in (None, "never"):
        out.print(f"  no tuning study yet; retrains tune: {t['when']}", markup=False, highlight=False)
    if t.get("in_progress"):
        state = (
            "is running (the training lease is held)"
            if t.get("in_progress_running")
            else "was interrupted: 'mlpipeline tune' resumes it"
        )
        out.print(f"  tuning study {t['in_progress']} {state}", markup=False, highlight=False)


@app.command()
def featuresets(
    name: Annotated[str | None, typer.Argument(help="Show this definition in full.")] = None,
) -> None:
    """List the feature-set definitions, or show one."""
    settings = _settings()
    if name is None:
        # Every file is listed: one that does not load is shown with its error, not in its place.
        broken: list[ConfigError] = []
        for n in available_featuresets(settings.featuresets_dir):
            try:
                d = _definition(n, settings)
            except ConfigError as exc:
                broken.append(exc)
                out.print(f"{n}: invalid: {exc}", markup=False, highlight=False)
                continue
            about = f"{d.description} " if d.description else ""
            kind = d.target.task if d.target.task == "regression" else f"{d.target.task} classifier"
            out.print(
                f"{n}: {about}(table {d.table}, {kind}, {len(d.model_features)} model features)",
                markup=False,
                highlight=False,
            )
        if broken:
            raise DefinitionError(
                f"{len(broken)} definition(s) do not load; each is listed above with its fix"
            )
        return
    d = _definition(name, settings)
    out.print_json(json.dumps(d.model_dump(mode="json")))


@app.command()
def generate(
    out_file: Annotated[Path, typer.Argument(help="CSV or Parquet file to write.")],
    days: Annotated[int, typer.Option(min=1, help="Number of days to generate.")] = 7,
    first_day: Annotated[int, typer.Option(min=0, help="Index of the first day.")] = 0,
    rows_per_day: Annotated[int, typer.Option(min=1, help="Orders per day.")] = 2_000,
    seed: Annotated[int, typer.Option(help="Random seed; equal seeds give equal data.")] = 7,
    drift_day: Annotated[int | None, typer.Option(min=0, help="Day from which the world drifts.")] = None,
) -> None:
    """Write the synthetic 'demo' stream (delivery times with delayed labels) to a file."""
    from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream

    _settings()
    frame = generate_stream(
        StreamConfig(seed=seed, rows_per_day=rows_per_day, drift_day=drift_day), days, first_day
    )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if out_file.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(out_file, index=False)
    else:
        frame.to_csv(out_file, index=False, date_format="%Y-%m-%dT%H:%M:%S.%f")
    out.print(f"wrote {len(frame.index):,} rows ({days} days from day {first_day}) to {out_file}")


@app.command()
def demo(
    days: Annotated[int, typer.Option(min=4, help="Days of the synthetic stream to replay.")] = 14,
    rows_per_day: Annotated[int, typer.Option(min=100, help="Orders per day.")] = 2_000,
    drift_day: Annotated[int, typer.Option(min=0, help="Day from which the world drifts.")] = 8,
    train_models: Annotated[
        bool, typer.Option("--train/--no-train", help="Train, serve and check (or only land the data).")
    ] = True,
    featureset: Annotated[
        str,
        typer.Option(
            "--featureset", "-f", help="'demo' (synthetic stream) or a feature set replayed from --csv."
        ),
    ] = "demo",
    csv: Annotated[Path | None, typer.Option(help="Replay this CSV in batches (with --featureset).")] = None,
    batches: Annotated[int, typer.Option(min=3, help="Batches of a --csv replay.")] = 8,
    order_by: Annotated[
        str | None,
        typer.Option(
            help="Column that orders a --csv replay (default: the event time, else the first categorical)."
        ),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(
            help="One batch per period of the event time: day, week, month, quarter or year (--csv)."
        ),
    ] = None,
) -> None:
    """The whole CT loop: land, serve, check, retrain, recover (synthetic stream, or a CSV replay).

    A --csv replay of a feature set with an event time runs on the data's clock: each batch is
    checked as of its end (labels known by then; cooldown and model age on that clock).
    """
    from mlpipeline.demo import SYNTHETIC, DayRow, run_csv_demo, run_demo

    if (featureset not in SYNTHETIC) != (csv is not None):
        raise typer.BadParameter(
            "replaying a feature set needs --csv FILE, and --csv needs --featureset NAME "
            f"(without --csv: {' or '.join(SYNTHETIC)}, on the synthetic stream)"
        )

    from mlpipeline.demo import PERIODS

    every = every.strip().lower() if every is not None else None
    if every is not None and every not in PERIODS:
        raise typer.BadParameter(f"must be one of {', '.join(PERIODS)}, got '{every}'", param_hint="--every")
    settings = _settings()
    on_clock = csv is None
    d = _definition(featureset, settings)
    metric_label = metric_for(d.quality.metric, d.target.task).label
    if csv is not None:
        on_clock = d.event_time is not None and order_by in (None, d.event_time)
        if every is not None and not on_clock:
            raise ConfigError(
                f"--every cuts the replay by its event time '{d.event_time}', and --order-by names "
                f"another column '{order_by}'; drop one of them"
                if d.event_time
                else f"--every cuts the replay by event time, and '{d.name}' has no event_time; "
                "use --batches instead"
            )
    # The reasons come last: they are as long as the triggers that fired, and push nothing.
    layout = "{:>3}  {:<16}  {:>6}  {:>7}  {:>7}  {:>7}  {:<30}  {:<8}  {:>8}  {:<14}  {}"
    header = layout.format(
        "day" if csv is None else "#",
        "as of" if on_clock else (order_by or "batch"),
        "rows",
        "judged",
        "waiting",
        metric_label,
        "drift (max PSI)",
        "decision",
        "champion",
        "retrain",
        "reasons",
    ).rstrip()
    lines: list[DayRow] = []

    def on_day(row: DayRow) -> None:
        # The table is the demo's output: on a terminal it prints above the progress bar; sent to
        # a file or a pipe it goes to stdout with the summary, so '> log' keeps it.
        table = bar.console if out.is_terminal else out
        if not lines:
            table.print(header, markup=False, highlight=False)
        lines.append(row)
        table.print(
            layout.format(
                row.day,
                row.date,
                f"{row.rows:,}",
                f"{row.labelled:,}",
                f"{row.waiting:,}",
                "-" if row.r2 is None else f"{row.r2:.3f}",
                "-" if row.worst_psi is None else f"{row.worst_psi[0][:23]} {row.worst_psi[1]:.2f}",
                row.decision,
                f"v{row.champion}" if row.champion else "-",
                row.retrained or "-",
                ",".join(row.reasons) or "-",
            ).rstrip(),
            markup=False,
            highlight=False,
        )
        bar.update(task, advance=1)

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
    ) as bar:
        say = lambda line: bar.console.print(line, markup=False, highlight=False)  # noqa: E731
        if csv is not None:
            task = bar.add_task("replaying batches", total=None)
            report = run_csv_demo(
                settings,
                featureset,
                csv,
                batches=batches,
                order_by=order_by,
                every=every,
                say=say,
                on_start=lambda total: bar.update(task, total=total),
                on_day=on_day,
            )
        else:
            task = bar.add_task("replaying days", total=max(days - 3, 1))
            report = run_demo(
                settings,
                featureset=featureset,
                days=days,
                rows_per_day=rows_per_day,
                drift_day=drift_day,
                train_models=train_models,
                say=say,
                on_day=on_day,
            )
    out.print(
        f"demo: {report.batches_written} new batch(es), {report.batches_skipped} already present; "
        f"'{featureset}' holds {report.rows_in_store:,} rows; "
        f"versions trained: {', '.join(report.trained_versions) or '-'}.",
        markup=False,
        highlight=False,
    )
    if report.png:
        out.print(f"timeline: {report.png}", markup=False, highlight=False)
        out.print("see it in MLflow: mlpipeline ui   (it prints links to the runs, model and monitoring)")


@contextmanager
def _promoter() -> Iterator[Any]:
    """A promoter over the configured tracking server and pointer store, closed afterwards."""
    from mlpipeline.featurestore.sql import open_store
    from mlpipeline.registry.model_cache import ModelCache
    from mlpipeline.registry.pointer import SqlPointerStore
    from mlpipeline.registry.promotion import Promoter
    from mlpipeline.registry.tracking import Tracker

    settings = _settings()
    store = open_store(settings)
    try:
        tracker = Tracker(settings)
        yield Promoter(tracker, SqlPointerStore(store), ModelCache(settings.home / "models", lambda: tracker))
    finally:
        store.dispose()


ReasonOption = Annotated[
    str, typer.Option("--reason", "-r", help="Why: recorded in the run, the registry and the audit history.")
]


@app.command()
def train(
    featureset: FeaturesetOption,
    reason: ReasonOption = "manual",
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Train as of this moment (ISO-8601): labels known by then; the model's age counts "
            "from it. For replays and backfills, with check --as-of.",
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(help="local (this process) or dask (MLPIPELINE_DASK_SCHEDULER, else a local cluster)."),
    ] = "local",
) -> None:
    """Train, evaluate and gate a new model version; promote it if it beats production."""
    from mlpipeline.featurestore.sql import open_store
    from mlpipeline.training.pipeline import train as run_train

    if engine not in ("local", "dask"):
        raise typer.BadParameter("use local or dask", param_hint="--engine")
    moment = _as_of(as_of)
    settings = _settings()
    d = _definition(featureset, settings)
    store = open_store(settings)
    try:
        store.create_schema([d])
        result = run_train(settings, store, d, reason=reason, as_of=moment, engine=engine)
    finally:
        store.dispose()
    assert result.metrics is not None
    assert result.decision is not None
    m = result.metrics
    others = ", ".join(f"{METRICS[k].label} {v:.4g}" for k, v in m.values.items() if k != m.metric)
    out.print(
        f"trained '{d.name}' version {result.version} (run {result.run_id}): holdout {m.describe()} "
        f"({others}) on {m.n:,} rows",
        markup=False,
        highlight=False,
    )
    out.print(f"gate: {result.decision.action}: {result.decision.reason}", markup=False, highlight=False)
    steps = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
    out.print(f"steps: {steps}", markup=False, highlight=False)


@app.command()
def tune(
    featureset: FeaturesetOption,
    trials: Annotated[
        int | None,
        typer.Option(
            "--trials", min=1, help="End with this many complete trials (default: \\[model.tuning] trials)."
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout", help="Stop the search after this long, e.g. 10m (default: \\[model.tuning] timeout)."
        ),
    ] = None,
    reason: ReasonOption = "manual tuning",
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Tune and train as of this moment (ISO-8601), as train --as-of."),
    ] = None,
) -> None:
    """Search hyperparameters on the training part, refit the best and gate it like any retrain.

    A study interrupted (Ctrl-C, kill -9) resumes from its complete trials when run again on
    the same data.
    """
    from mlpipeline.featurestore.sql import open_store
    from mlpipeline.training.pipeline import train as run_train
    from mlpipeline.training.study import TuneRequest
    from mlpipeline.training.tuning import check_tuning, tuning_of

    moment = _as_of(as_of)
    settings = _settings()
    d = _definition(featureset, settings)
    check_tuning(d)
    wanted = tuning_of(d)
    budget = timeout if timeout is not None else wanted.timeout
    try:
        seconds = parse_duration(budget).total_seconds() if budget is not None else None
    except ConfigError as exc:
        raise ConfigError(f"--timeout: {exc}") from exc
    if seconds is not None and seconds <= 0:
        raise ConfigError(f"--timeout: '{budget}' is not a positive duration; give e.g. 10m")
    request = TuneRequest(trials or wanted.trials, seconds)
    store = open_store(settings)
    try:
        store.create_schema([d])
        with _study_progress(d.name, request.trials, err.is_terminal) as progress:
            result = run_train(
                settings, store, d, reason=reason, as_of=moment, tune=request, progress=progress
            )
    except KeyboardInterrupt:
        err.print(
            f"interrupted: the study's complete trials are kept; 'mlpipeline tune -f {d.name}' resumes it",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(130) from None
    finally:
        store.dispose()
    assert result.decision is not None
    assert result.study is not None
    study = result.study
    label = metric_for(d.quality.metric, d.target.task).label
    resumed = f", {study.resumed} of them from an interrupted run" if study.resumed else ""
    stopped = f" (stopped by the {budget} timeout)" if study.complete < request.trials else ""
    out.print(
        f"study {study.name}: {_count(study.complete, 'complete trial')}{resumed}{stopped}, "
        f"{study.failed} failed; "
        f"best cross-validated {label} {study.best_value:.4f} (trial {study.best_trial}, {study.folds}) "
        f"in {study.seconds:.1f} s",
        markup=False,
        highlight=False,
    )
    out.print(f"best parameters: {json.dumps(study.params, sort_keys=True)}", markup=False, highlight=False)
    m = result.metrics
    if m is None:
        out.print(f"nothing registered: {result.decision.reason}", markup=False, highlight=False)
        return
    out.print(
        f"refitted as '{d.name}' version {result.version} (run {result.run_id}): holdout {m.describe()} "
        f"on {m.n:,} rows",
        markup=False,
        highlight=False,
    )
    out.print(f"gate: {result.decision.action}: {result.decision.reason}", markup=False, highlight=False)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


@contextmanager
def _study_progress(name: str, trials: int, enabled: bool) -> Iterator[Any]:
    """A bar of complete trials with the best value so far (stderr), or one log line per trial."""
    if not enabled:

        def note(done: int, wanted: int, best: float, label: str) -> None:
            log.info("tuning progress", extra={"complete": done, "wanted": wanted, "best": best})

        yield note
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(f"tuning {name}", total=trials, best="")

        def update(done: int, wanted: int, best: float, label: str) -> None:
            shown = "" if math.isnan(best) else f"best {label} {best:.4f}"
            bar.update(task, completed=done, total=wanted, best=shown)

        yield update


@app.command()
def models(
    featureset: FeaturesetOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List model versions with metrics, aliases and gate decisions."""
    from mlpipeline.registry.tracking import Tracker
    from mlpipeline.registry.version_tags import facts_of, trigger_label

    settings = _settings()
    d = _definition(featureset, settings)
    versions = Tracker(settings).versions(d.name)
    metric = metric_for(d.quality.metric, d.target.task)
    rows: list[dict[str, Any]] = []
    for v in versions:
        facts = facts_of(v.tags)
        measured = {str(k): _number(t) for k, t in (facts.get("metrics") or {}).items() if k != "n"}
        gate = facts.get("gate") or {}
        rows.append(
            {
                "version": v.version,
                "aliases": list(v.aliases),
                "metric": metric.name,
                "value": measured.get(metric.name),
                "metrics": measured,
                "r2": measured.get("r2"),
                "rmse": measured.get("rmse"),
                "mae": measured.get("mae"),
                "decision": gate.get("decision") or None,
                "reason": gate.get("reason") or None,
                "trigger": facts.get("trigger") or None,
                "run_id": v.run_id,
            }
        )
    if as_json:
        out.print_json(json.dumps(rows))
        return
    regression = metric.name in ("r2", "rmse", "mae")
    others = [m for m in ("accuracy", "log_loss", "roc_auc", "f1_macro") if m != metric.name][:2]
    if regression:
        table = Table("version", "aliases", "R²", "RMSE", "MAE", "gate", "trigger")
    else:
        table = Table(
            "version", "aliases", metric.label, *(METRICS[m].label for m in others), "gate", "trigger"
        )
    for r in rows:
        shown = (
            [r["r2"], r["rmse"], r["mae"]]
            if regression
            else [r["value"], *(r["metrics"].get(m) for m in others)]
        )
        table.add_row(
            r["version"],
            ",".join(r["aliases"]) or "-",
            *("-" if v is None else f"{v:.4g}" for v in shown),
            r["decision"] or "-",
            trigger_label(r["trigger"] or "-"),  # whole in --json and in the version's description
        )
    out.print(table)


def _number(value: object) -> float | None:
    """A recorded metric as a number; ``None`` when absent or unreadable."""
    try:
        return None if value in (None, "") else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _first_line(text: str | None, limit: int) -> str:
    """The first line of ``text``, cut to ``limit`` characters with an ellipsis."""
    line = (text or "-").strip().splitlines()[0] if (text or "").strip() else "-"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _moved(action: str, pointer: Any) -> None:
    out.print(f"{action}: '{pointer.featureset}' now serves version {pointer.version}", markup=False)


@app.command()
def promote(version: str, featureset: FeaturesetOption, reason: ReasonOption = "forced promotion") -> None:
    """Force VERSION into production (audited with the reason)."""
    with _promoter() as promoter:
        promoter.reconcile(featureset)
        _moved("promoted", promoter.promote(featureset, version, reason=reason, action="force"))


@app.command()
def rollback(featureset: FeaturesetOption, reason: ReasonOption = "rollback") -> None:
    """Go back to the previous champion."""
    with _promoter() as promoter:
        promoter.reconcile(featureset)
        _moved("rolled back", promoter.rollback(featureset, reason=reason))


@app.command()
def approve(version: str, featureset: FeaturesetOption, reason: ReasonOption = "approved") -> None:
    """Promote the challenger VERSION waiting for approval (manual policy)."""
    with _promoter() as promoter:
        promoter.reconcile(featureset)
        _moved("approved", promoter.approve(featureset, version, reason=reason))


@app.command()
def reject(version: str, featureset: FeaturesetOption, reason: ReasonOption = "rejected") -> None:
    """Reject the challenger VERSION; production is unchanged."""
    with _promoter() as promoter:
        promoter.reject(featureset, version, reason=reason)
    out.print(f"rejected version {version} of '{featureset}'", markup=False)


@app.command()
def predict(
    source: Annotated[str, typer.Argument(help="CSV or JSON-lines file of rows to score; '-' reads stdin.")],
    featureset: FeaturesetOption,
    output: Annotated[
        str, typer.Option("--output", "-o", help="Where to write the predictions; '-' is stdout.")
    ] = "-",
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Output format: csv or json (default: the output file's suffix, else the input's).",
        ),
    ] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Add each feature's contribution.")] = False,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not write to the prediction log.")] = False,
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", help="Copy this input column to the output (repeat for several)."),
    ] = None,
) -> None:
    """Score a file with the production model (validated first: nothing is written on bad input).

    The output has the row's key (when the input has the key columns), any --keep columns, the
    prediction and the model version."""
    import time

    from mlpipeline.errors import NotFoundError
    from mlpipeline.serving.batch_io import detect_format, read_requests, render_predictions
    from mlpipeline.serving.predictor import open_predictor

    settings = _settings()
    d = _definition(featureset, settings)
    if fmt not in (None, "csv", "json"):
        raise typer.BadParameter("use csv or json", param_hint="--format")
    if source == "-":
        data, name = sys.stdin.buffer.read(), "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise NotFoundError(f"input file {source} does not exist")
        data, name = path.read_bytes(), path.name
    in_fmt = detect_format(name, data)
    suffix = Path(output).suffix.lower() if output != "-" else ""
    by_name = "csv" if suffix == ".csv" else "json" if suffix in (".json", ".jsonl", ".ndjson") else None
    out_fmt: Any = fmt or by_name or in_fmt
    if output != "-" and not Path(output).parent.is_dir():
        raise NotFoundError(f"the folder of {output} does not exist; create it or choose another --output")
    started = time.perf_counter()
    with open_predictor(
        settings, d.name, log_predictions=False if no_log else None, background_log=False
    ) as p:
        serving = p.current()
        columns = read_requests(data, in_fmt, serving.model.spec, source=name)
        spec_key = serving.model.spec.get("key")
        key_names = [spec_key] if isinstance(spec_key, str) else list(spec_key or [])
        sources = dict(serving.model.spec.get("sources") or {})
        named = {sources.get(c, c) for c in columns}
        if key_names and not set(key_names) <= named:
            err.print(
                f"note: the input has no key column ({', '.join(key_names)}): its predictions are logged "
                "without a key, so monitoring cannot join them to labels",
                markup=False,
                highlight=False,
            )
        by_source = {v: k for k, v in sources.items()}
        keep = [c if c in columns else by_source.get(c, c) for c in keep or []]
        absent = [c for c in keep if c not in columns]
        if absent:
            raise DataValidationError(
                [Problem(", ".join(absent), "--keep", "not a column of the input; check the name")],
                source=name,
            )
        result = p.predict_columns(columns, explain=explain, source=name)
        kept = {c: columns[c] for c in keep or []}
        rendered = render_predictions(result, out_fmt, explain=explain, keep=kept)
        if output == "-":
            sys.stdout.write(rendered)
            sys.stdout.flush()
        else:
            target = Path(output)
            partial = target.with_name(f".{target.name}.partial")
            partial.write_text(rendered, encoding="utf-8")
            partial.replace(target)  # readers never see half a file
    err.print(
        f"predicted {len(result.values):,} row(s) with {result.model_name} version {result.version} "
        f"in {time.perf_counter() - started:.2f}s" + ("" if output == "-" else f" -> {output}"),
        markup=False,
        highlight=False,
    )
    for warning in result.warnings():
        more = ", …" if warning["count"] > len(warning["rows"]) else ""
        err.print(
            f"warning: {warning['column']}: {warning.get('message') or warning['count']} "
            f"(rows {', '.join(map(str, warning['rows']))}{more})"
            + ("" if explain else "; --explain names them per row"),
            markup=False,
            highlight=False,
        )


@app.command()
def score(
    source: Annotated[
        Path | None,
        typer.Argument(help="CSV or Parquet file, or a folder of them (Parquet dataset); or --from-store."),
    ] = None,
    featureset: FeaturesetOption = "",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output .csv or .parquet file, or a folder (no suffix)."),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", help="Copy this input column to the output (repeat for several)."),
    ] = None,
    reject_to: Annotated[
        Path | None,
        typer.Option("--reject-to", help="Set bad rows aside in this file, with their problem, and go on."),
    ] = None,
    log_predictions: Annotated[
        bool, typer.Option("--log/--no-log", help="Append the predictions to the prediction log.")
    ] = False,
    chunk_rows: Annotated[int, typer.Option(min=100, help="Rows read and scored at a time.")] = 50_000,
    engine: Annotated[
        str,
        typer.Option(help="pandas (chunks in this process) or spark (spark_udf on --spark-master)."),
    ] = "pandas",
    spark_master: Annotated[
        str, typer.Option(help="Spark master URL of --engine spark, e.g. local[2] or spark://host:7077.")
    ] = "local[*]",
    from_store: Annotated[
        bool, typer.Option("--from-store", help="Score the feature set's stored rows instead of a file.")
    ] = False,
    since: Annotated[str | None, typer.Option(help="--from-store: event time at or after.")] = None,
    until: Annotated[str | None, typer.Option(help="--from-store: event time before.")] = None,
    unscored: Annotated[
        bool, typer.Option("--unscored", help="--from-store: only batches no --unscored job has scored.")
    ] = False,
) -> None:
    """Score a large file or folder in chunks with the production model, pinned for the whole job.

    Memory stays bounded; each chunk is validated like an API request. The output has the key
    columns, --keep columns, prediction (and proba_<class> for a classifier) and model_version;
    it appears only when the whole job succeeded."""
    from mlpipeline.serving.batch_score import input_files, output_kind, score_files
    from mlpipeline.serving.predictor import open_predictor

    settings = _settings()
    if not featureset:
        raise typer.BadParameter("name the feature set", param_hint="--featureset")
    if output is None:
        raise typer.BadParameter("say where the predictions go", param_hint="--output")
    d = _definition(featureset, settings)
    if engine not in ("pandas", "spark"):
        raise typer.BadParameter("use pandas or spark", param_hint="--engine")
    if from_store:
        if source is not None:
            raise typer.BadParameter("give a file or --from-store, not both", param_hint="SOURCE")
        if engine != "pandas":
            raise typer.BadParameter("--from-store runs on the pandas engine", param_hint="--engine")
        window = (since, until, unscored)
        _score_from_store(settings, d, output, keep or [], reject_to, log_predictions, chunk_rows, window)
        return
    if source is None:
        raise typer.BadParameter("give a file or folder to score, or --from-store", param_hint="SOURCE")
    if output.resolve() == source.resolve():
        raise typer.BadParameter("must differ from the input", param_hint="--output")
    if since or until or unscored:
        raise typer.BadParameter(
            "--since, --until and --unscored need --from-store", param_hint="--from-store"
        )
    if engine == "spark" and log_predictions:
        raise typer.BadParameter(
            "the prediction log takes the pandas engine's predictions; score with --engine pandas --log",
            param_hint="--log",
        )
    files = input_files(source)
    output_kind(output)
    if reject_to is not None:
        output_kind(reject_to)
    if reject_to is not None and reject_to.resolve() == output.resolve():
        raise typer.BadParameter("must differ from --output", param_hint="--reject-to")
    total = sum(p.stat().st_size for p, _ in files)
    if engine == "spark":
        outcome = _score_on_spark(settings, d.name, files, output, keep or [], reject_to, spark_master)
        _scored(outcome, reject_to)
        return
    with (
        open_predictor(settings, d.name, log_predictions=log_predictions, background_log=False) as predictor,
        _progress_rows(f"scoring {source.name} ({total / 1e6:,.1f} MB)") as progress,
    ):
        outcome = score_files(
            predictor,
            files,
            output,
            keep=keep or [],
            reject_to=reject_to,
            chunk_rows=chunk_rows,
            progress=progress,
        )
    _scored(outcome, reject_to)


#: The last batch a ``score --from-store --unscored`` job covered.
SCORED_BATCH_KEY = "score.last_batch"


def _score_from_store(
    settings: Settings,
    d: Definition,
    output: Path,
    keep: list[str],
    reject_to: Path | None,
    log_predictions: bool,
    chunk_rows: int,
    window: tuple[str | None, str | None, bool],
) -> None:
    """``score --from-store``: the stored rows streamed in chunks through the same scorer."""
    from mlpipeline.featurestore.sql import open_store
    from mlpipeline.serving.batch_score import output_kind, score_frames
    from mlpipeline.serving.predictor import open_predictor

    since, until, unscored = window
    output_kind(output)
    if unscored and (since or until):
        raise typer.BadParameter(
            "--unscored scores every batch not scored yet; it cannot be limited to a time range",
            param_hint="--unscored",
        )
    if (since or until) and not d.event_time:
        raise typer.BadParameter(f"'{d.name}' has no event time to select by", param_hint="--since/--until")
    start, end = _as_of(since), _as_of(until)
    store = open_store(settings)
    try:
        mark = int(store.get_state(d.name, SCORED_BATCH_KEY) or 0) if unscored else 0
        batches = store.batches(d)
        last = batches[-1].batch_id if batches else 0
        if unscored and last <= mark:
            err.print(f"nothing to score: no batch of '{d.name}' since batch {mark}, the last one scored")
            return
        rows = store.stream_rows(
            d, since=start, until=end, after_batch=mark, through_batch=last, chunk_rows=chunk_rows
        )
        with (
            closing(rows),
            open_predictor(
                settings, d.name, log_predictions=log_predictions, background_log=False
            ) as predictor,
            _progress_rows(f"scoring the rows of '{d.table}'") as progress,
        ):
            outcome = score_frames(
                predictor,
                ((d.table, frame) for frame in rows),
                output,
                source=f"table {d.table}",
                keep=keep,
                reject_to=reject_to,
                progress=progress,
            )
        if unscored:
            store.set_state(d.name, SCORED_BATCH_KEY, str(last))
    except DataValidationError as exc:
        # Only label batches since the last job: no row to score is news, not a failure.
        if not (unscored and exc.problems and exc.problems[0].rule == "rows"):
            raise
        store.set_state(d.name, SCORED_BATCH_KEY, str(last))
        err.print(f"nothing to score: the batches of '{d.name}' since batch {mark} hold no new rows")
        return
    finally:
        store.dispose()
    _scored(outcome, reject_to)


def _score_on_spark(
    settings: Settings,
    featureset: str,
    files: Any,
    output: Path,
    keep: list[str],
    reject_to: Path | None,
    master: str,
) -> Any:
    try:
        from mlpipeline.serving.spark_score import score_with_spark
    except ImportError as exc:  # pyspark is an optional dependency
        raise ConfigError(f"--engine spark needs pyspark and a Java runtime: {exc}") from exc
    from mlpipeline.serving.predictor import open_predictor

    err.print(f"starting Spark ({master}) …", markup=False, highlight=False)
    with open_predictor(settings, featureset, log_predictions=False) as predictor:
        return score_with_spark(predictor, files, output, keep=keep, reject_to=reject_to, master=master)


def _scored(outcome: Any, reject_to: Path | None) -> None:
    rate = outcome.rows_read / outcome.seconds if outcome.seconds else 0.0
    err.print(
        f"scored {outcome.rows_scored:,} of {outcome.rows_read:,} row(s) with {outcome.model_name} version "
        f"{outcome.version} in {outcome.seconds:.1f}s ({rate:,.0f} rows/s) -> {outcome.output}"
        + (f"; {outcome.rows_rejected:,} rejected -> {reject_to}" if reject_to is not None else ""),
        markup=False,
        highlight=False,
    )


@contextmanager
def _progress_rows(label: str) -> Iterator[Any]:
    """A row counter on stderr while a long job reads its input (silent when not a terminal)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if not err.is_terminal:
        yield None
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(), console=err, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=None)
        yield lambda rows: bar.update(task, completed=rows)


@app.command()
def serve(
    featureset: FeaturesetOption,
    host: Annotated[str | None, typer.Option(help="Listen address (default: MLPIPELINE_SERVE_HOST).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port (default: MLPIPELINE_SERVE_PORT).")
    ] = None,
    poll: Annotated[
        float | None, typer.Option(help="Seconds between pointer checks (default: MLPIPELINE_SERVE_POLL_S).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, max=64, help="Server processes on the port; each hot-swaps on the pointer by itself."
        ),
    ] = 1,
) -> None:
    """Serve the production model over HTTP; a promotion is picked up within the poll interval."""
    import uvicorn

    from mlpipeline.serving.api import create_app
    from mlpipeline.serving.predictor import open_predictor

    settings = _settings()
    d = _definition(featureset, settings)
    if poll is not None:
        if poll <= 0:
            raise typer.BadParameter("must be positive", param_hint="--poll")
        settings = settings.model_copy(update={"serve_poll_s": poll})
    key = settings.api_key.get_secret_value() if settings.api_key else None
    bind_host, bind_port = host or settings.serve_host, port or settings.serve_port
    err.print(
        f"serving '{d.name}' on http://{bind_host}:{bind_port} (docs at /docs; "
        f"pointer checked every {settings.serve_poll_s:g}s"
        + (f"; {workers} worker processes" if workers > 1 else "")
        + ("; API key required" if key else "")
        + ")",
        markup=False,
        highlight=False,
    )
    if workers > 1:
        _serve_workers(d.name, settings, bind_host, bind_port, workers)
        return
    with open_predictor(settings, d.name) as predictor:
        application = create_app(predictor, api_key=key, max_body_bytes=settings.serve_max_body_bytes)
        uvicorn.run(
            application,
            host=bind_host,
            port=bind_port,
            log_level="warning",
            access_log=False,
            server_header=False,
        )


def _serve_workers(featureset: str, settings: Settings, host: str, port: int, workers: int) -> None:
    """uvicorn's worker processes, each building its own app (see mlpipeline.serving.workers)."""
    from mlpipeline.serving.workers import FEATURESET_ENV, run_workers

    # Workers read their settings from the environment, as every entry point does; what the
    # command line changed travels the same way.
    os.environ[FEATURESET_ENV] = featureset
    os.environ["MLPIPELINE_SERVE_POLL_S"] = repr(settings.serve_poll_s)
    run_workers(host, port, workers)


def _as_of(text: str | None) -> datetime | None:
    """``--as-of``: an ISO-8601 moment as naive UTC (a time without an offset is taken as UTC)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise typer.BadParameter(
            f"'{text}' is not an ISO-8601 time; write e.g. 2024-03-31 or 2024-03-31T23:59:59Z",
            param_hint="--as-of",
        ) from exc
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _metrics_line(m: Any) -> str:
    """``R² 0.812, RMSE 4.1, MAE 3.2`` or ``ROC AUC 0.812, accuracy 0.75, log loss 0.43``."""
    names = ["r2", "rmse", "mae"] if m.metric in ("r2", "rmse", "mae") else [m.metric, "accuracy", "log_loss"]
    names = [m.metric] + [n for n in names if n != m.metric]
    return ", ".join(f"{METRICS[n].label} {m.values[n]:.3f}" for n in names if n in m.values)


def _say_check(result: Any) -> None:
    if result.skipped:
        out.print(f"skipped: {result.skipped}", markup=False, highlight=False)
        return
    m = result.metrics
    measured = (
        f"{_metrics_line(m)} on {result.n_rows:,} rows"
        # A multiclass model's class probabilities are scored again: the log keeps one number.
        + ("" if "f1_macro" in m.values else f" ({result.n_logged:,} served predictions joined)")
        if m is not None
        else f"{result.n_rows:,} newly labelled rows, nothing to measure"
    )
    if m is not None and not result.verdict:
        measured += " (below the minimum sample: no verdict)"
    if result.window:
        measured += f"; rows from {result.window[0][:19]} to {result.window[1][:19]}"
    if result.waiting:
        measured = (
            f"{result.waiting:,} newly labelled rows wait for more (fewer than min_samples); "
            "they are judged with the next ones, or on their own once the window is max_window_age old"
        )
    out.print(
        f"check of '{result.featureset}' (version {result.model_version or '-'}): {measured}", markup=False
    )
    drifted = {k: v for k, v in result.psi.items() if v is not None}
    if drifted:
        worst = sorted(drifted.items(), key=lambda kv: -kv[1])[:3]
        out.print("  PSI: " + ", ".join(f"{k} {v:.3f}" for k, v in worst), markup=False, highlight=False)
    served = result.prediction_drift
    if served and served.get("psi") is not None:
        out.print(
            f"  served predictions: PSI {served['psi']:.3f} over {served['rows']:,} against the champion's "
            "training outputs"
            + ("; drifted (an early warning: labels will tell)" if served["warning"] else ""),
            markup=False,
            highlight=False,
        )
    if result.outside is not None and result.outside.flagged:
        columns = ", ".join(f"{k} {v:,}" for k, v in list(result.outside.by_column.items())[:5])
        out.print(
            f"  outside the training ranges: {result.outside.flagged:,} of {result.outside.rows:,} rows "
            f"({result.outside.share:.1%}; {columns})",
            markup=False,
            highlight=False,
        )
    if result.decision is not None:
        out.print(f"  decision: {result.decision.action}: {result.decision.explanation}", markup=False)
    if result.retrain:
        r = result.retrain
        study = r.get("study")
        if study:
            out.print(
                f"  tuned first ({r.get('tuning')}): study {study['name']}, {study['complete']} complete "
                f"trials, best cross-validated {study['best_value']:.4f}",
                markup=False,
                highlight=False,
            )
        elif r.get("tuning") and "refit instead" in r["tuning"]:
            out.print(f"  tuning: {r['tuning']}", markup=False, highlight=False)
        if "error" in r:
            out.print(f"  retrain failed: {r['error']}", markup=False, highlight=False)
        elif r.get("version") is None:
            out.print(f"  retrain: nothing registered ({r.get('gate')})", markup=False, highlight=False)
        else:
            out.print(
                f"  retrained: version {r.get('version')}, holdout "
                f"{METRICS[r.get('metric') or 'r2'].label} {r.get('r2', float('nan')):.3f}, "
                f"gate: {r.get('action')}",
                markup=False,
                highlight=False,
            )
    if result.mlflow_error:
        out.print(f"  warning: not logged to MLflow ({result.mlflow_error}); kept in the store", markup=False)


@app.command()
def check(
    featureset: FeaturesetOption,
    retrain: Annotated[
        bool,
        typer.Option("--retrain/--no-retrain", help="Retrain when a trigger fires (default) or only report."),
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Retrain now whatever the triggers say (manual).")
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Check as of this moment (ISO-8601, e.g. 2024-03-31T23:59:59Z): labels known by then, "
            "cooldown, ages and schedule on that clock. For replays and backfills.",
        ),
    ] = None,
) -> None:
    """Measure the champion on newly labelled rows, check drift, and retrain if a trigger fires.

    Exits 75 (try again later) when the check is recorded but its retrain could not run;
    the retrain is then pending and the next check retries it.
    """
    from mlpipeline.featurestore.sql import open_store
    from mlpipeline.monitoring.check import run_check

    moment = _as_of(as_of)
    settings = _settings()
    d = _definition(featureset, settings)
    store = open_store(settings)
    try:
        result = run_check(settings, store, d, as_of=moment, manual=force, allow_retrain=retrain)
    finally:
        store.dispose()
    _say_check(result)
    if result.retrain.get("pending"):
        err.print("the retrain is pending: the next check retries it", markup=False, highlight=False)
        raise typer.Exit(BusyError.exit_code)


@app.command()
def watch(
    featureset: FeaturesetOption,
    interval: Annotated[
        str | None,
        typer.Option(help="Time between checks, e.g. 15m, 1h (default: MLPIPELINE_WATCH_INTERVAL)."),
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(help="Stop after this many checks (default: run until stopped).")
    ] = None,
) -> None:
    """Run 'check' on a schedule until SIGINT/SIGTERM; failures are logged and backed off."""
    import signal
    import threading
    from datetime import timedelta

    from mlpipeline.featurestore.sql import open_store, utcnow
    from mlpipeline.monitoring.check import NEXT_CHECK_KEY, run_check
    from mlpipeline.monitoring.watch import watch_loop
    from mlpipeline.settings import parse_duration

    settings = _settings()
    d = _definition(featureset, settings)
    period = parse_duration(interval or settings.watch_interval)
    if period <= timedelta(0):
        raise typer.BadParameter("must be positive", param_hint="--interval")
    stop = threading.Event()

    def on_signal(signum: int, _: Any) -> None:
        err.print(f"received {signal.Signals(signum).name}; stopping after the current check", markup=False)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    store = open_store(settings)

    def once() -> None:
        _say_check(run_check(settings, store, d))

    def waiting(seconds: float) -> None:
        store.set_state(d.name, NEXT_CHECK_KEY, (utcnow() + timedelta(seconds=seconds)).isoformat())

    err.print(f"watching '{d.name}' every {interval or settings.watch_interval}; Ctrl-C stops", markup=False)
    try:
        stats = watch_loop(once, period, stop, max_iterations=iterations, on_wait=waiting)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        store.set_state(d.name, NEXT_CHECK_KEY, "")
        store.dispose()
    err.print(f"watch stopped after {stats.iterations} check(s), {stats.failures} failed", markup=False)


@app.command()
def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Start the MLflow UI on the configured store (runs, versions, aliases, SHAP, monitoring)."""
    import subprocess

    settings = _settings()
    uri = settings.mlflow_tracking_uri
    if uri.startswith(("http://", "https://")):
        out.print(f"MLflow runs as a server: open {redact(uri)}", markup=False)
        _print_ui_links(settings, redact(uri))
        return
    workers = str(max(1, min(2, os.cpu_count() or 1)))  # MLflow's default of 4 overloads a laptop
    command = [
        sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
        "--host", host, "--port", str(port), "--workers", workers,
    ]  # fmt: skip
    # Its own process group, so stopping the UI stops every worker it started.
    child = subprocess.Popen(command, start_new_session=True)  # noqa: S603 (argument list, no shell)

    def stop(*_: object) -> None:
        # Only unwind here: waiting inside a signal handler could deadlock with the interrupted
        # wait() below (both need the same lock); the finally clause stops the group.
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        err.print(f"starting the MLflow UI on http://{host}:{port} …", markup=False)
        if not _wait_for_port(child, host, port, timeout_s=180.0):
            _stop_group(child)
            raise typer.Exit(child.returncode or EXIT_BUG)
        err.print(f"MLflow UI ready on http://{host}:{port} (Ctrl-C stops)", markup=False)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 (compared, not bound)
        _print_ui_links(settings, f"http://{shown}:{port}")
        code = child.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        _stop_group(child)
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(code)


def _print_ui_links(settings: Settings, base: str) -> None:
    """Direct links to each feature set's runs, registered model and monitoring charts."""
    from mlpipeline.featurestore.sql import open_store
    from mlpipeline.monitoring.publish import MLFLOW_RUN_KEY
    from mlpipeline.registry.tracking import Tracker
    from mlpipeline.registry.ui_links import ui_links

    try:
        tracker = Tracker(settings)
        store = open_store(settings)
    except MlpipelineError as exc:
        err.print(f"no links: {exc}", markup=False)
        return
    shown = 0
    try:
        for name in available_featuresets(settings.featuresets_dir):
            training = tracker.find_experiment(name)
            if training is None:
                continue
            monitoring = tracker.find_experiment(name, suffix="-monitoring")
            links = ui_links(
                base,
                name,
                model_name=tracker.model_name(name),
                training_experiment=training,
                monitoring_experiment=monitoring,
                monitoring_run=store.get_state(name, MLFLOW_RUN_KEY) if monitoring else None,
            )
            out.print(f"{name}:", markup=False, highlight=False)
            for label, url in links.lines():
                out.print(f"  {label:<17} {url}", markup=False, highlight=False)
            shown += 1
    except MlpipelineError as exc:
        err.print(f"links stopped: {exc}", markup=False)
    finally:
        store.dispose()
    if not shown:
        out.print(
            "no training runs yet: 'mlpipeline demo' or 'mlpipeline train -f NAME' makes some", markup=False
        )


def _wait_for_port(child: Any, host: str, port: int, *, timeout_s: float) -> bool:
    """Whether ``host:port`` answers before ``child`` exits or the time is up."""
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            err.print(f"the MLflow UI exited with code {child.returncode} before it was ready", markup=False)
            return False
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.25)
    err.print(f"the MLflow UI did not answer on {host}:{port} within {timeout_s:.0f} s", markup=False)
    return False


def _stop_group(child: Any) -> None:
    """SIGTERM to the UI's process group, then SIGKILL to what is left after 10 s."""
    if child.poll() is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=10)
    except ProcessLookupError:
        return
    except Exception:  # still running after the grace period
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or exc.__class__.__name__


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and turn errors into one line and an exit code."""
    _state.settings = None
    _state.verbose = False
    # Until the settings configure logging (they may be what failed), records go nowhere rather
    # than to Python's last-resort handler, which would print a traceback before the one line.
    quiet = logging.getLogger("mlpipeline")
    if not any(isinstance(h, logging.NullHandler) for h in quiet.handlers):
        quiet.addHandler(logging.NullHandler())
    # MLflow draws download progress bars on stderr; the CLI reports its own progress.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit:
        raise
    except MlpipelineError as exc:
        log.error("command failed: %s", exc, extra={"code": exc.code, "file_only": True}, exc_info=True)
        if _state.verbose:
            sys.stderr.write(redact(traceback.format_exc()))
        err.print(f"error {exc.code}: {redact(_one_line(exc))}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line; the traceback is one flag away
        log.error("unexpected error", exc_info=True, extra={"file_only": True})
        if _state.verbose:
            sys.stderr.write(redact(traceback.format_exc()))
        err.print(
            f"error MLP-000: unexpected {exc.__class__.__name__}: {redact(_one_line(exc))} "
            "(run 'mlpipeline --verbose COMMAND …' for the traceback)",
            markup=False,
            highlight=False,
        )
        sys.exit(EXIT_BUG)
