"""mlpipeline's log events in the IRIS messages.log, with severity 0/1/2.

Inside IRIS, ``##class(%SYS.System).WriteToConsoleLog(message, 0, severity)`` writes one
line to ``<install>/mgr/messages.log`` (severity 0 INFO, 1 WARNING, 2 SEVERE), where it
shows as a ``Utility.Event``; Structured Logging (the ``[Logging]`` section of
``iris/merge.cpf``) copies those events as JSON lines to ``dur/logs/iris.log``.

:class:`ConsoleLogHandler` calls exactly one method of the object ``iris.cls("%SYS.System")``
returns: ``WriteToConsoleLog(message, 0, severity)``. Calls into IRIS are made only on
the thread that installed the handler (an IRIS process's main thread); events logged on
other threads wait in a small queue and are written at the next event or flush.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from typing import Any

from mlpipeline.iris.globals import inside_iris
from mlpipeline.logs import _ContextFilter, redact

__all__ = ["ConsoleLogHandler", "embedded_console", "install_console_log", "severity_of"]

#: Longest line written to messages.log; the JSON log under dur/logs keeps everything.
MAX_LINE = 2000
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def severity_of(levelno: int) -> int:
    """0 for DEBUG and INFO, 1 for WARNING, 2 for ERROR and CRITICAL."""
    if levelno >= logging.ERROR:
        return 2
    if levelno >= logging.WARNING:
        return 1
    return 0


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)


class ConsoleLogHandler(logging.Handler):
    """Writes each record as one line through ``system.WriteToConsoleLog(line, 0, severity)``."""

    def __init__(self, system: Any, level: int | str = logging.INFO, *, max_line: int = MAX_LINE) -> None:
        super().__init__(level)
        self.system = system
        self.max_line = max_line
        self._owner = threading.get_ident()
        self._pending: deque[tuple[str, int]] = deque(maxlen=1000)
        self.addFilter(_ContextFilter())

    def line(self, record: logging.LogRecord) -> str:
        """``mlpipeline.training.pipeline: step done featureset=housing step=fit seconds=1.2`` on one line."""
        extras = " ".join(
            f"{k}={_value(v)}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_") and k != "file_only"
        )
        text = f"{record.name}: {record.getMessage()}"
        if extras:
            text += f" {extras}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" error={exc.__class__.__name__}: {exc}"
        text = redact(" ".join(text.split()))
        return text if len(text) <= self.max_line else text[: self.max_line - 1] + "…"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            item = (self.line(record), severity_of(record.levelno))
            if threading.get_ident() != self._owner:
                self._pending.append(item)
                return
            self._drain()
            self.system.WriteToConsoleLog(item[0], 0, item[1])
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        if threading.get_ident() == self._owner:
            self._drain()

    def _drain(self) -> None:
        while self._pending:
            message, sev = self._pending.popleft()
            self.system.WriteToConsoleLog(message, 0, sev)


def embedded_console() -> Any | None:
    """``iris.cls("%SYS.System")`` inside IRIS; ``None`` elsewhere (tests pass a stand-in)."""
    if not inside_iris():
        return None
    import iris

    return iris.cls("%SYS.System")


def install_console_log(system: Any | None, level: int | str = logging.INFO) -> ConsoleLogHandler | None:
    """Attach one :class:`ConsoleLogHandler` to the ``mlpipeline`` logger (replacing an earlier one)."""
    logger = logging.getLogger("mlpipeline")
    for handler in list(logger.handlers):
        if isinstance(handler, ConsoleLogHandler):
            logger.removeHandler(handler)
            handler.close()
    if system is None:
        return None
    handler = ConsoleLogHandler(system, level)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > handler.level:
        logger.setLevel(handler.level)
    return handler
