"""The ``backup`` kind's framework: finding recovery points (L0), freshness, size, drop and
retention (L1), manifests (L2), the older point, the evidence, taking a backup, and scratch
places that are removed however a verification ends - SIGINT and SIGTERM to a real pytest
run in the middle of a restore included.

Runbook steps protected here: "verify all critical files exist" and "the nightly backup is
less than a day old and not empty" (weekly), "restore from the last verified backup".
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from opsgate.backups.base import Scratch, run_bounded
from opsgate.cli import main as opsgate_main
from opsgate.model import KINDS
from support.backups import (DAY, age, backup_check, live_tree, manifest, negative, scratch_home,  # noqa: F401
                             scratch_leftovers, tar_of)
from support.project import start_pytest


def dated_set(base: Path, days: list[int]) -> list[Path]:
    """Backups app-YYYY-MM-DD.tar.gz of the live tree, ``days`` ago each (name and mtime)."""
    live = base / "live" if (base / "live").exists() else live_tree(base)
    out = []
    for ago in days:
        when = time.time() - ago * DAY
        name = time.strftime("app-%Y-%m-%d.tar.gz", time.localtime(when))
        out.append(tar_of(live, base / "backups" / name, age_s=ago * DAY))
    return out


def test_healthy_set_passes_at_L4_and_says_what_was_checked(tmp_path):
    backups = dated_set(tmp_path, [2, 1, 0])
    manifest(tmp_path / "backups", *backups)
    result = backup_check(tmp_path, source="files", path="backups/app-*.tar.gz", name_time="%Y-%m-%d",
                          rpo="2d", manifest="backups/SHA256SUMS", level=4, max_drop_percent=20,
                          retention={"keep_at_least": 3, "max_age": "7d"}, files={"live": "live"})
    assert result.status == "pass", result.message
    seen = result.evidence["observed"]
    assert seen["level_reached"] == 4 and seen["level_asked"] == 4
    assert seen["recovery_point"].endswith(backups[-1].name)
    assert 0 <= seen["recovery_point_age_s"] < 2 * DAY and seen["rto_s"] >= 0
    assert seen["items_verified"] == seen["items_total"] == 20 and seen["items_unit"] == "files"
    assert seen["bytes_verified"] > 20 * 4096
    assert "checked 20 of 20 files" in seen["checked"] and "L4 reached (asked L4)" in seen["checked"]
    assert "3 of 3 manifest hashes match" not in seen["levels"]["L2"]["message"]  # only the newest's line
    assert "1 of 1 manifest hashes match" in seen["levels"]["L2"]["message"]
    older = seen["older"]
    assert len(older) == 1 and older[0]["ok"] and older[0]["level_reached"] == 3
    assert older[0]["recovery_point"] in {str(b) for b in backups[:-1]}


@negative
def test_no_backups_fails_at_L0(tmp_path):
    (tmp_path / "backups").mkdir()
    result = backup_check(tmp_path, source="files", path="backups/*.tar.gz", level=2)
    assert result.status == "fail"
    assert result.message.startswith("L0 exists: no backup found (backups/*.tar.gz)")
    assert result.evidence["observed"]["level_reached"] == -1


@negative
def test_backups_without_the_time_their_name_should_carry_are_not_backups(tmp_path):
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "app-latest.tar.gz").write_bytes(b"x" * 100)
    result = backup_check(tmp_path, source="files", path="backups/*.tar.gz", name_time="%Y-%m-%d", level=1)
    assert result.status == "fail"
    assert result.message == ("L0 exists: no backup found (backups/*.tar.gz); 1 file(s) match the glob but none "
                              "has a %Y-%m-%d time in its name")


@negative
def test_stale_backup_fails_naming_its_age_and_the_rpo(tmp_path):
    dated_set(tmp_path, [9])
    result = backup_check(tmp_path, source="files", path="backups/*.tar.gz", name_time="%Y-%m-%d", rpo="1d",
                          level=2)
    assert result.status == "fail"
    assert "L1 fresh: the newest backup app-" in result.message
    assert "old, above the RPO of 1d" in result.message
    assert result.evidence["observed"]["level_reached"] == 0


@negative
def test_zero_byte_backup_fails_on_its_size(tmp_path):
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "db.dump").write_bytes(b"")
    result = backup_check(tmp_path, source="files", path="backups/*.dump", level=2)
    assert result.status == "fail"
    assert result.message == "L1 size: db.dump is 0 B, below the minimum of 1 B"


@negative
def test_a_backup_that_shrank_beyond_max_drop_fails(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    (folder / "a-1.tar").write_bytes(b"x" * 100_000)
    age(folder / "a-1.tar", DAY)
    (folder / "a-2.tar").write_bytes(b"x" * 10_000)
    result = backup_check(tmp_path, source="files", path="backups/*.tar", level=1, max_drop_percent=50)
    assert result.status == "fail"
    assert result.message == ("L1 size: a-2.tar is 10,000 B, 90% less than the previous backup a-1.tar "
                              "(97.7 KiB); at most 50% drop allowed")


@negative
@pytest.mark.parametrize("retention, cause", [
    ({"keep_at_least": 3}, "L1 retention: 2 backup(s) kept, at least 3 expected"),
    ({"max_age": "7d"}, "older than the retention period of 7d"),
])
def test_retention_too_few_or_too_old_fails(tmp_path, retention, cause):
    dated_set(tmp_path, [10, 0])
    result = backup_check(tmp_path, source="files", path="backups/*.tar.gz", name_time="%Y-%m-%d", level=1,
                          retention=retention)
    assert result.status == "fail"
    assert cause in result.message


@negative
def test_a_manifest_line_with_a_wrong_hash_fails_though_the_file_is_intact(tmp_path):
    (backup,) = dated_set(tmp_path, [0])
    manifest(tmp_path / "backups", backup, wrong=backup)
    result = backup_check(tmp_path, source="files", path="backups/*.tar.gz", manifest="backups/SHA256SUMS",
                          level=3)
    assert result.status == "fail"
    assert result.message.startswith(f"L2 manifest: {backup}: sha256 ")
    assert "but the manifest says" in result.message
    assert result.evidence["observed"]["level_reached"] == 1
    # the same archive without the manifest is fine: the hash was the only thing wrong
    assert backup_check(tmp_path, source="files", path="backups/*.tar.gz", level=3).status == "pass"


@negative
def test_a_manifest_that_does_not_list_the_newest_backup_fails(tmp_path):
    old, new = dated_set(tmp_path, [1, 0])
    manifest(tmp_path / "backups", old)
    result = backup_check(tmp_path, source="files", path="backups/*.tar.gz", manifest="backups/SHA256SUMS",
                          level=2)
    assert result.status == "fail"
    assert result.message == f"L2 manifest: {tmp_path / 'backups' / 'SHA256SUMS'} has no line for {new.name}"


@negative
def test_rot_in_an_older_backup_is_found(tmp_path):
    old, new = dated_set(tmp_path, [1, 0])
    old.write_bytes(old.read_bytes()[: old.stat().st_size // 2])  # the old one lost its second half
    age(old, DAY)
    result = backup_check(tmp_path, source="files", path="backups/*.tar.gz", level=3)
    assert result.status == "fail"
    assert result.message.startswith(f"older recovery point {old}: L2 integrity: {old.name}: gzip stream ends early")
    assert result.evidence["observed"]["level_reached"] == 3  # the newest is fine


def test_time_is_read_from_the_name_not_the_mtime(tmp_path):
    (backup,) = dated_set(tmp_path, [3])
    os.utime(backup)  # touched now: the name still says three days ago
    result = backup_check(tmp_path, source="files", path="backups/*.tar.gz", name_time="%Y-%m-%d", rpo="1d",
                          level=1)
    assert result.status == "fail" and "above the RPO of 1d" in result.message
    assert backup_check(tmp_path, source="files", path="backups/*.tar.gz", rpo="1d", level=1).status == "pass"


def test_opsgate_backup_takes_a_backup_with_its_manifest_line(tmp_path, monkeypatch, capsys):
    live_tree(tmp_path, files=3)
    (tmp_path / "env.yaml").write_text(textwrap.dedent("""\
        name: t
        backup:
          - name: app
            source: files
            path: backups/app-*.tar.gz
            manifest: backups/SHA256SUMS
            level: 4
            files: {live: live, name: "app-%Y%m%dT%H%M%S.tar.gz"}
        """))
    monkeypatch.chdir(tmp_path)
    assert opsgate_main(["backup", "app", "--env", "env.yaml"]) == 0
    out = capsys.readouterr().out
    made = list((tmp_path / "backups").glob("app-*.tar.gz"))
    assert len(made) == 1 and str(made[0]) in out and "sha256 line added to backups/SHA256SUMS" in out
    assert made[0].name in (tmp_path / "backups" / "SHA256SUMS").read_text()
    result = backup_check(tmp_path, source="files", path="backups/app-*.tar.gz", manifest="backups/SHA256SUMS",
                          level=4, files={"live": "live"})
    assert result.status == "pass", result.message
    assert opsgate_main(["backup", "nope", "--env", "env.yaml"]) == 1
    assert "no backup item named 'nope'" in capsys.readouterr().err


@negative
def test_take_first_without_its_live_data_fails_naming_it(tmp_path):
    result = backup_check(tmp_path, source="files", path="backups/*.tar.gz", take_first=True, level=2,
                          files={"live": "gone"})
    assert result.status == "fail"
    assert result.message == (f"take_first: no backup could be taken: FileNotFoundError: the live tree "
                              f"{tmp_path / 'gone'} is not a folder")


def test_level_4_without_live_data_is_a_load_error():
    with pytest.raises(ValueError, match="level 4 compares with the live data: set files.live"):
        KINDS["backup"].model_validate({"name": "x", "source": "files", "path": "b/*.tar", "level": 4})
    with pytest.raises(ValueError, match="sqlite: settings given, but this item's source is files"):
        KINDS["backup"].model_validate({"name": "x", "source": "files", "path": "b/*.tar", "sqlite": {}})


def test_scratch_cleanups_run_last_first_even_after_an_exception(scratch_home):
    ran = []
    with pytest.raises(RuntimeError):
        with Scratch(timeout=5) as scratch:
            scratch.on_cleanup(lambda: ran.append("first"), "first")
            scratch.on_cleanup(lambda: ran.append("second"), "second")
            assert stat.S_IMODE(scratch.dir.stat().st_mode) == 0o700
            raise RuntimeError("boom")
    assert ran == ["second", "first"] and not scratch.dir.exists()


def test_a_second_close_returns_only_when_the_first_is_done(scratch_home):
    """A SIGTERM handler closing a scratch a probe thread is already closing must not let the
    process die before the removal is done."""
    import threading

    scratch = Scratch(timeout=10)
    scratch.on_cleanup(lambda: time.sleep(0.5), "a slow cleanup")
    first = threading.Thread(target=scratch.close)
    first.start()
    time.sleep(0.1)
    assert scratch.close() == [] and not scratch.dir.exists()
    first.join(timeout=10)


def test_a_scratch_left_by_a_killed_process_is_removed_by_the_next_one(scratch_home):
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=10)
    orphan = scratch_home / f"opsgate-scratch-{dead.pid}-app-abcd1234"
    (orphan / "restore").mkdir(parents=True)
    with Scratch(timeout=5):
        pass
    assert not orphan.exists()


def test_run_bounded_ends_the_whole_group_at_the_deadline(scratch_home, tmp_path):
    marker = f"opsgate-test-{tmp_path.name}"
    with Scratch(timeout=1) as scratch:
        with pytest.raises(TimeoutError, match="sh did not finish"):
            run_bounded(["sh", "-c", f"sleep 30 & sleep 30; echo {marker}"], scratch)
    time.sleep(0.2)
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]


def test_run_bounded_never_returns_a_password_it_was_given(scratch_home):
    with Scratch(timeout=5) as scratch:
        done = run_bounded(["sh", "-c", 'echo "using $RESTIC_PASSWORD" >&2; exit 1'], scratch,
                           env={"RESTIC_PASSWORD": "pw-never-shown-42"})
    assert "pw-never-shown-42" not in done.stderr and "***" in done.stderr


# ---- an interrupted restore leaves nothing behind ---------------------------------------------

SLOW_ZSTD = """#!/bin/sh
# zstd through a slow pipe (a slow disk): restores take seconds, not milliseconds
/usr/bin/zstd "$@" | "{python}" -c 'import sys, time
while True:
    data = sys.stdin.buffer.read(65536)
    if not data:
        break
    sys.stdout.buffer.write(data); sys.stdout.buffer.flush(); time.sleep(0.1)' {marker}
"""


@negative
@pytest.mark.skipif(not Path("/usr/bin/zstd").exists(), reason="zstd is not installed")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_restore_leaves_no_scratch_and_no_process(tmp_path, scratch_home, sig):
    project = tmp_path / "proj"
    (project / "checks" / "weekly").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    live = live_tree(project, files=40, size=64 * 1024)  # 2.5 MiB: ~4 s through the slow pipe
    tar_of(live, project / "backups" / "app.tar.zst")
    marker = f"opsgate-slow-{tmp_path.name}"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "zstd").write_text(SLOW_ZSTD.format(python=sys.executable, marker=marker))
    (bin_dir / "zstd").chmod(0o755)
    (project / "env.yaml").write_text(textwrap.dedent("""\
        name: t
        backup:
          - name: app
            source: files
            path: backups/*.tar.zst
            level: 3
            timeout: 2m
        """))
    proc = start_pytest(project, suite="checks/weekly",
                        env={"OPSGATE_SCRATCH_DIR": str(scratch_home), "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    try:
        deadline = time.monotonic() + 90
        while not list(scratch_home.glob("opsgate-scratch-*/opsgate-scratch-*/restore/live")):
            assert proc.poll() is None, f"the run ended before its restore began:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "the restore never began"
            time.sleep(0.05)
        assert _ours(marker), "the slow zstd is not running: not in the middle of the restore"
        marker_archive = str(project / "backups")
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode != 0, output
    assert scratch_leftovers(scratch_home) == [], output
    time.sleep(0.3)
    assert _ours(marker) + _ours(marker_archive) == [], "a process of the interrupted restore is still running"


def _ours(marker: str) -> list[int]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(p.info["cmdline"] or []):
                out.append(p.pid)
        except psutil.Error:
            pass
    return out
