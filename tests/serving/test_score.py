"""'mlpipeline score' as a user runs it: chunked files and folders, CSV and Parquet, the same
predictions as the API's path, bad rows stopping the job or set aside, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.sql import open_store
from mlpipeline.serving.predictor import open_predictor
from tests.trained_home import Trained

from .test_cli_predict import run

pytestmark = pytest.mark.slow


def rows(trained: Trained, n: int) -> pd.DataFrame:
    frame = trained.rows.head(n).reset_index(drop=True)
    assert len(frame) == n
    return frame


def reference(trained: Trained, frame: pd.DataFrame) -> np.ndarray:
    with open_predictor(trained.settings, "demo", log_predictions=False) as p:
        return np.asarray(p.predict_records(frame.to_dict("records")).values)


def test_chunks_give_the_same_predictions_as_one_request(
    cli_env: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = rows(cli_env, 1_000)
    frame.to_csv(tmp_path / "in.csv", index=False)
    code, _, err = run(
        capsys, "score", str(tmp_path / "in.csv"), "-f", "demo", "-o", str(tmp_path / "out.parquet"),
        "--chunk-rows", "128", "--keep", "region",
    )  # fmt: skip
    assert code == 0, err
    assert "scored 1,000 of 1,000 row(s)" in err
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out.columns) == ["order_id", "region", "prediction", "model_version"]
    assert out["order_id"].tolist() == frame["order_id"].astype(str).tolist()
    np.testing.assert_allclose(out["prediction"].to_numpy(), reference(cli_env, frame))
    assert set(out["model_version"]) == {"1"}
    assert not list(tmp_path.glob(".*partial"))


def test_a_parquet_folder_scores_file_by_file_into_a_folder(
    cli_env: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = rows(cli_env, 600)
    (tmp_path / "in").mkdir()
    frame.iloc[:250].to_parquet(tmp_path / "in" / "part-0.parquet")
    frame.iloc[250:].to_parquet(tmp_path / "in" / "part-1.parquet")
    code, _, err = run(capsys, "score", str(tmp_path / "in"), "-f", "demo", "-o", str(tmp_path / "out"))
    assert code == 0, err
    out = pd.read_parquet(tmp_path / "out")
    np.testing.assert_allclose(out["prediction"].to_numpy(), reference(cli_env, frame))


def test_a_bad_row_stops_the_job_with_its_row_in_the_whole_input(
    cli_env: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = rows(cli_env, 500).astype(object)
    frame.loc[300, "distance_km"] = "far"
    frame.to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out.csv"
    code, _, err = run(
        capsys, "score", str(tmp_path / "in.csv"), "-f", "demo", "-o", str(out), "--chunk-rows", "100"
    )
    assert code == 3
    assert "in.csv rejected" in err
    assert "not a number ('far') at rows 301" in err
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial")), "nothing half-written"


def test_reject_to_sets_bad_rows_aside_and_scores_the_rest(
    cli_env: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = rows(cli_env, 500).astype(object)
    frame.loc[7, "distance_km"] = "far"
    frame.loc[420, "region"] = "mars"
    frame.to_csv(tmp_path / "in.csv", index=False)
    code, _, err = run(
        capsys, "score", str(tmp_path / "in.csv"), "-f", "demo", "-o", str(tmp_path / "out.csv"),
        "--reject-to", str(tmp_path / "bad.csv"), "--chunk-rows", "100", "--log",
    )  # fmt: skip
    assert code == 0, err
    assert "scored 498 of 500 row(s)" in err
    bad = pd.read_csv(tmp_path / "bad.csv", dtype=str)
    assert bad["input_row"].tolist() == ["8", "421"]
    assert bad["order_id"].tolist() == [str(frame.loc[7, "order_id"]), str(frame.loc[420, "order_id"])]
    assert "not a number ('far')" in bad["problem"][0]
    assert "unknown category ('mars')" in bad["problem"][1]
    out = pd.read_csv(tmp_path / "out.csv", dtype={"order_id": str})
    good = frame.drop(index=[7, 420]).reset_index(drop=True)
    assert out["order_id"].tolist() == good["order_id"].astype(str).tolist()
    np.testing.assert_allclose(out["prediction"].to_numpy(), reference(cli_env, good), rtol=1e-6)
    store = open_store(cli_env.settings)
    with store.engine.connect() as conn:
        logged = conn.execute(select(func.count()).select_from(store.tables.prediction_log)).scalar_one()
    store.dispose()
    assert logged == 498, "--log appends every scored row to the prediction log"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv", "-o", "out.csv"], "does not exist"),
        (["in.csv", "-o", "out.json"], "write .csv or .parquet"),
        (["in.csv", "-o", "out.csv", "--reject-to", "out.csv"], "must differ from --output"),
        (["in.csv", "-o", "nowhere/out.csv"], "does not exist"),
        (["in.csv", "-o", "out.csv", "--keep", "regoin"], "--keep regoin: not a column of in.csv (it has: "),
        (["in.csv", "-o", "out.csv", "--keep", "prediction"], "the output already has a column of that name"),
    ],
)
def test_bad_arguments_are_named(
    cli_env: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    rows(cli_env, 10).to_csv(tmp_path / "in.csv", index=False)
    resolved = [str(tmp_path / a) if a.endswith((".csv", ".json")) else a for a in args]
    code, out, err = run(capsys, "score", *resolved, "-f", "demo")
    assert code != 0
    assert message in out + err
    assert not (tmp_path / "out.csv").exists()


def test_from_store_streams_the_stored_rows_and_remembers_what_it_scored(
    cli_env: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(cli_env.settings)
    with store.engine.connect() as conn:
        table = store.table_for(load_definition("demo"))
        stored = conn.execute(select(func.count()).select_from(table)).scalar_one()
        first = conn.execute(select(func.min(table.c.ordered_at))).scalar_one()
    store.dispose()
    out = tmp_path / "all.parquet"
    code, _, err = run(
        capsys, "score", "--from-store", "-f", "demo", "-o", str(out), "--unscored", "--chunk-rows", "333"
    )
    assert code == 0, err
    scored = pd.read_parquet(out)
    assert len(scored) == stored, "every stored row, across chunks, none lost"
    assert scored["order_id"].dtype.kind == "i", "keys keep the store's type"
    code, _, err = run(
        capsys, "score", "--from-store", "-f", "demo", "-o", str(tmp_path / "again.parquet"), "--unscored"
    )
    assert code == 0
    assert "nothing to score" in err
    assert not (tmp_path / "again.parquet").exists()
    since = pd.Timestamp(first).normalize() + pd.Timedelta(days=1)
    until = since + pd.Timedelta(days=1)
    code, _, err = run(
        capsys, "score", "--from-store", "-f", "demo", "-o", str(tmp_path / "day.csv"),
        "--since", since.isoformat(), "--until", until.isoformat(),
    )  # fmt: skip
    assert code == 0, err
    day = pd.read_csv(tmp_path / "day.csv")
    assert 0 < len(day) < stored


def test_from_store_refuses_what_does_not_go_with_it(
    cli_env: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows(cli_env, 10).to_csv(tmp_path / "in.csv", index=False)
    out = str(tmp_path / "o.csv")
    for args, message in (
        (["--from-store", str(tmp_path / "in.csv")], "not both"),
        (["--from-store", "--engine", "spark"], "pandas engine"),
        ([str(tmp_path / "in.csv"), "--unscored"], "--from-store"),
    ):
        code, stdout, err = run(capsys, "score", *args, "-f", "demo", "-o", out)
        assert code == 2, (args, err)
        assert message in stdout + err, (args, err)


def test_edges_fail_cleanly_or_succeed_cleanly(
    cli_env: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = rows(cli_env, 50)
    frame.head(0).to_csv(tmp_path / "empty.csv", index=False)
    code, _, err = run(
        capsys, "score", str(tmp_path / "empty.csv"), "-f", "demo", "-o", str(tmp_path / "e.csv"),
        "--reject-to", str(tmp_path / "e-bad.csv"),
    )  # fmt: skip
    assert code == 3
    assert "no data rows" in err
    assert not (tmp_path / "e.csv").exists()
    assert not (tmp_path / "e-bad.csv").exists()
    assert not list(tmp_path.glob(".*partial"))
    # A clean input with --reject-to (Parquet): the output, and no reject file at all.
    frame.to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "bad.parquet").write_bytes(b"stale")
    code, _, err = run(
        capsys, "score", str(tmp_path / "in.csv"), "-f", "demo", "-o", str(tmp_path / "o.parquet"),
        "--reject-to", str(tmp_path / "bad.parquet"),
    )  # fmt: skip
    assert code == 0, err
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == 50
    assert not (tmp_path / "bad.parquet").exists(), "no bad row: no reject file (a stale one removed)"
    # A column problem is the input's: --reject-to does not turn it into 50 bad rows.
    frame.drop(columns=["distance_km"]).to_csv(tmp_path / "short.csv", index=False)
    code, _, err = run(
        capsys, "score", str(tmp_path / "short.csv"), "-f", "demo", "-o", str(tmp_path / "s.csv"),
        "--reject-to", str(tmp_path / "s-bad.csv"),
    )  # fmt: skip
    assert code == 3
    assert "distance_km" in err
    assert not (tmp_path / "s.csv").exists()
    assert not (tmp_path / "s-bad.csv").exists()
    # A folder output never deletes what is not a previous output; an output is not its input.
    (tmp_path / "data").mkdir()
    frame.to_parquet(tmp_path / "data" / "orders.parquet")
    code, out, err = run(capsys, "score", str(tmp_path / "data"), "-f", "demo", "-o", str(tmp_path / "data"))
    assert code == 2
    assert "must differ from the input" in out + err
    code, _, err = run(capsys, "score", str(tmp_path / "in.csv"), "-f", "demo", "-o", str(tmp_path / "data"))
    assert code == 2
    assert "holds files other than a previous output's parts" in err
    assert (tmp_path / "data" / "orders.parquet").exists()
