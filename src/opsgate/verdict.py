"""A run's overall outcome from its check results, for the terminal's last line.

This is the plain reading of one run (any failure -> FAIL, any warning -> WARN,
nothing run -> ERROR); policies, waivers and several reports belong to the gate.

>>> verdict(["pass", "warn"]), verdict([]), verdict(["pass", "blocked"])
('WARN', 'ERROR', 'FAIL')
"""

from __future__ import annotations

from typing import Iterable


def verdict(statuses: Iterable[str]) -> str:
    statuses = list(statuses)
    executed = [s for s in statuses if s != "skipped"]
    if not executed:
        return "ERROR"
    if any(s in ("error",) for s in executed):
        return "ERROR" if all(s == "error" for s in executed) else "FAIL"
    if any(s in ("fail", "blocked") for s in executed):
        return "FAIL"
    if "warn" in executed:
        return "WARN"
    return "PASS"
