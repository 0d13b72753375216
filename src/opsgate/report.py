"""The run's JSON report: pytest-json-report's document plus opsgate's metadata, redacted,
written atomically as ``<cadence>-<UTC timestamp>.json`` and ``<cadence>-latest.json``.

>>> import tempfile, pathlib, json
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> path = write_report({"opsgate": {}}, d, "daily", 0.0)
>>> path.name, json.loads((d / "daily-latest.json").read_text())
('daily-19700101T000000Z.json', {'opsgate': {}})
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and rename: readers never see half a report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
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


def write_report(report: dict[str, Any], folder: Path, cadence: str, started: float) -> Path:
    """Write the timestamped report and replace the ``-latest`` one; return the timestamped path."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, default=str)
    path = folder / f"{cadence}-{stamp(started)}.json"
    counter = 1
    while path.exists():  # two runs in one second keep both reports
        counter += 1
        path = folder / f"{cadence}-{stamp(started)}-{counter}.json"
    _atomic_write(path, text)
    _atomic_write(folder / f"{cadence}-latest.json", text)
    return path
