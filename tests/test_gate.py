"""The gate's decision: severities, tolerance, WARN, waivers, root causes, several reports, exit codes."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.gate_helpers import REPO, run_gate, write_policy
from tests.support import reports as r

POLICY = """
gates:
  deploy:
    block: [P0, P1]
    warn: [P2, P3]
  strict:
    block: [P0, P1, P2, P3]
    warn_blocks: true
  tolerant:
    block: [P0, P1]
    warn: [P2]
    tolerate: {P1: 1}
waivers:
  - check: api-models
    justification: "models are being re-pulled after the upgrade, OPS-142"
    expires: %(future)s
  - check: old-*
    justification: "the old cluster is being retired, OPS-99"
    expires: %(past)s
  - check: cache-ping
    justification: "cache flaps during the migration, OPS-7"
    expires: %(future)s
""" % {"future": (date.today() + timedelta(days=30)).isoformat(), "past": (date.today() - timedelta(days=2)).isoformat()}


@pytest.fixture
def policy(tmp_path):
    return write_policy(tmp_path, POLICY)


def test_all_passing_is_pass_exit_0(tmp_path, policy):
    report = r.write(tmp_path, r.document([r.check("api-health", severity="P0"), r.check("db", severity="P1")]))
    run = run_gate(report, "--policy", policy, "--gate", "deploy")
    assert run.returncode == 0, run.output
    assert "verdict: PASS (exit 0)" in run.stdout


def test_blocking_severity_fails_with_the_cause_exit_1(tmp_path, policy):
    report = r.write(tmp_path, r.document([
        r.check("api-health", "fail", "P0", message="status == 'healthy': observed \"degraded\""),
        r.check("db", severity="P1")]))
    run = run_gate(report, "--policy", policy, "--gate", "deploy")
    assert run.returncode == 1, run.output
    assert "P0  FAIL  test_http[api-health] [web@web-1]: status == 'healthy': observed \"degraded\"" in run.stdout
    assert "verdict: FAIL (exit 1)" in run.stdout


def test_warn_only_severity_is_warn_exit_0_unless_warn_blocks(tmp_path, policy):
    report = r.write(tmp_path, r.document([r.check("api-health", severity="P0"), r.check("disk", "fail", "P2", "host")]))
    run = run_gate(report, "--policy", policy, "--gate", "deploy")
    assert run.returncode == 0 and "verdict: WARN (exit 0)" in run.stdout, run.output
    assert "P2 only warns in this gate" in run.stdout
    strict = run_gate(report, "--policy", policy, "--gate", "strict")
    assert strict.returncode == 1 and "verdict: FAIL" in strict.stdout, strict.output


def test_warn_level_breach_is_warn_and_warn_blocks_exits_1(tmp_path, policy):
    report = r.write(tmp_path, r.document([r.check("cpu", "warn", "P1", "host", message="cpu_percent < 90: observed 93")]))
    assert run_gate(report, "--policy", policy, "--gate", "deploy").returncode == 0
    strict = run_gate(report, "--policy", policy, "--gate", "strict")
    assert strict.returncode == 1, strict.output
    assert "verdict: WARN (exit 1, WARN blocks in this gate)" in strict.stdout


def test_tolerated_failures_warn_until_the_budget_is_spent(tmp_path, policy):
    one = r.write(tmp_path, r.document([r.check("a", "fail", "P1"), r.check("b")]), "one.json")
    run = run_gate(one, "--policy", policy, "--gate", "tolerant")
    assert run.returncode == 0 and "TOLERATED" in run.stdout and "P1 failure 1 of 1 tolerated" in run.stdout, run.output
    two = r.write(tmp_path, r.document([r.check("a", "fail", "P1"), r.check("b", "fail", "P1")]), "two.json")
    assert run_gate(two, "--policy", policy, "--gate", "tolerant").returncode == 1


def test_active_waiver_waives_the_failure_and_says_so(tmp_path, policy):
    report = r.write(tmp_path, r.document([r.check("api-health", severity="P0"), r.check("api-models", "fail", "P1")]))
    run = run_gate(report, "--policy", policy, "--gate", "deploy")
    assert run.returncode == 0, run.output
    assert "WAIVED  test_http[api-models]" in run.stdout
    assert "models are being re-pulled after the upgrade, OPS-142" in run.stdout


def test_expired_waiver_no_longer_applies_and_says_so(tmp_path, policy):
    report = r.write(tmp_path, r.document([r.check("old-api", "fail", "P1")]))
    run = run_gate(report, "--policy", policy, "--gate", "deploy")
    assert run.returncode == 1, run.output
    assert f"waiver for 'old-*' (the old cluster is being retired, OPS-99) expired on " \
           f"{(date.today() - timedelta(days=2)).isoformat()} and no longer applies" in run.stdout
    assert "test_http[old-api] counted normally" in run.stdout


def test_waiver_on_a_passing_check_is_reported_unused(tmp_path, policy):
    report = r.write(tmp_path, r.document([r.check("cache-ping", kind="tcp")]))
    run = run_gate(report, "--policy", policy, "--gate", "deploy")
    assert run.returncode == 0, run.output
    assert "waiver for 'cache-ping' (cache flaps during the migration, OPS-7) is unused: test_tcp[cache-ping] passed" in run.stdout


def test_one_stopped_database_is_one_root_cause_not_many_failures(tmp_path, policy):
    db = r.check("db-port", "fail", "P2", "tcp", message="127.0.0.1:5432: connection refused")
    dependents = [r.check(f"api-{i}", "blocked", "P0", blocked_by=["db-port"], message="not run: blocked by db-port (fail)")
                  for i in range(12)]
    report = r.write(tmp_path, r.document([db, *dependents]))
    run = run_gate(report, "--policy", policy, "--gate", "deploy")
    assert run.returncode == 1, run.output
    assert "FAIL: 1 root cause (db-port blocks 12)" in run.stdout
    root = [line for line in run.stdout.splitlines() if line.startswith("ROOT CAUSE")]
    # P2 on its own, but it blocks P0 checks: judged as P0
    assert root == ["ROOT CAUSE  P0  test_tcp[db-port] [web@web-1]: 127.0.0.1:5432: connection refused"]
    assert run.stdout.index("ROOT CAUSE") < run.stdout.index("verdict:")
    assert " FAIL  test_http[api-" not in run.stdout  # the blocked checks are not counted as failures


def test_several_reports_are_decided_together_and_broken_down_per_source(tmp_path, policy):
    web = r.write(tmp_path, r.document([r.check("api-health", severity="P0")], "web", "web-1"), "web.json")
    db = r.write(tmp_path, r.document([r.check("db-port", "fail", "P0", "tcp")], "db", "db-1"), "db.json")
    run = run_gate(web, db, "--policy", policy, "--gate", "deploy")
    assert run.returncode == 1, run.output
    assert "web@web-1: PASS (1 pass)" in run.stdout
    assert "db@db-1: FAIL (1 fail)" in run.stdout
    assert "2 checks ran in 2 reports" in run.stdout


def test_unknown_gate_and_a_bad_policy_are_errors_naming_file_line_key(tmp_path, policy):
    report = r.write(tmp_path, r.document([r.check("a")]))
    run = run_gate(report, "--policy", policy, "--gate", "nosuch")
    assert run.returncode == 2
    assert "expected a gate named 'nosuch', seen only: default, deploy, strict, tolerant" in run.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates:\n  deploy:\n    block: [P0]\n    warn: [P0, P9]\n    max_age: soon\n"
                   "waivers:\n  - check: x\n    justification: short\n    expires: 2026-01-01\n")
    run = run_gate(report, "--policy", bad, "--gate", "deploy")
    assert run.returncode == 2, run.output
    assert f"{bad}:4: gates.deploy.warn[1]: expected a severity (P0..P3 or critical/high/medium/low), seen 'P9'" in run.stderr
    assert f"{bad}:5: gates.deploy.max_age:" in run.stderr
    assert f"{bad}:8: waivers[0].justification: expected to have at least 10 characters" in run.stderr


def test_policy_rejects_a_severity_that_both_blocks_and_warns(tmp_path):
    report = r.write(tmp_path, r.document([r.check("a")]))
    bad = write_policy(tmp_path, "gates:\n  g:\n    block: [P0, P1]\n    warn: [P1]\n")
    run = run_gate(report, "--policy", bad, "--gate", "g")
    assert run.returncode == 2
    assert "gates.g: expected a severity in block or in warn, seen P1 in both" in run.stderr


def test_repository_gates_file_is_valid():
    from opsgate.gate import load_policy

    policy = load_policy(REPO / "config" / "gates.yaml")
    assert {"daily", "deploy", "maintenance", "dr-signoff", "default"} <= set(policy.gates)


def test_a_waiver_on_a_root_cause_does_not_cover_the_checks_it_blocked(tmp_path):
    policy = write_policy(tmp_path, "gates:\n  deploy: {block: [P0, P1], warn: [P2, P3]}\nwaivers:\n"
                                    "  - {check: cache-port, justification: 'cache being replaced, OPS-1', expires: 2099-01-01}\n")
    report = r.write(tmp_path, r.document([r.check("cache-port", "fail", "P3", "tcp"),
                                           r.check("checkout", "blocked", "P0", blocked_by=["cache-port"])]))
    run = run_gate(report, "--policy", policy, "--gate", "deploy")
    assert run.returncode == 1, run.output
    assert "waiver ignored: it excuses a P3 failure, but this blocks P0 checks" in run.stdout


def test_a_required_check_that_failed_blocks_even_when_waived(tmp_path):
    policy = write_policy(tmp_path, "gates:\n  deploy: {block: [P0], warn: [P1, P2, P3], require: [{id: api-health}]}\n"
                                    "waivers:\n  - {check: api-health, justification: 'known flake, OPS-2', expires: 2099-01-01}\n")
    report = r.write(tmp_path, r.document([r.check("api-health", "fail", "P2")]))
    run = run_gate(report, "--policy", policy, "--gate", "deploy")
    assert run.returncode == 1, run.output
    assert "'api-health' waiver does not apply to a required check; required by the gate (id api-health), so it blocks" \
        in run.stdout


def test_a_report_from_the_future_is_not_fresh(tmp_path):
    report = r.write(tmp_path, r.document([r.check("api-health")], age=-timedelta(days=300)))
    run = run_gate(report, "--policy", REPO / "config" / "gates.yaml", "--gate", "daily")
    assert run.returncode == 2, run.output
    assert "in the future: its age cannot be trusted (clock skew?)" in run.stdout


def test_a_nan_measurement_keeps_the_report_readable(tmp_path):
    """A NaN metric sample (valid in the Prometheus format) must not make the report unparseable."""
    import math

    from opsgate.report import write_report

    doc = r.document([r.check("latency", observed={"max": math.nan, "sum": math.inf, "samples": 2})])
    path = write_report(doc, tmp_path, "daily", 0.0)
    run = run_gate(path)
    assert run.returncode == 0, run.output
    assert "verdict: PASS" in run.stdout
