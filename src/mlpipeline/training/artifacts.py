"""Model-version artifacts on disk: the MLflow model, the explainer, hashes.

Layout of one version (logged under the run's ``model/`` and ``explainer/`` paths)::

    model/                      an MLflow pyfunc model (models from code)
      MLmodel, requirements.txt, python_env.yaml, input_example.json, ...
      artifacts/model.txt       LightGBM text model (or model.skops for scikit-learn)
      artifacts/features.json   portable feature spec (mlpipeline.featuresets.portable)
      code/mlpipeline_portable.py
    explainer/
      explainer.json            format mlpipeline-tree-explainer/1 (below)
      model.txt, features.json  copies, so the explainer stands alone

Every file's sha256 goes into a manifest; the manifest's own sha256 identifies the
version's artifacts in the registry, the production pointer and the local cache.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlpipeline.featuresets import portable
from mlpipeline.registry.digests import digest as manifest_sha256
from mlpipeline.registry.digests import manifest_of
from mlpipeline.training.steps import FittedModel, columns_of

__all__ = [
    "EXPLAINER_FORMAT",
    "TreeExplainer",
    "build_model_dir",
    "manifest_of",
    "manifest_sha256",
    "write_explainer",
]

log = logging.getLogger(__name__)

EXPLAINER_FORMAT = "mlpipeline-tree-explainer/1"
FloatArray = npt.NDArray[np.float64]
_MODEL_CODE = Path(__file__).with_name("mlflow_model_code.py")


def _pin(package: str) -> str:
    return f"{package}=={metadata.version(package)}"


def requirements(fitted: FittedModel) -> list[str]:
    """Explicit pip requirements (MLflow's inference spawns a subprocess and costs seconds)."""
    pins = [_pin("mlflow"), _pin("numpy"), _pin("pandas")]
    pins.append(_pin("lightgbm") if fitted.is_lightgbm else _pin("scikit-learn"))
    if not fitted.is_lightgbm:
        pins.append(_pin("skops"))
    return pins


def build_model_dir(fitted: FittedModel, example: pd.DataFrame, out: Path) -> Path:
    """Save ``fitted`` as a self-contained MLflow pyfunc model under ``out/model``."""
    import mlflow
    from mlflow.models import infer_signature

    staging = out / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    artifacts: dict[str, str] = {"features": str(staging / "features.json")}
    (staging / "features.json").write_text(json.dumps(fitted.spec, indent=1), encoding="utf-8")
    if fitted.is_lightgbm:
        fitted.model.save_model(str(staging / "model.txt"))
        artifacts["booster"] = str(staging / "model.txt")
    else:
        import skops.io

        skops.io.dump(fitted.model, staging / "model.skops")
        trusted = skops.io.get_untrusted_types(file=staging / "model.skops")
        (staging / "trusted.json").write_text(json.dumps(trusted), encoding="utf-8")
        artifacts["sklearn"] = str(staging / "model.skops")
        artifacts["sklearn_trusted"] = str(staging / "trusted.json")
    portable_copy = staging / "mlpipeline_portable.py"
    shutil.copyfile(portable.__file__, portable_copy)
    names = portable.input_names(fitted.spec)
    example = example[names].head(5).reset_index(drop=True)
    scores = fitted.predict(example)
    if fitted.task == "regression":
        signature = infer_signature(example, scores)
    else:  # a classifier answers with its classes; probabilities on request
        labels = portable.class_labels(fitted.spec, portable.predicted_codes(fitted.spec, scores))
        answers: Any = pd.Series(labels)  # MLflow takes a Series; its stubs name only frames/arrays
        signature = infer_signature(example, answers, params={"output": "labels"})
    target = out / "model"
    with warnings.catch_warnings():
        # MLflow's hints about inferred integer columns do not apply: the signature is given
        # explicitly (and predict() is typed, so MLflow derives nothing from its hints).
        warnings.simplefilter("ignore", UserWarning)
        _save(mlflow, target, artifacts, portable_copy, fitted, signature, example)
    shutil.rmtree(staging)
    return target


def _save(
    mlflow: Any,
    target: Path,
    artifacts: dict[str, str],
    portable_copy: Path,
    fitted: FittedModel,
    signature: Any,
    example: pd.DataFrame,
) -> None:
    mlflow.pyfunc.save_model(
        path=str(target),
        python_model=str(_MODEL_CODE),
        artifacts=artifacts,
        code_paths=[str(portable_copy)],
        pip_requirements=requirements(fitted),
        signature=signature,
        input_example=example,
    )


class TreeExplainer:
    """SHAP values of a LightGBM model without pickles: tree path-dependent contributions.

    LightGBM's ``pred_contrib`` computes exactly the values of ``shap.TreeExplainer`` with
    ``feature_perturbation="tree_path_dependent"`` (the last column is the expected value),
    so the explainer is stored as the booster text file, the feature spec and a small JSON
    header, and loads with no code execution.
    """

    def __init__(self, booster: Any, spec: dict[str, Any], expected_value: float) -> None:
        self.booster = booster
        self.spec = spec
        self.expected_value = expected_value
        self.feature_names: list[str] = list(spec["order"])

    @classmethod
    def load(cls, folder: Path) -> TreeExplainer:
        import lightgbm

        header = json.loads((folder / "explainer.json").read_text(encoding="utf-8"))
        if header.get("format") != EXPLAINER_FORMAT:
            raise ValueError(f"{folder}: unsupported explainer format {header.get('format')!r}")
        spec = json.loads((folder / header["features"]).read_text(encoding="utf-8"))
        booster = lightgbm.Booster(model_file=str(folder / header["model_file"]))
        return cls(booster, spec, float(header["expected_value"]))

    def shap_values(self, matrix: FloatArray) -> FloatArray:
        """(rows x features) contributions; rows sum with ``expected_value`` to the model's raw
        score (a binary model's log-odds). A multiclass model gives (rows x classes x features)."""
        contrib = np.asarray(self.booster.predict(matrix, pred_contrib=True), dtype=np.float64)
        width = len(self.feature_names) + 1
        if contrib.shape[1] > width:  # one block of contributions per class
            return contrib.reshape(len(contrib), -1, width)[:, :, :-1]
        return contrib[:, :-1]

    def explain_frame(self, frame: pd.DataFrame) -> FloatArray:
        names = portable.input_names(self.spec)
        return self.shap_values(portable.build_matrix(self.spec, columns_of(frame, names)))


def write_explainer(fitted: FittedModel, background: FloatArray, folder: Path) -> TreeExplainer:
    """Store the explainer of a LightGBM model in ``folder``; return it loaded from there."""
    folder.mkdir(parents=True, exist_ok=True)
    fitted.model.save_model(str(folder / "model.txt"))
    (folder / "features.json").write_text(json.dumps(fitted.spec, indent=1), encoding="utf-8")
    contrib = np.asarray(fitted.model.predict(background[:1], pred_contrib=True), dtype=np.float64)
    header = {
        "format": EXPLAINER_FORMAT,
        "method": "tree_path_dependent",
        "model_file": "model.txt",
        "features": "features.json",
        "expected_value": float(contrib[0, -1]),
        "feature_names": list(fitted.spec["order"]),
        "note": "SHAP values = lightgbm.Booster.predict(X, pred_contrib=True)[:, :-1]",
    }
    (folder / "explainer.json").write_text(json.dumps(header, indent=1), encoding="utf-8")
    return TreeExplainer.load(folder)
