"""What a training and a check say in MLflow's UI: version tags, run names, descriptions, the
monitoring series (pure functions; the integration and browser tests read them in MLflow)."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.checks import CheckRecord
from mlpipeline.monitoring.publish import batch_of, check_metrics, day_of, monitoring_note
from mlpipeline.monitoring.triggers import REASONS
from mlpipeline.registry import version_tags
from mlpipeline.registry.version_tags import (
    facts_of,
    facts_update,
    recorded_sha256,
    registration_tags,
    trigger_label,
)
from mlpipeline.training.run_story import MAX_DESCRIPTION, TrainingStory, plain, run_name

GATE = {
    "decision": "promote",
    "reason": "challenger R² 0.81 beats champion 0.76 by +0.05 (required 0.005)",
    "metric": "r2",
    "challenger": 0.81,
    "champion": 0.76,
    "champion_version": "4",
    "gain_interval": [0.01, 0.09],
}
CHECK_REASON = (
    "performance+drift: retrain (performance, drift): R² 0.54 < r2_threshold 0.80 on 314 rows; "
    "PSI > psi_threshold 0.250 on distance_km 0.37"
)


def tags() -> dict[str, str]:
    return registration_tags(
        sha256="a" * 64,
        trigger=CHECK_REASON,
        gate=GATE,
        metric="r2",
        metrics={"r2": 0.8123456, "rmse": 3.2, "mae": 2.1},
        tuning={"study": "demo-1", "best_run": "abc"},
        release="9.9",
    )


def test_a_version_has_four_readable_tags_and_one_json_tag() -> None:
    t = tags()
    assert set(t) == {"sha256", "trigger", "gate", "r2", "mlpipeline"}
    assert t["trigger"] == "performance + drift retrain"
    assert t["gate"] == "promote"
    assert t["r2"] == "0.8123"
    assert all(len(k) <= 10 for k in t), "keys short enough for the registry's tag chips"
    facts = json.loads(t["mlpipeline"])
    assert facts["trigger"] == CHECK_REASON  # in full
    assert facts["gate"] == GATE
    assert facts["tuning"] == {"study": "demo-1", "best_run": "abc"}
    assert "R²" in t["mlpipeline"], "readable text, not escapes"


def test_facts_read_both_layouts() -> None:
    assert facts_of(tags())["gate"]["champion_version"] == "4"
    legacy = {
        "mlpipeline.sha256": "b" * 64,
        "mlpipeline.trigger": "manual",
        "mlpipeline.gate.decision": "hold",
        "mlpipeline.gate.reason": "too small a gain",
        "mlpipeline.gate.metric": "r2",
        "mlpipeline.gate.challenger": "0.700000",
        "mlpipeline.gate.champion": "",
        "mlpipeline.gate.champion_version": "",
        "mlpipeline.gate.gain_interval": "-0.010000,0.020000",
        "mlpipeline.metric.r2": "0.7",
        "mlpipeline.metric.rmse": "x",  # unreadable: left out
        "mlpipeline.promoted_at": "2026-01-01T00:00:00",
        "mlpipeline.promoted_by": "ana",
        "mlpipeline.promotion_reason": "forced",
    }
    facts = facts_of(legacy)
    assert facts["trigger"] == "manual"
    assert facts["gate"]["decision"] == "hold"
    assert facts["gate"]["champion"] is None
    assert facts["gate"]["gain_interval"] == [-0.01, 0.02]
    assert facts["metrics"] == {"r2": 0.7}
    assert facts["promotion"] == {"at": "2026-01-01T00:00:00", "by": "ana", "reason": "forced"}
    assert recorded_sha256(legacy) == "b" * 64
    assert recorded_sha256(tags()) == "a" * 64
    assert recorded_sha256({}) is None


def test_updates_keep_every_fact_and_convert_the_old_layout() -> None:
    t = tags()
    t.update(facts_update(t, gate="rejected", rejection={"by": "ana", "reason": "no"}))
    assert t["gate"] == "rejected"
    facts = facts_of(t)
    assert facts["gate"]["decision"] == "rejected"
    assert facts["gate"]["reason"] == GATE["reason"]
    assert facts["rejection"] == {"by": "ana", "reason": "no"}
    legacy = {"mlpipeline.sha256": "c" * 64, "mlpipeline.gate.decision": "promote"}
    legacy.update(facts_update(legacy, promotion={"at": "t", "by": "b", "reason": "r"}))
    assert facts_of(legacy)["gate"]["decision"] == "promote"
    assert facts_of(legacy)["promotion"]["by"] == "b"


def test_an_unreadable_json_tag_falls_back_to_the_old_tags() -> None:
    assert facts_of({"mlpipeline": "{not json", "mlpipeline.trigger": "manual"})["trigger"] == "manual"


def test_a_huge_reason_still_fits_a_tag() -> None:
    t = registration_tags(
        sha256="a" * 64, trigger="x" * 9000, gate={**GATE, "reason": "y" * 9000}, metric="r2", metrics={}
    )
    assert len(t["mlpipeline"]) <= 5000


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        (CHECK_REASON, "performance + drift retrain"),
        ("new_data: retrain (new_data): 5,000 rows", "new data retrain"),
        ("manual", "manual"),
        ("demo: first model", "demo: first model"),
        ("a reason typed by a person that goes on and on and on", "a reason typed by a person that goes on…"),
    ],
)
def test_trigger_labels(reason: str, label: str) -> None:
    assert trigger_label(reason) == label


def test_the_trigger_words_are_the_triggers_reasons() -> None:
    assert set(REASONS) == version_tags._TRIGGER_WORDS


def test_run_names_say_version_trigger_and_verdict() -> None:
    assert run_name("5", CHECK_REASON, "promoted") == "v5 · performance + drift retrain · promoted"
    assert run_name(None, "manual", "failed") == "manual · failed"


def test_the_description_holds_the_reasons_in_full_and_the_metrics_side_by_side() -> None:
    story = TrainingStory(
        featureset="demo",
        model_name="mlpipeline-demo",
        reason=CHECK_REASON + "\nsecond line | with a bar",
        metric="r2",
        version="5",
        decision="promote",
        gate_reason=GATE["reason"],
        metrics={"r2": 0.81, "rmse": 3.2, "n": 300},
        champion_metrics={"r2": 0.76},
        champion_version="4",
        holdout="300 rows, time split",
        params_source="definition",
    )
    text = story.markdown(link_version=True)
    assert text.startswith("Why it was trained: performance+drift: retrain")
    assert "R² 0.54 < r2_threshold 0.80 on 314 rows" in text
    assert "second line \\| with a bar" in text  # one paragraph; a bar cannot break the table
    assert GATE["reason"] in text
    assert "| R² (gate) | 0.8100 | 0.7600 |" in text
    assert "| RMSE | 3.2000 | - |" in text
    assert "| n |" not in text
    assert "(#/models/mlpipeline-demo/versions/5)" in text
    assert "versions/5" not in story.markdown(link_version=False)


def check(**details: object) -> CheckRecord:
    return CheckRecord(
        "demo",
        "4",
        datetime(2026, 1, 9),
        296,
        0.87,
        9.7,
        6.3,
        {
            "verdict": True,
            "metric": {"name": "r2", "label": "R²", "value": 0.87, "interval": [0.83, 0.9]},
            "metrics": {"r2": 0.87, "rmse": 9.7, "mae": float("nan")},
            "psi": {"distance_km": 0.07, "region": None},
            "prediction_drift": {"psi": 0.04},
            "decision": "none",
            "reasons": [],
            **details,
        },
        id=12,
    )


def test_a_check_adds_each_measure_beside_its_threshold() -> None:
    points = check_metrics(check(), threshold=0.8, psi_threshold=0.25)
    assert points == {
        "data/rows_judged": 296.0,
        "champion/r2": 0.87,
        "champion/r2_lower_95": 0.83,
        "champion/r2_upper_95": 0.9,
        "champion/r2_threshold": 0.8,
        "champion/version": 4.0,
        "metrics/rmse": 9.7,
        "drift/psi.distance_km": 0.07,
        "drift/psi.prediction": 0.04,
        "drift/psi_threshold": 0.25,
    }
    waiting = check_metrics(check(verdict=False), threshold=None, psi_threshold=0.25)
    assert "champion/r2" not in waiting
    assert "champion/r2_threshold" not in waiting  # a loss without a threshold has none
    unjudged = CheckRecord("demo", None, datetime(2026, 1, 9), 812, None, None, None, {"verdict": False})
    assert "data/rows_judged" not in check_metrics(unjudged, threshold=0.8, psi_threshold=0.25)


def test_steps_are_the_days_of_the_data() -> None:
    origin = date(2026, 1, 1)
    assert day_of(datetime(2026, 1, 5), origin) == 3  # as of midnight: the day before
    assert day_of(datetime(2026, 1, 5, 14, 0), origin) == 4
    assert day_of(datetime(2025, 12, 1), origin) == 0
    # Without an event time the step is the batch, as a replay's table numbers them.
    assert batch_of(5) == 4
    assert batch_of(0) == 0
    d = load_definition("housing")
    text = monitoring_note(
        d, check(), step=4, unit="batch", origin=None, threshold=None, run_id="r", picture=None
    )
    assert "step = batch of the data (batch 0 = the first batch ingested)" in text
    assert "**Latest check:** batch 4" in text
    assert "get-artifact" not in text


def test_the_monitoring_note_links_the_timeline() -> None:
    d = load_definition("demo")
    text = monitoring_note(
        d,
        check(),
        step=7,
        unit="day",
        origin=date(2026, 1, 1),
        threshold=0.8,
        run_id="r1",
        picture="demo-timeline.png",
    )
    assert "step = day of the data (day 0 = 2026-01-01, the date of the first event time)" in text
    assert "day 7 (2026-01-09 00:00 UTC), champion v4: R² 0.8700 on 296 newly labelled rows" in text
    assert "threshold: at least 0.8" in text
    assert "![timeline of 'demo'](get-artifact?path=demo-timeline.png&run_uuid=r1)" in text


def test_a_malformed_json_tag_is_read_as_the_old_layout() -> None:
    for raw in ('{"gate": "x"}', '{"metrics": [1]}', '{"metrics": {"r2": "high"}}', "[]"):
        facts = facts_of({"mlpipeline": raw, "mlpipeline.trigger": "manual"})
        assert facts["trigger"] == "manual", raw
        assert isinstance(facts["gate"], dict)


def test_user_text_cannot_format_or_overflow_a_description() -> None:
    story = TrainingStory(
        featureset="demo",
        model_name="m",
        reason="# heading [link](http://x) ![img](http://y) *bold* " + "z" * 20_000,
        metric="r2",
        decision="hold",
        gate_reason="g" * 20_000,
        metrics={"r2": 0.5},
    )
    text = story.markdown(link_version=False)
    assert len(text) <= MAX_DESCRIPTION
    assert "# heading \\[link\\](http://x) !\\[img\\](http://y) \\*bold\\*" in text
    assert plain("a\nb | c_d <b> x < 1", 100) == "a b \\| c_d \\<b> x < 1"
