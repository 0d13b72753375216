"""A throwaway opsgate project (checks/daily, env.yaml) and ``pytest`` run in it as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from opsgate.model import CADENCES, KINDS
from opsgate.report import RESERVED

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


def make_project(tmp_path: Path, env_text: str, extra: dict[str, str] | None = None, stubs: bool = False) -> Path:
    """``proj/checks/daily`` (opsgate collects the configured checks itself; ``stubs`` adds the
    old per-kind stub files, ``test_http.py`` ..., as projects made before issue 9 have them),
    ``proj/env.yaml``, and ``extra`` files in checks/daily."""
    project = tmp_path / "proj"
    daily = project / "checks" / "daily"
    daily.mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")  # rootdir: reports go to proj/reports
    for kind in KINDS if stubs else ():
        (daily / f"test_{kind}.py").write_text(f"def test_{kind}({kind}_check, verify):\n    verify({kind}_check)\n")
    for name, text in (extra or {}).items():
        (daily / name).write_text(text)
    (project / "env.yaml").write_text(env_text)
    return project


def start_pytest(project: Path, *args: str, env: dict[str, str] | None = None,
                 suite: str = "checks/daily") -> subprocess.Popen:
    """``pytest checks/daily --env env.yaml`` in ``project``, started (for tests that signal it);
    ``env`` adds variables to the run's environment; ``suite`` is the folder run."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "PYTEST_"))}
    environ.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "pytest", suite, "--env", "env.yaml", "-p", "no:cacheprovider",
                             "--policy", str(REPO / "config" / "gates.yaml"), *args],
                            cwd=project, env=environ, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run_pytest(project: Path, *args: str, timeout: float = 180, env: dict[str, str] | None = None,
               suite: str = "checks/daily") -> ProjectRun:
    proc = start_pytest(project, *args, env=env, suite=suite)
    output, _ = proc.communicate(timeout=timeout)
    latest = latest_report(project, Path(suite).name if Path(suite).name in CADENCES else "daily")
    return ProjectRun(proc.returncode, output, project, latest.read_text() if latest.exists() else "")


def reports_of(project: Path, environment: str | None = None) -> Path:
    """The folder a project's runs of one environment write to: ``reports/<environment>``
    (default: the one environment that wrote reports there, else ``default``)."""
    root = project / "reports"
    if environment is None:
        found = [d for d in root.iterdir() if d.is_dir() and d.name not in RESERVED] if root.is_dir() else []
        return found[0] if len(found) == 1 else root / "default"
    return root / environment


def latest_report(project: Path, cadence: str = "daily", environment: str | None = None) -> Path:
    """``reports/<environment>/<cadence>-latest.json`` of a project."""
    return reports_of(project, environment) / f"{cadence}-latest.json"
