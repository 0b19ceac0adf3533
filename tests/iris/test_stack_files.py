"""The compose stack's files, checked without Docker: the compose file is valid (Debian's
docker-compose, `config -q`) and complete, the Dockerfiles copy files that exist, credentials
come only from .env, and state lives under dur/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ONE_SHOT = {"dur-init", "minio-bucket"}


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _copy_stack(target: Path, with_env: bool) -> None:
    shutil.copy(COMPOSE, target / "docker-compose.yml")
    for folder in ("iris", "mlflow", "api"):
        shutil.copytree(ROOT / folder, target / folder)
    if with_env:
        shutil.copy(ROOT / ".env.example", target / ".env")


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        service_missing("docker-compose not installed (apt-get install docker-compose; .ci/run does)")
    assert exe
    return exe


def test_compose_file_is_valid_for_docker_compose(tmp_path: Path) -> None:
    exe = _docker_compose()
    _copy_stack(tmp_path, with_env=True)
    done = subprocess.run(
        [exe, "-f", "docker-compose.yml", "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    resolved = subprocess.run(
        [exe, "-f", "docker-compose.yml", "config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert resolved.returncode == 0, resolved.stderr
    assert "CHANGE_ME" in resolved.stdout, "credentials are taken from .env"


def test_compose_refuses_to_start_without_the_credentials(tmp_path: Path) -> None:
    exe = _docker_compose()
    _copy_stack(tmp_path, with_env=False)
    done = subprocess.run(
        [exe, "-f", "docker-compose.yml", "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert re.search(r"POSTGRES_USER|MINIO_ROOT|\.env", done.stderr), done.stderr


def test_services_are_pinned_healthy_and_ordered() -> None:
    services = compose()["services"]
    assert {"iris", "mlflow", "postgres", "minio", "minio-bucket"} <= set(services)
    for name, service in services.items():
        if "image" in service and "build" not in service:
            image = service["image"]
            assert re.search(r":[\w.-]+$", image), f"{name}: pin the image tag ({image})"
            assert not image.endswith(":latest"), name
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} runs once"
        else:
            assert "healthcheck" in service, f"{name} needs a health check"
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert isinstance(spec, dict), f"{name} -> {dependency}: depends_on with a condition"
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert spec["condition"] == expected, f"{name} -> {dependency}"
    assert services["mlflow"]["depends_on"].keys() == {"postgres", "minio-bucket"}
    assert services["minio-bucket"]["depends_on"].keys() == {"minio"}
    assert "mlflow" in services["iris"]["depends_on"]


def test_mlflow_serves_artifacts_and_allows_its_compose_host_name() -> None:
    service = compose()["services"]["mlflow"]
    command = service["command"]
    assert "--serve-artifacts" in command
    hosts = command[command.index("--allowed-hosts") + 1].split(",")
    assert "mlflow:5000" in hosts
    assert command[command.index("--artifacts-destination") + 1].startswith("s3://")
    env = service["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    iris_env = compose()["services"]["iris"]["environment"]
    assert iris_env["MLPIPELINE_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert iris_env["MLPIPELINE_FEATURESTORE_URL"] == "iris+emb:///USER"


def test_the_api_scales_behind_loopback_ports_and_reads_the_sql_pointer() -> None:
    service = compose()["services"]["api"]
    assert service["build"]["dockerfile"] == "api/Dockerfile"
    assert service["depends_on"].keys() == {"iris", "mlflow"}
    assert service["ports"] == ["127.0.0.1:8000-8002:8000"], "three replicas on loopback"
    command = [str(c) for c in service["command"]]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    env = service["environment"]
    # The SQL pointer in IRIS is the one the pipeline moves (the global mirrors it).
    assert env["MLPIPELINE_FEATURESTORE_URL"].startswith("iris://")
    assert env["MLPIPELINE_FEATURESTORE_URL"].endswith("@iris:1972/USER")
    assert env["MLPIPELINE_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "/health" in " ".join(service["healthcheck"]["test"])
    entry = [
        rest
        for keyword, rest in _dockerfile_instructions(ROOT / "api" / "Dockerfile")
        if keyword == "ENTRYPOINT"
    ]
    assert entry == ['["mlpipeline", "serve"]']


def test_all_state_is_bind_mounted_under_dur() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            host = volume.split(":", 1)[0]
            assert host == "./dur" or host.startswith("./dur/"), f"{name}: {volume} is not under dur/"
    assert compose().get("volumes") is None, "no named volumes: state lives in dur/"
    assert "dur/*" in (ROOT / ".gitignore").read_text()


def test_every_variable_comes_from_env_example_and_credentials_are_required() -> None:
    text = COMPOSE.read_text()
    example = env_example()
    for name, operator, _ in re.findall(r"\$\{(\w+)(:[-?])?([^}]*)\}", text):
        if operator == ":-":
            continue
        assert name in example, f"${{{name}}} is required by docker-compose.yml but not in .env.example"
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "IRIS_PASSWORD", "MINIO_ROOT_USER"):
        assert example[name] == "CHANGE_ME", f"{name}: .env.example holds placeholders only"
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "MINIO_ROOT_USER", "POSTGRES_USER"):
        assert re.search(rf"\$\{{{name}:\?", text), f"{name} must be required (:?), never defaulted"
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|ACCESS_KEY", key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", str(value)), f"{name}.{key}: only from .env"
    assert re.search(r"://\$\{POSTGRES_USER:\?[^}]*\}:\$\{POSTGRES_PASSWORD:\?[^}]*\}@", text)
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert "IRIS_PASSWORD" in (ROOT / "iris_autoconf.sh").read_text()


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("service", ["iris", "mlflow", "api"])
def test_dockerfile_copy_sources_exist_and_base_images_are_pinned(service: str) -> None:
    build = compose()["services"][service]["build"]
    context = ROOT / build["context"]
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    assert dockerfile.is_file()
    instructions = _dockerfile_instructions(dockerfile)
    bases = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert bases
    assert all(":" in b and not b.endswith(":latest") for b in bases), bases
    copies = [rest for keyword, rest in instructions if keyword in ("COPY", "ADD")]
    assert copies or service == "mlflow"
    for rest in copies:
        parts = [p for p in rest.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (context / source).exists(), f"{dockerfile.name}: COPY source {source} missing"
            assert not source.startswith(("dur", ".venv", ".env")), source
    if service == "iris":
        assert len(bases) == 1, bases
        assert bases[0].startswith("intersystems/iris-community:"), bases
        text = dockerfile.read_text()
        assert "--target /usr/irissys/mgr/python" in text
        for step in ("iris start IRIS", "iris merge IRIS", "iris session IRIS <", "iris stop IRIS quietly"):
            assert step in text, step


def test_docker_ignore_keeps_the_build_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".venv", "dur", ".git", ".env"):
        assert entry in ignored


def test_iris_setup_files_fit_together() -> None:
    merge = (ROOT / "iris" / "merge.cpf").read_text()
    assert "ModifyService:Name=%Service_CallIn,Enabled=1" in merge
    logging_section = merge.split("[Logging]", 1)[1]
    assert "Format=JSON" in logging_section
    assert "ChildProcessLaunchCommand=irislogd -f /dur/logs/iris.log" in logging_section
    assert "./dur/logs:/dur/logs" in compose()["services"]["iris"]["volumes"]
    script = (ROOT / "iris" / "install.script").read_text()
    dockerfile = (ROOT / "iris" / "Dockerfile").read_text()
    assert 'LoadDir("/opt/mlpipeline/classes"' in script
    assert "iris/src ./classes" in dockerfile
    assert "WORKDIR /opt/mlpipeline" in dockerfile
    assert "##class(MLpipeline.Installer).Run(" in script
    command = compose()["services"]["iris"]["command"]
    assert command[command.index("--after") + 1] == "/opt/mlpipeline/iris_autoconf.sh"
    autoconf = ROOT / "iris_autoconf.sh"
    assert autoconf.stat().st_mode & 0o111, "iris_autoconf.sh must be executable"
    bash = shutil.which("bash")
    assert bash
    checked = subprocess.run([bash, "-n", str(autoconf)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    text = autoconf.read_text()
    assert "set -euo pipefail" in text
    assert "##class(MLpipeline.Installer).Run(" in text
    assert 'GetEnviron("IRIS_PASSWORD")' in text
    assert 'echo "${IRIS_PASSWORD' not in text
    health = " ".join(compose()["services"]["iris"]["healthcheck"]["test"])
    assert "/tmp/mlpipeline-autoconf.ok" in health
    assert "/tmp/mlpipeline-autoconf.ok" in text
