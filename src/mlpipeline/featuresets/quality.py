"""What "good" means for one feature set: its ``[quality]`` table over the ``MLPIPELINE_*`` defaults.

A definition may say, for its use case alone, how good a first model must be (``floor``), by
how much a challenger must beat the champion (``min_improvement``), when performance or drift
triggers a retrain (``threshold``, ``psi_threshold``), how many rows a verdict needs
(``min_samples``, ``max_window_age``), the ``cooldown`` between retrains and the
``max_model_age``, and the share of rows outside the training ranges that is drift of its
own (``out_of_range_share``). :func:`settings_for` applies them to the settings every stage reads, so
training, the gate and monitoring agree; :func:`quality_in_force` says where each value comes
from (the definition, the environment, or the default). In IRIS the scheduled task's
``R2Threshold`` still has the last word on the threshold, as documented there.
"""

from __future__ import annotations

from typing import Any

from mlpipeline.featuresets.definition import Definition
from mlpipeline.featuresets.metrics import metric_for
from mlpipeline.settings import Settings

__all__ = ["QUALITY_SETTINGS", "quality_in_force", "settings_for"]

#: ``[quality]`` key -> the setting it overrides.
QUALITY_SETTINGS: dict[str, str] = {
    "floor": "r2_floor",
    "min_improvement": "min_improvement",
    "threshold": "r2_threshold",
    "psi_threshold": "psi_threshold",
    "min_samples": "min_samples",
    "max_window_age": "max_window_age",
    "cooldown": "retrain_cooldown",
    "max_model_age": "max_model_age",
    "out_of_range_share": "out_of_range_share",
}


def settings_for(settings: Settings, d: Definition) -> Settings:
    """``settings`` with ``d``'s ``[quality]`` values in force (validated like the settings)."""
    # metric and min_class_recall have no setting: training and monitoring read them from d.
    given = {k: v for k, v in d.quality.model_dump(exclude_none=True).items() if k in QUALITY_SETTINGS}
    if not given:
        return settings
    # The values were validated with the definition (durations parse, counts are positive).
    return settings.model_copy(update={QUALITY_SETTINGS[key]: value for key, value in given.items()})


def quality_in_force(settings: Settings, d: Definition) -> dict[str, dict[str, Any]]:
    """Each quality value in force for ``d`` and its source: definition, environment or default."""
    given = d.quality.model_dump(exclude_none=True)
    out: dict[str, dict[str, Any]] = {}
    metric = metric_for(d.quality.metric, d.target.task)
    out["metric"] = {
        "value": metric.name,
        "source": f"{d.name}.toml [quality]" if d.quality.metric else "default",
    }
    if d.quality.min_class_recall is not None:
        out["min_class_recall"] = {"value": d.quality.min_class_recall, "source": f"{d.name}.toml [quality]"}
    for key, field in QUALITY_SETTINGS.items():
        if key in given:
            out[key] = {"value": given[key], "source": f"{d.name}.toml [quality]"}
        else:
            source = f"MLPIPELINE_{field.upper()}" if field in settings.model_fields_set else "default"
            out[key] = {"value": getattr(settings, field), "source": source}
    return out
