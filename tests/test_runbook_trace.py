"""The runbook: section traces every runbook step to checks or says why none can do it;
a step that points nowhere, or is neither encoded nor classified, stops the load naming
file, line and key; opsgate list --runbook prints the trace (and --markdown writes it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsgate import envfile
from opsgate.cli import main as cli

ENV = """\
name: aura
severity_scale: P1-P4
http:
  - name: health
    url: http://127.0.0.1:8000/health
    severity: P1
command:
  - name: tests
    argv: ["true"]
    cadence: weekly
runbook:
  sources: [aura-maintenance-procedures.md, aura-incident-response.md]
  steps:
    - section: Daily Health Checks
      step: curl http://localhost:8000/health; status healthy
      source: aura-maintenance-procedures.md
      encoded: health
    - section: Weekly
      step: ./run_tests.sh reports 9/9
      source: aura-maintenance-procedures.md
      encoded: [tests, health]
      how: command
      why: the test runner is the system's own script
    - section: Communication
      step: notify stakeholders
      source: aura-incident-response.md
      not_automatable: a person decides and speaks
"""


def problems(path) -> list[str]:
    with pytest.raises(envfile.EnvFileError) as caught:
        envfile.load(path, environ={})
    return [str(p) for p in caught.value.problems]


def test_a_traced_runbook_loads(write_env):
    book = envfile.load(write_env(ENV), environ={}).env.runbook
    assert [s.names for s in book.steps] == [["health"], ["tests", "health"], []]
    assert [s.method for s in book.steps] == ["native", "command", ""]


def test_an_encoded_name_that_is_no_item_names_file_line_and_key(write_env):
    path = write_env(ENV.replace("encoded: [tests, health]", "encoded: [tests, helth]"))
    (message,) = problems(path)
    assert message == (f"{path}:21: runbook.steps[1].encoded[1]: "
                       "expected the name of an item of this environment, seen 'helth'")


def test_a_step_neither_encoded_nor_classified_is_refused(write_env):
    path = write_env(ENV.replace("      not_automatable: a person decides and speaks\n", ""))
    (message,) = problems(path)
    assert f"{path}:24: runbook.steps[2]" in message and "exactly one of encoded" in message and "seen neither" in message


def test_a_step_both_encoded_and_not_automatable_is_refused(write_env):
    path = write_env(ENV.replace("      encoded: health\n", "      encoded: health\n      not_automatable: people\n"))
    (message,) = problems(path)
    assert "runbook.steps[0]" in message and "seen both" in message


def test_a_command_step_without_why_is_refused(write_env):
    path = write_env(ENV.replace("      why: the test runner is the system's own script\n", ""))
    (message,) = problems(path)
    assert f"{path}:22: runbook.steps[1].how" in message and "expected why" in message


def test_a_source_not_listed_and_an_unknown_key_are_refused(write_env):
    path = write_env(ENV.replace("source: aura-incident-response.md", "source: other.md")
                     .replace("      encoded: health\n", "      encoded: health\n      checks: x\n"))
    found = problems(path)
    assert any("runbook.steps[0].checks" in p and "unknown key" in p for p in found), found


def test_list_runbook_prints_each_step_with_its_checks_and_the_counts(write_env, capsys):
    assert cli(["list", "--env", str(write_env(ENV)), "--runbook"]) == 0
    out = capsys.readouterr().out
    assert "health (http, daily, P1)" in out
    assert "tests (command, weekly, P3)" in out and "why command: the test runner" in out
    assert "not automatable: a person decides and speaks" in out
    assert out.strip().endswith("3 steps: 2 encoded (1 native, 1 command), 1 not automatable")


def test_list_runbook_markdown_to_a_file(write_env, tmp_path, capsys):
    target = tmp_path / "aura.md"
    assert cli(["list", "--env", str(write_env(ENV)), "--runbook", "--markdown", str(target)]) == 0
    text = target.read_text()
    assert text.startswith("# Runbook trace: aura")
    assert "## aura-maintenance-procedures.md" in text and "## aura-incident-response.md" in text
    assert "| Daily Health Checks | curl http://localhost:8000/health; status healthy | native | health (http, daily, P1) |" in text
    assert "wrote" in capsys.readouterr().out


def test_list_runbook_without_a_section_says_so(write_env, capsys):
    path = write_env(ENV.split("runbook:")[0])
    assert cli(["list", "--env", str(path), "--runbook"]) == 1
    assert "no runbook: section" in capsys.readouterr().err


def test_markdown_without_runbook_is_a_usage_error(write_env, capsys):
    assert cli(["list", "--env", str(write_env(ENV)), "--markdown"]) == 2
    assert "--markdown goes with --runbook" in capsys.readouterr().err


def test_auras_trace_puts_its_post_fix_watch_in_the_incident_suite():
    """The runbooks' "monitor for 30 minutes" (post-maintenance), "monitor for 15 minutes"
    (hotfix) and "monitor for resolution" (P1) are the incident suite's watch, never a
    scheduled suite's; the daily checks are the incident guide's diagnosis too."""
    examples = Path(__file__).resolve().parents[1] / "config" / "examples"
    env = envfile.load(examples / "aura.yaml", environ={}).env
    steps = {step.step: step.names for step in env.runbook.steps if "post-fix-watch" in step.names}
    assert {"monitor for 30 minutes minimum", "5. monitor for 15 minutes (tail -f logs/aura.log)",
            "5. monitor for resolution"} <= set(steps), steps
    watch = next(item for item in env.items() if item.name == "post-fix-watch")
    assert watch.cadence == ["incident"] and watch.window is not None
    assert {i.name for i in env.items(cadence="daily")} < {i.name for i in env.items(cadence="incident")}
    trace = (examples / "aura.md").read_text()
    assert "| Maintenance Checklist: Post | monitor for 30 minutes minimum | native | post-fix-watch (http, incident, P1) |" in trace


@pytest.mark.parametrize("system", ["aura", "perfect-jarvis", "living-codex", "personal-ai-chatbot"])
def test_generated_trace_matches_its_example(system, tmp_path, capsys):
    """config/examples/<system>.md is what opsgate list --runbook --markdown writes for it."""
    examples = Path(__file__).resolve().parents[1] / "config" / "examples"
    assert cli(["list", "--env", str(examples / f"{system}.yaml"), "--runbook", "--markdown", str(tmp_path / "out.md")]) == 0
    assert (tmp_path / "out.md").read_text() == (examples / f"{system}.md").read_text(), \
        f"regenerate: opsgate list --env config/examples/{system}.yaml --runbook --markdown config/examples/{system}.md"
