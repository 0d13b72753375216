"""``restic`` backups: snapshots as recovery points, ``restic check --read-data`` (L2),
``restic restore --verify`` into scratch (L3), the restored tree against live (L4); the
password read from a named variable and never shown.

Runbook step protected here: weekly backup verification of teams that back up with restic.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.backups import backup_check, flip_byte, live_tree, negative, scratch_home  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(not shutil.which("restic"), reason="restic is not installed")
PASSWORD = "restic-test-pw-31337"


@pytest.fixture(autouse=True)
def password(monkeypatch):
    """The password in the variable the items name; none in restic's usual one."""
    monkeypatch.setenv("OPSGATE_TEST_RESTIC_PW", PASSWORD)
    monkeypatch.delenv("RESTIC_PASSWORD", raising=False)


def restic(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD}
    return subprocess.run(["restic", "-r", str(repo), "--no-cache", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=True)


@pytest.fixture
def repo(tmp_path):
    """A repository with two snapshots of tmp_path/live."""
    live = live_tree(tmp_path, files=20, size=32 * 1024)
    repository = tmp_path / "repo"
    restic(repository, "init")
    restic(repository, "backup", str(live))
    (live / "data" / "f000.bin").write_bytes(os.urandom(32 * 1024))
    restic(repository, "backup", str(live))
    return repository


def verify(base, level=4, **options):
    options = {"repository": "repo", "live": "live", "password_env": "OPSGATE_TEST_RESTIC_PW", **options}
    return backup_check(base, source="restic", level=level, rpo="1h", restic=options)


def test_healthy_repository_passes_at_L4(tmp_path, repo):
    result = verify(tmp_path)
    assert result.status == "pass", result.message
    seen = result.evidence["observed"]
    assert seen["points"] == 2 and seen["level_reached"] == 4
    assert seen["levels"]["L2"]["message"] == "restic check --read-data: no errors (all pack files read)"
    assert seen["levels"]["L3"]["message"].startswith(f"restored snapshot {seen['recovery_point']} to scratch")
    assert "checked 20 of 20 files" in seen["checked"]
    older = seen["older"]
    assert len(older) == 1 and older[0]["ok"] and older[0]["level_reached"] == 3
    assert PASSWORD not in repr(result.evidence)


def test_a_stated_subset_is_read_and_said(tmp_path, repo):
    result = verify(tmp_path, level=2, read_data_subset="50%")
    assert result.status == "pass", result.message
    assert "--read-data-subset=50%" in result.evidence["observed"]["levels"]["L2"]["message"]
    assert "a subset of the pack files read (50%)" in result.evidence["observed"]["levels"]["L2"]["message"]


@negative
def test_a_corrupt_pack_fails_at_L2(tmp_path, repo):
    packs = sorted((repo / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    pack = packs[-1]  # the largest: file data, not only a tree
    pack.chmod(0o600)
    flip_byte(pack)
    result = verify(tmp_path)
    assert result.status == "fail"
    assert result.message.startswith("L2 integrity: restic check --read-data of "), result.message
    assert "Pack ID does not match" in result.message and "Fatal: repository contains errors" in result.message


@negative
def test_a_wrong_password_fails_without_showing_any_password(tmp_path, repo, monkeypatch):
    monkeypatch.setenv("OPSGATE_TEST_RESTIC_PW", "not-the-password-99")
    result = verify(tmp_path)
    assert result.status == "fail"
    assert result.message.startswith("L0 exists: cannot list the backups: cannot list the snapshots of "), \
        result.message
    assert "wrong password or no key found" in result.message
    assert "not-the-password-99" not in repr(result.evidence) + result.message


@negative
def test_a_repository_without_snapshots_fails_at_L0(tmp_path):
    restic(tmp_path / "repo", "init")
    live_tree(tmp_path, files=2)
    result = verify(tmp_path)
    assert result.status == "fail"
    assert result.message.startswith("L0 exists: no backup found")


def test_take_first_backs_up_live_then_verifies(tmp_path):
    restic(tmp_path / "repo", "init")
    live_tree(tmp_path, files=3)
    result = backup_check(
        tmp_path, source="restic", level=4, take_first=True,
        restic={"repository": "repo", "live": "live", "password_env": "OPSGATE_TEST_RESTIC_PW"})
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["points"] == 1


def test_opsgate_backup_takes_a_restic_snapshot(tmp_path, monkeypatch, capsys):
    from opsgate.cli import main as opsgate_main

    restic(tmp_path / "repo", "init")
    live_tree(tmp_path, files=3)
    (tmp_path / "env.yaml").write_text(
        "name: t\nbackup:\n  - name: files\n    source: restic\n    level: 4\n"
        "    restic: {repository: repo, live: live, password_env: OPSGATE_TEST_RESTIC_PW}\n")
    monkeypatch.chdir(tmp_path)
    assert opsgate_main(["backup", "files", "--env", "env.yaml"]) == 0
    out = capsys.readouterr().out
    (snapshot,) = json.loads(restic(tmp_path / "repo", "snapshots", "--json").stdout)
    assert f"snapshot {snapshot['short_id']}" in out and PASSWORD not in out
