"""``process``: processes by exact name or command-line regex; count, RSS and CPU limits.

>>> import os
>>> from opsgate.model import ProcessCheck
>>> from opsgate.probes import ProbeContext
>>> obs = observe(ProcessCheck(name="init", cmdline=".", cpu_sample=0), ProbeContext())
>>> obs.values["count"] > 0
True
"""

from __future__ import annotations

import os
import re
import time

import psutil

from ..conditions import Condition
from ..model import ProcessCheck
from ..results import Observation


def _matches(item: ProcessCheck) -> list[psutil.Process]:
    pattern = re.compile(item.cmdline) if item.cmdline else None
    own = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        if proc.info["pid"] == own:
            continue  # the checker's own command line names what it looks for
        if item.process_name and proc.info["name"] != item.process_name:
            continue
        if pattern and not pattern.search(" ".join(proc.info["cmdline"] or [])):
            continue
        found.append(proc)
    return found


def observe(item: ProcessCheck, ctx) -> Observation:
    procs = _matches(item)
    measured = []
    for proc in procs:
        try:
            proc.cpu_percent(None)  # first call primes the counter
            measured.append(proc)
        except psutil.Error:
            continue
    if item.cpu_percent and measured:
        time.sleep(min(item.cpu_sample, item.timeout / 2))
    rows = []
    for proc in measured:
        try:
            with proc.oneshot():
                rows.append({
                    "pid": proc.pid,
                    "name": proc.info["name"],
                    "cmdline": " ".join(proc.info["cmdline"] or [])[:200],
                    "rss_mb": round(proc.memory_info().rss / 2**20, 2),
                    "cpu_percent": proc.cpu_percent(None) if item.cpu_percent else None,
                })
        except psutil.Error:
            continue  # it ended while we looked: it no longer counts
    values = {
        "count": len(rows),
        "max_rss_mb": max((r["rss_mb"] for r in rows), default=None),
        "max_cpu_percent": max((r["cpu_percent"] for r in rows if r["cpu_percent"] is not None), default=None),
    }
    return Observation(values, details={"processes": rows[:20]})


def limits(item: ProcessCheck) -> list[Condition]:
    what = item.process_name or f"/{item.cmdline}/"
    out = [Condition.compare("count", ">=", item.min_count, label=f"processes matching {what}: count >= {item.min_count}")]
    if item.max_count is not None:
        out.append(Condition.compare("count", "<=", item.max_count, label=f"processes matching {what}: count <= {item.max_count}"))
    if item.rss_mb:
        out += item.rss_mb.conditions("max_rss_mb")
    if item.cpu_percent:
        out += item.cpu_percent.conditions("max_cpu_percent")
    return out
