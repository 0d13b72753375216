"""The proof every reference system's example gives against its stand-in: a project running
its suites, and the judgement of a faulted run (exactly one check broken, at its severity; the
rest passing or blocked by it; the gate's verdict)."""

from __future__ import annotations

from pathlib import Path

from tests.support.project import ProjectRun, make_project, run_pytest


def example_project(tmp: Path, example: Path) -> Path:
    """A project holding the example as env.yaml, with every cadence's folder."""
    project = make_project(tmp, example.read_text())
    for cadence in ("weekly", "monthly", "quarterly", "incident"):
        (project / "checks" / cadence).mkdir()
    return project


def run_suite(project: Path, environ: dict[str, str], cadence: str) -> ProjectRun:
    """pytest checks/<cadence> --env env.yaml --gate daily, with the stand-in's variables."""
    return run_pytest(project, "--gate", "daily", "-v", env=environ, suite=f"checks/{cadence}", timeout=300)


def checks(run: ProjectRun) -> dict[str, dict]:
    """check name -> its metadata.opsgate (status, severity, message, blocked_by ...)."""
    return {t["metadata"]["opsgate"]["name"]: t["metadata"]["opsgate"] for t in run.report()["tests"]}


def assert_all_pass(run: ProjectRun, count: int) -> None:
    assert run.returncode == 0, run.output
    assert "verdict: PASS" in run.output
    found = checks(run)
    assert len(found) == count and {c["status"] for c in found.values()} == {"pass"}, run.output


def assert_only_broken(run: ProjectRun, failing: str, status: str, severity: str, verdict: str, cause: str) -> None:
    """``failing`` has ``status`` at ``severity`` naming ``cause``; every other check passed or
    is blocked by it (directly or through another blocked one); the gate says ``verdict``."""
    found = checks(run)
    broken = found.pop(failing)
    assert (broken["status"], broken["severity"]) == (status, severity), run.output
    assert cause in broken["message"], broken["message"]
    blocked = {name for name, c in found.items() if c["status"] == "blocked"}
    for name, check in found.items():
        assert check["status"] in ("pass", "blocked"), (name, check["status"], check["message"])
        if check["status"] == "blocked":
            assert set(check["blocked_by"]) <= {failing} | blocked, (name, check["blocked_by"])
    assert f"verdict: {verdict}" in run.output, run.output
    assert run.returncode == (1 if verdict == "FAIL" else 0)
