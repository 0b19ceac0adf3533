"""Settings precedence and validation; the package's public surface."""

from __future__ import annotations

from pathlib import Path

import pytest

import mlpipeline
from mlpipeline.errors import ConfigError, MlpipelineError
from mlpipeline.settings import Settings, load_settings


def test_defaults_point_at_the_embedded_deployment() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.featurestore_url == "sqlite:///dur/featurestore.db"
    assert s.mlflow_tracking_uri.startswith("sqlite:///dur/mlflow/")
    assert s.home == Path("dur")


def test_every_field_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} has no description"


def test_environment_beats_dotenv_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("MLPIPELINE_INGEST_CHUNK_ROWS=5000\nMLPIPELINE_LOG_LEVEL=DEBUG\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().ingest_chunk_rows == 5000
    monkeypatch.setenv("MLPIPELINE_INGEST_CHUNK_ROWS", "7000")
    s = load_settings()
    assert s.ingest_chunk_rows == 7000
    assert s.log_level == "DEBUG"


def test_invalid_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPIPELINE_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError, match="MLPIPELINE_LOG_LEVEL"):
        load_settings()


def test_secret_is_not_shown_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPIPELINE_API_KEY", "very-secret-key")
    s = load_settings()
    assert "very-secret-key" not in repr(s)
    assert s.api_key is not None
    assert s.api_key.get_secret_value() == "very-secret-key"


def test_public_surface_is_explicit() -> None:
    for name in mlpipeline.__all__:
        assert hasattr(mlpipeline, name), name
    assert issubclass(ConfigError, MlpipelineError)


def test_error_codes_are_unique_and_stable() -> None:
    import mlpipeline.errors as errors

    classes = [getattr(errors, n) for n in errors.__all__ if n != "Problem"]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    assert all(code.startswith("MLP-") for code in codes)
    for cls in classes:  # the hierarchy drawn in the module docstring matches the code
        assert cls.code in (errors.__doc__ or ""), cls


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`MLPIPELINE_{name.upper()}`" in readme, f"README lacks MLPIPELINE_{name.upper()}"


def test_env_example_has_placeholders_only() -> None:
    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    for line in text.splitlines():
        if "PASSWORD=" in line or ("_USER=" in line and "ROOT" in line):
            assert line.split("=", 1)[1] in ("CHANGE_ME", "mlflow"), line


def test_portable_module_needs_only_numpy() -> None:
    """It ships inside every MLflow model, where mlpipeline is not installed."""
    import ast

    import mlpipeline.featuresets.portable as portable

    tree = ast.parse(Path(portable.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "ast", "collections", "datetime", "typing", "numpy"}, imported


def test_the_stores_follow_home_unless_set(tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"
    moved = Settings(home=home, _env_file=None)  # type: ignore[call-arg]
    assert moved.featurestore_url == f"sqlite:///{home / 'featurestore.db'}"
    assert moved.mlflow_tracking_uri == f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    assert moved.mlflow_artifact_root == str(home / "mlflow" / "artifacts")
    assert moved.log_dir == home / "logs"
    pinned = Settings(home=home, featurestore_url="sqlite:///x.db", _env_file=None)  # type: ignore[call-arg]
    assert pinned.featurestore_url == "sqlite:///x.db"
    assert Settings(_env_file=None).featurestore_url == "sqlite:///dur/featurestore.db"  # type: ignore[call-arg]
