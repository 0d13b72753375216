"""A CLI that teaches (issue 10): help that says what opsgate is for with an example per
command; validate and list without the secrets set; list in columns; NO_COLOR; quiet end on a
closed pipe; the gate names the policy file it read. Each runs ``opsgate`` as a user would."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opsgate import envfile
from opsgate.redact import REDACTOR
from support.project import make_project, run_pytest

REPO = Path(__file__).resolve().parents[1]

ENV = """\
name: lint-me
http:
  - name: api
    url: ${LINT_API_URL}
    headers:
      Authorization: "Bearer ${LINT_API_TOKEN}"
    severity: P1
    cadence: [daily, weekly]
    retry: {timeout: 10m, interval: 30s}
  - name: on-port
    url: http://127.0.0.1:${LINT_API_PORT}/health
    timeout: ${LINT_TIMEOUT}
    depends_on: [db]
    window: {duration: 2m, interval: 15s}
postgres:
  - name: db
    dsn: postgresql://app:${LINT_PG_PASSWORD}@127.0.0.1:5432/app
    severity: P0
    cadence: quarterly
"""
UNSET = ("LINT_API_URL", "LINT_API_TOKEN", "LINT_API_PORT", "LINT_TIMEOUT", "LINT_PG_PASSWORD")


def _environ(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPSGATE_", "LINT_", "NO_COLOR", "FORCE_COLOR", "PY_COLORS"))}
    environ.update(extra)
    return environ


def opsgate(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "opsgate.cli", *args], cwd=cwd, env=env or _environ(),
                          capture_output=True, text=True, timeout=60)


def test_help_says_what_opsgate_is_for_with_the_three_jobs_and_the_gate():
    text = opsgate("--help").stdout
    assert "runbooks" in text and "through pytest" in text, text
    for job, folder in (("daily checks", "daily"), ("backup verification", "weekly"), ("DR drills", "quarterly")):
        assert re.search(rf"{job}\s+pytest checks/{folder} --env \w+", text), (job, text)
    assert re.search(r"gate\s+opsgate gate reports/\w+/daily-latest\.json", text), text


def test_every_subcommand_help_ends_with_an_example():
    text = opsgate("--help").stdout
    commands = re.findall(r"^    (\w+) +\S", text, re.M)
    assert {"validate", "schema", "list", "demo", "gate"} <= set(commands), text
    for command in commands:
        help_text = opsgate(command, "--help").stdout
        assert re.search(rf"^examples?:\n  opsgate {command}\b", help_text, re.M), (command, help_text)


def test_validate_and_list_work_without_the_secrets_and_name_them(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text(ENV)
    validate = opsgate("validate", str(env))
    assert validate.returncode == 0, validate.stderr
    assert validate.stdout.startswith("ok: ") and "3 checks" in validate.stdout
    notes = [line for line in validate.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and all(name in notes[0] for name in UNSET) and "--require-env" in notes[0], validate.stderr
    listed = opsgate("list", str(env))
    assert listed.returncode == 0, listed.stderr
    assert "(uses unset ${LINT_PG_PASSWORD})" in listed.stdout, listed.stdout
    assert all(name in listed.stderr for name in UNSET), listed.stderr


def test_require_env_makes_an_unset_variable_an_error(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text(ENV)
    for command in ("validate", "list"):
        run = opsgate(command, str(env), "--require-env")
        assert run.returncode == 1, run.stdout
        assert "expected environment variable LINT_PG_PASSWORD to be set, seen it unset" in run.stderr, run.stderr


def test_placeholders_fit_their_fields_and_are_never_secrets(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text(ENV)
    loaded = envfile.load(env, environ={}, allow_unset=True)
    assert loaded.unset == UNSET
    api, on_port = loaded.env.http
    assert api.url == "http://<unset:LINT_API_URL>"  # the field's scheme, so the URL pattern holds
    assert on_port.url == "http://127.0.0.1:<unset:LINT_API_PORT>/health" and on_port.timeout == 1
    assert loaded.env.postgres[0].dsn == "postgresql://app:<unset:LINT_PG_PASSWORD>@127.0.0.1:5432/app"
    for placeholder in ("<unset:LINT_PG_PASSWORD>", "<unset:LINT_API_TOKEN>"):
        assert REDACTOR.text(placeholder) == placeholder  # not registered as a secret's value
    assert loaded.unset_in == {("http", 0): ["LINT_API_URL", "LINT_API_TOKEN"],
                               ("http", 1): ["LINT_API_PORT", "LINT_TIMEOUT"], ("postgres", 0): ["LINT_PG_PASSWORD"]}


def test_a_placeholder_that_fits_nowhere_is_reported_clearly(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text("name: x\ntcp:\n  - name: t\n    host: 127.0.0.1\n    port: 1\n    cadence: ${LINT_CADENCE}\n")
    run = opsgate("validate", str(env))
    assert run.returncode == 1
    assert f"{env}:6: tcp[0].cadence: uses unset LINT_CADENCE: the placeholder does not fit here; " \
           "set it to check this value" in run.stderr, run.stderr


def test_a_run_still_needs_the_variables(tmp_path):
    project = make_project(tmp_path, ENV)
    run = run_pytest(project, timeout=120)
    assert run.returncode != 0
    assert "expected environment variable LINT_API_URL to be set" in run.output, run.output[-3000:]
    assert "<unset:" not in run.output


def test_list_shows_cadence_severity_retry_window_and_prerequisites_in_columns(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text(ENV)
    lines = opsgate("list", str(env), env=_environ(LINT_API_URL="http://127.0.0.1:9/", LINT_API_TOKEN="t0ken-value",
                                                   LINT_API_PORT="9", LINT_TIMEOUT="3",
                                                   LINT_PG_PASSWORD="pw-long-enough")).stdout.splitlines()
    header = lines[0]
    assert header.split() == ["CHECK", "CADENCE", "SEVERITY", "RETRY", "WINDOW", "AFTER"], lines
    starts = [header.index(word) for word in header.split()]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"test_http[api]", "test_http[on-port]", "test_postgres[db]"}, lines
    for row in rows.values():  # every column starts where its heading does
        for start in starts[1:]:
            assert row[start - 2:start] == "  " and row[start] != " ", (row, header)
    cells = {name: re.split(r"  +", row.strip()) for name, row in rows.items()}
    assert cells["test_http[api]"] == ["test_http[api]", "daily,weekly", "P1", "10m every 30s", "-", "-"]
    assert cells["test_http[on-port]"] == ["test_http[on-port]", "daily", "P2", "-", "2m every 15s", "db"]
    assert cells["test_postgres[db]"] == ["test_postgres[db]", "quarterly", "P0", "-", "-", "-"]


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """What ``opsgate`` prints with its stdout on a terminal (a pseudo-terminal)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "opsgate.cli", *args], cwd=REPO, env=env,
                            stdout=terminal, stderr=subprocess.DEVNULL)
    os.close(terminal)
    chunks, deadline = [], time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                data = os.read(controller, 4096)
            except OSError:  # the terminal closed: the process ended
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(controller)
    return b"".join(chunks).decode()


def test_gate_honours_no_color_on_a_terminal(tmp_path):
    args = ["gate", str(tmp_path / "missing.json")]
    assert "\033[" in _on_a_terminal(args, _environ())  # colours on a terminal...
    plain = _on_a_terminal(args, _environ(NO_COLOR="1"))
    assert "verdict: ERROR" in plain and "\033[" not in plain  # ...none with NO_COLOR


def test_the_pytest_run_honours_no_color(tmp_path):
    project = make_project(tmp_path, "name: x\ntcp:\n  - name: closed\n    host: 127.0.0.1\n    port: 1\n    timeout: 2\n")
    forced = run_pytest(project, env={"FORCE_COLOR": "1"}, timeout=120)
    assert "\033[" in forced.output  # pytest's terminal writer, colours forced...
    plain = run_pytest(project, env={"FORCE_COLOR": "1", "NO_COLOR": "1"}, timeout=120)
    assert "verdict:" in plain.output and "\033[" not in plain.output  # ...and NO_COLOR wins


@pytest.mark.parametrize("args", [["schema"], ["list"], ["validate", "default"], ["--help"], ["gate", "missing.json"]])
def test_a_closed_pipe_ends_quietly(args):
    reader, writer = os.pipe()
    os.close(reader)  # the reader has gone before anything is written: `opsgate schema | head -0`
    proc = subprocess.run([sys.executable, "-m", "opsgate.cli", *args], cwd=REPO, env=_environ(), stdout=writer,
                          stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(writer)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == (2 if args[0] == "gate" else 0)  # a gate's verdict stands: never a PASS


def test_schema_piped_into_head_ends_quietly():
    proc = subprocess.run(f"set -o pipefail; {sys.executable} -m opsgate.cli schema | head -1", shell=True,
                          executable="/bin/bash", cwd=REPO, env=_environ(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "{\n" and proc.stderr == "", proc.stderr


def test_gate_says_which_policy_it_read_or_where_it_looked(tmp_path):
    alone = opsgate("gate", "missing.json", cwd=tmp_path)
    assert alone.stdout.splitlines()[0] == (
        f"policy: none found (no --policy, no $OPSGATE_POLICY, no {tmp_path}/config/gates.yaml or .yml); "
        "only the built-in 'default' gate applies"), alone.stdout
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "gates.yaml").write_text("gates:\n  default: {}\n")
    found = opsgate("gate", "missing.json", cwd=tmp_path)
    assert found.stdout.splitlines()[0] == "policy: config/gates.yaml", found.stdout
    named = opsgate("gate", "missing.json", "--policy", str(REPO / "config" / "gates.yaml"), cwd=tmp_path)
    assert named.stdout.splitlines()[0] == f"policy: {REPO / 'config' / 'gates.yaml'}", named.stdout
