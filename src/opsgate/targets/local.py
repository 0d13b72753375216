"""The local target: this machine, read with the OS directly.

Files through ``os.stat`` and ``open`` (the log probe seeks and reads blocks itself),
resources, processes and listening sockets through psutil (one process scan per call;
the extra fields only for the processes kept), commands through ``subprocess`` in their own session, their
output streamed to the caller's sinks as it arrives:

- it exits within its timeout: its exit code is the result. If a background process it
  started still holds stdout or stderr open ``DRAIN_S`` after it exited, reading stops
  there and the group is ended ("held").
- it does not: the whole group gets SIGTERM, then SIGKILL ``TERM_GRACE_S`` later.

Local system calls are not interruptible: a ``stat`` on a hung network filesystem
waits for the kernel; the timeouts bound what opsgate itself waits on.

>>> from opsgate.targets import Command
>>> class Keep:
...     data = b""
...     def feed(self, data): self.data += data
>>> out, err = Keep(), Keep()
>>> LOCAL.run(Command(shell="echo hi"), out, err, timeout=5), out.data
(Ran(ending='exited', exit_code=0, note=None), b'hi\\n')
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import glob as globbing
import os
import selectors
import signal
import stat as statmod
import subprocess
import time
from typing import Callable, Collection

from .. import children
from ..lazy import lazy

from . import (Command, DiskUsage, FileStat, Listeners, NotRegularFile, ProcessInfo, Ran, Resources, Sink,
               Target)

DRAIN_S = 0.3  # after the command exits, how long a background process may keep the pipes open
TERM_GRACE_S = 0.5  # between SIGTERM and SIGKILL of the group
_READ = 1 << 18
_MAX_PID_FILE = 4096  # a pid file holds one number; read no more than this
_MAX_CGROUP = 64 * 1024  # /proc/<pid>/cgroup: a few lines
_BASIC = ["pid", "name", "cmdline", "status", "create_time"]  # one read of /proc/<pid>/stat, and cmdline

# imported on first use: a run of http or tcp checks reads no process (psutil costs ~10 ms to import)
psutil = lazy("psutil")


def _gone(status: str) -> bool:
    return status in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def _file_stat(path: str, st: os.stat_result) -> FileStat:
    return FileStat(path, st.st_size, st.st_mtime, st.st_mode, statmod.S_ISREG(st.st_mode))


class LocalTarget(Target):
    """This machine."""

    name = "local"

    def stat(self, path: str, timeout: float, read_ahead: int = 0) -> FileStat:
        return _file_stat(str(path), os.stat(path))  # no read-ahead: a read here costs no round trip

    def glob(self, pattern: str, timeout: float, read_ahead: int = 0) -> list[FileStat]:
        found = []
        for path in globbing.glob(pattern):
            try:
                found.append(_file_stat(path, os.stat(path)))
            except OSError:  # gone meanwhile, or a broken link: not an existing path
                continue
        return found

    def read_range(self, path: str, offset: int, length: int, timeout: float) -> bytes:
        with _open_regular(path) as handle:
            handle.seek(offset)
            return handle.read(length)

    def open(self, path: str, deadline: float, known: FileStat | None = None):
        return _open_regular(path)  # the log probe checks its deadline before every block

    def resources(self, cpu_sample: float, timeout: float, disks: Collection[str] = ()) -> Resources:
        return Resources(
            cpu_percent=psutil.cpu_percent(interval=min(cpu_sample, timeout / 2)),
            memory_percent=psutil.virtual_memory().percent,
            load_per_core=round(os.getloadavg()[0] / (psutil.cpu_count() or 1), 3),
        )

    def disk(self, path: str, timeout: float) -> DiskUsage:
        usage = psutil.disk_usage(str(path))
        vfs = os.statvfs(path)
        inodes_used = (vfs.f_files - vfs.f_ffree) / vfs.f_files * 100 if vfs.f_files else 0.0
        return DiskUsage(usage.percent, round(usage.free / 2**30, 2), round(inodes_used, 2))

    # --- processes and sockets ----------------------------------------------------------------

    def processes(self, timeout: float, fields: Collection[str] = (), pids: Collection[int] | None = None,
                  select: Callable[[ProcessInfo], bool] | None = None) -> list[ProcessInfo]:
        if pids is None:
            listed, own = psutil.process_iter(_BASIC), os.getpid()
        else:
            listed, own = _existing(pids), None
        found = []
        for proc in listed:
            try:
                info = proc.info if hasattr(proc, "info") else proc.as_dict(_BASIC)
            except psutil.Error:
                continue
            if info["pid"] == own or _gone(info["status"]) or info["create_time"] is None:
                continue  # the checker's own command line names what it looks for
            basic = ProcessInfo(info["pid"], None, info["name"] or "", tuple(info["cmdline"] or ()),
                                info["status"], info["create_time"])
            if select is not None and not select(basic):
                continue
            full = _with_fields(proc, basic, fields) if fields else basic
            if full is not None:
                found.append(full)
        return found

    def list_dir(self, path: str, limit: int, timeout: float, recursive: bool = False) -> tuple[list[FileStat], int, bool]:
        deadline = time.monotonic() + timeout
        if not os.path.isdir(path):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        files, read, todo = [], 0, [path]
        while todo:
            with os.scandir(todo.pop()) as entries:
                for entry in entries:
                    if read >= limit:
                        return files, read, True
                    read += 1
                    if read % 1000 == 0 and time.monotonic() > deadline:
                        raise TimeoutError(f"listing {path} took longer than {timeout:g}s ({read} entries read)")
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # removed meanwhile
                        continue
                    if statmod.S_ISREG(st.st_mode):
                        files.append(_file_stat(entry.path, st))
                    elif recursive and statmod.S_ISDIR(st.st_mode):
                        todo.append(entry.path)
        return files, read, False

    def realpath(self, path: str, timeout: float) -> str:
        return os.path.realpath(path)

    def descendants(self, pid: int, timeout: float) -> list[int]:
        try:
            return [child.pid for child in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_percent(self, procs: Collection[ProcessInfo], interval: float, timeout: float) -> dict[int, float]:
        primed = []
        for info in procs:
            try:
                proc = psutil.Process(info.pid)
                if proc.create_time() == info.create_time:
                    proc.cpu_percent(None)  # the first call primes the counter
                    primed.append(proc)
            except psutil.Error:
                continue
        time.sleep(max(0.0, min(interval, timeout)))
        sampled = {}
        for proc in primed:
            try:
                if not _gone(proc.status()):
                    sampled[proc.pid] = proc.cpu_percent(None)
            except psutil.Error:
                continue  # it ended while we looked: it no longer counts
        return sampled

    def read_pid_file(self, path: str, timeout: float) -> str:
        # O_NONBLOCK and a regular-file check: a FIFO or a device here must not hang the probe
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not statmod.S_ISREG(os.fstat(fd).st_mode):
                raise NotRegularFile(0, "not a regular file", str(path))
            return os.read(fd, _MAX_PID_FILE).decode("ascii", "replace")
        finally:
            os.close(fd)

    def listeners(self, port: int, timeout: float, fields: Collection[str] | None = None) -> Listeners:
        pids, unknown = set(), 0
        try:
            conns = psutil.net_connections(kind="tcp")
        except psutil.Error as exc:  # some systems list sockets to root only
            raise PermissionError(errno.EACCES, str(exc) or "access denied") from None
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid:
                    pids.add(conn.pid)
                else:
                    unknown += 1
        return Listeners(frozenset(pids), unknown)

    # --- commands ------------------------------------------------------------------------------

    def run(self, command: Command, out: Sink, err: Sink, timeout: float) -> Ran:
        env = dict(os.environ)
        env.update(command.env or {})
        proc = subprocess.Popen(
            command.argv if command.argv else command.shell,
            shell=not command.argv, cwd=command.cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        children.track(proc)  # ended by the run's SIGTERM/exit hooks if the run stops first
        streams = ((proc.stdout.fileno(), out), (proc.stderr.fileno(), err))
        ending = "timeout"
        try:
            ending = _read(proc, streams, timeout)
        finally:  # whatever happened while reading, nothing of the command outlives the probe by accident
            if ending != "exited":
                _end_group(proc)
                _drain(streams)
            proc.stdout.close()
            proc.stderr.close()
            children.untrack(proc)
        note = (f"a background process kept the output open after the command exited; output was read for "
                f"{DRAIN_S:g}s more, then its process group was ended") if ending == "held" else None
        return Ran(ending, None if ending == "timeout" else proc.returncode, note)


LOCAL = LocalTarget()


def _open_regular(path: str):
    """``path`` opened for reading if it is a regular file. Opening a FIFO for reading waits for
    a writer (forever, in a thread no timeout can stop) and a device may never end: anything
    but a regular file is refused at once, without blocking.

    >>> import os, tempfile
    >>> fifo = os.path.join(tempfile.mkdtemp(), "fifo"); os.mkfifo(fifo)
    >>> _open_regular(fifo)
    Traceback (most recent call last):
    opsgate.targets.NotRegularFile: [Errno 22] not a regular file (a FIFO, a device or a directory): '...fifo'
    >>> os.remove(fifo)
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not statmod.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file (a FIFO, a device or a directory)", str(path))
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return handle


def _existing(pids: Collection[int]):
    """psutil processes of ``pids`` that exist (each read once: sorted, duplicates dropped)."""
    for pid in sorted(set(pids)):
        try:
            yield psutil.Process(pid)
        except psutil.Error:
            continue


def _with_fields(proc: psutil.Process, basic: ProcessInfo, fields: Collection[str]) -> ProcessInfo | None:
    """``basic`` with ``fields`` read (None when the process ended meanwhile); what cannot be
    read (another user's process) stays None and is named in ``unreadable``."""
    values: dict = {}
    unreadable = set()
    readers = {
        "ppid": lambda: {"ppid": proc.ppid()},
        "user": lambda: {"uid": proc.uids().real, "user": proc.username()},
        "exe": lambda: {"exe": proc.exe()},
        "cwd": lambda: {"cwd": proc.cwd()},
        "memory": lambda: {"rss": proc.memory_info().rss},
        "cpu": lambda: {"cpu_time": sum(proc.cpu_times()[:2])},
        "cgroup": lambda: {"cgroup": _cgroup_lines(proc.pid)},
    }
    try:
        with proc.oneshot():
            for name in fields:
                try:
                    values.update(readers[name]())
                except psutil.NoSuchProcess:
                    return None
                except (psutil.AccessDenied, PermissionError):
                    unreadable.add(name)
                except FileNotFoundError:
                    return None  # /proc/<pid> is gone
                except OSError:
                    unreadable.add(name)
    except psutil.NoSuchProcess:
        return None
    return dataclasses.replace(basic, unreadable=frozenset(unreadable), **values)


def _cgroup_lines(pid: int) -> tuple[str, ...]:
    with open(f"/proc/{pid}/cgroup", "rb") as f:
        return tuple(f.read(_MAX_CGROUP).decode("utf-8", "replace").splitlines())


def _read(proc: subprocess.Popen, streams, timeout: float) -> str:
    """Read every pipe as output arrives until the command has exited and closed them
    ("exited"), the timeout passed ("timeout"), or it exited but something else kept a pipe
    open for ``DRAIN_S`` more ("held")."""
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    pidfd = _pidfd(proc.pid)  # wakes the wait when the command exits, not only when it writes
    try:
        for fd, sink in streams:
            os.set_blocking(fd, False)
            _widen(fd)
            selector.register(fd, selectors.EVENT_READ, sink)
        if pidfd is not None:
            selector.register(pidfd, selectors.EVENT_READ, None)
        open_pipes = len(streams)
        exited_at = None
        while True:
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
                if pidfd is not None:
                    selector.unregister(pidfd)
            if exited_at is not None:
                if not open_pipes:
                    return "exited"
                if now >= exited_at + DRAIN_S:
                    return "held"
                wait = exited_at + DRAIN_S - now
            else:
                if now >= deadline:
                    return "timeout"
                wait = deadline - now if pidfd is not None else min(deadline - now, 0.05)
            for key, _ in selector.select(wait):
                if key.data is None:
                    continue  # the command exited: poll() above reaps it
                try:
                    chunk = os.read(key.fd, _READ)
                except BlockingIOError:
                    continue
                if chunk:
                    key.data.feed(chunk)
                else:
                    selector.unregister(key.fd)
                    open_pipes -= 1
    finally:
        selector.close()
        if pidfd is not None:
            os.close(pidfd)


def _widen(fd: int) -> None:
    """A 1 MiB pipe instead of 64 KiB: a fast writer costs four times fewer wake-ups."""
    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:  # over the user's pipe quota, or not Linux: the default size works too
        pass


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: _read polls instead
        return None


def _drain(streams, limit: int = 128 << 10) -> None:
    """Take what is already in the pipes, bounded: a writer outside the group may go on."""
    for fd, sink in streams:
        taken = 0
        while taken < limit:
            try:
                chunk = os.read(fd, _READ)
            except OSError:  # BlockingIOError: nothing more for now
                break
            if not chunk:
                break
            sink.feed(chunk)
            taken += len(chunk)


def _end_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the command's whole process group, SIGKILL to what is left after a grace."""
    if not _signal_group(proc.pid, signal.SIGTERM):
        return
    until = time.monotonic() + TERM_GRACE_S
    while time.monotonic() < until:
        if proc.poll() is not None and not _group_alive(proc.pid):
            return
        time.sleep(0.02)
    _signal_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:  # stuck in the kernel (D state): nothing more to do
        pass


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal the group ``pgid`` (its id is the command's pid: it ran in its own session);
    False once no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed user: the others were still signalled
        pass
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. Zombies do not count: orphans are reaped by
    init, which on some hosts (containers) takes its time; waiting for that would stall."""
    if not _signal_group(pgid, 0):
        return False
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:  # no /proc: every member counts as alive
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False
