"""``command``: run argv or a shell line; exit code, stdout/stderr regex, JSON stdout conditions.

The command runs in its own process group so a timeout ends it and every child it
started (a shell pipeline cannot keep the probe waiting). Output is capped; the tail
of each stream, redacted, is the evidence.

>>> from opsgate.model import CommandCheck
>>> from opsgate.probes import ProbeContext
>>> obs = observe(CommandCheck(name="t", shell="echo 9/9 passed", stdout_regex="9/9 passed"), ProbeContext())
>>> obs.values["exit_code"], obs.values["stdout_regex_found"]
(0, True)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

from ..conditions import Condition
from ..model import CommandCheck
from ..redact import REDACTOR
from ..results import NO_DOCUMENT, Observation

_TAIL = 2000
_MAX_OUTPUT = 1 << 20


def _run(item: CommandCheck, ctx) -> tuple[int | None, str, str, float, bool]:
    env = dict(os.environ)
    env.update(item.env_values())
    cwd = ctx.path(item.cwd) if item.cwd else ctx.base_dir
    started = time.perf_counter()
    proc = subprocess.Popen(
        item.argv if item.argv else item.shell,
        shell=bool(item.shell), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=item.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:  # a grandchild holds the pipes: stop reading
            out, err = b"", b""
    return (None if timed_out else proc.returncode, _text(out), _text(err),
            round(time.perf_counter() - started, 4), timed_out)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _text(data: bytes | None) -> str:
    return (data or b"")[-_MAX_OUTPUT:].decode("utf-8", errors="replace")


def observe(item: CommandCheck, ctx) -> Observation:
    shown = " ".join(item.argv) if item.argv else item.shell
    try:
        code, out, err, elapsed, timed_out = _run(item, ctx)
    except OSError as exc:
        cause = exc.strerror or str(exc)
        if exc.filename and str(exc.filename) != (item.argv[0] if item.argv else ""):
            cause = f"{exc.filename}: {cause}"  # not the program: its working directory (or the shell)
        return Observation({"command": shown}, error=f"cannot run {shown!r}: {cause}")
    values: dict = {"command": shown, "exit_code": code, "duration_s": elapsed}
    details = {"stdout_tail": REDACTOR.text(out[-_TAIL:]), "stderr_tail": REDACTOR.text(err[-_TAIL:])}
    tail = " | ".join((err.strip() or out.strip()).splitlines())[-300:]
    explain = f"output: {tail}" if tail else None
    if timed_out:
        return Observation(values, error=f"{shown!r} did not finish within {item.timeout:g}s (killed)",
                           details=details, explain=explain)
    for key, pattern, text in (("stdout_regex_found", item.stdout_regex, out), ("stderr_regex_found", item.stderr_regex, err),
                               ("stdout_not_regex_found", item.stdout_not_regex, out)):
        if pattern:
            values[key] = bool(re.search(pattern, text, re.MULTILINE))
    document = NO_DOCUMENT
    if item.json_stdout or item.expect or item.warn:
        try:
            document = json.loads(out)
        except ValueError as exc:
            return Observation(values, error=f"stdout of {shown!r} is not JSON ({exc})", details=details, explain=explain)
    return Observation(values, document=document, details=details, explain=explain)


def limits(item: CommandCheck) -> list[Condition]:
    codes = item.exit_code if isinstance(item.exit_code, list) else [item.exit_code]
    out = [Condition.compare("exit_code", "in", codes, label=f"exit code in {codes}")
           if len(codes) > 1 else Condition.compare("exit_code", "==", codes[0], label=f"exit code == {codes[0]}")]
    if item.stdout_regex:
        out.append(Condition.compare("stdout_regex_found", "==", True, label=f"stdout matches /{item.stdout_regex}/"))
    if item.stderr_regex:
        out.append(Condition.compare("stderr_regex_found", "==", True, label=f"stderr matches /{item.stderr_regex}/"))
    if item.stdout_not_regex:
        out.append(Condition.compare("stdout_not_regex_found", "==", False, label=f"stdout has no /{item.stdout_not_regex}/"))
    return out
