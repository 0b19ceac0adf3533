"""The functions the IRIS classes call: plain strings in, one JSON reply out.

Every class method in ``iris/src/MLpipeline/`` is a few lines that call exactly one
function of this module. Each function builds the settings (environment variables and
``.env``, as at every entry point), does its work through the same package functions as
the CLI, and returns one JSON text::

    {"ok": true,  "summary": "one line for a person", "result": {...}}
    {"ok": false, "code": "MLP-700", "message": "what is wrong and how to fix it"}

It never raises: ``MLpipeline.Base.StatusOf`` turns a reply into a ``%Status`` carrying
the code and message, and methods declared ``As %String`` return the reply itself. An
unexpected exception becomes code ``MLP-000`` with its class and message, and its
traceback goes to the log. Arguments arrive as ObjectScript passes them (strings, or
numbers for numeric arguments); an empty string means "the default".

Inside IRIS every move of the production model is also published to the global
``^MLpipeline("Production", featureset, …)`` (:mod:`mlpipeline.iris.pointer_store`), and
log events go to messages.log with severity 0/1/2 (:mod:`mlpipeline.iris.console_log`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mlpipeline.errors import (
    ConfigError,
    DataValidationError,
    MlpipelineError,
    ModelIntegrityError,
    Problem,
    StoreError,
    TrackingError,
)
from mlpipeline.featuresets.definition import Definition, available_featuresets, load_definition
from mlpipeline.featuresets.metrics import metric_for
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.iris.console_log import embedded_console, install_console_log
from mlpipeline.iris.embedded_sql import install_embedded_dbapi, needs_embedded_dbapi
from mlpipeline.iris.globals import embedded_gref, embedded_lock, native_global
from mlpipeline.iris.pointer_store import (
    GlobalPointerStore,
    MirroredPointerStore,
    entry_to_json,
    pointer_to_json,
)
from mlpipeline.iris.projection import copy_labels, refresh_projection
from mlpipeline.logs import configure_logging, log_context, redact, register_secret
from mlpipeline.registry.pointer import PointerStore, SqlPointerStore
from mlpipeline.settings import Settings, load_settings

__all__ = [
    "TASK_NAME",
    "approve",
    "check",
    "check_performance",
    "create_tables",
    "history",
    "ingest",
    "label",
    "predict",
    "production",
    "promote",
    "publish",
    "refresh_projection_of",
    "reject",
    "rollback",
    "status",
    "task_schedule",
    "train",
    "tune",
]

log = logging.getLogger(__name__)

#: Name of the scheduled task the installer creates (one per feature set).
TASK_NAME = "mlpipeline check"
_DEFAULT_FEATURESET = "housing"
_logging_configured: dict[str, Any] = {}


# -- the reply envelope -------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null (ObjectScript's %FromJSON rejects them)."""
    out: Any = value
    if isinstance(value, float):
        out = value if math.isfinite(value) else None
    elif isinstance(value, datetime | date):
        out = value.isoformat()
    elif isinstance(value, timedelta):
        out = value.total_seconds()
    elif is_dataclass(value) and not isinstance(value, type):
        out = _plain(asdict(value))
    elif isinstance(value, dict):
        out = {str(k): _plain(v) for k, v in value.items()}
    elif isinstance(value, list | tuple | set | frozenset):
        out = [_plain(v) for v in value]
    elif hasattr(value, "item") and callable(value.item):  # numpy scalars
        out = _plain(value.item())
    elif not (value is None or isinstance(value, str | int | bool)):
        out = str(value)  # paths and anything else with a useful text form
    return out


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(_plain(data), ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _one_line(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split())) or exc.__class__.__name__


def _setup() -> Settings:
    """Settings for this call, and logging configured once per process (again if it changed)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    settings = load_settings()
    if needs_embedded_dbapi(settings.featurestore_url):
        install_embedded_dbapi()  # before any engine is created; a no-op outside IRIS
    for secret in settings.secret_values():
        register_secret(secret)
    console = embedded_console()
    key = (settings.log_level, str(settings.log_dir), settings.logs_enabled, console is None)
    if _logging_configured.get("key") != key:
        configure_logging(
            settings.log_level, settings.log_dir if settings.logs_enabled else None, stderr=False
        )
        install_console_log(console, settings.log_level)
        _logging_configured["key"] = key
    return settings


def _call(what: str, featureset: str | None, body: Callable[[Settings], tuple[str, Any]]) -> str:
    try:
        settings = _setup()
        with log_context(featureset=featureset or None, entry="iris"):
            summary, result = body(settings)
        return _dumps({"ok": True, "summary": summary, "result": result})
    except MlpipelineError as exc:
        serious = isinstance(exc, StoreError | TrackingError | ModelIntegrityError)
        log.log(
            logging.ERROR if serious else logging.WARNING,
            "%s failed: %s",
            what,
            _one_line(exc),
            extra={"code": exc.code, "featureset": featureset},
        )
        return _dumps({"ok": False, "code": exc.code, "message": _one_line(exc)})
    except Exception as exc:  # a bug: reported as MLP-000, traceback in the log
        log.error("%s failed unexpectedly", what, exc_info=True, extra={"featureset": featureset})
        return _dumps(
            {
                "ok": False,
                "code": "MLP-000",
                "message": f"unexpected {exc.__class__.__name__}: {_one_line(exc)} (traceback in the log)",
            }
        )
    finally:
        for handler in logging.getLogger("mlpipeline").handlers:
            handler.flush()


# -- shared plumbing ------------------------------------------------------------------------


def _name(featureset: Any) -> str:
    text = str(featureset or "").strip()
    return text or _DEFAULT_FEATURESET


def _definition(settings: Settings, featureset: str) -> Definition:
    return load_definition(featureset, settings.featuresets_dir)


@contextmanager
def _store(settings: Settings, d: Definition | None = None) -> Iterator[SqlFeatureStore]:
    from mlpipeline.featurestore.sql import open_store

    store = open_store(settings)
    try:
        if d is not None:
            store.create_schema([d])
        yield store
    finally:
        store.dispose()


def _is_native_url(url: str) -> bool:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    return parsed.get_backend_name() == "iris" and parsed.get_driver_name() != "emb"


@contextmanager
def _pointers(settings: Settings, store: SqlFeatureStore) -> Iterator[PointerStore]:
    """The SQL pointer, mirrored to ``^MLpipeline`` when there is an IRIS to hold it."""
    sql = SqlPointerStore(store)
    node = embedded_gref()
    if node is not None:
        yield MirroredPointerStore(sql, GlobalPointerStore(node, lock=embedded_lock()))
        return
    if _is_native_url(settings.featurestore_url):
        with native_global(settings.featurestore_url) as (native, lock):
            yield MirroredPointerStore(sql, GlobalPointerStore(native, lock=lock))
        return
    yield sql


def _published(pointers: PointerStore, featureset: str) -> str | None:
    return pointers.sync(featureset) if isinstance(pointers, MirroredPointerStore) else None


@contextmanager
def _global_store(settings: Settings, store: SqlFeatureStore) -> Iterator[MirroredPointerStore]:
    with _pointers(settings, store) as pointers:
        if not isinstance(pointers, MirroredPointerStore):
            raise ConfigError(
                "the production global ^MLpipeline lives in IRIS: call this inside IRIS, or set "
                "MLPIPELINE_FEATURESTORE_URL to iris://USER:PASSWORD@HOST:1972/NAMESPACE"
            )
        yield pointers


def _metrics(m: Any) -> dict[str, Any] | None:
    if m is None:
        return None
    # R², RMSE and MAE as before for a regression; every metric, and the one in force, for all.
    out: dict[str, Any] = {"r2": m.r2, "rmse": m.rmse, "mae": m.mae, "n": m.n}
    out.update(metric=m.metric, value=m.value, metrics=dict(m.values))
    return out


def _pointer_summary(p: Any) -> dict[str, Any] | None:
    return None if p is None else pointer_to_json(p)


# -- feature store ---------------------------------------------------------------------------


def ingest(featureset: str, path: str) -> str:
    """Validate the CSV/Parquet file at ``path`` and write it as one batch (or nothing)."""
    name = _name(featureset)

    def body(settings: Settings) -> tuple[str, Any]:
        from mlpipeline.featurestore.ingest import ingest_file

        d = _definition(settings, name)
        file = Path(str(path))
        with _store(settings, d) as store:
            outcome = ingest_file(store, d, file)
            projection = refresh_projection(store, d)
            total = store.count_rows(d)
        result = {
            "featureset": d.name,
            "written": outcome.written,
            "batch_id": outcome.batch.batch_id if outcome.batch else None,
            "duplicate_of": outcome.duplicate_of.batch_id if outcome.duplicate_of else None,
            "skipped_rows": outcome.skipped_rows,
            "rows_in_store": total,
            "projection": projection,
        }
        if outcome.duplicate_of is not None:
            summary = (
                f"skipped {file}: already ingested as batch {outcome.duplicate_of.batch_id}; "
                f"'{d.name}' holds {total:,} rows"
            )
        elif outcome.batch is None:
            summary = f"nothing written: every row of {file} is already stored; '{d.name}' holds {total:,}"
        else:
            summary = (
                f"ingested {outcome.written:,} rows from {file} into '{d.name}' as batch "
                f"{outcome.batch.batch_id}; '{d.name}' holds {total:,} rows"
            )
        return summary, result

    return _call("ingest", name, body)


def label(featureset: str, path: str, relabel: Any = False) -> str:
    """Attach the labels in the file at ``path`` (key, target, optionally label time) by key."""
    name = _name(featureset)
    replace = str(relabel).strip().lower() in ("1", "true", "yes")

    def body(settings: Settings) -> tuple[str, Any]:
        from mlpipeline.featurestore.labels import label_file

        d = _definition(settings, name)
        file = Path(str(path))
        with _store(settings, d) as store:
            outcome = label_file(store, d, file, relabel=replace)
            projection = copy_labels(store, d, outcome.batch.batch_id) if outcome.batch else None
        result = {
            "featureset": d.name,
            "rows": outcome.rows,
            "labelled": outcome.labelled,
            "relabelled": outcome.relabelled,
            "unchanged": outcome.unchanged,
            "batch_id": outcome.batch.batch_id if outcome.batch else None,
            "duplicate_of": outcome.duplicate_of.batch_id if outcome.duplicate_of else None,
            "projection": projection,
        }
        if outcome.batch is None:
            summary = f"nothing to do: the {outcome.rows:,} labels in {file} are already stored"
        else:
            summary = (
                f"labelled {outcome.labelled:,} and relabelled {outcome.relabelled:,} rows of "
                f"'{d.name}' from {file} as batch {outcome.batch.batch_id}"
            )
        return summary, result

    return _call("label", name, body)


def refresh_projection_of(featureset: str) -> str:
    """Copy batches the IRIS persistent class of ``featureset`` lacks (``MLpipeline.FeatureStore``)."""
    name = _name(featureset)

    def body(settings: Settings) -> tuple[str, Any]:
        d = _definition(settings, name)
        with _store(settings, d) as store:
            result = refresh_projection(store, d)
        if "skipped" in result:
            return f"nothing copied: {result['skipped']}", result
        return (
            f"copied {result['rows']:,} rows of {len(result['batches'])} batch(es) into {result['table']}",
            result,
        )

    return _call("refresh the IRIS copy", name, body)


def create_tables() -> str:
    """Create the pipeline's tables and every feature set's table, and apply additive changes
    of the definitions to existing tables, as ``mlpipeline init`` does (idempotent)."""

    def body(settings: Settings) -> tuple[str, Any]:
        names = available_featuresets(settings.featuresets_dir)
        definitions = [_definition(settings, n) for n in names]
        for folder in (settings.home, settings.home / "models"):
            folder.mkdir(parents=True, exist_ok=True)
        with _store(settings) as store:
            changes = store.evolve_schema(definitions).describe()
            store.create_schema(definitions)
            url = store.engine.url.render_as_string(hide_password=True)
        summary = f"tables ready in {url} for {', '.join(names)}"
        if changes:
            summary += "; changed: " + "; ".join(changes)
        return summary, {"featuresets": names, "store": url, "changed": changes}

    return _call("create the tables", None, body)


# -- training and promotion ----------------------------------------------------------------


def train(featureset: str, reason: str) -> str:
    """Train, evaluate and gate a new model version; promoted when it beats production."""
    return _train("train", featureset, str(reason or "").strip() or "manual (IRIS)", None)


def tune(featureset: str, trials: Any = 0) -> str:
    """Search hyperparameters (``trials`` complete trials; 0: the definition's), refit the best
    and gate it; an interrupted study resumes. ``Pipeline.Tune`` passes an %Integer."""
    return _train("tune", featureset, "manual tuning (IRIS)", trials)


def _trials(value: Any) -> int | None:
    """An %Integer (or its text) of trials: 0 or empty means the definition's."""
    try:
        wanted = int(str(value if value is not None else "").strip() or 0)
    except ValueError:
        wanted = -1
    if wanted < 0:
        raise ConfigError(
            f"trials must be a whole number of at least 1, or 0 for the definition's; got {value!r}"
        )
    return wanted or None


def _train(what: str, featureset: str, reason: str, trials: Any) -> str:
    name = _name(featureset)

    def body(settings: Settings) -> tuple[str, Any]:
        from mlpipeline.training.pipeline import train as run_train

        d = _definition(settings, name)
        request = None
        if what == "tune":
            from mlpipeline.settings import parse_duration
            from mlpipeline.training.study import TuneRequest
            from mlpipeline.training.tuning import check_tuning, tuning_of

            check_tuning(d)
            wanted = tuning_of(d)
            budget = parse_duration(wanted.timeout).total_seconds() if wanted.timeout else None
            request = TuneRequest(_trials(trials) or wanted.trials, budget)
        with _store(settings, d) as store:
            result = run_train(settings, store, d, reason=reason, tune=request)
            with _pointers(settings, store) as pointers:
                published = _published(pointers, d.name)
        m = result.metrics
        decision = result.decision
        summary = f"trained '{d.name}' version {result.version}"
        if result.study is not None:
            refit = f"refitted as version {result.version}" if result.version else "nothing new to register"
            summary = (
                f"tuned '{d.name}' ({result.study.complete} trials, best cross-validated "
                f"{result.study.best_value:.4f}): {refit}"
            )
        if m is not None:
            extra = f", RMSE {m.rmse:.4g}" if m.metric == "r2" else ""
            summary += f": holdout {m.describe()}{extra} on {m.n:,} rows"
        if decision is not None:
            summary += f"; gate: {decision.action}"
        return summary, {
            "featureset": d.name,
            "version": result.version,
            "run_id": result.run_id,
            "metrics": _metrics(m),
            "decision": {"action": decision.action, "reason": decision.reason} if decision else None,
            "timings": result.timings,
            "published": published,
            "params": result.params,
            "params_source": result.params_source,
            "study": None
            if result.study is None
            else {
                "name": result.study.name,
                "complete": result.study.complete,
                "failed": result.study.failed,
                "best_value": result.study.best_value,
                "best_trial": result.study.best_trial,
                "run_id": result.study.run_id,
            },
        }

    return _call(what, name, body)


def _move(what: str, featureset: str, act: Callable[[Any, str], Any]) -> str:
    name = _name(featureset)

    def body(settings: Settings) -> tuple[str, Any]:
        from mlpipeline.registry.model_cache import ModelCache
        from mlpipeline.registry.promotion import Promoter
        from mlpipeline.registry.tracking import Tracker

        d = _definition(settings, name)
        with _store(settings, d) as store, _pointers(settings, store) as pointers:
            tracker = Tracker(settings)
            promoter = Promoter(tracker, pointers, ModelCache(settings.home / "models", lambda: tracker))
            promoter.reconcile(d.name)
            summary, result = act(promoter, d.name)
            result["published"] = _published(pointers, d.name)
        return summary, result

    return _call(what, name, body)


def _moved(verb: str, pointer: Any) -> tuple[str, dict[str, Any]]:
    return (
        f"{verb}: '{pointer.featureset}' now serves version {pointer.version}",
        {"pointer": _pointer_summary(pointer)},
    )


def promote(featureset: str, version: str, reason: str) -> str:
    """Force ``version`` into production (audited with the reason)."""
    why = str(reason or "").strip() or "forced promotion (IRIS)"
    return _move(
        "promote",
        featureset,
        lambda p, fs: _moved("promoted", p.promote(fs, str(version), reason=why, action="force")),
    )


def rollback(featureset: str, reason: str) -> str:
    """Back to the champion before the current one."""
    why = str(reason or "").strip() or "rollback (IRIS)"
    return _move("roll back", featureset, lambda p, fs: _moved("rolled back", p.rollback(fs, reason=why)))


def approve(featureset: str, version: str, reason: str) -> str:
    """Promote the challenger ``version`` waiting for approval (manual promotion policy)."""
    why = str(reason or "").strip() or "approved (IRIS)"
    return _move(
        "approve", featureset, lambda p, fs: _moved("approved", p.approve(fs, str(version), reason=why))
    )


def reject(featureset: str, version: str, reason: str) -> str:
    """Turn down the challenger ``version``; production is unchanged."""
    why = str(reason or "").strip() or "rejected (IRIS)"

    def act(p: Any, fs: str) -> tuple[str, dict[str, Any]]:
        p.reject(fs, str(version), reason=why)
        return f"rejected version {version} of '{fs}'", {"rejected": str(version)}

    return _move("reject", featureset, act)


# -- monitoring ------------------------------------------------------------------------------


def _check_reply(result: Any) -> tuple[str, dict[str, Any]]:
    decision = result.decision
    out = {
        "featureset": result.featureset,
        "checked_at": result.checked_at,
        "skipped": result.skipped,
        "model_version": result.model_version,
        "rows": result.n_rows,
        "served_predictions_joined": result.n_logged,
        "metrics": _metrics(result.metrics),
        "verdict": result.verdict,
        "psi": result.psi,
        "decision": (
            {
                "action": decision.action,
                "reasons": list(decision.reasons),
                "explanation": decision.explanation,
                "drifted": list(decision.drifted),
                "allowed_at": decision.allowed_at,
            }
            if decision is not None
            else None
        ),
        "retrain": result.retrain,
        "check_id": result.check_id,
        "mlflow_error": result.mlflow_error,
    }
    if result.skipped:
        return f"check of '{result.featureset}' skipped: {result.skipped}", out
    m = result.metrics
    measured = (
        f"{m.spec.label} {m.value:.3f} on {result.n_rows:,} newly labelled rows"
        if m is not None
        else f"{result.n_rows:,} newly labelled rows, nothing to measure"
    )
    summary = f"check of '{result.featureset}' (version {result.model_version or '-'}): {measured}"
    if decision is not None:
        summary += f"; decision: {decision.action}" + (f" ({decision.label})" if decision.reasons else "")
    if result.retrain:
        r = result.retrain
        summary += (
            f"; retrain failed: {r['error']}" if "error" in r else f"; retrained version {r.get('version')}"
        )
    return summary, out


def _run_check(settings: Settings, name: str, r2_threshold: float | None = None) -> tuple[str, Any]:
    from mlpipeline.featuresets.quality import settings_for
    from mlpipeline.monitoring.check import run_check

    d = _definition(settings, name)
    with _store(settings, d) as store:
        result = run_check(settings, store, d, r2_threshold=r2_threshold)
        with _pointers(settings, store) as pointers:
            published = _published(pointers, d.name)
    summary, out = _check_reply(result)
    out["published"] = published
    out["r2_threshold"] = r2_threshold if r2_threshold is not None else settings_for(settings, d).r2_threshold
    return summary, out


def check(featureset: str) -> str:
    """Measure the champion on newly labelled rows, check drift, retrain if a trigger fires."""
    name = _name(featureset)
    return _call("check", name, lambda settings: _run_check(settings, name))


def _number(value: Any, what: str, *, r2: bool = True) -> float | None:
    """A threshold from IRIS (text or number); an R² one is at most 1."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be a number such as 0.6 (got {value!r})") from exc
    if not math.isfinite(number) or (r2 and number > 1.0):
        raise ConfigError(f"{what} must be a finite R² of at most 1 (got {value!r})")
    return number


def effective_r2_threshold(settings: Settings, override: Any, fallback: Any) -> float:
    """The task's own setting, else ``MLPIPELINE_R2_THRESHOLD``, else the class parameter R2THRESHOLD."""
    explicit = _number(override, "the R² threshold")
    if explicit is not None:
        return explicit
    if "r2_threshold" in settings.model_fields_set:
        return settings.r2_threshold
    parameter = _number(fallback, "R2THRESHOLD")
    return parameter if parameter is not None else settings.r2_threshold


def check_performance(featureset: str, r2_threshold: Any, fallback: Any) -> str:
    """The scheduled check: like :func:`check`, with the R² threshold resolved for IRIS.

    ``r2_threshold`` is the task's setting (empty: none), in the feature set's metric (R²
    unless its ``[quality] metric`` says otherwise); ``fallback`` the class parameter
    ``R2THRESHOLD``, used for an R² feature set when neither the task nor
    ``MLPIPELINE_R2_THRESHOLD`` sets one.
    """
    name = _name(featureset)

    def body(settings: Settings) -> tuple[str, Any]:
        d = _definition(settings, name)
        metric = metric_for(d.quality.metric, d.target.task)
        # The task's setting is in the feature set's metric; the class parameter R2THRESHOLD is
        # an R² and applies only to feature sets judged on R².
        explicit = _number(r2_threshold, f"the {metric.label} threshold", r2=metric.name == "r2")
        if explicit is None and d.quality.threshold is None and metric.name == "r2":
            threshold = effective_r2_threshold(settings, None, fallback)
            settings = settings.model_copy(update={"r2_threshold": threshold})
        # The task's own setting has the last word, over the feature set's [quality] too.
        return _run_check(settings, name, r2_threshold=explicit)

    return _call("performance check", name, body)


def status(featureset: str) -> str:
    """Rows and batches, the champion and its age, recent checks, the challenger, the global."""
    name = _name(featureset)

    def body(settings: Settings) -> tuple[str, Any]:
        from mlpipeline.monitoring.check import status_of

        d = _definition(settings, name)
        with _store(settings, d) as store:
            batches = store.batches(d)
            serving = status_of(settings, store, d)
            with _pointers(settings, store) as pointers:
                published = _published(pointers, d.name)
                shown = pointers.mirror.get(d.name) if isinstance(pointers, MirroredPointerStore) else None
            result = {
                "featureset": d.name,
                "table": d.table,
                "rows": store.count_rows(d),
                "batches": len(batches),
                "last_batch_at": batches[-1].ingested_at if batches else None,
                "serving": serving,
                "global_version": shown.version if shown else None,
                "published": published,
            }
        champion = serving["champion"]
        summary = f"'{d.name}': {result['rows']:,} rows in {len(batches)} batch(es); " + (
            f"champion version {champion['version']}" if champion else "no champion yet"
        )
        return summary, result

    return _call("status", name, body)


# -- serving ----------------------------------------------------------------------------------


def _records(payload: Any) -> Any:
    text = payload.decode("utf-8") if isinstance(payload, bytes | bytearray) else str(payload or "")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataValidationError(
            [Problem("*", "json", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")],
            source="request",
            outcome="nothing predicted",
        ) from exc
    if isinstance(data, dict) and isinstance(data.get("records"), list):
        return data["records"]
    return data


def predict(featureset: str, records: str) -> str:
    """Predict JSON records (one object, a list of objects, or ``{"records": [...]}``)."""
    name = _name(featureset)

    def body(settings: Settings) -> tuple[str, Any]:
        from mlpipeline.serving.predictor import open_predictor

        rows = _records(records)
        d = _definition(settings, name)
        with open_predictor(settings, d.name, background_log=False) as predictor:
            prediction = predictor.predict_records(rows)
        values = [float(v) for v in prediction.values]
        result = {
            "model": prediction.model_name,
            "version": prediction.version,
            "predictions": values,
            "keys": prediction.keys,
        }
        return f"{len(values)} prediction(s) by version {prediction.version} of '{d.name}'", result

    return _call("predict", name, body)


def production(featureset: str) -> str:
    """The production pointer as ``^MLpipeline("Production", featureset)`` holds it (published first)."""
    name = _name(featureset)

    def body(settings: Settings) -> tuple[str, Any]:
        d = _definition(settings, name)
        with _store(settings, d) as store, _global_store(settings, store) as pointers:
            published = pointers.sync(d.name)
            pointer = pointers.mirror.get(d.name)
        summary = (
            f"'{d.name}' serves version {pointer.version} ({pointer.model_uri})"
            if pointer
            else f"'{d.name}' has no production model"
        )
        return summary, {"pointer": _pointer_summary(pointer), "published": published}

    return _call("read the production global", name, body)


def history(featureset: str, limit: Any) -> str:
    """The promotion history kept in the global, newest first."""
    name = _name(featureset)

    def body(settings: Settings) -> tuple[str, Any]:
        try:
            count = int(limit) if str(limit).strip() else 20
        except ValueError as exc:
            raise ConfigError(f"limit must be a whole number (got {limit!r})") from exc
        d = _definition(settings, name)
        with _store(settings, d) as store, _global_store(settings, store) as pointers:
            entries = pointers.mirror.history(d.name, limit=max(count, 1))
        return f"{len(entries)} promotion event(s) of '{d.name}'", {
            "history": [entry_to_json(e) for e in entries]
        }

    return _call("read the promotion history", name, body)


def publish(featureset: str) -> str:
    """Make ``^MLpipeline("Production", featureset)`` name the production model of the SQL pointer."""
    name = _name(featureset)

    def body(settings: Settings) -> tuple[str, Any]:
        d = _definition(settings, name)
        with _store(settings, d) as store, _global_store(settings, store) as pointers:
            change = pointers.sync(d.name)
            pointer = pointers.mirror.get(d.name)
        return change or f"the global already names version {pointer.version if pointer else 'none'}", {
            "changed": change,
            "pointer": _pointer_summary(pointer),
        }

    return _call("publish the production pointer", name, body)


# -- the scheduled task ------------------------------------------------------------------------


def schedule_for(interval: timedelta) -> dict[str, int]:
    """``%SYS.Task`` schedule properties that run a task every ``interval`` (daily at most).

    Whole hours use hours (``DailyFrequencyTime`` 1), anything else whole minutes (0),
    rounded up to at least one minute; a day or more runs once a day at midnight.
    """
    seconds = max(int(interval.total_seconds()), 60)
    schedule = {"TimePeriod": 0, "DailyStartTime": 0, "DailyEndTime": 86399}
    if seconds >= 86400:
        return {**schedule, "DailyFrequency": 0, "DailyFrequencyTime": 0, "DailyIncrement": 0}
    if seconds % 3600 == 0:
        return {**schedule, "DailyFrequency": 1, "DailyFrequencyTime": 1, "DailyIncrement": seconds // 3600}
    return {**schedule, "DailyFrequency": 1, "DailyFrequencyTime": 0, "DailyIncrement": -(-seconds // 60)}


def task_schedule(featureset: str) -> str:
    """What the installer schedules: the task's name and its interval (``MLPIPELINE_WATCH_INTERVAL``)."""
    name = _name(featureset)

    def body(settings: Settings) -> tuple[str, Any]:
        from mlpipeline.settings import parse_duration

        d = _definition(settings, name)
        interval = parse_duration(settings.watch_interval)
        if interval <= timedelta(0):
            raise ConfigError("MLPIPELINE_WATCH_INTERVAL must be positive, e.g. 1h or 15m")
        result = {
            "name": f"{TASK_NAME} {d.name}",
            "featureset": d.name,
            "interval": settings.watch_interval,
            **schedule_for(interval),
        }
        return f"task '{result['name']}' every {settings.watch_interval}", result

    return _call("plan the scheduled task", name, body)
