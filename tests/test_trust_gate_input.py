"""The gate reads its inputs and writes its outputs in bounded time and memory (issue 8 §4):
a report path that is a device, a FIFO or too big is ERROR (Nagios UNKNOWN), and an
output file that cannot be written is ERROR with its reason."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest

from tests.gate_helpers import REPO, GateRun, run_gate
from tests.support import reports as r

ADDRESS_SPACE = 2 * 2**30  # the gate runs under this cap here: old code read /dev/zero until killed


def gate_capped(*args, timeout: float = 30) -> tuple[GateRun, float]:
    """``opsgate gate`` with its memory capped (so a regression cannot eat the shared machine)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "GITHUB_"))}

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "opsgate.cli", "gate", *map(str, args), "--no-color"], cwd=REPO,
                          env=environ, capture_output=True, text=True, timeout=timeout, preexec_fn=cap)
    return GateRun(proc.returncode, proc.stdout, proc.stderr), time.monotonic() - started


@pytest.mark.parametrize("nagios", [False, True], ids=["terminal", "nagios"])
def test_dev_zero_is_refused_not_read(nagios):
    run, took = gate_capped("/dev/zero", *(["--nagios"] if nagios else []))
    if nagios:
        assert run.returncode == 3 and run.stdout.startswith("OPSGATE UNKNOWN"), run.output
    else:
        assert run.returncode == 2 and "verdict: ERROR (exit 2)" in run.stdout, run.output
    assert "/dev/zero: not a regular file (a character device)" in run.stdout, run.output
    assert took < 15


def test_a_fifo_nobody_writes_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "daily-latest.json"
    os.mkfifo(fifo)
    run, took = gate_capped(fifo, "--nagios")
    assert run.returncode == 3, run.output
    assert "not a regular file (a FIFO)" in run.stdout
    assert took < 15


def test_a_report_bigger_than_the_limit_is_refused_unread(tmp_path):
    big = tmp_path / "daily-latest.json"
    with big.open("wb") as handle:  # sparse: 600 MB on paper, nothing on disk
        handle.truncate(600 * 2**20)
    run, took = gate_capped(big)
    assert run.returncode == 2, run.output
    assert "629,145,600 bytes, larger than the gate's limit of 536,870,912 (--max-report-size); not read" in run.stdout
    assert took < 15
    # the limit is configurable: a normal report over a small limit is refused, under it read
    report = r.write(tmp_path, r.document([r.check("api")]), "small.json")
    assert gate_capped(report, "--max-report-size", "1KB")[0].returncode == 2
    assert gate_capped(report, "--max-report-size", "1MB")[0].returncode == 0
    bad = gate_capped(report, "--max-report-size", "lots")[0]
    assert bad.returncode == 2 and "--max-report-size: expected a size like 512, 10MB or 1GiB, seen 'lots'" in bad.stderr


@pytest.mark.parametrize("option", ["--junit", "--markdown", "--prometheus"])
def test_an_output_that_cannot_be_written_is_error_with_its_reason(tmp_path, option):
    report = r.write(tmp_path, r.document([r.check("api")]))  # a passing report
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "out.txt"  # under a regular file: ENOTDIR, even for root
    run = run_gate(report, option, target)
    assert run.returncode == 2, run.output
    assert f"ERROR  {option} {target}: cannot be written: Not a directory" in run.stdout, run.output
    assert "verdict: ERROR (exit 2)" in run.stdout
    nagios = run_gate(report, option, tmp_path / "missing-dir" / "out.txt", "--nagios")
    assert nagios.returncode == 3 and nagios.stdout.startswith("OPSGATE UNKNOWN"), nagios.output
    assert "No such file or directory" in nagios.stdout


def test_the_outputs_that_were_written_say_error_too(tmp_path):
    """--junit could be written, --prometheus not: the JUnit file must not claim a pass."""
    report = r.write(tmp_path, r.document([r.check("api")]))
    junit = tmp_path / "junit.xml"
    run = run_gate(report, "--junit", junit, "--prometheus", tmp_path / "no-such-dir" / "opsgate.prom")
    assert run.returncode == 2, run.output
    assert "cannot be written" in junit.read_text()
