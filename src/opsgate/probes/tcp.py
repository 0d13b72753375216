"""``tcp``: a host:port accepts a connection in time; a local port is owned by the right process.

``listening_process`` matches the owner's name or command line; ``listening`` scopes it the
way a ``process`` check is scoped (pid_file with children, user, exe, cwd, container,
systemd_unit; see :mod:`opsgate.probes.process`), so "port 8000 is owned by THIS server" is
checked without guessing by name. Every process listening on the port must match: a second
owner (a leftover sharing the port) fails the check. Sockets and their owners are read through
``ctx.target`` (this machine by default), within what is left of the check's timeout.

>>> from opsgate.model import TcpCheck
>>> from opsgate.probes import ProbeContext
>>> observe(TcpCheck(name="closed", port=1, timeout=1), ProbeContext()).error
'127.0.0.1:1: connection refused'
"""

from __future__ import annotations

import errno
import re
import socket
import time
from typing import ClassVar

from pydantic import Field

from . import process
from ..conditions import Condition
from ..kinds import Kind
from ..redact import REDACTOR
from ..results import Observation
from ..schema import CheckItem, ProcessScope, Regex
from .process import listening_pids


class TcpCheck(CheckItem):
    """A host:port accepts a connection; optionally the local port is owned by the right process:
    ``listening_process`` (regex on its name or command line) and/or ``listening`` (scopes:
    pid_file, user, exe, cwd, container, systemd_unit). Every process listening on the port
    must match."""

    kind: ClassVar[str] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    connect: bool = True
    max_connect_ms: float | None = None
    listening_process: Regex | None = Field(None, description="regex on the owning process's name or command line")
    listening: ProcessScope | None = Field(None, description="the owning process's scopes (pid_file, user, exe, "
                                                             "cwd, container, systemd_unit)")


def connect_error(host: str, port: int, exc: OSError, timeout: float) -> str:
    """Name the cause of a failed connection the way an operator would say it."""
    where = f"{host}:{port}"
    if isinstance(exc, socket.timeout) or isinstance(exc, TimeoutError):
        return f"{where}: no connection within {timeout:g}s (timed out)"
    if isinstance(exc, socket.gaierror):
        return f"{where}: cannot resolve host {host!r} ({exc.strerror})"
    if exc.errno == errno.ECONNREFUSED:
        return f"{where}: connection refused"
    return f"{where}: cannot connect: {exc.strerror or exc}"


def observe(item: TcpCheck, ctx) -> Observation:
    """Connect (when ``connect``), then hold every owner of the local port to
    ``listening_process`` and ``listening``."""
    values: dict = {"host": item.host, "port": item.port}
    if item.connect:
        started = time.perf_counter()
        try:
            with socket.create_connection((item.host, item.port), timeout=item.timeout):
                values["connect_ms"] = round((time.perf_counter() - started) * 1000, 3)
        except OSError as exc:
            return Observation(values, error=connect_error(item.host, item.port, exc, item.timeout))
    if item.listening_process or item.listening:
        return _owners(item, values, ctx, time.monotonic() + item.timeout)
    return Observation(values)


def _owners(item: TcpCheck, values: dict, ctx, deadline: float) -> Observation:
    infos = None
    try:
        if item.listening is None:  # the owners' fields are known now: a remote target reads them along
            found = ctx.target.listeners(item.port, item.timeout, fields=_OWNER_FIELDS)
            pids, unknown, infos = set(found.pids), found.unknown, found.owners
        else:
            pids, unknown = listening_pids(item.port, ctx, item.timeout)
    except OSError as exc:  # as listening_pids says it
        return Observation(values, error=f"cannot list the listening sockets of port {item.port}: {exc}")
    except process.NotObservable as exc:
        return Observation(values, error=str(exc))
    if not pids and not unknown:
        return Observation(values, error=f"no local process listens on port {item.port}")
    if unknown:
        return Observation(values, error=(f"port {item.port} has {unknown} listening socket(s) whose owner cannot be "
                                          "read (another user's process; run the check as root or as that user)"))
    try:
        checks = _scope_checks(item, ctx, deadline)
        fields = process.scope_fields(checks) | _OWNER_FIELDS
        if infos is None:
            infos = {p.pid: p for p in ctx.target.processes(process.time_left(deadline), fields, pids=pids)}
    except process.NotObservable as exc:
        return Observation(values, error=str(exc))
    except OSError as exc:  # TimeoutError too: the target did not answer in time
        return Observation(values, error=f"port {item.port}: cannot read its owner on {ctx.target.name}: {exc}")
    owners = [_owner(pid, infos.get(pid)) for pid in sorted(pids)]
    values.update({k: owners[0][k] for k in ("pid", "process", "cmdline")})
    details = {"owners": owners}
    pattern = re.compile(item.listening_process) if item.listening_process else None
    for owner in owners:
        who = f"port {item.port} is owned by {owner['process']} (pid {owner['pid']}, user {owner['user']})"
        proc = infos.get(owner["pid"])
        # the whole command line, for matching (the evidence keeps a redacted excerpt)
        if pattern and not (pattern.search(owner["process"]) or (proc and pattern.search(proc.command_line))):
            return Observation(values, details=details, error=(
                f"port {item.port} is owned by {owner['process']} (pid {owner['pid']}), "
                f"expected a process matching {item.listening_process!r}"))
        if proc is None:
            return Observation(values, details=details, error=f"{who}, which ended while it was checked")
        failing = process.first_failing(proc, checks)
        if failing is not None:
            scope = next((c for c in checks if failing.startswith(c.label)), None)
            expected = scope.phrase if scope else failing
            if failing.endswith("(unreadable)"):
                expected += ", which cannot be read for it"
            return Observation(values, details=details, error=f"{who}, expected a process {expected}")
    return Observation(values, details=details)


_OWNER_FIELDS = frozenset({"user", "exe", "cwd"})  # what the evidence shows of an owner


def _scope_checks(item: TcpCheck, ctx, deadline: float) -> list:
    """The ``listening`` scopes as tests on the owner; pid_file becomes "is that PID (or,
    with children, one of its descendants)"."""
    scope = item.listening
    if scope is None:
        return []
    left = process.time_left
    checks = process.scopes(scope, ctx, timeout=left(deadline))
    if scope.pid_file:
        pid = process.pid_from_file(scope.pid_file, ctx, left(deadline))
        allowed = {pid}
        if scope.children:  # not running: none, and only the file's PID is allowed (it does not listen)
            allowed |= set(ctx.target.descendants(pid, left(deadline)))
        state = "" if ctx.target.processes(left(deadline), pids=[pid]) else ", which is not running"
        what = f"pid_file {scope.pid_file} (PID {pid}{' and its descendants' if scope.children else ''}{state})"
        checks.insert(0, process.Scope(f"pid_file={scope.pid_file}", f"named by {what}", lambda p: p.pid in allowed))
    return checks


def _owner(pid: int, proc) -> dict:
    """The evidence of one owner (``proc``: its ``ProcessInfo``, None when it ended); what could
    not be read stays ``?``/None, and the scopes say so."""
    info = {"pid": pid, "process": "?", "user": "?", "exe": None, "cwd": None, "cmdline": ""}
    if proc is not None:
        info.update(process=proc.name, cmdline=REDACTOR.excerpt(proc.command_line, 200))
        info["user"] = proc.user if proc.user is not None else "?"
        info["exe"] = REDACTOR.excerpt(proc.exe, 200) if proc.exe is not None else None
        info["cwd"] = REDACTOR.excerpt(proc.cwd, 200) if proc.cwd is not None else None
    return info


def limits(item: TcpCheck) -> list[Condition]:
    out = []
    if item.max_connect_ms is not None and item.connect:
        out.append(Condition.compare("connect_ms", "<=", item.max_connect_ms))
    return out


KIND = Kind(name="tcp", schema=TcpCheck, observe=observe, limits=limits,
            summary="a host:port accepts a connection in time; a local port is owned by the right process",
            host_level=True)
