"""``systemd``: a unit is loaded, active, not failed, restarted at most N times; and pattern
counts in its journal over the last T minutes.

Both commands run through the target (``ctx.target.run``), so a remote target is read the
same way, each bounded by what is left of the item's timeout:

- ``systemctl show UNIT -p LoadState,ActiveState,SubState,Result,NRestarts --no-pager``;
  every property must come back, or the check fails naming the one missing (a value never
  defaults to a passing one).
- ``journalctl -u UNIT --since=-<seconds>s -o cat --no-pager -n <journal_lines>``: only the
  newest ``journal_lines`` lines are read (the bound), counted line by line as they arrive;
  the count of each pattern is held to its ``max``/``warn_max``.

Where there is no systemd (no ``/run/systemd/system``, as in most containers, or systemctl
saying the system was not booted with it) the check cannot say anything about the unit: it
is **skipped** with that reason (status ``skipped``: the gate lists it, never counts it as a
pass, and a gate that requires it is an ERROR); checks that depend on it are blocked.
``missing_ok: true`` (for an environment shared by machines with and without systemd)
turns that into a pass whose evidence states the note ``systemd is absent ...: not checked``.

>>> item = SystemdCheck(name="api", unit="api", max_restarts=3)
>>> item.unit, [c.label for c in limits(item)]
('api.service', ['unit api.service is loaded', 'unit api.service is active', 'unit api.service is not failed', 'unit api.service: restarts <= 3'])
"""

from __future__ import annotations

import codecs
import errno
import re
import time
from typing import ClassVar

from pydantic import Field, field_validator

from ..capture import Capture
from ..conditions import Condition
from ..kinds import Kind
from ..results import Observation
from ..schema import CheckItem, Duration, LogPattern
from ..targets import Command

#: systemd creates this directory at boot (sd_booted(3)): its absence means no systemd
SYSTEMD_RUNTIME = "/run/systemd/system"
PROPERTIES = ("LoadState", "ActiveState", "SubState", "Result", "NRestarts")
_SHOW_LIMIT = 64 << 10  # bytes of systemctl's answer kept (a few lines are expected)
_NOT_BOOTED = "not been booted with systemd"
#: what journalctl says (exiting 0) when the user may not read the unit's journal
_UNREADABLE_JOURNAL = ("insufficient permissions", "not seeing messages from other users and the system")


class SystemdCheck(CheckItem):
    """A systemd unit: loaded, active, not failed, restarts, and journal pattern counts."""

    kind: ClassVar[str] = "systemd"
    unit: str = Field(description="the unit, app or app.service")
    active: bool = Field(True, description="ActiveState must be active (false: only not failed)")
    max_restarts: int | None = Field(None, ge=0, description="most restarts allowed (NRestarts)")
    warn_restarts: int | None = Field(None, ge=0)
    journal: list[LogPattern] = Field([], description="patterns counted in the unit's journal")
    journal_window: Duration = Field(600.0, description="how far back the journal is read (10m, 1h)")
    journal_lines: int = Field(10_000, ge=1, le=1_000_000, description="newest journal lines read at most")
    missing_ok: bool = Field(False, description="pass, with a note, where the machine has no systemd")

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9:_.@\\-]+", value) or value.startswith("-"):
            raise ValueError(f"expected a systemd unit name such as app or app.service, seen {value!r}")
        return value if "." in value else value + ".service"


class _CountLines:
    """Counts, per pattern, the journal lines matching it, line by line as they arrive; a
    line longer than 64 KiB is searched in its first 64 KiB."""

    LINE = 64 << 10

    def __init__(self, patterns: list[LogPattern]) -> None:
        self.patterns = [(p.regex, re.compile(p.regex, re.IGNORECASE if p.ignore_case else 0)) for p in patterns]
        self.counts = {regex: 0 for regex, _ in self.patterns}
        self.lines = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, data: bytes) -> None:
        text = self._partial + self._decoder.decode(data)
        *lines, self._partial = text.split("\n")
        self._partial = self._partial[:self.LINE]
        for line in lines:
            self._count(line)

    def finish(self) -> None:
        rest = self._partial + self._decoder.decode(b"", final=True)
        if rest:
            self._count(rest)
        self._partial = ""

    def _count(self, line: str) -> None:
        if line == "-- No entries --":  # journalctl's own word that the window is empty
            return
        self.lines += 1
        line = line[:self.LINE]
        for regex, compiled in self.patterns:
            if compiled.search(line):
                self.counts[regex] += 1


def _absent(item: SystemdCheck, why: str) -> Observation:
    values = {"unit": item.unit, "systemd": "absent"}
    if item.missing_ok:
        return Observation(values, details={"note": f"systemd is absent ({why}): {item.unit} not checked; "
                                                    "passed because missing_ok: true"})
    return Observation(values, not_applicable=f"systemd {item.unit}: systemd is absent on this machine ({why}); the "
                                              "unit cannot be checked here (missing_ok: true passes it with a note "
                                              "where that is expected)")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def observe(item: SystemdCheck, ctx) -> Observation:
    deadline = time.monotonic() + item.timeout
    try:
        ctx.target.stat(SYSTEMD_RUNTIME, item.timeout)
    except TimeoutError as exc:
        return Observation({"unit": item.unit}, error=f"systemd {item.unit}: cannot stat {SYSTEMD_RUNTIME}: {exc}")
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return _absent(item, f"no {SYSTEMD_RUNTIME}")
        return Observation({"unit": item.unit},
                           error=f"systemd {item.unit}: cannot stat {SYSTEMD_RUNTIME}: {exc.strerror or exc}")
    argv = ["systemctl", "show", item.unit, "-p", ",".join(PROPERTIES), "--no-pager"]
    out, err = Capture(_SHOW_LIMIT), Capture()
    try:
        ran = ctx.target.run(Command(argv=argv), out, err, max(deadline - time.monotonic(), 0.1))
    except OSError as exc:
        return Observation({"unit": item.unit}, error=f"systemd {item.unit}: cannot run systemctl: {exc.strerror or exc}")
    if ran.ending == "timeout":
        return Observation({"unit": item.unit}, error=f"systemd {item.unit}: `systemctl show` did not finish within "
                                                      f"{item.timeout:g}s (killed)")
    if _NOT_BOOTED in out.text() + err.text():
        return _absent(item, "systemctl says the system was not booted with systemd")
    if ran.exit_code != 0:
        return Observation({"unit": item.unit}, error=f"systemd {item.unit}: `systemctl show` exited "
                                                      f"{ran.exit_code}: {_last_line(err.text() or out.text())}")
    shown = dict(line.split("=", 1) for line in out.text().splitlines() if "=" in line)
    missing = [p for p in PROPERTIES if p not in shown]
    if missing:
        return Observation({"unit": item.unit}, error=f"systemd {item.unit}: `systemctl show` did not report "
                                                      f"{', '.join(missing)}")
    try:
        restarts = int(shown["NRestarts"])
    except ValueError:
        return Observation({"unit": item.unit}, error=f"systemd {item.unit}: NRestarts is not a number: "
                                                      f"{shown['NRestarts'][:50]!r}")
    values: dict = {"unit": item.unit, "systemd": "present", "load_state": shown["LoadState"],
                    "active_state": shown["ActiveState"], "sub_state": shown["SubState"], "result": shown["Result"],
                    "restarts": restarts}
    explain = (f"systemctl: LoadState={shown['LoadState']} ActiveState={shown['ActiveState']} "
               f"SubState={shown['SubState']} Result={shown['Result']} NRestarts={restarts}")
    if item.journal:
        problem = _journal(item, ctx, deadline, values)
        if problem:
            return Observation(values, error=f"systemd {item.unit}: {problem}", explain=explain)
    return Observation(values, explain=explain)


def _journal(item: SystemdCheck, ctx, deadline: float, values: dict) -> str | None:
    """Count the patterns in the unit's journal into ``values``; the problem, if any."""
    window = max(int(item.journal_window), 1)
    argv = ["journalctl", "-u", item.unit, f"--since=-{window}s", "-o", "cat", "--no-pager",
            "-n", str(item.journal_lines)]
    counter, err = _CountLines(item.journal), Capture()
    left = deadline - time.monotonic()
    if left <= 0:
        return f"no time left of the {item.timeout:g}s timeout to read the journal"
    try:
        ran = ctx.target.run(Command(argv=argv), counter, err, left)
    except OSError as exc:
        return f"cannot run journalctl: {exc.strerror or exc}"
    if ran.ending == "timeout":
        return f"`journalctl -u {item.unit}` did not finish within the {item.timeout:g}s timeout (killed)"
    if ran.exit_code != 0:
        return f"`journalctl -u {item.unit}` exited {ran.exit_code}: {_last_line(err.text())}"
    if any(hint in err.text() for hint in _UNREADABLE_JOURNAL):  # it exits 0 having shown nothing: not "no errors"
        return (f"`journalctl -u {item.unit}` could not read the journal ({_last_line(err.text())}): run opsgate "
                "as root or in the systemd-journal or adm group")
    if ran.ending == "truncated":
        return f"`journalctl -u {item.unit}`: {ran.note}: its patterns were not counted"
    counter.finish()
    values["journal_lines"] = counter.lines
    values["journal"] = dict(counter.counts)
    return None


def limits(item: SystemdCheck) -> list[Condition]:
    """With ``missing_ok`` the unit's values, absent when systemd is, count as passing ones;
    observe reports every one of them, or fails, whenever systemd is there."""
    ok = item.missing_ok
    unit = f"unit {item.unit}"
    out = [Condition.compare("load_state", "==", "loaded", label=f"{unit} is loaded",
                             default="loaded" if ok else None)]
    if item.active:
        out.append(Condition.compare("active_state", "==", "active", label=f"{unit} is active",
                                     default="active" if ok else None))
    out.append(Condition.compare("active_state", "!=", "failed", label=f"{unit} is not failed",
                                 default="inactive" if ok else None))
    for limit, level in ((item.max_restarts, "fail"), (item.warn_restarts, "warn")):
        if limit is not None:
            out.append(Condition.compare("restarts", "<=", limit, level, label=f"{unit}: restarts <= {limit}",
                                         default=0 if ok else None))
    for pattern in item.journal:
        for limit, level in ((pattern.max, "fail"), (pattern.warn_max, "warn")):
            if limit is not None:
                out.append(Condition.compare(
                    ("journal", pattern.regex), "<=", limit, level,
                    label=f"journal of {item.unit}, last {item.journal_window:g}s: lines matching "
                          f"/{pattern.regex}/ <= {limit}", default=0 if ok else None))
    return out


KIND = Kind(name="systemd", schema=SystemdCheck, observe=observe, limits=limits,
            summary="a systemd unit: loaded, active, not failed, restarts; pattern counts in its journal "
                    "(skipped where there is no systemd, unless missing_ok)",
            host_level=True)
