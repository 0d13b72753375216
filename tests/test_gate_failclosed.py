"""A gate never passes on nothing: every untrustworthy input is ERROR (exit 2) with its reason.

Where the broken input comes from a real run (interrupted, collection error, stopped
early, deselected, nothing selected) pytest produces it; the rest are files damaged
after the fact.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from tests.gate_helpers import REPO, run_gate
from tests.support import reports as r
from tests.support.project import latest_report, make_project, start_pytest

POLICY = REPO / "config" / "gates.yaml"


def assert_error(run, reason: str) -> None:
    assert run.returncode == 2, run.output
    assert "verdict: ERROR (exit 2)" in run.stdout, run.output
    assert reason in run.stdout, run.output


# one P0 file check: the runs below break around it
ONE_CHECK = "name: mini\nfile:\n  - name: hostname\n    path: /etc/hostname\n    severity: P0\n"


def test_missing_report(tmp_path):
    assert_error(run_gate(tmp_path / "daily-latest.json"), "daily-latest.json: report not found")


def test_unparseable_json(tmp_path):
    path = tmp_path / "daily-latest.json"
    path.write_text("<html>502 Bad Gateway</html>")
    assert_error(run_gate(path), "not valid JSON")


def test_truncated_report(tmp_path):
    path = r.write(tmp_path, r.document([r.check("api-health")]))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert_error(run_gate(path), "not valid JSON")


def test_report_altered_after_it_was_written(tmp_path):
    path = r.write(tmp_path, r.document([r.check("api-health", "fail", "P0")]))
    path.write_text(path.read_text().replace('"status": "fail"', '"status": "pass"').replace('"failed"', '"passed"'))
    assert json.loads(path.read_text())  # still valid JSON ...
    assert_error(run_gate(path), "digest mismatch: the report was altered or corrupted after it was written")


def test_not_an_opsgate_report(tmp_path):
    """A real pytest-json-report file from a plain pytest run."""
    (tmp_path / "test_plain.py").write_text("def test_ok():\n    pass\n")
    out = tmp_path / "plain.json"
    subprocess.run([sys.executable, "-m", "pytest", "test_plain.py", "--json-report", f"--json-report-file={out}",
                    "-p", "no:cacheprovider", "-q"], cwd=tmp_path, check=True, capture_output=True)
    assert_error(run_gate(out), "not an opsgate report (no 'opsgate' metadata block")


def test_zero_checks_ran(run_suite):
    run = run_suite("-m", "P3", "--gate", "daily")  # the embedded environment has no P3 check
    assert run.returncode == 2, run.output
    assert "zero checks ran" in run.output
    gate = run_gate(run.reports / "daily-partial-latest.json", "--policy", POLICY, "--gate", "daily")
    assert_error(gate, "zero checks ran (0 in the report, none executed)")


def test_collection_error(tmp_path):
    project = make_project(tmp_path, ONE_CHECK, {"test_broken.py": "def test_x(:\n"})
    proc = start_pytest(project, "--gate", "daily")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    gate = run_gate(latest_report(project), "--policy", POLICY, "--gate", "daily")
    assert_error(gate, "collection error in checks/daily/test_broken.py")


def test_interrupted_session(tmp_path):
    started = tmp_path / "started"
    slow = (f"import pathlib, time\n\ndef test_slow_runbook_step():\n"
            f"    pathlib.Path({str(started)!r}).touch()\n    time.sleep(60)\n")
    project = make_project(tmp_path, ONE_CHECK, {"test_slow.py": slow})
    proc = start_pytest(project, "--gate", "daily")
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C or a CI cancel does
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "the session was interrupted" in out
    gate = run_gate(latest_report(project), "--policy", POLICY, "--gate", "daily")
    assert_error(gate, "the session was interrupted (pytest exit code 2): not every check ran")


def test_run_stopped_early(tmp_path):
    failing = "def test_a_failing_step():\n    assert False, 'broken'\n\ndef test_z_never_reached():\n    pass\n"
    project = make_project(tmp_path, "name: mini\n", {"test_a.py": failing})  # only these two hand-written checks
    proc = start_pytest(project, "-x")
    out, _ = proc.communicate(timeout=120)
    gate = run_gate(latest_report(project), "--policy", POLICY, "--gate", "daily")
    assert_error(gate, "the run stopped early (stopping after 1 failures; 1 of 2 selected checks did not run)")


def test_stale_report(tmp_path):
    path = r.write(tmp_path, r.document([r.check("api-health", severity="P0")], age=timedelta(hours=30)))
    assert run_gate(path, "--policy", POLICY, "--gate", "default").returncode == 0  # no max_age there
    assert_error(run_gate(path, "--policy", POLICY, "--gate", "daily"), "30.0h ago; the gate allows 26.0h")
    assert "report is stale: finished " in run_gate(path, "--policy", POLICY, "--gate", "daily").stdout


def test_required_check_absent(tmp_path):
    policy = tmp_path / "gates.yaml"
    policy.write_text("gates:\n  deploy:\n    require:\n      - id: 'test_http[api-*]'\n      - tag: database\n")
    path = r.write(tmp_path, r.document([r.check("web-health")]))
    run = run_gate(path, "--policy", policy, "--gate", "deploy")
    assert_error(run, "required check (id test_http[api-*]) is absent from every report")
    assert "required check (tag database) is absent from every report" in run.stdout


def test_required_check_skipped_or_blocked(tmp_path):
    policy = tmp_path / "gates.yaml"
    policy.write_text("gates:\n  deploy:\n    require:\n      - id: 'api-*'\n")
    path = r.write(tmp_path, r.document([r.check("db", "fail", "P3"),
                                         r.check("api-a", "skipped", message="skipped: maintenance"),
                                         r.check("api-b", "blocked", blocked_by=["db"])]))
    run = run_gate(path, "--policy", policy, "--gate", "deploy")
    assert_error(run, "required check test_http[api-a] (web@web-1) did not run: skipped: skipped: maintenance")
    assert "required check test_http[api-b] (web@web-1) did not run: blocked" in run.stdout


def test_required_check_deselected(run_suite, tmp_path):
    policy = tmp_path / "gates.yaml"
    policy.write_text("gates:\n  deploy:\n    require:\n      - id: 'test_http[demo-health]'\n")
    run = run_suite("-k", "not demo-health", "--policy", str(policy), "--gate", "deploy")
    assert run.returncode == 2, run.output
    assert "required check (id test_http[demo-health]) was deselected: checks/daily::test_http[demo-health]" \
        in run.output


def _mutate(doc: dict, how: str) -> dict:
    meta = doc["tests"][0]["metadata"]
    if how == "unknown severity":
        meta["opsgate"]["severity"] = "P4"
    elif how == "metadata not an object":
        meta["opsgate"] = "broken"
    elif how == "exit code not a number":
        doc["exitcode"] = [1]
    elif how == "duration not a number":
        meta["opsgate"]["duration_s"] = "abc"
    elif how == "tags not a list":
        meta["opsgate"]["tags"] = 5
    elif how == "unknown status":
        meta["opsgate"]["status"] = "fine"
    return doc


@pytest.mark.parametrize("how", ["unknown severity", "metadata not an object", "exit code not a number",
                                 "duration not a number", "tags not a list", "unknown status"])
def test_well_sealed_but_malformed_report_is_error_not_a_crash(tmp_path, how):
    """A report written by something else (or a future version) that seals but does not fit."""
    doc = _mutate(r.document([r.check("api-health", "fail", "P0"), r.check("db")]), how)
    run = run_gate(r.write(tmp_path, doc), "--policy", POLICY, "--gate", "daily")
    assert "Traceback" not in run.output
    assert_error(run, "daily-latest.json: ")
    nagios = run_gate(r.write(tmp_path, doc), "--nagios")
    assert nagios.returncode == 3 and nagios.stdout.startswith("OPSGATE UNKNOWN"), nagios.output


def test_pytest_gate_with_an_unknown_gate_is_error_exit_2_before_any_check(run_suite):
    run = run_suite("--gate", "no-such-gate")
    assert run.returncode == 2, run.output
    assert "expected a gate named 'no-such-gate'" in run.output and "verdict: ERROR (exit 2)" in run.output
    assert "passed" not in run.output.splitlines()[-1]


def test_report_that_cannot_be_written_is_error(run_suite, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    run = run_suite("--gate", "daily", "--reports-dir", str(blocker / "reports"))
    assert run.returncode == 2, run.output
    assert f"ERROR  the report could not be written to {blocker / 'reports'}" in run.output


def test_a_partial_run_does_not_replace_the_latest_report(run_suite):
    """A gate that reads daily-latest.json later must not pass on one file's worth of checks."""
    full = run_suite(env={"OPSGATE_DEMO_FAULT": "degraded"})
    assert full.returncode == 1, full.output
    # a file of the folder, or -k: configured checks are items of the folder itself, so -k picks one
    partial = run_suite("--gate", "daily", "-k", "demo-port")
    assert partial.returncode == 0, partial.output
    assert "partial run (" in partial.output and "deselected (-k/-m/--deselect)" in partial.output
    latest = run_gate(partial.reports / "daily-latest.json", "--policy", POLICY, "--gate", "daily")
    assert latest.returncode == 1 and "test_http[demo-health]" in latest.stdout  # still the full, failing run
    assert (partial.reports / "daily-partial-latest.json").is_file()


def test_collect_only_writes_no_report_and_decides_nothing(run_suite):
    run = run_suite("--collect-only", "--gate", "daily")
    assert run.returncode == 0, run.output
    assert not run.reports.exists() or not list(run.reports.iterdir())
    assert "verdict:" not in run.output
