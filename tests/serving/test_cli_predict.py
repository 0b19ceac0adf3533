"""'mlpipeline predict' as a user runs it: formats, explain, stdin, bad input, prediction log."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from mlpipeline.cli import main
from mlpipeline.featurestore.sql import open_store
from mlpipeline.serving.predictor import open_predictor
from tests.trained_home import Trained

pytestmark = pytest.mark.slow


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def logged(trained: Trained) -> int:
    store = open_store(trained.settings)
    with store.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(store.tables.prediction_log)).scalar_one()
    store.dispose()
    return int(n)


def expected(trained: Trained, records: list[dict[str, object]]) -> list[float]:
    with open_predictor(trained.settings, "demo", log_predictions=False) as p:
        return [float(v) for v in p.predict_records(records).values]


def test_csv_in_csv_out(cli_env: Trained, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    records = cli_env.records(25)
    source = tmp_path / "rows.csv"
    pd.DataFrame(records).to_csv(source, index=False)
    code, out, err = run(capsys, "predict", str(source), "-f", "demo")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["key"] for r in rows] == [str(r["order_id"]) for r in records]
    assert [float(r["prediction"]) for r in rows] == expected(cli_env, records)
    assert {r["model_version"] for r in rows} == {"1"}
    assert "predicted 25 row(s)" in err
    assert logged(cli_env) == 25


def test_json_lines_with_explain_to_a_file(
    cli_env: Trained, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    records = cli_env.records(4)
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    target = tmp_path / "out.jsonl"
    code, out, err = run(
        capsys, "predict", str(source), "-f", "demo", "--explain", "-o", str(target), "--no-log"
    )
    assert code == 0, err
    assert out == ""
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["prediction"] for line in lines] == expected(cli_env, records)
    for line in lines:
        assert line["base_value"] + sum(line["contributions"].values()) == pytest.approx(line["prediction"])
    assert logged(cli_env) == 0


def test_stdin_json_to_csv(
    cli_env: Trained, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    records = cli_env.records(3)
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, err = run(capsys, "predict", "-", "-f", "demo", "--format", "csv")
    assert code == 0, err
    assert out.splitlines()[0] == "key,prediction,model_version"
    assert len(out.splitlines()) == 4


def test_bad_rows_reject_the_file_and_write_nothing(
    cli_env: Trained, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    records = cli_env.records(6)
    records[4] = dict(records[4], distance_km="far", region="moon")
    source = tmp_path / "bad.csv"
    pd.DataFrame(records).to_csv(source, index=False)
    target = tmp_path / "out.csv"
    code, out, err = run(capsys, "predict", str(source), "-f", "demo", "-o", str(target))
    assert code == 3
    assert out == ""
    assert err.count("\n") == 1, err
    assert "distance_km" in err
    assert "'far'" in err
    assert "at rows 5" in err
    assert "moon" in err
    assert not target.exists()
    assert not list(tmp_path.glob(".out.csv*"))
    assert logged(cli_env) == 0


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (b"", 3, ["empty"]),
        (b"\xff\xfe\x00\x01", 3, ["UTF-8"]),
        (b'{"distance_km": 1}\n{"distance_km": \n', 3, ["line 2"]),
        (b"a;b;c\n1;2;3\n", 3, ["commas"]),
    ],
    ids=["empty", "encoding", "bad-json-line", "semicolons"],
)
def test_unreadable_input(
    cli_env: Trained,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: bytes,
    code: int,
    words: list[str],
) -> None:
    source = tmp_path / "input.txt"
    source.write_bytes(content)
    got, out, err = run(capsys, "predict", str(source), "-f", "demo")
    assert got == code, err
    assert out == ""
    for word in words:
        assert word in err


def test_missing_input_and_bad_format(cli_env: Trained, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "predict", "nope.csv", "-f", "demo")
    assert code == 2
    assert "does not exist" in err
    code, _, err = run(capsys, "predict", "nope.csv", "-f", "demo", "--format", "xml")
    assert code == 2


def test_keep_copies_input_columns_beside_each_prediction(
    cli_env: Trained, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    records = cli_env.records(4)
    source = tmp_path / "rows.csv"
    pd.DataFrame(records).to_csv(source, index=False)
    code, out, err = run(capsys, "predict", str(source), "-f", "demo", "--keep", "region", "--keep", "items")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["key", "region", "items", "prediction", "model_version"]
    assert [r["region"] for r in rows] == [r["region"] for r in records]
    assert [int(r["items"]) for r in rows] == [r["items"] for r in records]
    code, out, err = run(capsys, "predict", str(source), "-f", "demo", "--format", "json", "--keep", "region")
    assert [json.loads(line)["region"] for line in out.splitlines()] == [r["region"] for r in records]
    code, out, err = run(capsys, "predict", str(source), "-f", "demo", "--keep", "colour")
    assert code == 3
    assert "colour" in err
    assert "not a column of the input" in err


def test_models_lists_one_line_per_version_and_json_numbers(
    cli_env: Trained, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "models", "-f", "demo", "--json")
    assert code == 0, err
    versions = json.loads(out)
    assert len(versions) == 2
    assert all(isinstance(v["r2"], float) and isinstance(v["rmse"], float) for v in versions)
    code, out, err = run(capsys, "models", "-f", "demo")
    assert code == 0, err
    body = [line for line in out.splitlines() if line.lstrip("│ ").split(" ")[0] in ("1", "2")]
    assert len(body) == 2, out
    assert max(len(line) for line in out.splitlines()) < 240, "piped output is never cut, never endless"


def test_parquet_in_and_output_format_from_the_file_name(
    cli_env: Trained, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    records = cli_env.records(3)
    source = tmp_path / "rows.parquet"
    pd.DataFrame(records).to_parquet(source)
    target = tmp_path / "out.jsonl"
    code, _out, err = run(capsys, "predict", str(source), "-f", "demo", "-o", str(target))
    assert code == 0, err
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["prediction"] for line in lines] == expected(cli_env, records)


def test_an_output_folder_that_does_not_exist_is_refused_before_predicting(
    cli_env: Trained, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "rows.csv"
    pd.DataFrame(cli_env.records(3)).to_csv(source, index=False)
    before = logged(cli_env)
    code, _out, err = run(
        capsys, "predict", str(source), "-f", "demo", "-o", str(tmp_path / "no" / "out.csv")
    )
    assert code == 2
    assert "does not exist; create it" in err
    assert logged(cli_env) == before, "nothing predicted, nothing logged"


def test_check_as_of_runs_on_the_datas_clock_and_status_says_which(
    cli_env: Trained, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "check", "-f", "demo", "--as-of", "yesterday")
    assert code == 2
    assert "not an ISO-8601 time" in err
    code, out, err = run(capsys, "check", "-f", "demo", "--no-retrain", "--as-of", "2026-01-09T00:00:00Z")
    assert code == 0, err
    code, out, err = run(capsys, "status", "-f", "demo", "--json")
    assert json.loads(out)[0]["serving"]["clock"] == "simulated", out
    code, out, err = run(capsys, "check", "-f", "demo", "--no-retrain")
    assert code == 0, err
    code, out, err = run(capsys, "status", "-f", "demo", "--json")
    assert json.loads(out)[0]["serving"]["clock"] == "wall"


def test_explain_names_inputs_outside_training_and_the_run_warns(
    cli_env: Trained, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    records = cli_env.records(3)
    records[1]["distance_km"] = 99.5
    source = tmp_path / "rows.csv"
    pd.DataFrame(records).to_csv(source, index=False)
    code, out, err = run(capsys, "predict", str(source), "-f", "demo", "--explain", "--no-log")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["outside_training"] for r in rows] == ["", "distance_km", ""]
    assert "warning: distance_km: 1 row(s) outside the training range" in err
    assert "(rows 2)" in err
