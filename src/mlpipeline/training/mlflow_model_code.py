"""The MLflow pyfunc model of every mlpipeline model version ("models from code").

This file is logged as the model's code; MLflow executes it when the model is loaded, so
``mlflow.pyfunc.load_model("models:/<name>@champion")`` works in any environment with the
model's pinned requirements and without mlpipeline: the feature code ships beside it as
``mlpipeline_portable.py`` (see :mod:`mlpipeline.featuresets.portable`). Input is a DataFrame (or
records) of raw feature columns; derived features, fills and category codes are computed
here exactly as mlpipeline computes them; output is one prediction per row: a number, or for
a classifier the class (the target's own value), as MLflow's scoring server returns for
classifiers, or with ``params={"output": "probabilities"}`` one column per class.

Artifacts: ``features`` (the portable feature spec, JSON) and either ``booster``
(LightGBM text model) or ``sklearn`` (a skops file with ``sklearn_trusted`` listing the
types to trust). No pickle is loaded.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel  # type: ignore[attr-defined]

try:  # inside a logged model: shipped next to this file
    import mlpipeline_portable as portable  # type: ignore[import-not-found]
except ImportError:  # inside mlpipeline itself (tests, type checks)
    from mlpipeline.featuresets import portable


class MlpipelineModel(PythonModel):
    """Raw feature records in, predictions out."""

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["features"], encoding="utf-8") as fh:
            self.spec = json.load(fh)
        self.names = [f["name"] for f in self.spec["features"]]
        self.times = [str(n) for n in self.spec.get("times") or ()]
        if "booster" in context.artifacts:
            import lightgbm

            self.model = lightgbm.Booster(model_file=context.artifacts["booster"])
        else:
            import skops.io

            with open(context.artifacts["sklearn_trusted"], encoding="utf-8") as fh:
                trusted = json.load(fh)
            self.model = skops.io.load(context.artifacts["sklearn"], trusted=trusted)

    # A DataFrame hint is one MLflow accepts without deriving a schema from it (the signature
    # with every column's type is recorded explicitly at save time); without hints MLflow warns
    # at every save and asks for them.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        missing = [n for n in self.names + self.times if n not in frame.columns]
        if missing:
            raise ValueError(f"input lacks feature column(s): {', '.join(missing)}")
        columns = {}
        for feature in self.spec["features"]:
            col = frame[feature["name"]]
            if feature["type"] == "categorical":
                columns[feature["name"]] = col.astype(object).where(col.notna(), None).to_numpy()
            else:
                columns[feature["name"]] = pd.to_numeric(col, errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
        for name in self.times:  # timestamps that derived features read: the portable code parses them
            columns[name] = frame[name].to_numpy()
        matrix = portable.build_matrix(self.spec, columns)
        scores = portable.model_scores(self.spec, self.model, matrix)
        if portable.task_of(self.spec) == "regression":
            return np.asarray(scores, dtype=np.float64)
        output = (params or {}).get("output", "labels")
        if output == "probabilities":
            names = [str(c) for c in self.spec["classes"]]
            return pd.DataFrame(portable.class_probabilities(self.spec, scores), columns=names)
        if output != "labels":
            raise ValueError(f"params output must be 'labels' or 'probabilities', got {output!r}")
        return np.asarray(portable.class_labels(self.spec, portable.predicted_codes(self.spec, scores)))


mlflow.models.set_model(MlpipelineModel())
