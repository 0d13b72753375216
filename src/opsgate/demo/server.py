"""A small real service in the spirit of the reference systems, for the embedded default.

``serve`` listens on loopback and answers ``/health`` (status, checks, metrics,
alerts, like Aura's), ``/api/models`` (like Ollama's tags), ``/api/data`` (its database's row
counts, which a DR drill reads from a restored copy) and ``/metrics``; it
writes ``logs/demo.log`` and a ``logs/metrics.jsonl`` sample every second (also stored in
its SQLite database ``data/app.sqlite``, what the weekly backup check backs up).
``selftest`` is its ``run_tests.sh``: nine checks, ``9/9 passed`` or JSON with
``overall_status`` (like the chatbot's ``health_check.py --json``).

A fault can be injected at start (``--fault`` or ``OPSGATE_DEMO_FAULT``) so a user
sees a run fail on the check that names it:

- ``degraded``: /health says ``degraded`` and ``checks.cpu_healthy`` is false
- ``slow``: /health answers after 1.5 s
- ``errors``: ERROR lines are written to the log
- ``no-models``: /api/models lists no model (the self-test fails too)
- ``stale-metrics``: metrics.jsonl stops being written and is a day old

Run it by hand: ``python -m opsgate.demo serve --dir /tmp/demo --port 8000``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import requests

from .data import DemoData

FAULTS = ("none", "degraded", "slow", "errors", "no-models", "stale-metrics")


class _State:
    def __init__(self, fault: str, root: Path):
        self.fault = fault
        self.root = root
        self.started = time.time()
        self.active = 0
        self.lock = threading.Lock()
        self.process = psutil.Process()
        self.process.cpu_percent(None)
        self.cpu = 0.0  # sampled once a second: a single busy moment must not read as unhealthy

    def sample_cpu(self) -> None:
        self.cpu = self.process.cpu_percent(None)

    def health(self) -> dict:
        memory = psutil.virtual_memory().percent
        disk = psutil.disk_usage(str(self.root)).percent
        cpu = self.cpu
        degraded = self.fault == "degraded"
        checks = {
            "cpu_healthy": not degraded and cpu < 90,
            "memory_healthy": memory < 95,
            "disk_healthy": disk < 98,
            "log_writable": os.access(self.root / "logs", os.W_OK),
        }
        return {
            "status": "degraded" if degraded or not all(checks.values()) else "healthy",
            "version": "1.0.0",
            "uptime_s": round(time.time() - self.started, 1),
            "checks": checks,
            "metrics": {
                "cpu_percent": 97.5 if degraded else cpu,
                "memory_percent": memory,
                "disk_usage_percent": disk,
                "active_connections": self.active,
            },
            "alerts": ["cpu_percent above 90"] if degraded else [],
        }


def _handler(state: _State, log: logging.Logger):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # access lines go to the demo's own log
            log.info("access %s %s", self.address_string(), fmt % args)

        def _json(self, code: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            with state.lock:
                state.active += 1
            try:
                path = self.path.split("?", 1)[0]
                if path == "/health":
                    if state.fault == "slow":
                        time.sleep(1.5)
                    self._json(200, state.health())
                elif path == "/api/models":
                    models = [] if state.fault == "no-models" else [{"name": "demo-small", "size": 1234}]
                    self._json(200, {"models": models})
                elif path == "/api/data":
                    # what its database holds: a DR drill checks the restored copy serves the restored rows
                    self._json(200, state.data.counts() if state.data else {})
                elif path == "/metrics":
                    body = (f"# TYPE demo_uptime_seconds gauge\ndemo_uptime_seconds {time.time() - state.started:.1f}\n").encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._json(404, {"error": "not found", "path": path})
            finally:
                with state.lock:
                    state.active -= 1

    return Handler


def _background(state: _State, log: logging.Logger, stop: threading.Event, parent: int | None) -> None:
    """Every second: a metrics sample, a heartbeat, the injected log errors; exit with the parent."""
    metrics = state.root / "logs" / "metrics.jsonl"
    while not stop.wait(1.0):
        state.sample_cpu()
        if parent and not psutil.pid_exists(parent):
            log.info("parent %s is gone; stopping", parent)
            os._exit(0)
        if state.fault != "stale-metrics":
            sample = {"ts": datetime.now(timezone.utc).isoformat(), **state.health()["metrics"]}
            with metrics.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(sample) + "\n")
            state.data.record(sample)
        if state.fault == "errors":
            log.error("database connection lost: could not reach db:5432 (injected fault)")


def serve(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("demo")
    handler = logging.FileHandler(root / "logs" / "demo.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    fault = args.fault or "none"
    state = _State(fault, root)
    state.data = DemoData(root)
    metrics = root / "logs" / "metrics.jsonl"
    metrics.write_text(json.dumps({"ts": datetime.now(timezone.utc).isoformat(), **state.health()["metrics"]}) + "\n")
    if fault == "stale-metrics":
        day_ago = time.time() - 86400
        os.utime(metrics, (day_ago, day_ago))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(state, log))
    server.daemon_threads = True
    port = server.server_address[1]
    log.info("demo listening on 127.0.0.1:%s (fault=%s)", port, fault)
    if fault == "errors":
        log.error("database connection lost: could not reach db:5432 (injected fault)")
    stop = threading.Event()
    threading.Thread(target=_background, args=(state, log, stop, args.parent_pid), daemon=True).start()
    # the embedded default's process check reads this: its own instance, not every demo on the host
    pid_tmp = root / "demo.pid.tmp"
    pid_tmp.write_text(f"{os.getpid()}\n")
    pid_tmp.replace(root / "demo.pid")
    if args.ready_file:
        tmp = Path(args.ready_file + ".tmp")
        tmp.write_text(json.dumps({"port": port, "pid": os.getpid()}))
        tmp.replace(args.ready_file)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        log.info("demo stopped")
    return 0


def selftest(args: argparse.Namespace) -> int:
    """Nine checks against a running demo; prints ``N/9 passed`` or JSON with ``overall_status``."""
    results: dict[str, bool] = {}

    def get(path: str):
        return requests.get(args.url + path, timeout=args.timeout)

    def check(name: str, fn) -> None:
        try:
            results[name] = bool(fn())
        except Exception:  # a self-test reports failures, it does not crash
            results[name] = False

    health = {}
    check("health_200", lambda: get("/health").status_code == 200)
    check("health_json", lambda: health.update(get("/health").json()) or True)
    check("status_healthy", lambda: health.get("status") == "healthy")
    check("checks_all_true", lambda: all(health.get("checks", {}).values()))
    check("metrics_present", lambda: {"cpu_percent", "memory_percent"} <= set(health.get("metrics", {})))
    check("models_listed", lambda: len(get("/api/models").json()["models"]) > 0)
    check("metrics_endpoint", lambda: "demo_uptime_seconds" in get("/metrics").text)
    check("unknown_is_404", lambda: get("/nope").status_code == 404)
    check("uptime_positive", lambda: health.get("uptime_s", -1) >= 0)
    passed = sum(results.values())
    if args.json:
        print(json.dumps({"overall_status": "healthy" if passed == len(results) else "unhealthy",
                          "passed": passed, "total": len(results), "checks": results}))
    else:
        for name, ok in results.items():
            print(f"{'PASS' if ok else 'FAIL'} {name}")
        print(f"{passed}/{len(results)} passed")
    return 0 if passed == len(results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opsgate.demo", description="opsgate's embedded demo target")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the demo service")
    p_serve.add_argument("--dir", required=True, help="folder for logs/")
    p_serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p_serve.add_argument("--fault", choices=FAULTS, default=os.environ.get("OPSGATE_DEMO_FAULT") or "none")
    p_serve.add_argument("--ready-file", help="written with the port once listening")
    p_serve.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    p_test = sub.add_parser("selftest", help="nine checks against a running demo")
    p_test.add_argument("--url", required=True)
    p_test.add_argument("--json", action="store_true")
    p_test.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    return serve(args) if args.command == "serve" else selftest(args)


if __name__ == "__main__":
    sys.exit(main())
