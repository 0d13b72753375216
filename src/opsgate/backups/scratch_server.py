"""Servers started from a copy of a backup (a scratch PostgreSQL or redis-server): a free
loopback port, a process group of their own whose stop is registered with the scratch
BEFORE the process starts, and the tail of their log for a failure message.

>>> from opsgate.backups.base import Scratch
>>> with Scratch(timeout=10) as scratch:
...     proc = start_server(["sleep", "30"], scratch, what="sleep")
...     alive = proc.poll() is None
>>> alive, proc.poll() is not None
(True, True)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from ..redact import REDACTOR
from .base import Scratch


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now.

    >>> 0 < free_port() < 65536
    True
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(argv: list[str], scratch: Scratch, *, what: str, output: Path | None = None,
                 stop_signal: int = signal.SIGTERM, grace: float = 5.0, owner: Any = None) -> subprocess.Popen:
    """Start ``argv`` in its own process group (as ``owner``, a pwd entry, when given), its
    stdout/stderr appended to ``output``; at cleanup the group gets ``stop_signal``, then
    SIGKILL after ``grace`` seconds."""
    holder: dict[str, subprocess.Popen] = {}

    def stop() -> None:
        proc = holder.get("proc")
        if proc is None or proc.poll() is not None:
            return
        _signal_group(proc.pid, stop_signal)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(5)

    scratch.on_cleanup(stop, f"stop {what}")
    scratch.remaining()
    kwargs: dict[str, Any] = {}
    if owner is not None:
        kwargs = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    sink = open(output, "ab") if output else None
    try:
        holder["proc"] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink or subprocess.DEVNULL,
                                          stderr=subprocess.STDOUT if sink else subprocess.DEVNULL,
                                          start_new_session=True, cwd=str(scratch.dir), **kwargs)
    finally:
        if sink:
            sink.close()
    return holder["proc"]


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def log_tail(log: Path, lines: int = 4, limit: int = 400) -> str:
    """The last non-empty lines of a server's log, joined and redacted."""
    try:
        found = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no server log"
    return REDACTOR.text(" | ".join(found[-lines:])[-limit:])


def landing(destination: Path, name: str, scratch: Scratch) -> tuple[Path, Path]:
    """(final, partial) paths for a backup taken into ``destination``: written to the
    partial one (removed at cleanup if still there) and renamed when whole, so a failed
    backup never looks like one; an existing backup of that name is never overwritten.

    >>> import tempfile
    >>> with Scratch(timeout=5) as s:
    ...     final, partial = landing(Path(tempfile.mkdtemp()), "x.dump", s)
    >>> final.name, partial.name
    ('x.dump', '.x.dump.partial')
    """
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"a backup's name is a file name, not a path: {name!r}")
    destination.mkdir(parents=True, exist_ok=True)
    final, partial = destination / name, destination / f".{name}.partial"
    if final.exists():
        raise FileExistsError(f"{final} exists already; a backup is never overwritten")
    scratch.on_cleanup(lambda: partial.unlink(missing_ok=True), f"remove {partial}")
    return final, partial
