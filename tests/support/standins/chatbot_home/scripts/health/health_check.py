#!/usr/bin/env python3
"""Personal AI Chatbot health check (the stand-in's): python scripts/health/health_check.py
[--verbose | --json | --check NAME]. Standard library only, as it runs with the system's python3.

Checks: ``process`` (the pid in data/app.pid is alive), ``memory_usage`` (its resident memory
under ``memory_limit_mb`` of config/settings.json, 1024 by default), ``database`` (SQLite
quick_check), ``api_connectivity`` (the app's own view of the upstream API), ``disk_space``
(under 95 % used). ``--json`` prints ``overall_status`` (healthy, degraded, unhealthy) and every
check; ``--check NAME`` prints one and exits 1 when it fails; the others exit 1 when not healthy.
"""

import argparse
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def state() -> dict:
    try:
        return json.loads((ROOT / "data" / "app_state.json").read_text())
    except (OSError, ValueError):
        return {}


def app_pid() -> int | None:
    try:
        pid = int((ROOT / "data" / "app.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def check_process():
    pid = app_pid()
    return (pid is not None, f"main.py running (pid {pid})" if pid else "main.py is not running")


def check_memory_usage():
    settings_file = ROOT / "config" / "settings.json"
    limit = json.loads(settings_file.read_text()).get("memory_limit_mb", 1024) if settings_file.exists() else 1024
    pid = app_pid()
    if pid is None:
        return False, "main.py is not running"
    with open(f"/proc/{pid}/status") as status:
        rss_mb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    return rss_mb < limit, f"{rss_mb:.0f} MB resident of {limit} MB allowed"


def check_database():
    path = state().get("db") or str(ROOT / "data" / "chatbot.db")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        return False, f"{path}: {exc}"
    return result == "ok", f"quick_check: {result}"


def check_api_connectivity():
    found = state()
    value = found.get("api_connectivity", "unknown")
    if "relapse_after_s" in found:  # the stand-in's relapse fault: degraded after_s after the first read
        since_file = ROOT / "data" / "relapse_since"
        if not since_file.exists():
            since_file.write_text(str(time.time()))
        if time.time() - float(since_file.read_text() or 0) > found["relapse_after_s"]:
            value = "degraded"
    return value == "ok", f"upstream API {value}"


def check_disk_space():
    usage = shutil.disk_usage(ROOT)
    percent = 100 * usage.used / usage.total
    return percent < 95, f"{percent:.0f}% used"


CHECKS = {"process": check_process, "memory_usage": check_memory_usage, "database": check_database,
          "api_connectivity": check_api_connectivity, "disk_space": check_disk_space}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--check", choices=sorted(CHECKS))
    args = parser.parse_args()
    if args.check:
        ok, message = CHECKS[args.check]()
        print(f"{args.check}: {'PASS' if ok else 'FAIL'} - {message}")
        return 0 if ok else 1
    results = {name: dict(zip(("ok", "message"), check())) for name, check in CHECKS.items()}
    overall = ("unhealthy" if not results["process"]["ok"] else
               "healthy" if all(r["ok"] for r in results.values()) else "degraded")
    if args.json:
        print(json.dumps({"overall_status": overall,
                          "checks": {n: {"status": "pass" if r["ok"] else "fail", "message": r["message"]}
                                     for n, r in results.items()}}))
        return 0
    for name, result in results.items():
        print(f"{name}: {'PASS' if result['ok'] else 'FAIL'}" + (f" - {result['message']}" if args.verbose else ""))
    print(f"overall: {overall}")
    return 0 if overall == "healthy" else 1


if __name__ == "__main__":
    sys.exit(main())
