"""MLflow's UI after a short demo, in headless Chromium, as a user sees it.

The user's path: ``mlpipeline demo``, then ``mlpipeline ui``, then the links it prints. The
test asserts what those pages show: runs named by version, trigger and verdict; the champion
alias on the registered model; a run's description with the reasons in full; the monitoring
chart of the chosen metric beside its threshold. Screenshots of each page are kept under
``dur/reports/ui/`` of the checkout, for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import service_missing
from tests.integration.test_ui import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHOTS = Path(__file__).resolve().parents[2] / "dur" / "reports" / "ui"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LINK = re.compile(r"^\s+(training runs|registered model|monitoring)\s+(http://\S+)$")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        service_missing("Chromium is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        service_missing("playwright is not installed (make .venv/.installed)")
    assert found is not None
    return found


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPELINE_")}
    return env | {
        "MLPIPELINE_HOME": str(home),
        "MLPIPELINE_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        "MLPIPELINE_MLFLOW_ARTIFACT_ROOT": str(home / "mlflow" / "artifacts"),
        "MLPIPELINE_FEATURESTORE_URL": f"sqlite:///{home / 'featurestore.db'}",
        "MLPIPELINE_LOG_DIR": str(home / "logs"),
    }


def mlpipeline(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", "from mlpipeline.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def links(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A short demo, then 'mlpipeline ui' running on it; yields the links it printed."""
    chromium()
    home = tmp_path_factory.mktemp("ui") / "dur"
    env = cli_env(home)
    mlpipeline("init", env=env)
    mlpipeline("demo", "--days", "8", "--rows-per-day", "300", "--drift-day", "4", env=env)
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-c", "from mlpipeline.cli import main; main()", "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    found: dict[str, str] = {}

    def read() -> None:
        assert ui.stdout is not None
        for line in ui.stdout:
            if m := LINK.match(line.rstrip()):
                found[m.group(1)] = m.group(2)

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + 180
        while len(found) < 3 and time.monotonic() < deadline:
            assert ui.poll() is None, "mlpipeline ui exited"
            time.sleep(0.2)
        assert set(found) == {"training runs", "registered model", "monitoring"}, found
        yield found
    finally:
        ui.send_signal(signal.SIGTERM)
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            ui.kill()


@pytest.fixture(scope="module")
def page(links: dict[str, str]) -> Iterator[object]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)  # the UI's first page loads a large bundle
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1000})
        context.set_default_timeout(60_000)
        page = context.new_page()
        yield page
        browser.close()


def test_the_runs_table_tells_versions_and_triggers_apart(page: object, links: dict[str, str]) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(links["training runs"])
    expect(page.get_by_text("v1 · demo: first model · promoted")).to_be_visible()
    retrain = page.get_by_text(re.compile(r"^v2 · .*retrain · promoted$"))
    expect(retrain).to_be_visible()
    expect(page.get_by_text("Training runs of feature set")).to_be_visible()  # the experiment's note
    expect(page.get_by_text("Model training", exact=True)).to_be_visible()  # the classic-ML view
    page.screenshot(path=str(SHOTS / "experiment.png"))

    retrain.click()
    expect(page.get_by_role("heading", name=re.compile(r"^v2 · .*retrain · promoted$"))).to_be_visible()
    expect(page.get_by_text("The gate: promoted.")).to_be_visible()
    expect(page.get_by_text("Why it was trained:")).to_be_visible()
    expect(page.get_by_text(re.compile(r"r2_threshold 0\.\d+ on \d+ rows")).first).to_be_visible()
    page.screenshot(path=str(SHOTS / "run.png"), full_page=True)


def test_the_registered_model_shows_the_champion_and_readable_tags(
    page: object, links: dict[str, str]
) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(links["registered model"])
    expect(page.get_by_text("Version 4")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^@?\s*champion$")).first).to_be_visible()
    expect(page.get_by_text("drift retrain").first).to_be_visible()  # the readable trigger tag
    page.screenshot(path=str(SHOTS / "model.png"), full_page=True)


def test_the_monitoring_chart_shows_the_metric_beside_its_threshold(
    page: object, links: dict[str, str]
) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(links["monitoring"])
    expect(page.get_by_text("champion", exact=True).first).to_be_visible()  # the section
    expect(page.get_by_text("r2", exact=True).first).to_be_visible()
    expect(page.get_by_text("r2_threshold", exact=True).first).to_be_visible()
    expect(page.get_by_text("Step", exact=True).first).to_be_visible()
    page.screenshot(path=str(SHOTS / "monitoring.png"))
    status = page.get_by_text("Running", exact=True)
    assert status.count() == 0, "monitoring is not a run left running"
