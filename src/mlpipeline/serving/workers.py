"""``mlpipeline serve --workers N``: N server processes on one port, each its own replica.

uvicorn starts the worker processes and shares the listening socket between them; each
worker builds its app with :func:`app_from_environment` (the entry point of that process:
settings from the environment, as any entry point). A worker owns a predictor: it loads the
champion from the verified cache, polls the production pointer and hot-swaps on its own, so
every replica serves the promoted version within the poll interval, with no coordination
between them; the pointer is the one source of truth. Each worker writes its own predictions
to the prediction log (one row per prediction, so many writers never collide).

The same holds for replicas on several machines behind a load balancer (``docker compose up
--scale api=3``): one process per replica, ``--workers 1``.
"""

from __future__ import annotations

import os
import socket
from contextlib import ExitStack

from fastapi import FastAPI

from mlpipeline.errors import ConfigError
from mlpipeline.logs import configure_logging, register_secret
from mlpipeline.serving.api import create_app
from mlpipeline.serving.predictor import open_predictor
from mlpipeline.settings import load_settings

__all__ = ["FEATURESET_ENV", "app_from_environment", "listening_socket", "run_workers"]

#: The feature set a worker serves, handed down by ``mlpipeline serve`` (settings travel as
#: MLPIPELINE_* variables like any other).
FEATURESET_ENV = "MLPIPELINE_SERVE_FEATURESET"


def app_from_environment() -> FastAPI:
    """One worker's app (uvicorn calls it in each worker process)."""
    featureset = os.environ.get(FEATURESET_ENV, "")
    if not featureset:
        raise RuntimeError(f"{FEATURESET_ENV} is not set: start workers with 'mlpipeline serve --workers N'")
    settings = load_settings()
    for secret in settings.secret_values():
        register_secret(secret)  # redacted from this process's logs too
    configure_logging(settings.log_level, settings.log_dir if settings.logs_enabled else None)
    resources = ExitStack()
    predictor = resources.enter_context(open_predictor(settings, featureset))
    key = settings.api_key.get_secret_value() if settings.api_key else None
    return create_app(
        predictor, api_key=key, max_body_bytes=settings.serve_max_body_bytes, on_shutdown=resources.close
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket the workers share, made as asyncio makes its own: a TCP socket with
    TCP_NODELAY, which accepted connections inherit.

    (uvicorn's own shared socket is created without the protocol number, so asyncio leaves
    Nagle's algorithm on for its connections: measured here, 44 ms a request instead of 1.3.)
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port") from exc
    sock.set_inheritable(True)
    return sock


def run_workers(host: str, port: int, workers: int) -> None:
    """Run ``workers`` processes of :func:`app_from_environment` on one port until stopped."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "mlpipeline.serving.workers:app_from_environment",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
    )
    sock = listening_socket(host, port)
    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
