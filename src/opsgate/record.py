"""The run's record: built once in memory at the end of a run, gated in memory, serialised once.

The pytest plugin builds one :class:`RunRecord` when pytest-json-report has collected the
tests' entries: what ran (each configured check's result by node id, pytest's entry of every
test), what did not (``not_run``), whether the run was partial or stopped early, what was
deselected. The gate reads it directly (:func:`opsgate.gate.from_record`); the written report
is its :meth:`~RunRecord.opsgate_block` under ``opsgate`` in pytest-json-report's document,
serialised once by :func:`opsgate.report.write_report`.

>>> record = RunRecord("demo", "embedded:default.yaml", "daily", "h", 0.0, 60.0, 5)
>>> block = record.opsgate_block({"pass": 0}, "ERROR")
>>> block["finished_at"], block["not_run"], block["verdict"], block["hosts"]
('1970-01-01T00:01:00+00:00', [], 'ERROR', {})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import __version__
from .results import CheckResult

#: the report format this record writes (a gate reads format 1)
FORMAT = 1


def iso(epoch: float) -> str:
    """UTC, to the second.

    >>> iso(0)
    '1970-01-01T00:00:00+00:00'
    """
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """One run, as the gate and the report see it."""

    environment: str
    environment_file: str
    cadence: str
    host: str
    started: float
    finished: float
    concurrency: int
    demo_fault: str | None = None  # the embedded demo's fault, when the demo was the target
    deselected: list[str] = field(default_factory=list)
    stopped_early: str | None = None
    partial: str | None = None
    not_run: list[dict[str, str]] = field(default_factory=list)
    results: dict[str, CheckResult] = field(default_factory=dict)  # configured checks' results by node id
    tests: list[dict[str, Any]] = field(default_factory=list)  # pytest-json-report's entry of every test
    exitcode: Any = None
    collectors: list[dict[str, Any]] = field(default_factory=list)
    # the environment's hosts: name -> {"groups": [...], "transport": "ssh", ...} (never a url)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def finished_at(self) -> datetime:
        return datetime.fromtimestamp(self.finished, timezone.utc).replace(microsecond=0)

    def opsgate_block(self, counts: dict[str, int], verdict: str) -> dict[str, Any]:
        """The report's ``opsgate`` block (key order as readers have always seen it)."""
        return {
            "format": FORMAT,
            "version": __version__,
            "environment": self.environment,
            "environment_file": self.environment_file,
            "cadence": self.cadence,
            "host": self.host,
            "started_at": iso(self.started),
            "finished_at": iso(self.finished),
            "concurrency": self.concurrency,
            "demo": {"fault": self.demo_fault} if self.demo_fault is not None else None,
            "deselected": self.deselected,
            "stopped_early": self.stopped_early,
            "partial": self.partial,
            "not_run": self.not_run,
            "counts": dict(counts),
            "verdict": str(verdict),
            "hosts": self.hosts,
        }
