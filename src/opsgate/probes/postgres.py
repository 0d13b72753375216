"""``postgres``: what `pg_isready`, `SELECT 1` and the DBA's queries tell about a PostgreSQL server.

Observed (``values``): ``latency_ms`` (SELECT 1), ``role`` (primary/replica),
``replication_lag_s`` (replica: seconds behind its primary, 0 when it has replayed all it
received, unknown (null, so a lag limit fails) when its WAL receiver is not streaming;
primary: the worst replica's replay lag), ``wal_receiver`` (replica), ``replicas`` (primary: streaming
replicas), ``connections`` / ``max_connections`` / ``connections_percent`` (client
backends), ``oldest_transaction_s`` (oldest active transaction), ``oldest_idle_in_transaction_s``,
``database_size_bytes``; with ``query``, its rows for ``expect``/``warn``
(``{rows, row, count}`` besides the values above).

Checks on the same DSN share one connection (autocommit) for the run, one check at a time;
every statement is bounded by the item's timeout (``statement_timeout`` on the server, and
a client-side cut one second later for a server that went silent, which also asks the server
to cancel what it runs), connecting by ``connect_timeout``. A ``query``'s rows are read one at
a time and bounded (``MAX_QUERY_ROWS``, ``MAX_QUERY_BYTES``): more fails the check, since a
cut would make ``count`` lie.
The password is registered with the redactor when the environment loads; messages name
host, port and database only.

>>> from opsgate.probes import ProbeContext
>>> observe(PostgresCheck(name="db", dsn="postgresql://app:pw@127.0.0.1:1/app", timeout=2), ProbeContext()).error
'postgres 127.0.0.1:1/app: cannot connect: connection refused (is the server running?)'
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, ClassVar, Iterator, Literal

from pydantic import Field, field_validator

from ..conditions import Condition
from ..kinds import Kind
from ..redact import REDACTOR
from ..results import NO_DOCUMENT, Observation
from ..schema import CheckItem, Limit
from ..units import parse_size
from . import QueueTimeout, target_name


class PostgresCheck(CheckItem):
    """PostgreSQL: accepting connections, SELECT 1 latency, role, replication lag, connection
    use, oldest transactions, database size, and a custom query with conditions on its rows.
    Every postgres check on the same DSN shares one connection per run."""

    kind: ClassVar[str] = "postgres"
    dsn: str = Field(pattern=r"^postgres(ql)?://", description="postgresql://user:password@host:port/db (password redacted)")
    max_latency_ms: float | None = Field(None, description="SELECT 1 round trip")
    role: Literal["primary", "replica"] | None = None
    replication_lag_s: Limit | None = Field(None, description="replica: seconds behind; primary: worst replica's replay lag")
    min_replicas: int | None = Field(None, ge=0, description="primary: streaming replicas connected")
    connections_percent: Limit | None = Field(None, description="client connections as % of max_connections")
    oldest_transaction_s: Limit | None = Field(None, description="age of the oldest running transaction")
    oldest_idle_in_transaction_s: Limit | None = Field(None, description="age of the oldest idle-in-transaction session")
    database_size: Limit | None = Field(None, description="bytes (or text like 10GB) for critical/warn")
    query: str | None = Field(None, description="custom SQL; expect/warn read {rows, row, count}")

    @field_validator("database_size", mode="before")
    @classmethod
    def _sizes(cls, value: Any) -> Any:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = {"critical": value}
        if isinstance(value, dict):
            return {k: parse_size(v) if isinstance(v, str) else v for k, v in value.items()}
        return value


_STATS = """
SELECT pg_is_in_recovery() AS in_recovery,
       current_setting('max_connections')::int AS max_connections,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS connections,
       (SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0) FROM pg_stat_activity
         WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()) AS oldest_transaction_s,
       (SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0) FROM pg_stat_activity
         WHERE state LIKE 'idle in transaction%%') AS oldest_idle_in_transaction_s,
       pg_database_size(current_database()) AS database_size_bytes,
       CASE WHEN pg_is_in_recovery() THEN
         CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
              ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END
       END AS replica_lag_s,
       (SELECT status FROM pg_stat_wal_receiver LIMIT 1) AS wal_receiver
"""
_REPLICAS = """
SELECT application_name, client_addr::text AS client_addr, state,
       coalesce(extract(epoch FROM replay_lag), 0) AS replay_lag_s
FROM pg_stat_replication
"""


#: rows a query may return: conditions read them all, so more is refused, never cut (a cut
#: count would pass "count < 100000"); a query that needs more should aggregate in SQL
MAX_QUERY_ROWS = 10_000
#: characters of text and bytes in those rows, all together
MAX_QUERY_BYTES = 64 * 1024 * 1024
#: how long the deadline's cancel request may take (it runs on the timer's own thread)
CANCEL_TIMEOUT_S = 5.0


class _TooMuch(Exception):
    """A query answered more than a check reads."""


def _cause(exc: Exception, item: PostgresCheck, cut: bool = False) -> str:
    """``cut``: the client-side deadline shut the connection (so a lost connection is silence)."""
    text = " ".join(str(exc).split())
    lowered = text.lower()
    if "connection refused" in lowered:
        return "connection refused (is the server running?)"
    if "password authentication failed" in lowered:
        # redacted whole, then cut: cutting first would leave "password ..." at the text's edge,
        # where the redactor must take it for the tail of a secret ending in "password"
        shown = REDACTOR.text(text)
        return shown[shown.lower().index("password authentication failed"):][:160]
    if "timeout expired" in lowered or "timed out" in lowered:
        return f"no connection within {item.timeout:g}s"
    if "too many clients" in lowered or "remaining connection slots are reserved" in lowered:
        return f"connections exhausted: {REDACTOR.excerpt(text, 160)}"
    if "statement timeout" in lowered:
        return f"a query took longer than {item.timeout:g}s (statement_timeout)"
    if "server closed the connection" in lowered or "consuming input failed" in lowered or "connection is lost" in lowered:
        if not cut:  # the server hung up on its own: saying "went silent" would send the reader the wrong way
            return "the server closed the connection unexpectedly (it crashed, restarted or is not a PostgreSQL)"
        return f"no answer within {item.timeout:g}s (the server accepted the connection, then went silent)"
    return REDACTOR.excerpt(text, 200)


def _connect(item: PostgresCheck) -> psycopg.Connection:
    import psycopg  # paid by runs that check PostgreSQL

    return psycopg.connect(item.dsn, connect_timeout=max(1, round(item.timeout)), autocommit=True,
                           application_name="opsgate")


def _alive(conn: psycopg.Connection) -> bool:
    return not conn.closed and not conn.broken


def _jsonable(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time, dt.timedelta)):
        return value.total_seconds() if isinstance(value, dt.timedelta) else value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return value


@contextmanager
def _deadline(conn: psycopg.Connection, seconds: float) -> Iterator[threading.Event]:
    """Past ``seconds``, shut the connection's socket: statement_timeout is the server's to
    enforce, and a wedged server enforces nothing. The blocked call then fails, the
    connection is broken, and the next check reconnects. The server is then asked to cancel
    the statement: a backend sleeping or waiting on a lock never notices its client is gone
    (a query that turned statement_timeout off ran on for its whole length). The event
    yielded is set once the cut is made."""
    import psycopg

    fired = threading.Event()

    def cut() -> None:
        fired.set()
        try:
            with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except (OSError, psycopg.Error):
            pass
        # cancel_safe, bounded and polled from Python: libpq's blocking PQcancel holds the GIL, so a
        # wedged server that never closes the cancel connection would stop every thread
        try:
            conn.cancel_safe(timeout=CANCEL_TIMEOUT_S)
        except Exception:  # closed meanwhile, or no answer: the cut stands
            pass

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


def _query_rows(cur: psycopg.Cursor, query: str) -> list[dict[str, Any]]:
    """The rows of ``query``, read one at a time (libpq's single-row mode): past
    ``MAX_QUERY_ROWS`` rows or ``MAX_QUERY_BYTES`` of values the rest is cancelled on the server
    and the check fails, instead of millions of rows held in memory (each a dict here)."""
    import psycopg

    rows: list[dict[str, Any]] = []
    size = 0

    def keep(row: dict[str, Any]) -> None:
        nonlocal size
        row = {k: _jsonable(v) for k, v in row.items()}
        size += sum(len(v) for v in row.values() if isinstance(v, (str, bytes)))
        if len(rows) == MAX_QUERY_ROWS:
            raise _TooMuch(f"the query returned more than {MAX_QUERY_ROWS} rows; a check reads them all "
                           "(aggregate in SQL: count(*), max(...))")
        if size > MAX_QUERY_BYTES:
            raise _TooMuch(f"the query returned more than {MAX_QUERY_BYTES // (1024 * 1024)} MiB of values")
        rows.append(row)

    stream = cur.stream(query)
    try:
        for row in stream:
            keep(row)
    except psycopg.errors.SyntaxError as exc:
        if "multiple commands" not in str(exc):
            raise
        # several statements are refused before any runs: sent again as one (the last one's
        # rows count); libpq then holds them all at once, this check only MAX_QUERY_ROWS + 1
        cur.execute(query)
        while cur.nextset():  # the cursor starts on the first statement's result
            pass
        for row in cur.fetchmany(MAX_QUERY_ROWS + 1) if cur.description else []:
            keep(row)
    except psycopg.ProgrammingError as exc:  # SyntaxError's base: after it
        if "didn't produce a result" not in str(exc):
            raise
        return []  # SET, INSERT ...: it ran, and has no rows
    finally:
        stream.close()  # an early stop cancels the rest of the query on the server
    return rows


def observe(item: PostgresCheck, ctx) -> Observation:
    import psycopg
    from psycopg.rows import dict_row

    shown = target_name("postgres", item.dsn, 5432, "/")
    values: dict[str, Any] = {"target": shown}
    document = NO_DOCUMENT
    details: dict[str, Any] = {}
    explain = None
    cut = None
    stage = "cannot connect"
    try:
        with ctx.shared.use(("postgres", item.dsn), lambda: _connect(item), item.timeout, _alive, exclusive=True) as conn:
            stage = "query failed"
            # the server cancels a slow statement at the timeout; the client cuts a silent one just after
            with _deadline(conn, item.timeout + 1) as cut, conn.cursor(row_factory=dict_row) as cur:
                cur.execute(f"SET statement_timeout = {int(item.timeout * 1000)}")
                started = time.perf_counter()
                cur.execute("SELECT 1")
                cur.fetchone()
                values["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
                cur.execute(_STATS)
                stats = {k: _jsonable(v) for k, v in cur.fetchone().items()}
                values["role"] = "replica" if stats.pop("in_recovery") else "primary"
                replica_lag = stats.pop("replica_lag_s")
                receiver = stats.pop("wal_receiver")
                values.update(stats)
                values["connections_percent"] = round(100 * values["connections"] / values["max_connections"], 2)
                if values["role"] == "primary":
                    cur.execute(_REPLICAS)
                    replicas = [{k: _jsonable(v) for k, v in row.items()} for row in cur.fetchall()]
                    values["replicas"] = len(replicas)
                    values["replication_lag_s"] = max((r["replay_lag_s"] for r in replicas), default=0.0)
                    details["replicas"] = replicas
                else:
                    values["wal_receiver"] = receiver or "not running"
                    # received == replayed also holds when nothing arrives: no lag is known then
                    values["replication_lag_s"] = replica_lag if receiver == "streaming" else None
                    if receiver != "streaming":
                        explain = f"WAL receiver is {receiver or 'not running'}: replication is down, its lag unknown"
                if item.query:
                    rows = _query_rows(cur, item.query)
                    document = dict(values, rows=rows, row=rows[0] if rows else None, count=len(rows))
                    details["query_rows"] = rows[:20]
    except QueueTimeout as exc:
        return Observation(values, error=f"{shown}: {exc}")
    except _TooMuch as exc:
        return Observation(values, error=f"{shown}: {exc}")
    except (psycopg.Error, OSError, TimeoutError) as exc:
        return Observation(values, error=f"{shown}: {stage}: {_cause(exc, item, cut is not None and cut.is_set())}")
    return Observation(values, document=document, details=details, explain=explain)


def limits(item: PostgresCheck) -> list[Condition]:
    out = []
    if item.max_latency_ms is not None:
        out.append(Condition.compare("latency_ms", "<=", item.max_latency_ms, label=f"SELECT 1 latency_ms <= {item.max_latency_ms:g}"))
    if item.role:
        out.append(Condition.compare("role", "==", item.role, label=f"role == {item.role!r}"))
    if item.min_replicas is not None:
        out.append(Condition.compare("replicas", ">=", item.min_replicas))
    for name in ("replication_lag_s", "connections_percent", "oldest_transaction_s", "oldest_idle_in_transaction_s"):
        limit = getattr(item, name)
        if limit:
            out += limit.conditions(name)
    if item.database_size:
        out += item.database_size.conditions("database_size_bytes")
    return out


KIND = Kind(name="postgres", schema=PostgresCheck, observe=observe, limits=limits,
            summary="PostgreSQL: connection, SELECT 1 latency, role, replication lag, connection use, old transactions, size, a query",
            secret_fields=("dsn",), host_level=False)
