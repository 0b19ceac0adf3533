"""sha256 manifests of model folders: one digest names a version's files everywhere.

The manifest maps each file's relative POSIX path to its sha256; the manifest's own
sha256 (over its sorted JSON) is the digest recorded in the registry at registration,
copied into the production pointer at promotion and checked by the cache on every load.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["digest", "manifest_of", "manifest_of_bytes", "read_folder"]


def _is_side_file(rel: Path) -> bool:
    # Loading a model with mlflow.pyfunc from a local store writes bytecode caches and
    # MLflow's registered_model_meta into the stored folder itself; neither changes what
    # the model computes, so neither is part of the manifest.
    return "__pycache__" in rel.parts or rel.suffix == ".pyc" or rel.name == "registered_model_meta"


def read_folder(folder: Path) -> dict[str, bytes]:
    """Every file's bytes by relative POSIX path (side files left out), in a stable order.

    A symbolic link is never followed: it could point anywhere on the machine. It enters the
    result as a marker naming its target, which no registered model has, so a folder with a
    link never matches a recorded digest and is never loaded.
    """
    out: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if _is_side_file(rel):
            continue
        if path.is_symlink():
            out[rel.as_posix()] = b"\0symbolic link to " + os.fsencode(os.readlink(path))
        elif path.is_file():
            out[rel.as_posix()] = path.read_bytes()
    return out


def manifest_of_bytes(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def manifest_of(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative POSIX path."""
    return manifest_of_bytes(read_folder(folder))


def digest(manifest: dict[str, str]) -> str:
    """One digest for a whole manifest (stable order)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
