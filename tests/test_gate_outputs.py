"""What the gate writes besides the terminal: Markdown, JUnit XML, Prometheus textfile, Nagios."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gate_helpers import run_gate, write_policy
from tests.support import reports as r

POLICY = """
gates:
  deploy:
    block: [P0, P1]
    warn: [P2, P3]
waivers:
  - check: api-models
    justification: "models are being re-pulled after the upgrade, OPS-142"
    expires: %s
""" % (date.today() + timedelta(days=10)).isoformat()


@pytest.fixture
def failing(tmp_path):
    """web-1: api-health P0 failing, api-models failing but waived, disk warning; db-1 healthy."""
    web = r.write(tmp_path, r.document([
        r.check("api-health", "fail", "P0", message="status == 'healthy': observed \"degraded\"",
                observed={"status_code": 200, "elapsed_ms": 41.5, "tls": True}),
        r.check("api-models", "fail", "P1", message="length(models) > 0: observed 0"),
        r.check("disk", "warn", "P2", "host", message="disk / used_percent < 80: observed 83.1",
                observed={"disk_used_percent": 83.1}),
    ], "shop", "web-1"), "web.json")
    db = r.write(tmp_path, r.document([r.check("db-port", kind="tcp", severity="P0")], "shop", "db-1"), "db.json")
    return web, db, write_policy(tmp_path, POLICY)


def test_markdown_file_and_github_step_summary(tmp_path, failing):
    web, db, policy = failing
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    run = run_gate(web, db, "--policy", policy, "--gate", "deploy", "--markdown", tmp_path / "gate.md",
                   env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert run.returncode == 1, run.output
    text = (tmp_path / "gate.md").read_text()
    assert text.startswith("## opsgate gate `deploy`: FAIL")
    assert "| P0 | `test_http[api-health]` | shop@web-1 | status == 'healthy': observed \"degraded\" |" in text
    assert "### Waived" in text and "models are being re-pulled after the upgrade, OPS-142" in text
    assert "| shop@db-1 | PASS |" in text and "| shop@web-1 | FAIL |" in text
    appended = summary.read_text()
    assert appended.startswith("earlier step\n") and text in appended


def test_junit_has_severity_properties_and_only_blocking_failures(tmp_path, failing):
    web, db, policy = failing
    run = run_gate(web, db, "--policy", policy, "--gate", "deploy", "--junit", tmp_path / "junit.xml")
    assert run.returncode == 1
    root = ET.parse(tmp_path / "junit.xml").getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    props = {n: {p.get("name"): p.get("value") for p in c.iter("property")} for n, c in cases.items()}
    assert props["test_http[api-health]"]["severity"] == "P0"
    assert cases["test_http[api-health]"].find("failure").get("message") == "status == 'healthy': observed \"degraded\""
    assert cases["test_http[api-models]"].find("skipped").get("message").startswith("waived: waived until")
    assert cases["test_host[disk]"].find("failure") is None and props["test_host[disk]"]["gate_effect"] == "warn"
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert suites["shop@web-1"].get("failures") == "1" and suites["shop@db-1"].get("failures") == "0"


def test_junit_fails_closed_on_error(tmp_path):
    run = run_gate(tmp_path / "missing.json", "--junit", tmp_path / "junit.xml")
    assert run.returncode == 2
    error = ET.parse(tmp_path / "junit.xml").getroot().find(".//testcase[@name='gate default']/error")
    assert error is not None and "report not found" in error.get("message")


def test_prometheus_textfile_is_parseable_and_carries_status_values_verdict(tmp_path, failing):
    web, db, policy = failing
    out = tmp_path / "textfile" / "opsgate.prom"
    out.parent.mkdir()  # the textfile collector's folder exists; the gate creates no folders
    run = run_gate(web, db, "--policy", policy, "--gate", "deploy", "--prometheus", out)
    assert run.returncode == 1
    samples = {}
    for family in text_string_to_metric_families(out.read_text()):
        for s in family.samples:
            samples.setdefault(s.name, []).append(s)
    ok = {(s.labels["host"], s.labels["check"]): s.value for s in samples["opsgate_check_ok"]}
    assert ok[("web-1", "api-health")] == 0 and ok[("db-1", "db-port")] == 1
    health = [s for s in samples["opsgate_check_ok"] if s.labels["check"] == "api-health"][0]
    assert health.labels == {"environment": "shop", "host": "web-1", "cadence": "daily", "check": "api-health",
                             "kind": "http", "severity": "P0"}
    observed = {(s.labels["check"], s.labels["value"]): s.value for s in samples["opsgate_check_observed"]}
    assert observed[("api-health", "elapsed_ms")] == 41.5 and observed[("disk", "disk_used_percent")] == 83.1
    verdict = {s.labels["verdict"]: s.value for s in samples["opsgate_gate_verdict"]}
    assert verdict == {"PASS": 0, "WARN": 0, "FAIL": 1, "ERROR": 0}
    assert {s.labels["host"] for s in samples["opsgate_report_finished_timestamp_seconds"]} == {"web-1", "db-1"}
    assert [p.name for p in out.parent.iterdir()] == ["opsgate.prom"]  # no temp file left behind


@pytest.mark.parametrize("case, code, state", [
    ("pass", 0, "OK"), ("warn", 1, "WARNING"), ("fail", 2, "CRITICAL"), ("error", 3, "UNKNOWN")])
def test_nagios_line_and_exit_codes(tmp_path, case, code, state):
    checks = {"pass": [r.check("api")], "warn": [r.check("api", "warn")], "fail": [r.check("api", "fail", "P0")],
              "error": None}[case]
    path = r.write(tmp_path, r.document(checks)) if checks else tmp_path / "missing.json"
    run = run_gate(path, "--nagios")
    assert run.returncode == code, run.output
    line, = run.stdout.splitlines()
    assert line.startswith(f"OPSGATE {state} - gate default: ")
    status, perf = line.split(" | ")
    assert "checks=" in perf and "blocking=" in perf
    if case == "fail":
        assert "[P0 api]" in status


def test_junit_stays_well_formed_with_colour_codes_in_output(tmp_path):
    report = r.write(tmp_path, r.document([r.check("tests", "fail", "P0", "command",
                                                   message="\x1b[31mFAILED\x1b[0m test_login \x07")]))
    run_gate(report, "--junit", tmp_path / "junit.xml")
    failure = ET.parse(tmp_path / "junit.xml").getroot().find(".//failure")
    assert failure.get("message") == "FAILED test_login"


def test_prometheus_has_one_series_per_check_when_a_report_is_given_twice(tmp_path, failing):
    web, db, policy = failing
    out = tmp_path / "opsgate.prom"
    run_gate(web, web, db, "--policy", policy, "--gate", "deploy", "--prometheus", out)
    keys = [(s.name, tuple(sorted(s.labels.items()))) for f in text_string_to_metric_families(out.read_text())
            for s in f.samples]
    assert len(keys) == len(set(keys))


def test_reports_and_outputs_are_readable_by_other_users(tmp_path, failing):
    """A Nagios/NRPE gate often runs as another user than the suite."""
    web, db, policy = failing
    run_gate(web, "--policy", policy, "--gate", "deploy", "--junit", tmp_path / "j.xml", "--markdown", tmp_path / "s.md")
    old = os.umask(0o022)
    os.umask(old)
    for path in (tmp_path / "j.xml", tmp_path / "s.md"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~old
