"""Aura Model 1 GLM, standing in: an install folder laid out like Numtema_AGENCY (backend/,
frontend/, config/, docs/, logs/aura.log, logs/metrics.jsonl, logs/alerts.jsonl, run_tests.sh,
validate_integration.py, requirements.txt), its ``backend/server.py`` running as a real process
on a free port answering ``/health`` like the runbook's payload and serving the UI (with CORS), its
``backend/monitoring.py`` running and appending a sample to metrics.jsonl, and a hotfix backup
``Numtema_AGENCY_backup_<time>`` beside the install; torch and transformers "installed" as
their metadata on ``PYTHONPATH`` (what ``pip list`` reads).

The server reads ``.standin-state.json`` on every request, so a switch takes effect at once;
``relapse`` (a fix that does not hold) answers healthy at first, then degraded.
:meth:`AuraStandIn.fault` breaks it one way and puts it back afterwards::

    with AuraStandIn(tmp) as aura, aura.fault("degraded"):
        ...  # run the suite with aura.environ()
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from tests.support.http_target import free_port

HEALTHY_STATE = {"status": "healthy", "cpu_percent": 25.5, "memory_percent": 45.2, "disk_usage_percent": 7.0,
                 "alerts": []}

SERVER_PY = r'''"""Aura's server, standing in: /health as the runbook shows it, the UI at /."""
import json, os, socket, sys, threading, time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOME = Path(__file__).resolve().parents[1]
ANSWERED, COUNTING = {}, threading.Lock()  # relapse token -> /health answers given since the switch

def state():
    try:
        return json.loads((HOME / ".standin-state.json").read_text())
    except (OSError, ValueError):
        return {"status": "healthy", "cpu_percent": 25.5, "memory_percent": 45.2, "disk_usage_percent": 7.0, "alerts": []}

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/health":
            s = state()
            if s.get("relapse_after") is not None and "Origin" not in self.headers:
                with COUNTING:  # a browser's request (CORS) is not counted: it reads headers only
                    seen = ANSWERED[s["relapse_token"]] = ANSWERED.get(s["relapse_token"], 0) + 1
                if seen > s["relapse_after"]:
                    s = {**s, "status": "degraded"}
            body = json.dumps({
                "status": s["status"], "timestamp": datetime.now(timezone.utc).isoformat(),
                "checks": {"cpu_healthy": s["cpu_percent"] < 80, "memory_healthy": s["memory_percent"] < 80,
                           "disk_healthy": s["disk_usage_percent"] < 80, "server_responsive": True},
                "metrics": {"cpu_percent": s["cpu_percent"], "memory_percent": s["memory_percent"],
                            "disk_usage_percent": s["disk_usage_percent"], "active_connections": 3},
                "alerts": s["alerts"]}).encode()
            kind = "application/json"
        elif self.path in ("/", "/index.html"):
            body, kind = (HOME / "frontend" / "index.html").read_bytes(), "text/html"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        if state().get("cors", True):
            self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

port = int(os.environ.get("AURA_PORT", "8000"))
while True:  # like the real one: port 8000 held by another process, it waits for it
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        break
    except OSError:
        time.sleep(0.2)
server.serve_forever()
'''

MONITORING_PY = r'''"""Aura's monitoring, standing in: a metrics sample a while to logs/metrics.jsonl.

It reads the state and appends its sample holding the stand-in's monitor lock, so a fault that
rewrites the state and the metrics under the same lock is never followed by a sample of the state
from before it."""
import fcntl, json, os, time
from datetime import datetime, timezone
from pathlib import Path

HOME = Path(__file__).resolve().parents[1]
EVERY_S = float(os.environ.get("AURA_STANDIN_MONITOR_S", "30"))  # shorter: races with faults tried often
while True:
    try:
        with open(HOME / ".standin-monitor.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            s = json.loads((HOME / ".standin-state.json").read_text())
            sample = {"timestamp": datetime.now(timezone.utc).isoformat(), "cpu_percent": s["cpu_percent"],
                      "memory_percent": s["memory_percent"], "disk_usage_percent": s["disk_usage_percent"]}
            with open(HOME / "logs" / "metrics.jsonl", "a") as out:
                out.write(json.dumps(sample) + "\n")
    except (OSError, ValueError, KeyError):
        pass
    time.sleep(EVERY_S)
'''

RUN_TESTS_SH = """#!/bin/sh
# Aura's test runner, standing in: nine tests; one fails while .standin-failing-test exists
if [ -e .standin-failing-test ]; then
  echo "Tests: 8/9 passed (test_rrla_pipeline FAILED)"; exit 1
fi
echo "Tests: 9/9 passed"
"""

VALIDATE_PY = """print("=== Consciousness System ===")
print("InnerWorldModel: updating")
print("MetaCognitiveAgent: active")
print("RRLA pipeline: ok")
"""

START_SH = """#!/bin/sh
cd "$(dirname "$0")" && nohup python3 backend/server.py >> logs/aura.log 2>&1 &
"""

SQUATTER = ("import socket, sys, time\ns = socket.socket()\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', int(sys.argv[1])))\ns.listen()\ntime.sleep(3600)\n")


def _log_lines(now: datetime) -> str:
    start = now - timedelta(minutes=30)
    lines = [f"{start:%Y-%m-%d %H:%M:%S},000 - aura - INFO - InnerWorldModel initialised",
             f"{start:%Y-%m-%d %H:%M:%S},010 - aura - INFO - MetaCognitiveAgent ready"]
    lines += [f"{start + timedelta(seconds=15 * i):%Y-%m-%d %H:%M:%S},000 - aura - INFO - GET /health 200"
              for i in range(1, 110)]
    return "\n".join(lines) + "\n"


def _metrics(now: datetime, cpu: float, count: int = 120) -> str:
    return "".join(json.dumps({"timestamp": (now - timedelta(minutes=count - i)).isoformat(), "cpu_percent": cpu,
                               "memory_percent": 45.2, "disk_usage_percent": 7.0}) + "\n" for i in range(count))


class AuraStandIn:
    """Aura's install under ``root/Numtema_AGENCY``, its server and monitoring running."""

    FAULTS = ("degraded", "cpu-91", "no-cors", "critical-log", "error-log", "tests-8of9", "server-down", "port-held",
              "backup-stale", "cpu-average", "relapse")

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.home = self.root / "Numtema_AGENCY"
        self.port = free_port()
        self.server: subprocess.Popen | None = None
        self.monitoring: subprocess.Popen | None = None
        self.squatter: subprocess.Popen | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> "AuraStandIn":
        self._lay_out()
        self.start_server()
        self.monitoring = self._spawn([sys.executable, str(self.home / "backend" / "monitoring.py")], self.home / "backend")
        self.take_backup(datetime.now())
        return self

    def __exit__(self, *exc) -> None:
        for proc in (self.squatter, self.server, self.monitoring):
            self._end(proc)

    def environ(self) -> dict[str, str]:
        """The variables the example reads, pointing at this stand-in."""
        return {"AURA_HOME": str(self.home), "AURA_HOST": "127.0.0.1", "AURA_PORT": str(self.port),
                "AURA_BACKUPS": str(self.root), "AURA_PYTHON": sys.executable, "AURA_DISK": str(self.root),
                "AURA_WATCH": "1s", "AURA_WATCH_INTERVAL": "0.5s", "PYTHONPATH": str(self.root / "site")}

    def _lay_out(self) -> None:
        h = self.home
        for folder in ("backend", "frontend", "config", "docs", "logs"):
            (h / folder).mkdir(parents=True, exist_ok=True)
        (h / "backend" / "server.py").write_text(SERVER_PY)
        (h / "backend" / "monitoring.py").write_text(MONITORING_PY)
        (h / "backend" / "aura_glm.py").write_text("class AuraModel1GLM:\n    def process(self, query):\n"
                                                   "        return {'response': 'ok'}\n")
        (h / "frontend" / "index.html").write_text("<!doctype html><html><body>Aura</body></html>\n")
        (h / "frontend" / "app.js").write_text("console.log('aura');\n")
        (h / "frontend" / "style.css").write_text("body { margin: 0 }\n")
        (h / "config" / "aura.json").write_text('{"autonomous_learning": true}\n')
        (h / "docs" / "OPERATIONAL_GUIDE.md").write_text("# Operational guide\n")
        (h / "requirements.txt").write_text("# the stand-in needs nothing beyond the standard library\n")
        (h / "validate_integration.py").write_text(VALIDATE_PY)
        for name, text in (("run_tests.sh", RUN_TESTS_SH), ("start_aura.sh", START_SH)):
            (h / name).write_text(text)
            (h / name).chmod(0o755)
        self._write_state(HEALTHY_STATE)
        self.reset_logs()
        # what `pip list | grep -E "torch|transformers"` looks for: their metadata, on PYTHONPATH
        for name, version in (("torch", "2.1.0"), ("transformers", "4.35.0")):
            meta = self.root / "site" / f"{name}-{version}.dist-info"
            meta.mkdir(parents=True)
            (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")

    def reset_logs(self) -> None:
        now = datetime.now()
        (self.home / "logs" / "aura.log").write_text(_log_lines(now))
        (self.home / "logs" / "metrics.jsonl").write_text(_metrics(datetime.now(timezone.utc), 25.5))
        (self.home / "logs" / "alerts.jsonl").write_text(
            json.dumps({"timestamp": now.isoformat(), "type": "cpu", "message": "CPU above 80% for 1 minute"}) + "\n")

    @contextlib.contextmanager
    def monitor_paused(self) -> Iterator[None]:
        """Hold the lock monitoring.py takes to read the state and append its sample: what is
        done inside is never interleaved with a sample, nor followed by one of the state before."""
        with open(self.home / ".standin-monitor.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _write_state(self, state: dict) -> None:
        path = self.home / ".standin-state.json"
        path.with_suffix(".tmp").write_text(json.dumps(state))
        path.with_suffix(".tmp").replace(path)  # the server never reads half a file

    def _spawn(self, argv: list[str], cwd: Path) -> subprocess.Popen:
        return subprocess.Popen(argv, cwd=cwd, env={**os.environ, "AURA_PORT": str(self.port)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    @staticmethod
    def _end(proc: subprocess.Popen | None) -> None:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)

    def start_server(self) -> None:
        self.server = self._spawn([sys.executable, str(self.home / "backend" / "server.py")], self.home)
        self._wait_listening(self.server)

    def stop_server(self) -> None:
        self._end(self.server)
        self.server = None

    def _wait_listening(self, owner: subprocess.Popen) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if owner.poll() is not None:
                raise RuntimeError(f"stand-in process exited with {owner.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nothing listens on 127.0.0.1:{self.port}")

    def take_backup(self, when: datetime) -> Path:
        """A hotfix backup as the runbook takes it: cp -r . ../Numtema_AGENCY_backup_<local time>."""
        for old in self.root.glob("Numtema_AGENCY_backup_*"):
            shutil.rmtree(old)
        target = self.root / f"Numtema_AGENCY_backup_{when:%Y%m%d_%H%M%S}"
        shutil.copytree(self.home, target, ignore=shutil.ignore_patterns("logs", ".standin*", "__pycache__"))
        return target

    # ---- faults ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def fault(self, name: str) -> Iterator[None]:
        """Break the stand-in one way (see FAULTS) for the ``with`` block, then heal it."""
        if name not in self.FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(self.FAULTS)}")
        state = dict(HEALTHY_STATE)
        log = self.home / "logs" / "aura.log"
        try:
            if name == "degraded":
                self._write_state({**state, "status": "degraded"})
            elif name == "cpu-91":
                self._write_state({**state, "cpu_percent": 91.0,
                                   "alerts": [{"type": "cpu", "message": "CPU usage 91.0% above 80%"}]})
            elif name == "no-cors":
                self._write_state({**state, "cors": False})
            elif name == "critical-log":
                with log.open("a") as out:
                    out.write(f"{datetime.now():%Y-%m-%d %H:%M:%S},000 - aura - CRITICAL - model state corrupted\n")
            elif name == "error-log":
                with log.open("a") as out:
                    out.write(f"{datetime.now():%Y-%m-%d %H:%M:%S},000 - aura - ERROR - RRLA step timed out\n")
            elif name == "tests-8of9":
                (self.home / ".standin-failing-test").touch()
            elif name == "server-down":
                self.stop_server()
            elif name == "port-held":
                self.stop_server()
                self.squatter = subprocess.Popen([sys.executable, "-c", SQUATTER, str(self.port)],
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                 start_new_session=True)
                self._wait_listening(self.squatter)
                self.server = self._spawn([sys.executable, str(self.home / "backend" / "server.py")], self.home)
            elif name == "backup-stale":
                self.take_backup(datetime.now() - timedelta(hours=3))  # the RPO is 1 hour
            elif name == "relapse":
                # a fix that does not hold: /health says healthy to its first three readers - the
                # health check (which every other reader waits for), resources and the watch's first
                # sample, in whichever order they ask - then degraded. Only health and the watch read
                # the status, and the watch samples three times (AURA_WATCH 1s every 0.5s), so one of
                # its samples comes after the third answer whatever the order: the watch fails, no other
                self._write_state({**state, "relapse_after": 3, "relapse_token": time.monotonic_ns()})
            elif name == "cpu-average":
                # Aura has run at 88 % for the last two hours and still does: the monitor's own
                # samples during the fault are 88 too, so the average it reads is 88 whenever it ticks
                with self.monitor_paused():
                    self._write_state({**state, "cpu_percent": 88.0})
                    (self.home / "logs" / "metrics.jsonl").write_text(_metrics(datetime.now(timezone.utc), 88.0))
            yield
        finally:
            with self.monitor_paused():  # no sample of the faulty state lands after the heal
                self._write_state(HEALTHY_STATE)
                if name in ("critical-log", "error-log", "cpu-average"):
                    self.reset_logs()
            (self.home / ".standin-failing-test").unlink(missing_ok=True)
            if name in ("server-down", "port-held"):
                self.stop_server()
                self._end(self.squatter)
                self.squatter = None
                self.start_server()
            if name == "backup-stale":
                self.take_backup(datetime.now())
