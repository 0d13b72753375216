"""Hostile targets and inputs, measured side by side in one run: hanging and trickling
HTTP targets, a 2 GB log, a command printing 1 GB, a YAML alias bomb.

    .venv/bin/python bench/bench_hostile.py            # the full sizes of issue 8
    .venv/bin/python bench/bench_hostile.py --quick    # smaller sizes, same cases

Each area lives in ``bench/hostile/<area>.py``; this script runs them in turn and prints
one table: case, measured, goal, met.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

AREAS = ("http", "log", "command", "yaml", "secrets", "collection", "init")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("areas", nargs="*", default=list(AREAS), help=f"any of {', '.join(AREAS)}")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    rows = []
    for area in args.areas:
        module = importlib.import_module(f"hostile.{area}")
        for row in module.run(quick=args.quick):
            rows.append({"area": area, **row})
            print(f"  {area:8} {row['case']}: {row['measured']} (goal {row['goal']}) "
                  f"{'met' if row['ok'] else 'MISSED'}", flush=True)
    width = max(len(r["case"]) for r in rows) if rows else 10
    print(f"\n{'area':8} {'case':{width}}  {'measured':32} {'goal':28} met")
    for r in rows:
        print(f"{r['area']:8} {r['case']:{width}}  {r['measured']:32} {r['goal']:28} {'yes' if r['ok'] else 'NO'}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
