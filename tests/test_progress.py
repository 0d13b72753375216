"""Progress on long runs (issue 10): a run that lasts more than 2 s shows, on a terminal, a live
line redrawn in place (checks done of total, what the others wait for, elapsed time) and
cleared before pytest writes again; in a pipe (CI logs) a plain line at most every interval;
a short run prints nothing. Each test runs ``pytest checks/daily`` in a throwaway project, on a
real pseudo-terminal or a real pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from tests.support.http_target import free_port
from tests.support.project import REPO, make_project, run_pytest

WINDOW = "name: shop\nfile:\n  - name: stable-file\n    path: /etc/hostname\n    window: {duration: 4s, interval: 1s}\n"
QUICK = "name: shop\nfile:\n  - name: hostname\n    path: /etc/hostname\n"


def _environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "PYTEST_"))}
    environ.update(extra or {})
    return environ


def _on_a_terminal(project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """``pytest checks/daily`` with a pseudo-terminal (120 columns) as its stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "checks/daily", "--env", "env.yaml", "-p", "no:cacheprovider",
                             "--policy", str(REPO / "config" / "gates.yaml"), *args],
                            cwd=project, env=_environ(env), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        proc.kill() if proc.poll() is None else None
        proc.wait(timeout=10)
    return b"".join(chunks).decode("utf-8", "replace")


def _screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: each ``\\r`` returns to the line's start and the
    characters after it overwrite those there (colour codes dropped)."""
    lines = []
    for row in re.sub(r"\x1b\[[0-9;]*m", "", raw).replace("\r\n", "\n").split("\n"):
        cells: list[str] = []
        for part_index, part in enumerate(row.split("\r")):
            for col, char in enumerate(part):
                if col < len(cells):
                    cells[col] = char
                else:
                    cells.append(char)
        lines.append("".join(cells).rstrip())
    return lines


def test_a_long_run_shows_a_live_line_on_a_terminal(tmp_path):
    """Old: a 4 s stability window was 4 s of silence. Now the line counts the samples, is
    redrawn in place, and is gone from the screen when pytest writes the test's dot."""
    project = make_project(tmp_path, WINDOW)
    raw = _on_a_terminal(project)
    assert "1 passed" in raw, raw
    live = re.findall(r"\ropsgate: 0/1 done, \d+s; stable-file: window sample (\d)/5", raw)
    assert len(set(live)) >= 2, raw  # redrawn as the samples come in
    screen = _screen(raw)
    assert not any("opsgate: 0/1" in line for line in screen), screen  # cleared
    dots = [line for line in screen if line.startswith("checks/daily")]
    assert dots and re.fullmatch(r"checks/daily \.\s+\[100%\]", dots[0]), screen  # pytest's line intact


def test_a_short_run_prints_no_progress(tmp_path):
    project = make_project(tmp_path, QUICK)
    raw = _on_a_terminal(project)
    assert "1 passed" in raw and "opsgate: 0/1" not in raw, raw


def _timed_lines(project: Path, env: dict[str, str], *args: str) -> tuple[list[tuple[float, str]], int]:
    """The run's output through a pipe, each line with when it arrived."""
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "checks/daily", "--env", "env.yaml", "-p", "no:cacheprovider",
                             "--policy", str(REPO / "config" / "gates.yaml"), *args],
                            cwd=project, env=_environ(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    start, lines = time.monotonic(), []
    for line in proc.stdout:
        lines.append((time.monotonic() - start, line))
    return lines, proc.wait(timeout=60)


def test_in_a_pipe_a_plain_line_at_most_every_interval(tmp_path):
    """CI logs get whole lines, no ``\\r``: with a 1 s interval, one line a second at most
    (the run takes ~4 s and the first line waits 2 s); with the default 10 s, just one."""
    project = make_project(tmp_path, WINDOW)
    lines, code = _timed_lines(project, {"OPSGATE_PROGRESS_INTERVAL": "1"})
    text = "".join(line for _, line in lines)
    progress = [(at, line) for at, line in lines if line.startswith("opsgate: 0/1 done")]
    assert code == 0 and "\r" not in text, text
    assert 1 <= len(progress) <= 4, text
    assert all("stable-file: window sample" in line for _, line in progress), text
    shown = [int(re.search(r"done, (\d+)s", line)[1]) for _, line in progress]
    assert all(b - a >= 1 for a, b in zip(shown, shown[1:])), text  # elapsed as written: >= 1 s apart
    assert re.search(r"^checks/daily \.\s+\[100%\]$", text, re.M), text  # pytest's own line goes on

    lines, code = _timed_lines(project, {}, "-q")
    progress = [line for _, line in lines if line.startswith("opsgate: 0/1 done")]
    assert code == 0 and len(progress) == 1, lines  # -q keeps the line; 10 s by default


def test_the_line_says_why_checks_wait(tmp_path):
    """Retry until healthy counts its attempts; a check behind a prerequisite names it."""
    env = (f"name: shop\nfile:\n  - name: marker\n    path: {tmp_path}/never-there\n"
           "    retry: {timeout: 3s, interval: 0.5s}\n"
           f"tcp:\n  - name: api-port\n    port: {free_port()}\n    depends_on: [marker]\n")
    project = make_project(tmp_path, env)
    lines, code = _timed_lines(project, {"OPSGATE_PROGRESS_DELAY": "0.5", "OPSGATE_PROGRESS_INTERVAL": "0.5"})
    text = "".join(line for _, line in lines)
    assert code == 1, text
    progress = [line for _, line in lines if line.startswith("opsgate: 0/2 done")]
    assert progress, text
    assert any(re.search(r"; marker: retry until healthy, attempt [2-9](;|$)", line) for line in progress), text
    assert all("; api-port: waiting for a prerequisite marker" in line for line in progress), text


def test_xdist_and_a_bad_interval(tmp_path):
    """pytest-xdist workers run their checks inline and print nothing of their own; a bad
    interval is a clear error naming the variable."""
    project = make_project(tmp_path, WINDOW)
    run = run_pytest(project, "-n", "2", "-q")
    assert run.returncode == 0 and "1 passed" in run.output, run.output
    bad = run_pytest(project, env={"OPSGATE_PROGRESS_INTERVAL": "soon"})
    assert bad.returncode != 0 and "OPSGATE_PROGRESS_INTERVAL" in bad.output and "'soon'" in bad.output, bad.output
