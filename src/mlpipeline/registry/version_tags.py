"""What a registered model version says about itself: four tags a person reads, one JSON tag.

MLflow's registry page shows a version's tags as chips that cut long keys and values, so a
version with a tag per fact (gate verdict, reason, champion, interval, every metric…) reads as a
row of ``mlpipeline.gate.cha…``. A version therefore carries:

``sha256``
    the digest of the model folder recorded at registration; nothing is loaded whose files do
    not hash to it (:mod:`mlpipeline.registry.model_cache`).
``trigger``
    why it was trained, short: ``performance + drift retrain``, ``manual``, ``demo: first model``.
``gate``
    the gate's verdict: ``promote``, ``hold``, ``await_approval``, later ``rejected``.
``<metric>``
    the holdout value of the feature set's metric at four decimals, e.g. ``r2``: ``0.8451``.
``mlpipeline``
    everything else as one JSON object: the trigger and the gate's reason in full, the
    champion it was compared with, the interval of the gain, every holdout metric, the tuning
    study, and later who promoted or rejected it and why (see :func:`facts_of`).

The same verdict and reasons, in full, are the version's description. Versions registered
before this layout carry one ``mlpipeline.*`` tag per fact; :func:`facts_of` and
:func:`recorded_sha256` read both layouts, so an upgraded store keeps serving its champion.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "FACTS_TAG",
    "LEGACY_SHA_TAG",
    "SHA_TAG",
    "facts_of",
    "facts_update",
    "outcome_label",
    "recorded_sha256",
    "registration_tags",
    "trigger_label",
]

#: The digest of the model folder, verified before every load.
SHA_TAG = "sha256"
#: Where versions registered by earlier releases keep their digest.
LEGACY_SHA_TAG = "mlpipeline.sha256"
#: The JSON object with every other fact.
FACTS_TAG = "mlpipeline"

#: The trigger reasons a check's retrain is labelled with (mlpipeline.monitoring.triggers.REASONS).
_TRIGGER_WORDS = frozenset(
    {"manual", "no_model", "schedule", "new_data", "performance", "drift", "out_of_range"}
)
_LEGACY_PREFIX = "mlpipeline."
_OUTCOMES = {
    "promote": "promoted",
    "hold": "held",
    "await_approval": "awaiting approval",
    "rejected": "rejected",
}


def trigger_label(reason: str) -> str:
    """The short form of a training reason, for run names and the ``trigger`` tag.

    A check's retrain reason reads ``performance+drift: retrain (performance, drift): …``;
    its label is ``performance + drift retrain``. Any other reason (``manual``, a demo's
    ``demo: first model``) is kept, cut to 40 characters.
    """
    head = reason.split(":", 1)[0].strip()
    words = head.split("+")
    if ":" in reason and words and all(w in _TRIGGER_WORDS for w in words):
        return " + ".join(w.replace("_", " ") for w in words) + " retrain"
    text = " ".join(reason.split())
    return text if len(text) <= 40 else text[:39] + "…"


def outcome_label(decision: str | None) -> str:
    """The gate's verdict as a run name says it: ``promoted``, ``held``, ``awaiting approval``."""
    if not decision:
        return "no verdict"
    return _OUTCOMES.get(decision, decision.replace("_", " "))


def registration_tags(
    *,
    sha256: str,
    trigger: str,
    gate: Mapping[str, Any],
    metric: str,
    metrics: Mapping[str, float],
    tuning: Mapping[str, str] | None = None,
    release: str = "",
) -> dict[str, str]:
    """The tags a new version is registered with (see the module doc)."""
    value = metrics.get(metric)
    facts: dict[str, Any] = {
        "trigger": trigger,
        "gate": dict(gate),
        "metric": metric,
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    if tuning:
        facts["tuning"] = dict(tuning)
    if release:
        facts["release"] = release
    return {
        SHA_TAG: sha256,
        "trigger": trigger_label(trigger),
        "gate": str(gate.get("decision") or ""),
        metric: "" if value is None else f"{value:.4f}",  # as the CLI prints it; exact in the JSON
        FACTS_TAG: _dump(facts),
    }


def facts_of(tags: Mapping[str, str]) -> dict[str, Any]:
    """Every fact a version records, from either tag layout (see the module doc).

    Keys: ``trigger`` (full text), ``gate`` (``decision``, ``reason``, ``metric``,
    ``challenger``, ``champion``, ``champion_version``, ``gain_interval``), ``metric``,
    ``metrics`` (name → holdout value), and where they apply ``tuning`` (``study``,
    ``best_run``), ``promotion`` (``at``, ``by``, ``reason``), ``rejection`` (``by``, ``reason``).
    """
    raw = tags.get(FACTS_TAG)
    if raw:
        try:
            facts = json.loads(raw)
        except ValueError:
            facts = None
        if _well_formed(facts):
            found: dict[str, Any] = facts
            # The readable verdict is the one a rejection rewrites; it wins over the JSON's.
            if tags.get("gate"):
                found.setdefault("gate", {})["decision"] = tags["gate"]
            return found
    return _legacy_facts(tags)


def _well_formed(facts: object) -> bool:
    """Whether a JSON tag has the shape :func:`facts_of` promises (a hand-edited one may not)."""
    if not isinstance(facts, dict):
        return False
    shapes = {"gate": dict, "metrics": dict, "tuning": dict, "promotion": dict, "rejection": dict}
    if any(k in facts and not isinstance(facts[k], t) for k, t in shapes.items()):
        return False
    return all(isinstance(v, int | float) for v in facts.get("metrics", {}).values())


def _legacy_facts(tags: Mapping[str, str]) -> dict[str, Any]:
    """The facts of a version tagged one fact per ``mlpipeline.*`` tag."""

    def get(key: str) -> str:
        return tags.get(_LEGACY_PREFIX + key, "")

    interval = get("gate.gain_interval")
    gate: dict[str, Any] = {
        "decision": get("gate.decision"),
        "reason": get("gate.reason"),
        "metric": get("gate.metric"),
        "challenger": _float(get("gate.challenger")),
        "champion": _float(get("gate.champion")),
        "champion_version": get("gate.champion_version") or None,
        "gain_interval": [float(x) for x in interval.split(",")] if interval else None,
    }
    metrics = {
        k.removeprefix(_LEGACY_PREFIX + "metric."): v
        for k, t in tags.items()
        if k.startswith(_LEGACY_PREFIX + "metric.") and (v := _float(t)) is not None
    }
    facts: dict[str, Any] = {
        "trigger": get("trigger"),
        "gate": gate,
        "metric": gate["metric"],
        "metrics": metrics,
    }
    if get("tuning.study"):
        facts["tuning"] = {"study": get("tuning.study"), "best_run": get("tuning.best_run")}
    if get("promoted_at"):
        facts["promotion"] = {
            "at": get("promoted_at"),
            "by": get("promoted_by"),
            "reason": get("promotion_reason"),
        }
    if get("rejected_by"):
        facts["rejection"] = {"by": get("rejected_by"), "reason": get("rejection_reason")}
    return facts


def facts_update(tags: Mapping[str, str], **changes: Any) -> dict[str, str]:
    """The tags to write so that the version's facts include ``changes`` (e.g. ``promotion``).

    ``gate="rejected"`` also rewrites the readable verdict. A version of the old layout gets
    the new JSON tag, built from its old tags, so both layouts answer the same afterwards.
    """
    facts = facts_of(tags)
    out: dict[str, str] = {}
    for key, value in changes.items():
        if key == "gate":
            facts.setdefault("gate", {})["decision"] = value
            out["gate"] = str(value)
        else:
            facts[key] = value
    out[FACTS_TAG] = _dump(facts)
    return out


def recorded_sha256(tags: Mapping[str, str]) -> str | None:
    """The digest recorded at registration (either layout), or None."""
    return tags.get(SHA_TAG) or tags.get(LEGACY_SHA_TAG) or None


def _dump(facts: Mapping[str, Any]) -> str:
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    if len(text) > 5000:  # MLflow keeps 5,000 characters of a tag value (older servers)
        facts = {
            **facts,
            "gate": {**facts.get("gate", {}), "reason": str(facts.get("gate", {}).get("reason", ""))[:1000]},
        }
        facts["trigger"] = str(facts.get("trigger", ""))[:1000]
        text = json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return text


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
