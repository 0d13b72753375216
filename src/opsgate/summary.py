"""The terminal's closing block: failures and warnings grouped by severity, the report, the verdict.

Example of what an operator sees after a failing run::

    ============================ opsgate summary ============================
    environment default (embedded:default.yaml), cadence daily, host web-1
    P0  FAIL  test_http[demo-health]: status == 'healthy': observed "degraded"
        remedy: ./start_demo.sh - runbook: Server Won't Start
    P2  WARN  test_file[demo-metrics-fresh]: logs/metrics.jsonl: age_s <= 10.0: observed 12.3
    checks: 7 pass, 1 warn, 1 fail, 0 error, 0 blocked
    report: reports/default/daily-20261122T164800Z.json
    verdict: FAIL
"""

from __future__ import annotations

import socket
from typing import Any

from . import severity as sev
from .redact import REDACTOR, sink

_ORDER = {"fail": 0, "error": 0, "blocked": 1, "warn": 2}


class _Redacted:
    """The terminal, with every line passed through the redaction sink first."""

    def __init__(self, terminal: Any) -> None:
        self.terminal = terminal

    def write_sep(self, sep: str, title: str, **markup: Any) -> None:
        self.terminal.write_sep(sep, sink(title), **markup)

    def write_line(self, line: str, **markup: Any) -> None:
        self.terminal.write_line(sink(line), **markup)


def write_summary(terminal: Any, state: Any) -> None:
    """Everything here comes from the run's record as the gate read it (also under xdist,
    where the controller sees only the workers' reports); every line passes the redaction sink."""
    terminal = _Redacted(terminal)
    loaded = state.loaded
    terminal.write_sep("=", "opsgate summary", bold=True)
    terminal.write_line(f"environment {loaded.env.name} ({loaded.source}), cadence {state.cadence}, host {socket.gethostname()}")
    gate = state.gate
    if gate is None:  # no report was built (pytest-json-report missing): nothing to decide on
        terminal.write_line("verdict: ERROR (no report was built for this run)", bold=True, red=True)
        return
    if not state.gate_name:  # with a gate, its block below lists them, with what the gate made of each
        notable = sorted((f.check for f in gate.findings if f.check.status in _ORDER),
                         key=lambda c: (sev.rank(c.severity), _ORDER[c.status]))
        for check in notable:
            colour = {"red": True} if check.status in ("fail", "error") else {"yellow": True}
            message = REDACTOR.excerpt(" ".join(check.message.split()), 300)  # cut redaction-aware
            terminal.write_line(f"{check.shown()}  {check.status.upper():7} {check.test_id}: {message}", **colour)
            if check.remedy:
                terminal.write_line(f"    remedy: {check.remedy}")
    counts = {s: n for s, n in gate.counts.items() if s != "waived"}
    terminal.write_line("checks: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n or s in ("pass", "fail")))
    if state.report_path:
        partial = gate.reports[0].partial if gate.reports else None
        terminal.write_line(f"report: {state.report_path}" + (f" (partial run: {partial}; "
                            f"{state.cadence}-latest.json left as it was)" if partial else ""))
    if getattr(state, "incident", None):
        terminal.write_line(state.incident, yellow=True)
    for record in getattr(state, "drill_records", ()):
        if record.suffix == ".md":
            terminal.write_line(f"drill record: {record} (and .html)")
    from .exporters.terminal import TONE, lines

    if state.gate_name:
        terminal.write_sep("-", f"gate {gate.gate}")
        for line, tone in lines(gate):
            terminal.write_line(line, bold=line.startswith("verdict:"), **({tone: True} if tone else {}))
        return
    for error in gate.errors:  # e.g. the report could not be written: say why, not only "ERROR"
        terminal.write_line(f"ERROR  {error}", red=True)
    verdict = f"verdict: {gate.verdict}" + (f" (exit {gate.exit_code})" if gate.verdict == "ERROR" else "")
    terminal.write_line(verdict, bold=True, **{TONE[gate.verdict]: True})
