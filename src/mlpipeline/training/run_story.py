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

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlpipeline.featuresets.metrics import METRICS
from mlpipeline.registry.version_tags import outcome_label, trigger_label

__all__ = ["MAX_DESCRIPTION", "TrainingStory", "plain", "run_name"]

#: MLflow keeps a version's description in a 5,000-character column (its SQL stores) and cuts
#: a run's description tag at 8,000: a description stays within the smaller, whole.
MAX_DESCRIPTION = 4_800
#: The most of one reason a description shows (the version's JSON tag keeps 1,000 or more).
_MAX_REASON = 1_800


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
        """The description; ``link_version`` adds a link to the registered version (on the run).

        No heading (the run's and the version's pages title it already), and a plain first
        paragraph (the registry's version list shows its first characters raw).
        """
        lines = [f"Why it was trained: {plain(self.reason, _MAX_REASON)}", ""]
        if self.decision:
            verdict = outcome_label(self.decision)
            lines += [f"**The gate: {verdict}.** {plain(self.gate_reason, _MAX_REASON)}", ""]
        if self.metrics:
            lines += self._metrics_table() + [""]
        if self.params_source:
            source = plain(self.params_source, 500)
            if self.params_source == "definition":
                source = "the definition's `[model] params`"
            lines += [f"**Parameters:** {source}.", ""]
        if link_version and self.version:
            lines.append(
                f"**Registered as** [{self.model_name} version {self.version}]"
                f"(#/models/{self.model_name}/versions/{self.version})."
            )
        text = "\n".join(lines).strip() + "\n"
        return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 2] + "…\n"

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


# What turns typed text into formatting, links, images or HTML; kept minimal, because the
# registry's version list shows a description's first characters raw. ``<`` only where a tag
# or an autolink could start ("R² < 0.8" stays as typed).
_MARKDOWN = re.compile(r"([\\`*\[\]|~])|<(?=[A-Za-z/!?])")


def plain(text: str, limit: int) -> str:
    """User text (a ``--reason``, an error) as one Markdown paragraph that renders as typed:
    line breaks would end the paragraph (or a table), ``*[]`<`` would format, link or tag."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _MARKDOWN.sub(lambda m: "\\" + (m.group(1) or "<"), flat)
