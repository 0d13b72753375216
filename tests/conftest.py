"""Shared helpers for opsgate's own tests: run the real suite in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # a check kind's negative test: its target broken in one way, the failure naming the cause
    # (tests/test_kind_registry.py proves every registered kind has one)
    config.addinivalue_line("markers", "negative(kind): a negative test of that check kind")


@dataclass
class SuiteRun:
    returncode: int
    output: str
    reports: Path

    def report(self) -> dict:
        """This run's report: daily-latest.json, or daily-partial-latest.json after -k/-m or a file."""
        written = [p for p in (self.reports / "daily-latest.json", self.reports / "daily-partial-latest.json") if p.exists()]
        text = max(written, key=lambda p: p.stat().st_mtime_ns).read_text()
        return json.loads(text)  # the seal is just its last key, opsgate_digest

    def check(self, name: str) -> dict:
        for test in self.report()["tests"]:
            if test["nodeid"].endswith(f"[{name}]"):
                return test
        raise KeyError(name)


@pytest.fixture
def run_suite(tmp_path):
    """Run ``pytest checks/daily`` as a user would, in a subprocess, reports into tmp_path."""

    def run(*args: str, env: dict | None = None, timeout: float = 120, paths: tuple = ("checks/daily",)) -> SuiteRun:
        reports = tmp_path / "reports"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "PYTEST_"))}
        environ.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", *paths, "--reports-dir", str(reports), "-p", "no:cacheprovider", *args],
            cwd=REPO, env=environ, capture_output=True, text=True, timeout=timeout,
        )
        # reports/<environment>/: the one environment this run wrote, else the embedded default's
        written = [d for d in reports.iterdir() if d.is_dir() and d.name != "drills"] if reports.is_dir() else []
        return SuiteRun(proc.returncode, proc.stdout + proc.stderr, written[0] if len(written) == 1 else reports / "default")

    return run


@pytest.fixture
def write_env(tmp_path):
    """Write an environment YAML into tmp_path and return its path."""

    def write(text: str, name: str = "env.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
