"""What every backup source shares: a recovery point, a level's outcome, a scratch place
whose cleanups always run, and a bounded subprocess runner.

The contract with the source modules: a source exports ``Options`` (its settings, a strict
pydantic model), ``integrity(point, options, scratch)`` (L2), ``restore(...)`` (L3, returning
the outcome and what was restored: a database, a server, a folder), ``compare(restored,
options, scratch)`` (L4, against live) and ``take(options, destination, scratch)`` (a fresh
backup); everything it creates in scratch (a directory, a database, a process) registers its
removal with :meth:`Scratch.on_cleanup` before it is created.

Cleanups run on every way out: the ``with`` block's end (success, failure, exception,
timeout); SIGTERM and SIGINT (handlers installed from the main thread close every live
scratch, then the process dies of SIGTERM, or gets its KeyboardInterrupt, as it would have);
and interpreter exit (an ``atexit`` hook closes what a probe thread still holds, since probe
threads are daemons that are frozen at exit). A scratch left by a
process killed with SIGKILL is removed by the next scratch made: its directory name
carries the owner's pid.

>>> with Scratch(timeout=10) as scratch:
...     place = scratch.dir
...     run_bounded(["echo", "hi"], scratch).stdout
'hi\\n'
>>> place.exists()
False
"""

from __future__ import annotations

import atexit
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..redact import REDACTOR, is_secret_variable

PREFIX = "opsgate-scratch-"
KILL_GRACE_S = 2.0  # SIGTERM to SIGKILL, for a process group at a deadline or a cleanup
CLOSE_WAIT_S = 30.0  # how long a second close waits for the first one's cleanups


@dataclass(frozen=True)
class RecoveryPoint:
    """One backup that can be restored: a file/dir path, or a restic snapshot id.

    >>> RecoveryPoint("app-2026-11-29.tar.gz", 1795910400.0, 1024).size
    1024
    """

    id: str  # a file/dir path, or a restic snapshot id
    taken_at: float  # epoch seconds the backup represents (name pattern or mtime)
    size: int  # bytes (-1 when unknown)
    path: Path | None = None


@dataclass
class Outcome:
    """What one verification level found.

    >>> Outcome(2, True, "read 10 of 10 bytes", bytes=10).ok
    True
    """

    level: int  # the level this outcome is about: 2, 3 or 4
    ok: bool
    message: str  # the cause on failure; what was checked on success
    items: int = 0  # items verified (files, tables, rows, keys)
    items_total: int | None = None
    unit: str = "items"
    bytes: int = 0  # bytes read / verified
    duration_s: float = 0.0
    details: dict = field(default_factory=dict)  # evidence, JSON-ready, no secrets


class Scratch:
    """One verification's scratch place: a private directory (mode 0700, under
    $OPSGATE_SCRATCH_DIR or the system temp dir, name prefix 'opsgate-scratch-'), a monotonic
    deadline, and cleanups that ALWAYS run (LIFO) on close - after success, failure, timeout,
    exception, SIGINT or SIGTERM. Usable as a context manager.

    >>> s = Scratch(timeout=5, label="doc")
    >>> s.dir.name.startswith("opsgate-scratch-"), oct(s.dir.stat().st_mode & 0o777)
    (True, '0o700')
    >>> s.on_cleanup(lambda: None, "nothing")
    >>> s.close(), s.dir.exists()
    ([], False)
    """

    def __init__(self, timeout: float, label: str = "", parent: Path | str | None = None) -> None:
        _install_signal_handlers()
        base = Path(parent or os.environ.get("OPSGATE_SCRATCH_DIR") or tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        sweep_orphans(base)
        tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", label)[:40].strip("-")
        name = f"{PREFIX}{os.getpid()}-{tag + '-' if tag else ''}"
        self.dir = Path(tempfile.mkdtemp(prefix=name, dir=base))  # mkdtemp: mode 0700
        self.deadline = time.monotonic() + max(0.0, float(timeout))
        self.timeout = float(timeout)
        self._lock = threading.RLock()
        self._cleanups: list[tuple[Callable[[], None], str]] = []
        self._processes: set[subprocess.Popen] = set()
        self.closed = False
        self._owner = threading.get_ident()
        self._closer: int | None = None
        self._done = threading.Event()  # set when a close has run every cleanup
        self.on_cleanup(lambda: _remove_tree(self.dir), f"remove {self.dir}")
        _LIVE.add(self)

    def remaining(self) -> float:
        """Seconds left before the deadline; raises TimeoutError when none (or when closed:
        an interrupted verification stops at its next step)."""
        if self.closed:
            raise TimeoutError("verification interrupted: its scratch place was cleaned up")
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"verification took longer than its timeout ({self.timeout:g}s)")
        return left

    def on_cleanup(self, fn: Callable[[], None], what: str) -> None:
        """Register ``fn`` to run at close (last registered runs first)."""
        with self._lock:
            if self.closed:  # too late: run it now so nothing created after close survives
                _run_cleanup(fn, what)
                return
            self._cleanups.append((fn, what))

    def close(self) -> list[str]:
        """Stop the processes still running, run the cleanups (LIFO); return the problems
        (never raises). Safe to call twice and from another thread: a second call returns
        once the first one is done."""
        with self._lock:
            if self.closed:
                # another thread is closing: wait until it is done (a SIGTERM handler must not
                # let the process die with the removal half done), unless that thread is this one
                if self._closer != threading.get_ident():
                    self._done.wait(timeout=CLOSE_WAIT_S)
                return []
            self.closed = True
            self._closer = threading.get_ident()
            processes, self._processes = list(self._processes), set()
            cleanups, self._cleanups = self._cleanups[::-1], []
        problems = [p for p in (_stop_group(proc) for proc in processes) if p]
        for fn, what in cleanups:
            problem = _run_cleanup(fn, what)
            if problem:
                problems.append(problem)
        if threading.get_ident() != self._owner:
            # closed under a thread still working in it (a signal, exit): that thread stops at its
            # next step, but one write in flight could recreate the folder - remove it again
            for _ in range(10):
                time.sleep(0.1)
                if os.path.lexists(self.dir):
                    problem = _run_cleanup(lambda: _remove_tree(self.dir), f"remove {self.dir}")
        _LIVE.discard(self)
        self._done.set()
        return problems

    def track(self, proc: subprocess.Popen) -> None:
        """Remember a running process group so close() ends it."""
        with self._lock:
            if self.closed:
                _stop_group(proc)
                raise TimeoutError("verification interrupted: its scratch place was cleaned up")
            self._processes.add(proc)

    def untrack(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._processes.discard(proc)

    def __enter__(self) -> "Scratch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def run_bounded(argv: list[str], scratch: Scratch, *, env: dict[str, str] | None = None,
                cwd: Path | None = None, stdin: int | None = None,
                max_output: int = 64 * 1024) -> subprocess.CompletedProcess:
    """Run argv (never through a shell) in its own process group, bounded by the scratch's
    deadline (SIGTERM then SIGKILL to the group), keeping at most max_output bytes of stdout
    and stderr each (the tail); raises TimeoutError naming argv[0] at the deadline. Secrets
    (passwords in env or DSNs) never appear in what it returns or raises (REDACTOR).

    ``env`` entries are added to the inherited environment; stdout/stderr are returned as
    text (UTF-8, undecodable bytes replaced).

    >>> with Scratch(timeout=10) as s:
    ...     done = run_bounded(["sh", "-c", "echo out; echo err >&2; exit 3"], s)
    >>> done.returncode, done.stdout, done.stderr
    (3, 'out\\n', 'err\\n')
    >>> with Scratch(timeout=0.5) as s:
    ...     run_bounded(["sleep", "30"], s)
    Traceback (most recent call last):
    TimeoutError: sleep did not finish within the verification's timeout (0.5s); its process group was ended
    """
    program = Path(argv[0]).name
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if is_secret_variable(key):
            REDACTOR.add(value)
        full_env[key] = value
    scratch.remaining()  # no time left: do not start
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL if stdin is None else stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                env=full_env, start_new_session=True)
    except OSError as exc:
        raise FileNotFoundError(f"cannot run {program}: {exc.strerror or exc}") from None
    scratch.track(proc)
    tails = [_Tail(max_output), _Tail(max_output)]
    readers = [threading.Thread(target=tail.drain, args=(pipe,), daemon=True)
               for tail, pipe in zip(tails, (proc.stdout, proc.stderr))]
    for reader in readers:
        reader.start()
    try:
        try:
            _wait(proc, max(0.0, scratch.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            raise TimeoutError(f"{program} did not finish within the verification's timeout "
                               f"({scratch.timeout:g}s); its process group was ended") from None
        if scratch.closed:
            raise TimeoutError(f"{program} was interrupted: its scratch place was cleaned up")
        _end_leftovers(proc)  # a daemon it left holding our pipes must not outlive it
        for reader in readers:
            reader.join(timeout=5)
    finally:
        scratch.untrack(proc)
    out, err = (REDACTOR.text(t.text()) for t in tails)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _wait(proc: subprocess.Popen, timeout: float) -> int:
    """Popen.wait(timeout) without its polling: it sleeps up to 50 ms between looks, which a
    verification of many short commands (and a benchmark against the bare tool) pays each
    time. A pidfd wakes the moment the process exits (Linux >= 5.3); elsewhere, poll."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return proc.wait(timeout=timeout)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    return proc.wait(timeout=5)


def describe_failure(done: subprocess.CompletedProcess, limit: int = 300) -> str:
    """The telling part of a failed command's output, redacted and short.

    >>> describe_failure(subprocess.CompletedProcess(["x"], 1, "", "Fatal: repository is damaged\\n"))
    'x exited 1: Fatal: repository is damaged'
    """
    text = (done.stderr or "").strip() or (done.stdout or "").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    tail = " | ".join(lines[-3:])
    if len(tail) > limit:
        tail = "..." + tail[-limit:]
    program = Path(str(done.args[0])).name if done.args else "command"
    return REDACTOR.text(f"{program} exited {done.returncode}" + (f": {tail}" if tail else ""))


def sweep_orphans(base: Path) -> list[Path]:
    """Remove scratch directories in ``base`` whose owner process is gone (killed with
    SIGKILL, where no cleanup can run). Returns what was removed."""
    removed = []
    try:
        entries = list(base.glob(PREFIX + "*"))
    except OSError:
        return removed
    for entry in entries:
        match = re.match(re.escape(PREFIX) + r"(\d+)-", entry.name)
        if not match or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == os.getuid():
                _remove_tree(entry)
                removed.append(entry)
        except OSError:
            pass
    return removed


class _Tail:
    """The last ``limit`` bytes of a stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def drain(self, pipe) -> None:
        try:
            for chunk in iter(lambda: pipe.read1(65536), b""):
                self.data += chunk
                if len(self.data) > self.limit:
                    cut = len(self.data) - self.limit
                    self.dropped += cut
                    del self.data[:cut]
        except (OSError, ValueError):
            pass
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def text(self) -> str:
        text = self.data.decode("utf-8", errors="replace")
        return f"[{self.dropped} bytes left out]\n{text}" if self.dropped else text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(proc: subprocess.Popen) -> str:
    """SIGTERM the process group, SIGKILL it after a grace; a problem text or ''."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                return f"process {proc.pid} did not end after SIGKILL"
    _signal_group(proc.pid, signal.SIGKILL)  # what it left behind in its group
    return ""


def _end_leftovers(proc: subprocess.Popen) -> None:
    _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _remove_tree(path: Path) -> None:
    # a restored tree may hold read-only directories: make them writable to delete them
    def retry(func, name, _exc):
        try:
            os.chmod(os.path.dirname(name), 0o700)
            os.chmod(name, 0o700)
            func(name)
        except FileNotFoundError:
            pass

    for _ in range(3):  # a probe thread may still write while an interrupt cleans up
        if not os.path.lexists(path):
            return
        shutil.rmtree(path, onerror=retry)
    if os.path.lexists(path):
        raise OSError(f"could not remove {path}")


def _run_cleanup(fn: Callable[[], None], what: str) -> str:
    try:
        fn()
    except BaseException as exc:  # a cleanup must not stop the next one
        return REDACTOR.text(f"cleanup '{what}' failed: {type(exc).__name__}: {exc}")
    return ""


# every open scratch, for the signal and exit hooks (weak: a dropped one is not kept alive)
_LIVE: "weakref.WeakSet[Scratch]" = weakref.WeakSet()
_INSTALLED = False
_AT_EXIT = False
_INSTALL_LOCK = threading.Lock()


def close_all() -> list[str]:
    """End the process groups probes started (:mod:`opsgate.children`), then close every
    scratch still open in this process (signal and exit hooks)."""
    from .. import children

    children.end_all()
    problems = []
    for scratch in list(_LIVE):
        problems += scratch.close()
    return problems


def _on_signal(signum: int, frame: Any) -> None:
    """SIGTERM or SIGINT: clean up every scratch place now, then do what was done before
    (pytest's KeyboardInterrupt for SIGINT; dying of the signal for SIGTERM)."""
    close_all()
    previous = _PREVIOUS.get(signum)
    if callable(previous):
        previous(signum, frame)
        return
    # die of the signal as the default would have, now that nothing is left behind
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


_PREVIOUS: dict[int, Any] = {}


def _install_signal_handlers() -> None:
    """Hook SIGTERM and SIGINT (from the main thread only, where Python allows it) and
    interpreter exit. Idempotent."""
    global _INSTALLED, _AT_EXIT
    with _INSTALL_LOCK:
        if not _AT_EXIT:
            atexit.register(close_all)
            _AT_EXIT = True
        if _INSTALLED or threading.current_thread() is not threading.main_thread():
            return  # off the main thread: retried by the next scratch made on it
        for signum in (signal.SIGTERM, signal.SIGINT):
            current = signal.getsignal(signum)
            if current in (signal.SIG_IGN, None) or current is _on_signal:
                continue
            _PREVIOUS[signum] = current
            signal.signal(signum, _on_signal)
        _INSTALLED = True


def install_signal_handlers() -> None:
    """Public hook for the kind's import (made on the main thread at collection), so that a
    SIGTERM or SIGINT arriving while a probe thread restores still cleans up."""
    _install_signal_handlers()
