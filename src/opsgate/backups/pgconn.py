"""Reaching a PostgreSQL server for backup verification without ever showing its password:
a DSN parsed once into connection parameters (password apart), libpq tools run with the
password in ``PGPASSWORD`` (never in their argv), and connections bounded by the scratch's
deadline.

>>> t = PgTarget.parse("postgresql://app:s3cret-pw@127.0.0.1:5433/shop")
>>> t.label, t.conninfo()
('127.0.0.1:5433/shop', 'host=127.0.0.1 port=5433 dbname=shop user=app')
>>> "s3cret-pw" in repr(t)
False
>>> t.same_database(PgTarget.parse("postgresql://admin:x@localhost:5433/shop"))
True
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterator

from ..lazy import lazy
from ..redact import REDACTOR

psycopg = lazy("psycopg")  # imported when a PostgreSQL backup is verified, not with the schema
_conninfo = lazy("psycopg.conninfo")

DEFAULT_PORT = 5432
_LOCAL = {"", "localhost", "127.0.0.1", "::1", "0.0.0.0"}


@dataclass(frozen=True)
class PgTarget:
    """A server and database: libpq parameters without the password, which is kept apart
    (and out of repr) so no message, evidence or argv can carry it."""

    params: tuple[tuple[str, str], ...]
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, dsn: str) -> "PgTarget":
        """A ``postgresql://`` URL or a ``key=value`` conninfo; the password is registered
        with the redactor."""
        try:
            params = {k: str(v) for k, v in _conninfo.conninfo_to_dict(dsn).items() if v is not None}
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"not a PostgreSQL DSN: {REDACTOR.excerpt(str(exc), 120)}") from None
        password = params.pop("password", None)
        if password:
            REDACTOR.add(password)
        return cls(tuple(sorted(params.items(), key=_param_order)), password)

    def get(self, key: str, default: str | None = None) -> str | None:
        return dict(self.params).get(key, default)

    @property
    def host(self) -> str:
        return self.get("host") or os.environ.get("PGHOST") or "localhost"

    @property
    def port(self) -> int:
        return int(self.get("port") or os.environ.get("PGPORT") or DEFAULT_PORT)

    @property
    def dbname(self) -> str:
        return self.get("dbname") or self.user

    @property
    def user(self) -> str:
        return self.get("user") or os.environ.get("PGUSER") or "postgres"

    @property
    def label(self) -> str:
        """``host:port/db``: how messages name it."""
        return f"{self.host}:{self.port}/{self.dbname}"

    def with_database(self, dbname: str) -> "PgTarget":
        params = dict(self.params, dbname=dbname)
        return replace(self, params=tuple(sorted(params.items(), key=_param_order)))

    def conninfo(self) -> str:
        """libpq conninfo without the password: safe in argv."""
        return _conninfo.make_conninfo(**dict(self.params))

    def tool_env(self) -> dict[str, str]:
        """What a libpq tool needs in its environment: the password."""
        return {"PGPASSWORD": self.password} if self.password else {}

    @property
    def local(self) -> bool:
        """On this machine (a loopback name or a Unix socket)."""
        return _host_key(self.host) == "local"

    def same_server(self, other: "PgTarget") -> bool:
        """Same host (loopback names and Unix sockets count as one) and port."""
        return _host_key(self.host) == _host_key(other.host) and self.port == other.port

    def same_database(self, other: "PgTarget") -> bool:
        return self.same_server(other) and self.dbname == other.dbname

    @contextmanager
    def connect(self, timeout: float, read_only: bool = False) -> Iterator[psycopg.Connection]:
        """An autocommit connection, closed on leaving: connecting and every statement bounded
        by ``timeout`` seconds (the scratch's remaining time) - on the server by
        statement_timeout and, for a server that went silent, by cutting the socket a second
        later (then a TimeoutError)."""
        options = f"-c statement_timeout={max(1, int(timeout * 1000))}"
        if read_only:
            options += " -c default_transaction_read_only=on"
        extra = dict(self.params)
        if extra.get("options"):
            options = f"{extra.pop('options')} {options}"
        conn = psycopg.connect(**extra, password=self.password, options=options, autocommit=True,
                               connect_timeout=max(1, min(int(timeout), 30)), application_name="opsgate-backup")
        cut = threading.Event()
        timer = threading.Timer(timeout + 1, _cut, (conn, cut))
        timer.daemon = True
        timer.start()
        try:
            yield conn
        except psycopg.OperationalError:
            if cut.is_set():
                raise TimeoutError(f"postgres {self.label} did not answer within the verification's timeout "
                                   f"({timeout:.0f}s); the connection was cut") from None
            raise
        finally:
            timer.cancel()
            conn.close()


def _cut(conn: psycopg.Connection, flag: threading.Event) -> None:
    """Shut a connection's socket: statement_timeout is the server's to enforce, and a
    wedged server enforces nothing."""
    flag.set()
    try:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass


def _param_order(item: tuple[str, str]) -> tuple[int, str]:
    order = ("host", "port", "dbname", "user")
    return (order.index(item[0]) if item[0] in order else len(order), item[0])


def _host_key(host: str) -> str:
    host = host.lower().strip("[]")
    return "local" if host in _LOCAL or host.startswith("/") or host.startswith("127.") else host


def pg_bin(name: str, version: str | None = None) -> str:
    """PostgreSQL ``version``'s ``name`` binary when it is installed (a server and pg_waldump
    read only their own major version's files), else the newest installed one's, else the
    one on PATH.

    >>> pg_bin("pg_restore").endswith("pg_restore")
    True
    """
    if version:
        candidate = f"/usr/lib/postgresql/{version}/bin/{name}"
        if os.access(candidate, os.X_OK):
            return candidate
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True):
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: install the PostgreSQL client/server binaries")
    return found


def _version(folder: str) -> tuple[int, ...]:
    part = folder.split("/")[-2]
    return tuple(int(p) for p in part.split(".") if p.isdigit())


def cause(exc: BaseException) -> str:
    """A connection or query error in one redacted line.

    >>> cause(psycopg.OperationalError('connection to server at "127.0.0.1", port 1 failed: Connection refused\\n\\tIs the server running?'))
    'connection refused (is the server running?)'
    """
    text = " ".join(str(exc).split())
    lowered = text.lower()
    if "connection refused" in lowered:
        return "connection refused (is the server running?)"
    if "password authentication failed" in lowered:
        return REDACTOR.excerpt(text[lowered.index("password authentication failed"):], 160)
    if "statement timeout" in lowered:
        return "a query outlived the verification's timeout (statement_timeout)"
    return REDACTOR.excerpt(text or type(exc).__name__, 300)
