"""config/examples/aura.yaml against a stand-in Aura (tests/support/standins/aura.py): the daily,
weekly and quarterly suites pass on a healthy one; each fault from the runbooks fails (or warns,
where the runbook's severity only warns) exactly the check that encodes its step, at the
runbook's severity, and every other check passes or is blocked by it.

One stand-in and one project serve the whole module; a fault breaks only what it needs and
heals it afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsgate import envfile
from tests.support.project import ProjectRun, make_project, run_pytest
from tests.support.standins.aura import AuraStandIn

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "examples" / "aura.yaml"


@pytest.fixture(scope="module")
def aura(tmp_path_factory):
    with AuraStandIn(tmp_path_factory.mktemp("app")) as standin:
        yield standin


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("aura-project"), EXAMPLE.read_text())
    for cadence in ("weekly", "monthly", "quarterly"):
        (project / "checks" / cadence).mkdir()
    return project


def run(project: Path, aura: AuraStandIn, cadence: str) -> ProjectRun:
    return run_pytest(project, "--gate", "daily", "-v", env=aura.environ(), suite=f"checks/{cadence}", timeout=300)


def checks(run: ProjectRun) -> dict[str, dict]:
    """check name -> its metadata.opsgate (status, severity, message, blocked_by ...)."""
    return {t["metadata"]["opsgate"]["name"]: t["metadata"]["opsgate"] for t in run.report()["tests"]}


@pytest.mark.parametrize("cadence, count", [("daily", 12), ("weekly", 13), ("quarterly", 4)])
def test_healthy_aura_passes_each_suite(project, aura, cadence, count):
    result = run(project, aura, cadence)
    assert result.returncode == 0, result.output
    assert "verdict: PASS" in result.output
    found = checks(result)
    assert len(found) == count and {c["status"] for c in found.values()} == {"pass"}, result.output


FAULTS = [
    # fault, suite, the check that encodes the step, its status and severity, the gate, words of the cause
    ("degraded", "daily", "health", "fail", "P0", "FAIL", "degraded"),
    ("cpu-91", "daily", "resources", "fail", "P2", "WARN", "91"),
    ("critical-log", "daily", "aura-log", "fail", "P1", "FAIL", "model state corrupted"),
    ("error-log", "daily", "aura-log", "warn", "P1", "WARN", "RRLA step timed out"),
    ("tests-8of9", "daily", "run-tests", "fail", "P1", "FAIL", "8/9"),
    ("server-down", "daily", "server-py", "fail", "P0", "FAIL", "server[.]py"),
    ("port-held", "daily", "port-8000", "fail", "P0", "FAIL", "python"),
    ("backup-stale", "weekly", "aura-backup", "fail", "P1", "FAIL", "RPO"),
    ("cpu-average", "weekly", "cpu-average", "fail", "P2", "WARN", "88"),
]


@pytest.mark.parametrize("fault, cadence, failing, status, severity, verdict, cause", FAULTS,
                         ids=[f[0] for f in FAULTS])
def test_fault_fails_exactly_its_check(project, aura, fault, cadence, failing, status, severity, verdict, cause):
    with aura.fault(fault):
        result = run(project, aura, cadence)
    found = checks(result)
    broken = found.pop(failing)
    assert (broken["status"], broken["severity"]) == (status, severity), result.output
    assert cause in broken["message"], broken["message"]
    blocked = {name for name, c in found.items() if c["status"] == "blocked"}
    for name, check in found.items():
        assert check["status"] in ("pass", "blocked"), (name, check["status"], check["message"])
        if check["status"] == "blocked":  # by the broken check, directly or through another blocked one
            assert set(check["blocked_by"]) <= {failing} | blocked, (name, check["blocked_by"])
    assert f"verdict: {verdict}" in result.output, result.output
    assert result.returncode == (1 if verdict == "FAIL" else 0)


def test_every_runbook_step_is_traced():
    """The runbook section covers both runbooks, and every check is named by some step."""
    env = envfile.load(EXAMPLE, environ={}).env
    book = env.runbook
    assert set(book.sources) == {"aura-incident-response.md", "aura-maintenance-procedures.md"}
    traced = {name for step in book.steps for name in step.names}
    assert traced == {item.name for item in env.items()}
    assert all(step.why for step in book.steps if step.method in ("command", "handwritten"))
