"""``log``: count regex matches in the last N lines or the last T minutes of log files.

Files come from a glob; rotated siblings (``app.log.1``, ``app.log.2.gz``) are read
too, oldest first, so "the last 100 lines" spans a rotation. For ``last_minutes``
a line's time is the first ISO-8601 timestamp in it (lines without one belong to the
line before). The matching lines, redacted, are the evidence.

>>> import pathlib, tempfile
>>> from opsgate.model import LogCheck
>>> from opsgate.probes import ProbeContext
>>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "app.log").write_text("ok\\nERROR disk full\\n")
>>> obs = observe(LogCheck(name="app", path="app.log", patterns=[{"regex": "ERROR"}]), ProbeContext(d))
>>> obs.values["matches"], obs.details["lines"]["ERROR"]
({'ERROR': 1}, ['app.log:2: ERROR disk full'])
"""

from __future__ import annotations

import glob
import gzip
import os
import re
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from ..conditions import Condition
from ..model import LogCheck, LogPattern
from ..redact import REDACTOR
from ..results import Observation

_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,]\d+)?(Z|[+-]\d{2}:?\d{2})?")
_MAX_LINE = 4096


def _files(item: LogCheck, ctx) -> list[Path]:
    pattern = str(ctx.path(item.path))
    found = set(glob.glob(pattern))
    if item.rotated:
        for base in list(found) or [pattern]:
            found.update(p for p in glob.glob(glob.escape(base) + ".*") if re.search(r"\.\d+(\.gz)?$", p))
    files = [Path(p) for p in found if os.path.isfile(p)]
    # Within one log, the rotation number says which is older (app.log.2.gz < app.log.1 < app.log),
    # whatever the mtimes say (compression or a copy to scratch resets them); logs by mtime.
    newest: dict[str, float] = {}
    for p in files:
        newest[_base(p)] = max(newest.get(_base(p), 0.0), p.stat().st_mtime)
    return sorted(files, key=lambda p: (newest[_base(p)], _base(p), -_rotation(p)))


def _rotation(path: Path) -> int:
    match = re.search(r"\.(\d+)(\.gz)?$", path.name)
    return int(match.group(1)) if match else 0


def _base(path: Path) -> str:
    return re.sub(r"\.\d+(\.gz)?$", "", str(path))


def _read_lines(path: Path, deadline: float):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if number % 10000 == 0 and time.monotonic() > deadline:
                raise TimeoutError(f"{path}: reading took longer than the timeout")
            yield number, line.rstrip("\n")[:_MAX_LINE]


def _line_time(line: str) -> float | None:
    match = _TIMESTAMP.search(line[:80])
    if not match:
        return None
    zone = match.group(3) or ""
    text = f"{match.group(1)}T{match.group(2)}{'+00:00' if zone == 'Z' else zone}"
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.astimezone()  # naive stamps are local time, as loggers write them
    return stamp.astimezone(timezone.utc).timestamp()


def observe(item: LogCheck, ctx) -> Observation:
    files = _files(item, ctx)
    values: dict = {"files": [str(p) for p in files]}
    if not files:
        if item.missing_ok:
            values.update(lines_read=0, matches={p.regex: 0 for p in item.patterns})
            return Observation(values)
        return Observation(values, error=f"no log file matches {ctx.path(item.path)}")
    deadline = time.monotonic() + item.timeout
    keep: deque = deque(maxlen=item.last_lines) if item.last_lines else deque()
    since = time.time() - item.last_minutes * 60 if item.last_minutes else None
    try:
        for path in files:
            current = None
            for number, line in _read_lines(path, deadline):
                stamp = _line_time(line) if since is not None else None
                current = stamp if stamp is not None else current
                if since is not None and (current is None or current < since):
                    continue
                keep.append((path.name, number, line))
    except (OSError, TimeoutError) as exc:
        return Observation(values, error=str(exc))
    matches, lines = count_patterns(item.patterns, ((f"{name}:{number}", line) for name, number, line in keep),
                                    item.max_evidence_lines)
    values.update(lines_read=len(keep), matches=matches)
    first = [line for found in lines.values() for line in found][:3]
    return Observation(values, details={"lines": lines}, explain=("first: " + " | ".join(first)) if first else None)


def count_patterns(patterns: list[LogPattern], lines: Iterable[tuple[str, str]],
                   max_evidence: int) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Count the (where, line) pairs each pattern matches; keep the first matching lines, redacted.

    >>> count_patterns([LogPattern(regex="ERROR")], [("a.log:1", "ok"), ("a.log:2", "ERROR x")], 5)
    ({'ERROR': 1}, {'ERROR': ['a.log:2: ERROR x']})
    """
    compiled = [(p, re.compile(p.regex, re.IGNORECASE if p.ignore_case else 0)) for p in patterns]
    matches = {p.regex: 0 for p in patterns}
    found: dict[str, list[str]] = {p.regex: [] for p in patterns}
    for where, line in lines:
        for pattern, regex in compiled:
            if regex.search(line):
                matches[pattern.regex] += 1
                if len(found[pattern.regex]) < max_evidence:
                    found[pattern.regex].append(REDACTOR.text(f"{where}: {line}"))
    return matches, found


def limits(item: LogCheck) -> list[Condition]:
    scope = f"last {item.last_lines} lines" if item.last_lines else (
        f"last {item.last_minutes:g} min" if item.last_minutes else "whole file")
    return pattern_limits(item.patterns, scope)


def pattern_limits(patterns: list[LogPattern], scope: str) -> list[Condition]:
    """``lines matching /ERROR/ in last 10 min <= 0`` (and the warn level) for each pattern."""
    out = []
    for pattern in patterns:
        path = 'matches."{}"'.format(pattern.regex.replace("\\", "\\\\").replace('"', '\\"'))
        out.append(Condition.compare(path, "<=", pattern.max, label=f"lines matching /{pattern.regex}/ in {scope} <= {pattern.max}"))
        if pattern.warn_max is not None:
            out.append(Condition.compare(path, "<=", pattern.warn_max, "warn",
                                         label=f"lines matching /{pattern.regex}/ in {scope} <= {pattern.warn_max}"))
    return out
