"""The daily suite end to end: `pytest checks/daily` as an operator runs it, in a subprocess."""

from __future__ import annotations

import time

import pytest

from tests.support.http_target import HttpTarget


def test_default_environment_passes_with_the_demo_target(run_suite):
    """make daily on a healthy machine: the embedded demo is started, checked, stopped; PASS."""
    run = run_suite()
    assert run.returncode == 0, run.output
    # PASS, or WARN when this machine is busy (the host's CPU has a warn level only)
    assert "verdict: PASS" in run.output or "verdict: WARN" in run.output
    report = run.report()
    meta = report["opsgate"]
    assert meta["environment"] == "default" and meta["cadence"] == "daily"
    assert {"host", "version", "started_at", "finished_at"} <= set(meta)
    assert meta["counts"]["pass"] + meta["counts"]["warn"] == 9 and meta["counts"]["fail"] == 0
    ids = {t["nodeid"].split("::")[-1] for t in report["tests"]}
    assert {"test_http[demo-health]", "test_tcp[demo-port]", "test_process[demo-server]", "test_host[local]",
            "test_log[demo-log-errors]", "test_command[demo-selftest]", "test_file[demo-metrics-fresh]"} <= ids
    timestamped = [p for p in run.reports.glob("daily-2*.json")]
    assert len(timestamped) == 1 and timestamped[0].read_text() == (run.reports / "daily-latest.json").read_text()


@pytest.mark.parametrize("fault, failing, cause", [
    ("degraded", "test_http[demo-health]", "observed \"degraded\""),
    ("errors", "test_log[demo-log-errors]", "database connection lost"),
    ("no-models", "test_http[demo-models]", "length(models) > 0"),
    ("stale-metrics", "test_file[demo-metrics-fresh]", "age_s <= 60"),
])
def test_injected_fault_fails_the_check_that_names_it(run_suite, fault, failing, cause):
    run = run_suite(env={"OPSGATE_DEMO_FAULT": fault})
    assert run.returncode == 1, run.output
    line = next(l for l in run.output.splitlines() if failing in l and "FAIL" in l)
    assert cause in line
    assert "verdict: FAIL" in run.output
    check = run.check(failing.split("[")[1].rstrip("]"))
    assert check["outcome"] == "failed" and check["metadata"]["opsgate"]["status"] == "fail"


def test_unknown_fault_is_refused_before_any_check(run_suite):
    run = run_suite(env={"OPSGATE_DEMO_FAULT": "on-fire"})
    assert run.returncode != 0 and "on-fire" in run.output and "degraded" in run.output
    assert "passed" not in run.output


def test_bad_environment_stops_the_run_before_any_check(run_suite, write_env):
    path = write_env("name: x\nhttp:\n  - name: a\n    url: http://127.0.0.1:9/\n    timout: 1\n")
    run = run_suite("--env", str(path))
    assert run.returncode == 4, run.output
    assert f"{path}:5: http[0].timout (a): unknown key 'timout'" in run.output
    assert not run.reports.exists() and "collected" not in run.output


def test_env_is_selected_by_variable_too(run_suite, write_env):
    with HttpTarget() as target:
        path = write_env(f"name: via-var\nhttp:\n  - name: api\n    url: {target.url}/health\n")
        run = run_suite(env={"OPSGATE_ENV": str(path)})
    assert run.returncode == 0, run.output
    assert run.report()["opsgate"]["environment"] == "via-var"


def test_warning_passes_but_shows_in_terminal_and_report(run_suite, write_env):
    with HttpTarget() as target:
        path = write_env(f"""name: warned
http:
  - name: api
    severity: P1
    url: {target.url}/health
    expect: ["status == 'healthy'"]
    warn: ["metrics.cpu_percent < 20"]
""")
        run = run_suite("--env", str(path), "-v")
    assert run.returncode == 0, run.output
    assert "test_http[api] WARN" in run.output
    assert "P1  WARN    test_http[api]: metrics.cpu_percent < 20: observed 25.5" in run.output
    assert "verdict: WARN" in run.output
    meta = run.check("api")["metadata"]["opsgate"]
    assert meta["status"] == "warn" and run.check("api")["outcome"] == "warned"
    cond = next(c for c in meta["evidence"]["conditions"] if c["condition"].startswith("metrics.cpu"))
    assert (cond["observed"], cond["limit"], cond["level"], cond["ok"]) == (25.5, 20, "warn", False)


def test_severity_markers_select_checks(run_suite, write_env):
    with HttpTarget() as target:
        path = write_env(f"""name: marks
http:
  - {{name: p0-check, severity: P0, url: "{target.url}/health", tags: [api]}}
  - {{name: p3-check, severity: low, url: "{target.url}/health"}}
""")
        only_p0 = run_suite("--env", str(path), "-m", "P0")
        by_level = run_suite("--env", str(path), "-m", "severity(level='P3') or api", "-v")
    assert only_p0.returncode == 0 and "1 passed, 1 deselected" in only_p0.output, only_p0.output
    assert by_level.returncode == 0, by_level.output
    assert "2 passed" in by_level.output


def test_failed_prerequisite_blocks_its_dependents(run_suite, write_env):
    with HttpTarget() as target:
        path = write_env(f"""name: deps
tcp:
  - {{name: database, severity: P0, port: 1, timeout: 1}}
http:
  - {{name: api, url: "{target.url}/health", depends_on: [database]}}
  - {{name: reports, url: "{target.url}/health", depends_on: [database]}}
""")
        run = run_suite("--env", str(path))
    assert run.returncode == 1
    assert "blocked by database" in run.output
    assert run.check("api")["outcome"] == "skipped"


def test_probes_run_concurrently(run_suite, write_env):
    """Ten endpoints that each take 1 s are probed at once, not one after another: every probe
    started before the first one ended (read from the checks' own start times and durations,
    not from the wall clock, which a loaded machine stretches)."""
    with HttpTarget() as target:
        items = "\n".join(f"  - {{name: slow-{i}, url: \"{target.url}/slow/1000\", timeout: 30}}" for i in range(10))
        path = write_env(f"name: slow\nhttp:\n{items}\n")
        run = run_suite("--env", str(path))
    assert run.returncode == 0, run.output
    checks = [t["metadata"]["opsgate"] for t in run.report()["tests"]]
    assert len(checks) == 10
    last_start = max(c["started_at"] for c in checks)
    first_end = min(c["started_at"] + c["duration_s"] for c in checks)
    assert last_start < first_end, [(c["name"], c["started_at"], c["duration_s"]) for c in checks]


def test_retry_waits_until_healthy_in_the_suite(run_suite, write_env, tmp_path):
    marker = tmp_path / "ready.flag"
    path = write_env(f"""name: wait
file:
  - name: ready-flag
    path: {marker}
    retry: {{timeout: 10s, interval: 0.2s}}
command:
  - name: make-ready
    shell: "sleep 1; touch {marker}"
""")
    run = run_suite("--env", str(path))
    assert run.returncode == 0, run.output
    assert run.check("ready-flag")["metadata"]["opsgate"]["attempts"] > 1


def test_under_xdist_each_check_runs_once_and_the_report_counts_warnings(run_suite, write_env, tmp_path):
    """pytest -n 2 by habit: every worker collects every check, but each probe must run once."""
    log = tmp_path / "ran.log"
    env = write_env(f"""name: xdist
command:
  - {{name: a, shell: "echo a >> {log}"}}
  - {{name: b, shell: "echo b >> {log}"}}
  - {{name: c, shell: 'echo c >> {log}; echo "{{\\"ok\\": false}}"', warn: ["ok == true"]}}
  - {{name: d, shell: "echo d >> {log}"}}
""")
    run = run_suite("--env", str(env), "-n", "2")
    assert run.returncode == 0, run.output
    assert sorted(log.read_text().split()) == ["a", "b", "c", "d"]
    assert run.report()["opsgate"]["counts"]["warn"] == 1
    assert "checks: 3 pass, 1 warn, 0 fail" in run.output
