"""MLflow tracking and registry through one explicit ``MlflowClient`` built from settings.

No fluent run state, no global tracking URI: every call names its run, experiment or
model. One experiment and one registered model per feature set; aliases ``champion``
(production) and ``challenger`` (passed the gate, awaiting approval).

Against a tracking server (``http(s)://``) every request has a timeout and a bounded number
of retries with exponential backoff (settings ``mlflow_http_*``, applied through MLflow's
``MLFLOW_HTTP_REQUEST_*`` variables unless the user set those). A failure becomes one
:class:`TrackingError` line that says what could not be done and why (server unreachable,
no answer in time, HTTP 5xx after N attempts). Once the server is known to be unreachable,
the same tracker fails at once for :data:`FAIL_FAST_S` seconds instead of waiting through
the retries again, so a failed run's clean-up (tag the failure, close the run) does not
multiply the wait.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from mlpipeline.errors import NotFoundError, TrackingError
from mlpipeline.settings import Settings

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "EXPERIMENT_KIND_TAG",
    "FAIL_FAST_S",
    "NOTE_TAG",
    "ModelVersionInfo",
    "Tracker",
    "TrackingError",
    "apply_http_policy",
    "experiment_kind",
]

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
#: MLflow's tag for the description of a run or an experiment (Markdown).
NOTE_TAG = "mlflow.note.content"
#: MLflow's experiment tag for the kind of work; a classic-ML kind opens the UI on runs, not traces.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
_MAX_BATCH = 100


def experiment_kind(task: str) -> str:
    """The classic-ML kind of an experiment whose models do ``task`` (:data:`EXPERIMENT_KIND_TAG`)."""
    return "regression" if task == "regression" else "classification"


#: How long a tracker fails at once after finding the tracking server unreachable.
FAIL_FAST_S = 15.0

# MLflow variable -> the settings field that provides its default.
_HTTP_POLICY = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "mlflow_http_timeout_s",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "mlflow_http_max_retries",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "mlflow_http_backoff_factor",
}
# Values this module put into the environment: those may be replaced by later settings,
# a value the user set never is.
_applied: dict[str, str] = {}
_applied_lock = threading.Lock()


def apply_http_policy(settings: Settings) -> dict[str, str]:
    """Set MLflow's HTTP timeout and retry variables from ``settings`` unless the user set them.

    MLflow reads them on every request, so the policy holds for every client in the process
    (tracking, registry, artifact proxy). Returns the policy in force.
    """
    with _applied_lock:
        for var, field in _HTTP_POLICY.items():
            current = os.environ.get(var)
            if current is None or _applied.get(var) == current:
                value = str(getattr(settings, field))
                os.environ[var] = value
                _applied[var] = value
        # MLflow prints "View run … at: URL" on stdout when a run ends: not on our CLI's stdout.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        return {var: os.environ[var] for var in _HTTP_POLICY}


@dataclass(frozen=True)
class ModelVersionInfo:
    """A registered model version as mlpipeline needs it."""

    name: str
    version: str
    run_id: str
    source: str
    tags: dict[str, str]
    aliases: tuple[str, ...]
    created_ms: int


class Tracker:
    """Thin, typed wrapper over ``MlflowClient`` for the calls the pipeline makes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tracking_uri = settings.mlflow_tracking_uri
        self.remote = self.tracking_uri.startswith(("http://", "https://"))
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if self.remote:
            apply_http_policy(settings)
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self._down: tuple[float, str] | None = None  # (monotonic time, reason) of an unreachable server

    def model_name(self, featureset: str) -> str:
        return f"{self.settings.registry_prefix}{featureset}"

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        down = self._down
        if down is not None:
            age = time.monotonic() - down[0]
            if age < FAIL_FAST_S:
                raise TrackingError(
                    f"MLflow could not {what}: {down[1]} (not retried: that failure was {age:.0f} s ago)"
                )
            self._down = None
        try:
            result = fn(*args, **kwargs)
        except MlflowException as exc:
            raise self._failure(what, exc) from exc
        except OSError as exc:
            raise TrackingError(_redact(f"MLflow could not {what}: {exc}")) from exc
        return result

    def _failure(self, what: str, exc: MlflowException) -> TrackingError:
        """One line naming what failed and why; remembers an unreachable server (see module doc)."""
        kind, reason = _classify(exc, self)
        if kind == "unreachable":
            self._down = (time.monotonic(), reason)
            log.info("MLflow tracking server unreachable", extra={"detail": reason})
        return TrackingError(_redact(f"MLflow could not {what}: {reason}"))

    @property
    def server(self) -> str:
        """The tracking URI without credentials, for messages."""
        return _redact(self.tracking_uri)

    # -- experiments and runs ------------------------------------------------------------

    def experiment_id(
        self, featureset: str, *, suffix: str = "", tags: Mapping[str, str] | None = None
    ) -> str:
        """The feature set's experiment (``suffix`` names a sibling, e.g. ``-monitoring``), created once.

        ``tags`` (e.g. :data:`EXPERIMENT_KIND_TAG`, :data:`NOTE_TAG`) are set at creation, and on
        an existing experiment where they differ: a store made by an earlier release gets them too.
        """
        name = f"{self.settings.registry_prefix}{featureset}{suffix}"
        found = self._call("look up the experiment", self.client.get_experiment_by_name, name)
        if found is not None:
            current = dict(found.tags or {})
            for key, value in (tags or {}).items():
                if current.get(key) != value:
                    self._call(
                        "tag the experiment", self.client.set_experiment_tag, found.experiment_id, key, value
                    )
            return str(found.experiment_id)
        location = None
        if not self.tracking_uri.startswith(("http://", "https://", "databricks")):
            root = Path(self.settings.mlflow_artifact_root).resolve() / f"{featureset}{suffix}"
            location = root.as_uri()
        return str(
            self._call(
                "create the experiment", self.client.create_experiment, name, location, dict(tags or {})
            )
        )

    def find_experiment(self, featureset: str, *, suffix: str = "") -> str | None:
        """The id of the feature set's experiment, or None when none was created (nothing is)."""
        name = f"{self.settings.registry_prefix}{featureset}{suffix}"
        found = self._call("look up the experiment", self.client.get_experiment_by_name, name)
        return None if found is None or found.lifecycle_stage != "active" else str(found.experiment_id)

    def start_run(self, experiment_id: str, run_name: str, tags: Mapping[str, str]) -> str:
        run = self._call(
            "start a run", self.client.create_run, experiment_id, run_name=run_name, tags=dict(tags)
        )
        return str(run.info.run_id)

    def log(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        step: int = 0,
        timestamp_ms: int | None = None,
    ) -> None:
        """Everything in as few requests as possible (one ``log_batch`` per 100 items)."""
        now = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        items_p = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
        items_m = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()]
        items_t = [RunTag(k, str(v)[:5000]) for k, v in (tags or {}).items()]
        while items_p or items_m or items_t:
            p, items_p = items_p[:_MAX_BATCH], items_p[_MAX_BATCH:]
            m, items_m = items_m[: _MAX_BATCH * 10], items_m[_MAX_BATCH * 10 :]
            t, items_t = items_t[:_MAX_BATCH], items_t[_MAX_BATCH:]
            self._call("log to the run", self.client.log_batch, run_id, metrics=m, params=p, tags=t)

    def log_artifacts(self, run_id: str, folder: Path, path: str) -> None:
        self._call(f"upload the {path} artifacts", self.client.log_artifacts, run_id, str(folder), path)

    def log_artifact(self, run_id: str, file: Path, path: str | None = None) -> None:
        self._call(f"upload {file.name}", self.client.log_artifact, run_id, str(file), path)

    def end_run(self, run_id: str, status: str) -> None:
        self._call("close the run", self.client.set_terminated, run_id, status)

    def rename_run(self, run_id: str, name: str) -> None:
        """Give the run the name that says what happened (known only when it ends)."""
        self._call("rename the run", self.client.update_run, run_id, name=name)

    def describe_run(self, run_id: str, text: str) -> None:
        """The run's description (Markdown, shown on the run's overview)."""
        self.log(run_id, tags={NOTE_TAG: text})

    def reopen_run(self, run_id: str) -> None:
        """Mark a run RUNNING again (a tuning study resumed after its process died)."""
        self._call("reopen the run", self.client.update_run, run_id, status="RUNNING")

    def child_runs(self, experiment_id: str, parent_run_id: str, key_tag: str) -> dict[str, str]:
        """The nested runs of ``parent_run_id``, by the value of their tag ``key_tag``."""
        runs = self._call(
            "list nested runs",
            self.client.search_runs,
            [experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
            max_results=10_000,
        )
        return {str(r.data.tags[key_tag]): str(r.info.run_id) for r in runs if key_tag in r.data.tags}

    def running_runs(self, experiment_id: str, *, kind_tag: str, kinds: tuple[str, ...]) -> list[str]:
        """Ids of the experiment's runs still marked RUNNING whose tag ``kind_tag`` is one of ``kinds``."""
        runs = self._call(
            "list running runs",
            self.client.search_runs,
            [experiment_id],
            filter_string="attributes.status = 'RUNNING'",
            max_results=1000,
        )
        return [str(r.info.run_id) for r in runs if r.data.tags.get(kind_tag) in kinds]

    def download(self, run_id: str, path: str, dst: Path) -> Path:
        dst.mkdir(parents=True, exist_ok=True)
        local = self._call(f"download {path}", self.client.download_artifacts, run_id, path, str(dst))
        return Path(local)

    # -- registry ------------------------------------------------------------------------

    def register(
        self,
        featureset: str,
        run_id: str,
        artifact_path: str,
        tags: Mapping[str, str],
        description: str = "",
    ) -> str:
        name = self.model_name(featureset)
        existing = self._call(
            "look up the registered model",
            self.client.search_registered_models,
            filter_string=f"name = '{name}'",
        )
        if not existing:
            self._call(
                "create the registered model",
                self.client.create_registered_model,
                name,
                tags={"featureset": featureset},
                description=f"mlpipeline models of feature set '{featureset}'",
            )
        run = self._call("read the run", self.client.get_run, run_id)
        source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
        mv = self._call(
            "register the model version",
            self.client.create_model_version,
            name,
            source,
            run_id=run_id,
            tags=dict(tags),
            description=description or None,
        )
        return str(mv.version)

    def set_version_tags(self, featureset: str, version: str, tags: Mapping[str, str]) -> None:
        name = self.model_name(featureset)
        for key, value in tags.items():
            self._call(
                "tag the model version", self.client.set_model_version_tag, name, version, key, str(value)
            )

    def alias_version(self, featureset: str, alias: str) -> str | None:
        name = self.model_name(featureset)
        try:
            mv = self._call(f"read alias '{alias}'", self.client.get_model_version_by_alias, name, alias)
        except TrackingError as exc:
            if _not_found(exc):
                return None
            raise
        return str(mv.version)

    def set_alias(self, featureset: str, alias: str, version: str) -> None:
        name = self.model_name(featureset)
        self._call(f"set alias '{alias}'", self.client.set_registered_model_alias, name, alias, version)

    def delete_alias(self, featureset: str, alias: str) -> None:
        if self.alias_version(featureset, alias) is None:
            return
        name = self.model_name(featureset)
        self._call(f"remove alias '{alias}'", self.client.delete_registered_model_alias, name, alias)

    def version(self, featureset: str, version: str) -> ModelVersionInfo:
        """One registered version; :class:`NotFoundError` when the registry has no such version."""
        name = self.model_name(featureset)
        known = f"'mlpipeline models -f {featureset}' lists the versions"
        if not version.isdigit():
            raise NotFoundError(
                f"version {version!r} of '{featureset}' does not exist: versions are numbers; {known}"
            )
        try:
            mv = self._call(f"read version {version}", self.client.get_model_version, name, version)
        except TrackingError as exc:
            if _not_found(exc):
                raise NotFoundError(
                    f"version {version} of '{featureset}' ({name}) does not exist; {known}"
                ) from exc
            raise
        return _info(mv)

    def forget(self, featureset: str) -> int:
        """Delete the feature set's registered model and mark its runs deleted; returns the versions.

        For starting a feature set afresh (``mlpipeline demo`` run again). The experiments stay
        (MLflow keeps a deleted experiment's name taken), empty of live runs.
        """
        versions = len(self.versions(featureset))
        if versions:
            name = self.model_name(featureset)
            self._call("delete the registered model", self.client.delete_registered_model, name)
        for suffix in ("", "-monitoring"):
            name = f"{self.settings.registry_prefix}{featureset}{suffix}"
            found = self._call("look up the experiment", self.client.get_experiment_by_name, name)
            if found is None:
                continue
            runs = self._call("list runs", self.client.search_runs, [found.experiment_id], max_results=50_000)
            for run in runs:
                self._call("delete a run", self.client.delete_run, run.info.run_id)
        return versions

    def versions(self, featureset: str) -> list[ModelVersionInfo]:
        name = self.model_name(featureset)
        found = self._call("list model versions", self.client.search_model_versions, f"name = '{name}'")
        if not found:
            return []
        model = self._call("read the registered model", self.client.get_registered_model, name)
        by_version: dict[str, list[str]] = {}
        for alias, version in (getattr(model, "aliases", None) or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        infos = [_info(mv, tuple(sorted(by_version.get(str(mv.version), [])))) for mv in found]
        return sorted(infos, key=lambda v: int(v.version))


def _not_found(exc: TrackingError) -> bool:
    """Whether MLflow refused because the named model, version or alias does not exist."""
    cause = exc.__cause__
    return isinstance(cause, MlflowException) and (
        "RESOURCE_DOES_NOT_EXIST" in str(cause.error_code) or "not found" in str(cause).lower()
    )


def _info(mv: Any, aliases: tuple[str, ...] | None = None) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=mv.name,
        version=str(mv.version),
        run_id=str(mv.run_id),
        source=str(mv.source),
        tags=dict(mv.tags or {}),
        aliases=aliases if aliases is not None else tuple(getattr(mv, "aliases", ()) or ()),
        created_ms=int(mv.creation_timestamp or 0),
    )


_TRANSPORT = re.compile(r"^API request to (?P<url>\S+) failed with exception (?P<detail>.*)$", re.DOTALL)


def _classify(exc: MlflowException, tracker: Tracker) -> tuple[str, str]:
    """("unreachable" | "http" | "other", one-line reason) for an MLflow client failure."""
    text = str(exc)
    match = _TRANSPORT.match(text.strip())
    if not tracker.remote or match is None:
        return "other", _first_line(exc)
    detail = match.group("detail")
    attempts = f"{tracker.settings.mlflow_http_max_retries + 1} attempts"
    policy = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    if policy is not None and policy.isdigit():
        attempts = f"{int(policy) + 1} attempts"
    server = f"the tracking server at {tracker.server}"
    status = re.search(r"too many (\d{3}) error responses", detail)
    if status:
        return "http", (
            f"{server} answered HTTP {status.group(1)} to all {attempts}; its log tells why "
            "(often its backend database or artifact store is down)"
        )
    if re.search(r"timed out|ReadTimeout|ConnectTimeout|timeout", detail, re.IGNORECASE):
        timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", str(tracker.settings.mlflow_http_timeout_s))
        return "unreachable", (
            f"{server} did not answer within {timeout} s in {attempts} "
            "(MLPIPELINE_MLFLOW_HTTP_TIMEOUT_S sets the limit)"
        )
    for pattern, why in (
        (r"Connection refused", "refused the connection"),
        (
            r"Name or service not known|NameResolution|nodename nor servname",
            "has a host name that does not resolve",
        ),
        (r"RemoteDisconnected|Connection aborted|Connection reset|BrokenPipe", "dropped the connection"),
        (r"Failed to establish a new connection|Max retries exceeded", "could not be reached"),
    ):
        if re.search(pattern, detail):
            return "unreachable", (
                f"{server} {why} in {attempts}; is the server running? "
                "(MLPIPELINE_MLFLOW_TRACKING_URI names it)"
            )
    return "other", _first_line(exc)


def _redact(uri: str) -> str:
    """``scheme://user:password@host`` → ``scheme://***@host``."""
    return re.sub(r"//[^/@]*@", "//***@", uri)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else exc.__class__.__name__
