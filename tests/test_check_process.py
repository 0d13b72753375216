"""``process`` checks against real child processes: running, how many, how big, how busy.

Runbook steps protected here: "server.py is running", "exactly one worker", "the
server stays under 2 GB", "the server is not spinning the CPU".
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

import pytest

from opsgate.model import ProcessCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check


def check(tmp_path, **fields):
    fields.setdefault("name", "server")
    fields.setdefault("timeout", 5)
    return run_check(ProcessCheck(**fields), ProbeContext(tmp_path))


@pytest.fixture
def spawn():
    """Start real processes; every one is killed and reaped at teardown."""
    started: list[subprocess.Popen] = []

    def _spawn(*argv: str) -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        proc.kill()
    for proc in started:
        proc.wait(timeout=5)


@pytest.fixture
def unique_sleep():
    """A ``sleep`` duration no other process on the machine uses: ``30.<random digits>``."""
    seconds = f"30.{uuid.uuid4().int % 10**9:09d}"
    return seconds, r"^sleep " + re.escape(seconds) + "$"


def test_running_process_is_found_by_cmdline(tmp_path, spawn, unique_sleep):
    """Runbook: the server process is running."""
    seconds, pattern = unique_sleep
    proc = spawn("sleep", seconds)
    result = check(tmp_path, cmdline=pattern)
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["count"] == 1
    assert [p["pid"] for p in result.evidence["details"]["processes"]] == [proc.pid]


def test_process_found_by_exact_name_and_cmdline(tmp_path, spawn, unique_sleep):
    seconds, pattern = unique_sleep
    spawn("sleep", seconds)
    assert check(tmp_path, process_name="sleep", cmdline=pattern).status == "pass"
    result = check(tmp_path, process_name="dotnet", cmdline=pattern)
    assert result.status == "fail"
    assert "processes matching dotnet" in result.message and "observed 0" in result.message


def test_too_many_instances_fails_naming_the_count(tmp_path, spawn, unique_sleep):
    """Runbook: exactly one instance -- a second copy (a botched restart) is a failure."""
    seconds, pattern = unique_sleep
    spawn("sleep", seconds)
    spawn("sleep", seconds)
    result = check(tmp_path, cmdline=pattern, min_count=1, max_count=1)
    assert result.status == "fail"
    assert "count <= 1" in result.message and "observed 2" in result.message
    assert result.evidence["observed"]["count"] == 2


def test_too_few_instances_fails(tmp_path, spawn, unique_sleep):
    seconds, pattern = unique_sleep
    spawn("sleep", seconds)
    result = check(tmp_path, cmdline=pattern, min_count=2)
    assert result.status == "fail"
    assert "count >= 2" in result.message and "observed 1" in result.message


@pytest.mark.negative("process")
def test_process_not_running_fails_with_count_zero(tmp_path, unique_sleep):
    """Runbook: the server is running -- nothing matching is a failure, not a pass on nothing."""
    _, pattern = unique_sleep
    result = check(tmp_path, cmdline=pattern)
    assert result.status == "fail"
    assert "count >= 1" in result.message and "observed 0" in result.message
    assert result.evidence["observed"]["count"] == 0


def test_checker_does_not_count_itself(tmp_path):
    """A checker whose own command line holds the regex (``opsgate ... --cmdline X``) must
    not find itself: with no real match the check fails."""
    marker = f"opsgate-self-{uuid.uuid4().hex}"
    script = ("import sys, pathlib; from opsgate.model import ProcessCheck; from opsgate.probes import ProbeContext; "
              "from opsgate.runner import run_check; "
              "print(run_check(ProcessCheck(name='self', cmdline=sys.argv[1]), ProbeContext(pathlib.Path('.'))).status)")
    out = subprocess.run([sys.executable, "-c", script, marker], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "fail"


def test_memory_over_limit_fails_naming_max_rss_mb(tmp_path, spawn, unique_sleep):
    """Runbook: heap under the limit -- here a limit no process can meet."""
    seconds, pattern = unique_sleep
    spawn("sleep", seconds)
    result = check(tmp_path, cmdline=pattern, rss_mb={"critical": 0.001})
    assert result.status == "fail"
    assert "max_rss_mb < 0.001" in result.message
    assert result.evidence["observed"]["max_rss_mb"] > 0.001


def test_memory_over_warn_level_only_warns(tmp_path, spawn, unique_sleep):
    seconds, pattern = unique_sleep
    spawn("sleep", seconds)
    result = check(tmp_path, cmdline=pattern, rss_mb={"warn": 0.001, "critical": 100000})
    assert result.status == "warn"
    assert "max_rss_mb < 0.001" in result.message


def test_busy_process_fails_naming_max_cpu_percent(tmp_path, spawn):
    """Runbook: the server is not spinning -- a busy loop is over a 10 % CPU limit."""
    marker = f"busy-{uuid.uuid4().hex}"
    spawn(sys.executable, "-c", "while True: pass", marker)
    result = check(tmp_path, cmdline=re.escape(marker), cpu_percent={"critical": 10}, cpu_sample=0.5)
    assert result.status == "fail"
    assert "max_cpu_percent < 10" in result.message
    assert result.evidence["observed"]["max_cpu_percent"] > 10


def test_idle_process_passes_cpu_limit(tmp_path, spawn, unique_sleep):
    seconds, pattern = unique_sleep
    spawn("sleep", seconds)
    result = check(tmp_path, cmdline=pattern, cpu_percent={"critical": 10}, cpu_sample=0.3)
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["max_cpu_percent"] < 10
