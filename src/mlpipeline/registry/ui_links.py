"""Direct links into MLflow's UI for a feature set: its training runs, its registered model,
its monitoring charts.

MLflow 3's UI opens every experiment in its GenAI view unless told otherwise (a global switch,
remembered per browser); ``workflowType=machine_learning`` in a link opens the classic runs
view, where the story of the pipeline is. Routes are the UI's own hash routes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UiLinks", "ui_links"]

_CLASSIC = "workflowType=machine_learning"


@dataclass(frozen=True)
class UiLinks:
    featureset: str
    runs: str | None
    model: str
    monitoring: str | None

    def lines(self) -> list[tuple[str, str]]:
        """(label, address) pairs for what exists."""
        found = [
            ("training runs", self.runs),
            ("registered model", self.model),
            ("monitoring", self.monitoring),
        ]
        return [(label, url) for label, url in found if url]


def ui_links(
    base: str,
    featureset: str,
    *,
    model_name: str,
    training_experiment: str | None,
    monitoring_experiment: str | None,
    monitoring_run: str | None,
) -> UiLinks:
    """The links of one feature set under the UI at ``base`` (e.g. ``http://127.0.0.1:5000``)."""
    root = base.rstrip("/")
    runs = f"{root}/#/experiments/{training_experiment}?{_CLASSIC}" if training_experiment else None
    monitoring = None
    if monitoring_experiment and monitoring_run:
        monitoring = (
            f"{root}/#/experiments/{monitoring_experiment}/runs/{monitoring_run}/model-metrics?{_CLASSIC}"
        )
    elif monitoring_experiment:
        monitoring = f"{root}/#/experiments/{monitoring_experiment}?{_CLASSIC}"
    return UiLinks(featureset, runs, f"{root}/#/models/{model_name}?{_CLASSIC}", monitoring)
