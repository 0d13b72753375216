"""``sqlite`` backups: a database file (optionally .gz), as SQLite's online backup writes it.

- L2 copies it into scratch (every byte read; the backup itself is never opened by SQLite,
  which could write a journal next to it) and runs ``PRAGMA integrity_check`` on the copy;
- L3 opens the copy and queries it: its tables and their row counts;
- L4 compares row counts per table (all tables, or ``tables``) and custom SQL with the live
  database, opened read-only, each within a stated tolerance;
- ``take`` uses SQLite's online backup API (consistent while the live database is written).

>>> import sqlite3, tempfile
>>> from opsgate.backups.base import RecoveryPoint, Scratch
>>> d = Path(tempfile.mkdtemp(prefix="opsgate-scratch-doc-"))
>>> live = sqlite3.connect(d / "app.db"); _ = live.execute("create table t(x)"); live.commit(); live.close()
>>> opts = Options(live=str(d / "app.db"))
>>> with Scratch(timeout=30) as s:
...     made = take(opts, d, s)
...     point = RecoveryPoint(str(made), 0, made.stat().st_size, made)
...     l2 = integrity(point, opts, s); l3, restored = restore(point, opts, s); l4 = compare(restored, opts, s)
>>> l2.message, l3.message, l4.message
('integrity_check ok on a copy (8,192 B)', 'opened the copy: 1 tables, 0 rows', '1 tables, 0 rows; each within 0 of live')
>>> import shutil; shutil.rmtree(d)
"""

from __future__ import annotations

import gzip
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from ..schema import Strict
from .base import Outcome, RecoveryPoint, Scratch
from .points import CHUNK, human_size, new_backup
from .tolerance import TOLERANCE, Tolerance

MAGIC = b"SQLite format 3\x00"


class SqlCheck(Strict):
    """A query returning one value, run on the restored copy and on live: equal (numbers
    within ``tolerance``)."""

    name: str
    sql: str
    tolerance: TOLERANCE = Tolerance(0)


class Options(Strict):
    """``sqlite:`` settings of a backup item."""

    path_fields: ClassVar[tuple[str, ...]] = ("live",)

    live: str | None = Field(None, description="the live database file (L4 compares with it; `opsgate backup` "
                                               "copies it)")
    tables: list[str] | None = Field(None, description="tables L4 counts (default: every table)")
    row_tolerance: TOLERANCE = Field(Tolerance(0), description="how far a table's restored row count may be "
                                                               "from live's: 10 or 0.5%")
    queries: list[SqlCheck] = Field([], description="custom SQL compared between the copy and live")
    name: str = Field("{live}-%Y%m%dT%H%M%SZ.sqlite", description="name of a backup `opsgate backup` takes: "
                      "strftime in UTC; {live} is the live file's name without its suffix")


def _guard(conn: sqlite3.Connection, scratch: Scratch) -> None:
    """Interrupt a query at the scratch's deadline (SQLite checks every N VM steps)."""
    conn.set_progress_handler(lambda: 1 if scratch.closed or time.monotonic() > scratch.deadline else 0, 20_000)


def _open_ro(path: Path, scratch: Scratch) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=min(10.0, scratch.remaining()),
                           check_same_thread=False)
    _guard(conn, scratch)
    return conn


def _copy(point: RecoveryPoint, scratch: Scratch) -> tuple[Path, int]:
    """The backup copied (decompressed) into scratch, read end to end; (copy, bytes read)."""
    source = point.path or Path(point.id)
    copy = scratch.dir / "copy.sqlite"
    if copy.exists():
        return copy, 0
    opener = gzip.open if source.name.endswith(".gz") else open
    read = 0
    with opener(source, "rb") as src, open(copy, "xb") as dst:
        while chunk := src.read(CHUNK):
            scratch.remaining()
            dst.write(chunk)
            read += len(chunk)
    return copy, read


def _refuse_live(point: RecoveryPoint, options: Options) -> str | None:
    source = point.path or Path(point.id)
    if options.live and Path(options.live).exists() and source.exists() and \
            os.path.samefile(options.live, source):
        return f"the backup {source} is the live database {options.live}; refused"
    return None


def integrity(point: RecoveryPoint, options: Options, scratch: Scratch) -> Outcome:
    """L2: a copy in scratch, its header and ``PRAGMA integrity_check``."""
    started = time.monotonic()
    refused = _refuse_live(point, options)
    if refused:
        return Outcome(2, False, f"L2 integrity refused: {refused}")
    name = Path(point.id).name
    try:
        copy, read = _copy(point, scratch)
    except (OSError, EOFError) as exc:  # gzip errors are OSError/EOFError
        return Outcome(2, False, f"L2 integrity: {name}: cannot be read end to end: {exc}",
                       duration_s=time.monotonic() - started)
    with open(copy, "rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            return Outcome(2, False, f"L2 integrity: {name}: not an SQLite database (no 'SQLite format 3' header)",
                           bytes=read, duration_s=time.monotonic() - started)
    try:
        conn = _open_ro(copy, scratch)
        try:
            # one row may hold several problems, one a line, under a "*** in database main ***" header
            rows = [line for r in conn.execute("PRAGMA integrity_check(20)") for line in str(r[0]).splitlines()
                    if line.strip() and not line.startswith("*** ")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if scratch.closed or time.monotonic() > scratch.deadline:
            raise TimeoutError(f"integrity_check of {name} did not finish within the timeout") from None
        return Outcome(2, False, f"L2 integrity: {name}: {exc}", bytes=read, duration_s=time.monotonic() - started)
    if rows != ["ok"]:
        return Outcome(2, False, f"L2 integrity: {name}: integrity_check found {len(rows)} problem(s): "
                                 + "; ".join(rows[:3]), bytes=read, duration_s=time.monotonic() - started,
                       details={"problems": rows})
    return Outcome(2, True, f"integrity_check ok on a copy ({human_size(read)})", bytes=read,
                   duration_s=time.monotonic() - started)


def _counts(conn: sqlite3.Connection, tables: list[str] | None = None) -> dict[str, int]:
    names = tables if tables is not None else [
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
                                   "ORDER BY name")]
    out = {}
    for name in names:
        quoted = '"' + name.replace('"', '""') + '"'
        out[name] = conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]
    return out


def restore(point: RecoveryPoint, options: Options, scratch: Scratch) -> tuple[Outcome, Any]:
    """L3: the copy opened and queried (tables and row counts). Returns the copy's path."""
    started = time.monotonic()
    refused = _refuse_live(point, options)
    if refused:
        return Outcome(3, False, f"L3 restore refused: {refused}"), None
    name = Path(point.id).name
    try:
        copy, _ = _copy(point, scratch)
        conn = _open_ro(copy, scratch)
        try:
            counts = _counts(conn)
        finally:
            conn.close()
    except (OSError, EOFError, sqlite3.Error) as exc:
        if scratch.closed or time.monotonic() > scratch.deadline:
            raise TimeoutError(f"querying the copy of {name} did not finish within the timeout") from None
        return Outcome(3, False, f"L3 restore: {name}: the copy cannot be queried: {exc}",
                       duration_s=time.monotonic() - started), None
    rows = sum(counts.values())
    return Outcome(3, True, f"opened the copy: {len(counts)} tables, {rows:,} rows", items=rows, items_total=rows,
                   unit="rows", duration_s=time.monotonic() - started, details={"tables": counts}), copy


def compare(restored: Any, options: Options, scratch: Scratch) -> Outcome:
    """L4: row counts per table and custom SQL, the copy against live (read-only)."""
    started = time.monotonic()
    if not options.live:
        return Outcome(4, False, "L4 compare: no live database to compare with (set sqlite.live)")
    if not Path(options.live).is_file():
        return Outcome(4, False, f"L4 compare: the live database {options.live} does not exist")
    try:
        ours_conn, live_conn = _open_ro(Path(restored), scratch), _open_ro(Path(options.live), scratch)
        try:
            live_counts = _counts(live_conn, options.tables)
            ours_tables = set(_counts(ours_conn))
            missing = [t for t in live_counts if t not in ours_tables]
            ours_counts = _counts(ours_conn, [t for t in live_counts if t in ours_tables])
            query_results = [(q, ours_conn.execute(q.sql).fetchone(), live_conn.execute(q.sql).fetchone())
                             for q in options.queries]
        finally:
            ours_conn.close()
            live_conn.close()
    except sqlite3.Error as exc:
        if scratch.closed or time.monotonic() > scratch.deadline:
            raise TimeoutError("comparing with the live database did not finish within the timeout") from None
        return Outcome(4, False, f"L4 compare: {exc}", duration_s=time.monotonic() - started)
    tolerance = options.row_tolerance
    bad = [f"table {t}: missing in the backup" for t in missing]
    for table, count in ours_counts.items():
        if not tolerance.allows(count, live_counts[table]):
            bad.append(f"table {table}: {count:,} rows restored, {live_counts[table]:,} live "
                       f"(tolerance {tolerance})")
    for query, ours, theirs in query_results:
        a, b = (ours or [None])[0], (theirs or [None])[0]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        same = query.tolerance.allows(a, b) if numbers else a == b
        if not same:
            bad.append(f"query {query.name}: {a!r} restored, {b!r} live (tolerance {query.tolerance})")
    rows = sum(ours_counts.values())
    details = {"tables": {t: {"restored": ours_counts.get(t), "live": live_counts[t]} for t in live_counts},
               "tolerance": str(tolerance), "queries": [q.name for q in options.queries]}
    queries = f"; {len(options.queries)} quer{'y' if len(options.queries) == 1 else 'ies'} equal to live's" \
        if options.queries else ""
    if bad:
        return Outcome(4, False, "L4 compare: " + "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3
                                                                        else ""),
                       items=len(live_counts) - len(bad), items_total=len(live_counts), unit="tables",
                       duration_s=time.monotonic() - started, details=details)
    return Outcome(4, True, f"{len(live_counts)} tables, {rows:,} rows; each within {tolerance} of live{queries}",
                   items=rows, items_total=sum(live_counts.values()), unit="rows",
                   duration_s=time.monotonic() - started, details=details)


def take(options: Options, destination: Path, scratch: Scratch) -> Path:
    """SQLite's online backup of the live database into ``destination`` (a .partial file
    renamed when complete)."""
    if not options.live:
        raise ValueError("sqlite.live is not set: nothing to back up")
    live = Path(options.live)
    if not live.is_file():
        raise FileNotFoundError(f"the live database {live} does not exist")
    final, partial = new_backup(destination, options.name, live.stem, scratch)
    source = sqlite3.connect(f"file:{live}?mode=ro", uri=True, timeout=min(10.0, scratch.remaining()))
    target = sqlite3.connect(partial)
    try:
        source.backup(target, pages=256, progress=lambda *_: scratch.remaining())
    finally:
        target.close()
        source.close()
    os.replace(partial, final)
    return final
