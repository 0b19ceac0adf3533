"""A trained demo feature set (champion v1, held v2): a pytest plugin shared by every test folder.

Training takes seconds, so it happens once per session; each test gets a private copy of the
home (feature store, MLflow store, model cache) that it may promote, corrupt or delete.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.promotion import Promoter
from mlpipeline.registry.tracking import Tracker
from mlpipeline.settings import Settings
from mlpipeline.training.pipeline import train


def make_settings(home: Path, **extra: object) -> Settings:
    return Settings(
        home=home,
        featurestore_url=f"sqlite:///{home / 'featurestore.db'}",
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        mlflow_artifact_root=str(home / "mlflow" / "artifacts"),
        log_dir=home / "logs",
        featuresets_dir=home.parent / "featuresets",
        _env_file=None,  # type: ignore[call-arg]
        **extra,  # type: ignore[arg-type]
    )


@dataclass
class Trained:
    settings: Settings
    rows: pd.DataFrame  # raw rows of the stream, usable as requests

    def records(self, n: int = 5) -> list[dict[str, object]]:
        d = load_definition("demo")
        names = [d.entity_key.column, *d.features]
        frame = self.rows[names].head(n)
        return [
            {k: (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)) for k, v in r.items()}
            for r in frame.to_dict("records")
        ]


@pytest.fixture(scope="session")
def _trained_template(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Train once per session: v1 is the champion, v2 (trained on more data) is not."""
    home = tmp_path_factory.mktemp("serving-template") / "dur"
    settings = make_settings(home)
    d = load_definition("demo")
    store = open_store(settings)
    store.create_schema([d])
    stream = generate_stream(StreamConfig(rows_per_day=300, seed=7), 4)
    first_days = stream[stream["ordered_at"] < stream["ordered_at"].min() + pd.Timedelta(days=2)]
    ingest_frame(store, d, first_days)
    v1 = train(settings, store, d, reason="first")
    assert v1.version == "1"
    ingest_frame(store, d, stream.drop(first_days.index))
    v2 = train(settings, store, d, reason="second")
    assert v2.version == "2"
    pointers = SqlPointerStore(store)
    if pointers.get("demo").version == "2":  # type: ignore[union-attr]
        Promoter(Tracker(settings), pointers).rollback("demo", reason="tests start from v1")
    store.dispose()
    return Trained(settings, stream)


@pytest.fixture
def trained(_trained_template: Trained, tmp_path: Path) -> Iterator[Trained]:
    """A private copy of the trained home (each test may promote, corrupt or delete)."""
    home = tmp_path / "dur"
    shutil.copytree(_trained_template.settings.home, home)
    settings = make_settings(home)
    _repoint_artifacts(_trained_template.settings.home, home)
    return Trained(settings, _trained_template.rows)


def _repoint_artifacts(old: Path, new: Path) -> None:
    """The copied MLflow store records absolute artifact locations; point them at the copy."""
    import sqlite3

    db = sqlite3.connect(new / "mlflow" / "mlflow.db")
    with db:
        for table, column in (
            ("experiments", "artifact_location"),
            ("runs", "artifact_uri"),
            ("model_versions", "source"),
            ("model_versions", "storage_location"),
        ):
            try:
                db.execute(
                    f"UPDATE {table} SET {column} = REPLACE({column}, ?, ?)",
                    (old.resolve().as_uri(), new.resolve().as_uri()),
                )
                db.execute(
                    f"UPDATE {table} SET {column} = REPLACE({column}, ?, ?)",
                    (str(old.resolve()), str(new.resolve())),
                )
            except sqlite3.OperationalError:
                pass  # a column this MLflow version does not have
    db.close()
