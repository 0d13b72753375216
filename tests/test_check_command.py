"""``command`` checks: a runbook's scripts, judged by exit code, output and JSON stdout.

Runbook steps protected here: "./run_tests.sh passes (9/9)", "health_check.py --json
reports overall_status healthy", and that a hung command never hangs the run.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from opsgate.model import CommandCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check


def check(tmp_path, **fields):
    fields.setdefault("name", "script")
    fields.setdefault("timeout", 10)
    return run_check(CommandCheck(**fields), ProbeContext(tmp_path))


@pytest.fixture
def run_tests_sh(tmp_path):
    """A ``run_tests.sh`` like Aura's: prints a tally and exits 1 when a test failed."""
    script = tmp_path / "run_tests.sh"
    script.write_text('#!/bin/sh\necho "running 9 tests"\necho "8/9 passed"\necho "FAILED test_upload" >&2\nexit 1\n')
    script.chmod(0o755)
    return script


def test_passing_tally_passes(tmp_path):
    """Runbook: ./run_tests.sh passes, 9/9."""
    result = check(tmp_path, shell="echo '9/9 passed'", stdout_regex=r"^9/9 passed$")
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["exit_code"] == 0
    assert result.evidence["details"]["stdout_tail"] == "9/9 passed\n"


@pytest.mark.negative("command")
def test_failing_test_script_fails_naming_exit_code_and_regex(tmp_path, run_tests_sh):
    """Runbook: 8/9 and exit 1 is a failure; the message says both and shows the output."""
    result = check(tmp_path, argv=["./run_tests.sh"], stdout_regex=r"^9/9 passed$")
    assert result.status == "fail"
    assert "exit code == 0: observed 1" in result.message
    assert "stdout matches /^9/9 passed$/: observed false" in result.message
    assert "FAILED test_upload" in result.message  # stderr tail explains it
    assert "8/9 passed" in result.evidence["details"]["stdout_tail"]


def test_accepted_exit_codes(tmp_path):
    """grep-style commands: exit 1 ("nothing found") can be the healthy answer."""
    assert check(tmp_path, shell="exit 1", exit_code=[0, 1]).status == "pass"
    result = check(tmp_path, shell="exit 2", exit_code=[0, 1])
    assert result.status == "fail"
    assert "exit code in [0, 1]: observed 2" in result.message


def test_stdout_not_regex_and_stderr_regex(tmp_path):
    result = check(tmp_path, shell="echo 'ok'; echo 'WARNING: deprecated' >&2",
                   stdout_not_regex="ERROR", stderr_regex="deprecated")
    assert result.status == "pass", result.message
    result = check(tmp_path, shell="echo 'ERROR: broken requirements'", stdout_not_regex="ERROR")
    assert result.status == "fail"
    assert "stdout has no /ERROR/" in result.message


def test_json_status_degraded_fails_naming_observed(tmp_path):
    """Runbook: health_check.py --json reports overall_status == healthy."""
    result = check(tmp_path, shell="""echo '{"overall_status": "degraded", "checks": {"memory_usage": 91}}'""",
                   expect=["overall_status == 'healthy'"])
    assert result.status == "fail"
    assert "overall_status == 'healthy'" in result.message
    assert "degraded" in result.message


def test_json_status_healthy_passes_and_warn_conditions_warn(tmp_path):
    shell = """echo '{"overall_status": "healthy", "checks": {"memory_usage": 91}}'"""
    result = check(tmp_path, shell=shell, expect=["overall_status == 'healthy'"])
    assert result.status == "pass", result.message
    result = check(tmp_path, shell=shell, expect=["overall_status == 'healthy'"], warn=["checks.memory_usage < 80"])
    assert result.status == "warn"
    assert "checks.memory_usage < 80: observed 91" in result.message


def test_non_json_stdout_with_conditions_fails_naming_not_json(tmp_path):
    result = check(tmp_path, shell="echo 'Traceback (most recent call last):'", expect=["overall_status == 'healthy'"])
    assert result.status == "fail"
    assert "not JSON" in result.message
    assert "Traceback" in result.message


@pytest.mark.timeout(15)
def test_hung_command_is_killed_at_the_timeout(tmp_path):
    """A script that hangs fails at its timeout and does not hold up the run."""
    started = time.monotonic()
    result = check(tmp_path, argv=["sleep", "30"], timeout=1)
    took = time.monotonic() - started
    assert result.status == "fail"
    assert "did not finish within 1s" in result.message
    assert took < 3, f"a 1 s timeout took {took:.1f} s"


@pytest.mark.timeout(15)
def test_hung_pipeline_child_is_killed_too(tmp_path):
    """A shell pipeline's children hold the output pipes; the timeout must end them all."""
    marker = tmp_path / "still-running"
    started = time.monotonic()
    result = check(tmp_path, shell=f"sleep 30 | cat; touch {marker}", timeout=1)
    took = time.monotonic() - started
    assert result.status == "fail"
    assert "did not finish" in result.message
    assert took < 3, f"a 1 s timeout took {took:.1f} s"
    time.sleep(0.2)
    assert not marker.exists()


def test_cwd_is_honoured_relative_to_base_dir(tmp_path):
    """Commands run where the runbook says (``cd /opt/aura && ./run_tests.sh``)."""
    (tmp_path / "app").mkdir()
    result = check(tmp_path, argv=["pwd"], cwd="app", stdout_regex=rf"^{tmp_path / 'app'}$")
    assert result.status == "pass", result.message
    result = check(tmp_path, argv=["pwd"], stdout_regex=rf"^{tmp_path}$")
    assert result.status == "pass", result.message


def test_missing_working_directory_is_named(tmp_path):
    """A missing cwd must not be reported as a missing program."""
    result = check(tmp_path, argv=["true"], cwd="releases/current")
    assert result.status == "fail"
    assert "cannot run" in result.message
    assert str(tmp_path / "releases" / "current") in result.message


def test_env_is_honoured_and_secret_values_stay_out_of_evidence(tmp_path):
    result = check(tmp_path, argv=[sys.executable, "-c", "import os; print(os.environ['APP_MODE'])"],
                   env={"APP_MODE": "drill"}, stdout_regex="^drill$")
    assert result.status == "pass", result.message
    result = check(tmp_path, shell='echo "token=$API_TOKEN"; exit 3', env={"API_TOKEN": "tok-12345"})
    assert result.status == "fail"
    assert "tok-12345" not in repr(result.to_json())


def test_missing_binary_fails_naming_cannot_run(tmp_path):
    result = check(tmp_path, argv=["/nonexistent/bin/health_check", "--json"])
    assert result.status == "fail"
    assert "cannot run" in result.message
    assert "/nonexistent/bin/health_check" in result.message


def test_a_failed_line_on_stdout_is_shown_even_when_stderr_is_not_empty(tmp_path):
    """Runbook: `sha256sum -c backups.sha256`. It reports the bad file on stdout and warns on
    stderr; the message keeps both, whole lines, not only stderr."""
    (tmp_path / "a.tar").write_bytes(b"good")
    (tmp_path / "b.tar").write_bytes(b"good")
    sums = subprocess.run(["sha256sum", "a.tar", "b.tar"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    (tmp_path / "backups.sha256").write_text(sums)
    (tmp_path / "b.tar").write_bytes(b"flipped")
    result = check(tmp_path, argv=["sha256sum", "-c", "backups.sha256"])
    assert result.status == "fail"
    assert "stdout: b.tar: FAILED" in result.message, result.message
    assert "stderr: sha256sum: WARNING: 1 computed checksum did NOT match" in result.message, result.message
