"""What one check run produced: status, the reason, and the evidence behind it.

Statuses: ``pass``; ``warn`` (passed, but a warn level was crossed); ``fail`` (a
condition did not hold, or the target could not be observed); ``error`` (opsgate
itself could not run the check); ``blocked`` (a prerequisite in ``depends_on`` failed,
so the check was not run).

>>> r = CheckResult("api", "http", "P0", "fail", "status == 'healthy': observed 'degraded'")
>>> r.failed, r.to_json()["status"]
(True, 'fail')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """A check's status; str-valued, so reports and comparisons keep the plain words.

    >>> Status("warn") == "warn", f"{Status.BLOCKED}", Status.FAIL.failed
    (True, 'blocked', True)
    """

    PASS = "pass"
    WARN = "warn"  # passed, but a warn level was crossed
    FAIL = "fail"
    ERROR = "error"  # opsgate itself could not run the check
    BLOCKED = "blocked"  # a prerequisite failed: not run
    SKIPPED = "skipped"  # a hand-written check pytest skipped (a report's status, never a probe's)

    @property
    def failed(self) -> bool:
        return self in (Status.FAIL, Status.ERROR)

    def __repr__(self) -> str:  # as the plain word: messages and doctests read 'pass', not <Status.PASS>
        return repr(self.value)


STATUSES = tuple(Status)


def status_word(status: str) -> str:
    """The status as a plain ``str``, one shared object per status (``str(Status.PASS)`` makes a
    new copy each time, and a run keeps two per check).

    >>> status_word(Status.PASS) is status_word(Status("pass")), type(status_word(Status.WARN)), status_word("fail")
    (True, <class 'str'>, 'fail')
    """
    return status._value_ if isinstance(status, Status) else str(status)


class _NoDocument:
    """The probe parsed no document; ``None`` is a document (a JSON body of ``null``)."""

    def __repr__(self) -> str:
        return "NO_DOCUMENT"


#: ``Observation.document`` when nothing was parsed: user conditions then read ``values``
NO_DOCUMENT: Any = _NoDocument()


@dataclass
class Observation:
    """What a probe saw. ``values`` feed built-in limits and evidence; ``document`` is the
    JSON that user conditions read (an HTTP body, a command's stdout), ``NO_DOCUMENT`` when
    none was parsed (a parsed ``null``, ``[]``, ``""`` or ``0`` is a document like any other);
    ``error`` says why nothing could be observed (connection refused, timed out ...)."""

    values: dict[str, Any] = field(default_factory=dict)
    document: Any = NO_DOCUMENT
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    explain: str | None = None  # appended to a failure message: the lines or output behind it
    # the check cannot apply on this machine (a systemd unit where there is no systemd): the
    # result is "skipped" with this reason - listed by the gate, never a pass, and a required
    # check skipped is an ERROR
    not_applicable: str | None = None


@dataclass(slots=True)  # slots: a run keeps one per check until it ends
class CheckResult:
    """The outcome of one check, ready for the test, the terminal and the JSON report."""

    name: str
    kind: str
    severity: str
    status: str
    message: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    duration_s: float = 0.0
    attempts: int = 0
    blocked_by: list[str] = field(default_factory=list)
    host: str | None = None  # the environment's name of the host it ran on (``web1``); None: where opsgate runs

    @property
    def failed(self) -> bool:
        return self.status in (Status.FAIL, Status.ERROR)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, not redacted: redaction happens at the sinks (the report's document
        is redacted whole before it is serialised; see :func:`opsgate.redact.sink`). The status
        is the plain word (pytest-xdist's execnet serialises only built-in types)."""
        # built once, sharing the evidence (bounded and owned by this result) and the blocked_by
        # list instead of asdict's deep copy of them for every check
        blocked_by = self.blocked_by if type(self.blocked_by) is list else list(self.blocked_by)
        return {"name": self.name, "kind": self.kind, "severity": self.severity, "status": status_word(self.status),
                "message": self.message, "evidence": self.evidence, "started_at": self.started_at,
                "duration_s": self.duration_s, "attempts": self.attempts, "blocked_by": blocked_by, "host": self.host}
