"""Every knob of mlpipeline in one typed object.

Precedence, highest first: keyword arguments given by an entry point, environment
variables (``MLPIPELINE_<FIELD>``), the ``.env`` file in the working directory, the
defaults below. Defaults point at the embedded deployment: a SQLite feature store and
a local MLflow store, both under ``dur/``.

Only entry points (the CLI, the HTTP app, the IRIS bridge) build a :class:`Settings`;
everything else receives it as an argument. Nothing here runs at import time.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlpipeline.errors import ConfigError

__all__ = ["SECRET_ENV", "Settings", "format_duration", "load_settings", "parse_duration"]

#: Environment variables that hold credentials of the clients mlpipeline uses (never logged).
SECRET_ENV = (
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "PGPASSWORD",
    "IRIS_PASSWORD",
)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)\s*([smhd])")
_ACCEPTED = "a whole number followed by s, m, h or d, e.g. '30s', '15m', '1h', '7d'"


def parse_duration(text: str) -> timedelta:
    """``"30s"``, ``"15m"``, ``"1h"``, ``"7d"`` → :class:`~datetime.timedelta`.

    One whole number and one unit (seconds, minutes, hours, days), surrounding spaces and
    upper case tolerated. ``"0s"`` parses (a zero cooldown is meaningful); whether zero is
    allowed is up to the setting that uses it. Anything else raises :class:`ConfigError`
    naming the value and the accepted forms, because durations come from settings and
    command-line options a person typed.
    """
    if not isinstance(text, str):
        raise ConfigError(f"duration {text!r} is not text; use {_ACCEPTED}")
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ConfigError(f"invalid duration {text!r}: use {_ACCEPTED}")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def format_duration(span: timedelta) -> str:
    """A compact human form: ``7d``, ``1d 2h``, ``15m``, ``45s`` (sub-second parts dropped).

    At most the two largest non-zero units are shown; a negative span gets a minus sign.
    """
    seconds = int(span.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + (" ".join(parts[:2]) if parts else "0s")


class Settings(BaseSettings):
    """Configuration read from the environment (prefix ``MLPIPELINE_``) and ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="MLPIPELINE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        allow_inf_nan=False,  # a NaN threshold or an infinite poll interval is always a typo
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
    r2_threshold: float = Field(
        default=0.6,
        le=1.0,
        description=(
            "Performance trigger: retrain when the champion's R² on newly labelled rows falls "
            "below it (the IRIS class parameter R2THRESHOLD mirrors it)."
        ),
    )
    psi_threshold: float = Field(
        default=0.25, gt=0, description="Drift trigger: retrain when a feature's PSI exceeds it."
    )
    min_samples: int = Field(
        default=200, ge=1, description="Fewest newly labelled rows for a performance or drift verdict."
    )
    out_of_range_share: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description=(
            "Out-of-range trigger: retrain when more than this share of a check's rows have an input "
            "outside the champion's training ranges or categories; 1: off."
        ),
    )
    max_model_age: str = Field(
        default="7d", description="Schedule trigger: retrain when the champion is older (e.g. 12h, 7d)."
    )
    max_window_age: str = Field(
        default="7d",
        description=(
            "Newly labelled rows fewer than min_samples wait for more (none is passed over); once "
            "the window has waited this long it is judged with the rows it has (e.g. 3d, 7d)."
        ),
    )
    new_data_rows: int = Field(
        default=10_000,
        ge=0,
        description=(
            "New-data trigger: retrain after this many labelled rows since the last training; 0: off."
        ),
    )
    retrain_cooldown: str = Field(
        default="1h", description="Least time between two automatic retrains (a manual one overrides it)."
    )
    training_window: str = Field(
        default="",
        description="Train on rows of this recent period only (e.g. 30d); empty: every labelled row.",
    )
    lock_ttl: str = Field(
        default="30m",
        description="How long a check or retrain lock lasts if its holder dies without releasing it.",
    )
    watch_interval: str = Field(default="1h", description="Default period of 'mlpipeline watch'.")
    dask_scheduler: str = Field(
        default="",
        description="Dask scheduler of 'train --engine dask' (tcp://host:8786); empty: a local cluster.",
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

    @field_validator(
        "max_model_age", "max_window_age", "retrain_cooldown", "lock_ttl", "watch_interval", "training_window"
    )
    @classmethod
    def _duration(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name == "training_window" and not value.strip():
            return ""
        try:
            parse_duration(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return value.strip()

    def duration(self, name: str) -> timedelta | None:
        """A duration setting as a timedelta (None for an empty training window)."""
        value = str(getattr(self, name))
        return parse_duration(value) if value else None

    @model_validator(mode="after")
    def _stores_under_home(self) -> Settings:
        """The feature store, the MLflow store and the logs follow ``home`` unless set: moving
        MLPIPELINE_HOME moves everything durable (the defaults spell out the default home)."""
        home = self.home
        derived = {
            "featurestore_url": f"sqlite:///{home / 'featurestore.db'}",
            "mlflow_tracking_uri": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            "mlflow_artifact_root": str(home / "mlflow" / "artifacts"),
            "log_dir": home / "logs",
        }
        for name, value in derived.items():
            if name not in self.model_fields_set:
                object.__setattr__(self, name, value)
        return self

    @field_validator("featurestore_url", "mlflow_tracking_uri")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @property
    def logs_enabled(self) -> bool:
        return str(self.log_dir) not in ("", ".")

    def secret_values(self) -> list[str]:
        """Every credential this process holds, for the logs to redact: the API key, the
        passwords inside the feature-store and tracking URLs, and the credential variables
        of MLflow, S3 and database clients (:data:`SECRET_ENV`)."""
        values = [self.api_key.get_secret_value() if self.api_key else ""]
        for url in (self.featurestore_url, self.mlflow_tracking_uri):
            try:
                password = urlsplit(url).password
            except ValueError:
                password = None
            if password:
                values += [password, unquote(password)]
        values += [os.environ.get(name, "") for name in SECRET_ENV]
        return [v for v in values if v]


# Values that may embed credentials are never echoed back in an error message.
_SENSITIVE = frozenset({"api_key", "featurestore_url", "mlflow_tracking_uri"})


def load_settings(**overrides: object) -> Settings:
    """Build settings at an entry point, turning pydantic's report into a :class:`ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except UnicodeDecodeError as exc:  # only a file can hold bytes: the .env file
        env_file = overrides.get("_env_file", Settings.model_config.get("env_file"))
        raise ConfigError(
            f"the settings file {env_file} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8"
        ) from exc
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"MLPIPELINE_{field.upper()}"
            shown = "" if field in _SENSITIVE else f" (got {err.get('input')!r})"
            problems.append(f"{env}: {err['msg']}{shown}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from exc
