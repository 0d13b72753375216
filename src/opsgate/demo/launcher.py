"""Start and stop the demo target as a real child process.

>>> demo = DemoProcess.start()
>>> import requests; requests.get(demo.url + "/health", timeout=5).json()["status"]
'healthy'
>>> demo.stop()
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path



class DemoError(RuntimeError):
    """The demo target could not be started."""


@dataclass
class DemoProcess:
    """A running demo: its URL, port, folder and process."""

    url: str
    port: int
    dir: Path
    process: subprocess.Popen
    fault: str

    @classmethod
    def start(cls, fault: str | None = None, timeout: float = 15.0) -> "DemoProcess":
        """Start the demo on a free loopback port and wait until it listens."""
        from .server import FAULTS  # the server's imports (psutil, requests) are paid by demo runs only

        fault = fault if fault is not None else (os.environ.get("OPSGATE_DEMO_FAULT") or "none")
        if fault not in FAULTS:
            raise DemoError(f"OPSGATE_DEMO_FAULT: expected one of {', '.join(FAULTS)}, seen {fault!r}")
        folder = Path(tempfile.mkdtemp(prefix="opsgate-demo-"))
        ready = folder / "ready.json"
        with (folder / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "opsgate.demo", "serve", "--dir", str(folder), "--fault", fault,
                 "--ready-file", str(ready), "--parent-pid", str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                err = (folder / "stderr.log").read_text(errors="replace")[-500:]
                shutil.rmtree(folder, ignore_errors=True)
                raise DemoError(f"the demo target did not start within {timeout:g}s: {err.strip() or 'no output'}")
            time.sleep(0.02)
        port = json.loads(ready.read_text())["port"]
        return cls(f"http://127.0.0.1:{port}", port, folder, process, fault)

    def environ(self) -> dict[str, str]:
        """The variables the embedded default environment reads."""
        return {
            "OPSGATE_DEMO_URL": self.url,
            "OPSGATE_DEMO_PORT": str(self.port),
            "OPSGATE_DEMO_DIR": str(self.dir),
            "OPSGATE_DEMO_PYTHON": sys.executable,
        }

    def stop(self) -> None:
        """Stop the process and remove its folder."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)
