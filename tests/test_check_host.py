"""``host`` checks on this machine: CPU, memory, load and disk, each against its limit.

Runbook steps protected here: "CPU < 80 %", "memory < 80 %", "disk > 20 % free".
The machine's real readings are unknown in advance, so limits are chosen that any
machine meets (generous) or none can meet (tiny); what is asserted is that the
verdict follows the limit and the message names the metric that crossed it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from opsgate.model import HostCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check


def check(tmp_path, **fields):
    fields.setdefault("name", "local")
    fields.setdefault("cpu_sample", 0.2)
    return run_check(HostCheck(**fields), ProbeContext(tmp_path))


@pytest.fixture
def busy_cpu():
    """One spinning process, so the CPU reading is certainly above zero."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield
    proc.kill()
    proc.wait(timeout=5)


def test_generous_limits_pass(tmp_path):
    """Runbook: CPU, memory, load and disk within limits."""
    result = check(tmp_path, cpu_percent=100.1, memory_percent=100.1, load_per_core=10000,
                   disks=[{"path": "/", "used_percent": 100.1, "inodes_percent": 100.1}])
    assert result.status == "pass", result.message
    observed = result.evidence["observed"]
    assert 0 <= observed["memory_percent"] <= 100
    assert 0 <= observed["disks"]["/"]["used_percent"] <= 100
    assert observed["disks"]["/"]["free_gb"] > 0


def test_memory_over_critical_fails_naming_memory_percent(tmp_path):
    result = check(tmp_path, memory_percent=0.0001)
    assert result.status == "fail"
    assert "memory_percent < 0.0001" in result.message
    assert result.evidence["observed"]["memory_percent"] > 0.0001


def test_cpu_over_critical_fails_naming_cpu_percent(tmp_path, busy_cpu):
    result = check(tmp_path, cpu_percent={"critical": 0.0001}, cpu_sample=0.3)
    assert result.status == "fail"
    assert "cpu_percent < 0.0001" in result.message


@pytest.mark.negative("host")
def test_disk_over_critical_fails_naming_the_disk_path(tmp_path):
    """Runbook: disk > 20 % free -- the message names which mount is full."""
    result = check(tmp_path, disks=[{"path": "/", "used_percent": 0.01}])
    assert result.status == "fail"
    assert 'disks."/".used_percent < 0.01' in result.message


def test_second_disk_named_when_only_it_is_over(tmp_path):
    result = check(tmp_path, disks=[{"path": "/", "used_percent": 100.1},
                                    {"path": str(tmp_path), "used_percent": 0.01}])
    assert result.status == "fail"
    assert f'disks."{tmp_path}".used_percent' in result.message
    assert 'disks."/"' not in result.message


def test_warn_level_only_warns(tmp_path):
    """Memory over the warning level but under the critical one is a warning."""
    result = check(tmp_path, memory_percent={"warn": 0.0001, "critical": 100.1})
    assert result.status == "warn"
    assert "memory_percent < 0.0001" in result.message


def test_inode_warn_level_only_warns(tmp_path):
    result = check(tmp_path, disks=[{"path": "/", "inodes_percent": {"warn": 0.000001}}])
    assert result.status == "warn"
    assert 'disks."/".inodes_percent' in result.message


def test_disk_on_missing_path_fails_naming_the_path(tmp_path):
    """A mount point that is gone is a failure naming it, not a crash."""
    missing = tmp_path / "no-such-mount"
    result = check(tmp_path, disks=[{"path": str(missing), "used_percent": 90}])
    assert result.status == "fail"
    assert str(missing) in result.message
    assert "cannot read disk usage" in result.message


def test_relative_disk_path_resolves_against_base_dir(tmp_path):
    (tmp_path / "data").mkdir()
    result = check(tmp_path, disks=[{"path": "data", "used_percent": 100.1}])
    assert result.status == "pass", result.message
    result = check(tmp_path, disks=[{"path": "missing-data", "used_percent": 100.1}])
    assert result.status == "fail"
    assert str(tmp_path / "missing-data") in result.message
