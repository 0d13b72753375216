"""A hand-written check's failure keeps its assertion text (issue 10): the gate line and the
report's ``metadata.opsgate.message`` say ``AssertionError: assert 503 == 200`` and where, not
just ``checks/daily/test_custom.py:16: AssertionError``. Each test runs pytest in a throwaway
project with a hand-written check beside a configured one, as a user would."""

from __future__ import annotations

import json

from opsgate.gate import from_document
from tests.gate_helpers import REPO, run_gate
from tests.support.http_target import HttpTarget
from tests.support.project import latest_report, make_project, run_pytest


def _env(api: str, extra: str = "") -> str:
    return f"name: shop\nhttp:\n  - name: api-health\n    url: {api}/health\n    severity: P1\n{extra}"


STATUS_CHECK = '''
import pytest
import requests

URL = "{url}/status/503"


@pytest.mark.severity("P1")
def test_orders_api():
    resp = requests.get(URL, timeout=5)
    assert resp.status_code == 200
'''


def _custom(run) -> dict:
    return next(t for t in run.report()["tests"] if t["nodeid"].endswith("test_orders_api"))


def test_the_gate_line_and_the_report_carry_the_assertion(tmp_path):
    """Old: the gate line was `checks/daily/test_custom.py:11: AssertionError`, the cause lost."""
    with HttpTarget() as api:
        project = make_project(tmp_path, _env(api.url), {"test_custom.py": STATUS_CHECK.format(url=api.url)})
        run = run_pytest(project, "--gate", "daily")
    assert run.returncode == 1 and "verdict: FAIL" in run.output, run.output
    line = next(l for l in run.output.splitlines() if "test_orders_api [" in l)
    assert "AssertionError: assert 503 == 200" in line, line
    assert "test_custom.py:11" in line, line  # where it failed: the assert's own line
    message = _custom(run)["metadata"]["opsgate"]["message"]
    assert message.startswith("checks/daily/test_custom.py:11: AssertionError: assert 503 == 200"), message
    # `opsgate gate` on the written report shows the same line
    gate = run_gate(latest_report(project), "--policy", str(REPO / "config" / "gates.yaml"), "--gate", "daily")
    assert "AssertionError: assert 503 == 200" in gate.output, gate.output


def test_the_gate_falls_back_to_the_crash_message(tmp_path):
    """A report whose test carries no opsgate message (written by an older opsgate or a plain
    pytest-json-report run) still shows the assertion, read from pytest's crash record."""
    with HttpTarget() as api:
        project = make_project(tmp_path, _env(api.url), {"test_custom.py": STATUS_CHECK.format(url=api.url)})
        run = run_pytest(project)
    document = run.report()
    for test in document["tests"]:
        test.get("metadata", {}).get("opsgate", {}).pop("message", None)
    records = {r.name: r for r in from_document(json.loads(json.dumps(document)), "report").checks}
    message = records["test_orders_api"].message
    assert "AssertionError: assert 503 == 200" in message and "test_custom.py:11" in message, message


FIXTURE_FAILS = '''
import pytest


@pytest.fixture
def orders_db():
    raise RuntimeError("orders database unreachable at 10.0.0.7:5432")


def test_orders_db(orders_db):
    pass
'''


def test_a_failing_fixture_names_its_error(tmp_path):
    """A hand-written check whose fixture fails (pytest's setup error) shows the exception."""
    with HttpTarget() as api:
        project = make_project(tmp_path, _env(api.url), {"test_db.py": FIXTURE_FAILS})
        run = run_pytest(project, "--gate", "daily")
    line = next(l for l in run.output.splitlines() if "test_orders_db [" in l)
    assert "RuntimeError: orders database unreachable at 10.0.0.7:5432" in line, line
    assert "test_db.py:7" in line, line


SECRET_AND_LONG = '''
import os


def test_token():
    assert os.environ["ORDERS_TOKEN"] == "expected"


def test_long():
    assert "x" * 5000 == "y"
'''


def test_the_message_is_redacted_and_bounded(tmp_path):
    """A secret in the assertion never reaches the gate line or the report; a huge value is cut."""
    secret = "Tk9-zq7Wp2LmX4"
    with HttpTarget() as api:
        env = _env(api.url, "  - name: orders\n    url: " + api.url + "/health\n    headers:\n"
                             "      Authorization: {value: 'Bearer ${ORDERS_TOKEN}', secret: true}\n")
        project = make_project(tmp_path, env, {"test_more.py": SECRET_AND_LONG})
        run = run_pytest(project, "--gate", "daily", env={"ORDERS_TOKEN": secret})
    gate_part = run.output.split("gate daily", 1)[1].split("short test summary", 1)[0]
    token_line = next(l for l in gate_part.splitlines() if "test_token [" in l)
    assert secret not in token_line and "AssertionError: assert" in token_line, token_line
    assert secret not in run.report_text
    long_message = next(t for t in run.report()["tests"]
                        if t["nodeid"].endswith("test_long"))["metadata"]["opsgate"]["message"]
    assert "AssertionError: assert" in long_message and len(long_message) <= 301, long_message
