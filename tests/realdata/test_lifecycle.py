"""The data lifecycle on real data sets the project was not built around, through the CLI.

- rwm5yr: a panel keyed on (id, year); 1987's doctor visits arrive after its rows;
- benefits: no key at all; two exports that overlap by 500 rows;
- the demo stream: a definition that gains a feature while a champion serves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from mlpipeline.cli import main
from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.checks import CheckRecords
from mlpipeline.featurestore.sql import SqlFeatureStore

from ..conftest import SHARED_DATA

RWM = SHARED_DATA / "rwm5yr.csv"
BENEFITS = SHARED_DATA / "benefits.csv"

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

PANEL = """
name = "panel"
table = "panel"
description = "Doctor visits per person and year (German Socio-Economic Panel, 1984-1988)."

[entity_key]
columns = ["id", "year"]

[target]
column = "docvis"
min = 0

[features.age]
type = "integer"
[features.hhninc]
type = "float"
[features.educ]
type = "float"
[features.female]
type = "integer"
[features.married]
type = "integer"
[features.kids]
type = "integer"
[features.outwork]
type = "integer"

[derived]
income_per_year_of_school = "hhninc / educ"
"""

BENEFITS_DEF = """
name = "benefits"
table = "benefits"
extra_columns = "error"

[entity_key]
column = "worker"
generate = true

[target]
column = "replacement_rate"
source = "rr"

[features.state_unemployment]
type = "float"
source = "stateur"
[features.statemb]
type = "float"
[features.state]
type = "integer"
[features.age]
type = "integer"
[features.tenure]
type = "integer"
[features.joblost]
type = "categorical"
[features.nwhite]
type = "categorical"
[features.school12]
type = "categorical"
[features.sex]
type = "categorical"
[features.bluecol]
type = "categorical"
[features.smsa]
type = "categorical"
[features.married]
type = "categorical"
[features.dkids]
type = "categorical"
[features.dykids]
type = "categorical"
[features.yrdispl]
type = "integer"
[features.head]
type = "categorical"
[features.ui]
type = "categorical"
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folders = tmp_path / "featuresets"
    folders.mkdir()
    home = tmp_path / "dur"
    for key, value in {
        "MLPIPELINE_HOME": str(home),
        "MLPIPELINE_FEATURESTORE_URL": f"sqlite:///{home / 'featurestore.db'}",
        "MLPIPELINE_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        "MLPIPELINE_MLFLOW_ARTIFACT_ROOT": str(home / "mlflow" / "artifacts"),
        "MLPIPELINE_LOG_DIR": str(home / "logs"),
        "MLPIPELINE_FEATURESETS_DIR": str(folders),
        "MLPIPELINE_R2_FLOOR": "-100",  # these models are weak; the lifecycle is what is tested
        "MLPIPELINE_R2_THRESHOLD": "-100",
    }.items():
        monkeypatch.setenv(key, value)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def store_of(home: Path) -> SqlFeatureStore:
    return SqlFeatureStore(f"sqlite:///{home / 'dur' / 'featurestore.db'}")


@pytest.mark.skipif(not RWM.is_file(), reason=f"shared data set absent: {RWM}")
def test_a_panel_gets_its_labels_a_year_later(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "featuresets" / "panel.toml").write_text(PANEL)
    rows = pd.read_csv(RWM)
    cols = ["id", "year", "age", "hhninc", "educ", "female", "married", "kids", "outwork", "docvis"]
    early, y87 = home / "early.csv", home / "1987.csv"
    rows[rows.year <= 1986][cols].to_csv(early, index=False)
    rows[rows.year == 1987][cols[:-1]].to_csv(y87, index=False)
    labels = home / "labels-1987.jsonl"
    rows[rows.year == 1987][["id", "year", "docvis"]].to_json(labels, orient="records", lines=True)

    assert run(capsys, "init")[0] == 0
    code, out = run(capsys, "ingest", str(early), "-f", "panel")
    assert code == 0, out
    assert "ingested 11,460 rows" in out
    code, out = run(capsys, "train", "-f", "panel")
    assert code == 0, out
    code, out = run(capsys, "ingest", str(y87), "-f", "panel")
    assert code == 0, out
    assert "ingested 3,666 rows" in out
    code, out = run(capsys, "label", str(labels), "-f", "panel")
    assert code == 0, out
    assert "labelled 3,666 rows" in out

    code, out = run(capsys, "check", "-f", "panel")
    assert code == 0, out
    d = load_definition("panel", home / "featuresets")
    store = store_of(home)
    try:
        store.create_schema([d])
        last = CheckRecords(store, "panel").history(1)[0]
        assert last.n_rows == 3_666, "the check measures exactly the rows labelled later"

        one = (
            rows[rows.year == 1987][["id", "year", "docvis"]].head(1).assign(docvis=lambda f: f["docvis"] + 1)
        )
        fix = home / "fix.csv"
        one.to_csv(fix, index=False)
        code, out = run(capsys, "label", str(fix), "-f", "panel")
        assert code == 3
        assert "already have another label" in out
        assert "--relabel" in out
        code, out = run(capsys, "label", str(fix), "-f", "panel", "--relabel")
        assert code == 0, out
        audit = store.tables.label_audit
        with store.engine.connect() as conn:
            entries = conn.execute(select(audit)).all()
        key = f"{int(one['id'].iloc[0])}|1987"
        assert [(e.entity_key, e.new_value - e.old_value) for e in entries] == [(key, 1.0)]
    finally:
        store.dispose()


@pytest.mark.skipif(not BENEFITS.is_file(), reason=f"shared data set absent: {BENEFITS}")
def test_overlapping_exports_store_each_row_once(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "featuresets" / "benefits.toml").write_text(BENEFITS_DEF)
    rows = pd.read_csv(BENEFITS)
    first, second = home / "first.csv", home / "second.csv"
    rows.iloc[:3000].to_csv(first, index=False)
    rows.iloc[2500:].to_csv(second, index=False)
    assert run(capsys, "init")[0] == 0
    code, out = run(capsys, "ingest", str(first), "-f", "benefits")
    assert code == 0, out
    code, out = run(capsys, "ingest", str(second), "-f", "benefits", "--strict")
    assert code == 3
    assert "500 row(s) are identical" in out
    code, out = run(capsys, "ingest", str(second), "-f", "benefits")
    assert code == 0, out
    assert "skipped 500 rows already stored" in out
    assert "holds 4,877 rows" in out


def test_a_definition_gains_a_feature_while_the_champion_serves(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from mlpipeline.featurestore.synthetic import StreamConfig, generate_stream
    from mlpipeline.serving.api import create_app
    from mlpipeline.serving.predictor import open_predictor
    from mlpipeline.settings import load_settings

    text = (Path(__file__).parents[2] / "src" / "mlpipeline" / "featuresets" / "demo.toml").read_text()
    (home / "featuresets" / "demo.toml").write_text(text)
    stream = generate_stream(StreamConfig(seed=8, rows_per_day=300), days=4)
    day1, day2 = home / "day1.csv", home / "day2.csv"
    stream.iloc[:600].to_csv(day1, index=False)
    assert run(capsys, "init")[0] == 0
    assert run(capsys, "ingest", str(day1), "-f", "demo")[0] == 0
    code, out = run(capsys, "train", "-f", "demo")
    assert code == 0, out
    monkeypatch.setenv("MLPIPELINE_PROMOTION_POLICY", "manual")  # v2 waits until it is approved

    grown = text.replace(
        "[constants]",
        '[features.traffic]\ntype = "float"\nmissing = "native"\n\n[constants]',
    ).replace(
        'minutes_per_item = "free_flow_minutes / items"',
        'minutes_per_item = "free_flow_minutes / items"\ntraffic_minutes = "free_flow_minutes * traffic"\n'
        'order_hour = "hour(ordered_at)"',
    )
    (home / "featuresets" / "demo.toml").write_text(grown)
    code, out = run(capsys, "ingest", str(day1), "-f", "demo")
    assert code == 2
    assert "mlpipeline init" in out
    code, out = run(capsys, "init", "--dry-run")
    assert "would change" in out
    assert "add column traffic" in out
    code, out = run(capsys, "init")
    assert code == 0, out
    assert "changed demo_deliveries: add column traffic" in out
    stream.iloc[600:].assign(traffic=1.3).to_csv(day2, index=False)
    code, out = run(capsys, "ingest", str(day2), "-f", "demo")
    assert code == 0, out

    # The old champion serves requests that carry the new column, with its own definition.
    request = stream.iloc[600:603].assign(traffic=1.3)
    request["ordered_at"] = request["ordered_at"].astype(str)
    request = request.drop(columns=["delivery_minutes", "delivered_at"])
    records = json.loads(request.to_json(orient="records"))
    with open_predictor(load_settings(), "demo") as p, TestClient(create_app(p)) as client:
        answer = client.post("/predict", json=records)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"]["version"] == "1"
    rows_file = home / "rows.csv"
    request.to_csv(rows_file, index=False)
    code, out = run(capsys, "predict", str(rows_file), "-f", "demo")
    assert code == 0, out

    code, out = run(capsys, "check", "-f", "demo")
    assert code == 0, out
    code, out = run(capsys, "train", "-f", "demo", "--reason", "the definition gained traffic")
    assert code == 0, out
    with open_predictor(load_settings(), "demo") as p, TestClient(create_app(p)) as client:
        assert client.post("/predict", json=records).json()["model"]["version"] == "1", "not yet approved"
    code, out = run(capsys, "approve", "2", "-f", "demo", "--reason", "new definition")
    assert code == 0, out
    with open_predictor(load_settings(), "demo") as p, TestClient(create_app(p)) as client:
        answer = client.post("/predict", json=records)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"]["version"] == "2"
        info = client.get("/model").json()
    assert "traffic" in json.dumps(info)
