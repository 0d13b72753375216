"""``host``: local CPU %, memory %, load per core, and disk and inode use per path.

>>> from opsgate.model import HostCheck
>>> from opsgate.probes import ProbeContext
>>> obs = observe(HostCheck(name="local", disks=[{"path": "/"}], cpu_sample=0.1), ProbeContext())
>>> sorted(obs.values)
['cpu_percent', 'disks', 'load_per_core', 'memory_percent']
"""

from __future__ import annotations

import os

import psutil

from ..conditions import Condition
from ..model import HostCheck
from ..results import Observation


def observe(item: HostCheck, ctx) -> Observation:
    values: dict = {
        "cpu_percent": psutil.cpu_percent(interval=min(item.cpu_sample, item.timeout / 2)),
        "memory_percent": psutil.virtual_memory().percent,
        "load_per_core": round(os.getloadavg()[0] / (psutil.cpu_count() or 1), 3),
        "disks": {},
    }
    for disk in item.disks:
        path = ctx.path(disk.path)
        try:
            usage = psutil.disk_usage(str(path))
            vfs = os.statvfs(path)
        except OSError as exc:
            return Observation(values, error=f"{path}: cannot read disk usage: {exc.strerror}")
        inodes_used = (vfs.f_files - vfs.f_ffree) / vfs.f_files * 100 if vfs.f_files else 0.0
        values["disks"][disk.path] = {
            "used_percent": usage.percent,
            "free_gb": round(usage.free / 2**30, 2),
            "inodes_percent": round(inodes_used, 2),
        }
    return Observation(values)


def limits(item: HostCheck) -> list[Condition]:
    out = []
    for metric in ("cpu_percent", "memory_percent", "load_per_core"):
        limit = getattr(item, metric)
        if limit:
            out += limit.conditions(metric)
    for disk in item.disks:
        quoted = disk.path.replace('"', '\\"')
        for metric in ("used_percent", "inodes_percent"):
            limit = getattr(disk, metric)
            if limit:
                out += limit.conditions(f'disks."{quoted}".{metric}')
    return out
