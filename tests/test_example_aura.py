"""config/examples/aura.yaml against a stand-in Aura (tests/support/standins/aura.py): the daily,
weekly, monthly and quarterly suites pass on a healthy one; each fault from the runbooks fails (or warns,
where the runbook's severity only warns) exactly the check that encodes its step, at the
runbook's severity, and every other check passes or is blocked by it.

One stand-in and one project serve the whole module; a fault breaks only what it needs and
heals it afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsgate import envfile
from tests.support.standins.aura import AuraStandIn
from tests.support.standins.proof import assert_all_pass, assert_only_broken, example_project, run_suite

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "examples" / "aura.yaml"


@pytest.fixture(scope="module")
def aura(tmp_path_factory):
    with AuraStandIn(tmp_path_factory.mktemp("app")) as standin:
        yield standin


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return example_project(tmp_path_factory.mktemp("aura-project"), EXAMPLE)


@pytest.mark.parametrize("cadence, count", [("daily", 13), ("weekly", 13), ("monthly", 11), ("quarterly", 4)])
def test_healthy_aura_passes_each_suite(project, aura, cadence, count):
    assert_all_pass(run_suite(project, aura.environ(), cadence), count)


FAULTS = [
    # fault, suite, the check that encodes the step, its status and severity, the gate, words of the cause
    ("degraded", "daily", "health", "fail", "P0", "FAIL", "degraded"),
    ("cpu-91", "daily", "resources", "fail", "P2", "WARN", "91"),
    ("no-cors", "daily", "cors", "fail", "P2", "WARN", "access-control-allow-origin"),
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
        result = run_suite(project, aura.environ(), cadence)
    assert_only_broken(result, failing, status, severity, verdict, cause)


def test_every_runbook_step_is_traced():
    """The runbook section covers both runbooks, and every check is named by some step."""
    env = envfile.load(EXAMPLE, environ={}).env
    book = env.runbook
    assert set(book.sources) == {"aura-incident-response.md", "aura-maintenance-procedures.md"}
    traced = {name for step in book.steps for name in step.names}
    assert traced == {item.name for item in env.items()}
    assert all(step.why for step in book.steps if step.method in ("command", "handwritten"))
