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

>>> from opsgate.probes import ProbeContext
>>> obs = observe(CommandCheck(name="t", shell="echo 9/9 passed", stdout_regex="9/9 passed"), ProbeContext())
>>> obs.values["exit_code"], obs.values["stdout_regex_found"]
(0, True)
"""

from __future__ import annotations

import codecs
import re
import time
from typing import ClassVar

from pydantic import Field, model_validator

from ..conditions import Condition
from ..jsondoc import TooDeep, loads_bounded
from ..kinds import Kind
from ..redact import REDACTOR
from ..results import NO_DOCUMENT, Observation
from ..schema import CheckItem, Regex, SecretValue
from ..targets import Command


class CommandCheck(CheckItem):
    """A command: exit code, stdout/stderr regex, conditions on JSON stdout."""

    kind: ClassVar[str] = "command"
    argv: list[str] | None = None
    shell: str | None = None
    cwd: str | None = None
    env: dict[str, str | SecretValue] = {}
    exit_code: int | list[int] = 0
    stdout_regex: Regex | None = None
    stderr_regex: Regex | None = None
    stdout_not_regex: Regex | None = None
    json_stdout: bool = Field(False, description="parse stdout as JSON for expect/warn (implied by expect/warn)")

    @model_validator(mode="after")
    def _argv_or_shell(self) -> "CommandCheck":
        if bool(self.argv) == bool(self.shell):
            raise ValueError("expected exactly one of argv or shell")
        return self

    def env_values(self) -> dict[str, str]:
        return {k: (v.value if isinstance(v, SecretValue) else v) for k, v in self.env.items()}


KEEP = 64 << 10  # bytes kept of each stream's head and of its tail
JSON_LIMIT = 16 << 20  # stdout parsed as JSON is read whole up to this size
JSON_DEPTH = 200  # deeper documents are refused (the report serialiser and parsers recurse)
_EXCERPT = 2000  # characters of each stream in the evidence


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

    def __init__(self, searches: list[_Search], whole: bool = False) -> None:
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


def _command(item: CommandCheck, ctx) -> Command:
    # no cwd on a remote host: the host's own default (its user's home), not this machine's folder
    cwd = ctx.path(item.cwd) if item.cwd else None if ctx.remote else ctx.base_dir
    return Command(argv=list(item.argv) if item.argv else None, shell=item.shell, env=item.env_values(),
                   cwd=None if cwd is None else str(cwd))


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


# lines worth a reader's first look: a test runner's FAILED line, a checksum tool's mismatch
_TELLING = re.compile(r"fail|error|fatal|exception|traceback|denied|refused|not found|mismatch|cannot|unable|timed? ?out",
                      re.IGNORECASE)


def telling_lines(stdout: str, stderr: str, limit: int = 300) -> str:
    """The lines of both streams that explain a result, whole lines only, at most ``limit``
    characters: the lines that say what went wrong (FAILED, error, mismatch ...) from either
    stream, else the last line of each; redacted.

    >>> telling_lines("a.tar: OK\\nb.tar: FAILED\\nsha256sum: WARNING: 1 computed checksum did NOT match\\n",
    ...               "sha256sum: c.tar: No such file or directory\\n")
    'stdout: b.tar: FAILED; stderr: sha256sum: c.tar: No such file or directory'
    >>> telling_lines("9/9 passed\\n", "")
    'stdout: 9/9 passed'
    """
    picked: list[tuple[str, str]] = []
    for name, text in (("stdout", stdout), ("stderr", stderr)):
        lines = [line.strip() for line in text.splitlines()[-200:] if line.strip()]
        matters = [line for line in lines if _TELLING.search(line)]
        picked += [(name, line) for line in (matters[-3:] or lines[-1:])]
    out, used = [], 0
    for name, line in picked:
        line = REDACTOR.excerpt(line, limit)
        if used + len(line) > limit and out:
            break  # whole lines only: a word cut in half explains nothing
        out.append((name, line))
        used += len(line) + 3
    parts: dict[str, list[str]] = {}
    for name, line in out:
        parts.setdefault(name, []).append(line)
    return "; ".join(f"{name}: {' | '.join(lines)}" for name, lines in parts.items())


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
    try:
        return loads_bounded(text, JSON_DEPTH), None
    except TooDeep:
        return NO_DOCUMENT, f"is nested deeper than {JSON_DEPTH} levels: not usable JSON"
    except ValueError as exc:
        return NO_DOCUMENT, f"is not JSON ({exc})"


def observe(item: CommandCheck, ctx) -> Observation:
    shown = " ".join(item.argv) if item.argv else item.shell
    started = time.perf_counter()
    searches = {key: _Search(pattern, unsure=key == "stdout_not_regex_found")
                for key, pattern in (("stdout_regex_found", item.stdout_regex), ("stderr_regex_found", item.stderr_regex),
                                     ("stdout_not_regex_found", item.stdout_not_regex)) if pattern}
    wants_json = bool(item.json_stdout or item.expect or item.warn)
    out = _Stream([s for k, s in searches.items() if k.startswith("stdout")], whole=wants_json)
    err = _Stream([s for k, s in searches.items() if k.startswith("stderr")])
    try:
        ran = ctx.target.run(_command(item, ctx), out, err, item.timeout)
    except OSError as exc:
        cause = exc.strerror or str(exc)
        if exc.filename and str(exc.filename) != (item.argv[0] if item.argv else ""):
            cause = f"{exc.filename}: {cause}"  # not the program: its working directory (or the shell)
        return Observation({"command": shown}, error=f"cannot run {shown!r}: {cause}")
    ending = ran.ending
    out.finish()
    err.finish()
    values: dict = {"command": shown, "exit_code": ran.exit_code,
                    "duration_s": round(time.perf_counter() - started, 4)}
    out_text, err_text = out.text(), err.text()
    details: dict = {"stdout_tail": _excerpt(out_text), "stderr_tail": _excerpt(err_text)}
    for name, stream, text in (("stdout", out, out_text), ("stderr", err, err_text)):
        if stream.omitted() > 0:
            details[f"{name}_bytes"] = stream.size
            details[f"{name}_head"] = _excerpt(text, keep="head")
    if ran.note:
        details["background"] = ran.note
    telling = telling_lines(out_text, err_text)
    explain = f"output: {telling}" if telling else None
    if ending == "timeout":
        searching = sum(search.seconds for search in searches.values())
        why = (f"; searching its {_size(out.size + err.size)} of output for the regexes took {searching:.1f}s of it"
               if searching >= 0.25 * item.timeout else "")
        return Observation(values, error=f"{shown!r} did not finish within {item.timeout:g}s (killed){why}",
                           details=details, explain=explain)
    if ending == "truncated":  # a target that transfers a bounded part of the output
        details["truncated"] = ran.note
        if searches or wants_json:
            return Observation(values, error=f"{shown!r}: {ran.note}: its output conditions were not evaluated",
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


KIND = Kind(name="command", schema=CommandCheck, observe=observe, limits=limits,
            summary="a command: exit code, stdout/stderr regex, conditions on JSON stdout",
            secret_fields=("env",), host_level=True)
