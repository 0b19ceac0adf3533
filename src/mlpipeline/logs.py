"""Structured logging: JSON lines under ``dur/logs/`` and readable lines on stderr.

Library modules log through ``logging.getLogger(__name__)`` with ``extra=`` fields;
:func:`log_context` adds the feature set, run id and model version to every event
logged inside it (a context variable, so it is correct across threads and tasks). Only
entry points call :func:`configure_logging`.

Every line written (file and stderr, tracebacks included) goes through :func:`redact`:
credentials inside URLs (``scheme://user:password@host``) and the secrets an entry point
registered with :func:`register_secret` (the API key, URL passwords) become ``***``.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["LOG_FILE_NAME", "configure_logging", "log_context", "redact", "register_secret"]

LOG_FILE_NAME = "mlpipeline.jsonl"
_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "mlpipeline_log_context", default=None
)
_HANDLER_MARK = "_mlpipeline_handler"
# Attributes every LogRecord has; anything else on a record came from ``extra=`` or the context.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}

# The user-info part of a URL: everything between "://" and the last "@" before the host.
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s\"'<>]*@")
# Shorter values are not secrets worth hiding and would blank out ordinary words.
_MIN_SECRET = 4


class _Secrets:
    """The registered secrets, as one pattern (rebuilt on each registration)."""

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None
        self.lock = threading.Lock()


_SECRETS = _Secrets()


def register_secret(value: str | None) -> None:
    """Never write ``value`` (nor its URL-encoded form) to a log line or the CLI's error line.

    A secret is replaced where it stands as a whole token (not next to a letter or digit),
    so a weak password such as ``postgres`` does not also blank out ``postgresql``.
    """
    if not value or len(value) < _MIN_SECRET:
        return
    from urllib.parse import quote

    with _SECRETS.lock:
        _SECRETS.values.update({value, quote(value, safe=""), quote(value)})
        alternatives = "|".join(re.escape(v) for v in sorted(_SECRETS.values, key=len, reverse=True))
        _SECRETS.pattern = re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")


def redact(text: str) -> str:
    """``text`` without URL credentials and registered secrets (each becomes ``***``)."""
    text = _URL_CREDENTIALS.sub("***@", text)
    pattern = _SECRETS.pattern
    return pattern.sub("***", text) if pattern is not None else text


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach ``fields`` (e.g. featureset, run_id, model_version) to every event inside."""
    merged = {**(_CONTEXT.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_CONTEXT.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class _NotFileOnly(logging.Filter):
    """Drop events marked ``extra={"file_only": True}`` (the CLI already told the user)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


class _ReadableFormatter(logging.Formatter):
    """``12:00:01 INFO  batch ingested featureset=housing rows=20640``."""

    show_tracebacks = False

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
        )
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"
        if extras:
            line += f"  {extras}"
        if record.exc_info and record.levelno >= logging.ERROR and self.show_tracebacks:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class _RedactingJsonFormatter(JsonFormatter):
    """JSON lines with credentials redacted (message, extra fields and traceback alike)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(
    level: str = "INFO",
    log_dir: Path | None = None,
    *,
    stderr: bool = True,
    stderr_level: str = "WARNING",
) -> Path | None:
    """Install mlpipeline's handlers (idempotent); returns the JSON log file, if any.

    The file receives events at ``level`` and above; stderr at ``stderr_level`` and above
    (the CLI raises it to INFO or DEBUG with ``--verbose``).
    """
    logger = logging.getLogger("mlpipeline")
    for handler in list(logger.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(min(logging.getLevelName(level), logging.getLevelName(stderr_level)))
    logger.propagate = False
    context = _ContextFilter()
    if stderr:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(_ReadableFormatter())
        console.setLevel(stderr_level)
        formatter = console.formatter
        assert isinstance(formatter, _ReadableFormatter)
        formatter.show_tracebacks = stderr_level == "DEBUG"
        console.addFilter(context)
        console.addFilter(_NotFileOnly())
        setattr(console, _HANDLER_MARK, True)
        logger.addHandler(console)
    path: Path | None = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / LOG_FILE_NAME
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(
            _RedactingJsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
        file_handler.addFilter(context)
        file_handler.setLevel(level)
        setattr(file_handler, _HANDLER_MARK, True)
        logger.addHandler(file_handler)
    for noisy in ("alembic", "mlflow", "urllib3", "botocore", "shap", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Libraries' Python warnings (MLflow's advice on type hints and integer schemas, say)
    # go to the log file, not the user's terminal.
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    for handler in list(warnings_logger.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            warnings_logger.removeHandler(handler)
    warnings_logger.propagate = False
    quiet: logging.Handler = logging.NullHandler()
    if path is not None:
        quiet = logging.FileHandler(path, encoding="utf-8")
        quiet.setFormatter(logger.handlers[-1].formatter)
    setattr(quiet, _HANDLER_MARK, True)
    warnings_logger.addHandler(quiet)
    return path
