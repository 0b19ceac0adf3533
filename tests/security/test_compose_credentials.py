"""The compose stack's credentials, beyond tests/iris/test_stack_files.py.

That file already checks: keys named PASSWORD/SECRET/ACCESS_KEY are ``${VAR:?}``, the
PostgreSQL URL is built from ``${POSTGRES_USER:?}``/``${POSTGRES_PASSWORD:?}``, the four main
placeholders in .env.example are CHANGE_ME, ``.env`` is listed in .gitignore, and the allowed
hosts include ``mlflow:5000``. Added here: no credential-like value anywhere in the compose
file is literal (user names, URLs with user-info, command lines, health checks included), git
really ignores ``.env`` and tracks none, every credential in .env.example is a placeholder
(the commented examples too), only ``.env`` is used as an env file, ports are published on
loopback only, and ``--allowed-hosts`` is a short explicit list with no wildcard.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CREDENTIAL_KEY = re.compile(
    r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY|_USER$|USERNAME|CREDENTIAL", re.IGNORECASE
)
FROM_ENV = re.compile(r"\$\{\w+(:[?-][^}]*)?\}")


def services() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return dict(data["services"])


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [str(value)]


def test_no_literal_credential_anywhere_in_the_compose_file() -> None:
    for name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            if value is None:  # a bare name: passed from .env or the shell when set, never a literal
                continue
            text = str(value)
            if CREDENTIAL_KEY.search(key):
                assert FROM_ENV.fullmatch(text), f"{name}.{key} = {text!r}: take it from .env"
                assert ":-" not in text, f"{name}.{key}: a credential must not have a default"
        for text in strings(service):
            literal = FROM_ENV.sub("", text)  # what is left once every ${...} is taken out
            # User-info in a URL (scheme://user:password@host) must be made of ${...} only.
            for userinfo in re.findall(r"://([^/@\s]*)@", literal):
                assert not userinfo.strip(":"), f"{name}: literal credentials in {text!r}"
            for found in re.findall(r"(?i)(?:password|secret)[=: ]+([^\s\"'$]+)", literal):
                pytest.fail(f"{name}: literal credential {found!r} in {text!r}")


def test_only_dot_env_feeds_the_services() -> None:
    for name, service in services().items():
        env_file = service.get("env_file")
        if env_file is not None:
            files = env_file if isinstance(env_file, list) else [env_file]
            assert files == [".env"], f"{name}: env_file {files}"


def test_git_ignores_dot_env_and_tracks_none() -> None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run([git, "check-ignore", "-q", ".env"], cwd=ROOT, capture_output=True, check=False)
    assert ignored.returncode == 0, ".env must be ignored by git"
    tracked = subprocess.run(
        [git, "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert not [f for f in tracked if Path(f).name == ".env"], "a .env file is tracked"
    assert ".env.example" in tracked


def test_env_example_holds_placeholders_only() -> None:
    for raw in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        line = raw.lstrip("# ").strip()
        if not re.match(r"^[A-Z][A-Z0-9_]*=", line):
            continue
        key, _, value = line.partition("=")
        if CREDENTIAL_KEY.search(key) and not key.endswith(("_USER",)):
            assert value == "CHANGE_ME", f".env.example: {key}={value} (use CHANGE_ME)"
        for userinfo in re.findall(r"://([^/@\s]+)@", value):
            user, _, password = userinfo.partition(":")
            assert password in ("", "PASSWORD", "CHANGE_ME"), f".env.example: {key} has a password"
            assert user.isupper(), f".env.example: {key} names a real user"


def test_ports_are_published_on_loopback_only() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is reachable from other machines"


def test_mlflow_allows_only_its_own_host_names() -> None:
    command = [str(c) for c in services()["mlflow"]["command"]]
    assert command.count("--allowed-hosts") == 1
    hosts = command[command.index("--allowed-hosts") + 1].split(",")
    assert hosts
    assert len(hosts) <= 5
    for host in hosts:
        assert "*" not in host, f"--allowed-hosts {host} is a wildcard"
        assert not host.startswith("0.0.0.0"), f"--allowed-hosts {host} is not restricted"
        assert re.fullmatch(r"(mlflow|localhost|127\.0\.0\.1):5000", host), host
    assert not any(c.startswith("--cors-allowed-origins") and "*" in c for c in command)
