"""Every knob of mlpipeline in one typed object.

Precedence, highest first: keyword arguments given by an entry point, environment
variables (``MLPIPELINE_<FIELD>``), the ``.env`` file in the working directory, the
defaults below. Defaults point at the embedded deployment: a SQLite feature store and
a local MLflow store, both under ``dur/``.

Only entry points (the CLI, the HTTP app, the IRIS bridge) build a :class:`Settings`;
everything else receives it as an argument. Nothing here runs at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlpipeline.errors import ConfigError

__all__ = ["Settings", "load_settings"]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(BaseSettings):
    """Configuration read from the environment (prefix ``MLPIPELINE_``) and ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="MLPIPELINE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    home: Path = Field(
        default=Path("dur"),
        description="Folder for durable data (feature store file, MLflow store, model cache, logs).",
    )
    featurestore_url: str = Field(
        default="sqlite:///dur/featurestore.db",
        description=(
            "SQLAlchemy URL of the feature store: sqlite:///path, "
            "postgresql+psycopg2://user:pass@host/db, iris://user:pass@host:1972/USER."
        ),
    )
    featuresets_dir: Path = Field(
        default=Path("featuresets"),
        description=(
            "Folder searched first for <name>.toml feature-set definitions; "
            "the definitions shipped with the package are the fallback."
        ),
    )
    mlflow_tracking_uri: str = Field(
        default="sqlite:///dur/mlflow/mlflow.db",
        description="MLflow tracking URI: the local store by default, or e.g. http://mlflow:5000.",
    )
    mlflow_artifact_root: str = Field(
        default="dur/mlflow/artifacts",
        description="Where a local MLflow store keeps artifacts (ignored by a tracking server).",
    )
    mlflow_http_timeout_s: int = Field(
        default=30,
        ge=1,
        le=3600,
        description=(
            "Seconds a request to an MLflow tracking server may wait to connect or for the next "
            "bytes of the answer; sets MLFLOW_HTTP_REQUEST_TIMEOUT unless that is set."
        ),
    )
    mlflow_http_max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description=(
            "Retries of a request to an MLflow tracking server that was refused, timed out or got "
            "HTTP 429/5xx, before the command fails; sets MLFLOW_HTTP_REQUEST_MAX_RETRIES unless set."
        ),
    )
    mlflow_http_backoff_factor: int = Field(
        default=1,
        ge=0,
        le=120,
        description=(
            "Backoff between those retries: waits 0, 2×F, 4×F… seconds (plus up to 1 s of jitter); "
            "sets MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR unless that is set."
        ),
    )
    log_dir: Path = Field(
        default=Path("dur/logs"),
        description="Folder for JSON-lines logs (mlpipeline.jsonl); empty string disables file logs.",
    )
    log_level: LogLevel = Field(default="INFO", description="Lowest level written to the logs.")
    sqlite_busy_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a SQLite writer waits for another writer's lock before failing.",
    )
    ingest_chunk_rows: int = Field(
        default=50_000,
        ge=1_000,
        description="Rows written per statement batch during ingest (progress is reported per chunk).",
    )
    registry_prefix: str = Field(
        default="mlpipeline-",
        description="Prefix of the MLflow experiment and registered model of each feature set.",
    )
    promotion_policy: Literal["auto", "manual"] = Field(
        default="auto",
        description="auto: a model that passes the gate is promoted; manual: it waits for 'approve'.",
    )
    r2_floor: float = Field(
        default=0.5,
        le=1.0,
        description="The gate's absolute floor: no model with a holdout R² below it is promoted.",
    )
    min_improvement: float = Field(
        default=0.005,
        ge=0.0,
        description="How much a challenger's R² must beat the champion's on the same holdout.",
    )
    serve_host: str = Field(default="127.0.0.1", description="Address 'mlpipeline serve' listens on.")
    serve_port: int = Field(default=8000, ge=1, le=65535, description="Port 'mlpipeline serve' listens on.")
    serve_poll_s: float = Field(
        default=5.0,
        gt=0,
        description="How often a predictor reads the production pointer to pick up a promotion.",
    )
    serve_max_body_bytes: int = Field(
        default=10_000_000,
        ge=1_000,
        description="Largest request body the prediction API accepts (larger: HTTP 413).",
    )
    prediction_log: bool = Field(
        default=True,
        description="Write every served prediction to the prediction log, for monitoring.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description=(
            "If set, the prediction API requires this key in the X-API-Key header "
            "(or Authorization: Bearer); /health stays open."
        ),
    )

    @field_validator("featurestore_url", "mlflow_tracking_uri")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @property
    def logs_enabled(self) -> bool:
        return str(self.log_dir) not in ("", ".")


# Values that may embed credentials are never echoed back in an error message.
_SENSITIVE = frozenset({"api_key", "featurestore_url", "mlflow_tracking_uri"})


def load_settings(**overrides: object) -> Settings:
    """Build settings at an entry point, turning pydantic's report into a :class:`ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"MLPIPELINE_{field.upper()}"
            shown = "" if field in _SENSITIVE else f" (got {err.get('input')!r})"
            problems.append(f"{env}: {err['msg']}{shown}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from exc
