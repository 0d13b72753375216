"""Nagios/Icinga plugin output: one status line with perfdata, exit 0/1/2/3.

PASS -> OK (0), WARN -> WARNING (1), FAIL -> CRITICAL (2), ERROR -> UNKNOWN (3). The checks
named in the status line that carry a remedy (the runbook's next step) get one line each of
the plugin's long output, after the status line: ``remedy P0 api-health: ./start_aura.sh``.
When the checks come from several hosts, a check is named with its host (``P0 api@web2``);
a broken fleet rule is in the status line with the hosts that broke it.

>>> from opsgate.gate import evaluate, load_policy, read_report
>>> line, code = render(evaluate([read_report("/nonexistent.json")], load_policy(None)))
>>> code, line.split(" | ")[0]
(3, 'OPSGATE UNKNOWN - gate default: /nonexistent.json: report not found')
"""

from __future__ import annotations

from ..gate.decide import Finding, GateResult
from ..redact import sink

STATES = {"PASS": ("OK", 0), "WARN": ("WARNING", 1), "FAIL": ("CRITICAL", 2), "ERROR": ("UNKNOWN", 3)}


def _named(finding: Finding, several_hosts: bool) -> str:
    """``P0 api``, or ``P0 api@web2`` when the gate spans hosts (a fleet check's name has it already)."""
    check = finding.check
    host = check.host if check.remote_host or several_hosts else None
    name = check.name if not host or check.name.endswith(f"@{host}") else f"{check.name}@{host}"
    return f"{finding.severity} {name}"


def render(result: GateResult) -> tuple[str, int]:
    """(the status line, the plugin exit code)."""
    state, code = STATES[result.verdict]
    remedies: list[str] = []
    if result.errors:
        detail = result.errors[0] + (f" (+{len(result.errors) - 1} more)" if len(result.errors) > 1 else "")
    else:
        worst = (result.root_causes or result.effect("block") or result.effect("warn", "tolerated"))[:3]
        several = len({f.check.host for f in result.findings if f.check.host}) > 1
        named = ", ".join(_named(f, several) for f in worst)
        detail = result.headline().split(": ", 1)[1] + (f" [{named}]" if named else "")
        remedies = [" ".join(sink(f"remedy {_named(f, several)}: {f.check.remedy}").replace("|", "/").split())
                    for f in worst if f.check.remedy]
    c = result.counts
    executed = c["pass"] + c["warn"] + c["fail"] + c["error"]
    perf = [f"checks={executed};;;0", f"passed={c['pass']};;;0", f"warned={c['warn']};;;0",
            f"failed={c['fail']};;;0", f"errors={c['error']};;;0", f"blocked={c['blocked']};;;0",
            f"waived={c['waived']};;;0", f"blocking={len(result.effect('block'))};;1;0"]
    if result.fleet:
        perf.append(f"fleet_rules_broken={sum(not o.holds for o in result.fleet)};;1;0")
    line = " ".join(f"OPSGATE {state} - gate {result.gate}: {detail}".replace("|", "/").split())
    return "\n".join([f"{line} | {' '.join(perf)}", *remedies]), code
