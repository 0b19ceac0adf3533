"""Model files are verified by hash before loading, whatever was changed and wherever.

tests/serving/test_cache_and_predictor.py covers a deleted or bit-flipped booster in the
cache (repaired from MLflow) and a digest tag that disagrees with the pointer. Here: files
changed *in the artifact store* (a same-size edit, an extra file, a symbolic link out of the
folder) are refused by ``predict`` and ``promote`` (MLP-600; the link already by MLflow's
download, MLP-500) and leave the production pointer where it was; the same changes *in the
cache* are never loaded (the copy is replaced from the artifact store); and a scikit-learn
model whose own trust list names foreign types is refused even when its digest matches.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from mlpipeline.cli import main
from mlpipeline.errors import ModelIntegrityError
from mlpipeline.featurestore.sql import SqlFeatureStore
from mlpipeline.registry.digests import digest, manifest_of
from mlpipeline.registry.model_cache import ModelCache, load_verified
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.tracking import Tracker
from mlpipeline.serving.predictor import Predictor
from tests.trained_home import Trained

pytestmark = pytest.mark.slow


def stored_model_dir(trained: Trained, version: str) -> Path:
    """The version's model folder in the (local) MLflow artifact store."""
    tracker = Tracker(trained.settings)
    info = tracker.version("demo", version)
    run = tracker.client.get_run(info.run_id)
    folder = Path(unquote(urlsplit(run.info.artifact_uri).path)) / "model"
    assert (folder / "MLmodel").is_file(), folder
    return folder


def cache_dir(trained: Trained, version: str) -> Path:
    return trained.settings.home / "models" / "mlpipeline-demo" / version


def same_size_edit(path: Path) -> None:
    """Change one digit of the first split threshold: the booster still parses, the size is equal."""
    text = path.read_text(encoding="utf-8")
    start = text.index("threshold=") + len("threshold=")
    pos = next(i for i in range(start, len(text)) if text[i].isdigit() and text[i] != "0")
    edited = text[:pos] + ("1" if text[pos] != "1" else "2") + text[pos + 1 :]
    assert len(edited) == len(text)
    assert edited != text
    path.write_text(edited, encoding="utf-8")


def add_extra_file(folder: Path, outside: Path) -> None:
    (folder / "artifacts" / "extra.pkl").write_bytes(b"\x80\x04K\x01.")  # a pickle of 1


def link_out_of_folder(folder: Path, outside: Path) -> None:
    """features.json becomes a link to a copy outside the folder, with one value changed."""
    target = folder / "artifacts" / "features.json"
    spec = json.loads(target.read_text(encoding="utf-8"))
    spec["order"] = list(reversed(spec["order"]))
    outside.write_text(json.dumps(spec), encoding="utf-8")
    target.unlink()
    target.symlink_to(outside)


TAMPERING = {"same-size edit": None, "extra file": add_extra_file, "symlink out": link_out_of_folder}


def tamper(kind: str, folder: Path, outside: Path) -> None:
    if kind == "same-size edit":
        same_size_edit(folder / "artifacts" / "model.txt")
    else:
        TAMPERING[kind](folder, outside)  # type: ignore[misc]


def assert_refused(kind: str, code: int, err: str) -> None:
    """MLP-600 (exit 6) when the files do not hash to the registered digest. A link out of the
    folder never gets that far: MLflow refuses to download a path that resolves outside the
    artifact directory, which mlpipeline reports as a failed download (MLP-500, exit 5)."""
    if kind == "symlink out":
        assert code == 5, err
        assert "error MLP-500" in err
        assert "could not download model" in err
    else:
        assert code == 6, err
        assert "error MLP-600" in err
        assert "refusing" in err


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cli_env(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Trained:
    s = trained.settings
    for key, value in {
        "MLPIPELINE_HOME": str(s.home),
        "MLPIPELINE_FEATURESTORE_URL": s.featurestore_url,
        "MLPIPELINE_MLFLOW_TRACKING_URI": s.mlflow_tracking_uri,
        "MLPIPELINE_MLFLOW_ARTIFACT_ROOT": s.mlflow_artifact_root,
        "MLPIPELINE_LOG_DIR": str(s.log_dir),
        "MLPIPELINE_PREDICTION_LOG": "false",
    }.items():
        monkeypatch.setenv(key, value)
    return trained


def pointer_version(trained: Trained, store: SqlFeatureStore) -> str:
    pointer = SqlPointerStore(store).get("demo")
    assert pointer is not None
    return pointer.version


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_promote_refuses_a_version_changed_in_the_artifact_store(
    cli_env: Trained, store: SqlFeatureStore, capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    trained = cli_env
    shutil.rmtree(cache_dir(trained, "2"), ignore_errors=True)  # promotion must fetch v2
    tamper(kind, stored_model_dir(trained, "2"), tmp_path / "outside.json")
    code, _, err = run_cli(capsys, "promote", "2", "-f", "demo", "-r", "tampered")
    assert_refused(kind, code, err)
    assert pointer_version(trained, store) == "1"
    assert Tracker(trained.settings).alias_version("demo", "champion") == "1"
    assert not (cache_dir(trained, "2") / "model").exists(), "nothing unverified is left in the cache"


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_predict_refuses_the_champion_changed_in_the_artifact_store(
    cli_env: Trained, store: SqlFeatureStore, capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    trained = cli_env
    shutil.rmtree(cache_dir(trained, "1"))  # a cold cache: the serving path downloads v1
    tamper(kind, stored_model_dir(trained, "1"), tmp_path / "outside.json")
    rows = tmp_path / "rows.json"
    rows.write_text("\n".join(json.dumps(r) for r in trained.records(3)), encoding="utf-8")
    out = tmp_path / "out.csv"
    code, stdout, err = run_cli(capsys, "predict", str(rows), "-f", "demo", "-o", str(out))
    assert_refused(kind, code, err)
    assert not out.exists()
    assert not stdout.strip()
    assert pointer_version(trained, store) == "1"


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_the_same_changes_in_the_cache_are_never_loaded(
    trained: Trained, store: SqlFeatureStore, tmp_path: Path, kind: str
) -> None:
    """The cache copy is replaced from the artifact store; the served model is the registered one."""
    pointers = SqlPointerStore(store)
    pointer = pointers.get("demo")
    assert pointer is not None
    model_dir = cache_dir(trained, "1") / "model"
    reference = Predictor(
        "demo", pointers, ModelCache(trained.settings.home / "models", lambda: Tracker(trained.settings))
    )
    expected = reference.predict_records(trained.records(20)).values
    tamper(kind, model_dir, tmp_path / "outside.json")
    before = digest(manifest_of(model_dir))
    assert before != pointer.sha256
    predictor = Predictor(
        "demo", pointers, ModelCache(trained.settings.home / "models", lambda: Tracker(trained.settings))
    )
    got = predictor.predict_records(trained.records(20)).values
    np.testing.assert_array_equal(got, expected)
    assert digest(manifest_of(model_dir)) == pointer.sha256
    assert not (model_dir / "artifacts" / "extra.pkl").exists()
    assert not (model_dir / "artifacts" / "features.json").is_symlink()
    if kind == "symlink out":
        assert (tmp_path / "outside.json").exists(), "the link's target is left alone"


def test_a_symlink_with_identical_content_is_not_followed(trained: Trained, tmp_path: Path) -> None:
    """Even a link to a byte-identical copy does not verify: model folders never hold links,
    and the digest covers the link itself, not whatever it points at."""
    store_dir = tmp_path / "model"
    shutil.copytree(cache_dir(trained, "1") / "model", store_dir)
    recorded = digest(manifest_of(store_dir))
    load_verified(store_dir, recorded)
    target = store_dir / "artifacts" / "model.txt"
    outside = tmp_path / "model-copy.txt"
    shutil.copyfile(target, outside)
    target.unlink()
    target.symlink_to(outside)
    with pytest.raises(ModelIntegrityError) as info:
        load_verified(store_dir, recorded)
    assert info.value.code == "MLP-600"
    artifacts = store_dir / "artifacts"
    shutil.move(str(artifacts), tmp_path / "artifacts-elsewhere")
    artifacts.symlink_to(tmp_path / "artifacts-elsewhere", target_is_directory=True)
    with pytest.raises(ModelIntegrityError):
        load_verified(store_dir, recorded)


def test_a_scikit_learn_model_may_only_trust_scikit_learn_types(tmp_path: Path) -> None:
    """The skops trust list travels inside the folder; a folder whose digest was re-recorded by
    whoever edited it still cannot make the loader trust a foreign callable."""
    import skops.io
    from sklearn.ensemble import HistGradientBoostingRegressor

    x = np.random.default_rng(0).random((200, 2))
    estimator = HistGradientBoostingRegressor(max_iter=5).fit(x, x.sum(axis=1))
    folder = tmp_path / "model"
    (folder / "artifacts").mkdir(parents=True)
    (folder / "artifacts" / "features.json").write_text('{"order": ["a", "b"]}', encoding="utf-8")
    skops.io.dump(estimator, folder / "artifacts" / "model.skops")
    trusted = skops.io.get_untrusted_types(file=folder / "artifacts" / "model.skops")
    assert trusted
    assert all(t.startswith("sklearn.") for t in trusted)
    (folder / "artifacts" / "trusted.json").write_text(json.dumps(trusted), encoding="utf-8")
    loaded = load_verified(folder, digest(manifest_of(folder)))
    np.testing.assert_allclose(loaded.predict_matrix(x[:5]), estimator.predict(x[:5]))
    (folder / "artifacts" / "trusted.json").write_text(
        json.dumps([*trusted, "builtins.exec"]), encoding="utf-8"
    )
    with pytest.raises(ModelIntegrityError, match="outside scikit-learn"):
        load_verified(folder, digest(manifest_of(folder)))
