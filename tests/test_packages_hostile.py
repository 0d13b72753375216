"""``packages`` checks whose pip-audit answers in a shape that says nothing: a stand-in
pip-audit on PATH (a shell script; the real one needs the network) prints each report, and
a real venv (tests/test_check_packages.py's make_venv) is the environment checked.

What must never happen: "no known vulnerability" on a report that audited no package.
"""

from __future__ import annotations

import json

import pytest

from tests.test_check_packages import check, make_venv, no_pip_audit, stand_in_pip_audit  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def python(tmp_path_factory):
    return make_venv(tmp_path_factory.mktemp("venv") / "env", {"appcore": ("2.4.0", [])})


@pytest.mark.parametrize("report", [{}, {"dependencies": []}, [], {"dependencies": None}],
                         ids=["empty-object", "no-dependencies", "empty-list", "null-dependencies"])
def test_a_report_that_audited_nothing_never_passes(tmp_path, python, stand_in_pip_audit, report):
    """``{}`` and an empty list of dependencies passed as a clean audit."""
    stand_in_pip_audit(json.dumps(report), 0)
    result = check(tmp_path, python=str(python), vulnerabilities="required")
    assert result.status == "fail"
    assert "pip-audit exited 0 with a report that lists no audited package" in result.message


def test_a_null_report_is_no_report(tmp_path, python, stand_in_pip_audit):
    stand_in_pip_audit("null", 0)
    result = check(tmp_path, python=str(python), vulnerabilities="required")
    assert result.status == "fail"
    assert "pip-audit exited 0 with no report" in result.message
