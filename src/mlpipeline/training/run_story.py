"""How a training tells its story in MLflow's UI: the run's name and the Markdown description
shared by the run and the version it registered.

A runs table where every row is ``train-demo`` cannot tell versions apart, and a trigger
reason cut to "m…: performance: retrain…" hides why a model exists. So a finished training
run is named ``v5 · performance + drift retrain · promoted`` (version, short trigger, the
gate's verdict), and its description (and the version's) holds the trigger's reasons and the
gate's reason in full, with the holdout metrics beside the champion's on the same rows.
Pure functions: the pipeline passes what it measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mlpipeline.featuresets.metrics import METRICS
from mlpipeline.registry.version_tags import outcome_label, trigger_label

__all__ = ["TrainingStory", "run_name"]


def run_name(version: str | None, reason: str, outcome: str) -> str:
    """``v5 · performance + drift retrain · promoted``; without a version ``performance … · failed``."""
    parts = [f"v{version}"] if version else []
    parts += [trigger_label(reason), outcome]
    return " · ".join(parts)


@dataclass(frozen=True)
class TrainingStory:
    """What one training did, in the words the UI shows."""

    featureset: str
    model_name: str
    reason: str
    metric: str
    version: str | None = None
    decision: str | None = None
    gate_reason: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    champion_metrics: Mapping[str, float] = field(default_factory=dict)
    champion_version: str | None = None
    holdout: str = ""
    params_source: str = ""

    @property
    def name(self) -> str:
        return run_name(self.version, self.reason, outcome_label(self.decision))

    def markdown(self, *, link_version: bool) -> str:
        """The description; ``link_version`` adds a link to the registered version (on the run)."""
        # No heading: the run's and the version's pages title it already, and the registry's
        # version list previews the first characters of the description.
        # The first paragraph is plain text: the registry's version list shows it raw.
        lines = [
            f"Why it was trained: {_one_paragraph(self.reason)}",
            "",
        ]
        if self.decision:
            lines += [f"**The gate: {outcome_label(self.decision)}.** {_one_paragraph(self.gate_reason)}", ""]
        if self.metrics:
            lines += self._metrics_table() + [""]
        if self.params_source:
            source = (
                "the definition's [model] params"
                if self.params_source == "definition"
                else self.params_source
            )
            lines += [f"**Parameters:** {_one_paragraph(source)}.", ""]
        if link_version and self.version:
            lines.append(
                f"**Registered as** [{self.model_name} version {self.version}]"
                f"(#/models/{self.model_name}/versions/{self.version})."
            )
        return "\n".join(lines).strip() + "\n"

    def _metrics_table(self) -> list[str]:
        champion = f"champion v{self.champion_version}" if self.champion_version else "champion"
        heading = f"holdout ({self.holdout})" if self.holdout else "holdout"
        with_champion = bool(self.champion_metrics)
        rows = [
            f"| {heading} | this model |" + (f" {champion} |" if with_champion else ""),
            "|---|---:|" + ("---:|" if with_champion else ""),
        ]
        ordered = [self.metric] + sorted(k for k in self.metrics if k != self.metric)
        for key in ordered:
            if key not in self.metrics or key == "n":
                continue
            label = METRICS[key].label if key in METRICS else key
            mark = " (gate)" if key == self.metric else ""
            row = f"| {label}{mark} | {self.metrics[key]:.4f} |"
            if with_champion:
                theirs = self.champion_metrics.get(key)
                row += " - |" if theirs is None else f" {theirs:.4f} |"
            rows.append(row)
        return rows


def _one_paragraph(text: str) -> str:
    """Text on one Markdown line: line breaks would end the paragraph (or a table)."""
    return " ".join(str(text).split()).replace("|", "\\|")
