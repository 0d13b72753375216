"""The incident cadence (issue 13): ``pytest checks/incident`` runs a runbook's on-demand
diagnosis and its post-fix watches (a window sampled for minutes after a fix), so the daily
suite no longer waits for them. It works out of the box like every other cadence folder: with
the embedded default, with an environment, and - for an environment with no incident check - it
says that zero checks ran (a gate ERROR) instead of passing on nothing."""

from __future__ import annotations

import json

from tests.support.http_target import HttpTarget
from tests.support.project import latest_report, make_project, run_pytest

WATCHED = """name: shop
http:
  - name: api-health
    url: {api}/health
    severity: P1
    cadence: [daily, incident]
    expect: ["status == 'healthy'"]
  - name: stable-after-fix
    url: {api}/health
    severity: P1
    cadence: incident
    window: {{duration: 1s, interval: 0.25s}}
    expect: ["status == 'healthy'"]
    depends_on: [api-health]
  - name: degraded-after-fix
    url: {api}/degraded
    severity: P2
    cadence: incident
    window: {{duration: 1s, interval: 0.25s}}
    expect: ["status == 'healthy'"]
"""


def _incident_folder(project):
    folder = project / "checks" / "incident"
    folder.mkdir()
    (folder / "README.md").write_text("on-demand incident checks\n")


def test_embedded_default_runs_the_incident_suite(run_suite):
    """With no --env: the demo's diagnosis again, then its post-fix watch, in
    reports/default/incident-latest.json; the daily suite does not carry the watch."""
    run = run_suite(env={"OPSGATE_DEMO_WATCH": "2s"}, paths=("checks/incident",))
    report = json.loads((run.reports / "incident-latest.json").read_text())
    statuses = {t["metadata"]["opsgate"]["name"]: t["metadata"]["opsgate"]["status"] for t in report["tests"]}
    assert run.returncode in (0, 1) and report["opsgate"]["cadence"] == "incident", run.output
    assert {"demo-port", "demo-health", "demo-stable"} <= set(statuses), statuses
    assert statuses["demo-stable"] in ("pass", "warn"), run.output
    assert report["opsgate"]["not_run"] == []
    daily = run_suite("--collect-only", "-q")
    assert "test_http[demo-health]" in daily.output and "demo-stable" not in daily.output, daily.output


def test_an_environment_runs_its_incident_checks_and_daily_skips_the_watches(tmp_path):
    """checks/incident runs the items whose cadence includes incident (a failing watch fails
    with its cause); checks/daily runs the diagnosis only, without waiting for any window."""
    with HttpTarget() as api:
        project = make_project(tmp_path, WATCHED.format(api=api.url))
        _incident_folder(project)
        incident = run_pytest(project, "--gate", "daily", suite="checks/incident")
        daily = run_pytest(project, "--gate", "daily")
    assert incident.status() == {"test_http[api-health]": "pass", "test_http[stable-after-fix]": "pass",
                                 "test_http[degraded-after-fix]": "fail"}, incident.output
    assert incident.report()["opsgate"]["cadence"] == "incident" and incident.report()["opsgate"]["not_run"] == []
    assert latest_report(project, "incident").is_file()
    failed = next(t for t in incident.report()["tests"] if t["metadata"]["opsgate"]["name"] == "degraded-after-fix")
    assert "degraded" in failed["metadata"]["opsgate"]["message"], failed
    assert incident.returncode == 0 and "verdict: WARN" in incident.output, incident.output  # P2 only warns
    assert daily.status() == {"test_http[api-health]": "pass"} and daily.returncode == 0, daily.output


def test_an_environment_without_incident_checks_says_zero_ran(tmp_path):
    """As checks/monthly does for an environment with no monthly check: no silent exit 5 - the
    summary says zero checks ran, the report says so, and a gate is ERROR (exit 2)."""
    project = make_project(tmp_path, "name: shop\nfile:\n  - name: h\n    path: /etc/hostname\n")
    _incident_folder(project)
    run = run_pytest(project, suite="checks/incident")
    assert "zero checks ran" in run.output and "verdict: ERROR" in run.output, run.output
    assert run.report()["opsgate"]["cadence"] == "incident" and run.report()["tests"] == []
    gated = run_pytest(project, "--gate", "daily", suite="checks/incident")
    assert gated.returncode == 2 and "zero checks ran" in gated.output, gated.output


def test_a_missing_incident_folder_is_a_usage_error(tmp_path):
    """As for every cadence folder: exit 4 naming the folder, and no report."""
    project = make_project(tmp_path, "name: shop\nfile:\n  - name: h\n    path: /etc/hostname\n    cadence: incident\n")
    run = run_pytest(project, suite="checks/incident")
    assert run.returncode == 4 and "checks/incident does not exist" in run.output, run.output
    assert not (project / "reports").exists()


def test_an_incident_run_that_collects_a_triage_puts_its_own_failures_in_the_timeline(tmp_path):
    """triage: on_failure after an incident run: the review's timeline is that run's (its watch
    that failed), not the last daily report's - there is none here, and it would be stale."""
    env = WATCHED.replace("name: shop\n", "name: shop\ntriage: {{on_failure: [P1], timeout: 5s}}\n", 1)
    env = env.replace("url: {api}/degraded\n    severity: P2", "url: {api}/degraded\n    severity: P1")
    with HttpTarget() as api:
        project = make_project(tmp_path, env.format(api=api.url))
        _incident_folder(project)
        run = run_pytest(project, suite="checks/incident")
    assert run.returncode == 1 and "collected after: P1 degraded-after-fix" in run.output, run.output
    (incident,) = (project / "reports" / "incidents").iterdir()
    timeline = (incident / "review.md").read_text().split("## Timeline", 1)[1].split("## Evidence", 1)[0]
    assert "incident run started" in timeline and "P1 FAIL test_http[degraded-after-fix]" in timeline, timeline
    assert "incident run finished: verdict FAIL" in timeline and "daily run" not in timeline, timeline
    assert "latest daily report was not used" not in (incident / "review.md").read_text()
