"""The post-incident review skeleton (``review.md`` of an incident folder): the runbooks'
template (Aura's incident report, Perfect Jarvis's blameless postmortem and timeline table),
prefilled with what opsgate knows - the timeline of what failed and when, from the report of
the run that collected it (a daily or incident run's; ``opsgate triage``: the environment's
latest daily report) and the triage's own collections, the severity, the
remedies the failing checks name - and placeholders for what only people know.

>>> events = [Event(60.0, "P0 FAIL test_http[api]: down"), Event(0.0, "daily run started")]
>>> [e.text for e in sorted(events)]
['daily run started', 'P0 FAIL test_http[api]: down']
>>> Event(0.0, "x").when
'1970-01-01 00:00:00'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import severity as sev
from .redact import REDACTOR, sink

_FAILED = ("fail", "error", "warn")


@dataclass(order=True)
class Event:
    """One row of the timeline."""

    at: float
    text: str = field(compare=False)
    action: str = field(default="", compare=False)

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _epoch(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp() if value else None
    except ValueError:
        return None


def _one_line(text: Any, limit: int = 240) -> str:
    return REDACTOR.excerpt(" ".join(str(text or "").split()), limit).replace("|", "\\|")


def daily_events(document: dict[str, Any] | None, scale: str = "P0-P3") -> tuple[list[Event], list[str]]:
    """The run's start (the latest daily's, or the run that collected the triage: named by its
    cadence), each check that failed or warned (when it ran, its severity, its message), and its
    end with the verdict; and the severities that failed.

    >>> doc = {"opsgate": {"started_at": "2026-12-01T01:00:00+00:00", "finished_at": "2026-12-01T01:00:05+00:00",
    ...        "verdict": "FAIL"}, "tests": [{"nodeid": "checks/daily::test_http[api]", "metadata": {"opsgate": {
    ...        "status": "fail", "severity": "P0", "message": "down", "started_at": 1796086801.0}}}]}
    >>> events, failed = daily_events(doc)
    >>> [e.text for e in events], failed
    (['daily run started', 'P0 FAIL test_http[api]: down', 'daily run finished: verdict FAIL'], ['P0'])
    """
    if not isinstance(document, dict):
        return [], []
    meta = document.get("opsgate") or {}
    events, failed = [], []
    started, finished = _epoch(meta.get("started_at")), _epoch(meta.get("finished_at"))
    what = f"{_one_line(meta.get('cadence') or 'daily')} run"
    if started is not None:
        events.append(Event(started, f"{what} started"))
    for test in document.get("tests") or ():
        check = ((test.get("metadata") or {}).get("opsgate") or {}) if isinstance(test, dict) else {}
        status = check.get("status")
        if status not in _FAILED:
            continue
        at = _epoch(check.get("started_at")) or started or finished or 0.0
        level = str(check.get("severity") or "P2")
        failed.append(level)
        test_id = str(test.get("nodeid", "")).rsplit("::", 1)[-1]
        events.append(Event(at, f"{sev.label(level, scale)} {str(status).upper()} {test_id}: {_one_line(check.get('message'))}",
                            f"remedy: {_one_line(check['remedy'])}" if check.get("remedy") else ""))
    if finished is not None:
        events.append(Event(finished, f"{what} finished: verdict {meta.get('verdict', '?')}"))
    return sorted(events), failed


def triage_events(incident: Any, scale: str = "P0-P3") -> list[Event]:
    """The triage's start and end, and each item failing or warning when it was collected."""
    events = [Event(incident.started, f"triage started (opsgate triage, incident {incident.id})")]
    for c in sorted(incident.failing, key=lambda c: c.started):
        events.append(Event(c.started, f"{sev.label(c.severity, scale)} {c.status.upper()} now: {c.kind} {c.name}: "
                                        f"{_one_line(c.message)}",
                            f"remedy: {_one_line(c.data['remedy'])}" if c.data.get("remedy") else f"collected in {c.file}"))
    events.append(Event(incident.finished, f"triage finished: {len(incident.collections)} items collected in "
                                           f"{incident.folder}"))
    return events


def render(incident: Any, scale: str = "P0-P3") -> str:
    """The review skeleton as Markdown."""
    daily, failed = daily_events(incident.daily, scale)
    events = sorted(daily + triage_events(incident, scale))
    failed += [c.severity for c in incident.failing if c.status in ("fail", "error")]
    worst = min(failed, key=sev.rank) if failed else None
    first_failure = next((e for e in events if " FAIL " in e.text or " ERROR " in e.text), None)
    date = datetime.fromtimestamp(incident.started, timezone.utc).strftime("%Y-%m-%d")
    remedies = sorted({e.action for e in events if e.action.startswith("remedy: ")})
    out = [
        f"# Post-Incident Review: {incident.id}", "",
        f"**Date:** {date}",
        f"**Environment:** {incident.environment}",
        f"**Severity:** {sev.label(worst, scale) if worst else '[P0/P1/P2/P3]'} (the highest severity that failed)",
        "**Incident Commander:** [Name]",
        "**Attendees:** [List of participants]",
        f"**Duration:** {first_failure.when + ' UTC (first failure seen)' if first_failure else '[Start Time]'} "
        "to [End Time]",
        "**Impact:** [Description of user impact]", "",
        "## Executive Summary", "[Brief summary of incident impact and resolution.]", "",
        "## Timeline", "",
        "What opsgate saw (UTC), then the response's own steps to fill in.", "",
        "| Time (UTC) | Event | Action Taken | Decision Maker |", "|---|---|---|---|",
    ]
    for e in events:
        out.append(f"| {e.when} | {e.text} | {e.action} | |")
    for step in ("Incident detected", "Response initiated", "Root cause identified", "Fix applied", "Service restored",
                 "Monitoring confirmed stable"):
        out.append(f"| [HH:MM] | {step} | | |")
    if incident.daily_problem:
        out += ["", f"(The latest daily report was not used: {_one_line(incident.daily_problem, 400)}.)"]
    out += ["", "## Evidence", "",
            f"Collected by `opsgate triage` into `{incident.folder}`: [summary.md](summary.md) and one JSON per item.", ""]
    out += [f"- [{c.file}]({c.file}): {c.kind} `{c.name}` - {c.what} ({c.status})" for c in incident.collections]
    out += ["", "## Root Cause", "", "**Immediate Cause:** [What directly caused the incident?]",
            "**Underlying Cause:** [What system weakness allowed this to happen?]",
            "**Root Cause:** [What organizational/process gap enabled this?]", "",
            "## Resolution", "", "[Steps taken to resolve the incident.]"]
    if remedies:
        out += ["", "The runbook steps the failing checks name:", ""] + [f"- {r[len('remedy: '):]}" for r in remedies]
    out += ["", "## What Went Well", "- [ ]", "", "## What Could Be Improved", "- [ ]", "",
            "## Preventive Measures / Action Items", "",
            "| ID | Description | Owner | Due Date | Priority |", "|---|---|---|---|---|",
            "| AI-001 | [Action item] | [Owner] | [YYYY-MM-DD] | [P0-P3] |", "",
            "## Lessons Learned", "[Key takeaways and improvements for future incidents.]"]
    return "\n".join(out) + "\n"


def write_review(incident: Any, scale: str = "P0-P3") -> None:
    """``review.md`` in the incident's folder, redacted."""
    (incident.folder / "review.md").write_text(sink(render(incident, scale)), encoding="utf-8")
