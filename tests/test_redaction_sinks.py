"""Redaction happens at the sinks (opsgate.redact.sink): a secret a check observed as a value,
whole and uncut, reaches none of the run's outputs: pytest's failure line, the summary, the
gate's lines or the report."""

from __future__ import annotations

from tests.support.project import make_project, run_pytest

TOKEN = "sink-Token-7f3a9c2e51"

ENV = """name: shop
command:
  - name: echo-status
    severity: P0
    shell: "printf '{{\\"status\\": \\"%s\\"}}' ${{API_TOKEN}}"
    expect: ["status == 'healthy'"]
"""


def test_a_secret_observed_as_a_value_reaches_no_output(tmp_path):
    project = make_project(tmp_path, ENV.format())
    run = run_pytest(project, "--gate", "daily", "-rA", env={"API_TOKEN": TOKEN})
    assert run.returncode == 1, run.output
    assert "status == 'healthy': observed" in run.output  # the failure is told ...
    assert "***" in run.output and TOKEN not in run.output  # ... without the value
    assert TOKEN not in run.report_text and "***" in run.report_text
