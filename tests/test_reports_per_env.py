"""Reports that belong to their environment (issue 9): ``reports/<environment>/<cadence>-latest.json``,
so runs of two environments never replace each other's verdict; a gate told which environment
it gates refuses another's report; old timestamped reports are pruned, per environment and
cadence, never ``-latest``, the run's own report or a concurrent run's."""

from __future__ import annotations

import json
import os
import time

import pytest

from opsgate.report import write_report
from tests.gate_helpers import REPO, run_gate
from tests.support.project import latest_report, make_project, reports_of, run_pytest

POLICY = str(REPO / "config" / "gates.yaml")
PASSING = "name: {name}\nfile:\n  - name: hostname\n    path: /etc/hostname\n    severity: P0\n"
FAILING = "name: {name}\nfile:\n  - name: missing\n    path: /nonexistent/opsgate-file\n    severity: P0\n"


def test_two_environments_keep_their_own_latest(tmp_path):
    """Old: both wrote reports/daily-latest.json; the second run's verdict replaced the first's."""
    project = make_project(tmp_path, PASSING.format(name="alpha"))
    (project / "beta.yaml").write_text(FAILING.format(name="beta"))
    assert run_pytest(project).returncode == 0
    beta = run_pytest(project, "--env", "beta.yaml")
    assert beta.returncode == 1, beta.output
    alpha_latest, beta_latest = latest_report(project, environment="alpha"), latest_report(project, environment="beta")
    assert json.loads(alpha_latest.read_text())["opsgate"]["environment"] == "alpha"
    assert json.loads(beta_latest.read_text())["opsgate"]["environment"] == "beta"
    assert run_gate(alpha_latest, "--policy", POLICY, "--gate", "daily").returncode == 0
    assert f"report: {reports_of(project, 'beta')}/daily-" in beta.output


def test_a_gate_refuses_a_report_of_another_environment(tmp_path):
    project = make_project(tmp_path, PASSING.format(name="alpha"))
    assert run_pytest(project).returncode == 0
    latest = latest_report(project, environment="alpha")
    assert run_gate(latest, "--environment", "alpha").returncode == 0
    wrong = run_gate(latest, "--environment", "prod")
    assert wrong.returncode == 2, wrong.output
    assert "a report of environment 'alpha'; this gate gates environment 'prod'" in wrong.stdout
    policy = tmp_path / "gates.yaml"
    policy.write_text("gates:\n  prod-deploy:\n    environment: prod\n")
    by_policy = run_gate(latest, "--policy", policy, "--gate", "prod-deploy")
    assert by_policy.returncode == 2 and "this gate gates environment 'prod'" in by_policy.stdout, by_policy.output
    # the run's own --gate reads the same policy: a run of alpha cannot pass prod's gate
    run = run_pytest(project, "--policy", str(policy), "--gate", "prod-deploy")
    assert run.returncode == 2 and "this gate gates environment 'prod'" in run.output, run.output


def _old_reports(folder, cadence: str, count: int, environment: str = "alpha") -> list:
    folder.mkdir(parents=True, exist_ok=True)
    day = 86400.0
    paths = [write_report({"opsgate": {"environment": environment}}, folder, cadence, 1_700_000_000 + i * day)
             for i in range(count)]
    past = time.time() - 3600
    for path in [*paths, folder / f"{cadence}-latest.json"]:
        os.utime(path, (past, past))
    return paths


def test_old_reports_are_pruned_per_environment_and_cadence(tmp_path):
    """Old: every run's report stayed forever."""
    project = make_project(tmp_path, PASSING.format(name="alpha"))
    folder = reports_of(project, "alpha")
    old_daily = _old_reports(folder, "daily", 6)
    old_weekly = _old_reports(folder, "weekly", 3)
    other_env = _old_reports(reports_of(project, "beta"), "daily", 6, "beta")
    run = run_pytest(project, "--keep-reports", "3")
    assert run.returncode == 0, run.output
    kept = sorted(p.name for p in folder.glob("daily-*.json") if p.name != "daily-latest.json")
    assert kept == sorted([old_daily[-1].name, old_daily[-2].name, _own(run)]), kept
    assert all(p.exists() for p in old_weekly + other_env)  # another cadence, another environment: untouched
    assert json.loads(latest_report(project, environment="alpha").read_text())["tests"]  # -latest is this run's
    run = run_pytest(project, env={"OPSGATE_KEEP_REPORTS": "1"})
    assert [p.name for p in folder.glob("daily-2*.json")] == [_own(run)]
    run = run_pytest(project, "--keep-reports", "0")  # 0 keeps them all
    assert len(list(folder.glob("daily-2*.json"))) == 2


def _own(run) -> str:
    line = next(l for l in run.output.splitlines() if l.startswith("report: "))
    return line.split("/")[-1].split()[0]


@pytest.mark.parametrize("value", ["-1", "many"])
def test_a_bad_keep_value_is_a_usage_error(tmp_path, value):
    project = make_project(tmp_path, PASSING.format(name="alpha"))
    run = run_pytest(project, env={"OPSGATE_KEEP_REPORTS": value})
    assert run.returncode == 4 and "OPSGATE_KEEP_REPORTS: expected" in run.output, run.output
    assert not (project / "reports").exists()


def test_pruning_spares_latest_own_and_concurrent_reports(tmp_path):
    from opsgate.report import prune_reports  # new in issue 9 (imported here so the other tests run on old code)

    paths = _old_reports(tmp_path, "daily", 5)
    started = time.time()
    concurrent = write_report({"opsgate": {}}, tmp_path, "daily", 1_600_000_000)  # old name, written after we started
    own = paths[0]  # the oldest name: still ours, so never deleted
    deleted = prune_reports(tmp_path, "daily", 2, protect=own, before=started)
    assert sorted(deleted) == sorted(paths[1:3]), deleted
    assert own.exists() and concurrent.exists() and (tmp_path / "daily-latest.json").exists()
