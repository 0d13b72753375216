"""A stand-in script started as its own process, so process, port and crash checks see a real
process; faults are switched while it runs through ``POST /_standin/fault`` ({"fault": NAME}),
answered only once the fault is in place (log lines written, state changed), so a check run
next sees it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.http_target import free_port


class StandIn:
    """A stand-in script started as a process: ``start()``, ``fault(name)``, ``crash()``, ``stop()``.

    ``script``: the stand-in's file; ``args``: its arguments besides ``--port``/``--dir``;
    ``env``: variables added to its environment (secrets go here, never on its command line)."""

    def __init__(self, script: Path, root: Path, args: tuple[str, ...] = (), env: dict[str, str] | None = None):
        self.script, self.root, self.args, self.env = Path(script), Path(root), args, env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "StandIn":
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "standin.err", "ab") as err:
            self.proc = subprocess.Popen([sys.executable, str(self.script), "--port", str(self.port),
                                          "--dir", str(self.root), *self.args], env={**os.environ, **self.env},
                                         cwd=self.root,
                                         stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.script.name} exited: {(self.root / 'standin.err').read_text()[-800:]}")
            try:
                self.fault("none")
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.script.name} did not answer on {self.url} within 20 s")

    def fault(self, name: str, **options) -> None:
        """Switch the running stand-in to fault ``name`` ("none": healthy again)."""
        body = json.dumps({"fault": name, **options}).encode()
        request = urllib.request.Request(f"{self.url}/_standin/fault", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as reply:
            reply.read()

    def crash(self) -> None:
        """The process dies (SIGKILL), as a crashed server does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> "StandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
