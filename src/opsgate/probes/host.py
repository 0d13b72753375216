"""``host``: the target's (this machine by default) CPU %, memory %, load per core, and disk and inode use per path.

>>> from opsgate.probes import ProbeContext
>>> obs = observe(HostCheck(name="local", disks=[{"path": "/"}], cpu_sample=0.1), ProbeContext())
>>> sorted(obs.values)
['cpu_percent', 'disks', 'load_per_core', 'memory_percent']
"""

from __future__ import annotations

import time
from typing import ClassVar

from ..conditions import Condition
from ..kinds import Kind
from ..results import Observation
from ..schema import CheckItem, DiskLimits, Duration, Limit


class HostCheck(CheckItem):
    """Local host resources: CPU %, memory %, load per core, disk and inode use per path."""

    kind: ClassVar[str] = "host"
    cpu_percent: Limit | None = None
    memory_percent: Limit | None = None
    load_per_core: Limit | None = None
    disks: list[DiskLimits] = []
    cpu_sample: Duration = 0.5


def observe(item: HostCheck, ctx) -> Observation:
    deadline = time.monotonic() + item.timeout
    try:
        # the disks come along where the target can read them in the same operation
        now = ctx.target.resources(item.cpu_sample, item.timeout, disks=[str(ctx.path(d.path)) for d in item.disks])
    except (OSError, TimeoutError) as exc:
        return Observation({"disks": {}}, error=f"cannot read the host's resources: {exc}")
    values: dict = {"cpu_percent": now.cpu_percent, "memory_percent": now.memory_percent,
                    "load_per_core": now.load_per_core, "disks": {}}
    for disk in item.disks:
        path = ctx.path(disk.path)
        try:
            usage = now.disks.get(str(path)) or ctx.target.disk(str(path), max(deadline - time.monotonic(), 0.5))
            if isinstance(usage, OSError):
                raise usage
        except TimeoutError as exc:
            return Observation(values, error=f"{path}: cannot read disk usage: {exc}")
        except OSError as exc:
            return Observation(values, error=f"{path}: cannot read disk usage: {exc.strerror or exc}")
        values["disks"][disk.path] = {
            "used_percent": usage.used_percent,
            "free_gb": usage.free_gb,
            "inodes_percent": usage.inodes_percent,
        }
    return Observation(values)


def limits(item: HostCheck) -> list[Condition]:
    out = []
    for metric in ("cpu_percent", "memory_percent", "load_per_core"):
        limit = getattr(item, metric)
        if limit:
            out += limit.conditions(metric)
    for disk in item.disks:
        for metric in ("used_percent", "inodes_percent"):
            limit = getattr(disk, metric)
            if limit:
                out += limit.conditions(("disks", disk.path, metric))
    return out


KIND = Kind(name="host", schema=HostCheck, observe=observe, limits=limits,
            summary="the host's resources: CPU %, memory %, load per core, disk and inode use per path",
            host_level=True)
