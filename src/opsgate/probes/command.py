"""``command``: run argv or a shell line; exit code, stdout/stderr regex, JSON stdout conditions.

Output is read in bounded memory, whatever the command prints:

- both pipes are read together as the output arrives, so neither can block the command;
  of each stream the first and the last 64 KiB are kept (a marker says how many bytes
  were left out between them, cut at line ends): they are the evidence.
- ``stdout_regex``, ``stderr_regex`` and ``stdout_not_regex`` search *all* of the output as
  it arrives, in overlapping windows: a match anywhere is found, in the middle of 1 GB or
  on a line of any length, as long as the match itself is shorter than 248 KiB (windows
  of 1 MiB overlap by 256 KiB). A longer match that a window's end cuts cannot be
  confirmed: it counts as found for ``stdout_not_regex`` and as not found for the others,
  so an unsure answer never passes. (A pattern that needs more than 248 KiB of text to
  match at all, such as ``^.*ERROR`` with ERROR 300 KiB into one line, is not seen: the
  price of bounded memory. Search for ``ERROR`` itself.)
- JSON stdout (``expect``/``warn``/``json_stdout``) is parsed whole, so it must be at most
  16 MiB, UTF-8 (RFC 8259) and nested at most 200 levels; otherwise the check fails saying
  which. A truncated or mangled document is never evaluated.

The command runs in its own session (process group):

- it exits within its timeout: its exit code and output are the result. If a background
  process it started still holds stdout or stderr open 0.3 s after it exited
  (``sleep 30 & echo ok``), reading stops there, the group is ended (that process would
  die of a broken pipe at its next write anyway) and the evidence says so. A command that
  detaches a daemon with its output sent elsewhere keeps it: the group is ended only when
  it holds our pipes.
- it does not: the whole group gets SIGTERM, then SIGKILL 0.5 s later, grandchildren too.

>>> from opsgate.model import CommandCheck
>>> from opsgate.probes import ProbeContext
>>> obs = observe(CommandCheck(name="t", shell="echo 9/9 passed", stdout_regex="9/9 passed"), ProbeContext())
>>> obs.values["exit_code"], obs.values["stdout_regex_found"]
(0, True)
"""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import re
import selectors
import signal
import subprocess
import time

from ..conditions import Condition
from ..model import CommandCheck
from ..redact import REDACTOR
from ..results import NO_DOCUMENT, Observation

KEEP = 64 << 10  # bytes kept of each stream's head and of its tail
JSON_LIMIT = 16 << 20  # stdout parsed as JSON is read whole up to this size
JSON_DEPTH = 200  # deeper documents are refused (the report serialiser and parsers recurse)
DRAIN_S = 0.3  # after the command exits, how long a background process may keep the pipes open
TERM_GRACE_S = 0.5  # between SIGTERM and SIGKILL of the group
_EXCERPT = 2000  # characters of each stream in the evidence
_READ = 1 << 18


class _Search:
    """Whether ``pattern`` occurs anywhere in a stream, searched while the text arrives, in
    windows that overlap by ``CARRY`` characters: memory stays bounded whatever the size.

    ``unsure`` is the answer when a match cannot be confirmed (longer than the overlap and
    cut by a window's end): True for a forbidden pattern, False for a required one.

    >>> s = _Search("^ERROR", unsure=True)
    >>> for part in ["ok\\n" * 100_000, "ERROR here\\n", "ok\\n" * 100_000]:
    ...     s.feed(part)
    >>> s.finish()
    True
    """

    STEP = 1 << 20  # search once this much new text has arrived
    CARRY = 256 << 10  # kept for the next window: matches up to CARRY - MARGIN - CONTEXT long are exact
    MARGIN = 4 << 10  # a match ending this close to the window's end may depend on what follows
    CONTEXT = 4 << 10  # characters before the next window's search start ('^', lookbehind)

    def __init__(self, pattern: str, unsure: bool) -> None:
        self._re = re.compile(pattern, re.MULTILINE)
        self._unsure = unsure
        self._parts: list[str] = []
        self._size = 0
        self._start = 0  # where the search begins in the carried text
        self.found = False
        self.seconds = 0.0  # spent searching: a slow pattern on huge output delays the reading

    def feed(self, text: str) -> None:
        if self.found or not text:
            return
        self._parts.append(text)
        self._size += len(text)
        if self._size >= self.STEP:
            self._search(final=False)

    def finish(self) -> bool:
        if not self.found:
            self._search(final=True)
        self._parts = []
        return self.found

    def _search(self, final: bool) -> None:
        text = "".join(self._parts)
        started = time.perf_counter()
        match = self._re.search(text, self._start)
        self.seconds += time.perf_counter() - started
        end = len(text)
        if match and (final or match.end() <= end - self.MARGIN):
            self.found = True
        elif match and match.start() < end - self.CARRY + self.CONTEXT:
            self.found = self._unsure  # too long to be checked again in the next window
        if self.found or final:
            self._parts, self._size = [], 0
            return
        if end > self.CARRY:
            text, self._start = text[-self.CARRY:], self.CONTEXT
        self._parts, self._size = [text], len(text)


class _Stream:
    """One pipe's output: its head and tail (bytes), its size, the searches on it and, for
    JSON stdout, the whole text up to ``JSON_LIMIT``."""

    def __init__(self, fd: int, searches: list[_Search], whole: bool = False) -> None:
        self.fd = fd
        self.size = 0
        self.head = bytearray()
        self.tail = bytearray()
        self.whole: bytearray | None = bytearray() if whole else None  # None also once over JSON_LIMIT
        self.searches = searches
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace") if searches else None

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        room = KEEP - len(self.head)
        rest = data
        if room > 0:
            self.head += data[:room]
            rest = data[room:]
        if rest:
            self.tail += rest
            if len(self.tail) > 2 * KEEP:  # trimmed in batches: one copy per KEEP bytes
                del self.tail[:-KEEP]
        if self.whole is not None:
            if self.size <= JSON_LIMIT:
                self.whole += data
            else:
                self.whole = None  # too big to parse: the size says so, nothing is kept
        if self._decoder is not None:
            text = self._decoder.decode(data)
            for search in self.searches:
                search.feed(text)

    def finish(self) -> None:
        if self._decoder is not None:
            text = self._decoder.decode(b"", final=True)
            for search in self.searches:
                search.feed(text)
                search.finish()

    def omitted(self) -> int:
        return self.size - len(self.head) - min(len(self.tail), KEEP)

    def text(self) -> str:
        """Head and tail as text; when bytes were left out between them, both are cut at a line
        end (so a secret on one line is never split there) and a marker stands for the gap."""
        tail = self.tail[-KEEP:]
        left_out = self.omitted()
        if left_out <= 0:
            return (self.head + tail).decode("utf-8", errors="replace")
        head, tail = bytes(self.head), bytes(tail)
        cut = head.rfind(b"\n")
        if cut >= 0:
            left_out += len(head) - cut - 1
            head = head[:cut + 1]
        cut = tail.find(b"\n")
        if 0 <= cut < len(tail) - 1:
            left_out += cut + 1
            tail = tail[cut + 1:]
        marker = f"\n… {left_out} bytes omitted …\n"
        return head.decode("utf-8", errors="replace").rstrip("\n") + marker + tail.decode("utf-8", errors="replace")


def _start(item: CommandCheck, ctx) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(item.env_values())
    cwd = ctx.path(item.cwd) if item.cwd else ctx.base_dir
    return subprocess.Popen(
        item.argv if item.argv else item.shell,
        shell=bool(item.shell), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )


def _read(proc: subprocess.Popen, streams: tuple[_Stream, ...], timeout: float) -> str:
    """Read every pipe as output arrives until the command has exited and closed them
    ("exited"), the timeout passed ("timeout"), or it exited but something else kept a pipe
    open for ``DRAIN_S`` more ("held")."""
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    pidfd = _pidfd(proc.pid)  # wakes the wait when the command exits, not only when it writes
    try:
        for stream in streams:
            os.set_blocking(stream.fd, False)
            _widen(stream.fd)
            selector.register(stream.fd, selectors.EVENT_READ, stream)
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


def _drain(streams: tuple[_Stream, ...]) -> None:
    """Take what is already in the pipes, bounded: a writer outside the group may go on."""
    for stream in streams:
        taken = 0
        while taken < 2 * KEEP:
            try:
                chunk = os.read(stream.fd, _READ)
            except OSError:  # BlockingIOError: nothing more for now
                break
            if not chunk:
                break
            stream.feed(chunk)
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


def _size(n: int) -> str:
    """
    >>> _size(512), _size(16 << 20), _size(1_073_741_824), _size(1_500_000)
    ('512 bytes', '16 MiB', '1 GiB', '1.4 MiB')
    """
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f}".removesuffix(".0") + f" {unit}"
    raise AssertionError("unreachable")


def _excerpt(text: str, keep: str = "tail", limit: int = _EXCERPT) -> str:
    """Redacted, then cut to ``limit`` characters at a line end when one is near.

    >>> _excerpt("first line\\nsecond\\n", limit=12)
    'second\\n'
    """
    cut = REDACTOR.excerpt(text, limit + 1, keep=keep)
    if len(cut) <= limit:
        return cut
    if keep == "tail":
        cut = cut[1:]
        line = cut.find("\n")
        return cut[line + 1:] if 0 <= line < limit // 2 else cut
    cut = cut[:-1]
    line = cut.rfind("\n")
    return cut[:line + 1] if line >= limit // 2 else cut


def _json_document(stdout: _Stream) -> tuple[object, str | None]:
    """stdout parsed whole, or why it cannot be: too big, not UTF-8, too deep, not JSON."""
    if stdout.whole is None:
        return NO_DOCUMENT, (f"is {_size(stdout.size)}, more than the {_size(JSON_LIMIT)} JSON limit: "
                             "its JSON conditions were not evaluated")
    data = bytes(stdout.whole)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return NO_DOCUMENT, (f"is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}), "
                             "so it is not usable JSON (RFC 8259 JSON is UTF-8)")
    too_deep = f"is nested deeper than {JSON_DEPTH} levels: not usable JSON"
    try:
        document = json.loads(text)
    except RecursionError:
        return NO_DOCUMENT, too_deep
    except ValueError as exc:
        return NO_DOCUMENT, f"is not JSON ({exc})"
    if text.count("[") + text.count("{") > JSON_DEPTH and _depth_over(document, JSON_DEPTH):
        return NO_DOCUMENT, too_deep
    return document, None


def _depth_over(document: object, limit: int) -> bool:
    """True when containers nest more than ``limit`` levels (walked without recursion).

    >>> _depth_over([[[1]]], 3), _depth_over([[[1]]], 2)
    (False, True)
    """
    stack = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (list, dict)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def observe(item: CommandCheck, ctx) -> Observation:
    shown = " ".join(item.argv) if item.argv else item.shell
    started = time.perf_counter()
    try:
        proc = _start(item, ctx)
    except OSError as exc:
        cause = exc.strerror or str(exc)
        if exc.filename and str(exc.filename) != (item.argv[0] if item.argv else ""):
            cause = f"{exc.filename}: {cause}"  # not the program: its working directory (or the shell)
        return Observation({"command": shown}, error=f"cannot run {shown!r}: {cause}")
    searches = {key: _Search(pattern, unsure=key == "stdout_not_regex_found")
                for key, pattern in (("stdout_regex_found", item.stdout_regex), ("stderr_regex_found", item.stderr_regex),
                                     ("stdout_not_regex_found", item.stdout_not_regex)) if pattern}
    wants_json = bool(item.json_stdout or item.expect or item.warn)
    out = _Stream(proc.stdout.fileno(), [s for k, s in searches.items() if k.startswith("stdout")], whole=wants_json)
    err = _Stream(proc.stderr.fileno(), [s for k, s in searches.items() if k.startswith("stderr")])
    ending = "timeout"
    try:
        ending = _read(proc, (out, err), item.timeout)
    finally:  # whatever happened while reading, nothing of the command outlives the probe by accident
        if ending != "exited":
            _end_group(proc)
            _drain((out, err))
        proc.stdout.close()
        proc.stderr.close()
    out.finish()
    err.finish()
    values: dict = {"command": shown, "exit_code": None if ending == "timeout" else proc.returncode,
                    "duration_s": round(time.perf_counter() - started, 4)}
    out_text, err_text = out.text(), err.text()
    details: dict = {"stdout_tail": _excerpt(out_text), "stderr_tail": _excerpt(err_text)}
    for name, stream, text in (("stdout", out, out_text), ("stderr", err, err_text)):
        if stream.omitted() > 0:
            details[f"{name}_bytes"] = stream.size
            details[f"{name}_head"] = _excerpt(text, keep="head")
    if ending == "held":
        details["background"] = (f"a background process kept the output open after the command exited; output was "
                                 f"read for {DRAIN_S:g}s more, then its process group was ended")
    lines = " | ".join((err_text.strip() or out_text.strip()).splitlines())
    explain = f"output: {REDACTOR.excerpt(lines, 300, keep='tail')}" if lines else None
    if ending == "timeout":
        searching = sum(search.seconds for search in searches.values())
        why = (f"; searching its {_size(out.size + err.size)} of output for the regexes took {searching:.1f}s of it"
               if searching >= 0.25 * item.timeout else "")
        return Observation(values, error=f"{shown!r} did not finish within {item.timeout:g}s (killed){why}",
                           details=details, explain=explain)
    for key, search in searches.items():
        values[key] = search.found
    document = NO_DOCUMENT
    if wants_json:
        document, problem = _json_document(out)
        if problem:
            return Observation(values, error=f"stdout of {shown!r} {problem}", details=details, explain=explain)
    return Observation(values, document=document, details=details, explain=explain)


def limits(item: CommandCheck) -> list[Condition]:
    codes = item.exit_code if isinstance(item.exit_code, list) else [item.exit_code]
    out = [Condition.compare("exit_code", "in", codes, label=f"exit code in {codes}")
           if len(codes) > 1 else Condition.compare("exit_code", "==", codes[0], label=f"exit code == {codes[0]}")]
    if item.stdout_regex:
        out.append(Condition.compare("stdout_regex_found", "==", True, label=f"stdout matches /{item.stdout_regex}/"))
    if item.stderr_regex:
        out.append(Condition.compare("stderr_regex_found", "==", True, label=f"stderr matches /{item.stderr_regex}/"))
    if item.stdout_not_regex:
        out.append(Condition.compare("stdout_not_regex_found", "==", False, label=f"stdout has no /{item.stdout_not_regex}/"))
    return out
