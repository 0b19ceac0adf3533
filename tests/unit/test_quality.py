"""A feature set's [quality] table: what "good" means for it, over the MLPIPELINE_* defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlpipeline.errors import DefinitionError
from mlpipeline.featuresets.definition import Definition, load_definition, parse_definition
from mlpipeline.featuresets.quality import quality_in_force, settings_for
from mlpipeline.settings import Settings


def with_quality(**quality: Any) -> Definition:
    data = load_definition("demo").model_dump(mode="json")
    data["derived"] = {x["name"]: x["expression"] for x in data["derived"]}
    return parse_definition(data | {"quality": quality})


def plain_settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(home=tmp_path, _env_file=None, **extra)  # type: ignore[call-arg]


def test_quality_overrides_the_defaults_for_its_feature_set_only(tmp_path: Path) -> None:
    settings = plain_settings(tmp_path, psi_threshold=0.3)
    d = with_quality(threshold=0.8, floor=0.4, cooldown="10m", min_samples=50)
    applied = settings_for(settings, d)
    assert (applied.r2_threshold, applied.r2_floor, applied.retrain_cooldown, applied.min_samples) == (
        0.8,
        0.4,
        "10m",
        50,
    )
    assert applied.psi_threshold == 0.3, "what the definition does not say stays"
    assert settings_for(settings, load_definition("demo")) is settings
    sources = quality_in_force(settings, d)
    assert sources["threshold"] == {"value": 0.8, "source": "demo.toml [quality]"}
    assert sources["psi_threshold"]["source"] == "MLPIPELINE_PSI_THRESHOLD"
    assert sources["max_model_age"]["source"] == "default"


@pytest.mark.parametrize(
    ("quality", "message"),
    [
        ({"cooldown": "soon"}, "cooldown: invalid duration 'soon'"),
        ({"min_samples": 0}, "quality.min_samples"),
        ({"thresold": 0.7}, "quality.thresold: unknown key"),
    ],
)
def test_bad_quality_values_are_refused_with_the_key(quality: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        with_quality(**quality)
