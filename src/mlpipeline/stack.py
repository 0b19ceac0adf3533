"""The MLflow stack on loopback without Docker, wired as the compose stack wires it.

- **Backend store**: MLflow's database in an existing PostgreSQL server (Debian's cluster,
  started by ``.ci/postgres.sh``), created through a URL whose role may create databases.
- **Artifact store**: an S3 bucket, created if missing. By default ``moto_server`` on a free
  loopback port stands in for MinIO (which cannot be installed here); ``s3_endpoint`` /
  ``--s3-endpoint`` points the same stack at any S3-compatible endpoint (real MinIO), whose
  keys come from ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``.
- **Tracking server**: ``mlflow server --backend-store-uri postgresql+psycopg2://…
  --artifacts-destination s3://<bucket> --serve-artifacts``. Only this process gets the S3
  endpoint and keys (and the database password, through ``PGPASSWORD`` rather than the
  command line); clients use ``http://host:port`` alone and need no S3 credentials.

Every process runs in its own process group, writes to ``<workdir>/<name>.log`` and is
waited for with a bounded timeout; stopping signals the whole group. The integration tests
(fixtures), the benchmarks and ``make stack`` use it; from a shell::

    MLPIPELINE_STACK_POSTGRES_URL=postgresql+psycopg2://USER:PASSWORD@127.0.0.1:5432/DB \\
        python -m mlpipeline.stack [--s3-endpoint http://127.0.0.1:9000] [--port 5000]

moto keeps its objects in memory: a restarted moto endpoint is empty (the stack recreates
the bucket), and with moto the command line recreates MLflow's database on every start so
that the registry never names artifacts that are gone. A real MinIO keeps both.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from mlpipeline.errors import MlpipelineError

__all__ = [
    "MOTO_PLACEHOLDER_KEY",
    "MOTO_PLACEHOLDER_SECRET",
    "ManagedProcess",
    "Stack",
    "StackConfig",
    "StackError",
    "free_port",
    "http_ok",
    "main",
    "port_open",
    "redact",
]

log = logging.getLogger(__name__)

#: moto accepts any key pair: these placeholders are all the stack ever gives it.
MOTO_PLACEHOLDER_KEY = "moto-placeholder-key"
MOTO_PLACEHOLDER_SECRET = "moto-placeholder-secret"  # noqa: S105 - a placeholder, not a secret

_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StackError(MlpipelineError):
    """A part of the stack could not be started or reached; ``log_tail`` holds its last log lines."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def redact(url: str) -> str:
    """``scheme://user:password@host`` → ``scheme://user:***@host``."""
    return re.sub(r"//([^/:@]*):[^/@]*@", r"//\1:***@", url)


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """Whether ``url`` (http or https) answers 200."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP URL: {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - scheme checked
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _tail(path: Path, lines: int) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One server process in its own process group, logging to a file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    host: str
    port: int
    ready: Callable[[], bool]
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def start(self, timeout_s: float) -> None:
        """Start and wait until ``ready()``; a process that exits or stays unready is an error."""
        if self.running:
            return
        if port_open(self.host, self.port):
            raise StackError(f"{self.name}: port {self.port} on {self.host} is already in use")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("ab") as out:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            out.write(f"\n=== {stamp} starting {self.name}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(  # noqa: S603 - argv built by this module, no shell
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = started + timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                self._signal(signal.SIGKILL)
                self._proc = None
                raise StackError(
                    f"{self.name} exited with code {code} while starting (log: {self.log_path})",
                    self.tail(),
                )
            if self.ready():
                break
            if time.monotonic() > deadline:
                tail = self.tail()
                self.stop()
                raise StackError(
                    f"{self.name} was not ready within {timeout_s:.0f} s (log: {self.log_path})", tail
                )
            time.sleep(0.2)
        log.info(
            "stack process ready",
            extra={
                "component": self.name,
                "pid": self.pid,
                "port": self.port,
                "seconds": round(time.monotonic() - started, 2),
            },
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the process group; SIGKILL whatever is left after ``timeout_s``."""
        if self._proc is None:
            return
        self._signal(signal.SIGCONT)  # a paused group cannot act on SIGTERM
        self._signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("stack process ignored SIGTERM; killing it", extra={"component": self.name})
        self._finish()

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a crash would."""
        if self._proc is None:
            return
        self._finish()

    def pause(self) -> None:
        """SIGSTOP the group: the port still accepts connections but nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _finish(self) -> None:
        assert self._proc is not None
        self._signal(signal.SIGKILL)  # children of the group too
        self._proc.wait()
        self._proc = None
        deadline = time.monotonic() + 10
        while port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)


@dataclass(frozen=True)
class StackConfig:
    """What to start. ``port=0`` picks a free port; ``s3_endpoint=None`` starts moto."""

    postgres_url: str
    database: str | None = "mlpipeline_mlflow"
    recreate_database: bool = False
    s3_endpoint: str | None = None
    bucket: str = "mlflow"
    region: str = "us-east-1"
    host: str = "127.0.0.1"
    port: int = 0
    workers: int = 1
    workdir: Path = Path("dur/stack")
    startup_timeout_s: float = 120.0


class Stack:
    """PostgreSQL database + S3 bucket (moto or given) + ``mlflow server``; see the module doc."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        try:
            admin = make_url(config.postgres_url)
        except ArgumentError as exc:
            raise StackError(f"not a database URL: {redact(config.postgres_url)}") from exc
        if not admin.drivername.startswith("postgresql"):
            raise StackError(f"the backend store must be PostgreSQL, not '{admin.drivername}'")
        if config.database is not None and not _DB_NAME.match(config.database):
            raise StackError(f"database name '{config.database}' must match {_DB_NAME.pattern}")
        if not _BUCKET.match(config.bucket):
            raise StackError(f"bucket name '{config.bucket}' is not a valid S3 bucket name")
        self.admin_url: URL = admin
        self.backend_url: URL = admin.set(database=config.database) if config.database else admin
        self.host = config.host
        self.port = config.port or free_port(config.host)
        self.tracking_uri = f"http://{config.host}:{self.port}"
        self.own_s3 = config.s3_endpoint is None
        self.s3_process: ManagedProcess | None = None
        if config.s3_endpoint is None:
            s3_port = free_port(config.host)
            while s3_port == self.port:  # two free ports asked in a row may be the same one
                s3_port = free_port(config.host)
            self.s3_endpoint = f"http://{config.host}:{s3_port}"
            self.s3_process = ManagedProcess(
                name="moto",
                argv=[sys.executable, "-m", "moto.server", "-H", config.host, "-p", str(s3_port)],
                env=self._base_env(),
                log_path=config.workdir / "moto.log",
                host=config.host,
                port=s3_port,
                ready=lambda: port_open(config.host, s3_port),
            )
        else:
            self.s3_endpoint = config.s3_endpoint.rstrip("/")
        self.mlflow = ManagedProcess(
            name="mlflow",
            argv=[
                sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", _without_password(self.backend_url),
                "--artifacts-destination", f"s3://{config.bucket}",
                "--serve-artifacts",
                "--host", config.host,
                "--port", str(self.port),
                "--workers", str(config.workers),
            ],
            env=self._mlflow_env(),
            log_path=config.workdir / "mlflow.log",
            host=config.host,
            port=self.port,
            ready=lambda: http_ok(f"{self.tracking_uri}/health"),
        )  # fmt: skip

    # -- environment -----------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        """The caller's environment without mlpipeline's, MLflow's client-side or (for moto) AWS settings."""
        dropped: tuple[str, ...] = ("MLPIPELINE_", "MLFLOW_TRACKING_", "MLFLOW_REGISTRY_", "MLFLOW_S3_")
        if self.own_s3:
            dropped += ("AWS_",)
        env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def s3_credentials(self) -> tuple[str, str]:
        if self.own_s3:
            return MOTO_PLACEHOLDER_KEY, MOTO_PLACEHOLDER_SECRET
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            raise StackError(
                f"the S3 endpoint {self.s3_endpoint} needs credentials: "
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        return key, secret

    def _mlflow_env(self) -> dict[str, str]:
        key, secret = self.s3_credentials()
        env = self._base_env()
        env.update(
            {
                "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
                "AWS_ACCESS_KEY_ID": key,
                "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_DEFAULT_REGION": self.config.region,
                # The server's own S3 calls give up after 3 attempts: an artifact store that is
                # down becomes an HTTP 500 within seconds, which the client retries boundedly.
                "AWS_RETRY_MODE": "standard",
                "AWS_MAX_ATTEMPTS": "3",
                # mlpipeline uses no server-side jobs (GenAI scorers): no job runner processes.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            }
        )
        if self.backend_url.password:
            env["PGPASSWORD"] = str(self.backend_url.password)
        return env

    # -- PostgreSQL ------------------------------------------------------------------------

    def _admin_engine(self) -> Engine:
        return create_engine(self.admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)

    def ensure_database(self) -> None:
        """Create MLflow's database (dropping it first when ``recreate_database``)."""
        name = self.config.database
        if name is None:
            return
        engine = self._admin_engine()
        try:
            with engine.connect() as conn:
                query = text("SELECT 1 FROM pg_database WHERE datname = :name")
                exists = conn.execute(query, {"name": name}).first() is not None
                if exists and self.config.recreate_database:
                    conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                    exists = False
                if not exists:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
        except SQLAlchemyError as exc:
            raise StackError(
                f"PostgreSQL at {redact(self.admin_url.render_as_string())} refused to prepare database "
                f"'{name}': {_first_line(exc)}"
            ) from exc
        finally:
            engine.dispose()

    def drop_database(self) -> None:
        """Drop MLflow's database (call after :meth:`stop`)."""
        name = self.config.database
        if name is None:
            return
        engine = self._admin_engine()
        try:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()

    def backend_engine(self) -> Engine:
        """An engine on MLflow's database, e.g. to check the registry's tables."""
        return create_engine(self.backend_url, pool_pre_ping=True)

    # -- S3 --------------------------------------------------------------------------------

    def s3_client(self) -> Any:
        import boto3
        from botocore.config import Config

        key, secret = self.s3_credentials()
        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name=self.config.region,
            config=Config(
                connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"}
            ),
        )

    def ensure_bucket(self, timeout_s: float | None = None) -> None:
        """Create the bucket if it does not exist, waiting for the endpoint up to ``timeout_s``."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.s3_client()
        bucket = self.config.bucket
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.config.startup_timeout_s)
        while True:
            try:
                client.head_bucket(Bucket=bucket)
                return
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code not in ("404", "NoSuchBucket", "NotFound"):
                    raise StackError(f"S3 endpoint {self.s3_endpoint}: bucket '{bucket}': {exc}") from exc
                args: dict[str, Any] = {"Bucket": bucket}
                if self.config.region != "us-east-1":
                    args["CreateBucketConfiguration"] = {"LocationConstraint": self.config.region}
                client.create_bucket(**args)
                log.info("bucket created", extra={"bucket": bucket, "endpoint": self.s3_endpoint})
                return
            except BotoCoreError as exc:
                if time.monotonic() > deadline:
                    raise StackError(f"S3 endpoint {self.s3_endpoint} is unreachable: {exc}") from exc
                time.sleep(0.5)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def processes(self) -> list[ManagedProcess]:
        return [p for p in (self.s3_process, self.mlflow) if p is not None]

    def start(self) -> Stack:
        """Database, S3 endpoint and bucket, tracking server; everything stopped again on failure."""
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.ensure_database()
            self.start_s3()
            self.start_mlflow()
        except BaseException:
            self.stop()
            raise
        return self

    def start_s3(self) -> None:
        if self.s3_process is not None:
            self.s3_process.start(self.config.startup_timeout_s)
        self.ensure_bucket()

    def stop_s3(self, *, kill: bool = False) -> None:
        """Stop the moto endpoint (only one this stack started)."""
        if self.s3_process is None:
            raise StackError("this stack did not start the S3 endpoint; stop it where it runs")
        if kill:
            self.s3_process.kill()
        else:
            self.s3_process.stop()

    def start_mlflow(self) -> None:
        self.mlflow.start(self.config.startup_timeout_s)

    def stop_mlflow(self, *, kill: bool = False) -> None:
        if kill:
            self.mlflow.kill()
        else:
            self.mlflow.stop()

    def stop(self) -> None:
        """Stop the tracking server, then the S3 endpoint (the database stays; see :meth:`drop_database`)."""
        for process in reversed(self.processes):
            try:
                process.stop()
            except OSError:
                log.exception("could not stop a stack process", extra={"component": process.name})

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def logs_tail(self, lines: int = 40) -> str:
        """The last lines of every process's log, each under a header."""
        return "\n".join(f"--- {p.log_path} (last {lines} lines)\n{p.tail(lines)}" for p in self.processes)

    def describe(self) -> dict[str, str]:
        """Where everything is, without passwords."""
        return {
            "tracking URI": self.tracking_uri,
            "backend store": redact(self.backend_url.render_as_string(hide_password=False)),
            "artifact store": f"s3://{self.config.bucket} at {self.s3_endpoint}"
            + (" (moto stand-in)" if self.own_s3 else ""),
            "logs": str(self.config.workdir),
        }


def _without_password(url: URL) -> str:
    bare = URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)
    return bare.render_as_string(hide_password=False)


def _first_line(exc: BaseException) -> str:
    text_ = str(exc).strip()
    return text_.splitlines()[0][:300] if text_ else exc.__class__.__name__


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mlpipeline.stack``: start the stack, print where it is, run until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m mlpipeline.stack",
        description="Start PostgreSQL-backed MLflow with an S3 artifact store on loopback, without Docker.",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MLPIPELINE_STACK_POSTGRES_URL"),
        help="SQLAlchemy URL of a PostgreSQL role that may create databases "
        "(default: $MLPIPELINE_STACK_POSTGRES_URL; prefer the variable: it keeps the password off ps)",
    )
    parser.add_argument("--database", default="mlpipeline_mlflow", help="MLflow's database (created)")
    parser.add_argument(
        "--fresh", action="store_true", help="drop and recreate the database (always done with moto)"
    )
    parser.add_argument(
        "--s3-endpoint",
        default=os.environ.get("MLPIPELINE_STACK_S3_ENDPOINT"),
        help="an S3-compatible endpoint such as MinIO, with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
        "(default: $MLPIPELINE_STACK_S3_ENDPOINT, else moto_server on a free port)",
    )
    parser.add_argument("--bucket", default="mlflow")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000, help="tracking server port (0: any free port)")
    parser.add_argument("--workers", type=int, default=2, help="tracking server worker processes")
    parser.add_argument("--workdir", type=Path, default=Path("dur/stack"), help="folder for the logs")
    args = parser.parse_args(argv)
    if not args.postgres_url:
        parser.error("give --postgres-url or set MLPIPELINE_STACK_POSTGRES_URL (e.g. from .ci/postgres.sh)")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    stopping = threading.Event()
    started = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        if not started:  # interrupt the start-up: Stack.start stops what it started
            raise KeyboardInterrupt
        stopping.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        stack = Stack(
            StackConfig(
                postgres_url=args.postgres_url,
                database=args.database,
                recreate_database=args.fresh or not args.s3_endpoint,
                s3_endpoint=args.s3_endpoint or None,
                bucket=args.bucket,
                region=args.region,
                host=args.host,
                port=args.port,
                workers=args.workers,
                workdir=args.workdir,
            )
        )
        stack.start()
    except StackError as exc:
        print(f"error {exc.code}: {exc}", file=sys.stderr)  # noqa: T201
        if exc.log_tail:
            print(exc.log_tail, file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        print("interrupted while starting; everything started was stopped", file=sys.stderr)  # noqa: T201
        return 130
    started = True
    try:
        width = max(len(k) for k in stack.describe())
        print("MLflow stack ready:")  # noqa: T201
        for key, value in stack.describe().items():
            print(f"  {key:<{width}}  {value}")  # noqa: T201
        print("Point mlpipeline at it, then stop the stack with Ctrl-C:")  # noqa: T201
        print(f"export MLPIPELINE_MLFLOW_TRACKING_URI={stack.tracking_uri}", flush=True)  # noqa: T201
        while not stopping.wait(1.0):
            for process in stack.processes:
                if not process.running:
                    print(  # noqa: T201
                        f"error: {process.name} exited; its log ends with:\n{process.tail()}", file=sys.stderr
                    )
                    return 1
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
