"""``postgres`` checks against a real PostgreSQL 15 the tests start (and a real streaming replica).

Runbook steps protected here: "pg_isready", "SELECT 1", "is this the primary?", "replica
lag under 30 s", "connections below 80 % of max_connections", "no transaction open for more
than 5 minutes", "database under its size budget", "the orders table is not empty".
"""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

from opsgate.model import PostgresCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check
from opsgate.redact import REDACTOR
from tests.support.http_target import HangingTarget
from tests.support.project import make_project, run_pytest
from tests.support.servers import APP_PASSWORD, PostgresServer, SilentPostgres


@pytest.fixture(scope="module")
def pg():
    with PostgresServer(max_connections=20) as server:
        yield server


def check(dsn: str, ctx: ProbeContext | None = None, **fields):
    fields.setdefault("name", "db")
    fields.setdefault("timeout", 5)
    return run_check(PostgresCheck(dsn=dsn, **fields), ctx or ProbeContext())


def test_healthy_primary_passes_with_evidence(pg):
    result = check(pg.dsn(), max_latency_ms=1000, role="primary", connections_percent={"warn": 70, "critical": 90},
                   oldest_transaction_s=300, oldest_idle_in_transaction_s=300, database_size="1GB",
                   query="SELECT count(*) AS n, sum(total) AS revenue FROM orders", expect=["row.n >= 3", "row.revenue > 30"])
    assert result.status == "pass", result.message
    seen = result.evidence["observed"]
    assert seen["role"] == "primary" and seen["max_connections"] == 20 and seen["latency_ms"] > 0
    assert 0 < seen["database_size_bytes"] < 2**30
    assert result.evidence["details"]["query_rows"] == [{"n": 3, "revenue": 36.75}]


@pytest.mark.negative("postgres")
def test_stopped_server_fails_naming_connection_refused():
    with PostgresServer() as server:
        dsn = server.dsn()
        server.stop()
        result = check(dsn)
    assert result.status == "fail"
    assert result.message == f"postgres 127.0.0.1:{server.port}/app: cannot connect: connection refused (is the server running?)"


def test_wrong_password_fails_and_the_password_is_nowhere(pg):
    wrong = "Wr0ng-Pass-Xyz"
    result = check(pg.dsn(password=wrong))
    assert result.status == "fail"
    assert 'password authentication failed for user "app"' in result.message
    text = json.dumps(result.to_json()) + result.message
    assert wrong not in text and APP_PASSWORD not in text


def test_connections_near_the_limit_fail(pg):
    held = [pg.connect(user="app") for _ in range(15)]  # 15 of max 20 plus the probe's own
    try:
        result = check(pg.dsn(), connections_percent={"warn": 50, "critical": 75})
    finally:
        for conn in held:
            conn.close()
    assert result.status == "fail", result.message
    assert result.message.startswith("connections_percent < 75.0: observed 8")


def test_long_running_transaction_fails(pg):
    conn = pg.connect(user="app")
    pid = conn.info.backend_pid
    runner = threading.Thread(target=lambda: _swallow(conn, "BEGIN; SELECT pg_sleep(30)"), daemon=True)
    runner.start()
    try:
        time.sleep(1.5)
        result = check(pg.dsn(), oldest_transaction_s={"warn": 0.5, "critical": 1})
    finally:
        pg.sql(f"SELECT pg_cancel_backend({pid})", "postgres")
        runner.join(5)
        conn.close()
    assert result.status == "fail"
    assert result.message.startswith("oldest_transaction_s < 1.0: observed 1.")


def test_idle_in_transaction_session_fails(pg):
    with pg.connect(user="app") as conn:
        conn.autocommit = False
        conn.execute("SELECT 1")  # opens a transaction and leaves it idle
        time.sleep(1.2)
        result = check(pg.dsn(), oldest_idle_in_transaction_s=1)
        conn.rollback()
    assert result.status == "fail"
    assert result.message.startswith("oldest_idle_in_transaction_s < 1.0: observed 1.")


def test_database_over_its_size_budget_fails(pg):
    result = check(pg.dsn(), database_size={"warn": "1MB", "critical": "2MB"})
    assert result.status == "fail"
    assert result.message.startswith("database_size_bytes < 2000000.0: observed ")


def test_custom_query_condition_fails_naming_the_row(pg):
    result = check(pg.dsn(), query="SELECT count(*) AS n FROM orders WHERE total > 100", expect=["row.n > 0"])
    assert result.status == "fail"
    assert result.message.startswith("row.n > 0: observed 0")


def test_custom_query_error_fails_naming_it(pg):
    result = check(pg.dsn(), query="SELECT * FROM no_such_table")
    assert result.status == "fail"
    assert 'query failed: relation "no_such_table" does not exist' in result.message


def test_replica_role_and_lag_and_primary_sees_it(pg):
    with PostgresServer(replica_of=pg) as replica:
        on_replica = check(replica.dsn(), role="replica", replication_lag_s={"warn": 10, "critical": 30})
        on_primary = check(pg.dsn(), role="primary", min_replicas=1, replication_lag_s=30)
        wrong_role = check(replica.dsn(), role="primary")
    assert on_replica.status == "pass", on_replica.message
    assert on_replica.evidence["observed"]["role"] == "replica"
    assert on_primary.status == "pass", on_primary.message
    assert on_primary.evidence["details"]["replicas"][0]["state"] == "streaming"
    assert wrong_role.status == "fail"
    assert wrong_role.message.startswith("role == 'primary': observed \"replica\"")


def test_primary_without_its_replica_fails(pg):
    result = check(pg.dsn(), min_replicas=1)
    assert result.status == "fail"
    assert result.message.startswith("replicas >= 1: observed 0")


def test_checks_of_one_target_share_one_connection(pg):
    ctx = ProbeContext()
    count = "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'opsgate'"
    results = [check(pg.dsn(), ctx, name=f"db-{i}", query=count, expect=["row.n == 1"]) for i in range(5)]
    ctx.shared.close()
    assert [r.status for r in results] == ["pass"] * 5, [r.message for r in results]


def _swallow(conn: psycopg.Connection, sql: str) -> None:
    try:
        conn.execute(sql)
    except psycopg.Error:
        pass


def _env(dsn: str) -> str:
    return f"""name: shop
postgres:
  - {{name: db, dsn: "{dsn}", severity: P1, timeout: 3, role: primary}}
  - {{name: db-orders, dsn: "{dsn}", severity: P0, depends_on: [db], query: "SELECT count(*) AS n FROM orders", expect: ["row.n > 0"]}}
  - {{name: db-connections, dsn: "{dsn}", severity: P2, depends_on: [db], connections_percent: {{warn: 70, critical: 90}}}}
command:
  - {{name: app-migrations, argv: ["true"], severity: P1, depends_on: [db]}}
"""


def test_suite_against_a_stopped_database_has_one_root_cause(tmp_path):
    """Runbook: the database is down -> one finding, not one per query."""
    with PostgresServer() as server:
        project = make_project(tmp_path, _env(server.dsn()))
        healthy = run_pytest(project, "--gate", "daily")
        server.stop()
        down = run_pytest(project, "--gate", "daily")
    assert healthy.returncode == 0, healthy.output
    assert healthy.status() == {"test_postgres[db]": "pass", "test_postgres[db-orders]": "pass",
                                "test_postgres[db-connections]": "pass", "test_command[app-migrations]": "pass"}
    assert down.returncode == 1, down.output
    assert "FAIL: 1 root cause (db blocks 3)" in down.output
    assert "ROOT CAUSE  P0  test_postgres[db]" in down.output and "connection refused (is the server running?)" in down.output
    assert down.status()["test_postgres[db-orders]"] == "blocked"
    for run in (healthy, down):
        assert APP_PASSWORD not in run.output and APP_PASSWORD not in run.report_text


def test_suite_with_a_wrong_password_keeps_it_out_of_every_output(tmp_path):
    with PostgresServer() as server:
        wrong = "N0t-The-Pass-42"
        project = make_project(tmp_path, _env(server.dsn(password=wrong)))
        run = run_pytest(project, "--gate", "daily")
    assert run.returncode == 1, run.output
    assert 'password authentication failed for user \\"app\\"' in run.report_text
    assert wrong not in run.output and wrong not in run.report_text


def test_server_that_accepts_but_never_answers_fails_within_the_timeout():
    """No probe may hang: a port that accepts and then says nothing (a wedged server)."""
    with HangingTarget() as wedged:
        started = time.monotonic()
        result = check(f"postgresql://app:x@127.0.0.1:{wedged.port}/app", timeout=2)
        took = time.monotonic() - started
    assert result.status == "fail"
    assert result.message == f"postgres 127.0.0.1:{wedged.port}/app: cannot connect: no connection within 2s"
    assert took < 10


def test_server_that_goes_silent_after_connecting_fails_just_after_the_timeout():
    """No probe may hang: connected and authenticated, then no answer to SELECT 1."""
    with SilentPostgres() as wedged:
        started = time.monotonic()
        result = check(f"postgresql://app:x@127.0.0.1:{wedged.port}/app", timeout=2)
        took = time.monotonic() - started
    assert result.status == "fail"
    assert result.message == (f"postgres 127.0.0.1:{wedged.port}/app: query failed: no answer within 2s "
                              "(the server accepted the connection, then went silent)")
    assert took < 6


def test_the_cause_of_a_refused_password_survives_a_secret_ending_in_password():
    """A secret like 'db-password' must not swallow the word that starts the cause: the probe
    redacts the whole server message first and cuts the redacted text."""
    from opsgate.probes.postgres import PostgresCheck, _cause

    REDACTOR.add("test-db-password")
    item = PostgresCheck(name="db", dsn="postgresql://app@127.0.0.1:1/app")
    cause = _cause(Exception('connection failed: FATAL:  password authentication failed for user "app"'), item)
    assert cause == 'password authentication failed for user "app"'
