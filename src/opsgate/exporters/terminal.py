"""The verdict block for a terminal: verdict, fleet rules with the hosts that broke them, root
causes, blocking checks with their evidence, warnings, waivers, the per-source breakdown. A
check run on a fleet host names it beside its source (``[shop@ctl on web1]``).

Lines come with a tone (``red``, ``yellow``, ``green`` or None) so the pytest plugin can
colour them through its terminal writer and ``opsgate gate`` through ANSI codes.

>>> from opsgate.gate import evaluate, load_policy, read_report
>>> lines(evaluate([read_report("/nonexistent.json")], load_policy(None)))[-1]
('verdict: ERROR (exit 2)', 'red')
"""

from __future__ import annotations

from ..gate.decide import Effect, Finding, GateResult

TONE = {"PASS": "green", "WARN": "yellow", "FAIL": "red", "ERROR": "red"}
_ANSI = {"red": "\033[31;1m", "yellow": "\033[33m", "green": "\033[32;1m"}


def _evidence(finding: Finding) -> str:
    message = " ".join(finding.check.message.split())
    return message[:300] if message else finding.reason


def _where(finding: Finding) -> str:
    """``shop@ctl``, or ``shop@ctl on web1`` for a check run on a fleet host."""
    host = finding.check.remote_host
    return f"{finding.check.source} on {host}" if host else finding.check.source


def _remedy(finding: Finding) -> list[tuple[str, str | None]]:
    """The runbook's next step under a failure or warning, when the check names one."""
    return [(f"            remedy: {finding.check.remedy}", None)] if finding.check.remedy else []


def lines(result: GateResult) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = [(f"gate {result.gate} ({result.policy}): {result.headline()}", TONE[result.verdict])]
    for error in result.errors:
        out.append((f"ERROR  {error}", "red"))
    for outcome in result.fleet:
        if outcome.hosts:
            out.append((f"FLEET  {outcome.summary().removeprefix('fleet ')}", "green" if outcome.holds else "red"))
            out += [(f"            {line}", None) for line in outcome.broken_lines()]
    for root in result.root_causes:
        out.append((f"ROOT CAUSE  {root.check.shown(root.severity)}  {root.check.test_id} [{_where(root)}]: {_evidence(root)}",
                    "red" if root.effect == "block" else "yellow"))
        out += _remedy(root)
        blocked = ", ".join(c.test_id for c in root.blocks[:8]) + (" ..." if len(root.blocks) > 8 else "")
        out.append((f"            blocks {len(root.blocks)}: {blocked} ({root.effect}: {root.reason})", None))
    for finding in result.effect("block"):
        if not finding.is_root_cause:
            why = f" ({finding.reason})" if "waiver" in finding.reason or "required" in finding.reason else ""
            out.append((f"{finding.check.shown(finding.severity)}  FAIL  {finding.check.test_id} [{_where(finding)}]: "
                        f"{_evidence(finding)}{why}", "red"))
            out += _remedy(finding)
    for finding in result.effect("warn", "tolerated"):
        if not finding.is_root_cause:
            label = "WARN" if finding.effect == Effect.WARN else "TOLERATED"
            out.append((f"{finding.check.shown(finding.severity)}  {label}  {finding.check.test_id} [{_where(finding)}]: "
                        f"{_evidence(finding)} ({finding.reason})", "yellow"))
            out += _remedy(finding)
    for finding in result.effect("waived"):
        out.append((f"{finding.check.shown(finding.severity)}  WAIVED  {finding.check.test_id} [{_where(finding)}]: {finding.reason}", None))
    for note in result.notes:
        out.append((f"note: {note}", "yellow"))
    if len(result.sources) > 1:
        for source in result.sources:
            counts = ", ".join(f"{n} {s}" for s, n in source.counts.items() if n)
            out.append((f"  {source.source}: {source.verdict} ({counts or 'nothing ran'})", TONE[source.verdict]))
    code = f"exit {result.exit_code}" + (", WARN blocks in this gate" if result.verdict == "WARN" and result.warn_blocks else "")
    out.append((f"verdict: {result.verdict} ({code})", TONE[result.verdict]))
    return out


def render(result: GateResult, colour: bool = False) -> str:
    """The block as text, with ANSI colours when ``colour``."""
    text = []
    for line, tone in lines(result):
        text.append(f"{_ANSI[tone]}{line}\033[0m" if colour and tone else line)
    return "\n".join(text) + "\n"
