"""The local model cache: each version downloaded once, verified by sha256 on every load.

``dur/models/<registered name>/<version>/`` holds the MLflow model folder and a
``manifest.json`` with the sha256 of every file. The manifest's digest must equal the one
recorded on the model version at registration (tag ``mlpipeline.sha256``): a model whose
files do not match is never loaded. A missing or corrupt cache entry is downloaded again,
with a warning in the log.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlpipeline import portable
from mlpipeline.artifacts import manifest_of, manifest_sha256
from mlpipeline.errors import ModelIntegrityError
from mlpipeline.tracking import ModelVersionInfo, Tracker

__all__ = ["SHA_TAG", "LoadedModel", "ModelCache", "load_model_folder"]

log = logging.getLogger(__name__)

#: Model-version tag holding the manifest digest recorded at registration.
SHA_TAG = "mlpipeline.sha256"


@dataclass
class LoadedModel:
    """A model ready to predict on a feature matrix: spec plus booster (or estimator)."""

    spec: dict[str, Any]
    model: Any
    folder: Path

    def predict_matrix(self, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.asarray(self.model.predict(matrix), dtype=np.float64)

    def predict_columns(self, columns: dict[str, Any]) -> npt.NDArray[np.float64]:
        return self.predict_matrix(portable.build_matrix(self.spec, columns))


def load_model_folder(folder: Path) -> LoadedModel:
    """Load an MLflow model folder written by mlpipeline without MLflow and without pickle."""
    art = folder / "artifacts"
    spec = json.loads((art / "features.json").read_text(encoding="utf-8"))
    if (art / "model.txt").is_file():
        import lightgbm

        return LoadedModel(spec, lightgbm.Booster(model_file=str(art / "model.txt")), folder)
    import skops.io

    trusted = json.loads((art / "trusted.json").read_text(encoding="utf-8"))
    return LoadedModel(spec, skops.io.load(art / "model.skops", trusted=trusted), folder)


class ModelCache:
    """Downloads model versions into ``root`` once and verifies them before use."""

    def __init__(self, root: Path, tracker: Tracker) -> None:
        self.root = root
        self.tracker = tracker

    def folder(self, info: ModelVersionInfo) -> Path:
        return self.root / info.name / info.version

    def ensure(self, info: ModelVersionInfo) -> Path:
        """The verified local folder of ``info``'s model, downloading it if needed."""
        expected = info.tags.get(SHA_TAG)
        if not expected:
            raise ModelIntegrityError(
                f"{info.name} version {info.version} has no recorded digest (tag {SHA_TAG}); "
                "it was not registered by mlpipeline and will not be loaded"
            )
        target = self.folder(info)
        model_dir = target / "model"
        if model_dir.is_dir():
            actual = manifest_sha256(manifest_of(model_dir))
            if actual == expected:
                return model_dir
            log.warning(
                "cached model is corrupt or incomplete; downloading it again",
                extra={"model_version": info.version, "path": str(model_dir)},
            )
        elif target.exists():
            log.warning("cached model is missing; downloading it", extra={"model_version": info.version})
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{info.version}-", dir=target.parent))
        try:
            local = self.tracker.download(info.run_id, "model", staging)
            manifest = manifest_of(local)
            actual = manifest_sha256(manifest)
            if actual != expected:
                raise ModelIntegrityError(
                    f"{info.name} version {info.version}: downloaded files have digest {actual[:12]}…, "
                    f"the registry recorded {expected[:12]}…; refusing to load it"
                )
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)  # atomic on one file system: readers never see half a model
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return model_dir

    def load(self, info: ModelVersionInfo) -> LoadedModel:
        return load_model_folder(self.ensure(info))
