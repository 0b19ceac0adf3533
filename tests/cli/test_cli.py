"""The command line as a user runs it: exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlpipeline.cli import main
from mlpipeline.featurestore.synthetic import StreamConfig, generate_day


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows(capsys: pytest.CaptureFixture[str], featureset: str) -> int:
    code, out, _ = run(capsys, "status", "--featureset", featureset, "--json")
    assert code == 0
    return int(json.loads(out)[0]["rows"])


@pytest.fixture
def day_csv(tmp_path: Path) -> Path:
    path = tmp_path / "day0.csv"
    generate_day(StreamConfig(rows_per_day=100), 0).to_csv(path, index=False)
    return path


def test_help_on_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ([], ["init"], ["ingest"], ["status"], ["featuresets"], ["generate"], ["demo"]):
        code, out, _ = run(capsys, *command, "--help")
        assert code == 0
        assert "Usage" in out


def test_init_then_ingest_then_reingest(capsys: pytest.CaptureFixture[str], day_csv: Path) -> None:
    code, out, _ = run(capsys, "init")
    assert code == 0
    assert "demo" in out
    assert "housing" in out
    assert Path("dur/featurestore.db").is_file()  # the embedded default, relative to the working dir
    code, out, _ = run(capsys, "ingest", str(day_csv), "--featureset", "demo")
    assert code == 0
    assert "ingested 100 rows" in out
    code, out, _ = run(capsys, "ingest", str(day_csv), "-f", "demo")
    assert code == 0
    assert "skipped" in out
    assert "same content was ingested as batch 1" in out
    assert rows(capsys, "demo") == 100


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", ["MLP-201", "no data rows"]),
        ("order_id,ordered_at\n1,2026-01-01\n", ["MLP-200", "distance_km", "missing from the batch"]),
        (None, ["MLP-200", "distance_km", "not a number", "'far'"]),
        ("order_id;ordered_at;distance_km\n1;2;3\n", ["';'-separated"]),
        (b"\xff\xfe\x00bad", ["UTF-8"]),
        ('order_id,ordered_at\n1,"unterminated\n', ["MLP-20"]),
    ],
    ids=["empty", "missing_columns", "text_in_number", "delimiter", "encoding", "truncated"],
)
def test_bad_files_rejected_with_one_line_and_nothing_written(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    day_csv: Path,
    content: str | bytes | None,
    words: list[str],
) -> None:
    run(capsys, "init")
    run(capsys, "ingest", str(day_csv), "-f", "demo")
    bad = tmp_path / "bad.csv"
    if content is None:
        text = day_csv.read_text().splitlines()
        header = text[0].split(",")
        cells = text[5].split(",")
        cells[header.index("distance_km")] = "far"
        text[5] = ",".join(cells)
        bad.write_text("\n".join(text) + "\n")
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    code, out, err = run(capsys, "ingest", str(bad), "-f", "demo")
    assert code == 3
    assert out == ""
    assert err.count("\n") == 1, err  # one line, no traceback
    assert "Traceback" not in err
    for word in words:
        assert word in err
    assert rows(capsys, "demo") == 100


def test_unknown_featureset_and_missing_file(capsys: pytest.CaptureFixture[str], day_csv: Path) -> None:
    code, _, err = run(capsys, "ingest", str(day_csv), "-f", "nope")
    assert code == 2
    assert "feature set 'nope' not found" in err
    code, _, err = run(capsys, "ingest", "missing.csv", "-f", "demo")
    assert code == 2
    assert "does not exist" in err


def test_bad_setting_is_a_config_error_without_echoing_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPIPELINE_SQLITE_BUSY_TIMEOUT_S", "-5")
    code, _, err = run(capsys, "status")
    assert code == 2
    assert "MLPIPELINE_SQLITE_BUSY_TIMEOUT_S" in err
    monkeypatch.delenv("MLPIPELINE_SQLITE_BUSY_TIMEOUT_S")
    monkeypatch.setenv("MLPIPELINE_FEATURESTORE_URL", "nosuchdb://user:s3cret-pw@host/db")
    code, _, err = run(capsys, "init")
    assert code == 2
    assert "s3cret-pw" not in err


def test_verbose_shows_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "e.csv"
    empty.write_text("")
    code, _, err = run(capsys, "--verbose", "ingest", str(empty), "-f", "demo")
    assert code == 3
    assert "Traceback" in err


def test_status_before_init(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", "--json")
    assert code == 0
    assert all(not r["initialised"] for r in json.loads(out))


def test_logs_are_json_lines_with_featureset(capsys: pytest.CaptureFixture[str], day_csv: Path) -> None:
    run(capsys, "init")
    run(capsys, "ingest", str(day_csv), "-f", "demo")
    events = [json.loads(line) for line in Path("dur/logs/mlpipeline.jsonl").read_text().splitlines()]
    ingested = [e for e in events if e["message"] == "batch ingested"]
    assert ingested
    assert ingested[0]["featureset"] == "demo"
    assert ingested[0]["rows"] == 100
    assert {"time", "level", "logger"} <= set(ingested[0])


def test_generate_and_demo_are_repeatable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "generate", str(tmp_path / "s.parquet"), "--days", "2", "--rows-per-day", "50")
    assert code == 0
    assert "100 rows" in out
    code, out, _ = run(capsys, "demo", "--days", "4", "--rows-per-day", "100", "--no-train")
    assert code == 0
    assert "4 new batch(es)" in out
    code, out, _ = run(capsys, "demo", "--days", "4", "--rows-per-day", "100", "--no-train")
    assert "0 new batch(es), 4 already present" in out
    assert "holds 400 rows" in out


def test_console_script_in_a_fresh_process(tmp_path: Path, day_csv: Path) -> None:
    exe = Path(sys.executable).with_name("mlpipeline")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPELINE_")}
    done = subprocess.run([str(exe), "ingest", str(day_csv), "-f", "demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ingested 100 rows" in done.stdout
    done = subprocess.run([str(exe), "ingest", "nope.csv", "-f", "demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error MLP-400:")


@pytest.mark.slow
def test_train_models_promote_rollback_commands(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "stream.csv"
    generate_stream_csv = generate_day  # one day is too small; three days are enough for the demo model
    import pandas as pd

    pd.concat([generate_stream_csv(StreamConfig(rows_per_day=400), d) for d in range(3)]).to_csv(
        data, index=False
    )
    run(capsys, "init")
    assert run(capsys, "ingest", str(data), "-f", "demo")[0] == 0
    code, out, err = run(capsys, "train", "-f", "demo", "--reason", "first")
    assert code == 0, err
    assert "version 1" in out
    assert "gate: promote" in out
    code, out, _ = run(capsys, "train", "-f", "demo")
    assert "gate: hold" in out
    code, out, _ = run(capsys, "models", "-f", "demo", "--json")
    listed = json.loads(out)
    assert [(m["version"], m["aliases"], m["decision"]) for m in listed] == [
        ("1", ["champion"], "promote"),
        ("2", [], "hold"),
    ]
    assert listed[0]["trigger"] == "first"
    assert run(capsys, "promote", "2", "-f", "demo", "-r", "test")[1].strip().endswith("version 2")
    assert run(capsys, "rollback", "-f", "demo")[1].strip().endswith("version 1")
    code, _, err = run(capsys, "rollback", "-f", "demo")
    assert code == 2
    assert "nothing to roll back to" in err
    code, _, err = run(capsys, "approve", "2", "-f", "demo")
    assert code == 2
    assert "not awaiting approval" in err


def test_an_invalid_setting_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    """In a real process: no test harness handler may catch the log record in its place."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPELINE_")}
    env["MLPIPELINE_RETRAIN_COOLDOWN"] = "0"
    command = [sys.executable, "-c", "from mlpipeline.cli import main; main()"]
    done = subprocess.run(
        [*command, "status"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith("error MLP-100: invalid settings: MLPIPELINE_RETRAIN_COOLDOWN")
    loud = subprocess.run(
        [*command, "--verbose", "status"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert "Traceback" in loud.stderr, "--verbose still shows it"


def test_featuresets_lists_every_file_and_each_broken_one_with_its_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "aaa.toml").write_text('name = "aaa"\ntable = "aaa"\n[target]\ncolumn = "y"\n')
    monkeypatch.setenv("MLPIPELINE_FEATURESETS_DIR", str(folder))
    code, out, err = run(capsys, "featuresets")
    assert code == 2
    assert "aaa: invalid:" in out
    assert "demo_late:" in out  # the files after the broken one are listed too
    assert "binary classifier" in out
    assert "housing:" in out
    assert "1 definition(s) do not load" in err
