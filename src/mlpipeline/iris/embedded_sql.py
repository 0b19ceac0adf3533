"""Make ``iris.dbapi`` exist inside IRIS before SQLAlchemy opens ``iris+emb:///NAMESPACE``.

sqlalchemy-iris's embedded dialect does ``import iris`` and uses ``iris.dbapi``. Inside an IRIS
process ``import iris`` returns the *built-in* module that IRIS preloads, which has no ``dbapi``:
iris-embedded-python-wrapper adds it by patching that module, normally from its ``iris_ep.pth``
start-up hook. IRIS finds our packages through ``/usr/irissys/mgr/python``, a plain ``sys.path``
entry whose ``.pth`` files Python never processes, so the hook never runs there. This module
calls the wrapper's documented installer, ``iris_ep.install()`` (idempotent), itself.

Outside IRIS (the CLI, tests, a server talking to IRIS over ``iris://``) it does nothing: the
built-in module is absent, and the installer would otherwise make the wrapper answer to
``import iris`` in a process that has no IRIS.
"""

from __future__ import annotations

import importlib
import logging
import sys

from mlpipeline.errors import ConfigError

__all__ = ["install_embedded_dbapi", "is_embedded_kernel", "needs_embedded_dbapi"]

log = logging.getLogger(__name__)


def needs_embedded_dbapi(url: str) -> bool:
    """Whether ``url`` is a feature-store URL of sqlalchemy-iris's embedded dialect."""
    return url.strip().lower().startswith("iris+emb:")


def is_embedded_kernel() -> bool:
    """Whether this interpreter is embedded Python started by IRIS.

    IRIS preloads a built-in ``iris`` module (no ``__file__``) and sets ``sys._embedded``;
    the wrapper package uses the same two signs.
    """
    if getattr(sys, "_embedded", 0):
        return True
    preloaded = sys.modules.get("iris")
    return preloaded is not None and getattr(preloaded, "__file__", None) is None


def install_embedded_dbapi() -> bool:
    """Patch the preloaded ``iris`` module with the wrapper's ``dbapi``; ``True`` if done.

    A no-op returning ``False`` outside IRIS. Inside, a wrapper that is missing or still leaves
    no ``iris.dbapi`` is a :class:`ConfigError` naming the package to install, because the
    alternative is sqlalchemy-iris failing later with an ``AttributeError`` on ``dbapi``.
    """
    if not is_embedded_kernel():
        return False
    try:
        wrapper = importlib.import_module("iris_ep")
        patched = wrapper.install()
    except ImportError as exc:
        raise ConfigError(
            f"embedded SQL (iris+emb://) needs iris-embedded-python-wrapper ({exc}); "
            "install mlpipeline with its [iris] extra into /usr/irissys/mgr/python"
        ) from exc
    if getattr(patched, "dbapi", None) is None:
        raise ConfigError(
            "iris-embedded-python-wrapper ran but the iris module still has no dbapi; "
            "check that its version matches constraints.txt"
        )
    log.debug("iris.dbapi installed for embedded SQL")
    return True
