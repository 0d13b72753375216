"""Benchmark (issue 12): the embedded default's DR drill through opsgate against the same
steps run by hand in a shell script, side by side in one run.

A  opsgate      python -m pytest checks/quarterly -k demo-dr --no-report   (the embedded default)
               starts the demo, takes a backup of its SQLite data, restores it into scratch,
               starts the demo from it on a free port, waits until healthy, verifies
               (/api/data, the self-test), tears down.
B  by hand      bash: the same steps with python -m opsgate.demo, sqlite3's online backup
               (python's sqlite3 module), cp, a curl-like wait loop, the self-test, kill, rm.

Goal: opsgate's overhead over the bare steps <= 5 % or <= 0.5 s, whichever is larger.
Medians of --repeat rounds (default 3), A and B alternating. Whole processes are timed.

    .venv/bin/python bench/bench_drill.py [--repeat N] [--json FILE]

Nothing is written in the repository: reports go to --no-report, bytecode to a temp
PYTHONPYCACHEPREFIX, the shell's files to a temp folder removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
TIMEOUT = 300

BY_HAND = r'''
set -eu
work=$(mktemp -d)
trap 'kill $live $copy 2>/dev/null || true; rm -rf "$work"' EXIT
py="$1"
# the live service, as the embedded default starts it
"$py" -m opsgate.demo serve --dir "$work/live" --port 0 --ready-file "$work/ready" & live=$!
until [ -s "$work/ready" ]; do sleep 0.02; done
# the backup (SQLite's online backup), then the restore into scratch
mkdir -p "$work/backups" "$work/scratch/demo/data"
"$py" -c "import sqlite3,sys; s=sqlite3.connect(sys.argv[1]); d=sqlite3.connect(sys.argv[2]); s.backup(d); d.close()" \
    "$work/live/data/app.sqlite" "$work/backups/app.sqlite"
"$py" -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); assert c.execute('PRAGMA integrity_check').fetchone()[0]=='ok'" \
    "$work/backups/app.sqlite"
cp "$work/backups/app.sqlite" "$work/scratch/demo/data/app.sqlite"
port=$("$py" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
"$py" -m opsgate.demo serve --dir "$work/scratch/demo" --port "$port" & copy=$!
# wait until healthy, verify
until "$py" -c "import json,sys,urllib.request as u; sys.exit(json.load(u.urlopen(sys.argv[1],timeout=2))['status']!='healthy')" \
    "http://127.0.0.1:$port/health" 2>/dev/null; do sleep 0.5; done
"$py" -c "import json,sys,urllib.request as u; assert json.load(u.urlopen(sys.argv[1],timeout=2))['models']==3" \
    "http://127.0.0.1:$port/api/data"
"$py" -m opsgate.demo selftest --url "http://127.0.0.1:$port" >/dev/null
kill $copy; wait $copy 2>/dev/null || true
'''


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, str]:
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    return time.perf_counter() - started, proc.returncode, (proc.stdout + proc.stderr)[-600:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="opsgate-bench-drill-"))
    try:
        # bytecode is written to the temp prefix by the untimed warm-up and read by the timed runs
        # (PYTHONDONTWRITEBYTECODE would make every run compile every module again)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPSGATE_", "PYTEST_")) and k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        script = tmp / "by-hand.sh"
        script.write_text(BY_HAND)
        variants = {
            # the drill alone (-k): the quarterly folder's other checks are not among the by-hand steps
            "A opsgate": [PY, "-m", "pytest", "checks/quarterly", "-k", "demo-dr", "--no-report", "-q", "-p",
                          "no:cacheprovider"],
            "B by hand": ["bash", str(script), PY],
        }
        for argv in variants.values():  # warm caches and bytecode, untimed
            timed(argv, env, REPO)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, argv in variants.items():
                seconds, code, tail = timed(argv, env, REPO)
                if code != 0:
                    print(f"{name}: FAILED (exit {code})\n{tail}")
                    return 1
                times[name].append(seconds)
        a, b = (statistics.median(times[n]) for n in variants)
        allowed = max(b * 1.05, b + 0.5)
        print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; medians of {args.repeat}")
        print(f"{'variant':<12} {'seconds':>8}")
        for name in variants:
            print(f"{name:<12} {statistics.median(times[name]):>8.2f}")
        verdict = "met" if a <= allowed else "MISSED"
        print(f"overhead: {a - b:+.2f} s ({a / b:.2f}x); goal <= max(5 %, 0.5 s) = {allowed:.2f} s: {verdict}")
        if args.json:
            Path(args.json).write_text(json.dumps({"opsgate_s": a, "by_hand_s": b, "allowed_s": allowed,
                                                   "rounds": times}, indent=1))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
