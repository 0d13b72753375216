"""Remedies: a check's runbook step is shown beside its failure (terminal, summary, report, gate
lines, JUnit, Markdown, Nagios, Prometheus), never beside a pass, and never prints a secret.

Real targets: a loopback HTTP server answering healthy and degraded, a real hand-written test.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.gate_helpers import run_gate
from tests.support.http_target import HttpTarget
from tests.support.project import REPO, latest_report, make_project, run_pytest

START = "./start_aura.sh - runbook: Server Won't Start"
HEALTHY_STEP = "this step is for the healthy endpoint and never shown"
SECRET = "Rm7-hunter2-Zq9x"

HANDWRITTEN = '''
import pytest

@pytest.mark.severity("P1")
@pytest.mark.remedy("systemctl restart aura-worker - runbook: Worker Down")
def test_worker_queue():
    assert 3 == 0, "queue has 3 stuck jobs"
'''


def _env(url: str) -> str:
    return f"""
name: remedies
secrets: [RUNBOOK_KEY]
http:
  - name: api-health
    severity: P0
    url: {url}/degraded
    expect: ["status == 'healthy'"]
    remedy: "{START}"
  - name: api-ok
    severity: P0
    url: {url}/health
    expect: ["status == 'healthy'"]
    remedy: "{HEALTHY_STEP}"
  - name: api-models
    severity: P2
    url: {url}/status/503
    remedy: "https://wiki.example/runbook?key=${{RUNBOOK_KEY}}#models"
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("remedy")
    with HttpTarget() as target:
        project = make_project(tmp, _env(target.url), extra={"test_worker.py": HANDWRITTEN})
        result = run_pytest(project, "--gate", "daily", env={"RUNBOOK_KEY": SECRET})
    return result


def _meta(run, test_id: str) -> dict:
    return next(t["metadata"]["opsgate"] for t in run.report()["tests"] if t["nodeid"].endswith(test_id))


def test_a_failing_check_shows_its_remedy_in_the_terminal_and_the_gate_lines(run):
    assert run.returncode == 1, run.output
    # pytest's failure section (the check's message) and the gate's block of the summary
    failure = next(line for line in run.output.splitlines() if line.startswith("[P0] http api-health:"))
    assert failure.endswith(f"-- remedy: {START}")
    gate_block = run.output.split("gate daily", 1)[1]
    assert f"remedy: {START}" in gate_block
    assert "remedy: https://wiki.example/runbook?key=***#models" in gate_block  # the P2 warning's
    assert "systemctl restart aura-worker - runbook: Worker Down" in run.output  # the hand-written check's
    assert "opsgate remedy" in run.output  # its section under pytest's failure report


def test_the_report_records_a_remedy_beside_failures_only(run):
    assert _meta(run, "test_http[api-health]")["remedy"] == START
    assert _meta(run, "test_worker_queue")["remedy"] == "systemctl restart aura-worker - runbook: Worker Down"
    passed = _meta(run, "test_http[api-ok]")
    assert passed["status"] == "pass" and "remedy" not in passed
    assert HEALTHY_STEP not in run.output and HEALTHY_STEP not in run.report_text


def test_a_remedy_holding_a_registered_secret_is_masked_everywhere(run):
    assert _meta(run, "test_http[api-models]")["remedy"] == "https://wiki.example/runbook?key=***#models"
    assert SECRET not in run.output and SECRET not in run.report_text


def test_the_summary_without_a_gate_lists_remedies(tmp_path):
    with HttpTarget() as target:
        project = make_project(tmp_path, _env(target.url))
        result = run_pytest(project, env={"RUNBOOK_KEY": SECRET})
    summary = result.output.split("opsgate summary", 1)[1]
    lines = summary.splitlines()
    failed = next(i for i, line in enumerate(lines) if "test_http[api-health]" in line)
    assert lines[failed + 1].strip() == f"remedy: {START}"
    assert HEALTHY_STEP not in summary and SECRET not in result.output


def test_gate_outputs_carry_the_remedy(run, tmp_path):
    report = latest_report(run.project)
    junit, markdown, textfile = tmp_path / "gate.xml", tmp_path / "gate.md", tmp_path / "gate.prom"
    gate = run_gate(report, "--gate", "daily", "--policy", REPO / "config" / "gates.yaml", "--junit", junit,
                    "--markdown", markdown, "--prometheus", textfile)
    assert gate.returncode == 1, gate.output
    assert f"remedy: {START}" in gate.stdout

    cases = {c.get("name"): c for c in ET.parse(junit).iter("testcase")}
    failing = cases["test_http[api-health]"]
    props = {p.get("name"): p.get("value") for p in failing.iter("property")}
    assert props["remedy"] == START
    assert f"remedy: {START}" in failing.find("failure").text
    passing = cases["test_http[api-ok]"]
    assert "remedy" not in {p.get("name") for p in passing.iter("property")}

    text = markdown.read_text()
    assert "| Remedy |" in text and START in text and HEALTHY_STEP not in text

    prom = textfile.read_text()
    assert 'opsgate_check_remedy_info{' in prom and 'check="api-health"' in prom
    assert 'check="api-ok",kind="http",severity="P0",remedy=' not in prom

    nagios = run_gate(report, "--gate", "daily", "--policy", REPO / "config" / "gates.yaml", "--nagios")
    first, *long_output = nagios.stdout.splitlines()
    assert first.startswith("OPSGATE CRITICAL") and f"remedy P0 api-health: {START}" in long_output
    for output in (junit.read_text(), text, prom, nagios.stdout, gate.stdout):
        assert SECRET not in output and HEALTHY_STEP not in output


def test_a_blank_remedy_is_a_load_error(tmp_path):
    project = make_project(tmp_path, "name: bad\nhttp:\n  - {name: a, url: 'http://127.0.0.1:1/', remedy: ''}\n")
    result = run_pytest(project)
    assert result.returncode != 0 and "remedy" in result.output
