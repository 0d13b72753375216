"""Benchmark: backup verification of files and restic through opsgate against the bare tools,
side by side in one run (issue 11). bench_backup.py runs these parts beside its postgres one.

Parts:

  checksum   manifest verification (L2) of 1 GB of backup files (100 MB with --quick, 16
             files): opsgate's ``points.check_manifest`` (sha256 of every listed file, files
             in parallel) against ``sha256sum -c`` of the same manifest. Goal: at least
             0.8x sha256sum's throughput.
  restic     L2 ``restic check --read-data`` of a repository holding 256 MB (32 MB with
             --quick) through opsgate (``restic.integrity``) against restic alone with the
             same flags. Goal: overhead <= 5 %.

Both variants read from the page cache (a warm-up read first) and alternate; the medians of
``--repeat`` runs are compared, because the machine is shared and noisy.

Usage: .venv/bin/python bench/bench_backup_files.py [--quick] [--repeat N] [--part checksum]
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
sys.path.insert(0, str(REPO / "src"))

from opsgate.backups import points, restic  # noqa: E402
from opsgate.backups.base import RecoveryPoint, Scratch  # noqa: E402

MB = 1024 * 1024


def _write_files(folder: Path, total: int, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(4 * MB)
    out = []
    for i in range(count):
        path = folder / f"part-{i:03}.bin"
        with open(path, "wb") as handle:
            left = total // count
            while left > 0:
                handle.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
        out.append(path)
    return out


def _alternate(bare, ours, repeat: int) -> tuple[float, float, list[float], list[float]]:
    a, b = [], []
    for _ in range(repeat):
        a.append(bare())
        b.append(ours())
    return statistics.median(a), statistics.median(b), a, b


def bench_checksum(quick: bool, repeat: int = 3) -> dict:
    total = (100 if quick else 1024) * MB
    with tempfile.TemporaryDirectory(prefix="opsgate-scratch-bench-") as tmp:
        folder = Path(tmp) / "backup"
        files = _write_files(folder, total, 16)
        lines = [f"{points.sha256_file(p)[0]}  {p.name}\n" for p in files]  # also the warm-up read
        manifest = folder / "SHA256SUMS"
        manifest.write_text("".join(lines))
        size = sum(p.stat().st_size for p in files)
        point = RecoveryPoint(str(folder), time.time(), size, folder)

        def bare() -> float:
            started = time.perf_counter()
            subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=folder, check=True, timeout=600)
            return time.perf_counter() - started

        def ours() -> float:
            started = time.perf_counter()
            with Scratch(timeout=600, label="bench") as scratch:
                outcome = points.check_manifest(point, manifest, scratch)
            assert outcome.ok and outcome.bytes == size, outcome.message
            return time.perf_counter() - started

        t_bare, t_ours, all_bare, all_ours = _alternate(bare, ours, repeat)
    ratio = t_bare / t_ours  # throughput ratio: ours / bare
    return {"part": "checksum", "bytes": size, "files": len(files),
            "sha256sum_s": round(t_bare, 3), "opsgate_s": round(t_ours, 3),
            "sha256sum_MBps": round(size / MB / t_bare, 1), "opsgate_MBps": round(size / MB / t_ours, 1),
            "throughput_ratio": round(ratio, 2), "goal": ">= 0.8", "met": ratio >= 0.8,
            "runs": {"sha256sum": [round(x, 3) for x in all_bare], "opsgate": [round(x, 3) for x in all_ours]}}


def bench_restic(quick: bool, repeat: int = 3) -> dict:
    if not shutil.which("restic"):
        return {"part": "restic", "skipped": "restic is not installed", "met": None}
    total = (32 if quick else 256) * MB
    env = {**os.environ, "RESTIC_PASSWORD": "bench-restic-pw"}
    with tempfile.TemporaryDirectory(prefix="opsgate-scratch-bench-") as tmp:
        live = Path(tmp) / "live"
        _write_files(live, total, 8)
        repo = Path(tmp) / "repo"
        for args in (["init"], ["backup", str(live)]):
            subprocess.run(["restic", "-r", str(repo), "--no-cache", "-q", *args], env=env, check=True,
                           timeout=600, capture_output=True)
        options = restic.Options(repository=str(repo), password_env="OPSGATE_BENCH_RESTIC_PW")
        os.environ["OPSGATE_BENCH_RESTIC_PW"] = env["RESTIC_PASSWORD"]
        argv = ["restic", "-r", str(repo), "--no-cache", "--no-lock", "check", "--read-data"]

        def bare() -> float:
            started = time.perf_counter()
            subprocess.run(argv, env=env, check=True, timeout=600, capture_output=True)
            return time.perf_counter() - started

        def ours() -> float:
            started = time.perf_counter()
            with Scratch(timeout=600, label="bench") as top, Scratch(timeout=600, parent=top.dir) as scratch:
                outcome = restic.integrity(RecoveryPoint("latest", time.time(), -1), options, scratch)
            assert outcome.ok, outcome.message
            return time.perf_counter() - started

        bare()  # warm-up: the repository into the page cache
        t_bare, t_ours, all_bare, all_ours = _alternate(bare, ours, repeat)
    overhead = (t_ours - t_bare) / t_bare * 100
    return {"part": "restic", "bytes": total, "restic_s": round(t_bare, 3), "opsgate_s": round(t_ours, 3),
            "overhead_percent": round(overhead, 1), "goal": "<= 5", "met": overhead <= 5,
            "runs": {"restic": [round(x, 3) for x in all_bare], "opsgate": [round(x, 3) for x in all_ours]}}


PARTS = {"checksum": bench_checksum, "restic": bench_restic}


def printed(part):
    """``part`` as bench_backup.py runs its parts: prints its row, returns whether it met its goal."""
    def run(quick: bool, repeat: int = 3) -> bool:
        row = part(quick, repeat=repeat)
        print("  ".join(f"{k}={v}" for k, v in row.items() if k != "runs"))
        return row["met"] is not False
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data: shows the benchmark works")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (median)")
    parser.add_argument("--part", choices=sorted(PARTS), action="append", help="run only this part (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = [PARTS[name](args.quick, repeat=args.repeat) for name in (args.part or PARTS)]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for row in results:
            print("  ".join(f"{k}={v}" for k, v in row.items() if k != "runs"))
    return 0 if all(r["met"] is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
