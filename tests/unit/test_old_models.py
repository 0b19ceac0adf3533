"""Models logged by an earlier mlpipeline keep loading after the package changes shape.

The fixture was saved before the package moved its modules into one subpackage per stage; a
logged model ships its own feature code (``mlpipeline_portable.py``) and model-from-code file, so
neither MLflow's loader nor the verified cache may depend on where those modules live today.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpipeline.registry.digests import digest, manifest_of_bytes, read_folder
from mlpipeline.registry.model_cache import load_verified

FIXTURE = Path(__file__).parents[1] / "fixtures" / "model_before_layout"


@pytest.fixture
def old_model(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE / "model", tmp_path / "model")
    return tmp_path / "model"


def _inputs() -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.read_json(FIXTURE / "input.json", orient="records")
    expected = np.asarray(json.loads((FIXTURE / "expected.json").read_text()), dtype=np.float64)
    return frame, expected


def test_old_model_loads_through_mlflow_pyfunc(old_model: Path) -> None:
    import mlflow

    sys.modules.pop("mlpipeline_portable", None)  # the model's own copy, not one cached earlier
    frame, expected = _inputs()
    model = mlflow.pyfunc.load_model(str(old_model))
    np.testing.assert_allclose(model.predict(frame), expected, rtol=1e-9)


def test_old_model_loads_through_the_verified_cache(old_model: Path) -> None:
    frame, expected = _inputs()
    sha = digest(manifest_of_bytes(read_folder(old_model)))
    loaded = load_verified(old_model, sha)
    columns = {name: frame[name].to_numpy() for name in frame.columns}
    np.testing.assert_allclose(loaded.predict_columns(columns), expected, rtol=1e-9)
