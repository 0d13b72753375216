"""config/examples/perfect-jarvis.yaml against a stand-in Perfect Jarvis
(tests/support/standins/perfect_jarvis.py: real PostgreSQL, Redis, Prometheus and podman
containers, the backend, Ollama and Grafana on loopback): the daily, weekly and quarterly suites
pass on a healthy one; each fault from the runbook fails (or warns) exactly the check that
encodes its step, at the runbook's severity, and every other check passes or is blocked by it.

One stand-in and one project serve the whole module; a fault breaks only what it needs and
heals it afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsgate import envfile
from tests.support.standins.perfect_jarvis import PG_PASSWORD, REDIS_PASSWORD, JarvisStandIn
from tests.support.standins.proof import assert_all_pass, assert_only_broken, example_project, run_suite

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "examples" / "perfect-jarvis.yaml"


@pytest.fixture(scope="module")
def jarvis(tmp_path_factory):
    with JarvisStandIn(tmp_path_factory.mktemp("stack")) as standin:
        yield standin


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return example_project(tmp_path_factory.mktemp("jarvis-project"), EXAMPLE)


@pytest.mark.parametrize("cadence, count", [("daily", 18), ("weekly", 1), ("quarterly", 1)])
def test_healthy_jarvis_passes_each_suite(project, jarvis, cadence, count):
    assert_all_pass(run_suite(project, jarvis.environ(), cadence), count)


FAULTS = [
    # fault, suite, the check that encodes the step, its status and severity, the gate, words of the cause
    ("prometheus-alert", "daily", "prometheus-alerts", "fail", "P1", "FAIL", "JarvisBackendErrors"),
    ("no-models", "daily", "ollama-models", "fail", "P1", "FAIL", "length(models)"),
    ("chat-empty", "daily", "chat", "fail", "P1", "FAIL", "response"),
    ("postgres-down", "daily", "postgres", "fail", "P0", "FAIL", "refused"),
    ("redis-down", "daily", "redis", "fail", "P1", "FAIL", "refused"),
    ("service-exited", "daily", "compose-services", "fail", "P1", "FAIL", "sutazai-grafana"),
    ("container-unhealthy", "daily", "containers-healthy", "fail", "P1", "FAIL", "unhealthy"),
    ("pg-dump-stale", "weekly", "postgres-dump", "fail", "P1", "FAIL", "RPO"),
    ("pg-dump-empty", "weekly", "postgres-dump", "fail", "P1", "FAIL", "size"),
]


@pytest.mark.parametrize("fault, cadence, failing, status, severity, verdict, cause", FAULTS,
                         ids=[f[0] for f in FAULTS])
def test_fault_fails_exactly_its_check(project, jarvis, fault, cadence, failing, status, severity, verdict, cause):
    with jarvis.fault(fault):
        result = run_suite(project, jarvis.environ(), cadence)
    assert_only_broken(result, failing, status, severity, verdict, cause)


def test_every_runbook_step_is_traced():
    """The runbook section covers the incident runbook, and every check is named by some step."""
    env = envfile.load(EXAMPLE, environ={"JARVIS_PG_PASSWORD": PG_PASSWORD, "JARVIS_REDIS_PASSWORD": REDIS_PASSWORD}).env
    book = env.runbook
    assert book.sources == ["perfect-jarvis-incident-runbook.md"]
    traced = {name for step in book.steps for name in step.names}
    assert traced == {item.name for item in env.items()}
    assert all(step.why for step in book.steps if step.method in ("command", "handwritten"))


def test_no_password_reaches_the_output(project, jarvis):
    with jarvis.fault("postgres-down"):
        result = run_suite(project, jarvis.environ(), "daily")
    for secret in (PG_PASSWORD, REDIS_PASSWORD):
        assert secret not in result.output and secret not in result.report_text
