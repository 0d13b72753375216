"""One scheduler: "blocked by a failed prerequisite" is decided and worded in one place
(opsgate.scheduler) for configured checks run by the engine, configured checks run inline on a
pytest-xdist worker, and hand-written checks with ``@pytest.mark.depends_on``."""

from __future__ import annotations

import pytest

from opsgate.scheduler import blocked, prerequisites_first
from tests.support.http_target import free_port
from tests.support.project import make_project, run_pytest

ENV = """name: shop
tcp:
  - name: db-port
    port: {port}
    severity: P0
file:
  - name: app-config
    path: /etc/hostname
    depends_on: [db-port]
  - name: app-cache
    path: /etc/hostname
    depends_on: [app-config]
"""

HAND_WRITTEN = '''
import pytest

@pytest.mark.severity("P1")
@pytest.mark.depends_on("db-port")
def test_orders(opsgate_env):
    assert False, "must not run: its prerequisite failed"
'''

EXPECTED = {
    "test_file[app-config]": "not run: blocked by db-port (fail)",
    "test_file[app-cache]": "not run: blocked by app-config (blocked)",
    "test_orders": "not run: blocked by db-port (fail)",
}


@pytest.mark.parametrize("how", [(), ("-n", "2")], ids=["engine", "xdist-workers"])
def test_one_blocked_message_for_configured_and_hand_written_checks(tmp_path, how):
    """Nothing listens on db-port: the configured file check that needs it, the one that needs
    that one, and the hand-written check that needs it are each blocked, with the same words
    whether the engine ran them or a pytest-xdist worker ran them inline."""
    project = make_project(tmp_path, ENV.format(port=free_port()), {"test_orders.py": HAND_WRITTEN})
    run = run_pytest(project, *how)
    tests = {t["nodeid"].rsplit("::", 1)[-1]: t["metadata"]["opsgate"] for t in run.report()["tests"]}
    assert tests["test_tcp[db-port]"]["status"] == "fail", run.output
    for test_id, message in EXPECTED.items():
        assert tests[test_id]["status"] == "blocked", (test_id, tests[test_id])
        assert tests[test_id]["message"] == message, (test_id, tests[test_id])
        assert tests[test_id]["blocked_by"] == [message.split("blocked by ")[1].split(" (")[0]]
    assert "must not run" not in run.output


def test_blocked_names_every_failed_prerequisite_with_its_status():
    result = blocked("orders", "python", "P1", [("db-port", "fail"), ("test_schema", "skipped"), ("dns", "warn")])
    assert result.status == "blocked" and result.message == "not run: blocked by db-port (fail), test_schema (skipped)"
    assert result.blocked_by == ["db-port", "test_schema"]
    assert blocked("orders", "python", "P1", [("db-port", "pass"), ("dns", "warn")]) is None


def test_a_long_chain_is_ordered_without_recursion():
    """The inline path (pytest-xdist workers) used to recurse once per link."""
    links = 20_000
    chain = {f"c{i}": [f"c{i - 1}"] if i else [] for i in range(links)}
    order = prerequisites_first(f"c{links - 1}", chain.__getitem__)
    assert order == [f"c{i}" for i in range(links)]
    diamond = {"top": ["left", "right"], "left": ["base"], "right": ["base"], "base": []}
    assert prerequisites_first("top", diamond.__getitem__) == ["base", "left", "right", "top"]
