"""``files`` backups: directory trees and tar archives (gzip, zstd, plain) read end to end
(L2), extracted safely into scratch (L3) and compared with the live tree (L4).

Runbook step protected here: "verify all critical files exist, copy the system and run its
tests in the copy" (weekly).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from support.backups import backup_check, flip_byte, live_tree, negative, scratch_home, tar_of  # noqa: F401 (fixture)

needs_zstd = pytest.mark.skipif(not shutil.which("zstd"), reason="zstd is not installed")


def verify(base, path, level=4, **files):
    files.setdefault("live", "live")
    return backup_check(base, source="files", path=path, level=level, files=files)


@pytest.mark.parametrize("name", ["app.tar.gz", "app.tar", pytest.param("app.tar.zst", marks=needs_zstd)])
def test_healthy_archive_passes_at_L4(tmp_path, name):
    live = live_tree(tmp_path)
    tar_of(live, tmp_path / "backups" / name, mode="w:gz" if name.endswith(".gz") else "w")
    result = verify(tmp_path, f"backups/{name}")
    assert result.status == "pass", result.message
    levels = result.evidence["observed"]["levels"]
    size = (tmp_path / "backups" / name).stat().st_size
    assert levels["L2"]["message"].startswith(f"read {size:,} of {size:,} bytes")
    assert "23 tar members" in levels["L2"]["message"]  # live, its two folders, 20 files
    assert levels["L3"]["message"].startswith("extracted 23 members (20 files")
    assert levels["L4"]["message"].startswith("checked 20 of 20 files")


def test_healthy_tree_passes_at_L4(tmp_path):
    live = live_tree(tmp_path)
    shutil.copytree(live, tmp_path / "backups" / "2026-11-30")
    result = verify(tmp_path, "backups/*")
    assert result.status == "pass", result.message
    assert "read 20 files" in result.evidence["observed"]["levels"]["L2"]["message"]


@negative
def test_a_byte_flipped_in_the_middle_of_a_tar_gz_fails_at_L2(tmp_path):
    live = live_tree(tmp_path, files=10, size=256 * 1024)
    backup = tar_of(live, tmp_path / "backups" / "app-2026-11-29.tar.gz")
    flip_byte(backup)
    result = verify(tmp_path, "backups/*.tar.gz")
    assert result.status == "fail"
    assert result.message.startswith("L2 integrity: app-2026-11-29.tar.gz: gzip stream corrupt"), result.message
    assert result.evidence["observed"]["level_reached"] == 1


@negative
def test_a_truncated_tar_gz_fails_at_L2(tmp_path):
    backup = tar_of(live_tree(tmp_path), tmp_path / "backups" / "app.tar.gz")
    backup.write_bytes(backup.read_bytes()[: backup.stat().st_size // 2])
    result = verify(tmp_path, "backups/*.tar.gz")
    assert result.status == "fail"
    assert "L2 integrity: app.tar.gz: gzip stream ends early at byte" in result.message


@negative
@needs_zstd
def test_a_corrupt_zstd_archive_fails_at_L2(tmp_path):
    backup = tar_of(live_tree(tmp_path, size=64 * 1024), tmp_path / "backups" / "app.tar.zst")
    flip_byte(backup)
    result = verify(tmp_path, "backups/*.tar.zst")
    assert result.status == "fail"
    assert result.message.startswith("L2 integrity: app.tar.zst: zstd stream corrupt: zstd exited 1"), result.message


@negative
@pytest.mark.parametrize("member, cause", [
    ("../escape.txt", "member '../escape.txt' has '..' in its path"),
    ("/etc/escape.txt", "member '/etc/escape.txt' has an absolute path"),
])
def test_an_archive_that_would_write_outside_scratch_is_refused_at_L3(tmp_path, member, cause):
    backup = evil_tar(tmp_path, (member, None))
    result = verify(tmp_path, "backups/*.tar", level=3, live=None)
    assert result.status == "fail"
    assert result.message == (f"L3 restore refused: {backup.name}: {cause}; nothing is written outside the "
                              "scratch directory")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "scratch" / "escape.txt").exists()


def test_links_leading_outside_are_left_out_and_nothing_is_written_through_them(tmp_path):
    backup = evil_tar(tmp_path, ("etc", "/etc"), ("up", "../../.."), ("etc/escape.txt", None),
                      ("inside", "ok.txt"))
    result = verify(tmp_path, "backups/*.tar", level=3, live=None)
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["levels"]["L3"]["message"] == (
        "extracted 5 members (2 files, 5 B) to scratch; 2 links leading outside the restored tree not created")
    assert not Path("/etc/escape.txt").exists() and backup.exists()


def evil_tar(tmp_path: Path, *members: tuple[str, str | None]) -> Path:
    """backups/evil.tar: ok.txt, then each (name, link target or None for a file)."""
    backup = tmp_path / "backups" / "evil.tar"
    backup.parent.mkdir(exist_ok=True)
    with tarfile.open(backup, "w") as tar:
        info = tarfile.TarInfo("ok.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
        for name, target in members:
            info = tarfile.TarInfo(name)
            if target is None:
                info.size = 3
                tar.addfile(info, io.BytesIO(b"bad"))
            else:
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
    return backup


@negative
def test_a_restore_that_differs_from_live_fails_at_L4_naming_the_files(tmp_path):
    live = live_tree(tmp_path)
    tar_of(live, tmp_path / "backups" / "app.tar.gz")
    (live / "data" / "f000.bin").write_bytes(b"changed since the backup")
    (live / "data" / "new.bin").write_bytes(b"new")
    result = verify(tmp_path, "backups/*.tar.gz")
    assert result.status == "fail"
    assert result.message.startswith("L4 compare: 2 of 21 files differ from the live tree (tolerance 0%): "
                                     "data/new.bin: missing in the backup; data/f000.bin: size"), result.message
    # within a stated tolerance it passes, and says how many differed
    loose = verify(tmp_path, "backups/*.tar.gz", max_differences_percent=10)
    assert loose.status == "pass", loose.message
    assert "2 differ, within 10%" in loose.evidence["observed"]["checked"]


def test_a_random_sample_is_stated_with_its_seed(tmp_path):
    tar_of(live_tree(tmp_path), tmp_path / "backups" / "app.tar.gz")
    result = verify(tmp_path, "backups/*.tar.gz", sample=5, seed=42)
    assert result.status == "pass", result.message
    assert "counts of all 20 files; sizes and sha256 of a random sample of 5 (seed 42)" in \
        result.evidence["observed"]["checked"]


@negative
@needs_zstd
def test_a_hanging_decompressor_is_ended_at_the_timeout(tmp_path, monkeypatch):
    """A zstd that never answers (a stalled mount) must not hold the check past its timeout."""
    tar_of(live_tree(tmp_path, files=2), tmp_path / "backups" / "app.tar.zst")
    shim = tmp_path / "bin" / "zstd"
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\nexec sleep 300 # {tmp_path}\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}:{os.environ['PATH']}")
    result = backup_check(tmp_path, source="files", path="backups/*.tar.zst", level=2, timeout="3s")
    assert result.status == "fail"
    assert result.message.startswith("L2 integrity: verification took longer than its timeout"), result.message
    assert result.duration_s < 30
