"""``postgres`` checks against broken or hostile servers: sockets that hang up, speak another
protocol or trickle their greeting (tests/support/scripted_tcp.py), and a real PostgreSQL
asked for far too many rows, far too much text, or a statement that outlives its timeout.

What must never happen: memory that follows the answer (a million rows held as dicts), a
statement left running on the server after the check gave up, a message that sends the
reader the wrong way, or the DSN's password in any message.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from opsgate.model import PostgresCheck
from opsgate.probes import ProbeContext
from opsgate.probes.postgres import MAX_QUERY_BYTES, MAX_QUERY_ROWS
from opsgate.runner import run_check
from tests.support.scripted_tcp import ScriptedTcp
from tests.support.servers import PostgresServer

PASSWORD = "Pg-hostile-s3cret"


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        yield server


def check(dsn: str, timeout: float = 2, **fields):
    """The check's result, run on a thread so that a hang fails the test instead of holding it."""
    box = {}
    worker = threading.Thread(target=lambda: box.update(result=run_check(
        PostgresCheck(name="db", dsn=dsn, timeout=timeout, **fields), ProbeContext())), daemon=True)
    worker.start()
    worker.join(timeout + 8)
    assert "result" in box, f"the check was still running {timeout + 8:g}s after its {timeout:g}s timeout"
    return box["result"]


def fake_dsn(server: ScriptedTcp) -> str:
    return f"postgresql://app:{PASSWORD}@127.0.0.1:{server.port}/app"


@pytest.mark.negative("postgres")
def test_a_server_that_hangs_up_at_once_is_not_called_silent():
    with ScriptedTcp(lambda conn: conn.close()) as fake:
        result = check(fake_dsn(fake))
    assert result.status == "fail"
    assert result.message == (f"postgres 127.0.0.1:{fake.port}/app: cannot connect: the server closed the connection "
                              "unexpectedly (it crashed, restarted or is not a PostgreSQL)")


def test_another_protocol_is_named_and_the_password_is_nowhere():
    with ScriptedTcp(lambda conn: conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")) as fake:
        result = check(fake_dsn(fake))
    assert result.status == "fail"
    assert result.message.endswith("received invalid response to SSL negotiation: H")
    assert PASSWORD not in json.dumps(result.to_json())


def test_a_trickled_greeting_fails_at_the_timeout():
    def trickle(conn):
        conn.recv(8)  # the SSLRequest: declined, then the startup message, then an endless greeting
        conn.sendall(b"N")
        conn.recv(1000)
        fake.trickle(conn, b"R\0\0\0\x08\0\0\0\0S\0\0\xff\xff" + b"x" * 60_000)

    fake = ScriptedTcp(trickle)
    with fake:
        result = check(fake_dsn(fake), timeout=1)
    assert result.status == "fail"
    assert result.message == f"postgres 127.0.0.1:{fake.port}/app: cannot connect: no connection within 1s"


def test_a_million_rows_are_refused_not_held(pg):
    """They were all fetched, each a dict (about 450 MB for a million integers), and passed."""
    result = check(pg.dsn(), timeout=10, query="SELECT g FROM generate_series(1, 1000000) g", expect=["count > 0"])
    assert result.status == "fail"
    assert result.message.endswith(f"the query returned more than {MAX_QUERY_ROWS} rows; a check reads them all "
                                   "(aggregate in SQL: count(*), max(...))")


def test_rows_at_the_bound_pass_with_their_true_count(pg):
    result = check(pg.dsn(), timeout=10, query=f"SELECT g FROM generate_series(1, {MAX_QUERY_ROWS}) g",
                   expect=[f"count == {MAX_QUERY_ROWS}"])
    assert result.status == "pass", result.message


def test_too_much_text_is_refused(pg):
    rows = MAX_QUERY_BYTES // (1 << 20) + 8
    result = check(pg.dsn(), timeout=20, query=f"SELECT repeat('x', 1048576) AS blob FROM generate_series(1, {rows})")
    assert result.status == "fail"
    assert result.message.endswith(f"the query returned more than {MAX_QUERY_BYTES // (1 << 20)} MiB of values")


def test_a_statement_past_the_deadline_is_cancelled_on_the_server(pg):
    """A query that turns statement_timeout off is cut by the client; its backend slept on."""
    result = check(pg.dsn(), timeout=1, query="SET statement_timeout = 0; SELECT pg_sleep(60) AS hostile_sleep")
    assert result.status == "fail"
    assert "query failed: no answer within 1s" in result.message
    deadline = time.monotonic() + 5
    while pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%hostile_sleep%' "
                 "AND pid <> pg_backend_pid()") != [(0,)]:
        assert time.monotonic() < deadline, "the statement still runs on the server"
        time.sleep(0.1)


def test_several_statements_still_run_and_the_last_ones_rows_count(pg):
    result = check(pg.dsn(), query="SET application_name = 'x'; SELECT 7 AS seven", expect=["row.seven == 7", "count == 1"])
    assert result.status == "pass", result.message


def test_a_statement_without_rows_reads_as_none(pg):
    result = check(pg.dsn(), query="SET work_mem = '8MB'", expect=["count == 0"])
    assert result.status == "pass", result.message


def test_a_null_value_fails_the_condition_that_reads_it(pg):
    result = check(pg.dsn(), query="SELECT NULL::int AS lag", expect=["row.lag < 5"])
    assert result.status == "fail"
    assert result.message.startswith("row.lag < 5: observed missing (null)")
