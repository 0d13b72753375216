"""The run's JSON report: pytest-json-report's document plus opsgate's metadata, redacted,
written atomically as ``<cadence>-<UTC timestamp>.json`` and ``<cadence>-latest.json`` in
its environment's folder (:func:`report_folder`: ``reports/<environment>/``), so runs of
two environments never replace each other's ``-latest``. Timestamped reports beyond the
last N of an environment and cadence are deleted (:func:`prune_reports`).

The file is sealed: its last key, ``opsgate_digest``, is either

- ``sha256:<hex>``, the plain SHA-256 of everything before it. It shows that a report
  was truncated or corrupted after it was written; it does NOT stop anyone who can write
  the file, since anyone can recompute it over an edited report; or
- ``hmac-sha256:<hex>``, keyed with a secret (``OPSGATE_SEAL_KEY_FILE`` or
  ``OPSGATE_SEAL_KEY`` for the run, ``seal_key`` or ``--seal-key-file`` for the gate): only
  a holder of the key can produce it, so an edited report is detected.

Before its first check a run replaces ``-latest`` with a sealed "started" marker
(:func:`write_marker`); its final report replaces the marker. A run killed in between
leaves the marker, which a gate reads as ERROR, never yesterday's verdict.

>>> import tempfile, pathlib, json
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> path = write_report({"opsgate": {}}, d, "daily", 0.0)
>>> path.name, json.loads((d / "daily-latest.json").read_text())["opsgate"]
('daily-19700101T000000Z.json', {})
>>> unseal((d / "daily-latest.json").read_bytes())
'ok'
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import re
import socket
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from . import __version__


class ReportError(RuntimeError):
    """The report could not be built or written; the message is one line, the reason."""


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and rename: readers never see half a report."""
    tmp = _temp_file(path.parent, path.name, text.encode("utf-8"))
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _temp_file(folder: Path, name: str, data: bytes) -> str:
    """A fully written, fsynced temp file in ``folder``; its path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    try:
        # mkstemp makes 0600; a report is read by other users (a Nagios/NRPE gate), so honour the umask
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def stamp(epoch: float) -> str:
    """``20261122T164800Z`` for an epoch time."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y%m%dT%H%M%SZ")


_SEAL = ',\n "opsgate_digest": "'


def _digest(key: bytes | None, *parts: bytes | memoryview) -> str:
    algo = hmac.new(key, digestmod=hashlib.sha256) if key else hashlib.sha256()
    for part in parts:
        algo.update(part)
    return algo.hexdigest()


def seal(body: str, key: bytes | None = None) -> str:
    """Append the digest of ``body`` (a JSON object as text) as its last key: plain SHA-256,
    or HMAC-SHA256 when a ``key`` is given.

    >>> seal('{"a": 1}')[:36]
    '{"a": 1,\\n "opsgate_digest": "sha256:'
    >>> seal('{"a": 1}', key=b"k")[:41]
    '{"a": 1,\\n "opsgate_digest": "hmac-sha256:'
    """
    body = body.rstrip()
    scheme = "hmac-sha256" if key else "sha256"
    return f'{body[:-1].rstrip()}{_SEAL}{scheme}:{_digest(key, body.encode("utf-8"))}"\n}}'


def unseal(data: bytes, key: bytes | None = None) -> str:
    """Check a sealed report's bytes: ``"ok"``, or the reason it is not intact. The sealed
    text is itself the JSON document (with ``opsgate_digest`` as its last key). With a
    ``key``, only a report signed with that key is ``"ok"``.

    >>> unseal(seal('{"a": 1}').encode())
    'ok'
    >>> unseal(seal('{"a": 1}').encode()[:-3])
    'truncated: it does not end with its digest'
    >>> unseal(seal('{"a": 1}', b"k").encode(), b"k"), unseal(seal('{"a": 1}').encode(), b"k")[:35]
    ('ok', 'not signed: the gate has a seal key')
    """
    view = memoryview(data)  # hash slices of a large report without copying them
    at = data.rfind(_SEAL.encode())
    if at < 0:
        return "no opsgate_digest: not written by opsgate, or cut short before its last key"
    scheme, _, tail = data[at + len(_SEAL):].partition(b":")
    if scheme not in (b"sha256", b"hmac-sha256") or not tail.endswith(b'"\n}') or len(tail) != 64 + 3:
        return "truncated: it does not end with its digest"
    if key and scheme != b"hmac-sha256":
        return ("not signed: the gate has a seal key but the report carries only a plain sha256 digest, "
                "which anyone can recompute after editing it")
    if not key and scheme == b"hmac-sha256":
        return "signed with a seal key (hmac-sha256) but the gate has none to check it: give the gate the key"
    # seal() dropped the body's closing brace and the whitespace before it; a body written
    # with indent=1 ends in "\n}", a compact one in "}".
    for closing in (b"\n}", b"}"):
        if hmac.compare_digest(_digest(key, view[:at], closing).encode(), tail[:64]):
            return "ok"
    if key:
        return "signature mismatch: the report was altered after it was written, or signed with another key"
    return "digest mismatch: the report was altered or corrupted after it was written"


def seal_key_from_environment(environ: dict[str, str] | None = None) -> bytes | None:
    """The run's seal key: the file named by ``OPSGATE_SEAL_KEY_FILE``, else ``OPSGATE_SEAL_KEY``,
    else None (plain SHA-256). The key is never printed; ReportError names only its source.

    >>> seal_key_from_environment({"OPSGATE_SEAL_KEY": "s3cret"})
    b's3cret'
    """
    environ = os.environ if environ is None else environ
    if environ.get("OPSGATE_SEAL_KEY_FILE"):
        return read_key_file(environ["OPSGATE_SEAL_KEY_FILE"], "OPSGATE_SEAL_KEY_FILE")
    value = environ.get("OPSGATE_SEAL_KEY")
    if value is not None:
        if not value.strip():
            raise ReportError("OPSGATE_SEAL_KEY is set but empty: expected a secret key")
        return value.strip().encode("utf-8")
    return None


def read_key_file(path: str | os.PathLike, source: str) -> bytes:
    """A key file's bytes, trailing whitespace (a final newline) removed.

    >>> read_key_file("/nonexistent/key", "--seal-key-file")
    Traceback (most recent call last):
    ...
    opsgate.report.ReportError: --seal-key-file: cannot read the seal key file /nonexistent/key: No such file or directory
    """
    try:
        with open(path, "rb") as handle:
            key = handle.read(64 * 1024 + 1)
    except OSError as exc:
        raise ReportError(f"{source}: cannot read the seal key file {path}: {exc.strerror or exc}") from None
    key = key.strip()
    if not key or len(key) > 64 * 1024:
        raise ReportError(f"{source}: the seal key file {path} is empty or larger than 64 KiB")
    return key


def render(report: dict[str, Any], key: bytes | None = None) -> bytes:
    """The sealed report's bytes; ReportError (one line) when it cannot be serialised."""
    try:
        # orjson: NaN/Infinity (a NaN metric sample) become null, so every reader can parse it;
        # anything without a JSON form is written as its str()
        body = orjson.dumps(report, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, ValueError, RecursionError) as exc:  # orjson.JSONEncodeError is a TypeError
        raise ReportError(f"the report could not be built: {str(exc)[:200]}") from None
    return seal(body, key).encode("utf-8")


def _link_unique(tmp: str, folder: Path, cadence: str, started: float) -> Path:
    """Give the written temp file its timestamped name without ever replacing another run's
    report: a hard link (or O_EXCL create) fails if the name exists, then the next is tried."""
    for counter in range(1, 10_000):
        path = folder / f"{cadence}-{stamp(started)}{f'-{counter}' if counter > 1 else ''}.json"
        try:
            os.link(tmp, path)
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
        try:  # a filesystem without hard links: create exclusively, then copy the bytes in
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(Path(tmp).read_bytes())
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path
    raise ReportError(f"{folder}: 10,000 reports named {cadence}-{stamp(started)}*.json already exist")


def write_report(report: dict[str, Any], folder: Path, cadence: str, started: float, latest: str = "latest",
                 key: bytes | None = None) -> Path:
    """Write the timestamped report and replace ``<cadence>-<latest>.json`` (a partial run
    passes ``partial-latest``, so ``-latest`` always stands for a whole cadence); return the
    timestamped path. ReportError (one line) when it cannot be built; OSError when it
    cannot be written. Concurrent runs never overwrite each other's timestamped report."""
    data = render(report, key)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = _temp_file(folder, f"{cadence}-{stamp(started)}.json", data)
    try:
        path = _link_unique(tmp, folder, cadence, started)
    finally:
        Path(tmp).unlink(missing_ok=True)
    # its own file, not a second link to the timestamped one: -latest may later be overwritten
    # in place (write_marker on a read-only folder) and the history must not change with it
    latest_tmp = _temp_file(folder, f"{cadence}-{latest}.json", data)
    try:
        os.replace(latest_tmp, folder / f"{cadence}-{latest}.json")
    except BaseException:
        Path(latest_tmp).unlink(missing_ok=True)
        raise
    return path


def marker(environment: str, cadence: str, started: float) -> dict[str, Any]:
    """The document a run leaves in ``-latest`` until its report replaces it.

    >>> marker("web", "daily", 0.0)["opsgate"]["state"]
    'started'
    """
    return {"opsgate": {"format": 1, "state": "started", "version": __version__, "environment": environment,
                        "cadence": cadence, "host": socket.gethostname(), "pid": os.getpid(),
                        "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds")},
            "tests": []}


def write_marker(folder: Path, cadence: str, latest: str, environment: str, started: float,
                 key: bytes | None = None) -> Path:
    """Replace ``<cadence>-<latest>.json`` with a sealed "run started" marker (atomically, and
    fsynced, so it survives SIGKILL of this process); return its path.

    >>> import tempfile, pathlib
    >>> p = write_marker(pathlib.Path(tempfile.mkdtemp()), "daily", "latest", "web", 0.0)
    >>> p.name, unseal(p.read_bytes())
    ('daily-latest.json', 'ok')
    """
    path = folder / f"{cadence}-{latest}.json"
    data = render(marker(environment, cadence, started), key)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = _temp_file(folder, path.name, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        # A folder we cannot add files to (read-only, immutable, full) may still hold a writable
        # previous -latest: overwrite it in place, so it cannot stand as this run's verdict.
        # Truncating first frees its space; if the write still fails, an empty file is an ERROR too.
        if not _overwrite_in_place(path, data):
            raise
    return path


def _overwrite_in_place(path: Path, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError:
        return False  # no previous report to neutralise, or it cannot be opened
    try:
        os.write(fd, data)
        os.fsync(fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def report_folder(root: Path, environment: str) -> Path:
    """Where an environment's reports go: ``<root>/<environment>``, the name made safe as one
    path component (anything but letters, digits, ``_.-`` becomes ``_``); the folders opsgate
    keeps beside them (``drills``: the DR drill records) are never an environment's.

    >>> report_folder(Path("reports"), "default"), report_folder(Path("reports"), "../prod eu")
    (PosixPath('reports/default'), PosixPath('reports/.._prod_eu'))
    >>> report_folder(Path("reports"), "drills")
    PosixPath('reports/_drills')
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", environment) or "_"
    return root / ("_" + safe if safe in (".", "..", *RESERVED) else safe)


#: folders under the reports root that hold no environment's reports
RESERVED = ("drills", "incidents")


_TIMESTAMPED = re.compile(r"^(?P<cadence>.+)-(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?\.json$")


def prune_reports(folder: Path, cadence: str, keep: int, protect: Path | None = None,
                  before: float | None = None) -> list[Path]:
    """Delete the timestamped reports of ``cadence`` in ``folder`` beyond the newest ``keep``
    (0 keeps all); return what was deleted. ``-latest`` files, ``protect`` (the run's own
    report) and any file modified at or after ``before`` (the run's start: a concurrent run's
    report) are never deleted. A file that vanished meanwhile (another run pruned it) is fine.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for t in (1.0, 2.0, 3.0):
    ...     _ = write_report({"opsgate": {}}, d, "daily", t * 86400)
    >>> [p.name for p in prune_reports(d, "daily", 2)], sorted(p.name for p in d.iterdir())
    (['daily-19700102T000000Z.json'], ['daily-19700103T000000Z.json', 'daily-19700104T000000Z.json', 'daily-latest.json'])
    """
    if keep <= 0:
        return []
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        match = _TIMESTAMPED.match(entry.name)
        if match and match["cadence"] == cadence and entry.is_file(follow_symlinks=False):
            found.append(((match["stamp"], int(match["n"] or 1)), Path(entry.path)))
    found.sort(reverse=True)
    deleted = []
    for _, path in found[keep:]:
        if protect is not None and path == protect:
            continue
        try:
            if before is not None and path.stat().st_mtime >= before:
                continue
            path.unlink()
        except OSError:  # gone already (another run pruned it), or not ours to delete: keep going
            continue
        deleted.append(path)
    return deleted
