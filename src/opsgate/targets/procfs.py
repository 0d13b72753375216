"""Processes read from another machine's ``/proc`` as records, parsed into what psutil gives locally.

A target that reaches a machine only through commands (``opsgate.targets.testinfra``) has
``grep -a -z -H ''`` print the files it needs under ``/proc``, one NUL-terminated record per
line of a file: ``<pid>/<file>:<content>``. ``cmdline`` gives one record per argument, the
NUL-free files (``stat``, ``cgroup``) one record each. Other records name what they carry:
``clock:<CLK_TCK> <page size> <boot time>``, ``passwd:<name>:<uid>``, ``<pid>/exe:<target>``
(empty when it cannot be read). This module only parses; it runs nothing.

>>> data = (b"clock:100 4096 1700000000\\0" b"42/stat:42 (sleep) S 1 42 42 0 -1 0 0 0 0 0 150 50 0 0 20 0 1 0 "
...         b"1000 2000000 120 0\\n\\0" b"42/cmdline:sleep\\0" b"42/cmdline:30\\0")
>>> proc = parse(data, frozenset({"memory", "cpu"}))[42]
>>> proc.name, proc.cmdline, proc.ppid, proc.status, proc.create_time, proc.rss, proc.cpu_time
('sleep', ('sleep', '30'), 1, 'sleeping', 1700000010.0, 491520, 2.0)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from . import ProcessInfo

#: the state letter of /proc/<pid>/stat, named as psutil names it
STATES = {"R": "running", "S": "sleeping", "D": "disk-sleep", "T": "stopped", "t": "tracing-stop", "Z": "zombie",
          "X": "dead", "x": "dead", "K": "wake-kill", "W": "waking", "I": "idle", "P": "parked"}
GONE = ("zombie", "dead")
_FIELD_OF_FILE = {"exe": "exe", "cwd": "cwd", "status": "user", "cgroup": "cgroup"}


@dataclass
class Clock:
    """What turns /proc/<pid>/stat's ticks and pages into seconds and bytes."""

    ticks: int = 100
    page_size: int = 4096
    boot_time: float = 0.0


@dataclass
class _Raw:
    stat: str | None = None
    cmdline: list[str] = dataclasses.field(default_factory=list)
    files: dict = dataclasses.field(default_factory=dict)  # exe, cwd, status (its Uid line), cgroup -> text


def records(data: bytes) -> list[tuple[str, str]]:
    """``(key, value)`` per NUL-terminated record (a last record cut short by the size bound is dropped).

    >>> records(b"1/cmdline:init\\0clock:100 4096 1\\0cut")
    [('1/cmdline', 'init'), ('clock', '100 4096 1')]
    """
    out = []
    for record in data.split(b"\0")[:-1]:
        key, sep, value = record.partition(b":")
        if sep:
            out.append((key.decode("ascii", "replace"), value.decode("utf-8", "surrogateescape")))
    return out


def parse(data: bytes, fields: frozenset[str] = frozenset()) -> dict[int, ProcessInfo]:
    """The processes the records describe, by pid; zombies and pids without a stat record (gone)
    are left out. ``fields`` are the extra fields asked for: one without its record is unreadable.

    >>> parse(b"7/stat:7 (z) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0 0\\n\\0")
    {}
    """
    clock, users, raw = Clock(), {}, {}
    for key, value in records(data):
        if key == "clock":
            ticks, page, boot = value.split()
            clock = Clock(int(ticks), int(page), float(boot))
        elif key == "passwd":
            name, _, uid = value.rpartition(":")
            users[int(uid)] = name
        elif "/" in key:
            pid, _, file = key.partition("/")
            if not pid.isdigit():
                continue
            entry = raw.setdefault(int(pid), _Raw())
            if file == "stat":
                entry.stat = value
            elif file == "cmdline":
                entry.cmdline.append(value)
            else:
                entry.files[file] = value
    found = {}
    for pid, entry in raw.items():
        info = _process(pid, entry, clock, users, fields)
        if info is not None:
            found[pid] = info
    return found


def _process(pid: int, entry: _Raw, clock: Clock, users: dict[int, str], fields: frozenset[str]) -> ProcessInfo | None:
    if entry.stat is None:
        return None  # gone between the listing and the reading
    comm, _, rest = entry.stat.partition(" (")[2].rpartition(")")
    stat = rest.split()
    status = STATES.get(stat[0], stat[0])
    if status in GONE:
        return None
    cmdline = tuple(entry.cmdline)
    info = ProcessInfo(pid, int(stat[1]), _name(comm, cmdline), cmdline, status,
                       clock.boot_time + int(stat[19]) / clock.ticks)
    values, unreadable = {}, set()
    if "memory" in fields:
        values["rss"] = int(stat[21]) * clock.page_size
    if "cpu" in fields:
        values["cpu_time"] = (int(stat[11]) + int(stat[12])) / clock.ticks
    for file, field in _FIELD_OF_FILE.items():
        if field not in fields:
            continue
        text = entry.files.get(file, "")
        if not text:
            unreadable.add(field)
        elif field == "user":
            uid = int(text.split()[1])  # "Uid:\t<real>\t<effective>..."
            values.update(uid=uid, user=users.get(uid, str(uid)))
        elif field == "cgroup":
            values["cgroup"] = tuple(text.splitlines())
        else:
            values[field] = text.removesuffix(" (deleted)")
    return dataclasses.replace(info, unreadable=frozenset(unreadable), **values)


def _name(comm: str, cmdline: tuple[str, ...]) -> str:
    """psutil's name: the kernel keeps 15 characters; the executable's name when it starts with them.

    >>> _name("opsgate-long-se", ("/usr/bin/opsgate-long-service", "-v"))
    'opsgate-long-service'
    """
    if len(comm) >= 15 and cmdline:
        extended = cmdline[0].rsplit("/", 1)[-1]
        if extended.startswith(comm):
            return extended
    return comm


def own_processes(procs: dict[int, ProcessInfo], nonce: str) -> set[int]:
    """The listing's own processes: those whose command line holds ``nonce``, and their descendants.

    >>> p = lambda pid, ppid, *argv: ProcessInfo(pid, ppid, argv[0], argv, "running", 0.0)
    >>> sorted(own_processes({1: p(1, 0, "init"), 5: p(5, 1, "sh", "n0nce"), 6: p(6, 5, "grep")}, "n0nce"))
    [5, 6]
    """
    own = {pid for pid, proc in procs.items() if nonce in proc.command_line}
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    todo = list(own)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in own:
                own.add(child)
                todo.append(child)
    return own


def cpu_samples(data: bytes) -> tuple[list[float], list[dict[int, tuple[float, int]]]]:
    """Two snapshots, each an ``uptime:<s>`` record then stat records: the uptimes and, per
    snapshot, ``pid -> (cpu seconds, start ticks)``.

    >>> up, snaps = cpu_samples(b"clock:100 4096 0\\0uptime:10.00\\0" b"3/stat:3 (x) R 1 3 3 0 -1 0 0 0 0 0 50 50 0 0 20 "
    ...                         b"0 1 0 77 0 0 0\\n\\0uptime:10.50\\0")
    >>> up, snaps
    ([10.0, 10.5], [{3: (1.0, 77)}, {}])
    """
    clock, uptimes, snaps = Clock(), [], []
    for key, value in records(data):
        if key == "clock":
            clock.ticks = int(value.split()[0])
        elif key == "uptime":
            uptimes.append(float(value.split()[0]))
            snaps.append({})
        elif key.endswith("/stat") and snaps:
            stat = value.rpartition(")")[2].split()
            if STATES.get(stat[0], "") not in GONE:
                snaps[-1][int(key.partition("/")[0])] = ((int(stat[11]) + int(stat[12])) / clock.ticks, int(stat[19]))
    return uptimes[:2], snaps[:2]
