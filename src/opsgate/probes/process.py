"""``process``: processes by exact name or command-line regex, or the one whose PID is in a
``pid_file`` (with ``children``, its descendants too); count, RSS and CPU limits.

``pid_file`` scopes a check to one instance: other copies of the same program on the host
(a second deployment, another test run) are not counted.

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
import stat
import time

import psutil

from ..conditions import Condition
from ..model import ProcessCheck
from ..redact import REDACTOR
from ..results import Observation

_MAX_PID_FILE = 4096  # a PID file holds one number; read no more than this


class _NotObservable(Exception):
    """The pid_file cannot be used: the reason."""


def _pid_from_file(item: ProcessCheck, ctx) -> int:
    path = ctx.path(item.pid_file) if ctx is not None else item.pid_file
    try:
        # O_NONBLOCK and a regular-file check: a FIFO or a device here must not hang the probe
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _NotObservable(f"pid_file {path}: not a regular file")
            text = os.read(fd, _MAX_PID_FILE).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
    except OSError as exc:
        raise _NotObservable(f"pid_file {path}: cannot read: {exc.strerror or exc}") from None
    first = text.split()[0] if text.split() else ""
    if not first.isdigit() or int(first) <= 0:
        raise _NotObservable(f"pid_file {path}: expected a process id, seen {REDACTOR.excerpt(text, 40)!r}")
    return int(first)


def _candidates(item: ProcessCheck, ctx) -> tuple[list[psutil.Process], str | None]:
    """The processes a pid_file scopes the check to, and why there are none (or None)."""
    pid = _pid_from_file(item, ctx)
    try:
        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if item.children else [])]
    except psutil.NoSuchProcess:
        return [], f"pid_file {item.pid_file} names PID {pid}, which is not running"
    except psutil.Error as exc:
        return [], f"pid_file {item.pid_file} names PID {pid}, which cannot be read: {exc}"
    return procs, None


def _matches(item: ProcessCheck, ctx=None) -> tuple[list[psutil.Process], str | None]:
    pattern = re.compile(item.cmdline) if item.cmdline else None
    own = os.getpid()
    found = []
    why_none = None
    if item.pid_file:
        procs, why_none = _candidates(item, ctx)
    else:
        procs = psutil.process_iter(["pid", "name", "cmdline"])
    for proc in procs:
        try:
            info = proc.info if hasattr(proc, "info") else proc.as_dict(["pid", "name", "cmdline"])
        except psutil.Error:
            continue
        proc.info = info
        if info["pid"] == own:
            continue  # the checker's own command line names what it looks for
        if item.process_name and info["name"] != item.process_name:
            continue
        if pattern and not pattern.search(" ".join(info["cmdline"] or [])):
            if item.pid_file and why_none is None and info["pid"] == procs[0].pid:
                why_none = f"pid_file {item.pid_file} names PID {info['pid']}, whose command line does not match /{item.cmdline}/"
            continue
        found.append(proc)
    return found, why_none


def observe(item: ProcessCheck, ctx) -> Observation:
    """Find the processes, sample CPU over ``cpu_sample`` if a CPU limit is set, measure each."""
    try:
        procs, why_none = _matches(item, ctx)
    except _NotObservable as exc:
        return Observation({"count": 0}, error=str(exc))
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
                    "cmdline": REDACTOR.excerpt(" ".join(proc.info["cmdline"] or []), 200),
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
    explain = why_none if not rows else None
    return Observation(values, details={"processes": rows[:20]}, explain=explain)


def limits(item: ProcessCheck) -> list[Condition]:
    what = " ".join(filter(None, (item.process_name, item.cmdline and f"/{item.cmdline}/",
                                  item.pid_file and f"pid_file {item.pid_file}" + (" (+children)" if item.children else ""))))
    out = [Condition.compare("count", ">=", item.min_count, label=f"processes matching {what}: count >= {item.min_count}")]
    if item.max_count is not None:
        out.append(Condition.compare("count", "<=", item.max_count, label=f"processes matching {what}: count <= {item.max_count}"))
    if item.rss_mb:
        out += item.rss_mb.conditions("max_rss_mb")
    if item.cpu_percent:
        out += item.cpu_percent.conditions("max_cpu_percent")
    return out
