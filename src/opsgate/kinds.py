"""The registry of check kinds: one module per kind, named here once.

A kind's module (``opsgate.probes.<kind>``) holds its schema, its probe (``observe``), its
built-in limits (``limits``), which of its fields hold secrets and its one-line summary, and
ends with ``KIND = Kind(...)``. Adding a kind is writing that module (and its tests and its
README row) and appending its name to :data:`MODULES`: the environment's schema, the CLI,
markers and dispatch all read :data:`REGISTRY`. A kind's module is imported when the kind is
first looked up, so a run pays only for the kinds its environment uses; a module that lacks
one of the parts fails there, naming what is missing - when an environment using the kind is
loaded (or ``opsgate schema`` lists every kind), not when a check of it is probed.

>>> get("file").schema.__name__, get("file").host_level
('FileCheck', True)
>>> get("htp")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
KeyError: "no check kind 'htp'; the kinds are: http, tcp, process, host, log, command, file, ..."
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # imported where needed: knowing the kinds' names (plugin.py's markers) imports no pydantic
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
        from .schema import CheckItem

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


class Registry(Mapping[str, Kind]):
    """Every check kind, by name, in the order of :data:`MODULES`. The names come from
    ``MODULES`` (a kind's module is named after it), so iterating, ``len`` and ``in`` import
    nothing; ``REGISTRY["http"]`` imports that kind's module on first use, ``.values()`` and
    ``.items()`` every kind's. Importing a module builds its schema (pydantic) and imports its
    client libraries: an environment of http checks need not pay for the other kinds.

    >>> "tcp" in REGISTRY, "htp" in REGISTRY, list(REGISTRY)[:2]
    (True, False, ['http', 'tcp'])
    """

    def __init__(self) -> None:
        self._kinds: dict[str, Kind] = {}

    def __getitem__(self, name: str) -> Kind:
        kind = self._kinds.get(name)
        if kind is None:
            if name not in MODULES:
                raise KeyError(name)
            kind = load(name)
            if kind.name != name:
                raise KindError(f"opsgate.probes.{name}: expected the check kind named after its module, {name!r}, "
                                f"seen KIND = Kind(name={kind.name!r}, ...)")
            self._kinds[name] = kind
        return kind

    def __iter__(self) -> Iterator[str]:
        return iter(MODULES)

    def __len__(self) -> int:
        return len(MODULES)

    def __contains__(self, name: object) -> bool:
        return name in MODULES


#: every check kind, by name, in the order of MODULES; a kind's module is imported when looked up
REGISTRY: Registry = Registry()


def get(name: str) -> Kind:
    """The kind called ``name``; KeyError naming the known kinds otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"no check kind {name!r}; the kinds are: {', '.join(REGISTRY)}") from None
