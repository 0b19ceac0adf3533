"""The IRIS image builds and starts today, and a set-up step that fails stops it.

IRIS cannot run here, so each fix is pinned on the files themselves: the Community image's
licence clock, the try/catch around every set-up call, the classes reloaded and merge.cpf applied
after every start, the task lookup that fails loudly, the documented CPF key and password
property, and the narrowed environment of the IRIS container. iris/README.md cites the
documentation behind each.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from mlpipeline.iris import globals as iris_globals
from mlpipeline.settings import Settings
from tests.iris import objectscript as os_
from tests.iris.test_classes import CLASSES
from tests.iris.test_stack_files import ROOT, compose

DOCKERFILE = ROOT / "iris" / "Dockerfile"
INSTALL = ROOT / "iris" / "install.script"
AUTOCONF = ROOT / "iris_autoconf.sh"
# A set-up call: a class method, a $system method that changes something, or a Modify.
SETUP_CALL = re.compile(r"##class\(|\$system\.OBJ\.|\.Modify\(")


def community_tag() -> tuple[int, int]:
    match = re.search(r"^FROM intersystems/iris-community:(\d{4})\.(\d+)\s*$", DOCKERFILE.read_text(), re.M)
    assert match, "iris/Dockerfile must start FROM intersystems/iris-community:YYYY.N"
    return int(match.group(1)), int(match.group(2))


def licence_expires(year: int, release: int) -> date:
    """When a Community image's built-in licence runs out, conservatively.

    InterSystems ships a Community licence that lasts about a year from the release; .1
    releases come out in the spring (2025.1's licence expired on 2026-06-04). Counting from
    March 1st of the following year warns a few months early, which is the point: the image
    must be bumped before users' stacks stop starting.
    """
    return date(year + 1, 3, 1) if release == 1 else date(year + 1, 9, 1)


def session_lines(text: str) -> list[str]:
    if "<<'SESSION'" in text:
        text = text.split("<<'SESSION'", 1)[1].split("\nSESSION", 1)[0]
    return [line for line in text.splitlines() if line.strip()]


def test_the_community_image_is_recent_enough_to_start() -> None:
    year, release = community_tag()
    expires = licence_expires(year, release)
    assert date.today() < expires, (
        f"intersystems/iris-community:{year}.{release}'s licence expires around {expires}: move "
        "iris/Dockerfile to the newest Community tag and re-check its Python against constraints.txt"
    )
    assert (year, release) >= (2026, 1), "2025.1's licence expired on 2026-06-04"


def test_the_readme_says_the_community_image_must_be_bumped_each_year() -> None:
    text = (ROOT / "README.md").read_text() + (ROOT / "iris" / "README.md").read_text()
    year, release = community_tag()
    assert f"iris-community:{year}.{release}" in text
    assert re.search(r"Community[^.]*licen[cs]e[^.]*(year|annual)", text, re.I | re.S)


@pytest.mark.parametrize("script", [INSTALL, AUTOCONF], ids=lambda p: p.name)
def test_every_setup_call_is_caught_and_stops_the_script(script: Path) -> None:
    calls = [line for line in session_lines(script.read_text()) if SETUP_CALL.search(line)]
    assert calls, f"{script.name} calls nothing?"
    for line in calls:
        head = SETUP_CALL.search(line)
        assert head
        before = line[: head.start()]
        assert "try {" in before, f"not inside try: {line}"
        assert "catch ex { set sc = ex.AsStatus() }" in line, (
            f"thrown errors are not turned into a status: {line}"
        )
        assert "if $system.Status.IsError(sc) {" in line, f"no check: {line}"
        assert "Terminate(, 1)" in line, f"no stop: {line}"
        assert line.index("catch ex") < line.index("Terminate(, 1)")


def test_installer_run_turns_thrown_errors_into_a_status() -> None:
    body = CLASSES["MLpipeline.Installer"].methods["Run"].body
    assert body.lstrip().startswith("try {")
    assert "catch ex {" in body
    assert "set sc = ex.AsStatus()" in body
    assert body.rstrip().endswith("return sc")


def test_every_start_applies_the_merge_file_and_reloads_the_classes_before_the_installer() -> None:
    text = AUTOCONF.read_text()
    merge = text.index("iris merge IRIS /opt/mlpipeline/merge.cpf")
    session = text.index("iris session IRIS")
    assert merge < session
    lines = session_lines(text)
    load = next(i for i, line in enumerate(lines) if 'LoadDir("/opt/mlpipeline/classes", "ck"' in line)
    run = next(i for i, line in enumerate(lines) if "##class(MLpipeline.Installer).Run(" in line)
    assert load < run
    assert text.index("iris session IRIS") < text.index('touch "${ready}"'), "healthy only after set-up"


def test_the_health_check_passes_only_after_the_installer_succeeded() -> None:
    text = AUTOCONF.read_text()
    assert "set -euo pipefail" in text
    assert text.index('rm -f "${ready}"') < text.index("iris session IRIS") < text.index('touch "${ready}"')
    health = " ".join(compose()["services"]["iris"]["healthcheck"]["test"])
    assert "test -f /tmp/mlpipeline-autoconf.ok" in health


def test_a_failing_task_lookup_is_an_error_not_a_new_task() -> None:
    installer = CLASSES["MLpipeline.Installer"]
    task_id = installer.methods["TaskId"]
    assert [a.name for a in task_id.arguments] == ["name", "id"]
    assert task_id.returns == "%Status"
    assert 'return ""' not in task_id.body
    assert "rows.%SQLCODE < 0" in task_id.body
    assert "$system.Status.Error(" in task_id.body
    schedule = installer.methods["ScheduleTask"].body
    lookup = schedule.index("set sc = ..TaskId(p.name, .id)")
    assert schedule.index("if $system.Status.IsError(sc) {", lookup) < schedule.index('if id = "" {')


def test_the_cpf_uses_the_logging_key_every_release_documents() -> None:
    merge = (ROOT / "iris" / "merge.cpf").read_text()
    assert "ChildProcessLaunchCommand=irislogd -f /dur/logs/iris.log" in merge
    assert not re.search(r"^ChildProcessArgs=", merge, re.M)


def test_the_password_is_set_through_the_clear_text_property() -> None:
    text = AUTOCONF.read_text()
    assert 'props("PasswordExternal") = password' in text
    assert 'props("Password")' not in text


def test_the_iris_container_gets_only_its_password_and_mlpipeline_settings() -> None:
    iris = compose()["services"]["iris"]
    assert "env_file" not in iris, "env_file would hand every .env secret to every IRIS process"
    environment = iris["environment"]
    assert isinstance(environment, dict)
    allowed_other = {"ISC_DATA_DIRECTORY", "IRIS_PASSWORD"}
    strays = [k for k in environment if k not in allowed_other and not k.startswith("MLPIPELINE_")]
    assert strays == []
    assert environment["IRIS_PASSWORD"].startswith("${IRIS_PASSWORD:?")
    settings = {f"MLPIPELINE_{name.upper()}" for name in Settings.model_fields}
    assert settings - set(environment) == set(), "a setting the IRIS processes could not receive"
    assert {k for k in environment if k.startswith("MLPIPELINE_")} <= settings, "not a setting"


def test_the_lock_type_is_called_escalating() -> None:
    assert iris_globals.LOCK_TYPE == "E"
    source = Path(iris_globals.__file__).read_text()
    comment = source.split("LOCK_TYPE = ", 1)[0].rsplit("\n\n", 1)[1]
    assert '``"E"`` is *escalating*' in comment, comment


@pytest.mark.parametrize("script", [INSTALL, AUTOCONF], ids=lambda p: p.name)
def test_every_terminal_line_parses_as_objectscript(script: Path) -> None:
    """Each line a terminal session runs, parsed as the body of a method (one line = one body)."""
    for line in session_lines(script.read_text()):
        source = f"Class Test.Script\n{{\n\nClassMethod Line() As %Status\n{{\n    {line}\n}}\n\n}}\n"
        tree = os_.parser().parse(source.encode())
        assert not tree.root_node.has_error, (line, os_.problems(tree))
