"""What the reliability tests share: the CLI in a child process and the invariants they check."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from mlpipeline.featurestore.lease import LeaseHolder
from mlpipeline.featurestore.sql import open_store
from mlpipeline.registry.model_cache import ModelCache
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.tracking import CHALLENGER, CHAMPION, Tracker
from mlpipeline.registry.version_tags import facts_of
from mlpipeline.settings import Settings
from tests.serving.test_hot_swap_http import env_for

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Kill:
    """Where a child process SIGKILLs itself: just ``before`` or ``after`` ``target`` runs."""

    stage: str
    target: str
    when: str = "after"


def run_cli(
    settings: Settings, *args: str, kill: Kill | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    fault = [kill.target, kill.when] if kill else ["-", "none"]
    prefix = ["-m", "tests.reliability.killer", *fault]
    return subprocess.run(
        [sys.executable, *prefix, *args],
        check=False,
        env={**env_for(settings), **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def registry_state(settings: Settings) -> tuple[str | None, str | None, str | None]:
    store = open_store(settings)
    try:
        pointer = SqlPointerStore(store).get("demo")
    finally:
        store.dispose()
    tracker = Tracker(settings)
    return (
        pointer.version if pointer else None,
        tracker.alias_version("demo", CHAMPION),
        tracker.alias_version("demo", CHALLENGER),
    )


def assert_pointer_serves(settings: Settings, allowed: set[str | None]) -> str | None:
    """Right after the crash: the pointer names an allowed version whose cached model verifies."""
    store = open_store(settings)
    try:
        pointer = SqlPointerStore(store).get("demo")
    finally:
        store.dispose()
    version = pointer.version if pointer else None
    assert version in allowed, f"pointer at {version}, expected one of {allowed}"
    if pointer is not None:
        model = ModelCache(settings.home / "models", lambda: Tracker(settings)).load(pointer.ref)
        assert model.folder.parent.name == pointer.version
    return version


def assert_consistent(settings: Settings, *, leases_free: bool = True) -> str:
    """After the next start: alias == pointer, the promotion finished, no lease left over.

    A dead training's lease stays until the next training takes it over (``leases_free=False``
    in between).
    """
    pointer, champion, challenger = registry_state(settings)
    assert pointer is not None
    assert champion == pointer, f"champion alias {champion}, pointer {pointer}"
    assert challenger != pointer, "the champion still carries the challenger alias"
    info = Tracker(settings).version("demo", pointer)
    promotion = facts_of(info.tags).get("promotion") or {}
    assert promotion.get("at"), "the champion lacks its promotion record"
    if not leases_free:
        return pointer
    store = open_store(settings)
    try:
        leases = LeaseHolder(store, "demo")
        assert leases.current("train") is None
        assert leases.current("check") is None
    finally:
        store.dispose()
    return pointer


def running_train_runs(settings: Settings) -> list[str]:
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(f"{settings.registry_prefix}demo")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], "attributes.status = 'RUNNING' and tags.`mlpipeline.kind` = 'train'"
    )
    return [r.info.run_id for r in runs]
