"""Nagios/Icinga plugin output: one status line with perfdata, exit 0/1/2/3.

PASS -> OK (0), WARN -> WARNING (1), FAIL -> CRITICAL (2), ERROR -> UNKNOWN (3). The checks
named in the status line that carry a remedy (the runbook's next step) get one line each of
the plugin's long output, after the status line: ``remedy P0 api-health: ./start_aura.sh``.

>>> from opsgate.gate import evaluate, load_policy, read_report
>>> line, code = render(evaluate([read_report("/nonexistent.json")], load_policy(None)))
>>> code, line.split(" | ")[0]
(3, 'OPSGATE UNKNOWN - gate default: /nonexistent.json: report not found')
"""

from __future__ import annotations

from ..gate.decide import GateResult
from ..redact import sink

STATES = {"PASS": ("OK", 0), "WARN": ("WARNING", 1), "FAIL": ("CRITICAL", 2), "ERROR": ("UNKNOWN", 3)}


def render(result: GateResult) -> tuple[str, int]:
    """(the status line, the plugin exit code)."""
    state, code = STATES[result.verdict]
    remedies: list[str] = []
    if result.errors:
        detail = result.errors[0] + (f" (+{len(result.errors) - 1} more)" if len(result.errors) > 1 else "")
    else:
        worst = (result.root_causes or result.effect("block") or result.effect("warn", "tolerated"))[:3]
        named = ", ".join(f"{f.severity} {f.check.name}" for f in worst)
        detail = result.headline().split(": ", 1)[1] + (f" [{named}]" if named else "")
        remedies = [" ".join(sink(f"remedy {f.severity} {f.check.name}: {f.check.remedy}").replace("|", "/").split())
                    for f in worst if f.check.remedy]
    c = result.counts
    executed = c["pass"] + c["warn"] + c["fail"] + c["error"]
    perf = [f"checks={executed};;;0", f"passed={c['pass']};;;0", f"warned={c['warn']};;;0",
            f"failed={c['fail']};;;0", f"errors={c['error']};;;0", f"blocked={c['blocked']};;;0",
            f"waived={c['waived']};;;0", f"blocking={len(result.effect('block'))};;1;0"]
    line = " ".join(f"OPSGATE {state} - gate {result.gate}: {detail}".replace("|", "/").split())
    return "\n".join([f"{line} | {' '.join(perf)}", *remedies]), code
