"""The terminal's closing block: failures and warnings grouped by severity, the report, the verdict.

Example of what an operator sees after a failing run::

    ============================ opsgate summary ============================
    environment default (embedded:default.yaml), cadence daily, host web-1
    P0  FAIL  test_http[demo-health]: status == 'healthy': observed "degraded"
    P2  WARN  test_file[demo-metrics-fresh]: age_s <= 10.0: observed 12.3
    checks: 7 pass, 1 warn, 1 fail, 0 error, 0 blocked
    report: reports/daily-20261122T164800Z.json
    verdict: FAIL
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from . import severity as sev
from .redact import REDACTOR

_ORDER = {"fail": 0, "error": 0, "blocked": 1, "warn": 2}


@dataclass(frozen=True)
class Outcome:
    """One test's opsgate outcome as the summary and the report's counts see it."""

    nodeid: str
    status: str
    severity: str
    message: str


def outcomes(config: Any, state: Any) -> list[Outcome]:
    """Every executed test (configured checks and hand-written ones) with its opsgate status."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    stats = reporter.stats if reporter else {}
    seen: dict[str, Outcome] = {}
    for category, reports in stats.items():
        for report in reports:
            nodeid = getattr(report, "nodeid", None)
            when = getattr(report, "when", None)
            if not nodeid or when not in ("setup", "call", "teardown"):
                continue
            result = state.results.get(nodeid)
            if result is not None:
                seen[nodeid] = Outcome(nodeid, result.status, result.severity, result.message)
                continue
            if when == "call" or report.failed or (when == "setup" and report.skipped):
                status = "fail" if report.failed else "skipped" if report.skipped else "pass"
                if nodeid in seen and seen[nodeid].status == "fail":
                    continue
                level = next((k for k in getattr(report, "keywords", {}) if k in sev.LEVELS), "P2")
                message = str(getattr(report, "longreprtext", "") or "").strip().splitlines()
                seen[nodeid] = Outcome(nodeid, status, level, REDACTOR.text(message[-1] if message else ""))
    return list(seen.values())


def counts(found: list[Outcome]) -> dict[str, int]:
    out = {s: 0 for s in ("pass", "warn", "fail", "error", "blocked", "skipped")}
    for outcome in found:
        out[outcome.status] = out.get(outcome.status, 0) + 1
    return out


def write_summary(terminal: Any, state: Any) -> None:
    found = outcomes(terminal.config, state)
    loaded = state.loaded
    terminal.write_sep("=", "opsgate summary", bold=True)
    terminal.write_line(f"environment {loaded.env.name} ({loaded.source}), cadence {state.cadence}, host {socket.gethostname()}")
    notable = sorted((o for o in found if o.status in _ORDER), key=lambda o: (sev.rank(o.severity), _ORDER[o.status]))
    if state.gate_name:
        notable = []  # the gate's block below lists them, with what the gate made of each
    for o in notable:
        colour = {"red": True} if o.status in ("fail", "error") else {"yellow": True}
        name = o.nodeid.split("::")[-1]
        message = " ".join(REDACTOR.text(o.message).split())
        terminal.write_line(f"{o.severity}  {o.status.upper():7} {name}: {message[:300]}", **colour)
    c = counts(found)
    terminal.write_line("checks: " + ", ".join(f"{n} {s}" for s, n in c.items() if n or s in ("pass", "fail")))
    if state.report_path:
        terminal.write_line(f"report: {state.report_path}")
    gate = state.gate
    if gate is None:  # no report was built (pytest-json-report missing): nothing to decide on
        terminal.write_line("verdict: ERROR (no report was built for this run)", bold=True, red=True)
        return
    if state.gate_name:
        from .exporters.terminal import lines

        terminal.write_sep("-", f"gate {gate.gate}")
        for line, tone in lines(gate):
            terminal.write_line(line, bold=line.startswith("verdict:"), **({tone: True} if tone else {}))
        return
    colour = {"green": True} if gate.verdict == "PASS" else {"yellow": True} if gate.verdict == "WARN" else {"red": True}
    terminal.write_line(f"verdict: {gate.verdict}", bold=True, **colour)
