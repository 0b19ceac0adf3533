"""mlpipeline: a continuous-training pipeline service.

Feature store → automated training → MLflow tracking and registry → promotion →
prediction service → monitoring → retraining trigger. The public surface is listed in
``__all__``; everything else is internal and may change.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from mlpipeline.errors import MlpipelineError
from mlpipeline.featuresets.definition import Definition, load_definition
from mlpipeline.settings import Settings, load_settings

try:
    __version__ = version("mlpipeline")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["Definition", "MlpipelineError", "Settings", "__version__", "load_definition", "load_settings"]
