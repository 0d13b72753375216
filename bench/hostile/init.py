"""``opsgate init --discover`` on a crowded machine: N loopback ports that accept and never
answer plus N JSON health endpoints (N = 40, 10 with --quick), all in this process. Measured:
the discovery's wall time (goal: within its 10 s budget) and whether every one of these
ports got a check (the hanging ones a tcp check, the endpoints an http check). The machine
may be shared: times are noisy.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.support

from opsgate.discover import discover  # noqa: E402
from tests.support.http_target import HangingTarget, HttpTarget  # noqa: E402


def run(quick: bool = False) -> list[dict]:
    n = 10 if quick else 40
    with ExitStack() as stack:
        hanging = [stack.enter_context(HangingTarget()) for _ in range(n)]
        healthy = [stack.enter_context(HttpTarget()) for _ in range(n)]
        started = time.monotonic()
        names = {f.name for f in discover(10.0)}
        elapsed = time.monotonic() - started
    tcp = sum(f"tcp-p{t.port}" in names for t in hanging)
    http = sum(f"http-p{t.port}-health" in names for t in healthy)
    return [
        {"case": f"discover with {n} hanging ports + {n} health endpoints", "measured": f"{elapsed:.1f} s",
         "goal": "<= 10.5 s (10 s budget)", "ok": elapsed <= 10.5},
        {"case": "hanging ports listed as tcp checks", "measured": f"{tcp}/{n}", "goal": f"{n}/{n}", "ok": tcp == n},
        {"case": "health endpoints listed as http checks", "measured": f"{http}/{n}", "goal": f"{n}/{n}",
         "ok": http == n},
    ]
