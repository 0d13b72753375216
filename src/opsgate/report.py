"""The run's JSON report: pytest-json-report's document plus opsgate's metadata, redacted,
written atomically as ``<cadence>-<UTC timestamp>.json`` and ``<cadence>-latest.json``.

The file is sealed: its last key, ``opsgate_digest``, is the SHA-256 of everything before
it, so a gate can tell a report that was truncated or altered after it was written from
one that is merely valid JSON.

>>> import tempfile, pathlib, json
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> path = write_report({"opsgate": {}}, d, "daily", 0.0)
>>> path.name, json.loads((d / "daily-latest.json").read_text())["opsgate"]
('daily-19700101T000000Z.json', {})
>>> unseal((d / "daily-latest.json").read_bytes())
'ok'
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and rename: readers never see half a report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp makes 0600; a report is read by other users (a Nagios/NRPE gate), so honour the umask
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stamp(epoch: float) -> str:
    """``20261122T164800Z`` for an epoch time."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y%m%dT%H%M%SZ")


_SEAL = ',\n "opsgate_digest": "sha256:'


def seal(body: str) -> str:
    """Append the digest of ``body`` (a JSON object as text) as its last key.

    >>> seal('{"a": 1}')[:36]
    '{"a": 1,\\n "opsgate_digest": "sha256:'
    """
    body = body.rstrip()
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return f'{body[:-1].rstrip()}{_SEAL}{digest}"\n}}'


def unseal(data: bytes) -> str:
    """Check a sealed report's bytes: ``"ok"``, or the reason it is not intact. The sealed
    text is itself the JSON document (with ``opsgate_digest`` as its last key).

    >>> unseal(seal('{"a": 1}').encode())
    'ok'
    >>> unseal(seal('{"a": 1}').encode()[:-3])
    'truncated: it does not end with its digest'
    """
    view = memoryview(data)  # hash slices of a large report without copying them
    at = data.rfind(_SEAL.encode())
    if at < 0:
        return "no opsgate_digest: not written by opsgate, or cut short before its last key"
    tail = data[at + len(_SEAL):]
    if not tail.endswith(b'"\n}') or len(tail) != 64 + 3:
        return "truncated: it does not end with its digest"
    # seal() dropped the body's closing brace and the whitespace before it; a body written
    # with indent=1 ends in "\n}", a compact one in "}".
    for closing in (b"\n}", b"}"):
        digest = hashlib.sha256(view[:at])
        digest.update(closing)
        if digest.hexdigest().encode() == tail[:64]:
            return "ok"
    return "digest mismatch: the report was altered or corrupted after it was written"


def write_report(report: dict[str, Any], folder: Path, cadence: str, started: float, latest: str = "latest") -> Path:
    """Write the timestamped report and replace ``<cadence>-<latest>.json`` (a partial run
    passes ``partial-latest``, so ``-latest`` always stands for a whole cadence); return the
    timestamped path."""
    folder.mkdir(parents=True, exist_ok=True)
    # orjson: NaN/Infinity (a NaN metric sample) become null, so every reader can parse it;
    # anything without a JSON form is written as its str()
    text = seal(orjson.dumps(report, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
    path = folder / f"{cadence}-{stamp(started)}.json"
    counter = 1
    while path.exists():  # two runs in one second keep both reports
        counter += 1
        path = folder / f"{cadence}-{stamp(started)}-{counter}.json"
    atomic_write(path, text)
    atomic_write(folder / f"{cadence}-{latest}.json", text)
    return path
