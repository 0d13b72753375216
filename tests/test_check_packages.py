"""``packages`` checks against real Python environments: opsgate's own .venv, and venvs made
in tmp_path (``python -m venv --without-pip``, pip copied in from .venv so no download is
needed) holding installed distributions described by real ``.dist-info`` metadata, which
``pip list`` and ``pip check`` read as they read any installed package.

Runbook steps protected here: "dependencies installed (pip list)", "pip check clean",
"known vulnerabilities (pip-audit)".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pip
import pytest

from opsgate.probes import ProbeContext
from opsgate.probes.packages import PackagesCheck
from opsgate.runner import run_check


def make_venv(root: Path, packages: dict[str, tuple[str, list[str]]]) -> Path:
    """A venv at ``root`` with pip and the given distributions (name -> (version, Requires-Dist
    lines)); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=60)
    python = root / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    site = Path(purelib)
    source = Path(pip.__file__).parent
    shutil.copytree(source, site / "pip")
    for info in source.parent.glob(f"pip-{pip.__version__}.dist-info"):
        shutil.copytree(info, site / info.name)
    for name, (version, requires) in packages.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
        lines += [f"Requires-Dist: {r}" for r in requires]
        (info / "METADATA").write_text("\n".join(lines) + "\n")
        (info / "INSTALLER").write_text("pip\n")
        (info / "RECORD").write_text("")
        (site / f"{name}.py").write_text("")
    return python


@pytest.fixture(scope="module")
def venvs(tmp_path_factory):
    root = tmp_path_factory.mktemp("venvs")
    healthy = make_venv(root / "healthy", {"appcore": ("2.4.0", ["helperlib>=1.0"]), "helperlib": ("1.2.0", [])})
    broken = make_venv(root / "broken", {"appcore": ("2.4.0", ["helperlib>=2.0", "absentlib"]),
                                         "helperlib": ("1.2.0", [])})
    return {"healthy": healthy, "broken": broken}


@pytest.fixture
def no_pip_audit(monkeypatch):
    """PATH without any pip-audit (the venvs have none installed)."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not shutil.which("pip-audit", path=p))
    monkeypatch.setenv("PATH", path)


def check(tmp_path, **fields):
    fields.setdefault("name", "env")
    fields.setdefault("timeout", 60)
    return run_check(PackagesCheck(**fields), ProbeContext(tmp_path))


def test_opsgates_own_environment_has_its_requirements(tmp_path):
    result = check(tmp_path, requirements=["pydantic>=2.6", "PyYAML>=6.0", "requests"], pip_check=False,
                   vulnerabilities="off")
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["python"] == sys.executable


def test_a_healthy_venv_passes(tmp_path, venvs, no_pip_audit):
    result = check(tmp_path, python=str(venvs["healthy"]), requirements=["appcore>=2.4,<3", "HelperLib~=1.2"])
    assert result.status == "pass", result.message
    observed = result.evidence["observed"]
    assert observed["installed"] == {"appcore>=2.4,<3": "2.4.0", "HelperLib~=1.2": "1.2.0"}
    assert observed["pip_check_problems"] == [] and observed["audit"] == "not installed"
    assert "vulnerabilities not checked: pip-audit is not installed" in result.evidence["details"]["note"]


@pytest.mark.negative("packages")
def test_a_missing_package_fails_naming_it(tmp_path, venvs):
    result = check(tmp_path, python=str(venvs["healthy"]), requirements=["appcore>=2", "Redis_Client>=5"],
                   vulnerabilities="off")
    assert result.status == "fail"
    assert "Redis_Client>=5 is installed at a matching version" in result.message
    assert "redis-client is not installed" in result.message
    assert "appcore>=2 is installed" not in result.message


@pytest.mark.negative("packages")
def test_a_too_old_version_fails_naming_the_installed_one(tmp_path, venvs):
    result = check(tmp_path, python=str(venvs["healthy"]), requirements=["helperlib>=1.5"], vulnerabilities="off")
    assert result.status == "fail"
    assert "helperlib 1.2.0 is installed, not >=1.5" in result.message


@pytest.mark.negative("packages")
def test_a_broken_requirement_fails_pip_check(tmp_path, venvs):
    result = check(tmp_path, python=str(venvs["broken"]), vulnerabilities="off")
    assert result.status == "fail"
    assert "pip check is clean: observed 2" in result.message
    assert "appcore 2.4.0 has requirement helperlib>=2.0, but you have helperlib 1.2.0" in result.message
    assert "appcore 2.4.0 requires absentlib, which is not installed" in result.message


@pytest.mark.negative("packages")
def test_pip_audit_required_but_absent_fails(tmp_path, venvs, no_pip_audit):
    result = check(tmp_path, python=str(venvs["healthy"]), vulnerabilities="required")
    assert result.status == "fail"
    assert "pip-audit finds no known vulnerability: observed \"not installed\"" in result.message


@pytest.mark.negative("packages")
def test_an_interpreter_that_does_not_exist_fails(tmp_path):
    result = check(tmp_path, python="venv/bin/python", requirements=["requests"])
    assert result.status == "fail"
    assert f"packages {tmp_path}/venv/bin/python: cannot run `python -m pip list`: No such file" in result.message


def test_requirements_are_checked_at_load():
    with pytest.raises(ValueError, match="expected a requirement line like requests>=2.31"):
        PackagesCheck(name="x", requirements=["requests >>= 2"])
    with pytest.raises(ValueError, match="without an environment marker"):
        PackagesCheck(name="x", requirements=["requests; sys_platform == 'linux'"])


# pip-audit asks a vulnerability service on the network, which this machine cannot reach: a
# stand-in `pip-audit` on PATH prints what the real one prints (its --format json report, or
# its error), so the probe's handling of each answer runs against a real process.
AUDIT_REPORT = {"dependencies": [
    {"name": "appcore", "version": "2.4.0", "vulns": [{"id": "PYSEC-2026-17", "fix_versions": ["2.4.1"],
                                                       "description": "..."}]},
    {"name": "helperlib", "version": "1.2.0", "vulns": []}], "fixes": []}


@pytest.fixture
def stand_in_pip_audit(tmp_path, monkeypatch, no_pip_audit):
    bin_dir = tmp_path / "audit-bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def answer(stdout: str, code: int, stderr: str = "") -> Path:
        seen = tmp_path / "audit-env"
        (bin_dir / "stdout").write_text(stdout)
        (bin_dir / "stderr").write_text(stderr)
        script = bin_dir / "pip-audit"
        script.write_text(f'#!/bin/sh\necho "$PIPAPI_PYTHON_LOCATION $*" > "{seen}"\n'
                          f'cat "{bin_dir}/stdout"; cat "{bin_dir}/stderr" >&2; exit {code}\n')
        script.chmod(0o755)
        return seen

    return answer


@pytest.mark.negative("packages")
def test_a_known_vulnerability_fails_naming_it(tmp_path, venvs, stand_in_pip_audit):
    seen = stand_in_pip_audit(json.dumps(AUDIT_REPORT), 1)
    result = check(tmp_path, python=str(venvs["healthy"]), vulnerabilities="required")
    assert result.status == "fail"
    assert 'pip-audit finds no known vulnerability: observed "vulnerable"' in result.message
    assert "appcore 2.4.0: PYSEC-2026-17 (fixed in 2.4.1)" in result.message
    assert seen.read_text().split()[0] == str(venvs["healthy"]), "pip-audit must read the checked interpreter"


def test_a_clean_audit_passes(tmp_path, venvs, stand_in_pip_audit):
    report = {"dependencies": [{**d, "vulns": []} for d in AUDIT_REPORT["dependencies"]]}
    stand_in_pip_audit(json.dumps(report), 0)
    result = check(tmp_path, python=str(venvs["healthy"]), vulnerabilities="required")
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["audit"] == "clean"


@pytest.mark.negative("packages")
def test_an_audit_that_cannot_reach_its_service_fails_in_its_words(tmp_path, venvs, stand_in_pip_audit):
    stand_in_pip_audit("", 1, "ERROR:pip_audit._cli:Connection error: Max retries exceeded with url: /pypi/appcore\n")
    result = check(tmp_path, python=str(venvs["healthy"]))
    assert result.status == "fail"
    assert "pip-audit exited 1 with no report: ERROR:pip_audit._cli:Connection error" in result.message
