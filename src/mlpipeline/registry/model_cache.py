"""The local model cache: each version downloaded once, verified by sha256 on every load.

``dur/models/<registered name>/<version>/`` holds the MLflow model folder (``model/``)
and a ``manifest.json`` with the sha256 of every file. The manifest's digest must equal
the one recorded on the model version at registration (tag ``sha256``, copied
into the production pointer at promotion): a model whose files do not match is never
loaded. A missing or corrupt cache entry is downloaded again, with a warning in the log.

Loading reads every file once into memory, hashes those bytes and builds the booster
from the very same bytes, so nothing can change between the check and the load. A warm
load needs no MLflow at all (MLflow is imported only to download), which keeps a
server's start-up and a hot swap fast and lets serving go on while MLflow is down.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mlpipeline.errors import ModelIntegrityError
from mlpipeline.featuresets import portable
from mlpipeline.processes import pid_is_gone
from mlpipeline.registry.digests import digest, manifest_of_bytes, read_folder
from mlpipeline.registry.version_tags import SHA_TAG, recorded_sha256

if TYPE_CHECKING:
    from mlpipeline.registry.tracking import ModelVersionInfo, Tracker

__all__ = [
    "REFERENCE_FILE",
    "SHA_TAG",
    "LoadedModel",
    "ModelCache",
    "ModelRef",
    "load_model_folder",
    "load_verified",
]

log = logging.getLogger(__name__)

#: Training-time histograms for drift checks, inside the model folder (see mlpipeline.featuresets.reference).
REFERENCE_FILE = "reference.json"


@dataclass(frozen=True)
class ModelRef:
    """Which model version to load and the digest its files must have."""

    featureset: str
    name: str
    version: str
    run_id: str
    sha256: str

    @classmethod
    def of_version(cls, featureset: str, info: ModelVersionInfo) -> ModelRef:
        expected = recorded_sha256(info.tags)
        if not expected:
            raise ModelIntegrityError(
                f"{info.name} version {info.version} has no recorded digest (tag {SHA_TAG}); "
                "it was not registered by mlpipeline and will not be loaded"
            )
        return cls(featureset, info.name, info.version, info.run_id, expected)


@dataclass
class LoadedModel:
    """A model ready to predict on a feature matrix: spec plus booster (or estimator)."""

    spec: dict[str, Any]
    model: Any
    folder: Path
    is_lightgbm: bool = True
    reference: dict[str, Any] | None = None  # training-time histograms, when the version has them

    def predict_matrix(self, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Scores: predictions, a binary model's positive probability, or class probabilities."""
        return portable.model_scores(self.spec, self.model, matrix)

    def predict_columns(self, columns: dict[str, Any]) -> npt.NDArray[np.float64]:
        return self.predict_matrix(portable.build_matrix(self.spec, columns))


def load_verified(folder: Path, expected_sha256: str) -> LoadedModel:
    """Load the model in ``folder`` if and only if its files hash to ``expected_sha256``."""
    if not folder.is_dir():
        raise ModelIntegrityError(f"model folder {folder} does not exist")
    files = read_folder(folder)
    manifest = manifest_of_bytes(files)
    actual = digest(manifest)
    if actual != expected_sha256:
        raise ModelIntegrityError(
            f"model files in {folder} have digest {actual[:12]}…, the registry recorded "
            f"{expected_sha256[:12]}…{_which_files(folder, manifest)}; refusing to load them"
        )
    return _from_bytes(folder, files)


def _which_files(folder: Path, manifest: dict[str, str]) -> str:
    recorded_path = folder.parent / "manifest.json"
    try:
        recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    changed = sorted(k for k in set(recorded) | set(manifest) if recorded.get(k) != manifest.get(k))
    return f" (differs from the manifest in: {', '.join(changed[:5])})" if changed else ""


def _from_bytes(folder: Path, files: dict[str, bytes]) -> LoadedModel:
    try:
        spec = json.loads(files["artifacts/features.json"])
        reference = json.loads(files[REFERENCE_FILE]) if REFERENCE_FILE in files else None
        if "artifacts/model.txt" in files:
            import lightgbm

            booster = lightgbm.Booster(model_str=files["artifacts/model.txt"].decode("utf-8"))
            return LoadedModel(spec, booster, folder, is_lightgbm=True, reference=reference)
        import skops.io

        trusted = json.loads(files["artifacts/trusted.json"])
        # The list travels with the model; trust only scikit-learn's own types from it (the
        # only estimators training makes), never a callable an edited folder might name.
        foreign = [t for t in trusted if not (isinstance(t, str) and t.startswith("sklearn."))]
        if foreign:
            raise ModelIntegrityError(
                f"model folder {folder} asks to trust types outside scikit-learn "
                f"({', '.join(map(str, foreign[:3]))}); refusing to load it"
            )
        estimator = skops.io.loads(files["artifacts/model.skops"], trusted=trusted)
        return LoadedModel(spec, estimator, folder, is_lightgbm=False, reference=reference)
    except KeyError as exc:
        raise ModelIntegrityError(
            f"model folder {folder} lacks {exc.args[0]}; it was not written by mlpipeline"
        ) from exc


def load_model_folder(folder: Path) -> LoadedModel:
    """Load an mlpipeline model folder without a digest check (tests and tools only)."""
    return _from_bytes(folder, read_folder(folder))


class ModelCache:
    """Downloads model versions into ``root`` once and verifies them on every load.

    ``tracker`` is a factory so that a warm cache never creates an MLflow client.
    """

    def __init__(self, root: Path, tracker: Callable[[], Tracker]) -> None:
        self.root = root
        self._tracker_factory = tracker
        self._tracker: Tracker | None = None

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = self._tracker_factory()
        return self._tracker

    def folder(self, ref: ModelRef) -> Path:
        return self.root / ref.name / ref.version

    def load(self, ref: ModelRef) -> LoadedModel:
        """The verified model of ``ref``, downloading it when missing or corrupt."""
        model_dir = self.folder(ref) / "model"
        if model_dir.is_dir():
            try:
                return load_verified(model_dir, ref.sha256)
            except ModelIntegrityError as exc:
                log.warning(
                    "cached model is corrupt; downloading it again",
                    extra={"model_version": ref.version, "detail": str(exc)},
                )
        elif self.folder(ref).exists():
            log.warning("cached model is incomplete; downloading it", extra={"model_version": ref.version})
        self.ensure(ref, force=True)
        return load_verified(model_dir, ref.sha256)

    def ensure(self, ref: ModelRef, *, force: bool = False) -> Path:
        """The local folder of ``ref``'s model, downloaded and verified if needed (or if ``force``)."""
        target = self.folder(ref)
        model_dir = target / "model"
        if not force and model_dir.is_dir():
            if digest(manifest_of_bytes(read_folder(model_dir))) == ref.sha256:
                return model_dir
            log.warning("cached model is corrupt; downloading it again", extra={"model_version": ref.version})
        recorded = self.tracker.version(ref.featureset, ref.version)
        if recorded_sha256(recorded.tags) != ref.sha256 or recorded.run_id != ref.run_id:
            raise ModelIntegrityError(
                f"{ref.name} version {ref.version}: the registry records digest "
                f"{str(recorded_sha256(recorded.tags))[:12]}… and run {recorded.run_id}, the production "
                f"pointer {ref.sha256[:12]}… and run {ref.run_id}; refusing to load it"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        _sweep_staging(target.parent)
        staging = Path(tempfile.mkdtemp(prefix=f".{ref.version}.{os.getpid()}.", dir=target.parent))
        try:
            local = self.tracker.download(ref.run_id, "model", staging)
            manifest = manifest_of_bytes(read_folder(local))
            actual = digest(manifest)
            if actual != ref.sha256:
                raise ModelIntegrityError(
                    f"{ref.name} version {ref.version}: downloaded files have digest {actual[:12]}…, "
                    f"the registry recorded {ref.sha256[:12]}…; refusing to load it"
                )
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            if target.exists():
                # Replicas starting together download the same version: one that finished first
                # may be loading its copy, so a copy that verifies is kept, not replaced.
                if _verifies(model_dir, ref.sha256):
                    return model_dir
                shutil.rmtree(target)
            try:
                staging.rename(target)  # atomic on one file system: readers never see half a model
            except OSError:
                # Another process finished the same download first; keep its copy if it verifies.
                if digest(manifest_of_bytes(read_folder(model_dir))) != ref.sha256:
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        log.info("model downloaded into the cache", extra={"model_version": ref.version})
        return model_dir


def _verifies(model_dir: Path, sha256: str) -> bool:
    try:
        return model_dir.is_dir() and digest(manifest_of_bytes(read_folder(model_dir))) == sha256
    except OSError:  # removed while being read
        return False


def _sweep_staging(folder: Path) -> None:
    """Remove the staging folders of downloads whose process died (``.<version>.<pid>.<random>``)."""
    for path in folder.glob(".*.*.*"):
        pid = path.name.split(".")[2]
        if path.is_dir() and pid.isdigit() and pid_is_gone(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            log.info("removed the staging folder of an interrupted download", extra={"detail": path.name})
