"""``sqlite`` backups: a copy checked with ``PRAGMA integrity_check`` (L2), opened and queried
(L3), its row counts and custom SQL compared with the live database (L4); taken with SQLite's
online backup API; and the embedded default's weekly run backing up the demo's data.

Runbook steps protected here: "back up the database, then restore from the last verified
backup" (incident runbooks), weekly backup verification.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from opsgate.cli import main as opsgate_main
from support.backups import backup_check, negative, scratch_home, sqlite_db  # noqa: F401 (fixture)


def verify(base, level=4, **sqlite):
    sqlite.setdefault("live", "live.db")
    return backup_check(base, source="sqlite", path="backups/*.sqlite", level=level, sqlite=sqlite)


def add_orders(db: Path, n: int) -> None:
    conn = sqlite3.connect(db)
    with conn:
        start = conn.execute("SELECT max(id) FROM orders").fetchone()[0] + 1
        conn.executemany("INSERT INTO orders VALUES (?, 1, 1.0)", [(start + i,) for i in range(n)])
    conn.close()


def test_healthy_backup_passes_at_L4_with_counts_and_queries(tmp_path):
    sqlite_db(tmp_path / "live.db")
    sqlite_db(tmp_path / "backups" / "app-1.sqlite")
    result = verify(tmp_path, queries=[{"name": "revenue", "sql": "SELECT round(sum(total)) FROM orders"}])
    assert result.status == "pass", result.message
    seen = result.evidence["observed"]
    assert seen["checked"] == ("L4 reached (asked L4): 2 tables, 1,100 rows; each within 0 of live; "
                               "1 query equal to live's")
    assert seen["levels"]["L2"]["message"].startswith("integrity_check ok on a copy")
    assert seen["levels"]["L3"]["message"] == "opened the copy: 2 tables, 1,100 rows"
    assert seen["items_verified"] == 1100 and seen["items_unit"] == "rows"
    size = (tmp_path / "backups" / "app-1.sqlite").stat().st_size
    assert seen["bytes_verified"] == size  # read end to end once, not counted again per level


@negative
def test_fewer_rows_than_live_beyond_the_tolerance_fails_at_L4(tmp_path):
    sqlite_db(tmp_path / "live.db")
    sqlite_db(tmp_path / "backups" / "app-1.sqlite")
    add_orders(tmp_path / "live.db", 200)
    result = verify(tmp_path, row_tolerance="5%")
    assert result.status == "fail"
    assert result.message == "L4 compare: table orders: 1,000 rows restored, 1,200 live (tolerance 5%)"
    assert result.evidence["observed"]["level_reached"] == 3
    assert verify(tmp_path, row_tolerance="20%").status == "pass"


@negative
def test_a_custom_query_that_differs_from_live_fails(tmp_path):
    sqlite_db(tmp_path / "live.db")
    sqlite_db(tmp_path / "backups" / "app-1.sqlite")
    conn = sqlite3.connect(tmp_path / "live.db")
    with conn:
        conn.execute("UPDATE customers SET name = 'renamed' WHERE id = 7")
    conn.close()
    result = verify(tmp_path, queries=[{"name": "c7", "sql": "SELECT name FROM customers WHERE id = 7"}])
    assert result.status == "fail"
    assert result.message == "L4 compare: query c7: 'c7' restored, 'renamed' live (tolerance 0)"


@negative
def test_a_corrupt_page_fails_integrity_check_at_L2(tmp_path):
    sqlite_db(tmp_path / "live.db", rows=5000)
    backup = sqlite_db(tmp_path / "backups" / "app-1.sqlite", rows=5000)
    data = bytearray(backup.read_bytes())
    for i in range(4 * 4096 + 200, 4 * 4096 + 400):  # the cell pointers of a b-tree page
        data[i] ^= 0xFF
    backup.write_bytes(bytes(data))
    result = verify(tmp_path)
    assert result.status == "fail"
    assert result.message.startswith("L2 integrity: app-1.sqlite: integrity_check found "), result.message
    assert "On tree page 5" in result.message


@negative
def test_a_file_that_is_not_a_database_fails_at_L2(tmp_path):
    sqlite_db(tmp_path / "live.db")
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "app-1.sqlite").write_text("pg_dump: error: connection refused\n")
    result = verify(tmp_path)
    assert result.status == "fail"
    assert result.message == "L2 integrity: app-1.sqlite: not an SQLite database (no 'SQLite format 3' header)"


@negative
def test_a_backup_glob_that_matches_the_live_database_is_refused(tmp_path):
    sqlite_db(tmp_path / "backups" / "live.sqlite")
    result = verify(tmp_path, live="backups/live.sqlite")
    assert result.status == "fail"
    assert result.message.startswith("L2 integrity refused: the backup ")
    assert "is the live database" in result.message


def test_take_uses_the_online_backup_while_the_live_database_is_written(tmp_path, monkeypatch, capsys):
    live = sqlite_db(tmp_path / "live.db")
    (tmp_path / "env.yaml").write_text(textwrap.dedent("""\
        name: t
        backup:
          - name: db
            source: sqlite
            path: backups/app-*.sqlite
            manifest: "{backup}.sha256"
            level: 4
            sqlite: {live: live.db, name: "app-%Y%m%dT%H%M%S.sqlite", row_tolerance: 100000}
        """))
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            add_orders(live, 10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        monkeypatch.chdir(tmp_path)
        assert opsgate_main(["backup", "db", "--env", "env.yaml"]) == 0, capsys.readouterr().err
    finally:
        stop.set()
        thread.join(timeout=30)
    (made,) = (tmp_path / "backups").glob("app-*.sqlite")
    assert (tmp_path / "backups" / (made.name + ".sha256")).read_text().endswith(f"  {made.name}\n")
    result = backup_check(tmp_path, source="sqlite", path="backups/app-*.sqlite", manifest="{backup}.sha256",
                          level=4, sqlite={"live": "live.db", "row_tolerance": 100000})
    assert result.status == "pass", result.message
    assert "1 of 1 manifest hashes match" in result.evidence["observed"]["levels"]["L2"]["message"]


def test_the_embedded_default_weekly_run_backs_up_the_demo_data_and_verifies_it_to_L4(tmp_path):
    """``pytest checks/weekly`` with no --env: the demo's SQLite data is backed up, then
    verified to L4 (other weekly checks, such as the host's load, are not this test's)."""
    project = tmp_path / "proj"
    (project / "checks" / "weekly").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "PYTEST_"))}
    environ["OPSGATE_SCRATCH_DIR"] = str(tmp_path / "scratch")
    done = subprocess.run([sys.executable, "-m", "pytest", "checks/weekly", "-p", "no:cacheprovider"],
                          cwd=project, env=environ, capture_output=True, text=True, timeout=300)
    report = json.loads((project / "reports" / "default" / "weekly-latest.json").read_text())
    (test,) = [t for t in report["tests"] if t["nodeid"].endswith("test_backup[demo-data]")]
    result = test["metadata"]["opsgate"]
    assert result["status"] == "pass", (result["message"], done.stdout[-3000:])
    seen = result["evidence"]["observed"]
    assert seen["level_reached"] == 4 and seen["taken"].endswith(".sqlite")
    assert seen["checked"].startswith("L4 reached (asked L4): 2 tables, ")
