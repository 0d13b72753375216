"""Real backup sets for the ``backup`` kind's tests: a live tree and tar archives of it, SQLite
databases, restic repositories; and a way to corrupt them as real failures do."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from opsgate.backups.points import sha256_file
from opsgate.model import KINDS
from opsgate.probes import ProbeContext
from opsgate.runner import run_check

DAY = 86400.0


#: marks a test that breaks a backup in one way and expects the failure to name it
negative = pytest.mark.negative("backup")


@pytest.fixture(autouse=True)
def scratch_home(tmp_path, monkeypatch):
    """Every scratch place of a test goes under tmp_path/scratch, so that leftovers are seen:
    a test fails when its verifications left one behind. (Imported by the backup tests.)"""
    home = tmp_path / "scratch"
    home.mkdir()
    monkeypatch.setenv("OPSGATE_SCRATCH_DIR", str(home))
    yield home
    assert scratch_leftovers(home) == [], "a verification left its scratch place behind"


def backup_check(base: Path, **fields):
    """Run a ``backup`` item (fields as in the environment file) against ``base``."""
    fields.setdefault("name", "set")
    return run_check(KINDS["backup"].model_validate(fields), ProbeContext(base))


def live_tree(base: Path, files: int = 20, size: int = 4096) -> Path:
    """base/live with ``files`` files of pseudo-random bytes in two folders."""
    live = base / "live"
    for i in range(files):
        path = live / ("docs" if i % 2 else "data") / f"f{i:03}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return live


def tar_of(live: Path, dest: Path, mode: str = "w:gz", age_s: float = 0.0) -> Path:
    """A tar of the live tree (arcname: its folder's name), aged by mtime."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.suffix == ".zst":
        plain = dest.with_suffix("")
        with tarfile.open(plain, "w") as tar:
            tar.add(live, arcname=live.name)
        subprocess.run(["zstd", "-q", "--rm", "-f", str(plain), "-o", str(dest)], check=True, timeout=60)
    else:
        with tarfile.open(dest, mode) as tar:
            tar.add(live, arcname=live.name)
    age(dest, age_s)
    return dest


def age(path: Path, age_s: float) -> Path:
    if age_s:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
    return path


def flip_byte(path: Path, offset: int | None = None) -> int:
    """Flip one bit of the byte at ``offset`` (default: the middle); returns the offset."""
    offset = path.stat().st_size // 2 if offset is None else offset
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))
    return offset


def manifest(folder: Path, *paths: Path, wrong: Path | None = None) -> Path:
    """``sha256sum`` output for ``paths`` in folder/SHA256SUMS; ``wrong`` gets a wrong hash."""
    lines = []
    for path in paths:
        digest = sha256_file(path)[0]
        if path == wrong:
            digest = digest[:-1] + ("0" if digest[-1] != "0" else "1")
        lines.append(f"{digest}  {os.path.relpath(path, folder)}\n")
    out = folder / "SHA256SUMS"
    out.write_text("".join(lines))
    return out


def sqlite_db(path: Path, rows: int = 1000) -> Path:
    """A database with ``orders`` (``rows`` rows) and ``customers`` (100 rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, total REAL)")
        conn.executemany("INSERT INTO customers VALUES (?, ?)", [(i, f"c{i}") for i in range(100)])
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(i, i % 100, i * 1.5) for i in range(rows)])
    conn.close()
    return path


def scratch_leftovers(folder: Path) -> list[str]:
    """opsgate scratch places left in ``folder``."""
    return sorted(p.name for p in folder.glob("opsgate-scratch-*")) if folder.exists() else []
