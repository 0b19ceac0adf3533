"""'mlpipeline score --engine spark' against the pandas engine, on Spark local[2]: the same
predictions on housing (regression) and benefits (a classifier, with class probabilities),
and a bad row stops both jobs with the same message."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from benchmarks.serving import child_env, setup

from mlpipeline.cli import main
from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.ingest import ingest_file
from mlpipeline.featurestore.sql import open_store
from mlpipeline.settings import Settings
from mlpipeline.training.pipeline import train
from tests.conftest import HOUSING_CSV, SHARED_DATA, service_missing
from tests.realdata.test_classification import BENEFITS_TOML

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENEFITS = SHARED_DATA / "benefits.csv"


@pytest.fixture(autouse=True)
def spark_available() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        service_missing("pyspark is not installed (make .venv/.installed)")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        service_missing("no Java runtime for Spark (apt-get install openjdk-17-jre-headless)")


def score(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str]:
    for key, value in child_env(settings).items():
        if key.startswith("MLPIPELINE_"):
            monkeypatch.setenv(key, value)
    try:
        main(["score", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def both(
    settings: Settings,
    name: str,
    source: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    outputs = []
    for engine in ("pandas", "spark"):
        out = tmp_path / f"{engine}.parquet"
        code, err = score(
            settings, capsys, monkeypatch, str(source), "-f", name, "-o", str(out),
            "--engine", engine, "--spark-master", "local[2]",
        )  # fmt: skip
        assert code == 0, err
        outputs.append(pd.read_parquet(out))
    return outputs[0], outputs[1]


def test_housing_scores_the_same_on_spark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not HOUSING_CSV.is_file():
        service_missing(f"{HOUSING_CSV} is not here (shared data sets live beside the project)")
    settings, name, _ = setup(tmp_path / "home", HOUSING_CSV)
    pandas_out, spark_out = both(settings, name, HOUSING_CSV, tmp_path, capsys, monkeypatch)
    assert len(spark_out) == 20_640
    assert list(spark_out.columns) == list(pandas_out.columns)
    np.testing.assert_allclose(spark_out["prediction"], pandas_out["prediction"], rtol=1e-9)
    assert (spark_out["model_version"] == "1").all()


def test_a_classifier_scores_the_same_classes_and_probabilities_on_spark(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not BENEFITS.is_file():
        service_missing(f"{BENEFITS} is not here (shared data sets live beside the project)")
    settings.featuresets_dir.mkdir(parents=True, exist_ok=True)
    (settings.featuresets_dir / "benefits.toml").write_text(BENEFITS_TOML)
    d = load_definition("benefits", settings.featuresets_dir)
    store = open_store(settings)
    store.create_schema([d])
    ingest_file(store, d, BENEFITS)
    result = train(settings, store, d, reason="spark parity")
    store.dispose()
    assert result.decision is not None
    assert result.decision.action == "promote"
    monkeypatch.setenv("MLPIPELINE_FEATURESETS_DIR", str(settings.featuresets_dir))
    pandas_out, spark_out = both(settings, "benefits", BENEFITS, tmp_path, capsys, monkeypatch)
    assert list(spark_out.columns) == ["prediction", "proba_no", "proba_yes", "model_version"]
    assert spark_out["prediction"].tolist() == pandas_out["prediction"].tolist()
    assert set(spark_out["prediction"]) <= {"no", "yes"}
    np.testing.assert_allclose(spark_out[["proba_no", "proba_yes"]], pandas_out[["proba_no", "proba_yes"]])


def test_a_bad_row_stops_both_engines_with_the_same_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, name, frame = setup(tmp_path / "home", None)
    bad = frame.head(1_500).astype(object)
    bad.loc[1_234, "distance_km"] = "far"
    bad.to_csv(tmp_path / "in.csv", index=False)
    messages = []
    for engine in ("pandas", "spark"):
        out = tmp_path / f"{engine}.csv"
        code, err = score(
            settings, capsys, monkeypatch, str(tmp_path / "in.csv"), "-f", name, "-o", str(out),
            "--engine", engine, "--spark-master", "local[2]",
        )  # fmt: skip
        assert code == 3, err
        assert not out.exists()
        messages.append(next(line for line in err.splitlines() if line.startswith("error MLP-200")))
    assert messages[0] == messages[1]
    assert "not a number ('far') at rows 1235" in messages[0]


def test_reject_to_sets_the_same_rows_aside_on_both_engines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, name, frame = setup(tmp_path / "home", None)
    bad = frame.head(800).astype(object)
    bad.loc[17, "distance_km"] = "far"
    bad.loc[640, "region"] = "mars"
    bad.to_csv(tmp_path / "in.csv", index=False)
    kept, rejected = [], []
    for engine in ("pandas", "spark"):
        out, rej = tmp_path / f"{engine}.parquet", tmp_path / f"{engine}-bad.csv"
        code, err = score(
            settings, capsys, monkeypatch, str(tmp_path / "in.csv"), "-f", name, "-o", str(out),
            "--reject-to", str(rej), "--engine", engine, "--spark-master", "local[2]",
        )  # fmt: skip
        assert code == 0, err
        assert "798 of 800" in err
        kept.append(pd.read_parquet(out))
        rejected.append(pd.read_csv(rej, dtype=str))
    assert rejected[0]["input_row"].tolist() == rejected[1]["input_row"].tolist() == ["18", "641"]
    assert rejected[0]["problem"].tolist() == rejected[1]["problem"].tolist()
    np.testing.assert_allclose(kept[1]["prediction"], kept[0]["prediction"], rtol=1e-9)
    assert not list(tmp_path.glob(".*partial"))
