"""A 2 GB log (200 MB with --quick): ``last_lines: 100`` against ``tail -n 100`` on the same
file, ``last_minutes: 10``, and the peak RSS of each.

The log is written once into a temporary directory (deleted afterwards): time-stamped
lines spanning the last day, one ERROR among the last 100 lines and the last 10 minutes.
Each case runs in its own child process, whose peak RSS comes from ``wait4``; times are the
best of 5 runs, the probe's measured inside its process (interpreter start-up and imports
excluded, as ``tail`` has none to speak of), ``tail``'s as the wall time of the process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
MiB = 1 << 20
RUNS = 5

PROBE = """
import json, sys, time
from opsgate.model import LogCheck
from opsgate.probes import ProbeContext
from opsgate.probes.log import observe
item = LogCheck(name="bench", path="app.log", patterns=[{"regex": "ERROR"}], timeout=60, **json.loads(sys.argv[2]))
ctx, best = ProbeContext(sys.argv[1]), None
for _ in range(int(sys.argv[3])):
    started = time.perf_counter()
    obs = observe(item, ctx)
    best = min(best or 1e9, time.perf_counter() - started)
print(json.dumps({"seconds": best, "error": obs.error, **{k: obs.values.get(k) for k in ("lines_read", "matches", "bytes_read")}}))
"""


def _write_log(path: Path, size: int) -> None:
    """``size`` bytes of INFO lines stamped over the last day (4 MiB blocks share a stamp), then
    10 minutes of recent lines with one ERROR 50 lines from the end."""
    line = " INFO request served in 12 ms by worker 7 for client 10.0.0.1\n"
    now = datetime.now()
    blocks = max(1, size // (4 * MiB))
    with open(path, "w") as handle:
        for i in range(blocks):
            stamp = (now - timedelta(hours=24) + timedelta(hours=23.5) * i / blocks).strftime("%Y-%m-%d %H:%M:%S,000")
            handle.write((stamp + line) * (4 * MiB // (len(stamp) + len(line))))
        recent = [(now - timedelta(seconds=540 - i)).strftime("%Y-%m-%d %H:%M:%S,000") + line for i in range(540)]
        recent[-50] = recent[-50].replace(" INFO ", " ERROR ")
        handle.write("".join(recent))


def _child(argv: list[str], stdout=subprocess.PIPE) -> tuple[str, float, float]:
    """Run argv; (stdout, wall seconds, peak RSS in MB) of that child alone."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(SRC)})
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err.decode(errors='replace')[-500:]}")
    return out.decode(), wall, usage.ru_maxrss / 1024


def _probe(directory: Path, fields: dict) -> tuple[dict, float]:
    out, _, rss = _child([sys.executable, "-c", PROBE, str(directory), json.dumps(fields), str(RUNS)])
    return json.loads(out), rss


def run(quick: bool = False) -> list[dict]:
    size = (200 if quick else 2048) * MiB
    tmp = Path(tempfile.gettempdir())
    free = shutil.disk_usage(tmp).free
    if free < size * 1.5:
        return [{"case": "log file", "measured": f"{free / MiB:.0f} MiB free in {tmp}", "goal": f"{size * 1.5 / MiB:.0f} MiB",
                 "ok": False}]
    directory = Path(tempfile.mkdtemp(prefix="opsgate-bench-log-"))
    label = f"{size / MiB / 1024:g} GB log" if size >= 1024 * MiB else f"{size / MiB:.0f} MB log"
    try:
        started = time.perf_counter()
        _write_log(directory / "app.log", size)
        written = time.perf_counter() - started
        print(f"  log      wrote {label} in {written:.1f}s", flush=True)
        log = str(directory / "app.log")
        tail_times, tail_rss = [], 0.0
        for _ in range(RUNS):
            _, wall, rss = _child(["tail", "-n", "100", log], stdout=subprocess.DEVNULL)
            tail_times.append(wall)
            tail_rss = max(tail_rss, rss)
        tail = min(tail_times)
        lines, lines_rss = _probe(directory, {"last_lines": 100})
        minutes, minutes_rss = _probe(directory, {"last_minutes": 10})
        rows = []
        ratio = lines["seconds"] / tail
        right = lines["lines_read"] == 100 and lines["matches"] == {"ERROR": 1}
        rows.append({"case": f"last_lines: 100, {label}", "goal": "<= 2x tail -n 100",
                     "measured": f"{lines['seconds'] * 1000:.1f} ms vs tail {tail * 1000:.1f} ms ({ratio:.2f}x)"
                                 + ("" if right else f" WRONG {lines}"),
                     "ok": ratio <= 2 and right})
        right = minutes["lines_read"] == 540 and minutes["matches"] == {"ERROR": 1}
        rows.append({"case": f"last_minutes: 10, {label}", "goal": "<= 1 s",
                     "measured": f"{minutes['seconds'] * 1000:.1f} ms, {minutes['bytes_read'] / MiB:.1f} MiB read"
                                 + ("" if right else f" WRONG {minutes}"),
                     "ok": minutes["seconds"] <= 1 and right})
        for case, rss in (("last_lines: 100", lines_rss), ("last_minutes: 10", minutes_rss), ("tail -n 100", tail_rss)):
            rows.append({"case": f"peak RSS, {case}", "goal": "<= 100 MB" if "tail" not in case else "(reference)",
                         "measured": f"{rss:.0f} MB", "ok": rss <= 100})
        return rows
    finally:
        shutil.rmtree(directory, ignore_errors=True)
