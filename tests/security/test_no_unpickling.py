"""Nothing is unpickled on the serving path: ``predict`` and ``serve`` work with pickle disabled.

Each process runs with a ``sitecustomize`` module (on ``PYTHONPATH``) that replaces every
unpickling entry point before any other import: ``pickle.load``/``loads``/``Unpickler``
(and the C versions in ``_pickle``), ``joblib.load`` and ``cloudpickle.load``/``loads``.
Any call prints a marker on stderr and raises. A positive control shows the guard bites.
The caches start cold, so downloading from the artifact store is covered as well as
loading, and the server also hot-swaps to a second version while guarded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from mlpipeline.featurestore.sql import open_store
from mlpipeline.registry.pointer import SqlPointerStore
from mlpipeline.registry.promotion import Promoter
from mlpipeline.registry.tracking import Tracker
from tests.serving.test_hot_swap_http import env_for, wait_healthy
from tests.trained_home import Trained

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("mlpipeline"))
MARKER = "UNPICKLING-ATTEMPTED"
KEY = "no-pickle-test-key"

GUARD = f'''
import sys as _sys


def _refuse(*args, **kwargs):
    _sys.stderr.write("{MARKER}\\n")
    _sys.stderr.flush()
    raise RuntimeError("unpickling is disabled in this process")


import pickle as _pickle_module
import _pickle as _c_pickle


# Subclasses keep the class attributes libraries read when they subclass in turn (joblib
# reads Unpickler.dispatch); only creating an unpickler is refused.
class _NoCUnpickler(_c_pickle.Unpickler):
    def __init__(self, *args, **kwargs):
        _refuse()


class _NoPyUnpickler(_pickle_module._Unpickler):
    def __init__(self, *args, **kwargs):
        _refuse()


for _mod in (_pickle_module, _c_pickle):
    _mod.load = _refuse
    _mod.loads = _refuse
    _mod.Unpickler = _NoCUnpickler
_pickle_module._Unpickler = _NoPyUnpickler
_pickle_module._load = _refuse
_pickle_module._loads = _refuse

for _name in ("joblib", "cloudpickle"):
    try:
        _lib = __import__(_name)
    except ImportError:
        continue
    _lib.load = _refuse
    if hasattr(_lib, "loads"):
        _lib.loads = _refuse
'''

PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib", ".cloudpickle", ".dill", ".pt", ".pth"}


def guarded_env(trained: Trained, guard_dir: Path) -> dict[str, str]:
    guard_dir.mkdir(exist_ok=True)
    (guard_dir / "sitecustomize.py").write_text(GUARD, encoding="utf-8")
    s = trained.settings
    pythonpath = os.pathsep.join([str(guard_dir), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env_for(s, PYTHONPATH=pythonpath, MLPIPELINE_API_KEY=KEY)


def test_the_guard_bites(trained: Trained, tmp_path: Path) -> None:
    env = guarded_env(trained, tmp_path / "guard")
    probes = [
        "import pickle; pickle.loads(pickle.dumps(1))",
        "import pickle, io; pickle.load(io.BytesIO(pickle.dumps(1)))",
        "import pickle, io; pickle.Unpickler(io.BytesIO(pickle.dumps(1))).load()",
        "import joblib, io; b = io.BytesIO(); joblib.dump(1, b); b.seek(0); joblib.load(b)",
        "import numpy, io; b = io.BytesIO(); numpy.save(b, numpy.array([{}])); b.seek(0); "
        "numpy.load(b, allow_pickle=True)",
        "import cloudpickle; cloudpickle.loads(cloudpickle.dumps(1))",
    ]
    script = "\n".join(
        f"try:\n    exec({p!r})\nexcept RuntimeError:\n    pass\n"
        f"else:\n    raise SystemExit('not refused: ' + {p!r})"
        for p in probes
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Error in sitecustomize" not in done.stderr, done.stderr
    assert done.stderr.count(MARKER) >= len(probes)


def test_predict_needs_no_unpickling(trained: Trained, tmp_path: Path) -> None:
    models = trained.settings.home / "models"
    for child in models.iterdir():
        import shutil

        shutil.rmtree(child)
    env = guarded_env(trained, tmp_path / "guard")
    rows = tmp_path / "rows.json"
    rows.write_text("\n".join(json.dumps(r) for r in trained.records(30)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    done = subprocess.run(
        [CLI, "predict", str(rows), "-f", "demo", "-o", str(out), "--explain"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Error in sitecustomize" not in done.stderr, done.stderr
    assert MARKER not in done.stderr
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(answers) == 30
    assert {a["model_version"] for a in answers} == {"1"}
    assert all(a["contributions"] for a in answers)
    assert_no_pickles(models / "mlpipeline-demo" / "1")


def assert_no_pickles(version_dir: Path) -> None:
    """The cached model folder: a text booster, JSON and Python source; no pickle of any kind."""
    files = [p for p in (version_dir / "model").rglob("*") if p.is_file()]
    assert files
    assert not [p for p in files if p.suffix.lower() in PICKLE_SUFFIXES]
    names = {p.relative_to(version_dir / "model").as_posix() for p in files}
    assert "artifacts/model.txt" in names
    mlmodel = yaml.safe_load((version_dir / "model" / "MLmodel").read_text(encoding="utf-8"))
    pyfunc = mlmodel["flavors"]["python_function"]
    assert "python_model" not in pyfunc, "a pickled PythonModel would be unpickled by pyfunc"
    for path in files:
        head = path.read_bytes()[:2]
        assert head not in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"), f"{path} looks like a pickle"


@pytest.mark.integration
def test_serve_needs_no_unpickling_even_across_a_hot_swap(trained: Trained, tmp_path: Path) -> None:
    import shutil
    import socket

    shutil.rmtree(trained.settings.home / "models")
    env = guarded_env(trained, tmp_path / "guard")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [CLI, "serve", "-f", "demo", "--port", str(port), "--poll", "0.3"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_healthy(url, server)
        headers = {"x-api-key": KEY}
        rows = trained.records(5)
        with httpx.Client(base_url=url, timeout=10, headers=headers) as client:
            first = client.post("/predict", json=rows)
            assert first.status_code == 200, first.text
            assert first.json()["model"]["version"] == "1"
            assert client.post("/explain", json=rows[:1]).status_code == 200
            store = open_store(trained.settings)
            try:
                Promoter(Tracker(trained.settings), SqlPointerStore(store)).promote(
                    "demo", "2", reason="no-pickle test", action="force"
                )
            finally:
                store.dispose()
            deadline = time.monotonic() + 20
            while client.post("/predict", json=rows).json()["model"]["version"] != "2":
                assert time.monotonic() < deadline, "the server did not swap to version 2"
                time.sleep(0.1)
            assert client.post("/invocations", json={"inputs": rows}).status_code == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            _, err = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            _, err = server.communicate()
    assert "Error in sitecustomize" not in err.decode(errors="replace")
    assert MARKER not in err.decode(errors="replace")
    assert_no_pickles(trained.settings.home / "models" / "mlpipeline-demo" / "1")
