"""config/examples/aura.yaml against a stand-in Aura (tests/support/standins/aura.py): the daily,
weekly, monthly, quarterly and incident (the diagnosis again, then the 30-minute post-fix watch)
suites pass on a healthy one; each fault from the runbooks fails (or warns, where the runbook's
severity only warns) exactly the check that encodes its step, at the runbook's severity, and
every other check passes or is blocked by it. The post-fix watch is the incident suite's only:
no other suite, the monthly one included, samples a window; a fix that does not hold fails it.

One stand-in and one project serve the whole module; a fault breaks only what it needs and
heals it afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsgate import envfile
from tests.support.standins.aura import AuraStandIn
from tests.support.standins.proof import assert_all_pass, assert_only_broken, checks, example_project, run_suite

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "examples" / "aura.yaml"


@pytest.fixture(scope="module")
def aura(tmp_path_factory):
    with AuraStandIn(tmp_path_factory.mktemp("app")) as standin:
        yield standin


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return example_project(tmp_path_factory.mktemp("aura-project"), EXAMPLE)


@pytest.mark.parametrize("cadence, count", [("daily", 13), ("weekly", 13), ("monthly", 10), ("quarterly", 4),
                                            ("incident", 14)])
def test_healthy_aura_passes_each_suite(project, aura, cadence, count):
    result = run_suite(project, aura.environ(), cadence)
    assert_all_pass(result, count)
    found = checks(result)
    # the post-fix watch samples its window in the incident suite only (the monthly one no longer waits for it)
    sampled = {name for name, check in found.items() if "samples" in (check.get("evidence") or {})}
    assert sampled == ({"post-fix-watch"} if cadence == "incident" else set()), sampled
    if cadence == "incident":
        assert len(found["post-fix-watch"]["evidence"]["samples"]) == 3, found["post-fix-watch"]  # 1s every 0.5s


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


def test_a_fix_that_does_not_hold_fails_the_incident_watch(project, aura):
    """The checklist's "monitor for 30 minutes" after a fix: /health answers healthy at first,
    then degraded within the window. The incident suite's watch fails (P1) with the sample that
    broke, after a healthy first one; every diagnosis check passed."""
    with aura.fault("relapse"):
        result = run_suite(project, aura.environ(), "incident")
    assert_only_broken(result, "post-fix-watch", "fail", "P1", "FAIL", "degraded")
    samples = checks(result)["post-fix-watch"]["evidence"]["samples"]
    assert samples[0]["status"] == "pass" and samples[-1]["status"] == "fail", samples


def test_every_runbook_step_is_traced():
    """The runbook section covers both runbooks, and every check is named by some step."""
    env = envfile.load(EXAMPLE, environ={}).env
    book = env.runbook
    assert set(book.sources) == {"aura-incident-response.md", "aura-maintenance-procedures.md"}
    traced = {name for step in book.steps for name in step.names}
    assert traced == {item.name for item in env.items()}
    assert all(step.why for step in book.steps if step.method in ("command", "handwritten"))
