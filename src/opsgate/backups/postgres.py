"""``postgres`` backups: ``pg_dump`` output (custom ``-Fc``, directory ``-Fd``, plain SQL,
plain ``.sql.gz``) and physical base backups with a ``backup_manifest``
(:mod:`opsgate.backups.postgres_base`).

- L2 reads every byte: ``pg_restore -f /dev/null`` decompresses every data block of a
  custom or directory dump (``pg_restore --list`` reads only the table of contents, so a
  dump cut in half passes it); a plain dump is read end to end and must end with pg_dump's
  ``-- PostgreSQL database dump complete`` trailer, every COPY block closed; a base backup
  is checked by ``pg_verifybackup``.
- L3 creates ``opsgate_scratch_<random>`` on ``scratch_dsn``'s server (default: the live
  server), its DROP registered before it is created, and restores with ``pg_restore
  --no-owner --no-privileges --no-subscriptions --exit-on-error`` (plain: ``psql -v
  ON_ERROR_STOP=1``; pg_dump writes its subscriptions disabled, ``connect = false``); the
  duration is the RTO evidence. A plain dump that reaches beyond the database it is
  restored into is refused: psql meta-commands (``\\connect``: made with ``-C`` or
  ``pg_dumpall``), statements on databases, roles, tablespaces or the system, and a
  server-side ``COPY`` (files or programs). Any other SQL in it runs as the scratch
  server's user: restore dumps of unknown origin with a role that is not a superuser.
- L4 counts the rows of every user table (or ``tables``) in the restore and in live, each
  within ``row_tolerance``, and runs ``queries`` (conditions on the restore's rows, or the
  same rows as live).

Passwords travel in ``PGPASSWORD`` only; messages name ``host:port/database``.

In an environment file::

    backup:
      - name: app-db
        source: postgres
        path: /var/backups/pg/app-*.dump      # pg_dump -Fc; -Fd folders, .sql(.gz), base backups too
        rpo: 26h
        level: 4
        postgres:
          live_dsn: "postgresql://app:${APP_DB_PASSWORD}@db:5432/app"
          scratch_dsn: "postgresql://restorer:${RESTORE_PASSWORD}@scratch-db:5432/postgres"  # CREATEDB
          row_tolerance: 0.5%                 # or an absolute count: 10
          queries:
            - {name: recent-orders, sql: "SELECT count(*) AS n FROM orders WHERE created > now() - interval '2 days'",
               expect: ["row.n > 0"]}

>>> Options(live_dsn="postgresql://app:pw@db:5432/app", row_tolerance="0.5%").row_tolerance.percent
True
>>> refusal(Options(live_dsn="postgresql://app:pw@db:5432/app", scratch_database="app"))
'refused: the scratch database db:5432/app would be the live database db:5432/app'
"""

from __future__ import annotations

import gzip
import json
import os
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..conditions import Condition
from ..lazy import lazy
from ..schema import Strict
from ..redact import REDACTOR
from .base import Outcome, RecoveryPoint, Scratch, describe_failure, run_bounded
from .pgconn import PgTarget, cause, pg_bin
from .scratch_server import landing
from .tolerance import TOLERANCE, Tolerance, counted

psycopg = lazy("psycopg")  # imported when a PostgreSQL backup is verified, not with the schema
sql = lazy("psycopg.sql")

SCRATCH_PREFIX = "opsgate_scratch_"
TRAILERS = (b"-- PostgreSQL database dump complete", b"-- PostgreSQL database cluster dump complete")
_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$"
_SHOWN_TABLES = 200  # evidence keeps at most this many tables' counts
# psql meta-commands pg_dump itself writes outside COPY data (15.14+: \restrict / \unrestrict)
_SAFE_META = {b"\\restrict", b"\\unrestrict"}
_CLUSTER = re.compile(rb"(CREATE|DROP|ALTER) (DATABASE|ROLE|USER|GROUP|TABLESPACE|SYSTEM)\b|(COMMENT|SECURITY LABEL) ON "
                      rb"DATABASE\b|(GRANT|REVOKE)\b.*\bON DATABASE\b", re.IGNORECASE)


class Query(Strict):
    """A custom SQL check on the restored database: ``expect`` conditions on its result
    (``{rows, row, count}``), or (``compare``, the default without ``expect``) the same rows
    as the live database."""

    name: str
    sql: str
    expect: list[str] = Field(default_factory=list, description="conditions on {rows, row, count} of the restore's result")
    compare: bool | None = Field(None, description="the restore's rows equal live's (default: when no expect)")


class Options(Strict):
    """The ``postgres:`` settings of a backup item."""

    format: Literal["auto", "custom", "directory", "plain", "base"] = "auto"
    live_dsn: str | None = Field(None, repr=False, description="the live database: L4 compares with it; default restore server")
    scratch_dsn: str | None = Field(None, repr=False, description="the server dumps are restored on (its database is where "
                                                      "CREATE DATABASE is issued); default live_dsn's server")
    scratch_database: str | None = Field(None, pattern=_IDENTIFIER,
                                         description="a fixed scratch database name (default opsgate_scratch_<random>); "
                                                     "it must not exist")
    scratch_port: int | None = Field(None, ge=1, le=65535, description="base backups: the scratch server's port (default a free one)")
    database: str | None = Field(None, description="base backups: the database compared (default live_dsn's)")
    os_user: str = Field("postgres", description="base backups: the system user the scratch server runs as when opsgate is root")
    tables: list[str] | None = Field(None, description="tables compared (schema.table or table in public); default all user tables")
    row_tolerance: TOLERANCE = Tolerance(0)
    queries: list[Query] = Field(default_factory=list)
    jobs: int = Field(1, ge=1, le=64, description="pg_restore --jobs for custom and directory dumps")
    name: str = Field("{db}-%Y%m%dT%H%M%SZ.dump", description="name of a dump `opsgate backup` takes (pg_dump -Fc): "
                      "strftime in UTC; {db} is the live database's name")
    allow_empty: bool = Field(False, description="a dump without table data (schema only, an empty database) "
                                                 "passes L2; by default reading no data is a failure")


# ---------------------------------------------------------------- formats

def detect_format(path: Path, wanted: str = "auto") -> str:
    """custom, directory, plain or base (a base backup: a folder with a backup_manifest).

    >>> import tempfile; folder = Path(tempfile.mkdtemp()); (folder / "toc.dat").write_bytes(b"PGDMP")
    5
    >>> detect_format(folder)
    'directory'
    """
    if wanted != "auto":
        return wanted
    if path.is_dir():
        if (path / "backup_manifest").exists():
            return "base"
        if (path / "toc.dat").exists():
            return "directory"
        raise ValueError(f"{path} is a folder with neither toc.dat (pg_dump -Fd) nor backup_manifest (pg_basebackup)")
    if path.name == "backup_manifest":
        return "base"
    with open(path, "rb") as handle:
        head = handle.read(5)
    if not head:
        raise ValueError(f"{path} is empty (0 bytes)")
    return "custom" if head == b"PGDMP" else "plain"


def _point_path(point: RecoveryPoint) -> Path:
    return Path(point.path or point.id)


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# ---------------------------------------------------------------- L2

def integrity(point: RecoveryPoint, options: Options, scratch: Scratch) -> Outcome:
    """L2: every byte of the dump read (or the base backup checked by pg_verifybackup)."""
    path = _point_path(point)
    started = time.monotonic()
    try:
        fmt = detect_format(path, options.format)
        if fmt == "base":
            from . import postgres_base
            outcome = postgres_base.integrity(path, options, scratch)
        elif fmt == "plain":
            outcome = _integrity_plain(path, scratch)
        else:
            outcome = _integrity_archive(path, fmt, scratch)
        if outcome.ok and fmt != "base" and outcome.items == 0 and not options.allow_empty:
            outcome = Outcome(2, False, f"{outcome.message}: the dump holds no table data (pg_dump --schema-only, or "
                                        f"an empty database?); set allow_empty if that is expected",
                              bytes=outcome.bytes, details=outcome.details)
    except (OSError, ValueError, TimeoutError) as exc:
        outcome = Outcome(2, False, REDACTOR.text(str(exc)))
    outcome.duration_s = time.monotonic() - started
    return outcome


def _integrity_archive(path: Path, fmt: str, scratch: Scratch) -> Outcome:
    size = _tree_size(path)
    if size == 0:
        return Outcome(2, False, f"{path.name} is empty (0 bytes)")
    restore = pg_bin("pg_restore")
    listed = run_bounded([restore, "--list", str(path)], scratch, max_output=4 << 20)
    if listed.returncode != 0:
        return Outcome(2, False, f"the table of contents is unreadable: {describe_failure(listed)}", bytes=0)
    entries = [line for line in listed.stdout.splitlines() if line and not line.startswith(";")]
    tables = sum(1 for line in entries if " TABLE DATA " in line)
    # --list stops at the table of contents; writing the whole script reads every data block
    read = run_bounded([restore, "-f", os.devnull, str(path)], scratch)
    if read.returncode != 0:
        return Outcome(2, False, f"the {fmt} dump cannot be read to its end ({size:,} bytes; its table of contents "
                                 f"lists the data of {counted(tables, 'table')}): {describe_failure(read)}",
                       items_total=tables, unit="tables", details={"format": fmt, "toc_entries": len(entries)})
    return Outcome(2, True, f"read {size:,} of {size:,} bytes: the data of {_all(tables)} decompressed "
                            f"(pg_restore -f /dev/null); {len(entries)} entries in the table of contents",
                   items=tables, items_total=tables, unit="tables", bytes=size,
                   details={"format": fmt, "toc_entries": len(entries), "command": "pg_restore -f /dev/null"})


@dataclass
class PlainScan:
    """What a read of a plain SQL dump from end to end found."""

    bytes_read: int = 0
    lines: int = 0
    tables: int = 0  # CREATE TABLE statements
    inserts: int = 0  # INSERT statements (pg_dump --inserts writes data so)
    copy_blocks: int = 0  # COPY ... FROM stdin blocks, closed by \.
    open_copy: str | None = None  # a COPY block never closed: the dump was cut inside it
    trailer: bool = False  # pg_dump's completion line, with nothing but comments after it
    after_trailer: str | None = None  # the first statement after the last trailer
    meta_commands: list[str] = field(default_factory=list)  # psql meta-commands besides \restrict
    # statements that reach beyond the database restored into (pg_dump -C, pg_dumpall, an edited
    # file): databases, roles, tablespaces, ALTER SYSTEM, a server-side COPY (files, programs)
    cluster_statements: list[str] = field(default_factory=list)

    @property
    def unsafe(self) -> str | None:
        """Why restoring it into a scratch database could reach other databases, or None."""
        found = self.meta_commands[:3] + self.cluster_statements[:3]
        if not found:
            return None
        return ("the dump reaches beyond the database it is restored into (" + "; ".join(found) +
                "): made with pg_dump -C or pg_dumpall, or edited? Restoring it could change other databases, roles "
                "or the server, so opsgate refuses")


def scan_plain(path: Path, scratch: Scratch | None = None) -> PlainScan:
    """Read a plain (or gzip-compressed) SQL dump end to end.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "d.sql"
    >>> _ = p.write_bytes(b"CREATE TABLE t (a int);\\nCOPY public.t (a) FROM stdin;\\n\\\\N\\n\\\\.\\n"
    ...                   b"--\\n-- PostgreSQL database dump complete\\n--\\n\\n")
    >>> s = scan_plain(p); (s.tables, s.copy_blocks, s.trailer, s.unsafe)
    (1, 1, True, None)
    """
    scan = PlainScan()
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rb") as handle:
        copying = None
        for line in handle:
            scan.lines += 1
            scan.bytes_read += len(line)
            if scan.lines & 0xFFFF == 0 and scratch is not None:
                scratch.remaining()  # a huge dump must not outlive the verification
            if copying is not None:
                if line == b"\\.\n" or line == b"\\.\r\n" or line == b"\\.":
                    copying = None
                    scan.copy_blocks += 1
                continue
            if not line.strip() or line.startswith(b"--"):
                if line.startswith(TRAILERS):
                    scan.trailer, scan.after_trailer = True, None
                continue
            if line.startswith(b"\\"):
                word = line.split()[0]
                if word not in _SAFE_META:
                    scan.meta_commands.append(_shown(line))
                continue  # \unrestrict follows the trailer
            if scan.trailer and scan.after_trailer is None:
                scan.after_trailer = _shown(line)
            if line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
                copying = _shown(line.split(b" (")[0][5:].split(b" FROM")[0])
            elif line.startswith(b"COPY ") or _CLUSTER.match(line):
                scan.cluster_statements.append(_shown(line))
            elif line.startswith(b"CREATE TABLE "):
                scan.tables += 1
            elif line.startswith(b"INSERT INTO "):
                scan.inserts += 1
        scan.open_copy = copying
    if scratch is not None:
        scratch.remaining()
    return scan


def _shown(line: bytes) -> str:
    return REDACTOR.excerpt(line.decode("utf-8", errors="replace").strip(), 80)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _integrity_plain(path: Path, scratch: Scratch) -> Outcome:
    size = path.stat().st_size
    if size == 0:
        return Outcome(2, False, f"{path.name} is empty (0 bytes)")
    try:
        scan = scan_plain(path, scratch)
    except (EOFError, gzip.BadGzipFile, OSError) as exc:  # a cut or damaged .sql.gz
        return Outcome(2, False, f"the compressed dump cannot be read to its end: {type(exc).__name__}: {exc}")
    details = {"format": "plain", "lines": scan.lines, "sql_bytes": scan.bytes_read, "copy_blocks": scan.copy_blocks,
               "inserts": scan.inserts, "tables": scan.tables, "gzip": _is_gzip(path)}
    if scan.open_copy:
        return Outcome(2, False, f"the dump was cut inside the data of {scan.open_copy} (its COPY block has no "
                                 f"closing \\.; read {size:,} bytes)", bytes=size, details=details)
    if not scan.trailer:
        return Outcome(2, False, f"no '-- PostgreSQL database dump complete' trailer: the dump was cut short or pg_dump "
                                 f"did not finish (read {size:,} bytes, {scan.copy_blocks} COPY blocks)",
                       bytes=size, details=details)
    if scan.after_trailer:
        return Outcome(2, False, f"statements follow the completion trailer ({scan.after_trailer!r}): not one "
                                 f"pg_dump's output", bytes=size, details=details)
    data = f"{counted(scan.copy_blocks, 'COPY block')}, all closed"
    if scan.inserts:
        data += f", {counted(scan.inserts, 'INSERT')}"
    # tables whose data the dump holds: one COPY block each (pg_dump --inserts: count the tables)
    with_data = scan.copy_blocks or (scan.tables if scan.inserts else 0)
    return Outcome(2, True, f"read {size:,} of {size:,} bytes to pg_dump's completion trailer: "
                            f"{counted(scan.tables, 'table')}, {data}",
                   items=with_data, items_total=scan.tables, unit="tables", bytes=size, details=details)


# ---------------------------------------------------------------- L3

def refusal(options: Options) -> str | None:
    """Why a restore with these options would touch the live database (or None): checked
    before anything is created."""
    if not options.live_dsn:
        return None
    live = PgTarget.parse(options.live_dsn)
    server = PgTarget.parse(options.scratch_dsn) if options.scratch_dsn else live
    if options.scratch_database:
        scratch_db = server.with_database(options.scratch_database)
        if scratch_db.same_database(live):
            return f"refused: the scratch database {scratch_db.label} would be the live database {live.label}"
    if options.scratch_port is not None and options.scratch_port == live.port and live.local:  # the base backup's server
        return (f"refused: the scratch server's port {options.scratch_port} is the live server's "
                f"({live.host}:{live.port}); choose another scratch_port or leave it out")
    return None


def restore(point: RecoveryPoint, options: Options, scratch: Scratch) -> tuple[Outcome, Any]:
    """L3: restore into a scratch database made for the purpose (base backups: a scratch
    server); returns the outcome and the restored database's PgTarget (no password in repr)."""
    refused = refusal(options)
    if refused:
        return Outcome(3, False, refused), None
    path = _point_path(point)
    try:
        fmt = detect_format(path, options.format)
        if fmt == "base":
            from . import postgres_base
            return postgres_base.restore(path, options, scratch)
        return _restore_dump(path, fmt, options, scratch)
    except EOFError as exc:  # a cut .sql.gz
        return Outcome(3, False, f"the compressed dump ends early: {exc}"), None
    except (OSError, ValueError, TimeoutError, psycopg.Error) as exc:
        text = cause(exc) if isinstance(exc, psycopg.Error) else REDACTOR.text(str(exc))
        return Outcome(3, False, text), None


def _restore_dump(path: Path, fmt: str, options: Options, scratch: Scratch) -> tuple[Outcome, Any]:
    server_dsn = options.scratch_dsn or options.live_dsn
    if not server_dsn:
        return Outcome(3, False, "no server to restore on: set scratch_dsn (or live_dsn)"), None
    server = PgTarget.parse(server_dsn)
    size = _tree_size(path)
    if size == 0:
        return Outcome(3, False, f"{path.name} is empty (0 bytes): nothing to restore"), None
    if fmt == "plain":
        scan = scan_plain(path, scratch)
        if scan.unsafe:
            return Outcome(3, False, scan.unsafe), None
    name = options.scratch_database or f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"
    target = server.with_database(name)
    started = time.monotonic()
    create_scratch_database(server, name, scratch, fixed=bool(options.scratch_database))
    if fmt == "plain":
        source = path
        if _is_gzip(path):  # psql reads a file: decompress into scratch (never beside the backup)
            source = scratch.dir / "dump.sql"
            _gunzip(path, source, scratch)
        argv = [pg_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(source), "-d", target.conninfo()]
        shown = "psql -v ON_ERROR_STOP=1"
    else:
        # no subscriptions: a restored one could take over live's replication slot
        argv = [pg_bin("pg_restore"), "--no-owner", "--no-privileges", "--no-subscriptions", "--exit-on-error",
                "-d", target.conninfo()]
        argv += [f"--jobs={options.jobs}"] if options.jobs > 1 else []
        argv.append(str(path))
        shown = "pg_restore --no-owner --no-privileges --no-subscriptions --exit-on-error"
    done = run_bounded(argv, scratch, env=target.tool_env())
    duration = time.monotonic() - started
    # the dump's size is evidence here, not bytes verified again (L2 read them)
    details = {"format": fmt, "server": server.label, "scratch_database": name, "command": shown,
               "restore_s": round(duration, 3), "backup_bytes": size}
    if done.returncode != 0:
        return Outcome(3, False, f"the restore into {target.label} failed: {describe_failure(done)}",
                       duration_s=duration, details=details), None
    with target.connect(scratch.remaining()) as conn:
        tables = conn.execute(_COUNT_TABLES).fetchone()[0]
    if tables == 0:
        return Outcome(3, False, f"the restore into {target.label} succeeded but holds no tables",
                       duration_s=duration, details=details), None
    return Outcome(3, True, f"restored into a scratch database ({target.label}) in {duration:.1f}s with {shown}: "
                            f"{counted(tables, 'table')}", items=tables, items_total=tables, unit="tables",
                   duration_s=duration, details=details), target


_COUNT_TABLES = """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"""


def create_scratch_database(server: PgTarget, name: str, scratch: Scratch, fixed: bool = False) -> None:
    """CREATE DATABASE ``name`` on ``server``, its DROP registered first; the DROP runs only
    for a database this call created (or may have created: the answer was lost)."""
    state = {"ours": False}

    def drop() -> None:
        if not state["ours"]:
            return
        with server.connect(30) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    scratch.on_cleanup(drop, f"drop scratch database {server.host}:{server.port}/{name}")
    with server.connect(scratch.remaining()) as conn:
        if fixed and conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            raise ValueError(f"the scratch database {server.host}:{server.port}/{name} already exists: opsgate drops only "
                             f"a database it created; drop it or choose another scratch_database")
        state["ours"] = True  # from here on an interrupted CREATE may have created it
        try:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            state["ours"] = False
            raise ValueError(f"the scratch database {server.host}:{server.port}/{name} already exists") from None
        except psycopg.errors.InsufficientPrivilege:
            state["ours"] = False
            raise ValueError(f"{server.user} may not create databases on {server.host}:{server.port}: set scratch_dsn "
                             f"to a role with CREATEDB") from None


def _gunzip(source: Path, target: Path, scratch: Scratch) -> None:
    with gzip.open(source, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(1 << 20):
            writer.write(chunk)
            scratch.remaining()


# ---------------------------------------------------------------- L4

_TABLES = """SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2"""


def compare(restored: Any, options: Options, scratch: Scratch) -> Outcome:
    """L4: row counts per table (all user tables, or ``tables``) within ``row_tolerance`` of
    live, and ``queries``."""
    started = time.monotonic()
    if not isinstance(restored, PgTarget):
        return Outcome(4, False, "nothing restored to compare")
    if not options.live_dsn:
        return Outcome(4, False, "no live_dsn to compare the restore with")
    live = PgTarget.parse(options.live_dsn)
    if options.database:
        live = live.with_database(options.database)
    try:
        outcome = _compare(restored, live, options, scratch)
    except (psycopg.Error, OSError, TimeoutError) as exc:
        text = cause(exc) if isinstance(exc, psycopg.Error) else REDACTOR.text(str(exc))
        outcome = Outcome(4, False, f"comparing {restored.label} with live {live.label}: {text}")
    outcome.duration_s = time.monotonic() - started
    return outcome


def _compare(restored: PgTarget, live: PgTarget, options: Options, scratch: Scratch) -> Outcome:
    with restored.connect(scratch.remaining(), read_only=True) as mine, live.connect(scratch.remaining(), read_only=True) as theirs:
        ours_tables = [tuple(row) for row in mine.execute(_TABLES).fetchall()]
        live_tables = [tuple(row) for row in theirs.execute(_TABLES).fetchall()]
        wanted = _wanted_tables(options.tables, ours_tables, live_tables)
        missing = [t for t in wanted if t not in ours_tables]
        absent_live = [t for t in wanted if t not in live_tables]
        both = [t for t in wanted if t in ours_tables and t in live_tables]
        # the two servers count at the same time: L4 costs the slower of the two, not their sum
        with ThreadPoolExecutor(1) as pool:
            live_counts = pool.submit(_count_rows, theirs, both, scratch)
            ours = _count_rows(mine, both, scratch)
            theirs_counts = live_counts.result()
        query_results = [_run_query(q, mine, theirs) for q in options.queries]
    tolerance = options.row_tolerance
    off = [t for t in both if not tolerance.allows(ours[t], theirs_counts[t])]
    rows = sum(ours.values())
    shown = {_name(t): {"restored": ours[t], "live": theirs_counts[t]} for t in both[:_SHOWN_TABLES]}
    details = {"restored": restored.label, "live": live.label, "tolerance": str(tolerance), "tables": shown,
               "tables_compared": len(both), "rows_restored": rows, "rows_live": sum(theirs_counts.values()),
               "queries": [r for r, _ in query_results]}
    if missing:
        details["missing_in_restore"] = [_name(t) for t in missing[:50]]
    if absent_live:
        details["missing_in_live"] = [_name(t) for t in absent_live[:50]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} table(s) of live missing in the restore: {', '.join(_name(t) for t in missing[:5])}")
    if absent_live and options.tables:
        problems.append(f"{len(absent_live)} listed table(s) not in live: {', '.join(_name(t) for t in absent_live[:5])}")
    if off:
        described = "; ".join(f"{_name(t)} {ours[t]:,} restored vs {theirs_counts[t]:,} live "
                              f"({ours[t] - theirs_counts[t]:+,})" for t in off[:5])
        problems.append(f"{len(off)} of {counted(len(both), 'table')} outside the tolerance ({tolerance.of('row')}) of live: {described}")
    problems += [why for _, why in query_results if why]
    if not both and not problems:
        problems.append(f"no table to compare (the restore has {len(ours_tables)}, live {len(live_tables)})")
    summary = f"{counted(len(both), 'table')}, {counted(rows, 'row')}"
    if problems:
        return Outcome(4, False, f"{summary}: " + "; ".join(problems), items=len(both) - len(off),
                       items_total=len(wanted), unit="tables", details=details)
    text = f"{summary}; every table within {tolerance.of('row')} of live"
    if options.queries:
        text += f"; {len(options.queries)} quer{'y holds' if len(options.queries) == 1 else 'ies hold'}"
    return Outcome(4, True, text, items=len(both), items_total=len(wanted), unit="tables", details=details)


def _wanted_tables(listed: list[str] | None, ours: list[tuple], live: list[tuple]) -> list[tuple]:
    if not listed:
        return list(dict.fromkeys(live + ours))
    out = []
    for name in listed:
        schema, _, table = name.rpartition(".")
        out.append((schema or "public", table))
    return out


def _count_rows(conn: psycopg.Connection, tables: list[tuple], scratch: Scratch) -> dict[tuple, int]:
    counts = {}
    for schema, table in tables:
        scratch.remaining()
        query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        counts[(schema, table)] = conn.execute(query).fetchone()[0]
    return counts


def _all(tables: int) -> str:
    return "the one table" if tables == 1 else f"all {tables:,} tables"


def _name(table: tuple) -> str:
    schema, name = table
    return name if schema == "public" else f"{schema}.{name}"


def _run_query(query: Query, mine: psycopg.Connection, theirs: psycopg.Connection) -> tuple[dict, str | None]:
    """One custom query: (evidence, the problem or None)."""
    try:
        ours = _rows(mine, query.sql)
    except psycopg.Error as exc:
        return {"name": query.name, "error": cause(exc)}, f"query {query.name} failed on the restore: {cause(exc)}"
    evidence: dict[str, Any] = {"name": query.name, "rows": ours[:20], "count": len(ours)}
    problems = []
    document = {"rows": ours, "row": ours[0] if ours else None, "count": len(ours)}
    for expression in query.expect:
        result = Condition.parse(expression).evaluate(document)
        evidence.setdefault("conditions", []).append(result.to_json())
        if not result.ok:
            problems.append(result.describe())
    if query.compare or (query.compare is None and not query.expect):
        try:
            theirs_rows = _rows(theirs, query.sql)
        except psycopg.Error as exc:
            return evidence, f"query {query.name} failed on live: {cause(exc)}"
        evidence["live_rows"] = theirs_rows[:20]
        if theirs_rows != ours:
            problems.append(f"restore {REDACTOR.excerpt(json.dumps(ours[:3], default=str), 120)} vs live "
                            f"{REDACTOR.excerpt(json.dumps(theirs_rows[:3], default=str), 120)}")
    return evidence, (f"query {query.name}: " + "; ".join(problems)) if problems else None


def _rows(conn: psycopg.Connection, statement: str) -> list[dict]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(statement)
        return [{k: _plain(v) for k, v in row.items()} for row in cur.fetchall()] if cur.description else []


def _plain(value: Any) -> Any:
    """A JSON-ready value (numbers stay numbers, others become text)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return float(value) if hasattr(value, "as_integer_ratio") else str(value)
    except (TypeError, ValueError):
        return str(value)


# ---------------------------------------------------------------- take

def take(options: Options, destination: Path, scratch: Scratch) -> Path:
    """``pg_dump -Fc`` of the live database into ``destination``: written under a temporary
    name and renamed when pg_dump succeeded, so a failed dump never looks like a backup."""
    if not options.live_dsn:
        raise ValueError("no live_dsn: nothing to dump")
    live = PgTarget.parse(options.live_dsn)
    final, partial = landing(destination, time.strftime(options.name.replace("{db}", live.dbname), time.gmtime()), scratch)
    done = run_bounded([pg_bin("pg_dump"), "-Fc", "-f", str(partial), "-d", live.conninfo()], scratch, env=live.tool_env())
    if done.returncode != 0:
        raise RuntimeError(f"pg_dump of {live.label} failed: {describe_failure(done)}")
    with open(partial, "rb") as handle:
        if handle.read(5) != b"PGDMP":
            raise RuntimeError(f"pg_dump of {live.label} exited 0 but wrote no custom-format dump")
    os.replace(partial, final)
    return final
