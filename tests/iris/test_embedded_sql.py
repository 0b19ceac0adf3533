"""``iris.dbapi`` is installed before the embedded engine is created, and only inside IRIS.

IRIS preloads a built-in ``iris`` module that has no ``dbapi``; the stand-in below has what the
wrapper package looks for (no ``__file__``, a callable ``cls``) and nothing else. The wrapper
itself (iris-embedded-python-wrapper, pinned in constraints.txt) is the real one.
"""

from __future__ import annotations

import sys
import types

import pytest

from mlpipeline.errors import ConfigError
from mlpipeline.iris import bridge, embedded_sql


def _builtin_iris() -> types.ModuleType:
    module = types.ModuleType("iris")
    module.cls = lambda name: name  # type: ignore[attr-defined]
    return module


def test_outside_iris_nothing_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sys, "_embedded", raising=False)
    imported: list[str] = []
    monkeypatch.setattr(embedded_sql.importlib, "import_module", imported.append)
    assert embedded_sql.install_embedded_dbapi() is False
    assert imported == [], "the wrapper must not be imported outside IRIS"


def test_inside_iris_the_preloaded_module_gets_dbapi(monkeypatch: pytest.MonkeyPatch) -> None:
    preloaded = _builtin_iris()
    monkeypatch.setitem(sys.modules, "iris", preloaded)
    monkeypatch.setattr(sys, "_embedded", 1, raising=False)
    before = set(sys.modules)
    try:
        assert not hasattr(preloaded, "dbapi")
        assert embedded_sql.install_embedded_dbapi() is True
        assert sys.modules["iris"] is preloaded, "the built-in module is patched in place"
        assert preloaded.dbapi is not None
        assert embedded_sql.install_embedded_dbapi() is True, "idempotent"
    finally:  # the wrapper's modules were imported against the stand-in: forget them
        for name in set(sys.modules) - before:
            if name.startswith(("iris_ep", "_iris_ep")):
                del sys.modules[name]


def test_inside_iris_without_the_wrapper_the_error_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "iris", _builtin_iris())

    def missing(name: str) -> None:
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(embedded_sql.importlib, "import_module", missing)
    with pytest.raises(ConfigError, match="iris-embedded-python-wrapper"):
        embedded_sql.install_embedded_dbapi()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("iris+emb:///USER", True),
        ("IRIS+EMB:///USER", True),
        ("iris://u:p@h:1972/USER", False),
        ("sqlite:///x.db", False),
    ],
)
def test_only_the_embedded_url_needs_it(url: str, expected: bool) -> None:
    assert embedded_sql.needs_embedded_dbapi(url) is expected


@pytest.mark.parametrize(("url", "calls"), [("iris+emb:///USER", 1), ("sqlite:///{home}/fs.db", 0)])
def test_every_bridge_call_installs_it_first_on_the_embedded_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, url: str, calls: int
) -> None:
    seen: list[str] = []
    monkeypatch.setattr(bridge, "install_embedded_dbapi", lambda: seen.append("install") or True)
    monkeypatch.setenv("MLPIPELINE_FEATURESTORE_URL", url.format(home=tmp_path))
    monkeypatch.setenv("MLPIPELINE_HOME", str(tmp_path))
    monkeypatch.setenv("MLPIPELINE_LOG_DIR", str(tmp_path))
    bridge._setup()
    assert len(seen) == calls
