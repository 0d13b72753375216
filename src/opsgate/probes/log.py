"""``log``: count regex matches in the last N lines or the last T minutes of log files.

Files come from a glob; each matching log is read with its rotated siblings
(``app.log.1``, ``app.log.2.gz``), oldest first, so "the last 100 lines" spans a
rotation. With several logs (``worker-*.log``) the window applies to each of them.

How the reading stays bounded (time and memory), whatever the file:

- ``last_lines`` seeks back from the end in blocks (64 KiB, doubling up to 1 MiB) counting
  newlines, then reads forward from there: the cost depends on the tail, not the file's size.
  If the current file has fewer lines, the previous rotation supplies the rest (a ``.gz`` is
  decompressed forward: once to count its lines, once to read them; on a remote host both
  happen there, and only the lines of the window cross the wire).
- ``last_minutes`` walks back from the end line by line reading each line's time, and
  stops after 200 timed lines in a row older than the window (a little disorder between
  writers is tolerated); the window then is read forward. A line without a time belongs
  to the line before it (a traceback). A ``.gz`` rotation the window reaches is read
  forward, time-filtered; on a remote host its window is found from its end first (its last
  1,024 lines, then 4x as many, until they start before the window; the host decompresses
  and skips the rest), so a rotation's few minutes cross the wire, not the rotation.
- A line is searched whole up to 1 MiB; a longer one (or a file without any newline) is
  searched in 1 MiB windows overlapping by 64 KiB: a match up to 56 KiB long is always
  found, ``^`` and ``$`` mean the line's real start and end, and look-arounds see 4 KiB
  beyond the match. Memory never holds more than a window and a block.
- Every block read checks the item's deadline; running out is a failure naming the file.

Times understood: ISO 8601 / RFC 3339 (``T`` or space, fractions, ``Z`` or offsets;
RFC 5424 syslog and journald short-iso are of this form), RFC 3164 syslog
(``Nov 30 21:14:32``: the most recent year that does not put it more than a day in the
future), common/combined log format (``[30/Nov/2026:21:14:32 +0000]``), epoch seconds at
the start of a line or as a JSON ``"ts"``/``"time"``/``"timestamp"`` field (milliseconds
too there); the leftmost of these in a line's first 1 KiB is its time. A stamp without a
zone is local time. ``timestamp_format`` (strptime) replaces them all, found with
``timestamp_regex`` (first group, or whole match) or else where the format matches.

Reading nothing: an empty log passes with ``lines_read: 0`` in the evidence (a user who
wants a non-empty log says so: ``expect: ["lines_read > 0"]``); a quiet log whose
newest line is older than the window passes the same way. But lines whose time cannot be
read are an error, never a pass: "no timestamp could be read in the last N lines of
app.log; set timestamp_format". Evidence names a line ``app.log:151`` when its number is
cheap to know (the newlines before the window are counted up to 32 MiB, by the target:
a remote host counts them itself and sends the number, so a remote read moves the window,
not the file) and ``app.log byte 2147480012`` otherwise; a long line is shown as a redacted excerpt around the match.
``bytes_read`` in the values says how much was read.

>>> import pathlib, tempfile
>>> from opsgate.probes import ProbeContext
>>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "app.log").write_text("ok\\nERROR disk full\\n")
>>> obs = observe(LogCheck(name="app", path="app.log", patterns=[{"regex": "ERROR"}]), ProbeContext(d))
>>> obs.values["matches"], obs.details["lines"]["ERROR"]
({'ERROR': 1}, ['app.log:2: ERROR disk full'])
"""

from __future__ import annotations

import calendar
import glob
import gzip
import os
import re
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar, Iterable, Iterator

from pydantic import Field, field_validator, model_validator

from ..conditions import Condition
from ..kinds import Kind
from ..redact import REDACTOR
from ..results import Observation
from ..schema import CheckItem, LogPattern, Regex, Strict
from ..targets import READ_AHEAD, FileStat, RangeFile, local as local_target


class RatedPattern(LogPattern):
    """A pattern counted in the window: at most ``max`` lines (0 unless a per-minute limit is
    given), and with ``last_minutes`` at most ``max_per_minute`` matches per minute of it."""

    max: int | None = Field(None, ge=0, description="most matching lines allowed (0 unless max_per_minute or "
                                                     "warn_per_minute is given)")
    max_per_minute: float | None = Field(None, ge=0, description="most matching lines per minute of the window "
                                                                 "(needs last_minutes): matches / last_minutes")
    warn_per_minute: float | None = Field(None, ge=0, description="matching lines per minute above which it warns")

    @model_validator(mode="after")
    def _count_limit(self) -> "RatedPattern":
        if self.max is None and self.max_per_minute is None and self.warn_per_minute is None:
            self.max = 0
        return self


class RequiredLine(Strict):
    """A line that must be present: at least ``min`` lines matching ``regex`` in its window (its
    own ``within_last_lines``/``within_last_minutes``, else the check's)."""

    regex: Regex
    min: int = Field(1, ge=1, description="matching lines needed")
    ignore_case: bool = False
    within_last_lines: int | None = Field(None, ge=1, description="look in the last N lines (default: the "
                                                                  "check's window)")
    within_last_minutes: float | None = Field(None, gt=0, description="look in the last T minutes (default: the "
                                                                      "check's window)")


class LogCheck(CheckItem):
    """Log files by glob (rotated ones too): pattern counts and rates, and lines that must be
    present, over the last N lines or T minutes.

    ``patterns`` limit how many lines match (``max``, ``warn_max``) and, with ``last_minutes``,
    how many per minute of the window (``max_per_minute``, ``warn_per_minute``: the count divided
    by ``last_minutes``; values ``per_minute``). ``require`` names lines that must be there
    ("InnerWorldModel initialised" since the last start): fewer than ``min`` matching lines fails
    naming the pattern and the window read (values ``required``); a missing or empty log has none.
    """

    kind: ClassVar[str] = "log"
    path: str = Field(description="file or glob; relative to the environment's base_dir")
    rotated: bool = Field(True, description="also read PATH.1, PATH.2.gz ...")
    last_lines: int | None = Field(None, ge=1)
    last_minutes: float | None = Field(None, gt=0)
    patterns: list[RatedPattern] = Field([], description="regexes whose matching lines are counted and limited "
                                                         "(count, and per minute with last_minutes)")
    require: list[RequiredLine] = Field([], description='lines that must be present, e.g. [{regex: "InnerWorldModel '
                                                        'initialised", within_last_minutes: 30}]')
    missing_ok: bool = False
    max_evidence_lines: int = 20
    timestamp_format: str | None = Field(None, description='strptime format of the time in each line, e.g. '
                                         '"%d.%m.%Y %H:%M:%S" (for last_minutes; replaces the built-in formats)')
    timestamp_regex: Regex | None = Field(None, description="where the time is in a line: the first group (or the "
                                          "whole match) is read with timestamp_format")

    @field_validator("timestamp_format")
    @classmethod
    def _timestamp_format_readable(cls, value: str | None) -> str | None:
        if value is not None:
            strptime_regex(value)
        return value

    @model_validator(mode="after")
    def _timestamp_fields(self) -> "LogCheck":
        if not self.patterns and not self.require:
            raise ValueError("expected patterns (lines counted) or require (lines that must be present)")
        if self.timestamp_regex and not self.timestamp_format:
            raise ValueError("timestamp_regex needs timestamp_format (how to read what it finds)")
        timed = self.last_minutes or any(r.within_last_minutes for r in self.require)
        if self.timestamp_format and not timed:
            raise ValueError("timestamp_format is read only with last_minutes")
        rated = [p.regex for p in self.patterns if p.max_per_minute is not None or p.warn_per_minute is not None]
        if rated and not self.last_minutes:
            raise ValueError(f"max_per_minute/warn_per_minute of /{rated[0]}/ need last_minutes (a rate is the "
                             "matches per minute of a time window)")
        regexes = [r.regex for r in self.require]
        if len(set(regexes)) < len(regexes):
            raise ValueError("expected each require regex once")
        return self

    def windows(self) -> dict[tuple[int | None, float | None], list]:
        """The windows to read, ``(last_lines, last_minutes)``, each with what is looked for in it:
        the patterns in the check's window, each requirement in its own (or the check's)."""
        own = (self.last_lines, self.last_minutes)
        out: dict[tuple[int | None, float | None], list] = {own: list(self.patterns)} if self.patterns else {}
        for line in self.require:
            key = (line.within_last_lines, line.within_last_minutes)
            out.setdefault(key if key != (None, None) else own, []).append(line)
        return out


def window_name(last_lines: int | None, last_minutes: float | None) -> str:
    """How a window is named in messages.

    >>> window_name(100, None), window_name(None, 30), window_name(None, None)
    ('last 100 lines', 'last 30 min', 'whole file')
    """
    parts = ([f"last {last_lines} lines"] if last_lines else []) + ([f"last {last_minutes:g} min"]
                                                                    if last_minutes else [])
    return " and ".join(parts) or "whole file"


BLOCK = 1 << 20  # bytes read at a time
FIRST_BLOCK = 64 << 10  # reading backwards starts this small and doubles up to BLOCK: a short tail of
                        # a remote log moves kilobytes, not a whole block
LINE_CAP = 1 << 20  # a line up to this long is searched whole; a longer one in windows
OVERLAP = 1 << 16  # consecutive windows of a long line share this much
EDGE = 4096  # a window's match must be this far from a cut edge (look-around and redaction context)
HEAD = 1024  # a line's time is looked for in its first bytes
DISORDER = 200  # timed lines older than the window, in a row, before the backward walk stops
UNSTAMPED_LIMIT = 10_000  # lines without any time before "no timestamp could be read"
GZ_TAIL_LINES = 1024  # a remote .gz rotation's last lines first looked at for a last_minutes window
GZ_PROBE_BYTES = 64 << 10  # bytes of such a tail read to see whether it starts before the window
COUNT_PREFIX = 32 << 20  # line numbers are counted when the part before the window is this small
EXCERPT = 400  # evidence characters per line
BEFORE = 120  # of which before the match


class NoTimestamp(Exception):
    """The lines of a ``last_minutes`` window carry no readable time."""


# --- where the bytes come from --------------------------------------------------------------

class _Reader:
    """Reads blocks of the target's files within a deadline, counting the bytes
    (``bytes_read`` in the values)."""

    def __init__(self, deadline: float, timeout: float, target=None) -> None:
        self.deadline, self.timeout, self.bytes = deadline, timeout, 0
        self.target = target or local_target()
        # this check's stats of its files (with the bytes a remote target sent along): opening a
        # file again, or counting its lines, reuses them within the check, never beyond it
        self.known: dict[str, FileStat] = {}

    def left(self) -> float:
        """Seconds before the deadline (TimeoutError once it passed)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"reading took longer than the timeout ({self.timeout:g}s)")
        return left

    @contextmanager
    def open(self, path: Path) -> Iterator:
        """The file, decompressed when it is a ``.gz``; seekable when it is not."""
        with self.target.open(str(path), self.deadline, known=self.known.get(str(path))) as raw:
            if isinstance(raw, RangeFile):
                self.known.setdefault(str(path), raw.stat)
            if not _is_gz(path):
                yield raw
                return
            with gzip.GzipFile(filename=str(path), mode="rb", fileobj=raw) as handle:
                yield handle

    @contextmanager
    def open_part(self, part: "_Part") -> Iterator[tuple]:
        """The part's file at its start, and how many lines of a ``.gz`` the target skipped on its
        side (a remote host sends only what follows them; here none are: reading is free)."""
        if part.end is not None:
            with self.open(part.path) as handle:
                handle.seek(part.start)
                yield handle, 0
            return
        handle, skipped = self.target.open_gz_after(str(part.path), part.start, self.deadline)
        with handle:
            yield handle, skipped

    def gz_lines(self, path: Path) -> int:
        """The lines of a ``.gz``, counted where it is (a remote host sends the number)."""
        try:
            return self.target.gz_line_count(str(path), self.left())
        except TimeoutError:
            raise TimeoutError(f"{path}: reading took longer than the timeout ({self.timeout:g}s)") from None
        except (OSError, EOFError, zlib.error) as exc:  # a corrupt or truncated .gz among them
            raise OSError(f"{path}: cannot read: {exc}") from None

    def read(self, handle, size: int, path: Path) -> bytes:
        if time.monotonic() > self.deadline:
            raise TimeoutError(f"{path}: reading took longer than the timeout ({self.timeout:g}s)")
        try:
            data = handle.read(size)
        except TimeoutError:  # the target's own bound on one read
            raise TimeoutError(f"{path}: reading took longer than the timeout ({self.timeout:g}s)") from None
        except (OSError, EOFError, zlib.error) as exc:  # a corrupt or truncated .gz among them
            raise OSError(f"{path}: cannot read: {exc}") from None
        self.bytes += len(data)
        return data

    def count_newlines(self, path: Path, size: int) -> int:
        """The lines ending in the file's first ``size`` bytes, counted where the file is (a
        remote target sends the number, not the bytes); they count as read."""
        known = self.known.get(str(path))
        if known is not None and known.data is not None and known.data_at == 0 and len(known.data) >= size:
            self.bytes += size  # already here: counted without asking the target again
            return known.data[:size].count(b"\n")
        try:
            count = self.target.count_newlines(str(path), 0, size, self.left())
        except TimeoutError:
            raise TimeoutError(f"{path}: reading took longer than the timeout ({self.timeout:g}s)") from None
        except OSError as exc:
            raise OSError(f"{path}: cannot read: {exc}") from None
        self.bytes += size
        return count

    def read_at(self, handle, offset: int, size: int, path: Path) -> bytes:
        handle.seek(offset)
        return self.read(handle, size, path)


def _is_gz(path: Path) -> bool:
    return path.name.endswith(".gz")


def _pieces(handle, path: Path, reader: _Reader, limit: int | None) -> Iterator[tuple[int, bytes, bool, bool]]:
    """(offset of the line, piece, first piece of the line, last piece) from the handle's
    position, at most ``limit`` bytes. A line longer than LINE_CAP comes as overlapping windows."""
    buf, base, line_at, first = b"", 0, 0, True
    while True:
        size = BLOCK if limit is None else min(BLOCK, limit)
        data = reader.read(handle, size, path) if size > 0 else b""
        if limit is not None:
            limit -= len(data)
        if not data:
            if buf or not first:
                yield line_at, buf, first, True
            return
        buf += data
        pos = 0
        while (newline := buf.find(b"\n", pos)) >= 0:
            yield line_at, buf[pos:newline], first, True
            pos, first = newline + 1, True
            line_at = base + pos
        buf, base = buf[pos:], base + pos
        while len(buf) > LINE_CAP:
            yield line_at, buf[:LINE_CAP], first, False
            first = False
            buf, base = buf[LINE_CAP - OVERLAP:], base + LINE_CAP - OVERLAP


def _tail_start(handle, path: Path, end: int, n: int, reader: _Reader) -> tuple[int, int]:
    """Offset where the last ``n`` lines of ``[0, end)`` start, and how many lines that is
    (fewer when the file is shorter): read backwards, block by block."""
    if end == 0:
        return 0, 0
    pos = end - 1 if reader.read_at(handle, end - 1, 1, path) == b"\n" else end
    found, step = 0, FIRST_BLOCK  # newlines seen, each the end of the line before a counted one
    while pos > 0:
        size, step = min(step, pos), min(step * 2, BLOCK)
        pos -= size
        block = reader.read_at(handle, pos, size, path)
        if found + block.count(b"\n") < n:
            found += block.count(b"\n")
            continue
        i = len(block)
        while (j := block.rfind(b"\n", 0, i)) >= 0:
            found += 1
            if found == n:
                return pos + j + 1, n
            i = j
    return 0, found + 1


def _reverse_heads(handle, path: Path, end: int, reader: _Reader) -> Iterator[tuple[int, bytes]]:
    """(start offset, first HEAD bytes) of each line of ``[0, end)``, newest first."""
    pos, carry = end, b""  # carry: the first bytes from pos on (the head of a line begun earlier)
    step = FIRST_BLOCK
    while pos > 0:
        size, step = min(step, pos), min(step * 2, BLOCK)
        pos -= size
        block = reader.read_at(handle, pos, size, path)
        data = block + carry
        i = len(block)
        while (j := block.rfind(b"\n", 0, i)) >= 0:
            if pos + j + 1 < end:
                yield pos + j + 1, data[j + 1:j + 1 + HEAD].split(b"\n", 1)[0]
            i = j
        carry = data[:HEAD]
    if end > 0:
        yield 0, carry.split(b"\n", 1)[0]


# --- times ---------------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                        "Nov", "Dec"), 1)}
_MON = "(?:" + "|".join(_MONTHS) + ")"
_BUILTIN = re.compile(
    r"(?P<iso>(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?(Z|[+-]\d\d(?::?\d\d)?)?)"
    rf"|(?P<clf>\[(\d{{1,2}})/({_MON})/(\d{{4}}):(\d\d):(\d\d):(\d\d) ([+-]\d{{4}})\])"
    rf"|(?P<bsd>^(?:<\d{{1,3}}>)?({_MON}) ([ \d]\d) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?)"
    r"|(?P<epoch>^(\d{9,10}(?:\.\d+)?)(?![\d.]))"
    r"|(?P<json>\"(?:ts|time|timestamp)\"\s*:\s*(\d{10,13}(?:\.\d+)?)(?![\d.]))"
)
_STRPTIME = {"Y": r"\d{4}", "y": r"\d\d", "m": r"\d{1,2}", "d": r"\d{1,2}", "j": r"\d{1,3}", "H": r"\d{1,2}",
             "I": r"\d{1,2}", "M": r"\d{1,2}", "S": r"\d{1,2}", "f": r"\d{1,6}", "p": r"(?:AM|PM|am|pm)",
             "b": r"[A-Za-z]{3}", "B": r"[A-Za-z]+", "a": r"[A-Za-z]{3}", "A": r"[A-Za-z]+",
             "z": r"(?:Z|[+-]\d\d:?\d\d)", "Z": r"[A-Za-z]{1,5}", "%": "%"}


def strptime_regex(fmt: str) -> str:
    """A regex that finds text written in the strptime format ``fmt`` (ValueError if it cannot).

    >>> strptime_regex("%d.%m.%Y %H:%M:%S")
    '\\\\d{1,2}\\\\.\\\\d{1,2}\\\\.\\\\d{4}\\\\s+\\\\d{1,2}:\\\\d{1,2}:\\\\d{1,2}'
    """
    out, i = [], 0
    while i < len(fmt):
        char = fmt[i]
        if char == "%":
            directive = fmt[i + 1:i + 2]
            if directive not in _STRPTIME:
                raise ValueError(f"%{directive} is not a directive opsgate reads; known: "
                                 + " ".join("%" + d for d in _STRPTIME))
            out.append(_STRPTIME[directive])
            i += 2
            continue
        out.append(r"\s+" if char.isspace() else re.escape(char))
        i += 1
    if not re.search(r"%[HI]", fmt) or not re.search(r"%[dj]", fmt):
        raise ValueError("a timestamp format needs an hour (%H or %I) and a day (%d or %j)")
    return "".join(out)


def _aware(stamp: datetime) -> float:
    """Seconds since the epoch; a naive stamp is local time, as loggers write them."""
    return stamp.timestamp()


def _zone(text: str | None) -> timezone | None:
    if not text:
        return None
    if text == "Z":
        return timezone.utc
    digits = text[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) >= 4 else 0)
    return timezone(timedelta(minutes=minutes if text[0] == "+" else -minutes))


def _micro(fraction: str | None) -> int:
    return int((fraction + "000000")[:6]) if fraction else 0


class Clock:
    """Reads a line's time (seconds since the epoch) in the formats of the module docstring.

    >>> c = Clock(now=1796073300.0)
    >>> c.read("2026-11-30T21:14:32Z INFO up"), c.read("[30/Nov/2026:21:14:32 +0000] GET /")
    (1796073272.0, 1796073272.0)
    >>> c.read('{"level":"error","ts":1764537272.5}'), c.read("no time here")
    (1764537272.5, None)
    """

    def __init__(self, now: float, fmt: str | None = None, regex: str | None = None) -> None:
        self.now, self.fmt = now, fmt
        self.find = re.compile(regex) if regex else re.compile(strptime_regex(fmt)) if fmt else None

    def read(self, head: str) -> float | None:
        try:
            return self._user(head) if self.fmt else self._builtin(head)
        except (ValueError, OverflowError, OSError):  # 30 February, hour 25, year 1 ...: not a time
            return None

    def _user(self, head: str) -> float | None:
        match = self.find.search(head)
        if not match:
            return None
        stamp = datetime.strptime(match.group(1) if match.re.groups else match.group(0), self.fmt)
        if "%Y" not in self.fmt and "%y" not in self.fmt:
            return self._infer_year(stamp)
        return _aware(stamp)

    def _builtin(self, head: str) -> float | None:
        m = _BUILTIN.search(head)
        if not m:
            return None
        g = m.groups()
        if m.group("iso"):
            stamp = datetime(int(g[1]), int(g[2]), int(g[3]), int(g[4]), int(g[5]), int(g[6]), _micro(g[7]),
                             _zone(g[8]))
            return _aware(stamp)
        if m.group("clf"):
            stamp = datetime(int(g[12]), _MONTHS[g[11]], int(g[10]), int(g[13]), int(g[14]), int(g[15]),
                             tzinfo=_zone(g[16]))
            return _aware(stamp)
        if m.group("bsd"):
            return self._infer_year(datetime(2000, _MONTHS[g[18]], int(g[19]), int(g[20]), int(g[21]), int(g[22]),
                                             _micro(g[23])))
        if m.group("epoch"):
            value = float(g[25])
            return value if 946684800 <= value <= self.now + 366 * 86400 else None  # 2000 .. next year
        value = float(g[27])
        return value / 1000 if value > 1e11 else value  # milliseconds in a JSON field

    def _infer_year(self, stamp: datetime) -> float | None:
        """The most recent year that does not put the stamp more than a day in the future."""
        year = datetime.fromtimestamp(self.now).year
        for candidate in range(year + 1, year - 8, -1):
            try:
                seconds = _aware(stamp.replace(year=candidate))
            except ValueError:  # 29 February
                continue
            if seconds <= self.now + 86400:
                return seconds
        return None


def _head(raw: bytes) -> str:
    return raw[:HEAD].decode("utf-8", "replace")


# --- matching ------------------------------------------------------------------------------

def _search(regex: re.Pattern, text: str, first: bool, last: bool) -> re.Match | None:
    """A match in a whole line, or in a window of one away from the window's cut edges."""
    if first and last:
        return regex.search(text)
    for match in regex.finditer(text, 0 if first else EDGE):
        if last or match.end() <= len(text) - EDGE:
            return match
    return None


def _excerpt(text: str, regex: re.Pattern, match: re.Match, first: bool, last: bool) -> str:
    """The line, or a bounded excerpt around the match, redacted before it is cut (around a
    window's match, the redacted region stays EDGE inside the window's cut edges).

    >>> m = re.search("ERROR", "x" * 1000 + " ERROR password=hunter2 " + "y" * 1000)
    >>> e = _excerpt(m.string, m.re, m, True, True)
    >>> e[:3], len(e) <= EXCERPT + 2, "x ERROR password=*** y" in e
    ('…xx', True, True)
    """
    if first and last and len(text) <= EXCERPT:
        return REDACTOR.text(text)
    low, high = max(0, match.start() - EDGE), min(len(text), match.end() + EDGE)
    region = REDACTOR.text(text[low:high])
    again = regex.search(region)  # where the match is once redaction moved things
    at = again.start() if again else min(match.start() - low, len(region))
    before = REDACTOR.excerpt(region[:at], BEFORE, keep="tail")
    after = REDACTOR.excerpt(region[at:], EXCERPT - len(before))
    head = "…" if low > 0 or len(before) < at or not first else ""
    tail = "…" if high < len(text) or len(after) < len(region) - at or not last else ""
    return f"{head}{before}{after}{tail}"


class Matcher:
    """Counts the lines each pattern matches; keeps the first few, redacted, as evidence."""

    def __init__(self, patterns: list[LogPattern], max_evidence: int) -> None:
        self.compiled = [(p.regex, re.compile(p.regex, re.IGNORECASE if p.ignore_case else 0)) for p in patterns]
        self.matches = {p.regex: 0 for p in patterns}
        self.found: dict[str, list[str]] = {p.regex: [] for p in patterns}
        self.max_evidence, self.lines, self._hit = max_evidence, 0, set()

    def piece(self, where: str, text: str, first: bool = True, last: bool = True, column: int = 0) -> None:
        """One line, or one window of a long line (``column``: where the window starts in it)."""
        if first:
            self._hit = set()
        for key, regex in self.compiled:
            if key in self._hit or not (match := _search(regex, text, first, last)):
                continue
            self._hit.add(key)
            self.matches[key] += 1
            if len(self.found[key]) < self.max_evidence:
                at = "" if first and last and len(text) <= EXCERPT else f" col {column + match.start() + 1}"
                self.found[key].append(f"{REDACTOR.text(where)}{at}: {_excerpt(text, regex, match, first, last)}")
        if last:
            self.lines += 1


def count_patterns(patterns: list[LogPattern], lines: Iterable[tuple[str, str]],
                   max_evidence: int) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Count the (where, line) pairs each pattern matches; keep the first matching lines, redacted.

    >>> count_patterns([LogPattern(regex="ERROR")], [("a.log:1", "ok"), ("a.log:2", "ERROR x")], 5)
    ({'ERROR': 1}, {'ERROR': ['a.log:2: ERROR x']})
    """
    matcher = Matcher(patterns, max_evidence)
    for where, line in lines:
        matcher.piece(where, line)
    return matcher.matches, matcher.found


# --- which files, which part of them --------------------------------------------------------

def _files(item: LogCheck, ctx, reader: _Reader) -> dict[Path, FileStat]:
    """The log files (rotations included) and their stat, oldest first."""
    pattern = str(ctx.path(item.path))
    # a single file comes with its tail (a remote target sends its last bytes along): often the
    # whole window, read without another round trip
    found = {s.path: s for s in reader.target.glob(pattern, reader.left(), read_ahead=READ_AHEAD + 1)}
    if item.rotated:
        for base in list(found) or [pattern]:
            found.update((s.path, s) for s in reader.target.glob(glob.escape(base) + ".*", reader.left())
                         if re.search(r"\.\d+(\.gz)?$", s.path))
    stats = {Path(p): s for p, s in found.items() if s.is_file}
    reader.known.update((p, s) for p, s in found.items() if s.is_file)
    files = list(stats)
    # Within one log, the rotation number says which is older (app.log.2.gz < app.log.1 < app.log),
    # whatever the mtimes say (compression or a copy to scratch resets them); logs by mtime.
    newest: dict[str, float] = {}
    for p in files:
        newest[_base(p)] = max(newest.get(_base(p), 0.0), stats[p].mtime)
    return {p: stats[p] for p in sorted(files, key=lambda p: (newest[_base(p)], _base(p), -_rotation(p)))}


def _rotation(path: Path) -> int:
    match = re.search(r"\.(\d+)(\.gz)?$", path.name)
    return int(match.group(1)) if match else 0


def _base(path: Path) -> str:
    return re.sub(r"\.\d+(\.gz)?$", "", str(path))


@dataclass
class _Part:
    """The part of one file to read: from byte ``start`` to ``end`` (plain), or after the first
    ``start`` lines (gzip, ``end`` None)."""

    path: Path
    start: int
    end: int | None


def _last_lines(log: list[Path], n: int, reader: _Reader) -> dict[Path, _Part]:
    parts: dict[Path, _Part] = {}
    for path in reversed(log):
        if n <= 0:
            break
        if _is_gz(path):
            total = reader.gz_lines(path)
            parts[path] = _Part(path, max(0, total - n), None)
            n -= min(total, n)
        else:
            with reader.open(path) as handle:
                end = handle.seek(0, os.SEEK_END)
                start, got = _tail_start(handle, path, end, n, reader)
            parts[path] = _Part(path, start, end)
            n -= got
    return parts


class _Walk:
    """The backward walk of ``last_minutes`` over one log: where its window starts."""

    def __init__(self, clock: Clock, since: float) -> None:
        self.clock, self.since = clock, since
        self.lines = self.stamped = self.old_in_a_row = 0

    def stamp(self, head: bytes) -> float | None:
        """The line's time; too many lines without one are NoTimestamp."""
        self.lines += 1
        stamp = self.clock.read(_head(head))
        if stamp is None and not self.stamped and self.lines >= UNSTAMPED_LIMIT:
            raise NoTimestamp(self.lines)
        self.stamped += stamp is not None
        return stamp

    def line(self, head: bytes) -> bool | None:
        """Walking back: True, the line is in the window; False, the walk may stop; None, walk on."""
        stamp = self.stamp(head)
        if stamp is None:
            return None
        if stamp >= self.since:
            self.old_in_a_row = 0
            return True
        self.old_in_a_row += 1
        return False if self.old_in_a_row >= DISORDER else None


def _gz_starts_before(path: Path, walk: _Walk, reader: _Reader) -> bool:
    """Whether a gzip log's first timed line is older than the window (forward only)."""
    with reader.open(path) as handle:
        for _, piece, first, _last in _pieces(handle, path, reader, None):
            if first and (stamp := walk.stamp(piece[:HEAD])) is not None:
                return stamp < walk.since
    return False


def _gz_window_start(path: Path, walk: _Walk, reader: _Reader) -> int:
    """Lines of a ``.gz`` rotation before a ``last_minutes`` window, found from its end, where
    the target skips lines on its side (a remote host: only the window's lines cross the wire,
    not the whole rotation); 0, to read it whole, on a target that decompresses here anyway or
    when the window reaches the rotation's first lines. Tails of GZ_TAIL_LINES, then 4x as many,
    until one starts with timed lines older than the window."""
    if not reader.target.skips_gz_lines_itself:
        return 0
    total, tail = reader.gz_lines(path), GZ_TAIL_LINES
    while tail < total:
        handle, skipped = reader.target.open_gz_after(str(path), total - tail, reader.deadline)
        older = newer = 0
        with handle:
            for _, piece, first, _last in _pieces(handle, path, reader, GZ_PROBE_BYTES):
                if first and (stamp := walk.stamp(piece[:HEAD])) is not None:
                    newer += stamp >= walk.since
                    older += stamp < walk.since
                    if newer or older >= DISORDER:
                        break
        if older and not newer:
            return skipped
        tail *= 4
    return 0


def _last_minutes(log: list[Path], walk: _Walk, reader: _Reader) -> dict[Path, _Part]:
    parts: dict[Path, _Part] = {}
    for path in reversed(log):
        if walk.old_in_a_row:  # the newer file's oldest timed lines are before the window: so is all this one
            break
        if _is_gz(path):  # from its lines in the window on (time-filtered); older ones only if it reaches them
            start = _gz_window_start(path, walk, reader)
            parts[path] = _Part(path, start, None)
            if start or _gz_starts_before(path, walk, reader):
                break
            continue
        with reader.open(path) as handle:
            end = handle.seek(0, os.SEEK_END)
            start, stop = end, False
            for offset, head in _reverse_heads(handle, path, end, reader):
                verdict = walk.line(head)
                if verdict is False:
                    stop = True
                    break
                if verdict:
                    start = offset
        # not stopped: the window may reach back past this file's start (its first lines may
        # continue the previous rotation's last), so read it whole; the time filter decides
        parts[path] = _Part(path, start if stop else 0, end)
        if stop:
            break
    return parts


def _first_number(part: _Part, reader: _Reader) -> int | None:
    """The number of the part's first line, when counting the lines before it is cheap."""
    if part.end is None or part.start == 0:
        return 1  # gzip parts are read from their first line on
    if part.start > COUNT_PREFIX:
        return None
    return reader.count_newlines(part.path, part.start) + 1


def _read(part: _Part, matcher: "Matcher | _Window", reader: _Reader, clock: Clock | None, since: float | None,
          current: float | None) -> float | None:
    """Match the part's lines (those in the window, if there is one); returns the time in force."""
    number = _first_number(part, reader)
    skip = part.start if part.end is None else 0  # gzip: lines before the part
    keep, where, column, name = False, "", 0, part.path.name
    with reader.open_part(part) as (handle, skipped):
        skip -= skipped  # skipped by the target: numbered, never read
        number = number + skipped if number is not None else None
        limit = None if part.end is None else part.end - part.start
        for offset, piece, first, last in _pieces(handle, part.path, reader, limit):
            if first:
                column = 0
                keep = skip <= 0
                skip -= 1
                if keep and clock is not None:
                    stamp = clock.read(_head(piece))
                    current = stamp if stamp is not None else current
                    keep = current is not None and current >= since
                where = f"{name}:{number}" if number is not None else f"{name} byte {part.start + offset}"
            if keep:
                if last and piece.endswith(b"\r"):
                    piece = piece[:-1]
                matcher.piece(where, piece.decode("utf-8", "replace"), first, last, column)
            column += LINE_CAP - OVERLAP
            if last and number is not None:
                number += 1
    return current


# --- the probe ------------------------------------------------------------------------------

class _Window:
    """One window read once for everything looked for in it: the counted patterns' matcher
    and the requirements' matcher see the same lines."""

    def __init__(self, last_lines: int | None, last_minutes: float | None, wanted: list, now: float,
                 max_evidence: int) -> None:
        self.last_lines, self.last_minutes = last_lines, last_minutes
        self.since = now - last_minutes * 60 if last_minutes else None
        counted = [p for p in wanted if isinstance(p, LogPattern)]
        self.counted = Matcher(counted, max_evidence) if counted else None
        required = [p for p in wanted if isinstance(p, RequiredLine)]
        self.required = Matcher(required, max_evidence) if required else None
        self.lines = 0

    def piece(self, where: str, text: str, first: bool = True, last: bool = True, column: int = 0) -> None:
        for matcher in (self.counted, self.required):
            if matcher is not None:
                matcher.piece(where, text, first, last, column)
        self.lines += last


def observe(item: LogCheck, ctx) -> Observation:
    reader = _Reader(time.monotonic() + item.timeout, item.timeout, ctx.target)
    try:
        stats = _files(item, ctx, reader)
    except (OSError, TimeoutError) as exc:
        return Observation({"files": []}, error=f"cannot list {ctx.path(item.path)}: {exc}")
    files = list(stats)
    values: dict = {"files": [str(p) for p in files]}
    now = time.time()
    windows = [_Window(lines, minutes, wanted, now, item.max_evidence_lines)
               for (lines, minutes), wanted in item.windows().items()]
    if not files and not item.missing_ok:
        return Observation(values, error=f"no log file matches {ctx.path(item.path)}")
    if item.last_minutes:
        values["since"] = datetime.fromtimestamp(now - item.last_minutes * 60, timezone.utc).isoformat(
            timespec="seconds")
    clock = Clock(now, item.timestamp_format, item.timestamp_regex)
    logs: dict[str, list[Path]] = {}
    for path in files:
        logs.setdefault(_base(path), []).append(path)
    try:
        for window in windows:
            for log in logs.values():
                _observe_log(log, stats, window, reader, clock if window.since is not None else None)
    except NoTimestamp as exc:
        expected = f"in the form of timestamp_format {item.timestamp_format!r}" if item.timestamp_format else ""
        hint = "check timestamp_format and timestamp_regex" if item.timestamp_format else "set timestamp_format"
        values.update(bytes_read=reader.bytes)
        lines = "line" if exc.args[0] == 1 else f"{exc.args[0]} lines"
        return Observation(values, error=f"no timestamp {expected + ' ' if expected else ''}could be read in the last "
                                         f"{lines} of {exc.args[1]}; {hint}")
    except (OSError, TimeoutError) as exc:
        values.update(bytes_read=reader.bytes)
        return Observation(values, error=str(exc))
    return _observation(item, values, windows, reader, [p.name for p in files])


def _observation(item: LogCheck, values: dict, windows: list[_Window], reader: _Reader,
                 names: list[str]) -> Observation:
    """The values and evidence of the windows read: counts, rates, required lines."""
    counted = next((w for w in windows if w.counted is not None), None)
    values.update(lines_read=(counted or windows[0]).lines, matches=counted.counted.matches if counted else {},
                  bytes_read=reader.bytes)
    if counted and item.last_minutes and any(p.max_per_minute is not None or p.warn_per_minute is not None
                                             for p in item.patterns):
        values["per_minute"] = {regex: round(n / item.last_minutes, 3) for regex, n in counted.counted.matches.items()}
    found = dict(counted.counted.found) if counted else {}
    explain, absent = [], []
    if item.require:
        values["required"], details_required = {}, {}
        needed = {line.regex: line.min for line in item.require}
        for window in windows:
            if window.required is None:
                continue
            values["required"].update(window.required.matches)
            details_required.update(window.required.found)
            for regex, count in window.required.matches.items():
                if count < needed[regex]:
                    absent.append(f"/{regex}/: {count} of {needed[regex]} in the "
                                  f"{window_name(window.last_lines, window.last_minutes)} ({window.lines} lines read "
                                  f"in {', '.join(names) or 'no file'})")
    first = [line for lines in found.values() for line in lines][:3]
    if absent:
        explain.append("absent: " + "; ".join(absent))
    if first:
        explain.append("first: " + " | ".join(first))
    details = {"lines": found}
    if item.require:
        details["required_lines"] = details_required
    return Observation(values, details=details, explain=" -- ".join(explain) or None)


def _observe_log(log: list[Path], stats: dict[Path, FileStat], window: _Window, reader: _Reader,
                 clock: Clock | None) -> None:
    """One log (a file and its rotations, oldest first): find the window, then read it."""
    since, last_lines = window.since, window.last_lines
    if since is None:
        parts = _last_lines(log, last_lines, reader) if last_lines else {p: _Part(p, 0, None if _is_gz(p)
                                                                                  else stats[p].size)
                                                                         for p in log}
    else:
        walk = _Walk(clock, since)
        try:
            parts = _last_minutes(log, walk, reader)
        except NoTimestamp as exc:
            raise NoTimestamp(exc.args[0], log[-1].name) from None
        if walk.lines and not walk.stamped:
            raise NoTimestamp(walk.lines, log[-1].name)
        if last_lines:  # both: the later start of the two in each file
            by_lines = _last_lines(log, last_lines, reader)
            parts = {p: _Part(p, max(part.start, by_lines[p].start), part.end)
                     for p, part in parts.items() if p in by_lines}
    current = None
    for path in log:
        if path in parts:
            current = _read(parts[path], window, reader, clock, since, current)


def limits(item: LogCheck) -> list[Condition]:
    out = pattern_limits(item.patterns, window_name(item.last_lines, item.last_minutes))
    for pattern in item.patterns:
        for level, rate in (("fail", pattern.max_per_minute), ("warn", pattern.warn_per_minute)):
            if rate is not None:
                out.append(Condition.compare(("per_minute", pattern.regex), "<=", rate, level,
                                             label=f"lines matching /{pattern.regex}/ per minute over the last "
                                                   f"{item.last_minutes:g} min <= {rate:g}"))
    for line in item.require:
        where = window_name(line.within_last_lines, line.within_last_minutes) if (
            line.within_last_lines or line.within_last_minutes) else window_name(item.last_lines, item.last_minutes)
        out.append(Condition.compare(("required", line.regex), ">=", line.min,
                                     label=f"required: lines matching /{line.regex}/ in {where} >= {line.min}"))
    return out


def pattern_limits(patterns: list[LogPattern], scope: str) -> list[Condition]:
    """``lines matching /ERROR/ in last 10 min <= 0`` (and the warn level) for each pattern.

    >>> [c.label for c in pattern_limits([LogPattern(regex="ERROR")], "last 10 min")]
    ['lines matching /ERROR/ in last 10 min <= 0']
    """
    out = []
    for pattern in patterns:
        path = ("matches", pattern.regex)
        if pattern.max is not None:  # None: limited per minute only
            out.append(Condition.compare(path, "<=", pattern.max, label=f"lines matching /{pattern.regex}/ in {scope} <= {pattern.max}"))
        if pattern.warn_max is not None:
            out.append(Condition.compare(path, "<=", pattern.warn_max, "warn",
                                         label=f"lines matching /{pattern.regex}/ in {scope} <= {pattern.warn_max}"))
    return out


KIND = Kind(name="log", schema=LogCheck, observe=observe, limits=limits,
            summary="log files by glob (rotated ones too): pattern counts and rates per minute, lines that must be "
                    "present, over the last N lines or T minutes",
            host_level=True)
