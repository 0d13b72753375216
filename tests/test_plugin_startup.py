"""opsgate installed but not asked for costs a pytest run nothing: its entry point imports no
model, no pydantic, no engine; an opsgate run registers the run's plugins by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opsgate import plugin

HEAVY = ("pydantic", "opsgate.model", "opsgate.pytest_run", "opsgate.engine", "opsgate.envfile", "requests", "urllib3")

RECORD = '''
import json, sys
def pytest_sessionfinish(session):
    names = [n for n, p in session.config.pluginmanager.list_name_plugin() if n and n.startswith("opsgate")]
    with open({out!r}, "w") as f:
        json.dump({{"modules": sorted(sys.modules), "plugins": names}}, f)
'''


def _run(tmp_path: Path, *args: str, files: dict[str, str], env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "seen.json"
    for name, text in {"conftest.py": RECORD.format(out=str(out)), **files}.items():
        (tmp_path / name).write_text(text)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "PYTEST_"))}
    environ.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=tmp_path,
                          env=environ, capture_output=True, text=True, timeout=120)
    return proc, json.loads(out.read_text())


def test_a_plain_pytest_run_imports_no_model_and_registers_no_run(tmp_path):
    proc, seen = _run(tmp_path, "test_plain.py", files={"test_plain.py": "def test_one():\n    assert 1\n"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "opsgate.plugin" in seen["modules"]  # the entry point is loaded ...
    assert [m for m in HEAVY if m in seen["modules"]] == []  # ... and nothing heavy with it
    assert seen["plugins"] == ["opsgate"]


def test_a_test_asking_for_the_environment_makes_the_run_an_opsgate_run(tmp_path):
    (tmp_path / "env.yaml").write_text("name: lazy\nfile:\n  - name: hostname\n    path: /etc/hostname\n")
    # no cadence folder, no --env: the fixture alone activates opsgate (OPSGATE_ENV picks the file)
    proc, seen = _run(tmp_path, "test_env.py", env={"OPSGATE_ENV": str(tmp_path / "env.yaml")}, files={
        "test_env.py": "def test_env(opsgate_env):\n    assert opsgate_env.env.name == 'lazy'\n"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "opsgate.model" in seen["modules"]
    assert {"opsgate", "opsgate-collect", "opsgate-run", "opsgate-record", "opsgate-summary"} <= set(seen["plugins"])
    assert "opsgate-demo" not in seen["plugins"]  # a named environment starts no demo


def test_the_entry_points_cadences_are_the_models():
    from opsgate.model import CADENCES

    assert tuple(plugin.CADENCES) == tuple(CADENCES)


def test_enforced_markers_cost_a_plain_run_no_model(tmp_path):
    """``--strict-markers`` (or ``--markers``) makes the entry point register a marker per kind:
    it reads their names from the registry, so a plain run still imports no model, no pydantic
    and no kind's module, and a test marked with a kind's name is allowed."""
    proc, seen = _run(tmp_path, "test_plain.py", "--strict-markers", files={
        "test_plain.py": "import pytest\n\n\n@pytest.mark.http\ndef test_one():\n    assert 1\n"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [m for m in HEAVY if m in seen["modules"]] == []
    assert [m for m in seen["modules"] if m.startswith("opsgate.probes")] == []


def test_an_opsgate_run_imports_only_the_kinds_its_environment_uses(tmp_path):
    """The kinds' modules (each with its schema and client libraries) are imported when an
    environment uses them: a run of file checks imports the file kind's module and no other
    kind's (opsgate.kinds.REGISTRY, opsgate.model.environment_for)."""
    from opsgate.kinds import MODULES

    (tmp_path / "checks" / "daily").mkdir(parents=True)
    (tmp_path / "env.yaml").write_text("name: lazy\nfile:\n  - name: hostname\n    path: /etc/hostname\n")
    proc, seen = _run(tmp_path, "checks/daily", "--env", "env.yaml", "--no-report", files={})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    kinds = {m.rsplit(".", 1)[-1] for m in seen["modules"] if m.startswith("opsgate.probes.")} & set(MODULES)
    assert kinds == {"file"}, kinds
