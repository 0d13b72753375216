"""``process``: processes by exact name or command-line regex, or the one whose PID is in a
``pid_file`` (with ``children``, its descendants too), or the one listening on a local
``port``; count, RSS and CPU limits.

Scopes say which process is meant, so an unrelated process with a similar command line
neither satisfies nor breaks the check; every scope given must hold:

- ``pid_file``: the PID in the file (``children``: and its descendants);
- ``port``: a process listening on that local port (the target's ``listeners``);
- ``user``: owner name, or numeric real uid;
- ``exe``: the executable, exact path with symlinks resolved (``/proc/<pid>/exe``);
- ``cwd``: the working directory, exact path (relative paths start at base_dir);
- ``container``: a container id (prefix) in ``/proc/<pid>/cgroup`` -- docker
  (``/docker/<id>``, ``docker-<id>.scope``), podman (``libpod-<id>``), containerd
  (``cri-containerd-<id>.scope``); names are not resolved;
- ``systemd_unit``: the unit in the process's systemd cgroup (the ``name=systemd`` line of
  cgroup v1, or the v2 line): ``/system.slice/app.service``.

The evidence lists every process that counted (pid, user, exe, cwd, redacted command line)
and how many candidates each scope excluded. Processes, sockets and pid files are read through
``ctx.target`` (this machine by default; a testinfra host reads them with bounded commands),
each call within what is left of the check's timeout.

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
from dataclasses import dataclass
from typing import Callable, ClassVar

from pydantic import Field, model_validator

from ..conditions import Condition
from ..kinds import Kind
from ..schema import CheckItem, Duration, Limit, ProcessScope, Regex
from ..redact import REDACTOR
from ..results import Observation
from ..targets import NotRegularFile, ProcessInfo, get as get_target

_ROWS = 20  # processes listed in the evidence
# a 64-hex container id as a cgroup path component: docker/<id>, docker-<id>.scope, libpod-<id>,
# libpod-payload-<id>, cri-containerd-<id>.scope, crio-<id>.scope
_CONTAINER_ID = re.compile(r"(?:^|[/-])([0-9a-f]{64})(?:\.scope)?(?=/|$)")


class ProcessCheck(ProcessScope, CheckItem):
    """Processes by name or command-line regex, or the one whose PID is in a file (and, with
    ``children``, its descendants), or the one listening on a local ``port``: count within
    bounds, RSS and CPU limits. Scopes (pid_file, port, user, exe, cwd, container,
    systemd_unit) narrow the match, so other copies of the same program on the host (another
    deployment, a test run) are neither counted nor mistaken for it."""

    kind: ClassVar[str] = "process"
    process_name: str | None = Field(None, description="exact process name")
    cmdline: Regex | None = Field(None, description="regex searched in the joined command line")
    port: int | None = Field(None, ge=1, le=65535, description="only the process(es) listening on this local port")
    min_count: int = Field(1, ge=0)
    max_count: int | None = Field(None, ge=0)
    rss_mb: Limit | None = None
    cpu_percent: Limit | None = None
    cpu_sample: Duration = 0.5

    @model_validator(mode="after")
    def _needs_a_matcher(self) -> "ProcessCheck":
        if not (self.process_name or self.cmdline or self.pid_file or self.port):
            raise ValueError("expected process_name, cmdline, pid_file or port, seen none of them")
        return self


class NotObservable(Exception):
    """A scope cannot be used at all (an unreadable pid_file): the reason."""


def pid_from_file(value: str, ctx, timeout: float = 5.0) -> int:
    """The PID a pid file holds; :class:`NotObservable` naming the file when it holds none.

    >>> import tempfile, pathlib
    >>> from opsgate.probes import ProbeContext
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "app.pid").write_text("4242\\n")
    >>> pid_from_file("app.pid", ProbeContext(d))
    4242
    """
    path = ctx.path(value) if ctx is not None else value
    try:
        text = _target(ctx).read_pid_file(str(path), timeout).strip()
    except NotRegularFile:
        raise NotObservable(f"pid_file {path}: not a regular file") from None
    except TimeoutError as exc:
        raise NotObservable(f"pid_file {path}: cannot read: {exc}") from None
    except OSError as exc:
        raise NotObservable(f"pid_file {path}: cannot read: {exc.strerror or exc}") from None
    first = text.split()[0] if text.split() else ""
    if not first.isdigit() or int(first) <= 0:
        raise NotObservable(f"pid_file {path}: expected a process id, seen {REDACTOR.excerpt(text, 40)!r}")
    return int(first)


def cgroup_lines(pid: int, target=None, timeout: float = 5.0) -> list[str]:
    """The lines of ``/proc/<pid>/cgroup`` (``hierarchy-id:controllers:path``) on ``target``
    (this machine by default); ProcessLookupError when it does not run, PermissionError when
    they cannot be read.

    >>> all(line.count(":") >= 2 for line in cgroup_lines(os.getppid()))
    True
    """
    found = (target or get_target()).processes(timeout, fields={"cgroup"}, pids=[pid])
    if not found:
        raise ProcessLookupError(f"no process {pid}")
    if found[0].cgroup is None:
        raise PermissionError(f"cannot read the cgroups of process {pid}")
    return list(found[0].cgroup)


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


def listening_pids(port: int, ctx=None, timeout: float = 5.0) -> tuple[set[int], int]:
    """PIDs with a socket listening on local ``port`` (any address) of the target, and how many
    such sockets have no readable owner (another user's, when not run as root)."""
    try:
        found = _target(ctx).listeners(port, timeout)
    except OSError as exc:  # some systems list sockets to root only; a remote side may time out
        raise NotObservable(f"cannot list the listening sockets of port {port}: {exc}") from None
    return set(found.pids), found.unknown


def _target(ctx):
    return ctx.target if ctx is not None else get_target()


def time_left(deadline: float) -> float:
    """The seconds left until ``deadline`` (``time.monotonic()``); TimeoutError when none are.

    >>> time_left(time.monotonic() + 60) > 59
    True
    """
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("no time left within the check's timeout")
    return left


@dataclass
class Scope:
    """One scope: its short label (``user=app``), what a process must be (``owned by user
    'app'``), and the test."""

    label: str
    phrase: str
    holds: Callable[[ProcessInfo], bool]
    field: str | None = None  # what the test reads of a process (a field of opsgate.targets.PROCESS_FIELDS)


def _realpath(value: str, ctx, timeout: float = 5.0) -> str:
    path = str(ctx.path(value) if ctx is not None else value)
    return _target(ctx).realpath(path, timeout)


class _LazyPath:
    """A configured path (exe, cwd), resolved on the target only when needed: a process whose
    /proc link (already a resolved path) equals it as written shows that it resolves to itself,
    so a remote host is asked to resolve it only when a process differs from it, or to name it
    in a message when no process showed it (one round trip less for a matching process).

    >>> path = _LazyPath("/", None, time.monotonic() + 5)
    >>> path.holds("/"), path.shown()
    (True, '/')
    """

    def __init__(self, value: str, ctx, deadline: float) -> None:
        self.written = str(ctx.path(value) if ctx is not None else value)
        self.ctx, self.deadline = ctx, deadline
        self.resolved: str | None = None

    def real(self) -> str:
        if self.resolved is None:
            self.resolved = _target(self.ctx).realpath(self.written, time_left(self.deadline))
        return self.resolved

    def holds(self, seen: str | None) -> bool:
        if seen is not None and seen == self.written:
            self.resolved = self.written  # a resolved path, as the kernel shows it
            return True
        return seen is not None and seen == self.real()

    def shown(self) -> str:
        return self.real()


class _PathScope(Scope):
    """An exe/cwd scope whose path is a :class:`_LazyPath` (its label and phrase name it resolved)."""

    def __init__(self, key: str, what: str, path: _LazyPath) -> None:
        self.key, self.what, self.path = key, what, path
        super().__init__("", "", lambda p: path.holds(getattr(p, key)), key)

    label = property(lambda self: f"{self.key}={self.path.shown()}", lambda self, _value: None)
    phrase = property(lambda self: f"{self.what} {self.path.shown()}", lambda self, _value: None)


def scope_fields(checks: list[Scope]) -> set[str]:
    """The process fields ``checks`` read.

    >>> sorted(scope_fields(scopes(ProcessScope(user="app", systemd_unit="app"), None)))
    ['cgroup', 'user']
    """
    return {s.field for s in checks if s.field}


def scopes(scope: ProcessScope, ctx, port: int | None = None, timeout: float = 5.0, lazy: bool = False) -> list[Scope]:
    """The scopes ``scope`` sets besides pid_file (which selects candidates), in the order
    they are applied. ``lazy``: exe and cwd are resolved on the target only when a process
    needs it (their tests and labels may then ask the target: call them where its errors are
    caught).

    >>> [s.label for s in scopes(ProcessScope(user="app", cwd="/srv"), None, port=8000)]
    ['port=8000', 'user=app', 'cwd=/srv']
    """
    out = []
    deadline = time.monotonic() + timeout
    if port is not None:
        pids, _ = listening_pids(port, ctx, time_left(deadline))
        out.append(Scope(f"port={port}", f"listening on port {port}", lambda p: p.pid in pids))
    if scope.user is not None:
        user = str(scope.user)
        if user.isdigit():
            out.append(Scope(f"user={user}", f"owned by uid {user}", lambda p: p.uid == int(user), "user"))
        else:
            out.append(Scope(f"user={user}", f"owned by user {user!r}", lambda p: p.user == user, "user"))
    # /proc/<pid>/exe and cwd are resolved paths already; the configured ones are resolved on the target
    if scope.exe is not None and lazy:
        out.append(_PathScope("exe", "running executable", _LazyPath(scope.exe, ctx, deadline)))
    elif scope.exe is not None:
        exe = _realpath(scope.exe, ctx, time_left(deadline))
        out.append(Scope(f"exe={exe}", f"running executable {exe}", lambda p: p.exe == exe, "exe"))
    if scope.cwd is not None and lazy:
        out.append(_PathScope("cwd", "with working directory", _LazyPath(scope.cwd, ctx, deadline)))
    elif scope.cwd is not None:
        cwd = _realpath(scope.cwd, ctx, time_left(deadline))
        out.append(Scope(f"cwd={cwd}", f"with working directory {cwd}", lambda p: p.cwd == cwd, "cwd"))
    if scope.container is not None:
        cid = scope.container
        out.append(Scope(f"container={cid}", f"in container {cid}",
                         lambda p: any(i.startswith(cid) for i in container_ids(p.cgroup)), "cgroup"))
    if scope.systemd_unit is not None:
        unit = scope.systemd_unit
        out.append(Scope(f"systemd_unit={unit}", f"in systemd unit {unit}",
                         lambda p: unit in systemd_units(p.cgroup), "cgroup"))
    return out


def first_failing(proc: ProcessInfo, checks: list[Scope]) -> str | None:
    """The label of the first scope ``proc`` does not meet (``unreadable`` when a scope
    cannot be read for it: it does not count), or None when it meets them all.

    >>> p = ProcessInfo(9, 1, "sleep", ("sleep",), "sleeping", 0.0, exe=None, unreadable=frozenset({"exe"}))
    >>> first_failing(p, [Scope("exe=/bin/x", "running executable /bin/x", lambda p: p.exe == "/bin/x", "exe")])
    'exe=/bin/x (unreadable)'
    """
    for s in checks:
        if s.field in proc.unreadable:
            return f"{s.label} (unreadable)"
        if not s.holds(proc):
            return s.label
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


def _pid_file_candidates(item: ProcessCheck, ctx, fields: set[str], deadline: float) -> tuple[list[ProcessInfo], str | None]:
    """The processes a pid_file scopes the check to (the file's first), and why there are none (or None)."""
    target = _target(ctx)
    pid = pid_from_file(item.pid_file, ctx, time_left(deadline))
    family = [pid, *(target.descendants(pid, time_left(deadline)) if item.children else [])]
    found = {p.pid: p for p in target.processes(time_left(deadline), fields, pids=family)}
    if pid not in found:
        return [], f"pid_file {item.pid_file} names PID {pid}, which is not running"
    return [found[p] for p in family if p in found], None


def _describe(item: ProcessCheck) -> str:
    return " ".join(filter(None, (item.process_name, item.cmdline and f"cmdline /{item.cmdline}/",
                                  item.pid_file and f"pid_file {item.pid_file}" + (" (+children)" if item.children else ""))))


def _matches(item: ProcessCheck, ctx=None, deadline: float | None = None) -> tuple[list[ProcessInfo], str | None, dict]:
    """The processes that count, why there are none (pid_file), and the scoping record."""
    deadline = deadline if deadline is not None else time.monotonic() + item.timeout
    pattern = re.compile(item.cmdline) if item.cmdline else None
    checks = scopes(item, ctx, item.port, time_left(deadline), lazy=True)
    fields = scope_fields(checks) | _ROW_FIELDS

    def named(info: ProcessInfo) -> bool:
        return ((not item.process_name or info.name == item.process_name)
                and (not pattern or bool(pattern.search(info.command_line))))

    found, candidates, excluded = [], 0, {}
    why_none = None
    if item.pid_file:
        procs, why_none = _pid_file_candidates(item, ctx, fields, deadline)
        first = procs[0] if procs else None
        if first and (not item.process_name or first.name == item.process_name) and pattern \
                and not pattern.search(first.command_line):
            why_none = f"pid_file {item.pid_file} names PID {procs[0].pid}, whose command line does not match /{item.cmdline}/"
        procs = [p for p in procs if named(p)]
    else:  # one scan; the fields only for the processes named (the target leaves out the checker itself)
        procs = _target(ctx).processes(time_left(deadline), fields, select=named)
    for proc in procs:
        candidates += 1
        failing = first_failing(proc, checks)
        if failing is None:
            found.append(proc)
        else:
            excluded[failing] = excluded.get(failing, 0) + 1
    what = _describe(item) or (f"port {item.port}" if item.port else "")
    record = {"candidates": candidates, "excluded": excluded, "scopes": [s.label for s in checks],
              "summary": scoping_summary(what, candidates, excluded, checks, len(found))}
    return found, why_none, record


_ROW_FIELDS = {"user", "exe", "cwd", "memory"}  # what the evidence shows of each process


def _row(proc: ProcessInfo, cpu: dict[int, float] | None) -> dict:
    def shown(value):
        return None if value is None else REDACTOR.excerpt(str(value), 200)  # None: another user's, without root

    return {
        "pid": proc.pid,
        "name": proc.name,
        "user": shown(proc.user),
        "exe": shown(proc.exe),
        "cwd": shown(proc.cwd),
        "cmdline": REDACTOR.excerpt(proc.command_line, 200),
        "rss_mb": round(proc.rss / 2**20, 2) if proc.rss is not None else None,
        "cpu_percent": cpu.get(proc.pid) if cpu is not None else None,
    }


def observe(item: ProcessCheck, ctx) -> Observation:
    """Find the processes, sample CPU over ``cpu_sample`` if a CPU limit is set, measure each."""
    deadline = time.monotonic() + item.timeout
    target = _target(ctx)
    try:
        procs, why_none, scoping = _matches(item, ctx, deadline)
        cpu = None
        if item.cpu_percent and procs:
            # the processes that ended while sampled no longer count
            cpu = target.cpu_percent(procs, min(item.cpu_sample, item.timeout / 2), time_left(deadline))
            procs = [p for p in procs if p.pid in cpu]
    except NotObservable as exc:
        return Observation({"count": 0}, error=str(exc))
    except OSError as exc:  # TimeoutError too: the target did not answer in time
        return Observation({"count": 0}, error=f"cannot read the processes of {target.name}: {exc}")
    rows = [_row(proc, cpu) for proc in procs]
    values = {
        "count": len(rows),
        "max_rss_mb": max((r["rss_mb"] for r in rows if r["rss_mb"] is not None), default=None),
        "max_cpu_percent": max((r["cpu_percent"] for r in rows if r["cpu_percent"] is not None), default=None),
    }
    if item.port:
        try:
            _, unknown = listening_pids(item.port, ctx, time_left(deadline))
        except (NotObservable, TimeoutError):
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


KIND = Kind(name="process", schema=ProcessCheck, observe=observe, limits=limits,
            summary="processes by name, command line, pid file or port, scoped: count, RSS and CPU limits",
            host_level=True)
