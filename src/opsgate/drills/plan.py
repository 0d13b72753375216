"""Plan mode: what a drill would do, step by step, with the scratch place and the port it
would use, touching nothing (no file, process, database or port is made).

>>> from opsgate.probes.drill import DrillCheck
>>> d = DrillCheck(name="dr", severity="P0", restore=[{"copy": "/srv/app"}],
...                install=[{"shell": "python -m venv .venv"}],
...                start={"argv": ["python", "-m", "app", "--port", "{{port}}"]},
...                healthy=[{"http": {"url": "{{url}}/health"}}])
>>> print("\\n".join(describe(d, port=8123, scratch="/tmp/opsgate-scratch-PID-drill-dr-XXXX")))
drill dr (P0): RTO target 15m00s, RPO target 1h00m00s, time limit 1h00m00s
  scratch: /tmp/opsgate-scratch-PID-drill-dr-XXXX (made when the drill runs), port 8123 (free now)
  1. restore: copy /srv/app -> /tmp/opsgate-scratch-PID-drill-dr-XXXX/copy
  2. install: python -m venv .venv  (in /tmp/opsgate-scratch-PID-drill-dr-XXXX/copy)
  3. start: python -m app --port 8123  (in /tmp/opsgate-scratch-PID-drill-dr-XXXX/copy)
  4. healthy: http dr.healthy.1 -> http://127.0.0.1:8123/health (retried until healthy)
  5. teardown: stop the started process group, drop scratch databases, remove the scratch place, check port 8123 free
"""

from __future__ import annotations

import os
import socket
import tempfile
from typing import Any

from . import placeholders
from .run import _clock


def describe(item: Any, port: int | None = None, scratch: str | None = None) -> list[str]:
    """The plan of ``item`` (a DrillCheck) as lines. ``port`` and ``scratch`` default to what
    the drill would pick now (a free port; a place under $OPSGATE_SCRATCH_DIR or the temp dir)."""
    if port is None:
        port = item.port or _free_port()
    held = item.port is not None and _held(item.port)
    if scratch is None:
        base = os.environ.get("OPSGATE_SCRATCH_DIR") or tempfile.gettempdir()
        scratch = os.path.join(base, f"opsgate-scratch-{os.getpid()}-drill-{item.name}-XXXX")
    copy = f"{scratch}/copy"
    values = {"port": str(port), "url": f"http://127.0.0.1:{port}", "scratch": scratch}
    lines = [f"drill {item.name} ({item.severity}): RTO target {_clock(item.rto_target())}, "
             f"RPO target {_clock(item.rpo_target())}, time limit {_clock(item.timeout)}",
             f"  scratch: {scratch} (made when the drill runs), port {port} "
             + ("(IN USE NOW: the drill would be refused)" if held else "(free now)")]
    steps = []
    for restore in item.restore:
        if restore.directory:
            values.setdefault("copy", copy)
            steps.append(f"restore: copy {restore.directory} -> {values['copy']}")
        else:
            target = f"{scratch}/restored/{restore.backup}"
            values[f"restored:{restore.backup}"] = target
            values.setdefault("restored", target)
            steps.append(f"restore: backup {restore.backup}, its newest recovery point -> a scratch target "
                         "(a scratch database, server or directory made for it)")
    where = values.get("copy", scratch)
    for command in item.install:
        steps.append(f"install: {_command(command, values)}  (in {where})")
    if item.start is not None:
        steps.append(f"start: {_command(item.start, values)}  (in {where})")
    for phase in ("healthy", "verify"):
        for index in range(len(getattr(item, phase))):
            check = item.step(phase, index, values, sample=True)  # a backup restores to an address known only then
            aim = _aim(check)
            retry = " (retried until healthy)" if phase == "healthy" and check.retry is None else ""
            steps.append(f"{phase}: {check.kind} {check.name}{' -> ' + aim if aim else ''}{retry}")
    steps.append("teardown: stop the started process group, drop scratch databases, remove the scratch place, "
                 f"check port {port} free")
    return lines + [f"  {n}. {text}" for n, text in enumerate(steps, 1)]


def _command(command: Any, values: dict[str, str]) -> str:
    return " ".join(placeholders.fill(list(command.argv), values)) if command.argv else placeholders.fill(
        command.shell, values)


def _aim(check: Any) -> str:
    for field in ("url", "dsn"):
        value = getattr(check, field, None)
        if value:
            from ..probes import target_name

            return value if field == "url" and "@" not in value else target_name(check.kind, value, 0)
    if getattr(check, "port", None):
        return f"127.0.0.1:{check.port}"
    if getattr(check, "argv", None):
        return " ".join(check.argv)
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _held(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
