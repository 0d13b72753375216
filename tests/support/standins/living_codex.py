"""A stand-in for Living Codex (the .NET server on :5002), run as its own process.

It answers the playbook's endpoints with the playbook's fields: ``/health`` (``status``,
``moduleLoading.asyncInitializationComplete``, ``modules[].status`` = ``loaded``, ``database``
from a real ``SELECT 1`` on ``$CONNECTION_STRING``), ``/health/memory``
(``memoryUsage.heapSizeMB``, ``memoryLeaks``), ``/health/ai-pipeline`` (``metrics``) and
``/metrics/prometheus`` (``http_request_duration_seconds``, ``error_rate``); it writes
``logs/server.log``. Its port comes from ``--port`` or ``ASPNETCORE_URLS`` (as ``start-server.sh``
passes it). Faults, switched with ``POST /_standin/fault``:

- ``module-failed``: one module's status is ``failed``
- ``async-incomplete``: async initialization not complete, one module still ``loading``
- ``heap-critical`` / ``heap-warning``: heap 2100 MB / 1600 MB
- ``slow``: request latency 1.4 s
- ``unstable``: healthy, then ``degraded`` from ``after_s`` seconds after its first /health answer
- ``memory-leak``: ``memoryLeaks`` lists a growing heap
- ``log-errors``: exception lines written to ``logs/server.log``
- ``pipeline-down``: ``/health/ai-pipeline`` has no ``metrics``
- ``none``: healthy, with a fresh log (as after a restart)
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODULES = ("CoreModule", "StorageModule", "AIPipelineModule", "ConceptRegistryModule")
FAULTS = ("none", "module-failed", "async-incomplete", "heap-critical", "heap-warning", "slow", "unstable",
          "memory-leak", "log-errors", "pipeline-down")


class Codex:
    def __init__(self, root: Path) -> None:
        self.log_path = root / "logs" / "server.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.fault, self.after_s, self.unstable_since = "none", 1.0, None
        self.lock = threading.Lock()
        self.dsn = os.environ.get("CONNECTION_STRING")
        self.started()

    def started(self) -> None:
        """A fresh log, as after a restart."""
        self.log_path.write_text("")
        self.log("info", "Living Codex server starting")
        self.log("info", f"Async module initialization complete: {len(MODULES)}/{len(MODULES)} modules loaded")

    def log(self, level: str, text: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        with self.lock, self.log_path.open("a") as out:
            out.write(f"{stamp} [{level.upper()}] {text}\n")

    def set_fault(self, fault: str, after_s: float = 1.0) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        self.fault, self.after_s, self.unstable_since = fault, after_s, None
        if fault == "none":  # healthy again: the tests' reset between faults is a restart
            self.started()
        if fault == "log-errors":
            self.log("error", "Unhandled exception in request pipeline: System.NullReferenceException")
            self.log("critical", "System.InvalidOperationException: concept store unavailable")

    def database(self) -> dict:
        if not self.dsn:
            return {"status": "not configured"}
        try:
            import psycopg

            with psycopg.connect(self.dsn, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return {"status": "connected", "provider": "PostgreSQL"}
        except Exception as exc:  # the endpoint reports it, as the server would
            return {"status": "error", "error": type(exc).__name__}

    def health(self) -> dict:
        status = "healthy"
        if self.fault == "unstable":
            self.unstable_since = self.unstable_since or time.monotonic()
            if time.monotonic() - self.unstable_since > self.after_s:
                status = "degraded"
        modules = [{"name": name, "status": "loaded"} for name in MODULES]
        if self.fault == "module-failed":
            modules[2]["status"] = "failed"
        if self.fault == "async-incomplete":
            modules[3]["status"] = "loading"
        loaded = sum(m["status"] == "loaded" for m in modules)
        return {"status": status, "version": "1.0.0",
                "moduleLoading": {"asyncInitializationComplete": self.fault != "async-incomplete",
                                  "loadedModules": loaded, "totalModules": len(modules)},
                "modules": modules, "database": self.database()}

    def memory(self) -> dict:
        heap = {"heap-critical": 2100, "heap-warning": 1600}.get(self.fault, 512)
        leaks = [{"type": "ConceptCache", "growthMBPerHour": 85}] if self.fault == "memory-leak" else []
        return {"memoryUsage": {"heapSizeMB": heap, "workingSetMB": heap + 180, "gcCollections": 42},
                "memoryLeaks": leaks}

    def pipeline(self) -> dict:
        if self.fault == "pipeline-down":
            return {"status": "unavailable", "metrics": None}
        return {"status": "ready", "metrics": {"requestsProcessed": 1200, "averageLatencyMs": 180, "queueDepth": 0}}

    def prometheus(self) -> str:
        latency = 1.4 if self.fault == "slow" else 0.2
        return ("# TYPE http_request_duration_seconds gauge\n"
                f"http_request_duration_seconds {latency}\n"
                "# TYPE error_rate gauge\nerror_rate 0.0\n")


def handler(codex: Codex):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def reply(self, code: int, body: str, kind: str = "application/json") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            routes = {"/health": codex.health, "/health/memory": codex.memory, "/health/ai-pipeline": codex.pipeline}
            path = self.path.split("?", 1)[0]
            if path in routes:
                self.reply(200, json.dumps(routes[path]()))
            elif path == "/metrics/prometheus":
                self.reply(200, codex.prometheus(), "text/plain; version=0.0.4")
            else:
                self.reply(404, json.dumps({"error": "not found"}))

        def do_POST(self) -> None:
            if self.path != "/_standin/fault":
                return self.reply(404, json.dumps({"error": "not found"}))
            wanted = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            try:
                codex.set_fault(wanted.get("fault", "none"), float(wanted.get("after_s", 1.0)))
            except ValueError as exc:
                return self.reply(400, json.dumps({"error": str(exc)}))
            self.reply(200, json.dumps({"fault": codex.fault}))

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int)
    parser.add_argument("--dir", default=".")
    args = parser.parse_args()
    port = args.port or int(os.environ.get("ASPNETCORE_URLS", "http://127.0.0.1:5002").rsplit(":", 1)[1].strip("/"))
    codex = Codex(Path(args.dir))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(codex))
    server.daemon_threads = True
    codex.log("info", f"Now listening on: http://127.0.0.1:{port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
