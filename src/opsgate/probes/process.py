"""``process``: processes by exact name or command-line regex, or the one whose PID is in a
``pid_file`` (with ``children``, its descendants too), or the one listening on a local
``port``; count, RSS and CPU limits.

Scopes say which process is meant, so an unrelated process with a similar command line
neither satisfies nor breaks the check; every scope given must hold:

- ``pid_file``: the PID in the file (``children``: and its descendants);
- ``port``: a process listening on that local port (``psutil.net_connections``);
- ``user``: owner name, or numeric real uid;
- ``exe``: the executable, exact path with symlinks resolved (``/proc/<pid>/exe``);
- ``cwd``: the working directory, exact path (relative paths start at base_dir);
- ``container``: a container id (prefix) in ``/proc/<pid>/cgroup`` -- docker
  (``/docker/<id>``, ``docker-<id>.scope``), podman (``libpod-<id>``), containerd
  (``cri-containerd-<id>.scope``); names are not resolved;
- ``systemd_unit``: the unit in the process's systemd cgroup (the ``name=systemd`` line of
  cgroup v1, or the v2 line): ``/system.slice/app.service``.

The evidence lists every process that counted (pid, user, exe, cwd, redacted command line)
and how many candidates each scope excluded.

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
from dataclasses import dataclass
from typing import Callable

import psutil

from ..conditions import Condition
from ..model import ProcessCheck, ProcessScope
from ..redact import REDACTOR
from ..results import Observation

_MAX_PID_FILE = 4096  # a PID file holds one number; read no more than this
_MAX_CGROUP = 64 * 1024  # /proc/<pid>/cgroup: a few lines
_ROWS = 20  # processes listed in the evidence
# a 64-hex container id as a cgroup path component: docker/<id>, docker-<id>.scope, libpod-<id>,
# libpod-payload-<id>, cri-containerd-<id>.scope, crio-<id>.scope
_CONTAINER_ID = re.compile(r"(?:^|[/-])([0-9a-f]{64})(?:\.scope)?(?=/|$)")


class NotObservable(Exception):
    """A scope cannot be used at all (an unreadable pid_file): the reason."""


def pid_from_file(value: str, ctx) -> int:
    """The PID a pid file holds; :class:`NotObservable` naming the file when it holds none.

    >>> import tempfile, pathlib
    >>> from opsgate.probes import ProbeContext
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "app.pid").write_text("4242\\n")
    >>> pid_from_file("app.pid", ProbeContext(d))
    4242
    """
    path = ctx.path(value) if ctx is not None else value
    try:
        # O_NONBLOCK and a regular-file check: a FIFO or a device here must not hang the probe
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise NotObservable(f"pid_file {path}: not a regular file")
            text = os.read(fd, _MAX_PID_FILE).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
    except OSError as exc:
        raise NotObservable(f"pid_file {path}: cannot read: {exc.strerror or exc}") from None
    first = text.split()[0] if text.split() else ""
    if not first.isdigit() or int(first) <= 0:
        raise NotObservable(f"pid_file {path}: expected a process id, seen {REDACTOR.excerpt(text, 40)!r}")
    return int(first)


def cgroup_lines(pid: int) -> list[str]:
    """The lines of ``/proc/<pid>/cgroup`` (``hierarchy-id:controllers:path``).

    >>> all(line.count(":") >= 2 for line in cgroup_lines(os.getpid()))
    True
    """
    with open(f"/proc/{pid}/cgroup", "rb") as f:
        return f.read(_MAX_CGROUP).decode("utf-8", "replace").splitlines()


def container_ids(lines: list[str]) -> set[str]:
    """Container ids named in cgroup lines (docker, podman, containerd, cri-o paths).

    >>> sorted(container_ids(["0::/libpod_parent/libpod-" + "ab" * 32, "1:cpu:/docker/" + "cd" * 32]))[0][:8]
    'abababab'
    >>> container_ids(["0::/user.slice/session-1.scope"])
    set()
    """
    ids = set()
    for line in lines:
        path = line.split(":", 2)[-1]
        ids.update(m.group(1) for m in _CONTAINER_ID.finditer(path))
    return ids


def systemd_units(lines: list[str]) -> set[str]:
    """Units named in the systemd hierarchy's path: the ``name=systemd`` line of cgroup v1, or
    the v2 (``0::``) line; every path component with a unit suffix counts (slices too).

    >>> sorted(systemd_units(["1:name=systemd:/system.slice/app.service", "0::/"]))
    ['app.service', 'system.slice']
    >>> systemd_units(["4:memory:/system.slice/app.service"])
    set()
    """
    units = set()
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and (parts[1] == "name=systemd" or (parts[0] == "0" and parts[1] == "")):
            units.update(c for c in parts[2].split("/")
                         if re.fullmatch(r".+\.(service|scope|slice|socket|mount|swap|target)", c))
    return units


def listening_pids(port: int) -> tuple[set[int], int]:
    """PIDs with a socket listening on local ``port`` (any address), and how many such
    sockets have no readable owner (another user's, when not run as root)."""
    pids, unknown = set(), 0
    try:
        conns = psutil.net_connections(kind="inet")
    except psutil.Error as exc:  # some systems list sockets to root only
        raise NotObservable(f"cannot list the listening sockets of port {port}: {exc}") from None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid:
                pids.add(conn.pid)
            else:
                unknown += 1
    return pids, unknown


@dataclass
class Scope:
    """One scope: its short label (``user=app``), what a process must be (``owned by user
    'app'``), and the test."""

    label: str
    phrase: str
    holds: Callable[[psutil.Process], bool]


def _realpath(value: str, ctx) -> str:
    return os.path.realpath(ctx.path(value) if ctx is not None else value)


def scopes(scope: ProcessScope, ctx, port: int | None = None) -> list[Scope]:
    """The scopes ``scope`` sets besides pid_file (which selects candidates), in the order
    they are applied.

    >>> [s.label for s in scopes(ProcessScope(user="app", cwd="/srv"), None, port=8000)]
    ['port=8000', 'user=app', 'cwd=/srv']
    """
    out = []
    if port is not None:
        pids, _ = listening_pids(port)
        out.append(Scope(f"port={port}", f"listening on port {port}", lambda p: p.pid in pids))
    if scope.user is not None:
        user = str(scope.user)
        if user.isdigit():
            out.append(Scope(f"user={user}", f"owned by uid {user}", lambda p: p.uids().real == int(user)))
        else:
            out.append(Scope(f"user={user}", f"owned by user {user!r}", lambda p: p.username() == user))
    if scope.exe is not None:
        exe = _realpath(scope.exe, ctx)
        out.append(Scope(f"exe={exe}", f"running executable {exe}", lambda p: os.path.realpath(p.exe()) == exe))
    if scope.cwd is not None:
        cwd = _realpath(scope.cwd, ctx)
        out.append(Scope(f"cwd={cwd}", f"with working directory {cwd}", lambda p: os.path.realpath(p.cwd()) == cwd))
    if scope.container is not None:
        cid = scope.container
        out.append(Scope(f"container={cid}", f"in container {cid}",
                         lambda p: any(i.startswith(cid) for i in container_ids(cgroup_lines(p.pid)))))
    if scope.systemd_unit is not None:
        unit = scope.systemd_unit
        out.append(Scope(f"systemd_unit={unit}", f"in systemd unit {unit}",
                         lambda p: unit in systemd_units(cgroup_lines(p.pid))))
    return out


def first_failing(proc: psutil.Process, checks: list[Scope]) -> str | None:
    """The label of the first scope ``proc`` does not meet (``unreadable`` when a scope
    cannot be read for it: it does not count), or None when it meets them all."""
    for s in checks:
        try:
            if not s.holds(proc):
                return s.label
        except psutil.NoSuchProcess:
            return "ended"
        except (psutil.Error, OSError):
            return f"{s.label} (unreadable)"
    return None


def scoping_summary(what: str, candidates: int, excluded: dict[str, int], checks: list[Scope], kept: int) -> str:
    """``3 processes match cmdline /x/; 2 excluded by user=app, 1 by cwd=/srv`` -- or, when
    none is left, ``no process matches: cmdline /x/ matched 2, none owned by user 'app'``.

    >>> s = [Scope("user=app", "owned by user 'app'", bool)]
    >>> scoping_summary("cmdline /x/", 2, {"user=app": 2}, s, 0)
    "no process matches: cmdline /x/ matched 2, none owned by user 'app' (2 excluded by user=app)"
    """
    by = ", ".join(f"{n} {'excluded by ' if i == 0 else 'by '}{label}" for i, (label, n) in enumerate(excluded.items()))
    if kept:
        return f"{candidates} process{'es' if candidates != 1 else ''} match {what}" + (f"; {by}" if by else "")
    if not candidates:
        return f"no process matches {what}"
    if len(excluded) == 1:
        label = next(iter(excluded))
        phrase = next((s.phrase for s in checks if s.label == label), label)
        return f"no process matches: {what} matched {candidates}, none {phrase} ({by})"
    return f"no process matches: {what} matched {candidates}, none meets every scope ({by})"


def _pid_file_candidates(item: ProcessCheck, ctx) -> tuple[list[psutil.Process], str | None]:
    """The processes a pid_file scopes the check to, and why there are none (or None)."""
    pid = pid_from_file(item.pid_file, ctx)
    try:
        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if item.children else [])]
    except psutil.NoSuchProcess:
        return [], f"pid_file {item.pid_file} names PID {pid}, which is not running"
    except psutil.Error as exc:
        return [], f"pid_file {item.pid_file} names PID {pid}, which cannot be read: {exc}"
    return procs, None


def _describe(item: ProcessCheck) -> str:
    return " ".join(filter(None, (item.process_name, item.cmdline and f"cmdline /{item.cmdline}/",
                                  item.pid_file and f"pid_file {item.pid_file}" + (" (+children)" if item.children else ""))))


def _matches(item: ProcessCheck, ctx=None) -> tuple[list[psutil.Process], str | None, dict]:
    """The processes that count, why there are none (pid_file), and the scoping record."""
    pattern = re.compile(item.cmdline) if item.cmdline else None
    own = os.getpid()
    checks = scopes(item, ctx, item.port)
    found, candidates, excluded = [], 0, {}
    why_none = None
    if item.pid_file:
        procs, why_none = _pid_file_candidates(item, ctx)
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
        candidates += 1
        failing = first_failing(proc, checks)
        if failing is None:
            found.append(proc)
        elif failing != "ended":
            excluded[failing] = excluded.get(failing, 0) + 1
    what = _describe(item) or (f"port {item.port}" if item.port else "")
    record = {"candidates": candidates, "excluded": excluded, "scopes": [s.label for s in checks],
              "summary": scoping_summary(what, candidates, excluded, checks, len(found))}
    return found, why_none, record


def _row(proc: psutil.Process, item: ProcessCheck) -> dict:
    def read(getter):
        try:
            return REDACTOR.excerpt(str(getter()), 200)
        except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
            return None  # another user's process: not readable without root

    return {
        "pid": proc.pid,
        "name": proc.info["name"],
        "user": read(proc.username),
        "exe": read(proc.exe),
        "cwd": read(proc.cwd),
        "cmdline": REDACTOR.excerpt(" ".join(proc.info["cmdline"] or []), 200),
        "rss_mb": round(proc.memory_info().rss / 2**20, 2),
        "cpu_percent": proc.cpu_percent(None) if item.cpu_percent else None,
    }


def observe(item: ProcessCheck, ctx) -> Observation:
    """Find the processes, sample CPU over ``cpu_sample`` if a CPU limit is set, measure each."""
    try:
        procs, why_none, scoping = _matches(item, ctx)
    except NotObservable as exc:
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
                rows.append(_row(proc, item))
        except psutil.Error:
            continue  # it ended while we looked: it no longer counts
    values = {
        "count": len(rows),
        "max_rss_mb": max((r["rss_mb"] for r in rows), default=None),
        "max_cpu_percent": max((r["cpu_percent"] for r in rows if r["cpu_percent"] is not None), default=None),
    }
    if item.port:
        try:
            _, unknown = listening_pids(item.port)
        except NotObservable:
            unknown = 0  # listed moments ago; the scope above already used that list
        if unknown:
            scoping["summary"] += f"; {unknown} listener(s) on port {item.port} with an unreadable owner"
    explain = why_none if not rows and why_none else (scoping["summary"] if scoping["excluded"] or not rows else None)
    return Observation(values, details={"processes": rows[:_ROWS], "scoping": scoping}, explain=explain)


def limits(item: ProcessCheck) -> list[Condition]:
    what = " ".join(filter(None, (item.process_name, item.cmdline and f"/{item.cmdline}/",
                                  item.pid_file and f"pid_file {item.pid_file}" + (" (+children)" if item.children else ""),
                                  *_scope_labels(item))))
    out = [Condition.compare("count", ">=", item.min_count, label=f"processes matching {what}: count >= {item.min_count}")]
    if item.max_count is not None:
        out.append(Condition.compare("count", "<=", item.max_count, label=f"processes matching {what}: count <= {item.max_count}"))
    if item.rss_mb:
        out += item.rss_mb.conditions("max_rss_mb")
    if item.cpu_percent:
        out += item.cpu_percent.conditions("max_cpu_percent")
    return out


def _scope_labels(item: ProcessCheck) -> list[str]:
    """The scopes as configured, for condition labels (``limits`` must not read the machine)."""
    return [f"{key}={getattr(item, key)}" for key in ("port", "user", "exe", "cwd", "container", "systemd_unit")
            if getattr(item, key) is not None]
