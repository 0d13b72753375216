"""The run and its report (issue 8 §1): a killed, concurrent or unwritable run, a report
that cannot be serialised, an edited report and a foreign demo never end in a false PASS.

Every run here is a real ``pytest checks/daily`` process in a throwaway project.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from opsgate.report import unseal
from tests.gate_helpers import run_gate
from tests.support import reports as r
from tests.support.project import latest_report, make_project, reports_of, run_pytest, start_pytest

ONE_CHECK = "name: mini\nfile:\n  - name: hostname\n    path: /etc/hostname\n    severity: P0\n"
# a hand-written step that says it started, then sleeps: the run is killed while it waits
SLOW_STEP = ("import os, pathlib, time\n\ndef test_slow_step():\n"
             "    pathlib.Path(os.environ['STEP_FLAG']).write_text('in')\n    time.sleep(60)\n")


def _yesterday(project: Path) -> Path:
    """A complete, passing report where the run will write: the verdict a dead run must not leave."""
    reports_of(project, "mini").mkdir(parents=True, exist_ok=True)
    path = r.write(reports_of(project, "mini"), r.document([r.check("hostname", "pass", "P0", "file")], environment="mini"))
    assert run_gate(path).returncode == 0
    return path


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_run_leaves_error_not_yesterdays_pass(tmp_path, monkeypatch, sig):
    project = make_project(tmp_path, ONE_CHECK, {"test_slow.py": SLOW_STEP})
    latest = _yesterday(project)
    flag = tmp_path / "flag"
    monkeypatch.setenv("STEP_FLAG", str(flag))
    proc = start_pytest(project)
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.05)
        proc.send_signal(sig)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    gate = run_gate(latest)
    assert gate.returncode == 2, gate.output
    assert f"(pid {proc.pid} on " in gate.stdout and "did not finish" in gate.stdout, gate.output
    assert "verdict: ERROR (exit 2)" in gate.stdout
    assert "the process is gone" in gate.stdout  # same host, the pid no longer runs
    nagios = run_gate(latest, "--nagios")
    assert nagios.returncode == 3 and nagios.stdout.startswith("OPSGATE UNKNOWN"), nagios.output


def test_concurrent_runs_never_lose_a_report(tmp_path):
    """Eight runs at once into one reports folder, five rounds: 40 reports, each complete."""
    project = make_project(tmp_path, ONE_CHECK)
    reports = reports_of(project, "mini")
    for _ in range(5):
        with ThreadPoolExecutor(8) as pool:
            runs = list(pool.map(lambda _: run_pytest(project, "-q"), range(8)))
        assert all(run.returncode == 0 for run in runs), [run.output for run in runs if run.returncode]
        latest = json.loads((reports / "daily-latest.json").read_bytes())
        assert latest["opsgate"].get("state") is None and len(latest["tests"]) == 1  # a whole report, not a marker
        assert run_gate(reports / "daily-latest.json").returncode == 0
    written = sorted(p for p in reports.glob("daily-*.json") if p.name != "daily-latest.json")
    assert len(written) == 40, [p.name for p in written]
    for path in written:
        data = path.read_bytes()
        assert unseal(data) == "ok", path
        assert json.loads(data)["tests"][0]["metadata"]["opsgate"]["status"] == "pass"
    assert not list(reports.glob(".*")), "temp files left behind"


DEEP_JSON = ("command:\n  - name: deep\n    severity: P2\n"
             "    argv: [%s, -c, \"print('[' * 150 + ']' * 150)\"]\n"
             "    expect: [\"@\"]\n" % json.dumps(sys.executable))


def test_deeply_nested_evidence_is_cut_where_it_is_stored(tmp_path):
    """A 150-level JSON document in one check's evidence: the check keeps its verdict, the
    stored evidence is cut at depth 32 and says so (old: stored whole; at 300 levels the
    serialiser gave up and no report was written)."""
    project = make_project(tmp_path, ONE_CHECK + DEEP_JSON)
    run = run_pytest(project)
    assert run.returncode == 0, run.output
    assert run.status() == {"test_file[hostname]": "pass", "test_command[deep]": "pass"}
    assert "…truncated at depth 32" in run.report_text
    evidence = next(t for t in run.report()["tests"] if "deep" in t["nodeid"])["metadata"]["opsgate"]["evidence"]
    assert _depth(evidence) <= 33, _depth(evidence)
    assert unseal(run.report_text.encode()) == "ok"
    assert run_gate(latest_report(project)).returncode == 0


def _depth(value) -> int:
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return 1 + max(map(_depth, children), default=0) if isinstance(value, (dict, list)) else 0


# a project conftest that adds 300-level metadata to every test: no JSON serialiser takes it
DEEP_METADATA = ("import pytest\n\n@pytest.hookimpl(optionalhook=True)\n"
                 "def pytest_json_runtest_metadata(item, call):\n"
                 "    deep = []\n    for _ in range(300):\n        deep = [deep]\n"
                 "    return {'deep': deep} if call.when == 'call' else None\n")


def test_a_report_that_cannot_be_built_is_error_with_its_reason(tmp_path):
    """Old: a traceback, exit 1, no report, and the gate passed on the previous one."""
    project = make_project(tmp_path, ONE_CHECK, {"conftest.py": DEEP_METADATA})
    latest = _yesterday(project)
    run = run_pytest(project)
    assert run.returncode == 2, run.output
    assert "ERROR  the report could not be built: " in run.output, run.output
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output, run.output
    gate = run_gate(latest)
    assert gate.returncode == 2 and "did not finish" in gate.stdout, gate.output


# Lower this run's file-size limit once collection is done: the small "started" marker fits,
# the final report (with a 600-character hostname check message) does not.
FSIZE_LIMIT = ("import resource\n\ndef pytest_collection_finish(session):\n"
               "    resource.setrlimit(resource.RLIMIT_FSIZE, (900, 900))\n")


def test_a_report_that_cannot_be_written_is_error_with_its_reason_without_gate(tmp_path):
    """RLIMIT_FSIZE (a full disk, as the run sees it): exit 2 and the reason on one line, no
    --gate needed; the gate on -latest says ERROR (old: exit 0, and yesterday's PASS stands)."""
    project = make_project(tmp_path, ONE_CHECK, {"conftest.py": FSIZE_LIMIT})
    latest = _yesterday(project)
    run = run_pytest(project)
    assert run.returncode == 2, run.output
    assert f"ERROR  the report could not be written to {project / 'reports' / 'mini'}: File too large" in run.output
    assert "verdict: ERROR (exit 2)" in run.output
    gate = run_gate(latest)
    assert gate.returncode == 2 and "did not finish" in gate.stdout, gate.output


def test_a_reports_path_under_a_file_is_error_without_gate(tmp_path):
    project = make_project(tmp_path, ONE_CHECK)
    (project / "blocker").write_text("")
    run = run_pytest(project, "--reports-dir", "blocker/reports")
    assert run.returncode == 2, run.output
    assert "ERROR  the run could not mark itself started in blocker/reports/mini: Not a directory" in run.output \
        or "ERROR  the report could not be written to blocker/reports/mini: Not a directory" in run.output, run.output


# the attacker's whole tool: edit the report, recompute the unkeyed digest
RESEAL = '''
import hashlib, sys
path = sys.argv[1]
text = open(path).read().replace('"status": "fail"', '"status": "pass"').replace('"outcome": "failed"', '"outcome": "passed"')
body = text[:text.rindex(',\\n "opsgate_digest"')] + "\\n}"
open(path, "w").write(body[:-1].rstrip() + ',\\n "opsgate_digest": "sha256:' + hashlib.sha256(body.encode()).hexdigest() + '"\\n}')
'''
FAILING = "name: mini\nfile:\n  - name: missing\n    path: /nonexistent/opsgate-file\n    severity: P0\n"


def test_the_keyed_seal_stops_a_re_sealed_report(tmp_path):
    key = tmp_path / "seal.key"
    key.write_text("correct horse battery staple\n")
    project = make_project(tmp_path, FAILING)
    run = run_pytest(project, "--seal-key-file", str(key))
    assert run.returncode == 1, run.output
    assert "correct horse" not in run.output and "correct horse" not in run.report_text
    latest = latest_report(project)
    assert '"opsgate_digest": "hmac-sha256:' in latest.read_text()
    signed = run_gate(latest, "--seal-key-file", key)
    assert signed.returncode == 1 and "verdict: FAIL" in signed.stdout, signed.output  # a signed report is read
    policy = tmp_path / "gates.yaml"
    policy.write_text("seal_key: {env: GATE_KEY}\ngates:\n  deploy: {}\n")
    by_policy = run_gate(latest, "--policy", policy, "--gate", "deploy", env={"GATE_KEY": "correct horse battery staple"})
    assert by_policy.returncode == 1, by_policy.output

    passing = make_project(tmp_path / "ok", ONE_CHECK)
    assert run_pytest(passing, "--seal-key-file", str(key)).returncode == 0
    ok = run_gate(latest_report(passing), "--policy", policy, "--gate", "deploy",
                  env={"GATE_KEY": "correct horse battery staple"})
    assert ok.returncode == 0 and "verdict: PASS" in ok.stdout, ok.output  # a correctly signed report passes

    # the attack: an unkeyed report re-sealed after FAIL -> PASS
    project2 = make_project(tmp_path / "plain", FAILING)
    assert run_pytest(project2).returncode == 1
    forged = latest_report(project2)
    subprocess.run([sys.executable, "-c", RESEAL, str(forged)], check=True)
    assert run_gate(forged).returncode == 0  # the documented limit of the plain digest
    keyed = run_gate(forged, "--seal-key-file", key)
    assert keyed.returncode == 2 and "not signed: the gate has a seal key" in keyed.stdout, keyed.output
    keyed = run_gate(forged, "--policy", policy, "--gate", "deploy", env={"GATE_KEY": "correct horse battery staple"})
    assert keyed.returncode == 2 and "not signed" in keyed.stdout, keyed.output

    # re-sealing a signed report with the plain digest, or signing with a wrong key, fails too
    subprocess.run([sys.executable, "-c", RESEAL, str(latest)], check=True)
    assert run_gate(latest, "--seal-key-file", key).returncode == 2
    wrong = tmp_path / "wrong.key"
    wrong.write_text("w4ttl3bird")
    run = run_pytest(project, "--seal-key-file", str(wrong))
    gate = run_gate(latest, "--seal-key-file", key)
    assert gate.returncode == 2 and "signature mismatch" in gate.stdout, gate.output
    assert "correct horse" not in gate.output and "w4ttl3bird" not in gate.output


def test_a_policy_naming_a_missing_key_is_error_and_never_prints_the_key(tmp_path):
    path = r.write(tmp_path, r.document([r.check("api")]))
    policy = tmp_path / "gates.yaml"
    policy.write_text("gates:\n  deploy:\n    seal_key: {env: NO_SUCH_KEY_VAR}\n")
    gate = run_gate(path, "--policy", policy, "--gate", "deploy")
    assert gate.returncode == 2 and "NO_SUCH_KEY_VAR" in gate.output, gate.output


@pytest.fixture
def foreign_demo(tmp_path):
    """Another user's ``python -m opsgate.demo serve`` on its own port: not the run's instance."""
    ready = tmp_path / "foreign" / "ready.json"
    ready.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "opsgate.demo", "serve", "--dir", str(ready.parent),
                             "--ready-file", str(ready)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the foreign demo did not start"
            time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_the_embedded_default_counts_only_its_own_demo(run_suite, foreign_demo):
    """Old: "count <= 1: observed 2" (P0) whenever another demo ran on the host."""
    run = run_suite("--gate", "daily")
    process = run.check("demo-server")["metadata"]["opsgate"]
    assert process["status"] == "pass", process["message"]
    assert [p["pid"] for p in process["evidence"]["details"]["processes"]] != [foreign_demo.pid]
    assert process["evidence"]["observed"]["count"] == 1
    assert run.returncode == 0, run.output


def test_a_pid_file_naming_a_dead_process_fails_naming_it(tmp_path):
    from opsgate.model import ProcessCheck
    from opsgate.probes import ProbeContext
    from opsgate.runner import run_check

    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / "app.pid").write_text(f"{gone.pid}\n")
    result = run_check(ProcessCheck(name="app", pid_file="app.pid", timeout=5), ProbeContext(tmp_path))
    assert result.status == "fail"
    assert f"pid_file app.pid names PID {gone.pid}, which is not running" in result.message

    alive = subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL)
    try:
        while psutil.Process(alive.pid).cmdline() != ["sleep", "30"]:  # until it has exec'd
            time.sleep(0.01)
        (tmp_path / "app.pid").write_text(f"{alive.pid}\n")
        result = run_check(ProcessCheck(name="app", pid_file="app.pid", cmdline="^sleep 30$", max_count=1,
                                        timeout=5), ProbeContext(tmp_path))
        assert result.status == "pass", result.message
        assert [p["pid"] for p in result.evidence["details"]["processes"]] == [alive.pid]
    finally:
        alive.kill()
        alive.wait()
    os.mkfifo(tmp_path / "fifo.pid")  # nobody writes it: the probe must not wait for a writer
    result = run_check(ProcessCheck(name="app", pid_file="fifo.pid", timeout=5), ProbeContext(tmp_path))
    assert result.status == "fail" and "not a regular file" in result.message


def test_a_read_only_reports_folder_is_error_for_the_run_and_for_a_later_gate(tmp_path):
    """An immutable folder (chattr +i: root ignores chmod) takes no new file, so neither the
    report nor a marker can be renamed in; the previous -latest is overwritten in place with
    the marker, so a later gate says ERROR, not yesterday's PASS."""
    project = make_project(tmp_path, ONE_CHECK)
    latest = _yesterday(project)
    if subprocess.run(["chattr", "+i", str(reports_of(project, "mini"))], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        run = run_pytest(project)
    finally:
        subprocess.run(["chattr", "-i", str(reports_of(project, "mini"))], check=True)
    assert run.returncode == 2, run.output
    assert f"ERROR  the report could not be written to {project / 'reports' / 'mini'}: Operation not permitted" in run.output
    gate = run_gate(latest)
    assert gate.returncode == 2 and "did not finish" in gate.stdout, gate.output
