"""Targets: the machine host-level probes read (files, logs, resources, commands, processes,
listening sockets).

Probes never touch the OS themselves for these: they ask ``ctx.target``. The local
target (the default) uses the OS directly; a command-only target (a pytest-testinfra
host: ssh, ansible, podman/docker, kubectl ...) does the same through shell commands
whose output is bounded. Checking a remote host is then a new target, not a change to
every probe. Every operation takes a ``timeout`` (seconds) or a ``deadline``
(``time.monotonic()``); running out is a ``TimeoutError``.

>>> target = get("local")
>>> target.name, target.stat("/etc/hostname", timeout=5).is_file
('local', True)
>>> sorted(registered())
['local', 'testinfra']
"""

from __future__ import annotations

import errno
import io
import stat as statmod
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Collection, Protocol

READ_AHEAD = 64 << 10  # a small read of a remote file fetches this much, so gzip's 8 KiB reads stay few
COUNT_BLOCK = 1 << 20  # bytes read at a time when counting lines (the deadline is checked between blocks)


@dataclass(frozen=True)
class FileStat:
    """What the file and log probes need of a file (``stat`` follows symlinks)."""

    path: str
    size: int
    mtime: float
    mode: int  # st_mode: type and permission bits
    is_file: bool
    # bytes read in the same operation (``read_ahead``): from offset ``data_at``; None when not read.
    # They belong to the check that asked (a RangeFile or a probe's own reader), never to the target
    data: bytes | None = field(default=None, repr=False, compare=False)
    data_at: int = field(default=0, repr=False, compare=False)

    def whole(self) -> bytes | None:
        """The file's content, when ``data`` holds all of it (read from its start to its end).

        >>> FileStat("f", 2, 0.0, 0o100644, True, b"ab").whole(), FileStat("f", 2, 0.0, 0o100644, True).whole()
        (b'ab', None)
        """
        if self.data is None or self.data_at != 0 or len(self.data) != self.size:
            return None
        return self.data


@dataclass(frozen=True)
class Resources:
    """Whole-machine readings, as psutil gives them locally."""

    cpu_percent: float
    memory_percent: float
    load_per_core: float
    # the disks asked for along (``Target.resources(disks=...)``) that the target read in the same
    # operation: path -> DiskUsage, or the OSError reading it raised; a path missing is read apart
    disks: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class DiskUsage:
    """One filesystem's use, seen from a path on it."""

    used_percent: float
    free_gb: float
    inodes_percent: float


@dataclass(frozen=True)
class Command:
    """A command to run: ``argv`` (no shell) or a ``shell`` line; ``env`` is added to the
    target's environment; ``cwd`` None is the target's default."""

    argv: list[str] | None = None
    shell: str | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None


class Sink(Protocol):
    """Where a stream of a running command goes, as it arrives."""

    def feed(self, data: bytes) -> None: ...


@dataclass(frozen=True)
class Ran:
    """How a command ended: ``"exited"`` (``exit_code`` set), ``"timeout"`` (it was ended, and
    ``exit_code`` is None) or ``"held"`` (it exited but a background process kept its output
    open; it was ended after a grace). ``note`` says why, when a target must add something."""

    ending: str
    exit_code: int | None
    note: str | None = None


#: what ``Target.processes`` reads besides the basic fields, only for the processes its ``select`` keeps
PROCESS_FIELDS = frozenset({"ppid", "user", "exe", "cwd", "memory", "cpu", "cgroup"})


@dataclass(frozen=True)
class ProcessInfo:
    """One process as the probes see it. The basic fields are always set; the others only when
    asked for (``PROCESS_FIELDS``: ``ppid``, ``user`` sets user and uid, ``memory`` rss, ``cpu``
    cpu_time, ``cgroup`` the lines of /proc/<pid>/cgroup; a target may set more than asked). A field asked for but not readable (another
    user's process, without root) is None and named in ``unreadable``.

    >>> p = ProcessInfo(7, 1, "sleep", ("sleep", "30"), "sleeping", 1.5e9, exe=None, unreadable=frozenset({"exe"}))
    >>> p.command_line, "exe" in p.unreadable
    ('sleep 30', True)
    """

    pid: int
    ppid: int | None  # asked for as a field: psutil checks for pid reuse on every read of it
    name: str
    cmdline: tuple[str, ...]
    status: str  # psutil's names: running, sleeping, disk-sleep, stopped, idle ...
    create_time: float  # seconds since the epoch: with pid, the process's identity
    user: str | None = None  # the real uid's name (the number as text when it has none)
    uid: int | None = None  # real uid
    exe: str | None = None
    cwd: str | None = None
    rss: int | None = None  # bytes
    cpu_time: float | None = None  # user + system seconds so far
    cgroup: tuple[str, ...] | None = None
    unreadable: frozenset[str] = frozenset()

    @property
    def command_line(self) -> str:
        return " ".join(self.cmdline)


@dataclass(frozen=True)
class Listeners:
    """The TCP sockets listening on a local port (any address): the pids owning them, and how
    many have no owner the target could read (another user's sockets, without root)."""

    pids: frozenset[int]
    unknown: int
    # the owners (pid -> ProcessInfo with the fields asked for), when the target read them in the
    # same operation (``listeners(fields=...)``); None: read them with ``processes(pids=...)``
    owners: dict | None = field(default=None, compare=False)


class _Discard:
    """A sink that keeps nothing."""

    def feed(self, data: bytes) -> None:
        pass


class NotRegularFile(OSError):
    """A path that must be a regular file (a pid file) is a FIFO, a device or a directory."""


class Target(ABC):
    """The machine a probe reads. Subclasses implement the abstract operations; ``open``
    has a default built on ``read_range`` and ``stat`` for targets that reach files only
    through commands."""

    #: whether ``open_gz_after`` skips the lines on the target's side (then only what follows
    #: them crosses a wire, and a reader should skip what it can; here skipping costs nothing)
    skips_gz_lines_itself = False

    name: str = "target"

    @abstractmethod
    def stat(self, path: str, timeout: float, read_ahead: int = 0) -> FileStat:
        """The file at ``path``; FileNotFoundError when there is none, OSError when it cannot be read.
        ``read_ahead``: a target that reaches files through commands may also send, in the same
        operation, the last ``read_ahead`` bytes of a readable regular file (all of it when it
        is smaller) as ``data``/``data_at``; a local target need not (reading here is cheap)."""

    @abstractmethod
    def glob(self, pattern: str, timeout: float, read_ahead: int = 0) -> list[FileStat]:
        """Existing paths matching a shell ``pattern`` (``*``, ``?``, ``[...]``; dot files only
        when the pattern says so), each stat'ed; ``read_ahead`` as for ``stat``, when a single
        regular file matches."""

    @abstractmethod
    def read_range(self, path: str, offset: int, length: int, timeout: float) -> bytes:
        """Up to ``length`` bytes of ``path`` from ``offset`` (fewer only at its end)."""

    @abstractmethod
    def resources(self, cpu_sample: float, timeout: float, disks: Collection[str] = ()) -> Resources:
        """CPU % over ``cpu_sample`` seconds, memory % in use, 1-minute load per core; a target
        that reaches the machine through commands also reads the use of ``disks`` (paths) in the
        same operation (``Resources.disks``); the others are read with ``disk``."""

    @abstractmethod
    def disk(self, path: str, timeout: float) -> DiskUsage:
        """Use of the filesystem holding ``path``; OSError (with ``strerror``) when unreadable."""

    @abstractmethod
    def run(self, command: Command, out: Sink, err: Sink, timeout: float) -> Ran:
        """Run ``command``, feeding its stdout and stderr to the sinks, within ``timeout``.
        OSError when it cannot be started (no such program, no such working directory)."""

    @abstractmethod
    def processes(self, timeout: float, fields: Collection[str] = (), pids: Collection[int] | None = None,
                  select: Callable[[ProcessInfo], bool] | None = None) -> list[ProcessInfo]:
        """The running processes (zombies are gone), or only those of ``pids``, with their basic
        fields, in one scan; ``fields`` (of ``PROCESS_FIELDS``) are read only for the processes
        ``select`` keeps (all when None). A process that ended meanwhile is left out. A whole
        scan leaves out the checker's own processes (locally this one; remotely the listing's)."""

    @abstractmethod
    def cpu_percent(self, procs: Collection[ProcessInfo], interval: float, timeout: float) -> dict[int, float]:
        """CPU % of each process (100 = one core) over ``interval`` seconds, by pid; a process
        that ended (or whose pid was reused) meanwhile is left out."""

    @abstractmethod
    def read_pid_file(self, path: str, timeout: float) -> str:
        """The first 4 KiB of a pid file as text; OSError (with ``strerror``) when it cannot be
        read, NotRegularFile when it is no regular file (a FIFO must not hang the probe)."""

    @abstractmethod
    def listeners(self, port: int, timeout: float, fields: Collection[str] | None = None) -> Listeners:
        """Who listens on local TCP ``port``; OSError when the sockets cannot be listed. With
        ``fields``, a target that reaches the machine through commands also reads the owners'
        processes (as ``processes(fields=fields, pids=...)``) in the same operation."""

    @abstractmethod
    def realpath(self, path: str, timeout: float) -> str:
        """``path`` with its symlinks resolved, on the target (as ``os.path.realpath``: never fails)."""

    def ping(self, timeout: float) -> None:
        """Run ``true`` on the target: OSError (TimeoutError) naming why it cannot be reached.

        >>> local().ping(timeout=5)
        """
        ran = self.run(Command(argv=["true"]), _Discard(), _Discard(), timeout)
        if ran.ending != "exited" or ran.exit_code != 0:
            raise OSError(errno.EIO, f"{self.name}: `true` did not succeed ({ran.ending}, exit code {ran.exit_code})")

    def close(self) -> None:
        """Release the target's connection (a no-op where there is none)."""

    def list_dir(self, path: str, limit: int, timeout: float, recursive: bool = False) -> tuple[list[FileStat], int, bool]:
        """The regular files in directory ``path`` (and its subdirectories if ``recursive``; links
        are not followed), reading at most ``limit`` entries of any type: (files, entries read,
        whether entries were left unread). NotADirectoryError when ``path`` is not a directory,
        OSError when a part of it cannot be read, TimeoutError after ``timeout``.

        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = [(d / f"{i}.log").write_text("x") for i in range(3)]
        >>> files, read, more = local().list_dir(str(d), limit=2, timeout=5)
        >>> len(files), read, more
        (2, 2, True)
        """
        raise OSError(errno.ENOTSUP, f"{self.name} cannot list directories", path)

    def stat_and_list(self, path: str, limit: int, timeout: float, recursive: bool = False):
        """``stat(path)`` and, when it is a directory, ``list_dir(path, limit, ...)`` -- in one
        operation where the target reaches files through commands: (stat, listing), the listing
        None when ``path`` is no directory, or the OSError listing it raised. The stat's own
        failure is raised, as ``stat`` raises it.

        >>> st, (files, read, more) = local().stat_and_list("/", limit=1, timeout=5)
        >>> st.is_file, read, more
        (False, 1, True)
        """
        deadline = time.monotonic() + timeout
        found = self.stat(path, timeout)
        if not statmod.S_ISDIR(found.mode):
            return found, None
        try:
            return found, self.list_dir(path, limit, max(deadline - time.monotonic(), 0.001), recursive)
        except OSError as exc:  # TimeoutError too
            return found, exc

    def descendants(self, pid: int, timeout: float) -> list[int]:
        """The pids of ``pid``'s children, their children, and so on (none when it does not run).

        >>> import os
        >>> os.getpid() in local().descendants(os.getppid(), timeout=5)
        True
        """
        children: dict[int, list[int]] = {}
        for proc in self.processes(timeout, fields={"ppid"}):
            children.setdefault(proc.ppid, []).append(proc.pid)
        found, todo = [], list(children.get(pid, ()))
        while todo:
            child = todo.pop()
            if child not in found:  # a pid reused meanwhile must not loop
                found.append(child)
                todo.extend(children.get(child, ()))
        return found

    def open(self, path: str, deadline: float, known: FileStat | None = None):
        """A readable, seekable binary file object over ``path``; its reads raise TimeoutError
        after ``deadline``. ``known``: the file's stat taken earlier by the same check (with its
        ``data``), used instead of a new one. Close it (it is a context manager)."""
        return RangeFile(self, path, deadline, known)

    def count_newlines(self, path: str, offset: int, length: int, timeout: float) -> int:
        """How many ``\\n`` bytes ``path`` holds in ``[offset, offset + length)`` (fewer bytes at its
        end): what numbering a line needs, without handing the bytes over. This default reads
        through ``open`` in blocks, checking ``timeout`` before each; a target that reaches
        files through commands counts on its own side instead (only the number travels).

        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "app.log"; _ = f.write_bytes(b"a\\nb\\nc\\n")
        >>> local().count_newlines(str(f), 0, 4, timeout=5), local().count_newlines(str(f), 2, 100, timeout=5)
        (2, 2)
        """
        deadline = time.monotonic() + timeout
        count = 0
        with self.open(path, deadline) as handle:
            handle.seek(offset)
            while length > 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path}: counting lines took longer than its timeout ({timeout:g}s)")
                data = handle.read(min(COUNT_BLOCK, length))
                if not data:
                    break
                count += data.count(b"\n")
                length -= len(data)
        return count

    def gz_line_count(self, path: str, timeout: float) -> int:
        """The lines of gzip file ``path`` once decompressed (a last line without a newline
        counts). This default decompresses here, reading through ``open``; a target that reaches
        files through commands decompresses on its own side and sends the number.

        >>> import gzip, tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "app.log.1.gz"; _ = f.write_bytes(gzip.compress(b"a\\nb\\nc"))
        >>> local().gz_line_count(str(f), timeout=5)
        3
        """
        deadline = time.monotonic() + timeout
        count, last = 0, b"\n"
        with self.open_gz_after(path, 0, deadline)[0] as handle:
            while data := handle.read(COUNT_BLOCK):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path}: counting lines took longer than its timeout ({timeout:g}s)")
                count, last = count + data.count(b"\n"), data[-1:]
        return count + (last != b"\n")

    def open_gz_after(self, path: str, lines: int, deadline: float):
        """A readable binary file over gzip file ``path`` decompressed, past at most its first
        ``lines`` lines, and how many it skipped: (file, skipped). This default skips none (the
        caller reads past them: reading a file here costs nothing on a wire); a remote target
        skips them on its side, so only what follows crosses the wire. Close the file."""
        import gzip

        raw = self.open(path, deadline)
        handle = gzip.GzipFile(filename=path, mode="rb", fileobj=raw)
        handle.myfileobj = raw  # GzipFile closes the file it was given only as its own
        return handle, 0


class RangeFile(io.RawIOBase):
    """A file read through ``Target.read_range``: random access without copying it whole.

    >>> from opsgate.targets.local import LocalTarget
    >>> with RangeFile(LocalTarget(), "/etc/hostname", time.monotonic() + 5) as f:
    ...     f.seek(0, io.SEEK_END) == LocalTarget().stat("/etc/hostname", 5).size
    True
    """

    def __init__(self, target: Target, path: str, deadline: float, known: FileStat | None = None) -> None:
        super().__init__()
        self.target, self.path, self.deadline = target, path, deadline
        # the stat also brings the file's last READ_AHEAD bytes where a target sends them: a
        # small file is then read in one operation, and a log's tail is at hand
        # (+1: a backward reader's first block ends before the file's last byte, read first on its own)
        self.stat = known if known is not None else target.stat(path, self._left(), read_ahead=READ_AHEAD + 1)
        self.size = self.stat.size
        self.pos = 0
        self._cache, self._cache_at = self.stat.data or b"", self.stat.data_at

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{self.path}: reading took longer than its timeout")
        return left

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        want = len(buffer)
        if want == 0 or self.pos >= self.size:
            return 0
        at = self.pos - self._cache_at
        if not (0 <= at < len(self._cache)):
            data = self.target.read_range(self.path, self.pos, max(want, READ_AHEAD), self._left())
            self._cache, self._cache_at, at = data, self.pos, 0
        data = self._cache[at:at + want]
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)


_REGISTRY: dict[str, Callable[[str], Target]] = {}


def register(scheme: str, factory: Callable[[str], Target]) -> None:
    """Make ``get("<scheme>")`` / ``get("<scheme>:<spec>")`` build targets with ``factory(spec)``."""
    _REGISTRY[scheme] = factory


def registered() -> list[str]:
    """The target schemes ``get`` knows."""
    return list(_REGISTRY)


def get(spec: str | None = None) -> Target:
    """The target named by ``spec``: ``None`` or ``"local"`` is this machine;
    ``"testinfra:<hostspec>"`` is a pytest-testinfra host (``testinfra:ssh://web1``,
    ``testinfra:local://``). ValueError names the unknown scheme.

    >>> get().name
    'local'
    >>> get("telnet:old-box")
    Traceback (most recent call last):
    ...
    ValueError: unknown target 'telnet:old-box': expected local or testinfra:<hostspec>
    """
    scheme, _, rest = (spec or "local").partition(":")
    if scheme not in _REGISTRY:
        known = " or ".join("local" if s == "local" else f"{s}:<hostspec>" for s in _REGISTRY)
        raise ValueError(f"unknown target {spec!r}: expected {known}")
    return _REGISTRY[scheme](rest)


def _local(_spec: str) -> Target:
    from .local import LOCAL
    return LOCAL


def _testinfra(spec: str) -> Target:
    from .testinfra import TestinfraTarget
    return TestinfraTarget.connect(spec)


register("local", _local)
register("testinfra", _testinfra)


def local() -> Target:
    """This machine (one shared instance).

    >>> local() is local()
    True
    """
    from .local import LOCAL
    return LOCAL
