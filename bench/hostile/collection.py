"""Collection (issue 9): N configured checks collected by the cadence folder itself (one
``ConfiguredCheck`` item each) against the same checks through an old per-kind stub file
(a parametrized ``pytest.Function`` each, with the ``verify`` fixture), and a trivial pytest
run, side by side in one run. The checks are ``file`` checks on /etc/hostname, so the probe
costs little and pytest's per-item cost shows. Whole-process wall time, best of 3.

    .venv/bin/python bench/bench_hostile.py collection [--quick]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUB = "def test_file(file_check, verify):\n    verify(file_check)\n"


def _project(root: Path, n: int, stub: bool) -> Path:
    project = root / ("stub" if stub else "collected")
    daily = project / "checks" / "daily"
    daily.mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    if stub:
        (daily / "test_file.py").write_text(STUB)
    lines = ["name: bench", "file:"] + [f"  - name: f{i}\n    path: /etc/hostname" for i in range(n)]
    (project / "env.yaml").write_text("\n".join(lines) + "\n")
    return project


def _run(project: Path, *args: str) -> float:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "PYTEST_"))}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider"],
                          cwd=project, env=environ, capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - start
    if proc.returncode not in (0,):
        raise RuntimeError(f"run failed ({proc.returncode}): {proc.stdout[-2000:]}")
    return took


def run(quick: bool = False) -> list[dict]:
    n = 500 if quick else 3000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        collected, stubbed = _project(root, n, False), _project(root, n, True)
        trivial = root / "trivial"
        trivial.mkdir()
        (trivial / "test_t.py").write_text("def test_t():\n    pass\n")
        times = {"trivial": [], "collected": [], "stub": []}
        for _ in range(3):  # interleaved, so load on the machine hits each alike
            times["trivial"].append(_run(trivial, "test_t.py"))
            times["collected"].append(_run(collected, "checks/daily", "--env", "env.yaml"))
            times["stub"].append(_run(stubbed, "checks/daily", "--env", "env.yaml", "-W", "ignore"))
    best = {k: min(v) for k, v in times.items()}
    per_collected = (best["collected"] - best["trivial"]) / n * 1000
    per_stub = (best["stub"] - best["trivial"]) / n * 1000
    return [
        {"case": f"{n} configured checks, collected by the folder", "measured": f"{best['collected']:.2f} s "
         f"({per_collected:.2f} ms/check over trivial {best['trivial']:.2f} s)", "goal": "below the stub run",
         "ok": best["collected"] < best["stub"]},
        {"case": f"{n} configured checks, through a stub file", "measured": f"{best['stub']:.2f} s "
         f"({per_stub:.2f} ms/check)", "goal": "(reference)", "ok": True},
    ]
