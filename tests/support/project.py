"""A throwaway opsgate project (checks/daily, env.yaml) and ``pytest`` run in it as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from opsgate.model import KINDS

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ProjectRun:
    returncode: int
    output: str
    project: Path
    report_text: str  # the report this run wrote ("" if none)

    def report(self) -> dict:
        """This run's report (the seal is just its last key, opsgate_digest)."""
        return json.loads(self.report_text)

    def status(self) -> dict[str, str]:
        """test id -> opsgate status."""
        return {t["nodeid"].rsplit("::", 1)[-1]: t["metadata"]["opsgate"]["status"] for t in self.report()["tests"]}


def make_project(tmp_path: Path, env_text: str, extra: dict[str, str] | None = None) -> Path:
    project = tmp_path / "proj"
    daily = project / "checks" / "daily"
    daily.mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")  # rootdir: reports go to proj/reports
    for kind in KINDS:
        (daily / f"test_{kind}.py").write_text(f"def test_{kind}({kind}_check, verify):\n    verify({kind}_check)\n")
    for name, text in (extra or {}).items():
        (daily / name).write_text(text)
    (project / "env.yaml").write_text(env_text)
    return project


def start_pytest(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``pytest checks/daily --env env.yaml`` in ``project``, started (for tests that signal it);
    ``env`` adds variables to the run's environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "PYTEST_"))}
    environ.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "pytest", "checks/daily", "--env", "env.yaml", "-p", "no:cacheprovider",
                             "--policy", str(REPO / "config" / "gates.yaml"), *args],
                            cwd=project, env=environ, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run_pytest(project: Path, *args: str, timeout: float = 180, env: dict[str, str] | None = None) -> ProjectRun:
    proc = start_pytest(project, *args, env=env)
    output, _ = proc.communicate(timeout=timeout)
    latest = project / "reports" / "daily-latest.json"
    return ProjectRun(proc.returncode, output, project, latest.read_text() if latest.exists() else "")
