"""Collection that fails closed (issue 9): every configured check of the cadence run becomes a
test item with no stub file, every cadence folder works, and a configured check that did not
run - whatever the reason - is listed in the report's ``opsgate.not_run`` and makes the gate
ERROR. Each test runs pytest in a throwaway project, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from opsgate import envfile
from tests.gate_helpers import REPO, run_gate
from tests.support.http_target import HttpTarget, free_port
from tests.support.project import latest_report, make_project, run_pytest

POLICY = str(REPO / "config" / "gates.yaml")


def _env(api: str, port: int, extra: str = "") -> str:
    return (f"name: shop\nhttp:\n  - name: api-health\n    url: {api}/health\n    severity: P1\n    tags: [edge]\n"
            f"tcp:\n  - name: db-port\n    port: {port}\n    severity: P0\n{extra}")


def test_a_p0_tcp_check_runs_with_no_stub_file(tmp_path):
    """The issue's case: a P0 tcp check and only the user's old test_http.py stub. Old: the tcp
    check was never run and the verdict was "PASS: 1 checks ran"; now it runs (and fails: nothing
    listens on its port), once, and the stub still runs its http check - once, not twice."""
    stub = "def test_http(http_check, verify):\n    verify(http_check)\n"
    with HttpTarget() as api:
        project = make_project(tmp_path, _env(api.url, free_port()), {"test_http.py": stub})
        run = run_pytest(project, "--gate", "daily")
    statuses = run.status()
    assert statuses == {"test_http[api-health]": "pass", "test_tcp[db-port]": "error"} or \
        statuses == {"test_http[api-health]": "pass", "test_tcp[db-port]": "fail"}, run.output
    assert run.returncode == 1 and "verdict: FAIL" in run.output, run.output
    nodeids = [t["nodeid"] for t in run.report()["tests"]]
    assert nodeids.count("checks/daily/test_http.py::test_http[api-health]") == 1 and len(nodeids) == 2, nodeids
    assert "per-kind stub is no longer needed" in run.output


def test_every_kind_collected_without_any_file(tmp_path):
    """An empty cadence folder runs every configured check, with readable ids and markers."""
    with HttpTarget() as api:
        project = make_project(tmp_path, _env(api.url, api.port) + "file:\n  - name: hostname\n    path: /etc/hostname\n")
        run = run_pytest(project)
        assert run.returncode == 0, run.output
        assert run.status() == {"test_http[api-health]": "pass", "test_tcp[db-port]": "pass",
                                "test_file[hostname]": "pass"}
        assert run.report()["opsgate"]["not_run"] == []
        for args, expected in ((["-m", "P0"], ["test_tcp[db-port]"]), (["-m", "http"], ["test_http[api-health]"]),
                               (["-m", "edge"], ["test_http[api-health]"]), (["-k", "hostname"], ["test_file[hostname]"]),
                               (["-m", "severity(level='P1')"], ["test_http[api-health]"])):
            listed = run_pytest(project, "--collect-only", "-q", *args)
            ids = [line.rsplit("::", 1)[-1] for line in listed.output.splitlines() if "::" in line]
            assert ids == expected, (args, listed.output)


HAND_WRITTEN = '''
import pytest

@pytest.mark.severity("P0")
@pytest.mark.depends_on("db-port")
def test_orders(opsgate_env, http_session):
    assert opsgate_env.env.name == "shop"
'''


def test_hand_written_checks_run_beside_configured_ones(tmp_path):
    """Same fixtures, markers and depends_on as before: blocked by the configured check it needs."""
    with HttpTarget() as api:
        project = make_project(tmp_path, _env(api.url, free_port()), {"test_orders.py": HAND_WRITTEN})
        run = run_pytest(project)
    tests = {t["nodeid"].rsplit("::", 1)[-1]: t["metadata"]["opsgate"] for t in run.report()["tests"]}
    assert tests["test_orders"]["status"] == "blocked" and tests["test_orders"]["blocked_by"] == ["db-port"], tests
    assert tests["test_http[api-health]"]["status"] == "pass"


WEEKLY = """name: shop
defaults:
  cadence: weekly
file:
  cadence: [daily, monthly]
  checks:
    - name: from-section
      path: /etc/hostname
    - name: own-list
      path: /etc/hostname
      cadence: [weekly, quarterly]
tcp:
  - name: from-defaults
    port: {port}
"""


def test_every_cadence_folder_runs_its_checks(tmp_path):
    """Cadence per item (a list), per kind section and as the environment's default; each folder
    runs only its own. Old: checks/weekly had no stubs, so nothing ran (and the list was invalid)."""
    with HttpTarget() as api:
        project = make_project(tmp_path, WEEKLY.format(port=api.port))
        expected = {"daily": {"test_file[from-section]"}, "weekly": {"test_file[own-list]", "test_tcp[from-defaults]"},
                    "monthly": {"test_file[from-section]"}, "quarterly": {"test_file[own-list]"}}
        for cadence, ids in expected.items():
            (project / "checks" / cadence).mkdir(exist_ok=True)
            (project / "checks" / cadence / "README.md").write_text("checks of this cadence\n")
            run = run_pytest(project, suite=f"checks/{cadence}")
            assert run.returncode == 0, run.output
            assert set(run.status()) == ids and set(run.status().values()) == {"pass"}, (cadence, run.output)
            assert run.report()["opsgate"]["cadence"] == cadence
            assert latest_report(project, cadence).is_file()


def test_embedded_default_runs_every_cadence(run_suite):
    """``pytest checks/weekly`` (monthly, quarterly) works out of the box with the embedded
    default. Old: no stub files there, zero checks, exit 2 (or 4 without the folder)."""
    for cadence in ("weekly", "monthly", "quarterly"):
        run = run_suite(paths=(f"checks/{cadence}",))
        report = json.loads((run.reports / f"{cadence}-latest.json").read_text())
        assert run.returncode in (0, 1) and report["tests"] and report["opsgate"]["not_run"] == [], run.output


def test_a_missing_cadence_folder_is_a_usage_error_that_writes_no_report(tmp_path):
    """Old: ``pytest checks/weekly`` without the folder exited 4 and still wrote a report."""
    project = make_project(tmp_path, "name: shop\nfile:\n  - name: h\n    path: /etc/hostname\n    cadence: weekly\n")
    run = run_pytest(project, suite="checks/weekly")
    assert run.returncode == 4 and "checks/weekly does not exist" in run.output, run.output
    assert not (project / "reports").exists()


DROP_TCP = '''
def pytest_collection_modifyitems(items):
    # a plugin that removes items without deselecting them (pytest then never hears of them)
    items[:] = [i for i in items if "tcp" not in i.name]
'''


def test_a_configured_check_that_was_not_collected_is_error(tmp_path):
    """Old: the remaining checks passed and so did the gate."""
    with HttpTarget() as api:
        project = make_project(tmp_path, _env(api.url, api.port), {"conftest.py": DROP_TCP})
        run = run_pytest(project, "--gate", "daily")
    assert run.returncode == 2, run.output
    (missing,) = run.report()["opsgate"]["not_run"]
    assert missing["name"] == "db-port" and missing["kind"] == "tcp" and missing["cadence"] == "daily"
    assert "configured check db-port (P0 tcp, daily) did not run: not collected" in run.output
    gate = run_gate(latest_report(project), "--policy", POLICY, "--gate", "daily")
    assert gate.returncode == 2 and "configured check db-port (P0 tcp, daily) did not run" in gate.stdout, gate.output


SKIP_TCP = '''
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        if "tcp" in item.name:
            item.add_marker(pytest.mark.skip(reason="flaky on CI"))
'''


def test_a_configured_check_skipped_by_a_conftest_is_error(tmp_path):
    """Old: the skipped P0 check had no result and the gate said PASS on the rest."""
    with HttpTarget() as api:
        project = make_project(tmp_path, _env(api.url, api.port), {"conftest.py": SKIP_TCP})
        run = run_pytest(project, "--gate", "daily")
    assert run.returncode == 2, run.output
    (missing,) = run.report()["opsgate"]["not_run"]
    assert missing["name"] == "db-port" and "skipped before it ran (a skip mark or a conftest)" in missing["reason"]
    assert "configured check db-port (P0 tcp, daily) did not run: skipped before it ran" in run.output


def test_a_claimed_cadence_whose_checks_did_not_run_is_error(tmp_path):
    """``pytest checks/daily checks/weekly`` claims both cadences: weekly checks that vanish
    from collection are each an ERROR, not a daily-only PASS."""
    env = "name: shop\nfile:\n  - name: d\n    path: /etc/hostname\n  - name: w\n    path: /etc/hostname\n    cadence: weekly\n"
    project = make_project(tmp_path, env)
    weekly = project / "checks" / "weekly"
    weekly.mkdir()
    (weekly / "conftest.py").write_text(DROP_TCP.replace('"tcp" not in i.name', 'i.path.name != "weekly"'))
    run = run_pytest(project, "checks/weekly", "--gate", "daily")
    assert run.returncode == 2, run.output
    assert [m["name"] for m in json.loads(latest_report(project, "daily-weekly").read_text())["opsgate"]["not_run"]] == ["w"]
    assert "configured check w (P2 file, weekly) did not run" in run.output


CRASH_WORKER = '''
import os

def pytest_runtest_setup(item):
    if "crash" in item.name:
        os._exit(17)  # the xdist worker dies here; with --max-worker-restart 0 nobody runs the rest
'''


def test_checks_an_xdist_worker_never_ran_are_error(tmp_path):
    pytest.importorskip("xdist")
    env = "name: shop\nfile:\n" + "".join(f"  - name: {n}\n    path: /etc/hostname\n" for n in ("a-crash", "b", "c"))
    project = make_project(tmp_path, env, {"conftest.py": CRASH_WORKER})
    run = run_pytest(project, "-n", "1", "--max-worker-restart", "0", "--gate", "daily")
    assert run.returncode == 2, run.output
    not_run = {m["name"]: m["reason"] for m in run.report()["opsgate"]["not_run"]}
    assert set(not_run) == {"b", "c"}, (not_run, run.output)
    assert "pytest-xdist" in not_run["b"]
    assert "configured check b (P2 file, daily) did not run" in run.output


def test_cadence_shapes_and_their_errors(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text(WEEKLY.format(port=1))
    env = envfile.load(path).env
    assert {i.name: i.cadence for i in env.items()} == {
        "from-section": ["daily", "monthly"], "own-list": ["weekly", "quarterly"], "from-defaults": ["weekly"]}
    path.write_text("name: x\nfile:\n  cadence: weekly\n  check:\n    - name: a\n      path: /x\n")
    with pytest.raises(envfile.EnvFileError) as exc:
        envfile.load(path)
    assert str(exc.value.problems[0]).endswith("env.yaml:4: file.check: expected a list of file checks, or a mapping "
                                               "with cadence and checks (a list), seen unknown key 'check'")
    path.write_text("name: x\nfile:\n  - name: a\n    path: /x\n    cadence: [daily, yearly]\n")
    with pytest.raises(envfile.EnvFileError) as exc:
        envfile.load(path)
    assert "env.yaml:5: file[0].cadence" in str(exc.value.problems[0]) and "yearly" in str(exc.value.problems[0])
    listed = subprocess.run([sys.executable, "-m", "opsgate.cli", "list", str(tmp_path / "env.yaml")],
                            capture_output=True, text=True)
    assert listed.returncode == 1


def test_collect_only_writes_nothing(tmp_path):
    project = make_project(tmp_path, "name: shop\nfile:\n  - name: h\n    path: /etc/hostname\n")
    run = run_pytest(project, "--collect-only", "-q")
    assert run.returncode == 0 and "checks/daily::test_file[h]" in run.output, run.output
    assert not (project / "reports").exists()
