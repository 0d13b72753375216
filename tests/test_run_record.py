"""The run's record is built once in memory and gated there: the verdict a run prints (and
exits with) is the same as the gate over the report it wrote, finding for finding."""

from __future__ import annotations

import json

from tests.support.http_target import free_port
from tests.support.project import latest_report, make_project, run_pytest

ENV = """name: shop
severity_scale: P1-P4
tcp:
  - name: db-port
    port: {port}
    severity: P1
file:
  - name: app-config
    path: /etc/hostname
    depends_on: [db-port]
  - name: hostname
    path: /etc/hostname
  - name: dropped
    path: /etc/hostname
    severity: P4
"""

COMPARE = '''
import json
from opsgate.plugin import STATE
from opsgate.gate import read_report

def pytest_collection_modifyitems(items):
    # a plugin that removes an item without deselecting it: the record lists it as not run
    items[:] = [i for i in items if "dropped" not in i.name]

def _view(result):
    return {"verdict": str(result.verdict), "exit_code": result.exit_code, "counts": result.counts,
            "errors": result.errors, "notes": result.notes,
            "findings": sorted([f.check.nodeid, str(f.effect), f.reason, f.severity, f.check.message,
                                f.check.status] for f in result.findings)}

def pytest_unconfigure(config):
    from opsgate.gate import evaluate
    state = config.stash[STATE]
    written = evaluate([read_report(state.report_path)], state.policy, state.gate_name, now=state.gate.decided_at)
    with open("compared.json", "w") as f:
        json.dump({"memory": _view(state.gate), "written": _view(written)}, f)
'''

HAND_WRITTEN = '''
def test_orders_total(opsgate_env):
    assert 2 + 2 == 5, "the order total is wrong"
'''


def test_the_record_gated_in_memory_equals_the_gate_over_the_written_report(tmp_path):
    project = make_project(tmp_path, ENV.format(port=free_port()), {"test_orders.py": HAND_WRITTEN})
    (project / "conftest.py").write_text(COMPARE)
    run = run_pytest(project, "--gate", "daily")
    compared = json.loads((project / "compared.json").read_text())
    memory, written = compared["memory"], compared["written"]
    assert memory == written, run.output
    assert memory["verdict"] == "ERROR" and run.returncode == 2  # the dropped check did not run
    assert any("configured check dropped" in e and "did not run" in e for e in memory["errors"])
    statuses = {nodeid.rsplit("::", 1)[-1]: status for nodeid, *_, status in memory["findings"]}
    assert statuses == {"test_tcp[db-port]": "fail", "test_file[app-config]": "blocked",
                        "test_file[hostname]": "pass", "test_orders_total": "fail"}
    report = json.loads(latest_report(project).read_text())["opsgate"]
    assert report["counts"]["fail"] == 2 and report["verdict"] == "ERROR" and report["not_run"][0]["name"] == "dropped"


LOST_CALL = '''
import os
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report):
    # a worker that cannot send its check's result (as an execnet DumpError once did)
    if report.when == "call" and os.environ.get("PYTEST_XDIST_WORKER"):
        raise RuntimeError("this worker cannot send its report")
'''


def test_a_check_whose_result_never_arrived_is_an_error_not_a_pass(tmp_path):
    """Old: pytest-json-report's entry starts "passed" at setup; a worker that never sent the
    call's report left that entry, and the gate said PASS with "no tests ran"."""
    project = make_project(tmp_path, "name: shop\nfile:\n  - name: hostname\n    path: /etc/hostname\n")
    (project / "conftest.py").write_text(LOST_CALL)
    run = run_pytest(project, "-n", "2", "--gate", "daily")
    assert run.returncode == 2 and "verdict: ERROR" in run.output, run.output
    assert "test_file[hostname]: its result never arrived" in run.output
    (test,) = run.report()["tests"]
    assert "call" not in test and test["outcome"] == "passed"  # the document as pytest-json-report left it
