"""``file`` checks: critical files present, fresh, plausibly sized, not world-writable.

Runbook steps protected here: "critical files present", "the nightly dump is less
than a day old and not empty", "config is not writable by everyone", "the
maintenance flag is gone".
"""

from __future__ import annotations

import os
import time

import pytest

from opsgate.model import FileCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check


def check(tmp_path, **fields):
    fields.setdefault("name", "dump")
    return run_check(FileCheck(**fields), ProbeContext(tmp_path))


def make(tmp_path, name="backup.sql", size=2048, age_s=0.0, mode=0o640):
    path = tmp_path / name
    path.write_bytes(b"x" * size)
    path.chmod(mode)
    if age_s:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
    return path


def test_fresh_file_passes(tmp_path):
    """Runbook: last night's dump exists, is under a day old and not empty."""
    make(tmp_path)
    result = check(tmp_path, path="backup.sql", max_age="1d", min_size="1KB", max_size="1MB")
    assert result.status == "pass", result.message
    observed = result.evidence["observed"]
    assert observed["exists"] is True and observed["size_bytes"] == 2048 and observed["age_s"] < 60


@pytest.mark.negative("file")
def test_missing_file_fails_naming_does_not_exist(tmp_path):
    result = check(tmp_path, path="backup.sql")
    assert result.status == "fail"
    assert "does not exist" in result.message
    assert str(tmp_path / "backup.sql") in result.message


def test_absent_file_passes_when_absence_is_expected(tmp_path):
    """Runbook: the maintenance flag has been removed."""
    result = check(tmp_path, path="MAINTENANCE", exists=False)
    assert result.status == "pass", result.message


def test_present_file_fails_when_absence_is_expected(tmp_path):
    make(tmp_path, "MAINTENANCE", size=0)
    result = check(tmp_path, path="MAINTENANCE", exists=False)
    assert result.status == "fail"
    assert "MAINTENANCE is absent: observed true" in result.message


def test_stale_file_fails_naming_age(tmp_path):
    """Runbook: the dump is less than an hour old -- a two-day-old one means the job stopped."""
    make(tmp_path, age_s=2 * 86400)
    result = check(tmp_path, path="backup.sql", max_age="1h")
    assert result.status == "fail"
    assert "age_s <= 3600" in result.message
    assert result.evidence["observed"]["age_s"] >= 2 * 86400 - 5


def test_file_past_warn_age_only_warns(tmp_path):
    make(tmp_path, age_s=2 * 3600)
    result = check(tmp_path, path="backup.sql", max_age="1d", warn_age="1h")
    assert result.status == "warn"
    assert "age_s <= 3600" in result.message


def test_too_small_file_fails(tmp_path):
    """An empty dump is not a backup."""
    make(tmp_path, size=0)
    result = check(tmp_path, path="backup.sql", min_size="1KB")
    assert result.status == "fail"
    assert "size_bytes >= 1000" in result.message and "observed 0" in result.message


def test_too_large_file_fails(tmp_path):
    make(tmp_path, size=5000)
    result = check(tmp_path, path="backup.sql", max_size=4096)
    assert result.status == "fail"
    assert "size_bytes <= 4096" in result.message and "observed 5000" in result.message


def test_world_writable_file_fails(tmp_path):
    """Runbook: config files are not writable by everyone."""
    path = make(tmp_path, "config.yaml")
    os.chmod(path, 0o666)
    result = check(tmp_path, path="config.yaml")
    assert result.status == "fail"
    assert "world-writable" in result.message
    assert result.evidence["observed"]["mode"] == "0o666"


def test_group_writable_file_is_not_world_writable(tmp_path):
    make(tmp_path, "config.yaml", mode=0o664)
    result = check(tmp_path, path="config.yaml")
    assert result.status == "pass", result.message


def test_world_writable_file_allowed_when_configured(tmp_path):
    path = make(tmp_path, "shared.sock")
    os.chmod(path, 0o666)
    assert check(tmp_path, path="shared.sock", allow_world_writable=True).status == "pass"


def test_a_stale_file_is_named_in_the_message(tmp_path):
    """Operator's side: one line says which file is stale, not just `age_s <= 3600: observed 7200`."""
    make(tmp_path, "db.dump", size=10, age_s=7200)
    result = check(tmp_path, path="db.dump", max_age="1h")
    assert result.message.startswith("db.dump: age_s <= 3600.0: observed 72"), result.message
