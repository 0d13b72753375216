"""Runbook: "if the database is down, say so once". A stopped database is one root cause;
the checks that need it are blocked by it, not counted as forty failures."""

from __future__ import annotations

import json

from tests.gate_helpers import REPO, run_gate
from tests.support.http_target import HttpTarget, free_port
from tests.support.project import latest_report, make_project, run_pytest

N_HTTP = 6


def _env(db_port: int, api_url: str) -> str:
    lines = ["name: shop", "tcp:", "  - name: db-port", "    host: 127.0.0.1", f"    port: {db_port}",
             "    severity: P1", "    timeout: 1", "http:"]
    for i in range(N_HTTP):
        lines += [f"  - name: api-{i}", f"    url: {api_url}/health", "    severity: P0", "    depends_on: [db-port]"]
    lines += ["file:", "  - name: hostname", "    path: /etc/hostname", "    severity: P2"]
    return "\n".join(lines) + "\n"


HAND_WRITTEN = '''
import pytest

@pytest.mark.severity("P1")
@pytest.mark.depends_on("db-port")
def test_orders_table_readable():
    raise AssertionError("must not run while the database is down")

@pytest.mark.depends_on("test_orders_table_readable")
def test_nightly_report_query():
    raise AssertionError("must not run either: its prerequisite was blocked")

def test_static_assets():
    pass
'''


def test_stopped_database_is_one_root_cause_and_its_dependents_are_blocked(tmp_path):
    with HttpTarget() as api:
        # nothing listens on the database's port: the database is stopped
        project = make_project(tmp_path, _env(free_port(), api.url), {"test_orders.py": HAND_WRITTEN})
        run = run_pytest(project, "--gate", "daily")
        assert api.requests_seen == 0  # the API checks never ran
    assert run.returncode == 1, run.output
    assert "FAIL: 1 root cause (db-port blocks 8)" in run.output
    assert "ROOT CAUSE  P0  test_tcp[db-port] [shop@" in run.output  # P1 itself, but it blocks P0 checks
    assert "connection refused" in run.output

    tests = {t["nodeid"].rsplit("::", 1)[-1]: t["metadata"]["opsgate"] for t in run.report()["tests"]}
    blocked = sorted(n for n, m in tests.items() if m.get("status") == "blocked")
    assert blocked == sorted([f"test_http[api-{i}]" for i in range(N_HTTP)]
                             + ["test_nightly_report_query", "test_orders_table_readable"])
    assert tests["test_orders_table_readable"]["blocked_by"] == ["db-port"]
    assert tests["test_nightly_report_query"]["blocked_by"] == ["test_orders_table_readable"]

    gate = run_gate(latest_report(project), "--policy", REPO / "config" / "gates.yaml", "--gate", "daily")
    assert gate.returncode == 1
    assert gate.stdout.count("ROOT CAUSE") == 1
    assert "1 root cause (db-port blocks 8)" in gate.stdout


def test_a_prerequisite_left_out_by_k_still_blocks_its_dependents(tmp_path):
    """`-k api-0` leaves db-port out of the run's tests, but it still runs first (unseen, as on an
    xdist worker): a stopped database blocks the API check instead of letting it run as if the
    database were up; the gate counts the blocked check at its own level (its cause is not in the
    report), never as a pass; with nothing else executed, the gate cannot trust the run: ERROR."""
    with HttpTarget() as api:
        project = make_project(tmp_path, _env(free_port(), api.url))
        run = run_pytest(project, "-k", "api-0", "--gate", "daily")
        assert api.requests_seen == 0
    assert run.returncode == 2, run.output
    assert "P0  FAIL  test_http[api-0] [shop@" in run.output
    (written,) = (project / "reports" / "shop").glob("daily-2*.json")  # a partial run is not the -latest
    tests = {t["nodeid"].rsplit("::", 1)[-1]: t["metadata"]["opsgate"] for t in json.loads(written.read_text())["tests"]}
    assert list(tests) == ["test_http[api-0]"]
    assert tests["test_http[api-0]"]["status"] == "blocked"
    assert tests["test_http[api-0]"]["blocked_by"] == ["db-port"]
    assert "db-port (fail)" in tests["test_http[api-0]"]["message"]
