"""The demo's data: a small SQLite database the service writes to, so the embedded default's
weekly run has real data to back up and verify (``backup: demo-data``).

``data/app.sqlite`` holds ``models`` (what /api/models lists, seeded once) and
``samples`` (the metrics sample written every second). Each write is its own short
transaction, so SQLite's online backup API always copies a consistent database.

>>> import tempfile
>>> data = DemoData(Path(tempfile.mkdtemp(prefix="opsgate-scratch-doc-")))
>>> data.record({"ts": "2026-12-01T00:00:00+00:00", "cpu_percent": 1.5})
>>> data.counts()
{'models': 3, 'samples': 1}
>>> import shutil; data.close(); shutil.rmtree(data.path.parent.parent)
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

MODELS = ("llama3:8b", "mistral:7b", "nomic-embed-text")


class DemoData:
    """The demo's SQLite database under ``root/data/app.sqlite``."""

    def __init__(self, root: Path) -> None:
        self.path = root / "data" / "app.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
        with self._lock, self._conn:
            self._conn.execute("CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, added TEXT)")
            self._conn.execute("CREATE TABLE IF NOT EXISTS samples (id INTEGER PRIMARY KEY, ts TEXT, data TEXT)")
            self._conn.executemany("INSERT OR IGNORE INTO models VALUES (?, datetime('now'))",
                                   [(m,) for m in MODELS])

    def record(self, sample: dict) -> None:
        """Store one metrics sample (a failure to write is not the service's failure)."""
        try:
            with self._lock, self._conn:
                self._conn.execute("INSERT INTO samples (ts, data) VALUES (?, ?)",
                                   (sample.get("ts"), json.dumps(sample)))
        except sqlite3.Error:
            pass

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {t: self._conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("models", "samples")}

    def close(self) -> None:
        with self._lock:
            self._conn.close()
