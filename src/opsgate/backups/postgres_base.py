"""Physical base backups (``pg_basebackup``, plain or tar format, with a ``backup_manifest``)
for the ``postgres`` source.

- L2: ``pg_verifybackup`` checks every file against the manifest's checksums and that the
  WAL the backup needs is there and parses (PostgreSQL 15's verifier reads plain format
  only, so a tar backup is first extracted into scratch).
- L3: a copy in scratch is started as a scratch server: its own data directory, socket
  directory and port, no TCP listener (``listen_addresses=''``), trust only on that private
  socket (its own hba file), archiving, replication and SSL off, standby/recovery signal
  files removed so it can never follow the live primary, no logical replication workers
  (a subscription would take over live's slot) and no pg_cron jobs. It runs as ``os_user`` when
  opsgate is root (PostgreSQL refuses root), in its own process group, and is stopped
  (fast shutdown, then SIGKILL) in cleanup. Accepted: it finishes recovery and answers.
  Not started: a backup with tablespaces or other links out of its folder (the server would
  write through them); a ``pg_wal`` link (``--waldir``) is copied instead.

Its binaries are those of the backup's major version (PG_VERSION) when installed. The
unpacked tar backup L2 verified is the one L3 starts from (same scratch): unpacked once.

>>> _major(Path("/nonexistent")) is None
True

The server is started directly (``postgres -D ...``), not through ``pg_ctl``: argv without
a shell in between, and a process group opsgate owns and can always end.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from .base import PREFIX, Outcome, Scratch, describe_failure, run_bounded
from .pgconn import PgTarget, cause, pg_bin
from .tolerance import counted
from .scratch_server import free_port, log_tail, start_server

STOP_GRACE_S = 15.0  # fast shutdown, then SIGKILL to the group
_NOT_READY = ("starting up", "not yet accepting", "shutting down", "No such file", "Connection refused", "recovery")


def _base_dir(path: Path) -> Path:
    return path.parent if path.name == "backup_manifest" else path


def _tars(base: Path) -> tuple[Path | None, Path | None]:
    """The base and pg_wal archives of a tar-format backup (any compression tar reads)."""
    def first(stem: str) -> Path | None:
        found = sorted(base.glob(f"{stem}.tar*"))
        return found[0] if found else None
    return first("base"), first("pg_wal")


def _manifest_files(base: Path) -> tuple[int, int]:
    with open(base / "backup_manifest", "rb") as handle:
        manifest = json.load(handle)
    files = manifest.get("Files") or []
    return len(files), sum(int(f.get("Size", 0)) for f in files)


def _extract(base: Path, target: Path, scratch: Scratch) -> None:
    """A tar-format backup unpacked into ``target`` (the WAL into its pg_wal)."""
    base_tar, wal_tar = _tars(base)
    if base_tar is None:
        raise ValueError(f"{base} has a backup_manifest but neither PG_VERSION (plain format) nor base.tar (tar format)")
    target.mkdir(parents=True, exist_ok=True)
    for archive, into in ((base_tar, target), (wal_tar, target / "pg_wal")):
        if archive is None:
            continue
        into.mkdir(parents=True, exist_ok=True)
        done = run_bounded(["tar", "--no-same-owner", "-xf", str(archive), "-C", str(into)], scratch)
        if done.returncode != 0:
            raise ValueError(f"{archive.name} cannot be extracted: {describe_failure(done)}")


def _socket_dir(scratch: Scratch, owner: Any) -> Path:
    """A private folder for the scratch server's socket, short enough for a Unix socket's
    path (107 bytes: a point's scratch nested in its item's is too deep); removed at cleanup."""
    made: dict[str, Path] = {}
    scratch.on_cleanup(lambda: made and shutil.rmtree(made["dir"], ignore_errors=True), "remove the socket folder")
    base = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
    made["dir"] = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-sock-", dir=base))  # mode 0700
    if owner:
        os.chown(made["dir"], owner.pw_uid, owner.pw_gid)
    return made["dir"]


def _links_out(data: Path, scratch: Scratch) -> list[str]:
    """Symbolic links in the scratch copy, after a pg_wal link (pg_basebackup --waldir) is
    replaced by a copy of what it points to: the server writes there."""
    wal = data / "pg_wal"
    if wal.is_symlink():
        target = wal.resolve()
        wal.unlink()
        wal.mkdir()
        done = run_bounded(["cp", "-a", f"{target}/.", str(wal)], scratch)
        if done.returncode != 0:
            raise ValueError(f"the backup's pg_wal ({target}) cannot be copied into scratch: {describe_failure(done)}")
    found = []
    for root, dirs, files in os.walk(data):
        for name in dirs + files:
            if os.path.islink(os.path.join(root, name)):
                found.append(os.path.relpath(os.path.join(root, name), data))
    return found


def _tablespaces(base: Path) -> list[str]:
    """A backup's tablespaces: pg_tblspc links (plain) or <oid>.tar archives (tar format)."""
    found = [f"pg_tblspc/{p.name}" for p in (base / "pg_tblspc").iterdir()] if (base / "pg_tblspc").is_dir() else []
    return found + [p.name for p in base.glob("*.tar*") if re.match(r"\d+\.tar", p.name)]


def _major(data: Path) -> str | None:
    """The PostgreSQL major version a data directory (or backup) is for: its PG_VERSION."""
    try:
        text = (data / "PG_VERSION").read_text(errors="replace").strip()
    except OSError:
        return None
    return text if re.fullmatch(r"\d{1,3}(\.\d{1,3})?", text) else None  # it names a folder: digits only


def _unpacked(scratch: Scratch, base: Path) -> Path:
    """Where L2 unpacks a tar-format backup; L3 in the same scratch starts from it rather
    than unpacking the archives a second time (half the time and disk)."""
    return scratch.dir / f"verified-{hashlib.sha256(str(base.resolve()).encode()).hexdigest()[:12]}"


def integrity(path: Path, options: Any, scratch: Scratch) -> Outcome:
    """L2: pg_verifybackup against the backup_manifest (files and WAL)."""
    base = _base_dir(path)
    try:
        files, size = _manifest_files(base)
    except (OSError, ValueError) as exc:
        return Outcome(2, False, f"the backup_manifest cannot be read: {exc}")
    if (base / "PG_VERSION").exists():
        argv = [pg_bin("pg_verifybackup", _major(base)), str(base)]
        layout = "plain"
    else:  # PostgreSQL 15's verifier reads plain format only: unpack a copy
        unpacked = _unpacked(scratch, base)
        _extract(base, unpacked, scratch)
        argv = [pg_bin("pg_verifybackup", _major(unpacked)), "-m", str(base / "backup_manifest"), str(unpacked)]
        layout = "tar"
    done = run_bounded(argv, scratch)
    details = {"format": "base", "layout": layout, "manifest_files": files, "manifest_bytes": size}
    if done.returncode != 0 or "successfully verified" not in done.stdout:
        return Outcome(2, False, f"pg_verifybackup found the backup damaged: {describe_failure(done, 500)}",
                       items_total=files, unit="files", details=details)
    return Outcome(2, True, f"pg_verifybackup: all {files:,} files ({size:,} bytes) match the backup_manifest's "
                            f"checksums and the WAL the backup needs parses ({layout} format)",
                   items=files, items_total=files, unit="files", bytes=size, details=details)


def restore(path: Path, options: Any, scratch: Scratch) -> tuple[Outcome, Any]:
    """L3: a scratch server started from a copy of the base backup."""
    base = _base_dir(path)
    live = PgTarget.parse(options.live_dsn) if options.live_dsn else None
    user = live.user if live else "postgres"
    database = options.database or (live.dbname if live else "postgres")
    port = options.scratch_port or free_port()
    owner = pwd.getpwnam(options.os_user) if os.getuid() == 0 else None
    tablespaces = _tablespaces(base)
    if tablespaces:
        return Outcome(3, False, f"the base backup has tablespaces ({', '.join(tablespaces[:3])}): a scratch server "
                                 f"would write through their links outside scratch, so opsgate does not start one"), None
    started = time.monotonic()
    place = scratch.dir / f"pg-{port}"
    data = place / "data"
    place.mkdir()
    if owner:  # the server's user must reach its folder through our private scratch dirs
        _traversable(scratch.dir)
    if (base / "PG_VERSION").exists():
        data.mkdir()
        done = run_bounded(["cp", "-a", f"{base}/.", str(data)], scratch)
        if done.returncode != 0:
            return Outcome(3, False, f"the base backup cannot be copied into scratch: {describe_failure(done)}"), None
    elif _unpacked(scratch, base).is_dir():  # L2 unpacked it in this scratch: restore those bytes
        os.rename(_unpacked(scratch, base), data)
    else:
        _extract(base, data, scratch)
    links = _links_out(data, scratch)
    if links:
        return Outcome(3, False, f"the base backup links outside itself ({', '.join(links[:3])}): a scratch server "
                                 f"would write through them, so opsgate does not start one"), None
    for name in ("standby.signal", "recovery.signal", "postmaster.pid", "postmaster.opts", "backup_manifest"):
        (data / name).unlink(missing_ok=True)  # never follow the live primary, never look running
    sockets = _socket_dir(scratch, owner)
    (place / "hba.conf").write_text("local all all trust\n")  # the socket folder is private: trust is ours alone
    (place / "ident.conf").write_text("")
    if not (data / "postgresql.conf").exists():  # Debian keeps it in /etc: the backup has none
        (data / "postgresql.conf").write_text("")
    if owner:
        done = run_bounded(["chown", "-R", f"{owner.pw_uid}:{owner.pw_gid}", str(place)], scratch)
        if done.returncode != 0:
            return Outcome(3, False, f"cannot hand the copy to {options.os_user}: {describe_failure(done)}"), None
    os.chmod(data, 0o700)
    os.chmod(place, 0o700)
    log = place / "server.log"
    argv = [pg_bin("postgres", _major(data)), "-D", str(data), "-p", str(port), "-k", str(sockets),
            "-c", f"data_directory={data}", "-c", "listen_addresses=", "-c", f"hba_file={place / 'hba.conf'}",
            "-c", f"ident_file={place / 'ident.conf'}", "-c", "ssl=off", "-c", "archive_mode=off",
            "-c", "restore_command=", "-c", "primary_conninfo=", "-c", "external_pid_file=",
            "-c", "logging_collector=off", "-c", "fsync=off", "-c", "shared_buffers=128MB", "-c", "huge_pages=off",
            "-c", "cluster_name=opsgate-scratch",
            # a copy of production must not act on the world: no logical replication workers
            # (a subscription would take over live's slot), no pg_cron jobs
            "-c", "max_logical_replication_workers=0", "-c", "cron.launch_active_jobs=off"]
    server = start_server(argv, scratch, what=f"scratch postgres on port {port}", output=log,
                          stop_signal=signal.SIGINT, grace=STOP_GRACE_S, owner=owner)  # SIGINT: fast shutdown
    target = PgTarget.parse(f"host={sockets} port={port} dbname={database} user={user}")
    details = {"format": "base", "port": port, "database": database, "socket_dir": str(sockets), "pid": server.pid}
    problem = _wait_ready(server, target, log, scratch)
    duration = time.monotonic() - started
    details["restore_s"] = round(duration, 3)
    if problem:
        return Outcome(3, False, problem, duration_s=duration, details=details), None
    with target.with_database("postgres").connect(scratch.remaining()) as conn:
        databases = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")]
    details["databases"] = databases
    if database not in databases:
        return Outcome(3, False, f"the scratch server started but has no database {database!r} "
                                 f"(it has {', '.join(databases)})", duration_s=duration, details=details), None
    return Outcome(3, True, f"a scratch server started from a copy of the base backup and finished recovery in "
                            f"{duration:.1f}s (port {port}, socket only): {counted(len(databases), 'database')}",
                   items=len(databases), items_total=len(databases), unit="databases", duration_s=duration,
                   details=details), target


def _traversable(folder: Path) -> None:
    """Let other users pass through (not list) ``folder`` and the enclosing scratch folders
    (a point's scratch sits inside its item's)."""
    for place in (folder, *folder.parents):
        if not place.name.startswith(PREFIX) or place.stat().st_uid != os.getuid():
            break
        os.chmod(place, 0o711)


def _wait_ready(server: subprocess.Popen, target: PgTarget, log: Path, scratch: Scratch) -> str | None:
    """None once the server answers a query; else why it will not."""
    while True:
        if server.poll() is not None:
            return f"the scratch server stopped during recovery (exit {server.returncode}): {log_tail(log)}"
        try:
            remaining = scratch.remaining()
        except TimeoutError as exc:
            return f"{exc}: the scratch server was still recovering ({log_tail(log)})"
        try:
            with target.with_database("postgres").connect(min(remaining, 5)) as conn:
                conn.execute("SELECT 1")
                return None
        except psycopg.OperationalError as exc:
            text = str(exc)
            if not any(mark in text for mark in _NOT_READY):
                return f"the scratch server does not accept {target.user}: {cause(exc)}"
        time.sleep(0.1)
