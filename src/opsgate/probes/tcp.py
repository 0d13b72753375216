"""``tcp``: a host:port accepts a connection in time; a local port is owned by the named process.

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

import psutil

from ..conditions import Condition
from ..model import TcpCheck
from ..results import Observation


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
    values: dict = {"host": item.host, "port": item.port}
    if item.connect:
        started = time.perf_counter()
        try:
            with socket.create_connection((item.host, item.port), timeout=item.timeout):
                values["connect_ms"] = round((time.perf_counter() - started) * 1000, 3)
        except OSError as exc:
            return Observation(values, error=connect_error(item.host, item.port, exc, item.timeout))
    if item.listening_process:
        owner = _listener(item.port)
        if owner is None:
            return Observation(values, error=f"no local process listens on port {item.port}")
        values.update(owner)
        pattern = re.compile(item.listening_process)
        if not (pattern.search(owner["process"]) or pattern.search(owner["cmdline"])):
            return Observation(values, error=(f"port {item.port} is owned by {owner['process']} (pid {owner['pid']}), "
                                              f"expected a process matching {item.listening_process!r}"))
    return Observation(values)


def _listener(port: int) -> dict | None:
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            info = {"pid": conn.pid, "process": "?", "cmdline": ""}
            if conn.pid:
                try:
                    proc = psutil.Process(conn.pid)
                    info.update(process=proc.name(), cmdline=" ".join(proc.cmdline()))
                except psutil.Error:
                    pass
            return info
    return None


def limits(item: TcpCheck) -> list[Condition]:
    out = []
    if item.max_connect_ms is not None and item.connect:
        out.append(Condition.compare("connect_ms", "<=", item.max_connect_ms))
    return out
