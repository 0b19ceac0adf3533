"""The bad-input corpus: one small record per case, and what every case must leave unchanged.

A case says which surface it attacks, how to produce the input, which words the error must
contain, and the exact outcome: the stable error code and exit code of the CLI, or the HTTP
status. :func:`snapshot` captures what no bad input may change: the feature table's row count,
its batch ledger, the tables of the feature store with the columns and content of each (labels,
label batches and the relabel audit included), the production pointer and its history, and the
MLflow ``champion``/``challenger`` aliases.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import MetaData, Table, inspect, select
from sqlalchemy.engine import Engine

from mlpipeline.cli import main
from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.sql import open_store
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.tracking import CHALLENGER, CHAMPION, Tracker
from mlpipeline.settings import Settings
from tests.trained_home import Trained, _repoint_artifacts, make_settings

#: In place of an MLP code: a usage error reported by click itself (bad option or argument, exit 2).
USAGE = "usage"


@dataclass
class Ctx:
    """What a case may use to produce its input."""

    trained: Trained
    folder: Path  # a fresh folder for this case's files
    good: pd.DataFrame  # a batch that would ingest cleanly
    monkeypatch: pytest.MonkeyPatch

    @property
    def featuresets(self) -> Path:
        return self.trained.settings.featuresets_dir

    def csv_text(self, frame: pd.DataFrame | None = None) -> str:
        return (self.good if frame is None else frame).to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%f")

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def good_csv(self) -> Path:
        return self.write("good.csv", self.csv_text())


@dataclass(frozen=True)
class CliCase:
    """A bad input given to the real command line; ``make`` returns its arguments."""

    id: str
    surface: str  # csv | parquet | featureset | settings | cli
    make: Callable[[Ctx], list[str]]
    words: tuple[str, ...]
    code: str  # the stable MLP-xxx code, or USAGE for click's own usage errors
    exit: int
    absent: tuple[str, ...] = ()  # words that must not appear (a cell reported twice, a secret)


@dataclass(frozen=True)
class HttpCase:
    """A bad request body; ``make`` returns (path, body, headers)."""

    id: str
    make: Callable[[dict[str, Any]], tuple[str, Any, dict[str, str]]]
    words: tuple[str, ...]
    status: int
    code: str | None = None  # default: the API's code for the status (see serving/api.py)
    columns: tuple[str, ...] = field(default=())  # problems expected to name these columns


def copy_home(template: Trained, folder: Path) -> Trained:
    """A private copy of the trained home under ``folder`` (same as the ``trained`` fixture)."""
    home = folder / "dur"
    shutil.copytree(template.settings.home, home)
    _repoint_artifacts(template.settings.home, home)
    settings = make_settings(home)
    settings.featuresets_dir.mkdir(parents=True, exist_ok=True)
    return Trained(settings, template.rows)


def env_for(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the command line (which reads MLPIPELINE_* variables) at ``settings``' home."""
    for name in (
        "home",
        "featurestore_url",
        "mlflow_tracking_uri",
        "mlflow_artifact_root",
        "log_dir",
        "featuresets_dir",
    ):
        monkeypatch.setenv(f"MLPIPELINE_{name.upper()}", str(getattr(settings, name)))


def snapshot(settings: Settings, tracker: Tracker, *, volatile: tuple[str, ...] = ()) -> dict[str, Any]:
    """Everything a bad input must leave exactly as it was; the content of the ``volatile`` tables
    is left out (the HTTP corpus serves good requests between cases, which the prediction log
    records in the background)."""
    d = load_definition("demo")
    store = open_store(settings)
    try:
        pointers = SqlPointerStore(store)
        tables = sorted(inspect(store.engine).get_table_names())
        return {
            "rows": store.count_rows(d),
            "batches": store.batches(d),
            "tables": tables,
            "content": {name: table_state(store.engine, name) for name in tables if name not in volatile},
            "pointer": pointers.get("demo"),
            "history": pointers.history("demo"),
            "champion": tracker.alias_version("demo", CHAMPION),
            "challenger": tracker.alias_version("demo", CHALLENGER),
        }
    finally:
        store.dispose()


def table_state(engine: Engine, name: str) -> tuple[list[tuple[str, str, bool]], str]:
    """A table's columns (name, type, nullable) and a digest of every stored row, in key order.

    A refused ``label`` must leave every label, label time and label batch as it was; a refused
    ``init`` every column of every table.
    """
    columns = [(c["name"], str(c["type"]), bool(c["nullable"])) for c in inspect(engine).get_columns(name)]
    table = Table(name, MetaData(), autoload_with=engine)
    order = list(table.primary_key.columns) or list(table.columns)
    with engine.connect() as conn:
        rows = conn.execute(select(table).order_by(*order)).all()
    digest = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
    return columns, f"{len(rows)} rows, sha256 {digest}"


def run_cli(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    """The real command line in process: (exit code, stdout, stderr)."""
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
