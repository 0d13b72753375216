"""Redaction over a whole report: what the plugin does to every string of the run record
before writing it (``REDACTOR.data``), on the 50,000-check report of bench_gate.py.

Side by side in one process: a plain walk that copies the document (the floor), the redactor
with no secrets registered, and with 8 secrets registered (each in every encoded form: JSON,
URL, repr, base64 cores, plus edge fragments). Goal: 8 secrets cost at most 2x no secrets.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from bench_gate import entry  # noqa: E402
from opsgate.redact import Redactor  # noqa: E402

SECRETS = ["tok-9f8e7d6c5b4a-SECRET", "pw-Zq81-SECRET", "db-hunter2-SECRET", "sk_live_51Hc9aZq",
           "ghp_abcdefghijklmnop1234", 's3cr3t/with+chars=\u00dc"q', "AKIAIOSFODNN7EXAMPLE", "x9-Signing-Key-77"]


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def run(quick: bool = False) -> list[dict]:
    n = 5_000 if quick else 50_000
    document = {"tests": [entry(i) for i in range(n)]}
    empty, loaded = Redactor(), Redactor()
    for secret in SECRETS:
        loaded.add(secret)
    floor = _best(lambda: _copy(document), 3)
    none = _best(lambda: empty.data(document), 3)
    eight = _best(lambda: loaded.data(document), 3)
    return [
        {"case": f"copy walk, {n} checks (floor)", "measured": f"{floor:.2f} s", "goal": "-", "ok": True},
        {"case": f"redact, no secrets, {n} checks", "measured": f"{none:.2f} s ({none / floor:.1f}x floor)",
         "goal": "-", "ok": True},
        {"case": f"redact, 8 secrets, {n} checks", "measured": f"{eight:.2f} s ({eight / none:.2f}x no secrets)",
         "goal": "<= 2x no secrets", "ok": eight <= 2 * none},
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
