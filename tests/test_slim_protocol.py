"""A configured check's slim pytest protocol (no per-phase capture, logging or timeout
wrappers) reports exactly what pytest's own would, and steps aside whenever something could
tell the difference: a conftest's phase hook, or skip marks a conftest gave a check. Each test
runs pytest in a throwaway project, as a user would."""

from __future__ import annotations

from tests.support.project import make_project, run_pytest

ENV = ("name: slim\nfile:\n  - name: hostname\n    path: /etc/hostname\n"
       "  - name: missing-file\n    path: /nonexistent/opsgate-slim\n    severity: P3\n")


def _tests(run) -> dict[str, dict]:
    return {t["nodeid"].rsplit("::", 1)[-1]: t for t in run.report()["tests"]}


def test_every_phase_is_reported_as_pytest_reports_it(tmp_path):
    run = run_pytest(make_project(tmp_path, ENV))
    tests = _tests(run)
    ok, bad = tests["test_file[hostname]"], tests["test_file[missing-file]"]
    assert [ok[p]["outcome"] for p in ("setup", "call", "teardown")] == ["passed"] * 3, run.output
    assert ok["outcome"] == "passed" and ok["metadata"]["opsgate"]["status"] == "pass"
    assert bad["outcome"] == "failed" and bad["call"]["outcome"] == "failed"
    assert bad["call"]["longrepr"] == "[P3] file missing-file: /nonexistent/opsgate-slim: file does not exist"
    assert "1 failed, 1 passed" in run.output, run.output


def test_a_conftest_phase_hook_still_sees_configured_checks(tmp_path):
    """A conftest implementing pytest_runtest_setup is not one the slim protocol knows: every
    configured check then takes pytest's own protocol, so the hook runs (here: it skips one)."""
    conftest = ("import pytest\n\n"
                "def pytest_runtest_setup(item):\n"
                "    if 'missing-file' in item.name:\n"
                "        pytest.skip('under maintenance')\n")
    run = run_pytest(make_project(tmp_path, ENV, {"conftest.py": conftest}))
    tests = _tests(run)
    assert tests["test_file[missing-file]"]["outcome"] == "skipped", run.output
    assert "under maintenance" in tests["test_file[missing-file]"]["setup"]["longrepr"]
    assert tests["test_file[hostname]"]["outcome"] == "passed"


def test_a_skip_mark_given_to_a_configured_check_is_honoured(tmp_path):
    conftest = ("import pytest\n\n"
                "def pytest_collection_modifyitems(items):\n"
                "    for item in items:\n"
                "        if 'missing-file' in item.name:\n"
                "            item.add_marker(pytest.mark.skip(reason='known broken'))\n")
    run = run_pytest(make_project(tmp_path, ENV, {"conftest.py": conftest}))
    tests = _tests(run)
    assert tests["test_file[missing-file]"]["outcome"] == "skipped", run.output
    assert "known broken" in tests["test_file[missing-file]"]["setup"]["longrepr"]
    assert tests["test_file[hostname]"]["outcome"] == "passed"
