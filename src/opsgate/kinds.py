"""The registry of check kinds: one module per kind, named here once.

A kind's module (``opsgate.probes.<kind>``) holds its schema, its probe (``observe``), its
built-in limits (``limits``), which of its fields hold secrets and its one-line summary, and
ends with ``KIND = Kind(...)``. Adding a kind is writing that module (and its tests and its
README row) and appending its name to :data:`MODULES`: the environment's schema, the CLI,
markers and dispatch all read :data:`REGISTRY`. A module that lacks one of the parts fails
here, at import, naming what is missing - not at run time when a check of it is probed.

>>> get("file").schema.__name__, get("file").host_level
('FileCheck', True)
>>> get("htp")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
KeyError: "no check kind 'htp'; the kinds are: http, tcp, process, host, log, command, file, ..."
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable

from .schema import CheckItem

#: the kind modules under ``opsgate.probes``, in the order an environment lists its sections
MODULES: tuple[str, ...] = ("http", "tcp", "process", "host", "log", "command", "file", "postgres", "redis",
                            "prometheus", "metrics", "container", "backup", "drill", "dns", "systemd", "packages", "series",
                            "reachable")


class KindError(TypeError):
    """A kind module is incomplete or inconsistent."""


@dataclass(frozen=True)
class Kind:
    """One check kind: its name (the environment's section, the test's ``test_<name>`` and its
    marker), its schema, its probe and built-in limits, the fields of its items whose values
    are secret, and whether it reads the machine opsgate runs on (host-level probes go
    through :mod:`opsgate.targets`)."""

    name: str
    schema: type[CheckItem]
    observe: Callable[[Any, Any], Any]
    limits: Callable[[Any], list]
    summary: str
    secret_fields: tuple[str, ...] = ()
    host_level: bool = False

    def __post_init__(self) -> None:
        where = f"check kind {self.name!r}"
        if not (isinstance(self.name, str) and self.name.isidentifier() and self.name.islower()):
            raise KindError(f"{where}: expected a lower-case identifier as its name")
        if not (isinstance(self.schema, type) and issubclass(self.schema, CheckItem)):
            raise KindError(f"{where}: expected schema to be a CheckItem subclass, seen {self.schema!r}")
        if self.schema.kind != self.name:
            raise KindError(f"{where}: its schema {self.schema.__name__} says kind {self.schema.kind!r}")
        for part, signature in (("observe", "observe(item, ctx) -> Observation"),
                                ("limits", "limits(item) -> list[Condition]")):
            if not callable(getattr(self, part)):
                raise KindError(f"{where}: expected a function {signature} as {part}, seen "
                                f"{getattr(self, part)!r}")
        if not (isinstance(self.summary, str) and self.summary.strip() and "\n" not in self.summary):
            raise KindError(f"{where}: expected a one-line summary (for the README's table of kinds)")
        unknown = [f for f in self.secret_fields if f not in self.schema.model_fields]
        if isinstance(self.secret_fields, str) or unknown:
            raise KindError(f"{where}: expected secret_fields to be a tuple of its schema's fields, seen "
                            f"{self.secret_fields!r}")


def load(module_name: str) -> Kind:
    """The ``KIND`` of ``opsgate.probes.<module_name>`` (or of a dotted module path)."""
    path = module_name if "." in module_name else f"opsgate.probes.{module_name}"
    module = import_module(path)
    kind = getattr(module, "KIND", None)
    if not isinstance(kind, Kind):
        raise KindError(f"{path}: expected KIND = Kind(name=..., schema=..., observe=observe, limits=limits, "
                        f"summary=...) at the end of the module, seen {kind!r} (a kind module imports its building "
                        "blocks from opsgate.schema, never opsgate.model, which imports every kind module)")
    return kind


def _registry() -> dict[str, Kind]:
    registry: dict[str, Kind] = {}
    for module_name in MODULES:
        kind = load(module_name)
        if kind.name in registry:
            raise KindError(f"opsgate.probes.{module_name}: check kind {kind.name!r} is registered twice")
        registry[kind.name] = kind
    return registry


def __getattr__(name: str) -> Any:
    """``REGISTRY``, built on first use: a kind module imports this module for :class:`Kind`, so
    building it at import would import that kind module again before its ``KIND`` exists."""
    if name == "REGISTRY":
        registry = globals()["REGISTRY"] = _registry()
        return registry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


REGISTRY: dict[str, Kind]  # every check kind, by name, in the order of MODULES (see __getattr__)


def get(name: str) -> Kind:
    """The kind called ``name``; KeyError naming the known kinds otherwise."""
    registry = __getattr__("REGISTRY") if "REGISTRY" not in globals() else REGISTRY
    try:
        return registry[name]
    except KeyError:
        raise KeyError(f"no check kind {name!r}; the kinds are: {', '.join(registry)}") from None
