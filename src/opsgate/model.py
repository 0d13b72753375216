"""The environment file's schema: its settings, and a list of items per registered check kind.

An environment lists items per kind (``http``, ``tcp``, ``process``, ... every kind in
:data:`opsgate.kinds.REGISTRY`; each kind's schema lives in its own module). Every item has
a ``name`` (its test id), a ``severity`` and optional ``depends_on``, ``tags``, ``timeout``,
``retry`` and ``window``; ``expect`` conditions must hold and ``warn`` conditions should hold.

:class:`Environment` is made from the registry, so a new kind needs no edit here. The
building blocks (``CheckItem``, ``Limit``, ``Duration`` ...) are :mod:`opsgate.schema`'s and
each kind's schema its module's; both are importable from here too, as they always were.

``Environment`` and ``KINDS`` import every kind's module, so they are built on first use; a
file is validated by :func:`environment_for`, the same schema with only the kinds it has
sections of built (an environment of http checks does not import the other kinds' modules).

>>> from opsgate.model import Environment, KINDS
>>> env = Environment.model_validate({"name": "demo", "http": [{"name": "api", "url": "http://127.0.0.1:8000/health"}]})
>>> env.items()[0].severity, env.items()[0].kind
('P2', 'http')
>>> from opsgate.model import FileCheck
>>> FileCheck is KINDS["file"]
True
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, create_model, field_validator

from . import severity as sev

# the building blocks first: a kind module may import them from here while the registry below imports it
from .schema import (CADENCES, Cadences, CheckItem, DiskLimits, Duration, Interval, Limit, LogPattern, ProcessScope,
                     Regex, Retry, SecretValue, Severity, Size, Strict, Window)
from .kinds import REGISTRY, KindError  # noqa: E402  (after the building blocks, on purpose)
from .runbook import Runbook  # noqa: E402
from .hosts import FleetSettings, expand  # noqa: E402

__all__ = ["CADENCES", "Cadences", "CheckItem", "DiskLimits", "Duration", "Interval", "Limit", "LogPattern",
           "ProcessScope", "Regex", "Retry", "SecretValue", "Severity", "Size", "Strict", "Window",
           "KINDS", "Defaults", "TriageSettings", "EnvironmentSettings", "Environment"]

KINDS: dict[str, type[CheckItem]]  # kind name -> its schema (``KINDS["http"] is HttpCheck``), in registry order
Environment: type[EnvironmentSettings]  # one target system: its settings and its checks, one list per kind


def __getattr__(name: str) -> Any:
    """``KINDS`` and ``Environment``, built on first use (they import every kind's module), and
    ``HttpCheck``, ``TcpCheck`` ...: every kind's schema, by its class name."""
    if name == "KINDS":
        kinds = globals()["KINDS"] = {kind_name: kind.schema for kind_name, kind in REGISTRY.items()}
        return kinds
    if name == "Environment":
        environment = globals()["Environment"] = _environment()
        return environment
    for kind in REGISTRY.values() if not name.startswith("_") else ():  # not for __path__, __wrapped__ ...
        if kind.schema.__name__ == name:
            return kind.schema
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Defaults(Strict):
    """Values every item gets unless it sets its own."""

    severity: Severity | None = None
    timeout: Duration | None = None
    cadence: Cadences | None = Field(None, description="cadence(s) of every item that sets none (and whose kind "
                                     "section sets none); default daily")


class TriageSettings(Strict):
    """Incident triage collected by a run itself (``opsgate triage``'s collection, into
    ``reports/incidents/<id>/``) when a check of one of these severities fails."""

    on_failure: list[Severity] = Field(["P0", "P1"], description="severities whose failure makes a run collect "
                                                                  "a triage at its end")
    timeout: Duration = Field(10.0, description="limit for each item's collection")

    @field_validator("on_failure", mode="before")
    @classmethod
    def _severities(cls, value: Any, info: ValidationInfo) -> Any:
        scale = (info.context or {}).get("severity_scale", "P0-P3")
        return [sev.normalise(v, scale) for v in value] if isinstance(value, list) else value


class EnvironmentSettings(FleetSettings):
    """An environment's own settings, besides its checks (which :class:`Environment` adds, one
    list per registered kind)."""

    name: str = Field(description="the environment's name, recorded in every report")
    description: str | None = None
    severity_scale: Literal["P0-P3", "P1-P4", "SEV0-SEV3"] = "P0-P3"
    base_dir: str | None = Field(None, description="relative paths resolve here (default: the file's folder)")
    concurrency: int = Field(50, ge=1, le=1024, description="probes run at once")
    secrets: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        [], description="names of environment variables whose values are secret wherever they are substituted "
                        "(besides names with KEY, SECRET, TOKEN, PASSWORD, PASSWD, CREDENTIAL, PRIVATE)")
    defaults: Defaults = Defaults()
    triage: TriageSettings | None = Field(None, description="collect an incident triage when a run has a failure "
                                          "of these severities: {on_failure: [P0, P1]}")
    runbook: Runbook | None = Field(None, description="the system's runbook steps, each traced to the checks "
                                    "encoding it or classified not automatable (opsgate list --runbook)")

    _expanded: list[CheckItem] | None = PrivateAttr(None)

    def items(self, kind: str | None = None, cadence: str | None = None) -> list[CheckItem]:
        """Every check to run, or those of one kind and cadence, in file order: an item with
        ``hosts:`` is one check per host (``server@web1``), plus ``reachable@<host>`` per host
        (see :mod:`opsgate.hosts`)."""
        if not self.hosts:  # nothing to expand
            kinds = [kind] if kind else list(REGISTRY)
            return [i for k in kinds for i in getattr(self, k) if cadence is None or cadence in i.cadence]
        if self._expanded is None:
            self._expanded = expand(self.configured(), self.hosts, self.host_options)
        return [i for i in self._expanded if (kind is None or i.kind == kind) and (cadence is None or cadence in i.cadence)]

    def configured(self, kind: str | None = None) -> list[CheckItem]:
        """The items as the file lists them (an item with ``hosts:`` once), in file order."""
        kinds = [kind] if kind else list(REGISTRY)
        return [i for k in kinds for i in getattr(self, k)]


def environment_for(data: Any) -> type[EnvironmentSettings]:
    """The schema an environment file's mapping is validated with: :data:`Environment`, with
    only the kinds ``data`` has a section of built. The others are fields too, in the same
    order, each an empty list (as they are in :data:`Environment` when the file omits them),
    but their modules are not imported; a file cannot tell the difference, errors included.

    >>> schema = environment_for({"name": "demo", "tcp": [{"name": "db", "port": 5432}]})
    >>> env = schema.model_validate({"name": "demo", "tcp": [{"name": "db", "port": 5432}]})
    >>> env.tcp[0].kind, env.http, list(schema.model_fields) == list(_environment().model_fields)
    ('tcp', [], True)
    """
    present = frozenset(name for name in REGISTRY if name in data) if isinstance(data, dict) else frozenset()
    return _environment(None if len(present) == len(REGISTRY) else present)


@functools.cache
def _environment(built: frozenset[str] | None = None) -> type[EnvironmentSettings]:
    """Settings plus one list per registered kind; ``built``: the kinds whose items are
    validated (None: every kind), the others an unvalidated list that stays empty."""
    taken = [name for name in REGISTRY if name in EnvironmentSettings.model_fields]
    if taken:
        raise KindError(f"check kind {taken[0]!r}: the name is an environment setting; choose another")
    sections: dict[str, Any] = {
        name: (list[REGISTRY[name].schema], Field([], description=REGISTRY[name].summary))
        if built is None or name in built else (list[Any], Field([]))
        for name in REGISTRY}
    return create_model("Environment", __base__=EnvironmentSettings, __module__=__name__,
                        __doc__="One target system: its settings and its checks, by kind.", **sections)
