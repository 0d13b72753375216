"""An environment's severity scale is shown in its own labels: with ``severity_scale: P1-P4``
the runbook's P1 is printed P1 and ``-m P1`` selects it (not the user's P2); gates keep
judging on the one P0-P3 scale."""

from __future__ import annotations

import subprocess
import sys

from tests.support.project import make_project, run_pytest

ENV = """name: scaled
severity_scale: P1-P4
file:
  - {name: crit, severity: P1, path: /nonexistent/crit}
  - {name: low, severity: P3, path: /etc/hostname}
"""


def test_p1_on_a_p1_p4_scale_is_printed_and_selected_as_p1(tmp_path):
    project = make_project(tmp_path, ENV)
    run = run_pytest(project, "--gate", "daily")
    assert "P1  FAIL  test_file[crit]" in run.output, run.output
    assert "P0  FAIL" not in run.output
    assert "[P1] file crit" in run.output
    meta = {t["nodeid"].rsplit("::", 1)[-1]: t["metadata"]["opsgate"] for t in run.report()["tests"]}
    assert (meta["test_file[crit]"]["severity"], meta["test_file[crit]"]["severity_label"]) == ("P0", "P1")
    assert run.returncode == 1  # the gate still blocks on its most critical level

    selected = run_pytest(project, "-m", "P1", "--collect-only", "-q")
    assert "test_file[crit]" in selected.output and "test_file[low]" not in selected.output, selected.output
    third = run_pytest(project, "-m", "P3", "--collect-only", "-q")
    assert "test_file[low]" in third.output and "test_file[crit]" not in third.output, third.output


def test_opsgate_list_prints_the_environments_own_labels(tmp_path):
    project = make_project(tmp_path, ENV)
    out = subprocess.run([sys.executable, "-m", "opsgate.cli", "list", str(project / "env.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if "test_file[crit]" in line)
    assert " P1 " in f" {row} " and " P0 " not in f" {row} ", row
