"""Waiting and watching: ``retry`` (wait until healthy), ``window`` (stay healthy), and
the Engine that runs many checks at once and honours ``depends_on``.

Runbook steps protected here: "after the restore, wait until /health is healthy",
"after a fix, check every 60 s for 10 minutes" (here shrunk to a second), and
"don't report 40 failures when the database is down -- report the one cause".
"""

from __future__ import annotations

import threading
import time

import pytest

from opsgate.engine import Engine
from opsgate.model import CommandCheck, FileCheck, HttpCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check
from tests.support.http_target import HttpTarget


@pytest.fixture
def later():
    """Run an action on a timer thread; pending timers are cancelled at teardown."""
    timers: list[threading.Timer] = []

    def _later(delay: float, action) -> None:
        timer = threading.Timer(delay, action)
        timers.append(timer)
        timer.start()

    yield _later
    for timer in timers:
        timer.cancel()
        timer.join(timeout=5)


@pytest.mark.timeout(20)
def test_retry_passes_once_the_target_becomes_healthy(tmp_path, later):
    """Runbook: after starting the restored service, wait until it is healthy."""
    ready = tmp_path / "ready"
    later(1.0, ready.touch)
    started = time.monotonic()
    result = run_check(FileCheck(name="ready", path="ready", retry={"timeout": 5, "interval": 0.2}), ProbeContext(tmp_path))
    took = time.monotonic() - started
    assert result.status == "pass", result.message
    assert result.attempts > 1
    assert result.evidence["retry"]["attempts"] == result.attempts
    assert 0.9 <= took < 4, f"passed after {took:.1f} s; the file appeared at 1 s"


@pytest.mark.timeout(20)
def test_retry_gives_up_at_the_timeout_naming_not_healthy_within(tmp_path):
    started = time.monotonic()
    result = run_check(FileCheck(name="ready", path="ready", retry={"timeout": 1.5, "interval": 0.2}),
                       ProbeContext(tmp_path))
    took = time.monotonic() - started
    assert result.status == "fail"
    assert "not healthy within 1.5s" in result.message
    assert "does not exist" in result.message  # the last attempt's cause
    assert result.attempts >= 5
    assert 1.2 <= took < 3, f"gave up after {took:.1f} s for a 1.5 s timeout"


@pytest.mark.timeout(20)
def test_window_passes_when_every_sample_holds(tmp_path):
    """Runbook: after a fix, stay healthy for the whole window -- every sample is evidence."""
    (tmp_path / "server.pid").write_text("4242\n")
    started = time.monotonic()
    result = run_check(FileCheck(name="pid", path="server.pid", window={"duration": 1, "interval": 0.25}),
                       ProbeContext(tmp_path))
    took = time.monotonic() - started
    assert result.status == "pass", result.message
    samples = result.evidence["samples"]
    assert len(samples) == 5
    assert all(s["status"] == "pass" for s in samples)
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    assert result.attempts == 5
    assert 0.9 <= took < 3


@pytest.mark.timeout(20)
def test_window_fails_at_the_first_unstable_sample(tmp_path, later):
    """A target that breaks mid-window fails, naming the sample and its cause."""
    pid = tmp_path / "server.pid"
    pid.write_text("4242\n")
    later(0.6, pid.unlink)
    result = run_check(FileCheck(name="pid", path="server.pid", window={"duration": 2, "interval": 0.25}),
                       ProbeContext(tmp_path))
    assert result.status == "fail"
    assert "unstable" in result.message
    samples = result.evidence["samples"]
    assert f"sample {len(samples)}/9" in result.message
    assert "does not exist" in result.message
    assert samples[-1]["status"] == "fail"
    assert all(s["status"] == "pass" for s in samples[:-1])
    assert 2 <= len(samples) < 9  # ended early: the window was 9 samples long


FAILS_ON_4TH_CALL = 'n=$(cat calls 2>/dev/null || echo 0); n=$((n+1)); echo $n > calls; test $n -lt 4'


@pytest.mark.timeout(15)
def test_window_sample_count_matches_the_message(tmp_path):
    """0.3 s every 0.1 s is 4 samples (t=0, .1, .2, .3); a failing 4th sample is "4/4", not "4/3"."""
    result = run_check(CommandCheck(name="flaky", shell=FAILS_ON_4TH_CALL, window={"duration": 0.3, "interval": 0.1}),
                       ProbeContext(tmp_path))
    assert result.status == "fail"
    assert "unstable: sample 4/4" in result.message
    assert "exit code == 0: observed 1" in result.message
    assert [s["status"] for s in result.evidence["samples"]] == ["pass", "pass", "pass", "fail"]


@pytest.mark.timeout(15)
def test_window_sample_count_for_intervals_that_do_not_divide_exactly(tmp_path):
    (tmp_path / "f").write_text("x")
    for duration, interval, samples in ((0.3, 0.1, 4), (0.7, 0.1, 8), (0.5, 0.2, 3)):
        result = run_check(FileCheck(name="f", path="f", window={"duration": duration, "interval": interval}),
                           ProbeContext(tmp_path))
        assert result.status == "pass", result.message
        assert len(result.evidence["samples"]) == samples, (duration, interval)


@pytest.mark.parametrize("key", ["window", "retry"])
def test_zero_interval_is_refused_at_load_rather_than_spinning(key):
    """A window or retry that samples every 0 s would spin: the environment is rejected."""
    settings = {"duration": 0.5, "interval": 0} if key == "window" else {"timeout": 1, "interval": 0}
    with pytest.raises(ValueError, match="expected an interval above 0, seen 0"):
        FileCheck(name="f", path="f", **{key: settings})


def test_window_is_not_started_when_the_first_sample_fails(tmp_path):
    result = run_check(FileCheck(name="pid", path="server.pid", window={"duration": 1, "interval": 0.25}),
                       ProbeContext(tmp_path))
    assert result.status == "fail"
    assert "samples" not in result.evidence


@pytest.mark.timeout(20)
def test_engine_runs_checks_concurrently(tmp_path):
    """20 slow endpoints at once take about one endpoint's time, not twenty."""
    with HttpTarget() as target:
        items = [HttpCheck(name=f"api-{i}", url=f"{target.url}/slow/300", timeout=10) for i in range(20)]
        engine = Engine(items, ProbeContext(tmp_path), concurrency=20)
        started = time.monotonic()
        engine.start()
        try:
            results = [engine.result(i.name, timeout=15) for i in items]
        finally:
            engine.shutdown()
        took = time.monotonic() - started
    assert [r.status for r in results] == ["pass"] * 20
    assert took < 3, f"20 x 300 ms checks took {took:.1f} s with concurrency 20"


def test_dependents_of_a_failed_check_are_blocked_naming_it(tmp_path):
    """Runbook: when the database is down, report that -- not every check that needs it."""
    (tmp_path / "app.conf").write_text("ok\n")
    items = [
        FileCheck(name="database", path="db.sock"),                                   # fails
        FileCheck(name="api", path="app.conf", depends_on=["database"]),              # blocked
        FileCheck(name="chat", path="app.conf", depends_on=["api"]),                  # blocked, transitively
        FileCheck(name="config", path="app.conf"),                                    # passes
        FileCheck(name="config-fresh", path="app.conf", depends_on=["config"]),       # runs
    ]
    engine = Engine(items, ProbeContext(tmp_path), concurrency=4)
    engine.start()
    try:
        results = {i.name: engine.result(i.name, timeout=10) for i in items}
    finally:
        engine.shutdown()
    assert results["database"].status == "fail"
    assert results["api"].status == "blocked"
    assert "blocked by database" in results["api"].message
    assert results["api"].blocked_by == ["database"]
    assert results["chat"].status == "blocked"
    assert "blocked by api" in results["chat"].message
    assert results["config"].status == "pass"
    assert results["config-fresh"].status == "pass"
