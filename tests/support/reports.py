"""Build opsgate reports for gate tests, shaped like the plugin writes them (and sealed).

The fail-closed tests that need a real run (interrupted, collection error, stopped
early, deselected) produce their reports with pytest itself; these builders are for
the decision logic (waivers, tolerance, several hosts, staleness) where a run would
only add time.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from opsgate.report import seal

OUTCOME = {"pass": "passed", "warn": "warned", "fail": "failed", "error": "failed", "blocked": "skipped", "skipped": "skipped"}


def check(name: str, status: str = "pass", severity: str = "P1", kind: str = "http", *, blocked_by=(),
          tags=(), message: str = "", observed: dict | None = None, cadence: str = "daily") -> dict:
    """One entry of the report's ``tests`` list."""
    meta = {"severity": severity, "cadence": cadence, "tags": list(tags), "depends_on": list(blocked_by),
            "name": name, "kind": kind, "status": status, "message": message or ("" if status == "pass" else f"{name} {status}"),
            "evidence": {"observed": observed or {"elapsed_ms": 12.5}, "conditions": []},
            "started_at": 0.0, "duration_s": 0.01, "attempts": 1, "blocked_by": list(blocked_by)}
    return {"nodeid": f"checks/daily/test_{kind}.py::test_{kind}[{name}]", "lineno": 1, "outcome": OUTCOME[status],
            "keywords": [f"test_{kind}[{name}]", severity, cadence, kind, *tags], "metadata": {"opsgate": meta},
            "call": {"duration": 0.01, "outcome": OUTCOME[status]}}


def document(tests: list[dict], environment: str = "web", host: str = "web-1", *, age: timedelta = timedelta(0),
             exitcode: int = 0, collectors: list | None = None, deselected=(), stopped_early: str | None = None) -> dict:
    finished = datetime.now(timezone.utc) - age
    return {
        "created": finished.timestamp(), "duration": 1.0, "exitcode": exitcode, "root": "/srv/opsgate",
        "environment": {}, "summary": {"total": len(tests), "collected": len(tests)},
        "collectors": collectors or [], "tests": tests,
        "opsgate": {"format": 1, "version": "0.1.0", "environment": environment, "environment_file": "env.yaml",
                    "cadence": "daily", "host": host, "started_at": finished.isoformat(timespec="seconds"),
                    "finished_at": finished.isoformat(timespec="seconds"), "concurrency": 50, "demo": None,
                    "counts": {}, "deselected": list(deselected), "stopped_early": stopped_early, "verdict": "?"},
    }


def write(folder: Path, doc: dict, name: str = "daily-latest.json") -> Path:
    """Write ``doc`` sealed, as report.write_report does."""
    path = folder / name
    path.write_text(seal(json.dumps(doc, indent=1)))
    return path
