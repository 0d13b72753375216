"""The ready-to-copy pipeline and timer definitions in ci/ parse, and the exact commands they
contain run the daily suite and the gate successfully.

Each command runs in a copy of the project (checks, config, fixtures, conftest, pyproject)
that shares this checkout's .venv; install steps (``bash ci/bootstrap.sh``) are the one
thing not re-run, since .venv is already set up. For systemd and cron, whose files name the
install folder /opt/opsgate, that folder is replaced by the copy's path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.gate_helpers import REPO

CI = REPO / "ci"
INSTALL = "bash ci/bootstrap.sh"


@pytest.fixture
def project(tmp_path) -> Path:
    copy = tmp_path / "opsgate"
    copy.mkdir()
    for name in ("checks", "config", "fixtures"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy(REPO / name, copy / name)
    (copy / ".venv").symlink_to(REPO / ".venv")
    return copy


def run(command: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "PYTEST_", "GITHUB_"))}
    environ.update(env or {})
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=environ, capture_output=True, text=True, timeout=300)


def assert_gated_run(proc: subprocess.CompletedProcess, command: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{command!r} exited {proc.returncode}:\n{out[-3000:]}"
    assert re.search(r"verdict: (PASS|WARN)", out), f"{command!r} printed no verdict:\n{out[-3000:]}"


def test_github_actions_workflow(project):
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert triggers["schedule"][0]["cron"] == "30 6 * * *"
    steps = workflow["jobs"]["daily"]["steps"]
    commands = [s["run"] for s in steps if "run" in s]
    assert commands[0] == INSTALL and any("pytest checks/daily --gate" in c for c in commands)
    assert any("opsgate gate" in c for c in commands)
    for command in commands[1:]:
        assert_gated_run(run(command, project), command)
    assert (project / "reports" / "default" / "daily-latest.json").is_file()
    assert (project / "reports" / "opsgate-junit.xml").read_text().startswith("<?xml")


def test_incident_jobs_run_by_hand_only(project):
    """The on-demand incident suite (diagnosis again, post-fix watches): a GitHub dispatch
    choice and a manual GitLab job, never a schedule; their commands run and gate it."""
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))
    assert triggers["workflow_dispatch"]["inputs"]["suite"]["options"] == ["daily", "incident"]
    job = workflow["jobs"]["incident"]
    assert "workflow_dispatch" in job["if"] and "schedule" in workflow["jobs"]["daily"]["if"]
    github = [s["run"] for s in job["steps"] if "run" in s]
    gitlab = yaml.safe_load((CI / "gitlab-ci.yml").read_text())["opsgate-incident"]
    assert gitlab["rules"][0] == {"if": '$CI_PIPELINE_SOURCE == "schedule"', "when": "never"}
    assert github[0] == gitlab["script"][0] == INSTALL and github[1:] == gitlab["script"][1:]
    for command in github[1:]:
        assert "checks/incident" in command
        assert_gated_run(run(command, project, {"OPSGATE_DEMO_WATCH": "2s"}), command)
    assert (project / "reports" / "default" / "incident-latest.json").is_file()


def test_gitlab_ci_job(project):
    job = yaml.safe_load((CI / "gitlab-ci.yml").read_text())["opsgate-daily"]
    assert job["script"][0] == INSTALL
    assert job["artifacts"]["reports"]["junit"] == "reports/opsgate-junit.xml"
    for command in job["script"][1:] + job["after_script"]:
        assert_gated_run(run(command, project), command)
    assert (project / "reports" / "opsgate-summary.md").read_text().startswith("## opsgate gate `daily`")


def _unit(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_units_verify(project, tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    textfile = tmp_path / "node-exporter"
    textfile.mkdir()
    service = (CI / "systemd" / "opsgate-daily.service").read_text()
    (units / "opsgate-daily.service").write_text(
        service.replace("/opt/opsgate", str(project)).replace("/var/lib/prometheus/node-exporter", str(textfile)))
    shutil.copy(CI / "systemd" / "opsgate-daily.timer", units / "opsgate-daily.timer")
    proc = subprocess.run(["systemd-analyze", "verify", "opsgate-daily.service", "opsgate-daily.timer"],
                          cwd=units, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr  # unknown keys are only warnings: none allowed
    calendar = _unit((units / "opsgate-daily.timer").read_text())["OnCalendar"][0]
    assert subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True).returncode == 0


def test_systemd_service_commands(project, tmp_path):
    textfile = tmp_path / "node-exporter"
    textfile.mkdir()
    unit = _unit((CI / "systemd" / "opsgate-daily.service").read_text()
                 .replace("/opt/opsgate", str(project)).replace("/var/lib/prometheus/node-exporter", str(textfile)))
    cwd = Path(unit["WorkingDirectory"][0])
    env = dict(e.split("=", 1) for e in unit.get("Environment", []))
    suite = unit["ExecStart"][0]
    assert suite.startswith("-"), "the suite's exit status is left to the gate in ExecStartPost"
    proc = run(suite[1:], cwd, env)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # checks ran; a failing check is the gate's call
    gate = unit["ExecStartPost"][0]
    proc = run(gate, cwd, env)
    assert_gated_run(proc, gate)
    assert "opsgate_gate_verdict" in (textfile / "opsgate.prom").read_text()


def test_cron_line(project):
    lines = [l for l in (CI / "cron" / "opsgate").read_text().splitlines() if l.strip() and not l.startswith("#")]
    entries = [l for l in lines if not re.match(r"^[A-Z_]+=", l)]
    assert len(entries) == 1
    minute, hour, day, month, weekday, user, command = entries[0].split(None, 6)
    assert 0 <= int(minute) <= 59 and 0 <= int(hour) <= 23 and (day, month, weekday) == ("*", "*", "*")
    assert user == "root"
    command = command.replace("/opt/opsgate", str(project))
    assert_gated_run(run(command, project), command)
