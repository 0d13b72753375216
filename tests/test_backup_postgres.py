"""The ``postgres`` backup source against a real PostgreSQL the tests start: pg_dump custom,
directory and plain dumps and pg_basebackup base backups, verified to L2 (every byte), L3
(restored into a scratch database / a scratch server) and L4 (rows per table vs live).

Runbook steps protected here: "pg_dump" (the emergency backup), "restore the dump, verify"
(Perfect Jarvis), and the weekly "verify the backups" - which a dump cut in half passes
when only ``pg_restore --list`` looks at it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from opsgate.backups import postgres as source
from opsgate.backups.base import RecoveryPoint, Scratch
from tests.support.servers import APP_PASSWORD, PostgresServer

ADMIN_PASSWORD = "postgres-admin"  # tests.support.servers' superuser password (TCP, scram)
ROWS = 20_000


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        server.sql(f"CREATE TABLE items AS SELECT g AS id, md5(g::text) AS label FROM generate_series(1, {ROWS}) g;"
                   "ALTER TABLE items OWNER TO app")
        yield server


@pytest.fixture(scope="module")
def dumps(pg, tmp_path_factory) -> dict[str, Path]:
    """One dump of the live database in each format (and a base backup, plain and tar)."""
    folder = tmp_path_factory.mktemp("dumps")
    os.chmod(folder, 0o755)
    made = {}
    for fmt, name in (("c", "app.dump"), ("d", "app.dir"), ("p", "app.sql")):
        made[name] = folder / name
        subprocess.run(["pg_dump", f"-F{fmt}", "-f", str(made[name]), "-d", f"host=127.0.0.1 port={pg.port} user=app dbname=app"],
                       env=dict(os.environ, PGPASSWORD=APP_PASSWORD), check=True, timeout=60)
    made["app.sql.gz"] = folder / "app.sql.gz"
    made["app.sql.gz"].write_bytes(gzip.compress(made["app.sql"].read_bytes()))
    for layout, name in (("p", "base"), ("t", "base-tar")):
        made[name] = folder / name
        subprocess.run(["pg_basebackup", "-D", str(made[name]), f"-F{layout}", "-h", "127.0.0.1", "-p", str(pg.port),
                        "-U", "postgres", "-X", "stream", "--no-sync", "-c", "fast"],
                       env=dict(os.environ, PGPASSWORD=ADMIN_PASSWORD), check=True, timeout=60)
    return made


def options(pg, **fields) -> source.Options:
    fields.setdefault("live_dsn", pg.dsn())
    fields.setdefault("scratch_dsn", pg.dsn(user="postgres", password=ADMIN_PASSWORD, db="postgres"))
    return source.Options(**fields)


def point(path: Path) -> RecoveryPoint:
    return RecoveryPoint(str(path), path.stat().st_mtime, path.stat().st_size if path.is_file() else -1, path)


def fingerprint(path: Path) -> list:
    """Every file's name, bytes' hash, mode and mtime: a backup is never modified."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(p), hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode, p.stat().st_mtime_ns) for p in files]


def verify(path: Path, opts: source.Options) -> list:
    """L2, L3 and L4 as the framework runs them, each level only after the one below passed."""
    before = fingerprint(path)
    outcomes = []
    with Scratch(timeout=120, label="item") as item, \
            Scratch(timeout=60, label="point", parent=item.dir) as scratch:  # nested, as the kind runs it
        outcomes.append(source.integrity(point(path), opts, scratch))
        if outcomes[-1].ok:
            outcome, restored = source.restore(point(path), opts, scratch)
            outcomes.append(outcome)
            if outcome.ok:
                outcomes.append(source.compare(restored, opts, scratch))
    assert fingerprint(path) == before, "the backup was modified"
    return outcomes


def _scratch_databases(pg) -> list[str]:
    return [row[0] for row in pg.sql("SELECT datname FROM pg_database WHERE datname LIKE 'opsgate\\_scratch\\_%'", "postgres")]


def _scratch_servers() -> list[int]:
    """This process's scratch postgres servers: their data dir (argv) or working folder is
    in one of our scratch folders."""
    mine = f"opsgate-scratch-{os.getpid()}-"
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        if any(mine in part for part in (proc.info["cmdline"] or []) + [proc.info["cwd"] or ""]):
            found.append(proc.info["pid"])
    return found


@pytest.fixture(autouse=True)
def nothing_left_behind(pg):
    yield
    assert _scratch_databases(pg) == [], "a scratch database was left behind"
    assert _scratch_servers() == [], "a scratch postgres was left running"
    assert not list(Path("/tmp").glob(f"opsgate-scratch-{os.getpid()}-sock-*")), "a socket folder was left"


def _no_secret(outcomes) -> None:
    text = json.dumps([(o.message, o.details) for o in outcomes], default=str)
    assert APP_PASSWORD not in text and ADMIN_PASSWORD not in text


@pytest.mark.parametrize("name", ["app.dump", "app.dir", "app.sql", "app.sql.gz"])
def test_healthy_dump_passes_l4_with_the_counts(pg, dumps, name):
    outcomes = verify(dumps[name], options(pg, row_tolerance="0.5%"))
    assert [o.ok for o in outcomes] == [True, True, True], [o.message for o in outcomes]
    l2, l3, l4 = outcomes
    assert l2.bytes > 0 and l2.items == 2
    assert "scratch database" in l3.message and l3.duration_s > 0
    assert l4.message == f"2 tables, {ROWS + 3:,} rows; every table within 0.5% of live"
    assert l4.details["tables"]["items"] == {"restored": ROWS, "live": ROWS}
    _no_secret(outcomes)


@pytest.mark.parametrize("name", ["base", "base-tar"])
def test_healthy_base_backup_starts_a_scratch_server_and_passes_l4(pg, dumps, name):
    outcomes = verify(dumps[name], options(pg))
    assert [o.ok for o in outcomes] == [True, True, True], [o.message for o in outcomes]
    assert "pg_verifybackup: all" in outcomes[0].message
    assert "finished recovery" in outcomes[1].message
    assert not psutil.pid_exists(outcomes[1].details["pid"]) or \
        psutil.Process(outcomes[1].details["pid"]).status() == psutil.STATUS_ZOMBIE
    assert outcomes[2].message.startswith(f"2 tables, {ROWS + 3:,} rows")


def test_dump_cut_in_half_passes_pg_restore_list_but_fails_l2(pg, dumps, tmp_path):
    half = tmp_path / "half.dump"
    data = dumps["app.dump"].read_bytes()
    half.write_bytes(data[: len(data) // 2])
    listed = subprocess.run(["pg_restore", "--list", str(half)], capture_output=True, timeout=30)
    assert listed.returncode == 0  # the trap: the table of contents alone looks fine
    outcomes = verify(half, options(pg))
    assert len(outcomes) == 1 and not outcomes[0].ok
    assert "cannot be read to its end" in outcomes[0].message and "end of file" in outcomes[0].message


def test_zero_byte_dump_fails_l2_and_l3(pg, tmp_path):
    empty = tmp_path / "app.dump"
    empty.write_bytes(b"")
    assert "empty (0 bytes)" in verify(empty, options(pg))[0].message
    with Scratch(timeout=30) as scratch:
        outcome, restored = source.restore(point(empty), options(pg, format="custom"), scratch)
    assert not outcome.ok and restored is None and "empty (0 bytes)" in outcome.message


def test_plain_dump_without_its_trailer_fails_l2(pg, dumps, tmp_path):
    text = dumps["app.sql"].read_text()
    cut = tmp_path / "no-trailer.sql"
    cut.write_text(text[: text.index("-- PostgreSQL database dump complete")])
    outcome = verify(cut, options(pg))[0]
    assert not outcome.ok and "no '-- PostgreSQL database dump complete' trailer" in outcome.message
    inside = tmp_path / "cut-in-copy.sql"
    inside.write_text(text[: text.index("COPY public.items") + 2000])
    outcome = verify(inside, options(pg))[0]
    assert not outcome.ok and "cut inside the data of public.items" in outcome.message
    cut_gz = tmp_path / "cut.sql.gz"
    packed = dumps["app.sql.gz"].read_bytes()
    cut_gz.write_bytes(packed[: len(packed) // 2])
    outcome = verify(cut_gz, options(pg))[0]
    assert not outcome.ok and "the compressed dump cannot be read to its end" in outcome.message


def test_plain_dump_that_switches_databases_is_refused_at_l3(pg, tmp_path):
    dump = tmp_path / "create.sql"
    subprocess.run(["pg_dump", "-C", "-c", "-f", str(dump), "-d", f"host=127.0.0.1 port={pg.port} user=app dbname=app"],
                   env=dict(os.environ, PGPASSWORD=APP_PASSWORD), check=True, timeout=60)
    l2, l3 = verify(dump, options(pg))
    assert l2.ok and not l3.ok
    assert "DROP DATABASE app" in l3.message and "opsgate refuses" in l3.message
    assert pg.sql("SELECT count(*) FROM items") == [(ROWS,)]  # live untouched


def test_base_backup_with_a_file_changed_after_its_manifest_fails_l2(pg, dumps, tmp_path):
    copy = tmp_path / "base"
    subprocess.run(["cp", "-a", str(dumps["base"]), str(copy)], check=True)
    victim = copy / "PG_VERSION"
    victim.write_text(victim.read_text().strip() + " \n")  # same file, one byte more, after the manifest
    outcome = verify(copy, options(pg))[0]
    assert not outcome.ok and "pg_verifybackup found the backup damaged" in outcome.message
    assert "PG_VERSION" in outcome.message


def test_restore_with_fewer_rows_than_live_beyond_the_tolerance_fails_l4(pg, dumps):
    pg.sql("INSERT INTO items SELECT g, 'new' FROM generate_series(100001, 100500) g")
    try:
        outcomes = verify(dumps["app.dump"], options(pg, row_tolerance="1%"))
        assert [o.ok for o in outcomes] == [True, True, False]
        assert (f"1 of 2 tables outside the tolerance (1%) of live: items {ROWS:,} restored vs {ROWS + 500:,} live (-500)"
                in outcomes[2].message)
        within = verify(dumps["app.dump"], options(pg, row_tolerance=500))[2]
        assert within.ok, within.message
    finally:
        pg.sql("DELETE FROM items WHERE id > 100000")


def test_custom_queries_hold_or_name_the_difference(pg, dumps):
    queries = [{"name": "max-id", "sql": "SELECT max(id) AS top FROM items"},
               {"name": "orders", "sql": "SELECT count(*) AS n FROM orders", "expect": ["row.n == 3"]}]
    outcome = verify(dumps["app.dump"], options(pg, queries=queries))[2]
    assert outcome.ok and outcome.message.endswith("; 2 queries hold"), outcome.message
    failing = [{"name": "orders", "sql": "SELECT count(*) AS n FROM orders", "expect": ["row.n > 3"]}]
    outcome = verify(dumps["app.dump"], options(pg, queries=failing))[2]
    assert not outcome.ok and "query orders: row.n > 3: observed 3" in outcome.message


def test_scratch_database_equal_to_live_is_refused_before_anything_runs(pg, dumps):
    opts = options(pg, scratch_dsn=pg.dsn(), scratch_database="app")
    with Scratch(timeout=30) as scratch:
        outcome, restored = source.restore(point(dumps["app.dump"]), opts, scratch)
    assert not outcome.ok and restored is None
    assert outcome.message == (f"refused: the scratch database 127.0.0.1:{pg.port}/app would be the live database "
                               f"127.0.0.1:{pg.port}/app")
    assert pg.sql("SELECT count(*) FROM items") == [(ROWS,)]
    base = options(pg, scratch_port=pg.port)
    with Scratch(timeout=30) as scratch:
        outcome, _ = source.restore(point(dumps["base"]), base, scratch)
    assert not outcome.ok and f"port {pg.port} is the live server's" in outcome.message


def test_fixed_scratch_database_that_exists_is_neither_used_nor_dropped(pg, dumps):
    pg.sql("CREATE DATABASE keepme", "postgres")
    try:
        with Scratch(timeout=30) as scratch:
            outcome, _ = source.restore(point(dumps["app.dump"]), options(pg, scratch_database="keepme"), scratch)
        assert not outcome.ok and "already exists" in outcome.message
        assert pg.sql("SELECT count(*) FROM pg_database WHERE datname = 'keepme'", "postgres") == [(1,)]
    finally:
        pg.sql("DROP DATABASE keepme", "postgres")


def test_passwords_stay_out_of_argv(pg, dumps, monkeypatch):
    seen = []
    real = source.run_bounded

    def spy(argv, scratch, **kwargs):
        seen.append(list(argv))
        return real(argv, scratch, **kwargs)

    monkeypatch.setattr(source, "run_bounded", spy)
    outcomes = verify(dumps["app.dump"], options(pg))
    assert all(o.ok for o in outcomes)
    assert any("--exit-on-error" in argv for argv in seen)
    assert not any(APP_PASSWORD in part or ADMIN_PASSWORD in part for argv in seen for part in argv)


def test_a_user_without_createdb_is_told_so(pg, dumps):
    with Scratch(timeout=30) as scratch:
        outcome, _ = source.restore(point(dumps["app.dump"]), options(pg, scratch_dsn=None), scratch)
    assert not outcome.ok and "app may not create databases" in outcome.message and "CREATEDB" in outcome.message


def test_take_writes_a_custom_dump_that_verifies(pg, tmp_path):
    with Scratch(timeout=60) as scratch:
        taken = source.take(options(pg), tmp_path / "backups", scratch)
    assert taken.parent == tmp_path / "backups" and taken.read_bytes()[:5] == b"PGDMP"
    assert [p.name for p in taken.parent.iterdir()] == [taken.name]  # no partial file left
    assert all(o.ok for o in verify(taken, options(pg)))
    broken = options(pg, live_dsn=pg.dsn(password="wrong-password"))
    with Scratch(timeout=60) as scratch, pytest.raises(RuntimeError, match="password authentication failed"):
        source.take(broken, tmp_path / "failed", scratch)
    assert list((tmp_path / "failed").iterdir()) == []


def test_weekly_suite_verifies_a_dump_to_l4_and_names_a_cut_one(pg, dumps, run_suite, write_env, tmp_path):
    """End to end: `pytest checks/weekly --env FILE` takes a fresh dump (take_first) and
    verifies it to L4; base backups (plain and tar: the newest to L4, the other as the older
    point to L3) pass; an item whose newest dump is cut in half fails at L2."""
    pg.sql("DROP ROLE IF EXISTS restorer; CREATE ROLE restorer LOGIN CREATEDB PASSWORD 'Restorer-pw-4417'", "postgres")
    cut = tmp_path / "cut" / "app-2.dump"
    cut.parent.mkdir()
    cut.write_bytes(dumps["app.dump"].read_bytes()[: dumps["app.dump"].stat().st_size // 2])
    env = write_env(f"""\
name: pg-backups
backup:
  - name: app-db
    source: postgres
    path: fresh/app-*.dump
    rpo: 1h
    level: 4
    take_first: true
    postgres:
      live_dsn: "postgresql://app:${{APP_DB_PASSWORD}}@127.0.0.1:{pg.port}/app"
      scratch_dsn: "postgresql://restorer:${{RESTORE_PASSWORD}}@127.0.0.1:{pg.port}/postgres"
      row_tolerance: 0.5%
  - name: app-base
    source: postgres
    path: {dumps["base"].parent}/base*
    level: 4
    older_points: 1
    postgres:
      live_dsn: "postgresql://app:${{APP_DB_PASSWORD}}@127.0.0.1:{pg.port}/app"
  - name: app-db-cut
    source: postgres
    path: cut/app-*.dump
    level: 4
    postgres:
      live_dsn: "postgresql://app:${{APP_DB_PASSWORD}}@127.0.0.1:{pg.port}/app"
""")
    run = run_suite("--env", str(env), paths=("checks/weekly",), timeout=300,
                    env={"APP_DB_PASSWORD": APP_PASSWORD, "RESTORE_PASSWORD": "Restorer-pw-4417"})
    assert run.returncode == 1, run.output
    assert "2 pass, 1 fail" in run.output
    report = json.loads((run.reports / "weekly-latest.json").read_text())
    by_name = {t["nodeid"].rsplit("[", 1)[1].rstrip("]"): t for t in report["tests"]}
    healthy = by_name["app-db"]["metadata"]["opsgate"]
    assert healthy["status"] == "pass"
    assert healthy["evidence"]["observed"]["checked"] == \
        f"L4 reached (asked L4): 2 tables, {ROWS + 3:,} rows; every table within 0.5% of live"
    assert healthy["evidence"]["observed"]["rto_s"] > 0
    base = by_name["app-base"]["metadata"]["opsgate"]["evidence"]["observed"]
    assert base["level_reached"] == 4 and base["older"][0]["ok"] and base["older"][0]["level_reached"] == 3
    assert base["levels"]["L2"]["message"].startswith("pg_verifybackup: all")
    broken = by_name["app-db-cut"]["metadata"]["opsgate"]
    assert broken["status"] == "fail" and "cannot be read to its end" in broken["message"]
    text = run.output + json.dumps(report)
    assert APP_PASSWORD not in text and "Restorer-pw-4417" not in text


CHILD = """
import sys, time
from pathlib import Path
from opsgate.backups import postgres
from opsgate.backups.base import RecoveryPoint, Scratch
dump, live, server = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
with Scratch(timeout=120, label="interrupted") as scratch:
    print(scratch.dir, flush=True)
    postgres.restore(RecoveryPoint(str(dump), 0, 1, dump), postgres.Options(live_dsn=live, scratch_dsn=server), scratch)
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_interrupted_restore_leaves_no_scratch_database_or_process(pg, dumps, tmp_path, signal_name):
    """A restore stopped by SIGTERM or SIGINT (Ctrl-C) while psql runs: the scratch database
    is dropped, psql ended and the scratch folder removed."""
    import signal

    text = dumps["app.sql"].read_text()
    slow = tmp_path / "slow.sql"
    slow.write_text(text.replace("SET lock_timeout = 0;", "SET lock_timeout = 0;\nSELECT pg_sleep(60);", 1))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(slow), pg.dsn(),
                              pg.dsn(user="postgres", password=ADMIN_PASSWORD, db="postgres")],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        scratch_dir = Path(child.stdout.readline().strip())
        deadline = time.monotonic() + 30
        while not pg.sql("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'", "postgres"):
            assert time.monotonic() < deadline and child.poll() is None, "the restore never reached psql"
            time.sleep(0.05)
        assert len(_scratch_databases(pg)) == 1
        child.send_signal(getattr(signal, signal_name))
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    assert _scratch_databases(pg) == []
    assert not scratch_dir.exists()
    assert pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'", "postgres") == [(0,)]


def test_a_live_server_that_never_answers_fails_l4_within_the_deadline(pg, dumps):
    from tests.support.servers import SilentPostgres

    with SilentPostgres() as silent, Scratch(timeout=60) as scratch:
        outcome, restored = source.restore(point(dumps["app.dump"]), options(pg), scratch)
        assert outcome.ok, outcome.message
        wedged = options(pg, live_dsn=f"postgresql://app:{APP_PASSWORD}@127.0.0.1:{silent.port}/app")
        with Scratch(timeout=3) as short:  # the L4 step's own (short) budget
            compared = source.compare(restored, wedged, short)
    assert not compared.ok
    assert f"postgres 127.0.0.1:{silent.port}/app did not answer within the verification's timeout" in compared.message


@pytest.mark.parametrize("fmt", ["c", "p"])
def test_schema_only_dump_fails_l2_unless_allowed(pg, tmp_path, fmt):
    dump = tmp_path / f"schema.{fmt}"
    subprocess.run(["pg_dump", f"-F{fmt}", "--schema-only", "-f", str(dump), "-d",
                    f"host=127.0.0.1 port={pg.port} user=app dbname=app"],
                   env=dict(os.environ, PGPASSWORD=APP_PASSWORD), check=True, timeout=60)
    outcome = verify(dump, options(pg))[0]
    assert not outcome.ok and "the dump holds no table data (pg_dump --schema-only" in outcome.message
    with Scratch(timeout=60) as scratch:
        assert source.integrity(point(dump), options(pg, allow_empty=True), scratch).ok


def test_take_names_the_dump_by_its_pattern_and_never_overwrites(pg, tmp_path):
    opts = options(pg, name="nightly-{db}-%Y.dump")
    with Scratch(timeout=60) as scratch:
        taken = source.take(opts, tmp_path, scratch)
    assert taken.name == f"nightly-app-{time.gmtime().tm_year}.dump"
    before = taken.read_bytes()
    with Scratch(timeout=60) as scratch, pytest.raises(FileExistsError, match="a backup is never overwritten"):
        source.take(opts, tmp_path, scratch)
    assert taken.read_bytes() == before


def test_plain_dump_reaching_beyond_its_database_is_refused_naming_the_lines(pg, dumps, tmp_path):
    text = dumps["app.sql"].read_text()
    edited = tmp_path / "edited.sql"
    marker = tmp_path / "ran"
    edited.write_text(text.replace("SET lock_timeout = 0;", "SET lock_timeout = 0;\nALTER ROLE app SUPERUSER;\n"
                                   f"COPY public.orders TO PROGRAM 'touch {marker}';", 1))
    l2, l3 = verify(edited, options(pg))
    assert l2.ok and not l3.ok
    assert "ALTER ROLE app SUPERUSER;" in l3.message and "TO PROGRAM" in l3.message and "opsgate refuses" in l3.message
    assert not marker.exists()
    assert pg.sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'app'", "postgres") == [(False,)]


BASE_CHILD = """
import sys, time
from pathlib import Path
from opsgate.backups import postgres
from opsgate.backups.base import RecoveryPoint, Scratch
base, live = Path(sys.argv[1]), sys.argv[2]
with Scratch(timeout=120, label="interrupted") as scratch:
    outcome, restored = postgres.restore(RecoveryPoint(str(base), 0, 1, base), postgres.Options(live_dsn=live), scratch)
    print(outcome.details.get("pid"), scratch.dir, flush=True)
    time.sleep(60)
"""


def test_sigterm_while_a_scratch_server_runs_stops_it(pg, dumps):
    import signal

    child = subprocess.Popen([sys.executable, "-c", BASE_CHILD, str(dumps["base"]), pg.dsn()], stdout=subprocess.PIPE,
                             text=True, cwd=Path(__file__).parents[1])
    try:
        pid, folder = child.stdout.readline().split()
        assert psutil.Process(int(pid)).name() == "postgres"
        child.send_signal(signal.SIGTERM)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    deadline = time.monotonic() + 10  # the server's fast shutdown is asynchronous to the child's exit
    while psutil.pid_exists(int(pid)) and psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the scratch postgres outlived its verification"
        time.sleep(0.05)
    assert not Path(folder).exists()
    assert not list(Path("/tmp").glob(f"opsgate-scratch-{child.pid}-sock-*"))


def test_tar_base_backup_restores_without_l2_too(pg, dumps):
    """L3 alone (as a drill runs it) unpacks the tar backup itself."""
    with Scratch(timeout=120) as scratch:
        outcome, restored = source.restore(point(dumps["base-tar"]), options(pg), scratch)
        assert outcome.ok, outcome.message
        assert source.compare(restored, options(pg), scratch).ok


def test_base_backup_with_a_tablespace_is_not_started(pg, dumps, tmp_path):
    copy = tmp_path / "base"
    subprocess.run(["cp", "-a", str(dumps["base"]), str(copy)], check=True)
    (copy / "pg_tblspc" / "16999").symlink_to(tmp_path)  # a tablespace's link, pointing outside
    with Scratch(timeout=60) as scratch:
        outcome, restored = source.restore(point(copy), options(pg), scratch)
    assert not outcome.ok and restored is None
    assert "has tablespaces (pg_tblspc/16999)" in outcome.message


def test_base_backup_whose_pg_wal_is_a_link_restores_from_a_copy_of_it(pg, tmp_path):
    """pg_basebackup --waldir: the backup's pg_wal is a link; the scratch server gets its own copy
    and the backup's WAL folder is not written to."""
    base, wal = tmp_path / "base", tmp_path / "wal"
    subprocess.run(["pg_basebackup", "-D", str(base), f"--waldir={wal}", "-h", "127.0.0.1", "-p", str(pg.port),
                    "-U", "postgres", "-X", "stream", "--no-sync", "-c", "fast"],
                   env=dict(os.environ, PGPASSWORD=ADMIN_PASSWORD), check=True, timeout=60)
    before = fingerprint(wal)
    outcomes = verify(base, options(pg))
    assert [o.ok for o in outcomes] == [True, True, True], [o.message for o in outcomes]
    assert fingerprint(wal) == before
