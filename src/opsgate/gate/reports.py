"""Read opsgate reports for the gate, failing closed.

A report the gate cannot trust is never an empty pass: a missing file, a truncated or
altered one (its seal does not match), JSON that is not an opsgate report, an
interrupted session, a collection error, a run stopped early, or a run in which no
check executed each become a ``problem`` on the report, and any problem makes the
verdict ERROR.

A report is read in bounded time and memory: only a regular file (never a FIFO or a
device such as ``/dev/zero``), opened without blocking, at most ``MAX_REPORT_BYTES``.

>>> read_report("/nonexistent/daily-latest.json").problems
['/nonexistent/daily-latest.json: report not found']
>>> read_report("/dev/zero").problems
['/dev/zero: not a regular file (a character device): a report is a file a run wrote']
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ..redact import REDACTOR
from ..results import Status
from ..report import unseal
from ..severity import LEVELS
from ..severity import label as sev_label

#: the largest report the gate reads (``opsgate gate --max-report-size``); a 50,000-check report is ~60 MB
MAX_REPORT_BYTES = 512 * 2**20
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))

#: statuses of a check that actually ran (blocked and skipped checks did not)
EXECUTED = frozenset({"pass", "warn", "fail", "error"})
STATUSES = tuple(Status)

#: a test whose setup was reported but whose call never was
NO_CALL = ("its result never arrived: the report has the test's setup but no call "
           "(a pytest-xdist worker that crashed or could not send it)")

# pytest exit codes a report can carry that mean the run itself went wrong
_EXIT_PROBLEMS = {
    2: "the session was interrupted (pytest exit code 2): not every check ran",
    3: "pytest hit an internal error (exit code 3)",
    4: "pytest was called wrongly (usage error, exit code 4)",
}


@dataclass(slots=True)  # slots: the gate keeps one per check of a run
class CheckRecord:
    """One check of one report, as the gate sees it."""

    source: str
    nodeid: str
    name: str
    kind: str
    severity: str
    cadence: str
    status: str  # pass | warn | fail | error | blocked | skipped
    message: str = ""
    tags: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    blocked_by: tuple[str, ...] = ()
    duration_s: float = 0.0
    observed: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # the severity in its environment's own scale (severity_label), for people
    remedy: str = ""  # the runbook's next step (recorded beside a failure or warning only)
    # the host the check judged: its own (a check run on a fleet host), else the report's for a
    # run without hosts (a machine checking itself); None for a fleet run's non-host checks
    host: str | None = None

    def shown(self, level: str | None = None) -> str:
        """``level`` (default: this check's severity) in this check's environment's labels.

        >>> CheckRecord("s", "n", "x", "http", "P0", "daily", "fail", label="P1").shown("P2")
        'P3'
        """
        level = level or self.severity
        label = self.label or self.severity
        scale = "SEV0-SEV3" if label.startswith("SEV") else "P1-P4" if label != self.severity else "P0-P3"
        return sev_label(level, scale)

    @property
    def test_id(self) -> str:
        """``test_http[api-health]``: the nodeid's last part."""
        return self.nodeid.rsplit("::", 1)[-1]

    @property
    def remote_host(self) -> str:
        """The host when it is not the machine that wrote the report (a fleet host), else "".

        >>> CheckRecord("shop@ctl", "n", "server@web1", "process", "P0", "daily", "pass", host="web1").remote_host
        'web1'
        >>> CheckRecord("shop@web1", "n", "api", "http", "P0", "daily", "pass", host="web1").remote_host
        ''
        """
        return self.host if self.host and self.host != self.source.partition("@")[2] else ""


@dataclass
class Report:
    """One report: where it came from, its checks, and why it cannot be trusted (if so)."""

    path: str
    environment: str = "?"
    host: str = "?"
    cadence: str = "?"
    finished_at: datetime | None = None
    checks: list[CheckRecord] = field(default_factory=list)
    deselected: tuple[str, ...] = ()
    partial: str | None = None  # why the run covered less than its cadence folders
    problems: list[str] = field(default_factory=list)
    hosts: dict[str, tuple[str, ...]] = field(default_factory=dict)  # the run's fleet hosts -> their groups

    @property
    def source(self) -> str:
        """``environment@host``: what the verdict is broken down by."""
        return f"{self.environment}@{self.host}"

    @property
    def executed(self) -> int:
        return sum(1 for c in self.checks if c.status in EXECUTED)

    def relabel(self, shown: str) -> "Report":
        """The same report under another name (an in-memory run's, once its file is written).

        >>> Report("this run", problems=["this run: zero checks ran"]).relabel("r.json").problems
        ['r.json: zero checks ran']
        """
        old, self.path = f"{self.path}: ", shown
        self.problems = [f"{shown}: {p[len(old):]}" if p.startswith(old) else p for p in self.problems]
        return self


def read_report(path: str | Path, key: bytes | None = None, limit: int = MAX_REPORT_BYTES) -> Report:
    """Read and verify one report file; never raises for a bad file, it records the problem.
    With a seal ``key``, only a report signed with it is trusted."""
    shown = str(path)
    try:
        data = _read_bounded(path, limit)
    except FileNotFoundError:
        return Report(shown, problems=[f"{shown}: report not found"])
    except IsADirectoryError:
        return Report(shown, problems=[f"{shown}: is a directory, not a report file"])
    except _Refused as exc:
        return Report(shown, problems=[f"{shown}: {exc}"])
    except OSError as exc:
        return Report(shown, problems=[f"{shown}: cannot read: {exc.strerror or exc}"])
    return parse_report(data, shown, key)


class _Refused(Exception):
    """Not something the gate reads: the reason."""


def _read_bounded(path: str | Path, limit: int) -> bytes:
    # O_NONBLOCK: opening a FIFO nobody writes to must not hang the gate
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory")
            what = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
            raise _Refused(f"not a regular file ({what}): a report is a file a run wrote")
        if info.st_size > limit:
            raise _Refused(f"{info.st_size:,} bytes, larger than the gate's limit of {limit:,} "
                           "(--max-report-size); not read")
        chunks, size = [], 0
        while True:  # the file may grow while read (or be a /proc-like file with st_size 0): cap it
            # the whole file in one read when its size is known: no second copy from joining
            chunk = os.read(fd, min(max(info.st_size + 1 - size, 1 << 20), limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _Refused(f"more than the gate's limit of {limit:,} bytes (--max-report-size); not read")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def parse_report(data: bytes, shown: str, key: bytes | None = None) -> Report:
    """Verify and read a report's bytes (``shown`` names it in problems).

    >>> parse_report(b'{"tests": []', "r.json").problems
    ['r.json: not valid JSON (unexpected end of data: line 1 column 13 (char 12)); truncated or corrupted']
    """
    if not data.strip():
        return Report(shown, problems=[f"{shown}: empty file (the run was killed before writing it?)"])
    state = unseal(data, key)
    try:
        document = orjson.loads(data)  # ~2x the standard library's speed on a large report
    except orjson.JSONDecodeError as exc:
        reason = f"not valid JSON ({exc}); truncated or corrupted"
        return Report(shown, problems=[f"{shown}: {reason}"])
    report = from_document(document, shown)
    if state != "ok" and isinstance(document, dict) and "opsgate" in document:
        report.problems.insert(0, f"{shown}: {state}")
    return report


def from_document(document: Any, shown: str) -> Report:
    """Build a Report from a parsed opsgate report (the plugin passes its in-memory one).
    A document of the wrong shape is a problem on the report, never an exception.

    >>> from_document({"opsgate": {"format": 1}, "tests": "x"}, "r.json").problems
    ["r.json: the report has no 'tests' list"]
    """
    try:
        return _from_document(document, shown)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        return Report(shown, problems=[f"{shown}: malformed report ({type(exc).__name__}: {exc})"[:300]])


def _from_document(document: Any, shown: str) -> Report:
    if not isinstance(document, dict) or not isinstance(document.get("opsgate"), dict):
        return Report(shown, problems=[f"{shown}: not an opsgate report (no 'opsgate' metadata block; "
                                       "was it written by plain pytest-json-report or another tool?)"])
    meta = document["opsgate"]
    report = Report(shown, str(meta.get("environment") or "?"), str(meta.get("host") or "?"),
                    str(meta.get("cadence") or "?"), _time(meta.get("finished_at")),
                    deselected=tuple(meta.get("deselected") or ()), partial=meta.get("partial") or None)
    if meta.get("state") == "started":  # the marker a run leaves until its report replaces it
        report.problems.append(f"{shown}: {_unfinished(meta)}")
        return report
    if meta.get("format") != 1:
        report.problems.append(f"{shown}: unknown opsgate report format {meta.get('format')!r} (this gate reads format 1)")
        return report
    try:
        report.hosts = fleet_hosts(meta.get("hosts"))
    except TypeError as exc:
        report.problems.append(f"{shown}: opsgate.hosts {exc}"[:300])
        return report
    tests = document.get("tests")
    if not isinstance(tests, list):
        report.problems.append(f"{shown}: the report has no 'tests' list")
        return report
    return _fill(report, tests, document.get("exitcode"), document.get("collectors"), meta.get("not_run"),
                 meta.get("stopped_early"))


def from_record(record: Any, shown: str = "this run") -> Report:
    """The gate's view of a run's in-memory record (:class:`opsgate.record.RunRecord`): the
    same Report the written report gives, without writing or reading it.

    >>> from opsgate.record import RunRecord
    >>> from_record(RunRecord("demo", "e.yaml", "daily", "h", 0.0, 1.0, 5)).problems
    ['this run: no pytest exit code in the report (seen None)', 'this run: zero checks ran (0 in the report, none executed)']
    """
    try:
        report = Report(shown, record.environment or "?", record.host or "?", record.cadence or "?", record.finished_at,
                        deselected=tuple(record.deselected), partial=record.partial or None,
                        hosts=fleet_hosts(getattr(record, "hosts", None)))
        return _fill(report, record.tests, record.exitcode, record.collectors, record.not_run, record.stopped_early)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        return Report(shown, problems=[f"{shown}: malformed report ({type(exc).__name__}: {exc})"[:300]])


def _fill(report: Report, tests: list, exitcode: Any, collectors: Any, not_run: Any, stopped_early: Any) -> Report:
    """A report's problems and checks, from its tests' entries and its run's bookkeeping
    (shared by a loaded document and an in-memory record)."""
    shown = report.path
    if not isinstance(exitcode, int):
        report.problems.append(f"{shown}: no pytest exit code in the report (seen {exitcode!r})")
    elif exitcode in _EXIT_PROBLEMS:
        report.problems.append(f"{shown}: {_EXIT_PROBLEMS[exitcode]}")
    for collector in collectors or ():
        if isinstance(collector, dict) and collector.get("outcome") == "failed":
            cause = str(collector.get("longrepr") or "").strip().splitlines()
            report.problems.append(f"{shown}: collection error in {collector.get('nodeid') or 'the session'!s}"
                                   + (f": {cause[-1][:200]}" if cause else ""))
    for missing in not_run or ():  # configured checks of the run's cadence that never ran
        if isinstance(missing, dict):
            report.problems.append(
                f"{shown}: configured check {missing.get('name')} ({missing.get('severity', '?')} {missing.get('kind', '?')}, "
                f"{missing.get('cadence', '?')}) did not run: {missing.get('reason') or 'no reason recorded'}"[:400])
        else:
            report.problems.append(f"{shown}: not_run holds {type(missing).__name__}, expected an object")
    if stopped_early:
        report.problems.append(f"{shown}: the run stopped early ({stopped_early}); later checks did not run")
    # a run without hosts is a machine checking itself: its checks are on the report's host
    itself = None if report.hosts or report.host == "?" else report.host
    source = report.source  # one string for every check's record, not one each
    for index, test in enumerate(tests):
        try:
            record = _record(test, source, itself)
        except (TypeError, ValueError, AttributeError) as exc:
            report.problems.append(f"{shown}: tests[{index}] is malformed ({exc})"[:300])
            continue
        if record is None:
            report.problems.append(f"{shown}: tests[{index}] is not a test result (no nodeid/outcome)")
            continue
        if record.severity not in LEVELS or record.status not in STATUSES:
            report.problems.append(f"{shown}: tests[{index}] ({record.test_id}) has severity {record.severity!r} and "
                                   f"status {record.status!r}; expected P0..P3 and one of {', '.join(STATUSES)}")
            continue
        if record.message == NO_CALL:  # whatever its severity: the run cannot vouch for it
            report.problems.append(f"{shown}: {record.test_id}: {NO_CALL}")
        report.checks.append(record)
    if not report.executed:
        report.problems.append(f"{shown}: zero checks ran ({len(report.checks)} in the report, none executed)")
    return report


def _unfinished(meta: dict) -> str:
    """Why a "run started" marker is not a verdict, saying whether the run is still alive.

    >>> _unfinished({"started_at": "2026-11-30T03:00:00+00:00", "pid": 42, "host": "elsewhere"})
    'run started at 2026-11-30T03:00:00+00:00 (pid 42 on elsewhere) did not finish: it is still running, or it was killed before writing its report'
    """
    import socket

    pid, host = meta.get("pid"), meta.get("host")
    alive = "it is still running, or it was killed before writing its report"
    if host == socket.gethostname() and isinstance(pid, int) and pid > 0:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            alive = "the process is gone (killed: SIGKILL, SIGTERM, out of memory?) before writing its report"
        except OSError:
            pass
    return f"run started at {meta.get('started_at')} (pid {pid} on {host}) did not finish: {alive}"


def fleet_hosts(value: Any) -> dict[str, tuple[str, ...]]:
    """A report's ``opsgate.hosts`` map as host name -> its groups; TypeError on another shape.

    >>> fleet_hosts({"web1": {"groups": ["web"], "transport": "ssh"}, "db1": {}})
    {'web1': ('web',), 'db1': ()}
    >>> fleet_hosts(None)
    {}
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"is a {type(value).__name__}, expected an object of host name -> {{groups, transport}}")
    out = {}
    for name, entry in value.items():
        if not isinstance(entry, dict):
            raise TypeError(f"{name!r} is a {type(entry).__name__}, expected an object {{groups, transport}}")
        groups = entry.get("groups")
        out[str(name)] = _strings(list(groups) if isinstance(groups, tuple) else groups, f"{name}.groups")
    return out


def _record(test: Any, source: str, itself: str | None = None) -> CheckRecord | None:
    if not isinstance(test, dict) or not isinstance(test.get("nodeid"), str) or not isinstance(test.get("outcome"), str):
        return None
    meta = (test.get("metadata") or {}).get("opsgate") or {}
    if not isinstance(meta, dict):
        raise TypeError(f"metadata.opsgate is a {type(meta).__name__}, expected an object")
    outcome = test["outcome"]
    status = meta.get("status") or _status_of_outcome(outcome)
    message = meta.get("message")
    if outcome in ("failed", "error") and status in ("pass", "warn"):
        status = "fail"  # the test failed after the check passed (setup/teardown): trust the failure
    elif "setup" in test and "call" not in test and outcome in ("passed", "warned") and not meta.get("status"):
        # pytest-json-report starts an entry "passed" at its setup: a call that was never reported
        # (a pytest-xdist worker that crashed or could not send it) is no pass
        status, message = "error", NO_CALL
    message = message or ("" if status == "pass" else _longrepr_line(test))
    evidence = meta.get("evidence") or {}
    observed = evidence.get("observed") if isinstance(evidence, dict) else None
    nodeid = test["nodeid"]
    return CheckRecord(
        source=source,
        nodeid=nodeid,
        name=str(meta.get("name") or nodeid.rsplit("::", 1)[-1]),
        kind=str(meta.get("kind") or "python"),
        severity=str(meta.get("severity") or "P2"),
        label=str(meta.get("severity_label") or meta.get("severity") or "P2"),
        cadence=str(meta.get("cadence") or "?"),
        status=status,
        message=str(message),
        tags=_strings(meta.get("tags"), "tags"),
        keywords=_strings(test.get("keywords"), "keywords"),
        blocked_by=_strings(meta.get("blocked_by"), "blocked_by"),
        duration_s=float(meta.get("duration_s") or (test.get("call") or {}).get("duration") or 0.0),
        observed=observed if isinstance(observed, dict) else {},
        remedy=str(meta.get("remedy") or ""),
        host=_host(meta.get("host")) or itself,
    )


def _host(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise TypeError(f"host is {value!r}, expected a host name or null")


_ONLY_STR = {str}


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not {*map(type, value)} <= _ONLY_STR:  # map(type): fast on 50,000 checks
        raise TypeError(f"{key} is {value!r}, expected a list of strings")
    return tuple(value)


def _status_of_outcome(outcome: str) -> str:
    return {"passed": "pass", "warned": "warn", "failed": "fail", "error": "error",
            "skipped": "skipped", "xfailed": "skipped", "xpassed": "pass"}.get(outcome, "error")


def _longrepr_line(test: dict) -> str:
    """The failing phase's cause: pytest's crash message (an assertion with its values) where the
    report has one, else the last line of its long report."""
    for when in ("call", "setup", "teardown"):
        phase = test.get(when) or {}
        if not isinstance(phase, dict):
            continue
        crash = phase.get("crash")
        if isinstance(crash, dict) and crash.get("message"):
            entries = [e for e in phase.get("traceback") or () if isinstance(e, dict)]
            last = entries[-1] if entries else crash
            where = f"{last.get('path')}:{last.get('lineno')}" if last.get("path") else ""
            typename = str(entries[-1].get("message") or "") if entries else ""
            return failure_line(str(crash["message"]), typename if typename.isidentifier() else "", where)
        text = str(phase.get("longrepr") or "").strip()
        if text:
            return REDACTOR.excerpt(text.splitlines()[-1], FAILURE_CHARS)
    return ""


#: a hand-written check's failure message: its first lines, at most this many characters
FAILURE_LINES = 3
FAILURE_CHARS = 300


def failure_line(message: str, typename: str = "", where: str = "") -> str:
    """A hand-written check's failure in one line: where it failed, the exception and the first
    lines of its message (pytest's crash message: the assertion with the values it saw),
    redacted, then cut to ``FAILURE_CHARS``.

    >>> failure_line("assert 503 == 200\\n +  where 503 = <Response>.status_code", "AssertionError",
    ...              "checks/daily/test_api.py:7")
    'checks/daily/test_api.py:7: AssertionError: assert 503 == 200 | +  where 503 = <Response>.status_code'
    >>> failure_line("ValueError: bad port", "ValueError")
    'ValueError: bad port'
    """
    lines = [line.strip() for line in message.split("\n", FAILURE_LINES)[:FAILURE_LINES] if line.strip()]
    text = " | ".join(lines)
    if typename and not text.startswith(typename):
        text = f"{typename}: {text}" if text else typename
    if where:
        text = f"{where}: {text}"
    text = REDACTOR.text(text)  # redacted before it is cut: a cut secret is no longer recognised
    return text if len(text) <= FAILURE_CHARS else text[:FAILURE_CHARS] + "…"


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
