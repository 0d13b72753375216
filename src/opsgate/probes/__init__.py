"""Probes observe; one module per check kind, each with ``observe(item, ctx)`` and ``limits(item)``.

``observe`` returns an Observation and never hangs: every probe is bounded by the
item's ``timeout``. ``limits`` turns the item's built-in settings (status, latency,
counts, levels) into conditions held against ``Observation.values``.

>>> from opsgate.model import FileCheck
>>> observe(FileCheck(name="h", path="/etc/hostname"), ProbeContext()).values["exists"]
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

from ..conditions import Condition
from ..model import CheckItem
from ..results import Observation


@dataclass(frozen=True)
class ProbeContext:
    """What probes need besides their item: where relative paths start."""

    base_dir: Path = field(default_factory=Path.cwd)

    def path(self, value: str) -> Path:
        """Resolve ``value`` against the environment's base_dir (``~`` expanded)."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def _module(kind: str):
    return import_module(f"{__name__}.{kind}")


def observe(item: CheckItem, ctx: ProbeContext) -> Observation:
    """Run the probe for ``item``'s kind."""
    return _module(item.kind).observe(item, ctx)


def limits(item: CheckItem) -> list[Condition]:
    """The built-in conditions for ``item``'s kind."""
    return _module(item.kind).limits(item)
