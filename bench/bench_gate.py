"""Benchmark: the gate over a 50,000-check report (goal: at most 2 s wall, whole process).

Builds one report shaped like the plugin writes it (pytest-json-report entries with
opsgate metadata, evidence and conditions; 1 % warnings, 0.5 % failures, each failure
the root cause of 4 blocked checks), sealed like report.write_report seals it, and times
whole processes side by side:

  floor      python -c "json.loads(...)" with the collector off, as the gate runs (reading
             the file is the least any gate must do)
  gate       opsgate gate REPORT --gate daily
  gate+out   the same, also writing JUnit, Markdown and a Prometheus textfile

Usage: .venv/bin/python bench/bench_gate.py [--checks N] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
from opsgate.report import seal  # noqa: E402

KINDS = ("http", "tcp", "process", "host", "log", "command", "file")


def entry(i: int) -> dict:
    kind = KINDS[i % len(KINDS)]
    name = f"{kind}-{i:05d}"
    status, blocked_by, message = "pass", [], ""
    if i % 200 == 0:
        status, message = "fail", f"status == 'healthy': observed \"degraded\" ({name})"
    elif i % 200 in (1, 2, 3, 4):
        status, blocked_by = "blocked", [f"{KINDS[(i - i % 200) % len(KINDS)]}-{i - i % 200:05d}"]
        message = f"not run: blocked by {blocked_by[0]} (fail)"
    elif i % 100 == 50:
        status, message = "warn", "elapsed_ms <= 500: observed 612.0"
    severity = f"P{i % 4}"
    outcome = {"pass": "passed", "warn": "warned", "fail": "failed", "blocked": "skipped"}[status]
    observed = {"url": f"http://10.0.{i // 250}.{i % 250}:8080/health", "status_code": 200,
                "elapsed_ms": 12.0 + i % 97, "body_bytes": 431, "content_type": "application/json", "redirects": 0}
    return {
        "nodeid": f"checks/daily/test_{kind}.py::test_{kind}[{name}]", "lineno": 3, "outcome": outcome,
        "keywords": [f"test_{kind}[{name}]", "severity", severity, "cadence", "daily", kind, name, "timeout",
                     f"test_{kind}.py", "daily", "checks", "opsgate", ""],
        "setup": {"duration": 0.0004, "outcome": "passed"},
        "metadata": {"opsgate": {
            "severity": severity, "cadence": "daily", "tags": ["web"] if i % 3 else [], "depends_on": blocked_by,
            "name": name, "kind": kind, "status": status, "message": message,
            "evidence": {"observed": observed, "conditions": [
                {"condition": "HTTP status == 200", "ok": True, "level": "fail", "observed": 200, "op": "==", "limit": 200},
                {"condition": "status == 'healthy'", "ok": status != "fail", "level": "fail",
                 "observed": "healthy" if status != "fail" else "degraded", "op": "==", "limit": "healthy"}],
                "details": {"body_excerpt": '{"status": "healthy", "checks": {"db": true, "cache": true}}'}},
            "started_at": 1795368940.17, "duration_s": 0.0123, "attempts": 1, "blocked_by": blocked_by}},
        "call": {"duration": 0.0125, "outcome": outcome},
        "teardown": {"duration": 0.0003, "outcome": "passed"},
    }


def build(n: int, path: Path) -> None:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    tests = [entry(i) for i in range(n)]
    document = {"created": time.time(), "duration": 12.0, "exitcode": 1, "root": "/srv/opsgate", "environment": {},
                "summary": {"total": n, "collected": n}, "collectors": [], "tests": tests,
                "opsgate": {"format": 1, "version": "0.1.0", "environment": "fleet", "environment_file": "fleet.yaml",
                            "cadence": "daily", "host": "bench", "started_at": now, "finished_at": now,
                            "concurrency": 50, "demo": None, "counts": {}, "deselected": [], "stopped_early": None,
                            "verdict": "FAIL"}}
    path.write_text(seal(json.dumps(document, indent=1)))


def timed(argv: list[str], expect: int) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    if proc.returncode != expect:
        raise SystemExit(f"{argv[2:5]} exited {proc.returncode}, expected {expect}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        report = tmp / "daily-latest.json"
        build(args.checks, report)
        py = sys.executable
        policy = str(REPO / "config" / "gates.yaml")
        variants = [
            ("floor: json.loads", [py, "-c", "import gc, json, pathlib; gc.disable(); "
                                             f"json.loads(pathlib.Path({str(report)!r}).read_bytes())"], 0),
            ("opsgate gate", [py, "-m", "opsgate.cli", "gate", str(report), "--policy", policy, "--gate", "daily", "-q"], 1),
            ("opsgate gate + JUnit/Markdown/Prometheus",
             [py, "-m", "opsgate.cli", "gate", str(report), "--policy", policy, "--gate", "daily", "-q",
              "--junit", str(tmp / "j.xml"), "--markdown", str(tmp / "s.md"), "--prometheus", str(tmp / "o.prom")], 1),
        ]
        timed(variants[1][1], 1)  # warm the file cache and bytecode
        print(f"opsgate gate benchmark: {args.checks} checks, report {report.stat().st_size / 1e6:.1f} MB, "
              f"nproc {os.cpu_count()}, median of {args.repeat}")
        results = {}
        for label, argv, expect in variants:
            runs = [timed(argv, expect) for _ in range(args.repeat)]
            results[label] = statistics.median(runs)
            floor = results["floor: json.loads"]
            print(f"  {label:42} {results[label]:6.2f} s  = {results[label] / floor:4.1f}x floor   "
                  f"(runs: {', '.join(f'{r:.2f}' for r in runs)})")
        gate = results["opsgate gate"]
        print(f"  goal: gate <= 2 s wall: [{'MET ' if gate <= 2 else 'MISS'}] ({gate:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
