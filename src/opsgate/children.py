"""The process groups opsgate's probes start, ended if the run itself is stopped.

A command probe runs its command in its own session and ends the group at its deadline.
But when the run is stopped first (SIGTERM from a scheduler, Ctrl-C, the interpreter
exiting while a probe thread still waits), nothing would end those groups: a drill's
``verify`` step or a long daily command would outlive the run. Probes register the groups
they start here; :func:`end_all` (called by the SIGTERM and exit hooks of
:mod:`opsgate.backups.base`) ends what is still running.

>>> import subprocess
>>> proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
>>> track(proc)
>>> end_all()
1
>>> proc.wait(timeout=5) != 0
True
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

GRACE_S = 2.0  # SIGTERM to SIGKILL

_LOCK = threading.Lock()
_RUNNING: set[subprocess.Popen] = set()


def track(proc: subprocess.Popen) -> None:
    """Remember ``proc``'s process group (it was started with ``start_new_session=True``)."""
    with _LOCK:
        _RUNNING.add(proc)


def untrack(proc: subprocess.Popen) -> None:
    with _LOCK:
        _RUNNING.discard(proc)


def end_all() -> int:
    """SIGTERM every tracked group, SIGKILL what is left after a grace; how many were running."""
    with _LOCK:
        running = [p for p in _RUNNING if p.poll() is None]
        _RUNNING.clear()
    for proc in running:
        _signal(proc.pid, signal.SIGTERM)
    until = time.monotonic() + GRACE_S
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, until - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal(proc.pid, signal.SIGKILL)  # the rest of its group, or itself if it ignored SIGTERM
    return len(running)


def _signal(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
