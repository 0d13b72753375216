"""A pytest-testinfra host as a target: ssh, ansible, podman/docker, kubectl ... through one interface.

Testinfra backends offer one thing: ``run(command) -> CommandResult(rc, stdout, stderr)``.
Every operation here is therefore a short POSIX shell script (GNU coreutils or busybox
on the far side: ``stat``, ``tail``, ``head``, ``timeout``, ``mktemp``, ``/proc``) whose
output is bounded:

- ``stat``/``glob``: ``stat -L --printf`` (glob output at most ``LIST_LIMIT`` bytes); with
  ``read_ahead``, a readable regular file's last bytes (all of a small one) come in the same
  command, so a file check's content or a log's tail costs no second round trip;
  ``stat_and_list``: a directory's stat and its entries (``find -printf``) in one command;
- ``read_range``: ``tail -c +N | head -c M``, so the log probe's backward block reads
  move only the blocks it reads, never the whole file; ``count_newlines``: the same piped
  to ``wc -l``, so numbering a log's lines moves a number, not the lines before them;
- ``resources``: ``/proc/loadavg``, ``/proc/meminfo``, two ``/proc/stat`` samples and the
  online CPUs, computed as psutil computes them locally (read with shell builtins), and the
  ``disks`` asked for along; ``disk``: ``stat -f`` (the statvfs fields psutil uses);
- ``processes``: ``/proc/<pid>/stat`` and ``cmdline`` of every process in one command
  (``grep -a -z -H``, see :mod:`opsgate.targets.procfs`), then only for the processes kept
  the files their fields need (``status`` and ``getent passwd``, the ``exe`` and ``cwd``
  links, ``cgroup``) -- read in the same command when the host lists at most
  ``FEW_PROCESSES``; ``cpu_percent``: two ``stat`` snapshots ``interval`` apart;
- ``listeners``: ``ss -Hltnp`` filtered to the port (with ``fields``, the owners' records in
  the same command); ``read_pid_file``: ``head -c 4096``;
- ``run``: the command runs under ``timeout`` with its output sent to files in a
  ``mktemp -d`` directory (removed after); each stream is transferred up to
  ``OUTPUT_LIMIT`` bytes: beyond that the result is "truncated" and says so.

BusyBox far sides (Alpine, minimal images, embedded boxes) get their own scripts where GNU's
do not run there: ``stat -c`` (mtimes' fractions from ``%y``; whole seconds where a busybox
prints none), ``find -print0`` with one ``stat`` for the entries, the exe/cwd links read with
``readlink``, statvfs with ``stat -f -c``. The flavour is learnt by the first GNU-only command,
behind a guard (``stat --printf`` missing: it runs nothing, exits 97, and is sent again as
busybox's), so a GNU host pays no round trip for it. Portable to both: CLK_TCK and the page size
from the auxiliary vector where there is no ``getconf``, users from /etc/passwd where there is no
``getent``, listeners from /proc/net/tcp{,6} and the fd links where there is no ``ss``, a
command's temporary directory in /var/tmp, /dev/shm or /run where /tmp is missing.

One operation is one remote command, so one round trip (over ssh, one session of the shared
connection): what a check needs is asked in as few as possible. Every command runs under
``timeout`` on the far side (the backend's shell execs it; a single tool runs without a
shell of its own), and the call is also waited for
here with a deadline: a transport that hangs (an ssh connection that stopped answering)
is a TimeoutError after ``timeout + GRACE_S``; its thread is left behind, as nothing can
interrupt a blocked testinfra call. ``transferred`` counts the bytes received.

Connecting needs pytest-testinfra (the ``bench`` extra): ``TestinfraTarget.connect("ssh://web1")``
or ``opsgate.targets.get("testinfra:ssh://web1")``. What the far side answers is read as
a local call would have raised it:

>>> _oserror("stat: cannot statx '/x': No such file or directory", "/x")
FileNotFoundError(2, 'No such file or directory')
>>> _stat_line("2048 1764537272.5 81a4 /srv/backup.sql").is_file
True
"""

from __future__ import annotations

import errno
import functools
import io
import os
import re
import shlex
import stat as statmod
import threading
import time
import uuid
from dataclasses import replace
from typing import Callable, Collection

from . import (PROCESS_FIELDS, Command, DiskUsage, FileStat, Listeners, NotRegularFile, ProcessInfo, Ran, Resources,
               Sink, Target, procfs)

GRACE_S = 5.0  # beyond the far side's own timeout, for the transport
LIST_LIMIT = 4 << 20  # bytes of glob output accepted
PROC_LIMIT = 16 << 20  # bytes of a process listing accepted (a few hundred per process)
OUTPUT_LIMIT = (16 << 20) + 1  # bytes of each command stream transferred (the JSON limit, plus one to see "over")
_ERRORS = (("No such file", errno.ENOENT), ("Not a directory", errno.ENOTDIR), ("Permission denied", errno.EACCES),
           ("Too many levels", errno.ELOOP))


_SS_PID = re.compile(r"\bpid=(\d+)")  # in ss's users:(("name",pid=123,fd=4),...)


def _oserror(stderr: str, path: str) -> OSError:
    """The OSError a local call would raise, read from a tool's message."""
    for text, code in _ERRORS:
        if text in stderr:
            return OSError(code, os.strerror(code), path)
    return OSError(errno.EIO, stderr.strip() or "failed", path)


def transport_error(error: BaseException) -> str:
    """What a testinfra backend's failure says, without its command line: the ssh backend
    raises ``RuntimeError(CommandResult)`` when ssh exits 255 (whose repr holds the whole
    ssh command); its stderr's last lines say why.

    >>> transport_error(RuntimeError("boom"))
    'RuntimeError: boom'
    """
    result = error.args[0] if isinstance(error, RuntimeError) and error.args else None
    stderr = getattr(result, "stderr_bytes", None)
    if isinstance(stderr, bytes):
        lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        noise = ("Warning: Permanently added", "@@@@", "IT IS POSSIBLE", "Someone could be", "It is also possible",
                 "The fingerprint", "SHA256:", "Please contact", "Add correct host key", "Offending", "Password authentication",
                 "Keyboard-interactive", "Agent forwarding", "X11 forwarding", "Port forwarding", "UpdateHostkeys",
                 "to get rid of this message", "man-in-the-middle")
        kept = [line for line in lines if not any(n in line for n in noise)]
        changed = " (REMOTE HOST IDENTIFICATION HAS CHANGED)" if any("HAS CHANGED" in line for line in lines) else ""
        return ("; ".join(kept[-3:]) or f"the connection failed (exit code {getattr(result, 'rc', '?')})") + changed
    return f"{type(error).__name__}: {error}"


#: the far side's part of a read-ahead (after the stat line; $1 the path, $2 the bytes wanted):
#: a readable regular file's last $2 bytes up to the size the stat saw, after "\0=<offset>\0"
_READ_AHEAD_SH = ("[ \"$2\" -gt 0 ] && [ -f \"$1\" ] && [ -r \"$1\" ] || exit 0; s=${l%% *}; o=$(( s > $2 ? s - $2 : 0 )); "
                  "printf '\\0=%s\\0' \"$o\"; [ $o -gt 0 ] || exec head -c \"$s\" -- \"$1\"; "
                  "tail -c +$(( o + 1 )) -- \"$1\" | head -c $(( s - o ))")
MAX_READ_AHEAD = 1 << 20  # bytes a stat or glob sends with it, at most


def _split_read_ahead(out: bytes) -> tuple[list[bytes], bytes | None, int]:
    """NUL-separated stat lines, then maybe ``=<offset>`` and the read-ahead bytes to the end.

    >>> _split_read_ahead(b"1 2.0 81a4 /a\\0=0\\0x\\0y")
    ([b'1 2.0 81a4 /a'], b'x\\x00y', 0)
    """
    entries, pos = [], 0
    while pos < len(out):
        end = out.find(b"\0", pos)
        entry = out[pos:] if end < 0 else out[pos:end]
        if entry.startswith(b"=") and end >= 0:
            return entries, out[end + 1:], int(entry[1:])
        entries.append(entry)
        if end < 0:
            break
        pos = end + 1
    return entries, None, 0


_STATFS = "stat -f -L --printf '%b %f %a %S %c %d'"  # the statvfs fields psutil's disk_usage uses
_BB_STATFS = "stat -f -L -c '%b %f %a %S %c %d'"  # the same on busybox (no --printf; -c ends each with a newline)

#: the far side's flavour probe: GNU stat takes --printf, busybox's does not (a host with neither
#: is answered as busybox: its scripts fail there naming the tool, never an empty pass)
_FLAVOUR_PROBE = "stat --printf gnu -- / 2>/dev/null || echo busybox"
#: while a target's flavour is unknown, a GNU-only command runs behind this guard (one stat more,
#: no round trip more): where GNU stat is missing it runs nothing and says so
_NOT_GNU = b"opsgate: not GNU"
_GNU_GUARD = ("sh -c 'stat --printf \"\" -- / 2>/dev/null || { echo \"" + _NOT_GNU.decode() +
              "\" >&2; exit 97; }; exec \"$@\"' opsgate-guard ")


class _NotGnu(Exception):
    """A GNU-only command met a far side without GNU tools (its flavour is now known: ask again)."""


def _flavoured(operation):
    """An operation whose scripts depend on the far side's flavour: run again once when its
    first try learnt that the far side is not GNU."""

    @functools.wraps(operation)
    def again_if_not_gnu(self, *args, **kwargs):
        try:
            return operation(self, *args, **kwargs)
        except _NotGnu:
            return operation(self, *args, **kwargs)

    return again_if_not_gnu

#: busybox: sets $l to "<size> <mtime> <hex mode> <path>" for path $1 (as GNU's --printf
#: '%s %.9Y %f %n' gives it); busybox has no %.9Y: the fraction comes from %y's
#: "YYYY-MM-DD HH:MM:SS.NNNNNNNNN +ZZZZ" (whole seconds where a busybox prints none)
_BB_ST = ("st() { l=$(stat -L -c '%s %Y %y %f' -- \"$1\") || return 1; IFS=' '; set -- \"$1\" $l; f=${5#*.}; "
          "[ \"$f\" != \"$5\" ] || f=0; l=\"$2 $3.$f $7 $1\"; }; ")


def _bb_stat_each(follow: bool, types: bool) -> str:
    """busybox: "<size> <mtime> <hex mode, or f/o with types> <path>\\0" for each path in "$@", one
    ``stat`` for all of them (lines in the order of the paths; if one cannot be stat'ed, one
    ``stat`` per path, skipping it). The names come from the shell, never from stat's lines: a
    name with a newline cannot shift one file's reading onto another."""
    opt = "-L " if follow else ""
    kind = "case $6 in 8???) t=f;; *) t=o;; esac; " if types else "t=$6; "
    return ("e() { g=${4#*.}; [ \"$g\" != \"$4\" ] || g=0; " + kind + "printf '%s %s.%s %s %s\\0' \"$1\" \"$2\" "
            f"\"$g\" \"$t\" \"$7\"; }}; IFS=' '; if s=$(stat {opt}-c '%s %Y %y %f' -- \"$@\" 2>/dev/null); then "
            "printf '%s\\n' \"$s\" | while read -r a b c d z m; do e $a $b $c $d $z $m \"$1\"; shift; done; "
            f"else for p; do s=$(stat {opt}-c '%s %Y %y %f' -- \"$p\" 2>/dev/null) && e $s \"$p\"; done; fi")


def _cpu_count(text: str) -> int:
    """CPUs from ``getconf _NPROCESSORS_ONLN`` or ``online:`` and /sys/devices/system/cpu/online's ranges.

    >>> _cpu_count("8"), _cpu_count("online:0-3,6,8-9")
    (8, 7)
    """
    if not text.startswith("online:"):
        return int(text)
    count = 0
    for part in text.removeprefix("online:").strip().split(","):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return count


def _disk_usage(text: str) -> DiskUsage:
    """A filesystem's use from ``_STATFS``'s fields (ValueError when they are not there), as psutil computes it.

    >>> _disk_usage("100 50 40 4096 1000 900")
    DiskUsage(used_percent=55.6, free_gb=0.0, inodes_percent=10.0)
    """
    blocks, bfree, bavail, frsize, files, ffree = (int(x) for x in text.split())
    used = (blocks - bfree) * frsize
    user_total = used + bavail * frsize
    used_percent = round(used / user_total * 100, 1) if user_total else 0.0
    inodes = (files - ffree) / files * 100 if files else 0.0
    return DiskUsage(used_percent, round(bavail * frsize / 2**30, 2), round(inodes, 2))


def _find(recursive: bool) -> str:
    """The far side's listing of directory $1: one NUL-terminated "size mtime type path" per
    entry, at most $2 of them."""
    depth = "" if recursive else "-maxdepth 1 "
    return f"find \"$1\" -mindepth 1 {depth}-printf '%s %T@ %y %p\\0' | head -z -n \"$2\""


def _bb_cap(limit: int) -> int:
    """Bytes of a busybox listing enough for ``limit`` + 1 entries of paths up to PATH_MAX (at most LIST_LIMIT).

    >>> _bb_cap(9), _bb_cap(10**6) == LIST_LIMIT
    (41600, True)
    """
    return min(LIST_LIMIT, (limit + 1) * (4096 + 64))


def _bb_find(recursive: bool, cap: int) -> str:
    """``_find`` on busybox (no ``-printf``, no ``head -z``): the entries' names from ``find
    -print0``, their sizes, mtimes and types from ``stat`` (``_bb_stat_each``), bounded in bytes
    (``_listing`` counts what came: an answer cut short before ``$2`` entries is an error)."""
    depth = "" if recursive else "-maxdepth 1 "
    return (f"find \"$1\" -mindepth 1 {depth}-print0 | xargs -0 -r sh -c {shlex.quote(_bb_stat_each(False, True))} x "
            f"| head -c {cap + 1}")


def _listing(out: bytes, err: bytes, limit: int, path: str, cap: int = LIST_LIMIT) -> tuple[list[FileStat], int, bool]:
    """``_find``'s entries as ``Target.list_dir`` answers them; OSError when a part could not be read."""
    text = err.decode("utf-8", "replace")
    if text.strip() and "Broken pipe" not in text:  # an unreadable subdirectory: the listing is incomplete
        raise _oserror(text, path)
    cut = len(out) > cap  # busybox's listing is bounded in bytes (_bb_cap): the last entry may be cut
    entries = [e for e in out.decode("utf-8", "surrogateescape").split("\0") if e][:-1 if cut else None]
    if cut and len(entries) <= limit:  # entries not counted: a count too small would be a false pass
        raise OSError(errno.E2BIG, f"the listing is over {cap} bytes before {limit} entries", path)
    files = []
    for entry in entries[:limit]:
        size, mtime, kind, name = entry.split(" ", 3)
        if kind == "f":
            files.append(FileStat(name, int(size), float(mtime), statmod.S_IFREG | 0o644, True))
    return files, min(len(entries), limit), len(entries) > limit


def _stat_line(line: str) -> FileStat:
    size, mtime, mode, path = line.split(" ", 3)
    mode_bits = int(mode, 16)
    return FileStat(path, int(size), float(mtime), mode_bits, statmod.S_ISREG(mode_bits))


def _cpu_times(line: str) -> tuple[float, float]:
    """(busy, total) jiffies of a /proc/stat ``cpu`` line, as psutil counts them (guest time is
    already in user time; iowait is idle)."""
    fields = [float(x) for x in line.split()[1:]]
    fields += [0.0] * (10 - len(fields))
    total = sum(fields) - fields[8] - fields[9]
    return total - fields[3] - fields[4], total


class _GzTail(io.RawIOBase):
    """A gzip file decompressed on the far side past its first ``lines`` lines, read in ranges
    (``gzip -dc | tail -n +K | tail -c +B | head -c M``): the part after the skipped lines is all
    that crosses the wire. Each read decompresses the file again there, so reads are large."""

    def __init__(self, target: "TestinfraTarget", path: str, lines: int, deadline: float) -> None:
        super().__init__()
        self.target, self.path, self.lines, self.deadline, self.pos = target, path, lines, deadline, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{self.path}: reading took longer than its timeout")
        script = ("[ -r \"$1\" ] || { stat -L -- \"$1\" >/dev/null && echo 'Permission denied' >&2; exit 1; }; "
                  "gzip -dc -- \"$1\" | tail -n +\"$2\" | tail -c +\"$3\" | head -c \"$4\"")
        args = [self.path, str(self.lines + 1), str(self.pos + 1), str(len(buffer))]
        rc, out, err = self.target._sh(script, args, left, f"reading {self.path}")
        problems = [line for line in err.decode("utf-8", "replace").splitlines() if "Broken pipe" not in line]
        if rc not in (0, 141) or problems:  # 141: a writer ended by head having enough
            raise _oserror("\n".join(problems) or f"exit code {rc}", self.path)
        data = out[:len(buffer)]
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)


#: processes whose fields a whole listing reads along when asked "?<letters>" (few: cheaper than a
#: second round trip for the kept ones; many: the fields are read for the kept ones only)
FEW_PROCESSES = 64

#: CLK_TCK and the page size ($t, $z): getconf's, or the kernel's auxiliary vector (AT_PAGESZ 6,
#: AT_CLKTCK 17) read with od where there is no getconf (busybox); run in /proc
_CLOCK_SH = r"""
if command -v getconf >/dev/null; then t=$(getconf CLK_TCK) z=$(getconf PAGESIZE)
else aux() { set -- $(od -An -t"$1" -v self/auxv)
    while [ $# -gt 1 ]; do case $1 in 6) z=$2;; 17) t=$2;; esac; shift 2; done; }
  aux u8; [ -n "$t" ] || aux u4; fi
"""

#: The far side's listing of /proc records: $1 a nonce (marks the listing's own processes), $2 the
#: fields read from files (letters: u user, e exe, c cwd, g cgroup; "-" none; "?<letters>": only
#: if at most FEW_PROCESSES are listed, saying so with a first record "fields:all"), then the pids
#: (all when none).
_PROC_SCRIPT = rf"""
cd /proc || exit 3
w=$2; shift 2
set -f
[ $# -gt 0 ] || {{ set +f; set -- [0-9]*; set -f; }}
{{
case $w in \?*) if [ $# -le {FEW_PROCESSES} ]; then w=${{w#?}}; printf 'fields:all\0'; else w=-; fi;; esac
{_CLOCK_SH}
printf 'clock:%s %s %s\0' "$t" "$z" "$(sed -n 's/^btime //p' stat)"
{{ printf '%s/stat\0' "$@"; printf '%s/cmdline\0' "$@"; case $w in *g*) printf '%s/cgroup\0' "$@";; esac; }} |
  xargs -0 grep -a -z -H '' 2>/dev/null
case $w in *u*)  # each Uid line, and the names of those uids (shell builtins: few processes)
  s=$(printf '%s/status\0' "$@" | xargs -0 grep -a -H '^Uid:' 2>/dev/null)
  uids= nl='
'
  IFS=$nl
  for l in $s; do
    printf '%s\0' "$l"
    u=${{l#*Uid:}}; u=${{u#"${{u%%[0-9]*}}"}}; u=${{u%%[!0-9]*}}
    case " $uids " in *" $u "*) ;; *) uids="$uids $u";; esac
  done
  IFS=" 	$nl"
  if [ -z "$uids" ]; then :
  elif command -v getent >/dev/null; then
    getent passwd $uids | while IFS=: read -r name _ uid _; do printf 'passwd:%s:%s\0' "$name" "$uid"; done
  elif [ -r /etc/passwd ]; then  # no getent (busybox): the local users only
    while IFS=: read -r name _ uid _; do case " $uids " in *" $uid "*) printf 'passwd:%s:%s\0' "$name" "$uid";; esac
    done </etc/passwd
  fi;;
esac
l=
for p; do case $w in *e*) l="$l $p/exe";; esac; case $w in *c*) l="$l $p/cwd";; esac; done
[ -z "$l" ] || find $l -maxdepth 0 -printf '%p:%l\0' 2>/dev/null  # pids are digits: split into paths
}} | head -c {PROC_LIMIT + 1}
"""


_FIND_LINKS = "[ -z \"$l\" ] || find $l -maxdepth 0 -printf '%p:%l\\0' 2>/dev/null"
assert _FIND_LINKS in _PROC_SCRIPT
#: _PROC_SCRIPT on busybox, whose find has no -printf: the exe and cwd links read one by one
_BB_PROC_SCRIPT = _PROC_SCRIPT.replace(
    _FIND_LINKS, "for f in $l; do printf '%s:%s\\0' \"$f\" \"$(readlink \"$f\" 2>/dev/null)\"; done")


def _letters(fields: Collection[str]) -> str:
    """The letters ``_PROC_SCRIPT`` takes as $2 for ``fields``.

    >>> _letters({"user", "cwd", "memory"}), _letters(())
    ('uc', '-')
    """
    pairs = (("user", "u"), ("exe", "e"), ("cwd", "c"), ("cgroup", "g"))
    return "".join(letter for field, letter in pairs if field in fields) or "-"


_NO_PROC_NET = "no ss, and /proc/net/tcp cannot be read"
#: where there is no ``ss`` (busybox): a line per socket listening on TCP port $1 (IPv4 and IPv6,
#: /proc/net/tcp state 0A), with its owners as ss names them ("pid=N") read from the processes'
#: fd links (``ls -l``: one process); a socket whose owner cannot be seen is a line without one
_PROC_NET_SH = (
    "{ h=$(printf '%04X' \"$1\"); i=; r=; for f in /proc/net/tcp /proc/net/tcp6; do [ -r $f ] || continue; r=1; "
    "while read -r _ a _ st _ _ _ _ _ n _; do case $a:$st in *:$h:0A) i=\"$i $n\";; esac; done <$f; done; "
    "[ -n \"$r\" ] || { echo '" + _NO_PROC_NET + "' >&2; exit 1; }; "
    "[ -n \"$i\" ] || exit 0; o=$(ls -l /proc/[0-9]*/fd 2>/dev/null | while read -r x; do case $x in "
    "/proc/*/fd:) c=${x#/proc/}; c=${c%/fd:};; *socket:\\[*) k=${x##*socket:\\[}; k=${k%]}; "
    "case \" $i \" in *\" $k \"*) printf ' %s=%s' \"$k\" \"$c\";; esac;; esac; done); "
    "for n in $i; do l=\"LISTEN inode=$n\"; for kv in $o; do case $kv in \"$n=\"*) l=\"$l pid=${kv#*=}\";; esac; done; "
    "echo \"$l\"; done; }")

_OWNERS = b"\0opsgate-owners\0"  # between ss's lines and the owners' /proc records


class TestinfraTarget(Target):
    """A testinfra ``Host`` (``testinfra.get_host("ssh://web1")``) seen as a target."""

    __test__ = False  # not a pytest test class, whatever its name says
    skips_gz_lines_itself = True  # open_gz_after skips them on the far side (gzip -dc | tail -n +K)

    def __init__(self, host, slots: int | None = None, name: str | None = None, give_up_on_hang: bool = False) -> None:
        self.host = host
        self.name = name or f"testinfra:{host.backend.get_pytest_id()}"
        self.transferred = 0
        self._lock = threading.Lock()
        # remote operations in flight at once (a host's per_host_concurrency); None: unbounded
        self._slots = threading.BoundedSemaphore(slots) if slots else None
        # give_up_on_hang: once the transport stops answering (an operation outlived even its
        # grace), later operations fail at once saying so, instead of each waiting out its
        # timeout: a hung host of a run costs one timeout, not one per check
        self._give_up_on_hang = give_up_on_hang
        self.stopped_answering: str | None = None
        self._flavour: str | None = None  # "gnu" or "busybox": the far side's tools, probed once

    def flavour(self, timeout: float) -> str:
        """The far side's userland, probed once and kept: ``"gnu"`` (coreutils, findutils) or
        ``"busybox"`` (its applets: ``stat -c`` without ``--printf``, ``find`` without
        ``-printf``, no ``head -z``), which selects the scripts the operations send. The
        operations do not ask it first: the first GNU-only command learns it (``_GNU_GUARD``).

        >>> TestinfraTarget.connect("local://").flavour(timeout=10)
        'gnu'
        """
        if self._flavour is None:
            rc, out, err = self._sh(_FLAVOUR_PROBE, [], timeout, "asking which tools it has")
            if rc != 0:
                raise OSError(errno.EIO, f"{self.name}: cannot run sh: {err.decode('utf-8', 'replace').strip()[:300]}")
            self._flavour = "gnu" if out.strip() == b"gnu" else "busybox"
        return self._flavour

    def _busybox(self) -> bool:
        """Whether the busybox scripts are sent: only once known (unknown: GNU's, behind the guard)."""
        return self._flavour == "busybox"

    @classmethod
    def connect(cls, hostspec: str) -> "TestinfraTarget":
        """The target for a testinfra host spec (``local://``, ``ssh://user@web1``, ``podman://box``)."""
        import testinfra  # an optional dependency: only this target needs it

        return cls(testinfra.get_host(hostspec))

    # --- the one primitive -------------------------------------------------------------------

    def _sh(self, script: str, args: list[str], timeout: float, what: str = "",
            gnu: bool = False) -> tuple[int, bytes, bytes]:
        """Run ``script`` with ``args`` ($1 ...) under the far side's ``timeout``; TimeoutError when
        it or the transport runs out (naming ``what`` was being done). ``gnu``: a script for GNU
        tools only (``_NotGnu`` when the far side turns out not to have them)."""
        tail = "sh -c {} opsgate {}".format(shlex.quote(script), " ".join(shlex.quote(a) for a in args))
        return self._gnu_only(tail, timeout, what) if gnu else self._bounded(tail, timeout, what)

    def _tool(self, argv: list[str], timeout: float, what: str = "", gnu: bool = False) -> tuple[int, bytes, bytes]:
        """Run one program (no shell of its own: the far side's ``timeout`` starts it) as ``_sh``."""
        command = shlex.join(argv)
        return self._gnu_only(command, timeout, what) if gnu else self._bounded(command, timeout, what)

    def _gnu_only(self, command: str, timeout: float, what: str) -> tuple[int, bytes, bytes]:
        """``_bounded`` for a command needing GNU tools: behind ``_GNU_GUARD`` while the far side's
        flavour is unknown (the first such command learns it)."""
        if self._flavour is not None:
            return self._bounded(command, timeout, what)
        rc, out, err = self._bounded(_GNU_GUARD + command, timeout, what)
        if rc == 97 and _NOT_GNU in err:
            self._flavour = "busybox"
            raise _NotGnu()
        self._flavour = "gnu"
        return rc, out, err

    def _bounded(self, command: str, timeout: float, what: str) -> tuple[int, bytes, bytes]:
        if self.stopped_answering:
            raise TimeoutError(f"{self.stopped_answering}; not asked again in this run")
        if self._slots is not None:
            waited = time.monotonic()
            if not self._slots.acquire(timeout=timeout):
                raise TimeoutError(f"{self.name}: no free connection slot within {timeout:g}s (other checks of this "
                                   "host held them all)")
            timeout = max(timeout - (time.monotonic() - waited), 0.001)
            try:
                return self._run_now(command, timeout, what)
            finally:
                self._slots.release()
        return self._run_now(command, timeout, what)

    def _run_now(self, command: str, timeout: float, what: str) -> tuple[int, bytes, bytes]:
        # exec: the backend's shell becomes timeout (one process less per operation on the far side)
        line = "exec timeout -k 1 {:.3f} {}".format(max(timeout, 0.001), command)
        box: dict = {}

        def call() -> None:
            try:
                box["result"] = self.host.run(line)
            except BaseException as exc:  # handed to the waiting thread
                box["error"] = exc

        worker = threading.Thread(target=call, daemon=True, name=f"opsgate {self.name}")
        worker.start()
        worker.join(timeout + GRACE_S)
        doing = f" {what}" if what else ""
        if worker.is_alive():
            message = f"{self.name} did not answer{doing} within {timeout + GRACE_S:g}s"
            if self._give_up_on_hang:
                self.stopped_answering = message
            raise TimeoutError(message)
        if "error" in box:
            raise OSError(errno.EIO, f"{self.name}: {transport_error(box['error'])}")
        result = box["result"]
        out, err = result.stdout_bytes, result.stderr_bytes
        with self._lock:
            self.transferred += len(out) + len(err)
        if result.rc in (124, 137):  # timeout's own codes: the far side ran out of time
            raise TimeoutError(f"{self.name}:{doing} did not finish within {timeout:g}s")
        return result.rc, out, err

    def ping(self, timeout: float) -> None:
        # a token echoed back, not only exit code 0: a transport that says nothing (a wrapper that
        # ran no command, an exec into something that is not a shell) must not read as reachable
        token = uuid.uuid4().hex
        rc, out, err = self._tool(["echo", token], timeout, "running echo")
        if rc != 0:
            raise OSError(errno.EIO, f"{self.name}: `echo` failed: {err.decode('utf-8', 'replace').strip()[:300]}")
        if out.strip() != token.encode():
            raise OSError(errno.EIO, f"{self.name}: ran `echo <token>` but did not get the token back "
                                     f"(got {len(out)} bytes): the transport did not run the command")

    # --- files ---------------------------------------------------------------------------------

    @_flavoured
    def stat(self, path: str, timeout: float, read_ahead: int = 0) -> FileStat:
        if self._busybox():
            return self._bb_stat(path, timeout, read_ahead)
        if read_ahead <= 0:  # the far side's timeout runs stat itself: no shell
            rc, out, err = self._tool(["stat", "-L", "--printf", "%s %.9Y %f %n", "--", str(path)], timeout, gnu=True)
            if rc != 0:
                raise _oserror(err.decode("utf-8", "replace"), str(path))
            return _stat_line(out.decode("utf-8", "surrogateescape"))
        # "<stat line>" and, for a readable regular file, "\0=<offset>\0<its bytes from offset to its size>"
        script = "l=$(stat -L --printf '%s %.9Y %f %n' -- \"$1\") || exit 1; printf '%s' \"$l\"; " + _READ_AHEAD_SH
        rc, out, err = self._sh(script, [str(path), str(min(read_ahead, MAX_READ_AHEAD))], timeout, gnu=True)
        if rc != 0:
            raise _oserror(err.decode("utf-8", "replace"), str(path))
        entries, data, at = _split_read_ahead(out)
        found = _stat_line(entries[0].decode("utf-8", "surrogateescape"))
        return replace(found, data=data, data_at=at) if data is not None else found

    def _bb_stat(self, path: str, timeout: float, read_ahead: int) -> FileStat:
        """``stat`` on busybox: one shell script (``_BB_ST``), the read-ahead as on GNU."""
        script = _BB_ST + "st \"$1\" || exit 1; printf '%s' \"$l\"; " + _READ_AHEAD_SH
        rc, out, err = self._sh(script, [str(path), str(min(max(read_ahead, 0), MAX_READ_AHEAD))], timeout)
        if rc != 0:
            raise _oserror(err.decode("utf-8", "replace"), str(path))
        entries, data, at = _split_read_ahead(out)
        found = _stat_line(entries[0].decode("utf-8", "surrogateescape"))
        return replace(found, data=data, data_at=at) if data is not None else found

    @_flavoured
    def glob(self, pattern: str, timeout: float, read_ahead: int = 0) -> list[FileStat]:
        # IFS empty: the pattern is expanded as a path pattern, never split at spaces; a single
        # regular file matching is sent with its read-ahead bytes, as by stat
        busybox = self._busybox()
        if busybox:
            script = ("IFS=; set -- \"$2\" $1; [ $# -gt 2 ] || [ -e \"$2\" ] || exit 0; n=$1; shift; " + _BB_ST +
                      "if [ $# -eq 1 ] && [ \"$n\" -gt 0 ]; then st \"$1\" 2>/dev/null || exit 0; printf '%s' \"$l\"; "
                      "set -- \"$1\" \"$n\"; " + _READ_AHEAD_SH + "; exit 0; fi; "
                      f"{{ {_bb_stat_each(True, False)}; }} | head -c {LIST_LIMIT + 1}")
        else:
            script = ("IFS=; set -- \"$2\" $1; [ $# -gt 2 ] || [ -e \"$2\" ] || exit 0; n=$1; shift; "
                      "if [ $# -eq 1 ] && [ \"$n\" -gt 0 ]; then l=$(stat -L --printf '%s %.9Y %f %n' -- \"$1\" 2>/dev/null) "
                      "|| exit 0; printf '%s' \"$l\"; set -- \"$1\" \"$n\"; " + _READ_AHEAD_SH + "; exit 0; fi; "
                      f"stat -L --printf '%s %.9Y %f %n\\0' -- \"$@\" 2>/dev/null | head -c {LIST_LIMIT + 1}")
        _rc, out, _err = self._sh(script, [pattern, str(min(read_ahead, MAX_READ_AHEAD))], timeout, gnu=not busybox)
        entries, data, at = _split_read_ahead(out)
        if sum(map(len, entries)) > LIST_LIMIT:
            raise OSError(errno.E2BIG, f"more than {LIST_LIMIT} bytes of paths match", pattern)
        found = [_stat_line(entry.decode("utf-8", "surrogateescape")) for entry in entries if entry]
        if data is not None and len(found) == 1:
            found[0] = replace(found[0], data=data, data_at=at)
        return found

    @_flavoured
    def list_dir(self, path: str, limit: int, timeout: float, recursive: bool = False) -> tuple[list[FileStat], int, bool]:
        busybox = self._busybox()
        listing = _bb_find(recursive, _bb_cap(limit)) if busybox else _find(recursive)
        script = "[ -d \"$1\" ] || { echo 'Not a directory' >&2; exit 20; }; " + listing
        rc, out, err = self._sh(script, [str(path), str(limit + 1)], timeout, f"listing {path}", gnu=not busybox)
        if rc == 20:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))
        return _listing(out, err, limit, str(path), _bb_cap(limit) if busybox else LIST_LIMIT)

    @_flavoured
    def stat_and_list(self, path: str, limit: int, timeout: float, recursive: bool = False):
        # one operation: "<stat line>\0", and for a directory "=list\0" and its entries
        busybox = self._busybox()
        if busybox:
            script = (_BB_ST + "st \"$1\" || exit 1; printf '%s\\0' \"$l\"; "
                      "[ -d \"$1\" ] || exit 0; printf '=list\\0'; " + _bb_find(recursive, _bb_cap(limit)))
        else:
            script = ("l=$(stat -L --printf '%s %.9Y %f %n' -- \"$1\") || exit 1; printf '%s\\0' \"$l\"; "
                      "[ -d \"$1\" ] || exit 0; printf '=list\\0'; " + _find(recursive))
        rc, out, err = self._sh(script, [str(path), str(limit + 1)], timeout, f"listing {path}", gnu=not busybox)
        if rc != 0:
            raise _oserror(err.decode("utf-8", "replace"), str(path))
        line, _, rest = out.partition(b"\0")
        found = _stat_line(line.decode("utf-8", "surrogateescape"))
        if not rest.startswith(b"=list\0"):
            return found, None
        try:
            cap = _bb_cap(limit) if busybox else LIST_LIMIT
            return found, _listing(rest[len(b"=list\0"):], err, limit, str(path), cap)
        except OSError as exc:
            return found, exc

    def read_range(self, path: str, offset: int, length: int, timeout: float) -> bytes:
        script = ("[ -r \"$1\" ] || { stat -L -- \"$1\" >/dev/null && echo 'Permission denied' >&2; exit 1; }; "
                  "tail -c +\"$2\" -- \"$1\" | head -c \"$3\"")
        rc, out, err = self._sh(script, [str(path), str(offset + 1), str(length)], timeout)
        if rc != 0 or err:
            raise _oserror(err.decode("utf-8", "replace") or "Permission denied", str(path))
        return out

    def count_newlines(self, path: str, offset: int, length: int, timeout: float) -> int:
        # counted on the far side: only the number crosses the wire, whatever the range's size
        script = ("[ -r \"$1\" ] || { stat -L -- \"$1\" >/dev/null && echo 'Permission denied' >&2; exit 1; }; "
                  "tail -c +\"$2\" -- \"$1\" | head -c \"$3\" | wc -l")
        rc, out, err = self._sh(script, [str(path), str(offset + 1), str(length)], timeout, f"counting lines of {path}")
        if rc != 0 or err:
            raise _oserror(err.decode("utf-8", "replace") or "Permission denied", str(path))
        if not out.strip().isdigit():
            raise OSError(errno.EIO, f"{self.name}: wc -l answered {out[:40]!r}", str(path))
        return int(out)

    def gz_line_count(self, path: str, timeout: float) -> int:
        # decompressed and counted on the far side: the number crosses the wire, not the file
        script = ("[ -r \"$1\" ] || { stat -L -- \"$1\" >/dev/null && echo 'Permission denied' >&2; exit 1; }; "
                  "n=$(gzip -dc -- \"$1\" | wc -l); last=$(gzip -dc -- \"$1\" 2>/dev/null | tail -c 1 | od -An -tx1); "
                  "echo \"$n\" $last")
        rc, out, err = self._sh(script, [str(path)], timeout, f"counting lines of {path}")
        fields = out.decode("utf-8", "replace").split()
        if rc != 0 or err or not fields or not fields[0].isdigit():
            raise _oserror(err.decode("utf-8", "replace") or f"gzip -dc | wc -l answered {out[:40]!r}", str(path))
        return int(fields[0]) + (len(fields) > 1 and fields[1] != "0a")

    def open_gz_after(self, path: str, lines: int, deadline: float):
        if lines <= 0:  # from the start: the compressed bytes cross the wire, decompressed here
            return super().open_gz_after(path, lines, deadline)
        return _GzTail(self, str(path), lines, deadline), lines

    # --- resources -----------------------------------------------------------------------------

    @_flavoured
    def resources(self, cpu_sample: float, timeout: float, disks: Collection[str] = ()) -> Resources:
        sample = min(cpu_sample, timeout / 2)
        busybox = self._busybox()
        statfs = _BB_STATFS if busybox else _STATFS[:-1] + "\\n'"
        # read with shell builtins (only sleep is a process): the load, the online CPUs (or getconf's
        # count), MemTotal and MemAvailable, two /proc/stat cpu lines; then the disks' statvfs in
        # the same operation, one line each: "disk<i> <fields>" or "disk<i> <stat's error>"
        script = ("{ read -r a _ </proc/loadavg && echo \"$a\" && { read -r c </sys/devices/system/cpu/online && "
                  "echo \"online:$c\" || getconf _NPROCESSORS_ONLN 2>/dev/null || nproc; } && "
                  "while read -r k v _; do case $k in "
                  "MemTotal:|MemAvailable:) echo \"$k $v\";; esac; [ \"$k\" != MemAvailable: ] || break; done </proc/meminfo "
                  "&& read -r c </proc/stat && echo \"$c\" && sleep \"$1\" && read -r c </proc/stat && echo \"$c\"; } "
                  "|| exit 1; shift; "
                  f"i=0; for p; do printf 'disk%s ' $i; {statfs} -- \"$p\" 2>&1; i=$(( i + 1 )); done; exit 0")
        rc, out, err = self._sh(script, [f"{sample:.3f}", *map(str, disks)], timeout, gnu=bool(disks) and not busybox)
        if rc != 0:
            raise OSError(errno.EIO, f"{self.name}: cannot read /proc: {err.decode('utf-8', 'replace').strip()}")
        lines = out.decode("utf-8", "replace").splitlines()
        load, cpus = float(lines[0].split()[0]), _cpu_count(lines[1])
        mem = {k.rstrip(":"): int(v) for k, v, *_ in (line.split() for line in lines[2:4])}
        (busy1, total1), (busy2, total2) = _cpu_times(lines[4]), _cpu_times(lines[5])
        cpu = round((busy2 - busy1) / (total2 - total1) * 100, 1) if total2 > total1 else 0.0
        memory = round((mem["MemTotal"] - mem["MemAvailable"]) / mem["MemTotal"] * 100, 1)
        # each disk's line by its number: an error message broken over lines cannot shift a
        # reading onto another disk
        answered = dict(m.groups() for m in map(re.compile(r"disk(\d+) (.*)").fullmatch, lines[6:]) if m)
        found: dict = {}
        for i, path in enumerate(disks):
            text = answered.get(str(i), "").strip()
            try:
                found[path] = _disk_usage(text)
            except ValueError:
                found[path] = _oserror(text or "no answer", str(path))
        return Resources(cpu, memory, round(load / (cpus or 1), 3), found)

    @_flavoured
    def disk(self, path: str, timeout: float) -> DiskUsage:
        busybox = self._busybox()
        rc, out, err = self._tool([*shlex.split(_BB_STATFS if busybox else _STATFS), "--", str(path)], timeout,
                                  gnu=not busybox)
        if rc != 0:
            raise _oserror(err.decode("utf-8", "replace"), str(path))
        return _disk_usage(out.decode("utf-8", "replace"))

    # --- processes and sockets ----------------------------------------------------------------

    @_flavoured
    def processes(self, timeout: float, fields: Collection[str] = (), pids: Collection[int] | None = None,
                  select: Callable[[ProcessInfo], bool] | None = None) -> list[ProcessInfo]:
        fields = frozenset(fields)
        if fields - PROCESS_FIELDS:
            raise ValueError(f"unknown process fields: {sorted(fields - PROCESS_FIELDS)}")
        deadline = time.monotonic() + timeout
        nonce = f"opsgate-{uuid.uuid4().hex[:12]}"  # marks this listing's own processes
        # a whole listing to select from: the fields come along when the host has few processes
        few = select is not None and bool(fields) and pids is None
        listed, with_fields = self._proc_read(nonce, fields if select is None or few else frozenset(), pids, timeout,
                                              few)
        if pids is None:
            for pid in procfs.own_processes(listed, nonce):
                del listed[pid]
        kept = [p for p in listed.values() if select is None or select(p)]
        if select is None or not fields or not kept or with_fields:
            return sorted(kept, key=lambda p: p.pid)
        # the fields, for the kept processes only; one that ended or whose pid was reused is gone
        again, _ = self._proc_read(nonce, fields, [p.pid for p in kept], max(deadline - time.monotonic(), 0.001))
        return [again[p.pid] for p in sorted(kept, key=lambda p: p.pid)
                if p.pid in again and again[p.pid].create_time == p.create_time]

    def _proc_read(self, nonce: str, fields: frozenset[str], pids: Collection[int] | None, timeout: float,
                   few: bool = False) -> tuple[dict[int, ProcessInfo], bool]:
        """One command reading the /proc records of ``pids`` (all when None) for ``fields`` (``few``:
        only if at most FEW_PROCESSES are listed); and whether the fields were read."""
        letters = ("?" if few else "") + _letters(fields)
        args = [nonce, letters, *(str(int(pid)) for pid in (pids if pids is not None else ()))]
        if pids is not None and not pids:
            return {}, True
        busybox = self._busybox()
        # only the exe and cwd links need GNU's find -printf
        rc, out, err = self._sh(_BB_PROC_SCRIPT if busybox else _PROC_SCRIPT, args, timeout, "listing processes",
                                gnu=not busybox and bool(set(letters) & set("ec")))
        if rc != 0:
            raise OSError(errno.EIO, f"{self.name}: cannot list processes: {err.decode('utf-8', 'replace').strip()}")
        with_fields = not few or out.startswith(b"fields:all\0")
        return self._proc_parse(out, fields if with_fields else frozenset()), with_fields

    def _proc_parse(self, out: bytes, fields: frozenset[str]) -> dict[int, ProcessInfo]:
        if len(out) > PROC_LIMIT:
            raise OSError(errno.E2BIG, f"{self.name}: the process listing is over {PROC_LIMIT} bytes")
        try:
            return procfs.parse(out, fields)
        except ValueError as exc:  # a far side without getconf, or whose tools print something else
            raise OSError(errno.EIO, f"{self.name}: cannot read its process listing ({exc}): the host needs "
                                     "xargs and grep -z (GNU or busybox with them) and getconf or od") from None

    def cpu_percent(self, procs: Collection[ProcessInfo], interval: float, timeout: float) -> dict[int, float]:
        if not procs:
            return {}
        sample = max(0.0, min(interval, timeout / 2))
        script = r"""
cd /proc || exit 3
s=$1; n=$2; shift 2
snap() { read -r up _ <uptime; printf 'uptime:%s\0' "$up"; printf '%s/stat\0' "$@" | xargs -0 grep -a -z -H '' 2>/dev/null; }
""" + _CLOCK_SH + r"""
{ printf 'clock:%s 0 0\0' "$t"; snap "$@"; sleep "$s"; snap "$@"; } | head -c "$n"
"""
        rc, out, err = self._sh(script, [f"{sample:.3f}", str(PROC_LIMIT), *(str(int(p.pid)) for p in procs)],
                                timeout, "sampling CPU")
        if rc != 0:
            raise OSError(errno.EIO, f"{self.name}: cannot sample CPU: {err.decode('utf-8', 'replace').strip()}")
        uptimes, snaps = procfs.cpu_samples(out)
        if len(snaps) < 2 or uptimes[1] <= uptimes[0]:
            return {}
        wall = uptimes[1] - uptimes[0]
        sampled = {}
        for pid, (cpu, start) in snaps[1].items():
            if pid in snaps[0] and snaps[0][pid][1] == start:  # the same process at both ends
                sampled[pid] = round((cpu - snaps[0][pid][0]) / wall * 100, 1)
        return sampled

    def read_pid_file(self, path: str, timeout: float) -> str:
        script = ("[ -e \"$1\" ] || { stat -L -- \"$1\" >/dev/null; exit 1; }; "
                  "[ -f \"$1\" ] || { echo 'not a regular file' >&2; exit 2; }; "
                  "[ -r \"$1\" ] || { echo 'Permission denied' >&2; exit 1; }; head -c 4096 -- \"$1\"")
        rc, out, err = self._sh(script, [str(path)], timeout, "reading the pid file")
        if rc == 2:
            raise NotRegularFile(0, "not a regular file", str(path))
        if rc != 0:
            raise _oserror(err.decode("utf-8", "replace"), str(path))
        return out[:4096].decode("ascii", "replace")

    @_flavoured
    def listeners(self, port: int, timeout: float, fields: Collection[str] | None = None) -> Listeners:
        script = (f"if command -v ss >/dev/null; then ss -Hltnp \"sport = :$1\"; else {_PROC_NET_SH}; fi "
                  f"| head -c {LIST_LIMIT + 1}")
        args = [str(int(port))]
        if fields is not None:  # the owners' records too, in the same operation
            fields = frozenset(fields)
            if fields - PROCESS_FIELDS:
                raise ValueError(f"unknown process fields: {sorted(fields - PROCESS_FIELDS)}")
            # the pids of ss's "pid=N" picked with shell builtins, each once
            script = (f"out=$({script}); printf '%s\\n' \"$out\"; r=$out p=; while :; do case $r in *pid=*) "
                      "r=${r#*pid=}; q=${r%%[!0-9]*}; case \" $p \" in *\" $q \"*) ;; *) p=\"$p $q\";; esac;; "
                      "*) break;; esac; done; set -- \"$2\" \"$3\" $p; "
                      "[ $# -gt 2 ] || exit 0; printf '\\0opsgate-owners\\0'\n" +
                      (_BB_PROC_SCRIPT if self._busybox() else _PROC_SCRIPT))
            args += [f"opsgate-{uuid.uuid4().hex[:12]}", _letters(fields)]
        links = fields is not None and bool(fields & {"exe", "cwd"}) and not self._busybox()
        rc, out, err = self._sh(script, args, timeout, "listing listening sockets", gnu=links)
        out, marker, records = out.partition(_OWNERS)
        if rc != 0 or len(out) > LIST_LIMIT or _NO_PROC_NET.encode() in err:  # (the pipe's status is head's)
            raise OSError(errno.EIO, f"{self.name}: cannot list sockets: "
                                     f"{err.decode('utf-8', 'replace').strip() or 'ss or /proc/net/tcp failed'}")
        pids, unknown = set(), 0
        for line in out.decode("utf-8", "replace").splitlines():
            owners = [int(pid) for pid in _SS_PID.findall(line)]
            if owners:
                pids.update(owners)
            elif line.strip():
                unknown += 1
        owners = None
        if fields is not None:
            owners = self._proc_parse(records, fields) if marker else {}
        return Listeners(frozenset(pids), unknown, owners)

    def realpath(self, path: str, timeout: float) -> str:
        rc, out, _err = self._sh("readlink -f -- \"$1\" || printf '%s\\n' \"$1\"", [str(path)], timeout,
                                 "resolving a path")
        return out.decode("utf-8", "surrogateescape").rstrip("\n") or str(path)

    # --- commands ------------------------------------------------------------------------------

    def run(self, command: Command, out: Sink, err: Sink, timeout: float) -> Ran:
        env = ["env", "--"] + [f"{k}={v}" for k, v in (command.env or {}).items()]
        inner = shlex.join(env + command.argv) if command.argv else shlex.join(env + ["sh", "-c", command.shell])
        program = command.argv[0] if command.argv else "sh"
        quoted = inner.replace("'", "'\\''")  # inside the script's single quotes
        # header: "<state> <rc> <stdout bytes> <stderr bytes>", then at most OUTPUT_LIMIT of each stream
        script = f"""
d=$(mktemp -d 2>/dev/null) || for t in /var/tmp /dev/shm /run; do d=$(mktemp -d -p $t 2>/dev/null) && break; done
[ -d "$d" ] || {{ echo notmp 0 0 0; exit 0; }}
trap 'rm -rf "$d"' EXIT
if [ -n "$1" ] && ! cd -- "$1" 2>/dev/null; then echo nocwd 0 0 0; exit 0; fi
command -v -- "$2" >/dev/null 2>&1 || {{ echo noprogram 0 0 0; exit 0; }}
timeout -k 1 "$3" sh -c '{quoted}; echo $? >"$0/rc"' "$d" </dev/null >"$d/o" 2>"$d/e"
if [ -f "$d/rc" ]; then read -r r <"$d/rc"; state="exited $r"; else state="timeout -"; fi
set -- $(stat -c %s -- "$d/o" "$d/e")
echo "$state $1 $2"
head -q -c {OUTPUT_LIMIT} -- "$d/o" "$d/e"
"""
        rc, data, stderr = self._sh(script, [command.cwd or "", program, f"{timeout:.3f}"], timeout + 2)
        header, _, body = data.partition(b"\n")
        fields = header.decode("utf-8", "replace").split()
        if rc != 0 or len(fields) != 4:
            raise OSError(errno.EIO, f"{self.name}: cannot run: {stderr.decode('utf-8', 'replace').strip()}")
        state, code, out_size, err_size = fields[0], fields[1], int(fields[2]), int(fields[3])
        if state == "nocwd":
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), command.cwd)
        if state == "noprogram":
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        if state == "notmp":  # its output is kept in files there until it ends
            raise OSError(errno.EROFS, f"{self.name}: no writable temporary directory to run in (tried $TMPDIR or "
                                       "/tmp, /var/tmp, /dev/shm, /run)")
        out_kept, err_kept = min(out_size, OUTPUT_LIMIT), min(err_size, OUTPUT_LIMIT)
        out.feed(body[:out_kept])
        err.feed(body[out_kept:out_kept + err_kept])
        if state == "timeout":
            return Ran("timeout", None)
        if out_size > OUTPUT_LIMIT or err_size > OUTPUT_LIMIT:
            return Ran("truncated", int(code), f"its output ({out_size} bytes of stdout, {err_size} of stderr) is "
                                               f"more than the {OUTPUT_LIMIT} bytes a stream {self.name} transfers")
        return Ran("exited", int(code))
