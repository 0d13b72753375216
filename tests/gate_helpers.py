"""Run ``opsgate gate`` as a user would (a subprocess), and write gate policies."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class GateRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_gate(*args: str | Path, env: dict | None = None, cwd: Path = REPO) -> GateRun:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "GITHUB_"))}
    environ.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "opsgate.cli", "gate", *map(str, args), "--no-color"],
                          cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)
    return GateRun(proc.returncode, proc.stdout, proc.stderr)


def write_policy(folder: Path, text: str) -> Path:
    path = folder / "gates.yaml"
    path.write_text(text)
    return path
