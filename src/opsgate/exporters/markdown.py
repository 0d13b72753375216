"""A Markdown summary of a gate's result, for ``$GITHUB_STEP_SUMMARY`` or a wiki page.

A gate with ``fleet:`` rules gets a table of them with the hosts that broke each and their root
causes; when checks ran on fleet hosts, the check tables get a Host column.

>>> from opsgate.gate import evaluate, load_policy, read_report
>>> render(evaluate([read_report("/nonexistent.json")], load_policy(None))).splitlines()[0]
'## opsgate gate `default`: ERROR'
"""

from __future__ import annotations

from ..gate.decide import Finding, GateResult

_ICON = {"PASS": "PASS", "WARN": "WARN", "FAIL": "FAIL", "ERROR": "ERROR"}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")[:300]


def _remedies(findings: list[Finding]) -> bool:
    """A table gets a Remedy column when one of its checks names the runbook's next step."""
    return any(f.check.remedy for f in findings)


def _remedy(finding: Finding) -> str:
    return f" {_cell(finding.check.remedy) or '-'} |"


def _hosts(findings: list[Finding]) -> bool:
    """A table gets a Host column when one of its checks ran on a fleet host."""
    return any(f.check.remote_host for f in findings)


def _host(finding: Finding) -> str:
    return f" {_cell(finding.check.remote_host) or '-'} |"


def _table(findings: list[Finding], label: str) -> list[str]:
    remedies = label == "Evidence" and _remedies(findings)
    hosts = _hosts(findings)
    out = [f"| Severity | Check | Source |{' Host |' * hosts} {label} |" + (" Remedy |" if remedies else ""),
           "|---|---|---|---|" + "---|" * hosts + ("---|" if remedies else "")]
    for f in findings:
        out.append(f"| {f.severity} | `{_cell(f.check.test_id)}` | {_cell(f.check.source)} |{_host(f) if hosts else ''} "
                   f"{_cell(f.check.message or f.reason) if label == 'Evidence' else _cell(f.reason)} |"
                   + (_remedy(f) if remedies else ""))
    return out


def render(result: GateResult) -> str:
    out = [f"## opsgate gate `{result.gate}`: {_ICON[result.verdict]}", "",
           f"{_cell(result.headline())} (exit {result.exit_code}; policy {result.policy})", ""]
    if result.errors:
        out += ["### Why the result cannot be trusted", ""] + [f"- {_cell(e)}" for e in result.errors] + [""]
    if result.fleet:
        out += ["### Fleet rules", "", "| Rule | Hosts passing | Verdict | Hosts that broke it (root causes) |",
                "|---|---|---|---|"]
        for o in result.fleet:
            state = "holds" if o.holds else "broken" if o.hosts else "no host"
            out.append(f"| {_cell(o.rule.describe())} | {o.passing} of {len(o.hosts)} | {state} | "
                       f"{'<br>'.join(_cell(line) for line in o.broken_lines()) or '-'} |")
        out.append("")
    roots = result.root_causes
    if roots:
        remedies, hosts = _remedies(roots), _hosts(roots)
        out += ["### Root causes", "", f"| Severity | Check | Source |{' Host |' * hosts} Blocks | Evidence |"
                + (" Remedy |" if remedies else ""), "|---|---|---|---|---|" + "---|" * hosts + ("---|" if remedies else "")]
        for f in roots:
            out.append(f"| {f.severity} | `{_cell(f.check.test_id)}` | {_cell(f.check.source)} |{_host(f) if hosts else ''} {len(f.blocks)} | "
                       f"{_cell(f.check.message)} |" + (_remedy(f) if remedies else ""))
        out.append("")
    blocking = [f for f in result.effect("block") if not f.is_root_cause]
    if blocking:
        out += ["### Blocking", ""] + _table(blocking, "Evidence") + [""]
    warnings = [f for f in result.effect("warn", "tolerated") if not f.is_root_cause]
    if warnings:
        out += ["### Warnings", ""] + _table(warnings, "Evidence") + [""]
    waived = result.effect("waived")
    if waived:
        out += ["### Waived", ""] + _table(waived, "Waiver") + [""]
    if result.notes:
        out += ["### Waiver notes", ""] + [f"- {_cell(n)}" for n in result.notes] + [""]
    out += ["### Per source", "", "| Source | Verdict | pass | warn | fail | error | blocked | skipped | waived | Reports |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for s in result.sources:
        c = s.counts
        out.append(f"| {_cell(s.source)} | {s.verdict} | {c['pass']} | {c['warn']} | {c['fail']} | {c['error']} | "
                   f"{c['blocked']} | {c['skipped']} | {c['waived']} | {_cell(', '.join(s.reports))} |")
    return "\n".join(out) + "\n"
