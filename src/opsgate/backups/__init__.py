"""Backup sources for the ``backup`` kind: name -> module (imported when first used, so a
source whose tools are missing does not stop the others).

Each module exports ``Options``, ``integrity`` (L2), ``restore`` (L3), ``compare`` (L4) and
``take``; one that lists its own recovery points (restic) exports ``points`` too. The
contract: :mod:`opsgate.backups.base`.

>>> sorted(SOURCES)[:3]
['files', 'postgres', 'redis']
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

SOURCES: dict[str, str] = {
    "files": "opsgate.backups.files",
    "sqlite": "opsgate.backups.sqlite",
    "restic": "opsgate.backups.restic",
    "postgres": "opsgate.backups.postgres",
    "redis": "opsgate.backups.redis",
}


def source(name: str) -> ModuleType:
    """The module of backup source ``name``."""
    return import_module(SOURCES[name])
