"""A command printing 1 GB (64 MB with --quick): the probe's peak RSS and wall time, beside
the same command redirected to ``/dev/null`` and beside the old way of reading it
(``subprocess.communicate``, everything in memory); plus the two process cases of issue 8:
a background process holding stdout after an exit 0, and a timeout whose grandchild
ignores SIGTERM.

Every probe runs in its own child process, which reports its own peak RSS
(``VmHWM`` of /proc/self/status, not ``ru_maxrss``, which keeps the forking parent's peak: the command's processes are not counted) and the probe's
wall time (interpreter start-up and imports excluded). The machine may be shared: times
are noisy, RSS is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
MiB = 1 << 20
LINE = "2026-11-30 21:00:00 INFO request served in 12 ms by worker 7"

PROBE = """
import json, resource, sys, time
from opsgate.model import CommandCheck
from opsgate.probes import ProbeContext
from opsgate.probes.command import observe
started = time.perf_counter()
obs = observe(CommandCheck(name="bench", **json.loads(sys.argv[1])), ProbeContext())
print(json.dumps({"seconds": time.perf_counter() - started, "rss_mb": int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024,
                  "error": obs.error, "values": obs.values, "details": {k: v for k, v in obs.details.items() if "_" not in k}}))
"""

OLD_READ = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[1], shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
out, err = proc.communicate(timeout=600)
print(json.dumps({"seconds": time.perf_counter() - started, "rss_mb": int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024,
                  "bytes": len(out)}))
"""


def _child(code: str, arg: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child exited {done.returncode}: {done.stderr[-500:]}")
    return json.loads(done.stdout)


def _probe(**fields) -> dict:
    fields.setdefault("timeout", 600)
    return _child(PROBE, json.dumps(fields))


def _printer(size: int, middle: str | None = None) -> str:
    """A shell line printing ``size`` bytes of log lines (``middle`` halfway through)."""
    half = f"yes '{LINE}' | head -c {size // 2}"
    return f"{half}; echo; echo '{middle}'; {half}" if middle else f"yes '{LINE}' | head -c {size}"


def run(quick: bool = False) -> list[dict]:
    size = (64 if quick else 1024) * MiB
    label = f"{size // MiB} MB" if size < 1024 * MiB else f"{size // (1024 * MiB)} GB"
    shell = _printer(size)
    started = time.perf_counter()
    subprocess.run(f"{shell} > /dev/null", shell=True, check=True)
    devnull = time.perf_counter() - started
    rows = [{"case": f"{label} to /dev/null (reference)", "measured": f"{devnull:.2f} s", "goal": "-", "ok": True}]

    plain = _probe(shell=shell)
    ok = plain["error"] is None and plain["values"]["exit_code"] == 0
    rows.append({"case": f"{label} stdout, exit code: peak RSS", "measured": f"{plain['rss_mb']:.0f} MB",
                 "goal": "<= 100 MB", "ok": ok and plain["rss_mb"] <= 100})
    rows.append({"case": f"{label} stdout, exit code: time", "measured":
                 f"{plain['seconds']:.2f} s ({plain['seconds'] / devnull:.1f}x /dev/null)", "goal": "reported", "ok": ok})

    hidden = _probe(shell=_printer(size, "FATAL: replica lost"), stdout_not_regex="^FATAL")
    found = hidden["values"].get("stdout_not_regex_found") is True
    rows.append({"case": f"{label} + FATAL line in the middle, stdout_not_regex: found, RSS", "measured":
                 f"{'found' if found else 'MISSED'}, {hidden['rss_mb']:.0f} MB, {hidden['seconds']:.2f} s",
                 "goal": "found, <= 100 MB", "ok": found and hidden["rss_mb"] <= 100})

    old = _child(OLD_READ, shell)
    rows.append({"case": f"{label} read the old way (communicate): peak RSS", "measured":
                 f"{old['rss_mb']:.0f} MB, {old['seconds']:.2f} s", "goal": "comparison only", "ok": old["bytes"] == size})

    held = _probe(shell="sleep 31 & echo ok", stdout_regex="^ok$", timeout=10)
    ok = held["error"] is None and held["values"].get("stdout_regex_found") is True
    rows.append({"case": "`sleep 31 & echo ok` (background holds stdout), timeout 10 s", "measured":
                 f"exit {held['values'].get('exit_code')} in {held['seconds']:.2f} s", "goal": "exit 0, <= 1 s",
                 "ok": ok and held["seconds"] <= 1})

    stuck = _probe(shell="sh -c 'trap \"\" TERM; sleep 32' & wait", timeout=1)
    ok = bool(stuck["error"]) and "did not finish within 1s" in stuck["error"]
    rows.append({"case": "timeout 1 s, grandchild ignores SIGTERM", "measured": f"{stuck['seconds']:.2f} s",
                 "goal": "<= 2 s (TERM, 0.5 s, KILL)", "ok": ok and stuck["seconds"] <= 2})
    return rows
