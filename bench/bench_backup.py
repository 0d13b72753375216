"""Benchmark: backup verification through opsgate against the bare tools, side by side in
one run (issue 11).

Parts (each a function taking ``quick``; a part returns its rows and whether it met its goal):

  postgres   L3+L4 of a 1,000,000-row database (100,000 with --quick): opsgate's
             ``postgres.restore`` (scratch database created, ``pg_restore --no-owner
             --no-privileges --no-subscriptions --exit-on-error``) + ``postgres.compare`` (exact row counts of
             every table in the restore and in live) against a bare ``createdb && pg_restore``
             of the same dump with the same flags. Goal: opsgate's overhead <= 10 %.
             Dropping the scratch database is left out of both timings.

  checksum   manifest verification of 1 GB (100 MB with --quick) against sha256sum -c;
             goal >= 0.8x its throughput (bench_backup_files.py).
  restic     L2 restic check --read-data through opsgate against restic alone; goal <= 5 %
             overhead (bench_backup_files.py).

Variants alternate (bare then opsgate, then opsgate then bare, ...) and the medians of
``--repeat`` runs are compared, because the machine is shared and noisy; opsgate's own L3
and L4 durations are printed too, so the overhead can be attributed (L4 is the part a bare
restore does not do).

Usage: .venv/bin/python bench/bench_backup.py [--quick] [--repeat N] [--part postgres|checksum|restic]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from opsgate.backups import postgres  # noqa: E402
from opsgate.backups.base import RecoveryPoint, Scratch  # noqa: E402
from opsgate.backups.pgconn import pg_bin  # noqa: E402

ADMIN_PASSWORD = "postgres-admin"  # tests.support.servers' superuser password


def _median_pair(run_bare, run_opsgate, repeat: int) -> tuple[float, float, list[float], list[float]]:
    """Medians of ``repeat`` runs each; the order alternates (AB, BA, ...) so neither variant
    always runs on a warmer machine."""
    bare, ours = [], []
    for i in range(repeat):
        for run in ((run_bare, run_opsgate) if i % 2 == 0 else (run_opsgate, run_bare)):
            (bare if run is run_bare else ours).append(run())
    return statistics.median(bare), statistics.median(ours), bare, ours


def bench_postgres(quick: bool, repeat: int = 5) -> bool:
    """L3+L4 through opsgate vs a bare createdb && pg_restore; True when within 10 %."""
    from tests.support.servers import APP_PASSWORD, PostgresServer

    rows = 100_000 if quick else 1_000_000
    users = rows // 5
    events = rows - users
    with PostgresServer() as pg, tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        pg.sql(f"""CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, created timestamptz NOT NULL);
                   INSERT INTO users SELECT g, 'user' || g || '@example.org', now() - g * interval '1 minute'
                     FROM generate_series(1, {users}) g;
                   CREATE TABLE events (id bigint PRIMARY KEY, user_id int NOT NULL REFERENCES users, at timestamptz NOT NULL,
                                        kind text NOT NULL, payload text);
                   INSERT INTO events SELECT g, 1 + g % {users}, now() - g * interval '1 second', 'k' || g % 7, md5(g::text)
                     FROM generate_series(1, {events}) g;
                   CREATE INDEX events_user ON events (user_id);
                   ALTER TABLE users OWNER TO app; ALTER TABLE events OWNER TO app; ANALYZE""")
        dump = Path(tmp) / "app.dump"
        env = dict(os.environ, PGPASSWORD=APP_PASSWORD)
        subprocess.run([pg_bin("pg_dump"), "-Fc", "-f", str(dump), "-d", f"host=127.0.0.1 port={pg.port} user=app dbname=app"],
                       env=env, check=True, timeout=600)
        admin_env = dict(os.environ, PGPASSWORD=ADMIN_PASSWORD)
        admin = ["-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres"]
        options = postgres.Options(live_dsn=pg.dsn(), scratch_dsn=pg.dsn(user="postgres", password=ADMIN_PASSWORD, db="postgres"))
        dump_size = dump.stat().st_size
        point = RecoveryPoint(str(dump), dump.stat().st_mtime, dump_size, dump)
        count = iter(range(10_000))

        def bare() -> float:
            name = f"bench_bare_{next(count)}"
            started = time.perf_counter()
            subprocess.run([pg_bin("createdb"), *admin, name], env=admin_env, check=True, timeout=600)
            subprocess.run([pg_bin("pg_restore"), "--no-owner", "--no-privileges", "--no-subscriptions", "--exit-on-error", *admin, "-d", name,
                            str(dump)], env=admin_env, check=True, timeout=600)
            took = time.perf_counter() - started
            subprocess.run([pg_bin("dropdb"), *admin, name], env=admin_env, check=True, timeout=600)
            return took

        parts: dict[str, list[float]] = {"L3": [], "L4": []}

        def opsgate() -> float:
            with Scratch(timeout=600, label="bench") as scratch:
                started = time.perf_counter()
                restored_outcome, restored = postgres.restore(point, options, scratch)
                compared = postgres.compare(restored, options, scratch) if restored_outcome.ok else restored_outcome
                took = time.perf_counter() - started
                if not compared.ok:
                    raise SystemExit(f"opsgate verification failed: {compared.message}")
                opsgate.message = compared.message
                parts["L3"].append(restored_outcome.duration_s)
                parts["L4"].append(compared.duration_s)
            return took

        bare()  # warm the caches (dump file, catalog) once for both
        bare_s, ours_s, bare_all, ours_all = _median_pair(bare, opsgate, repeat)
    ratio = ours_s / bare_s
    ok = ratio <= 1.10
    print(f"postgres L3+L4, {rows:,} rows ({dump_size:,} bytes dump), median of {repeat}:")
    print(f"  bare createdb && pg_restore   {bare_s:7.2f} s   runs {', '.join(f'{t:.2f}' for t in bare_all)}")
    print(f"  opsgate restore + compare     {ours_s:7.2f} s   runs {', '.join(f'{t:.2f}' for t in ours_all)}")
    print(f"  opsgate checked: {opsgate.message}")
    l3, l4 = statistics.median(parts["L3"]), statistics.median(parts["L4"])
    print(f"  opsgate's parts (medians): L3 restore {l3:.2f} s (scratch database + pg_restore), "
          f"L4 compare {l4:.2f} s = {l4 / bare_s * 100:.1f} % of the bare restore")
    print(f"  overhead {ratio:.3f}x ({(ratio - 1) * 100:+.1f} %), goal <= 1.10x: {'MET' if ok else 'NOT MET'}")
    return ok


from bench_backup_files import bench_checksum, bench_restic, printed  # noqa: E402 (the files and restic parts)

PARTS = {"postgres": bench_postgres, "checksum": printed(bench_checksum), "restic": printed(bench_restic)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data: shows the benchmark works")
    parser.add_argument("--repeat", type=int, default=5, help="runs per variant (median)")
    parser.add_argument("--part", choices=sorted(PARTS), action="append", help="run only this part (repeatable)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    results = [PARTS[name](args.quick, repeat=args.repeat) for name in (args.part or PARTS)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
