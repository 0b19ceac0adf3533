"""MLflow tracking and registry through one explicit ``MlflowClient`` built from settings.

No fluent run state, no global tracking URI: every call names its run, experiment or
model. One experiment and one registered model per feature set; aliases ``champion``
(production) and ``challenger`` (passed the gate, awaiting approval).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from mlpipeline.errors import TrackingError
from mlpipeline.settings import Settings

__all__ = ["CHALLENGER", "CHAMPION", "ModelVersionInfo", "Tracker", "TrackingError"]

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
_MAX_BATCH = 100


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
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def model_name(self, featureset: str) -> str:
        return f"{self.settings.registry_prefix}{featureset}"

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            raise TrackingError(f"MLflow could not {what}: {_first_line(exc)}") from exc
        except OSError as exc:
            raise TrackingError(f"MLflow could not {what}: {exc}") from exc

    # -- experiments and runs ------------------------------------------------------------

    def experiment_id(self, featureset: str) -> str:
        name = f"{self.settings.registry_prefix}{featureset}"
        found = self._call("look up the experiment", self.client.get_experiment_by_name, name)
        if found is not None:
            return str(found.experiment_id)
        location = None
        if not self.tracking_uri.startswith(("http://", "https://", "databricks")):
            root = Path(self.settings.mlflow_artifact_root).resolve() / featureset
            location = root.as_uri()
        return str(self._call("create the experiment", self.client.create_experiment, name, location))

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
    ) -> None:
        """Everything in as few requests as possible (one ``log_batch`` per 100 items)."""
        now = int(time.time() * 1000)
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

    def download(self, run_id: str, path: str, dst: Path) -> Path:
        dst.mkdir(parents=True, exist_ok=True)
        local = self._call(f"download {path}", self.client.download_artifacts, run_id, path, str(dst))
        return Path(local)

    # -- registry ------------------------------------------------------------------------

    def register(self, featureset: str, run_id: str, artifact_path: str, tags: Mapping[str, str]) -> str:
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
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
                return None
            raise TrackingError(f"MLflow could not read alias '{alias}': {_first_line(exc)}") from exc

    def set_alias(self, featureset: str, alias: str, version: str) -> None:
        name = self.model_name(featureset)
        self._call(f"set alias '{alias}'", self.client.set_registered_model_alias, name, alias, version)

    def delete_alias(self, featureset: str, alias: str) -> None:
        if self.alias_version(featureset, alias) is None:
            return
        name = self.model_name(featureset)
        self._call(f"remove alias '{alias}'", self.client.delete_registered_model_alias, name, alias)

    def version(self, featureset: str, version: str) -> ModelVersionInfo:
        mv = self._call(
            f"read version {version}", self.client.get_model_version, self.model_name(featureset), version
        )
        return _info(mv)

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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else exc.__class__.__name__
