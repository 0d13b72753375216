"""Perfect Jarvis, standing in: the stack its incident runbook probes, on free loopback ports.

- the backend (``/health``, ``POST /simple-chat``, ``/public/metrics`` and a Prometheus
  ``/metrics``), Ollama (``/api/tags``, ``POST /api/generate``) and Grafana (``/api/alerts``):
  small real HTTP servers in this process, answering like the runbook shows;
- a real PostgreSQL (role and database ``sutazai``) and a real Redis with a password
  (tests/support/servers.py);
- a real Prometheus scraping the backend, with one rule that fires when the backend's error
  rate rises;
- the compose project: podman containers labelled as the compose services (backend,
  sutazai-ollama, sutazai-postgres, sutazai-redis, sutazai-prometheus, sutazai-grafana), the
  backend's with a health check;
- the emergency ``pg_dump`` (``emergency_backup_<epoch>.sql``) in a backups folder.

:meth:`JarvisStandIn.fault` breaks it one way and heals it afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import requests

from tests.support.http_target import free_port
from tests.support.podman import PodmanEngine
from tests.support.servers import PostgresServer, RedisServer, _as_postgres, _pg_bin

PG_PASSWORD = "Jarvis-pg-s3cret"
REDIS_PASSWORD = "Jarvis-redis-s3cret"
SERVICES = ("backend", "sutazai-ollama", "sutazai-postgres", "sutazai-redis", "sutazai-prometheus", "sutazai-grafana")
# the backend's health check: healthy unless /sick holds something (busybox has no rm or touch)
HEALTHCHECK = {"test": ["CMD-SHELL", "[ ! -s /sick ]"], "interval": 3_600_000_000_000, "retries": 1}
RULES = """groups:
  - name: jarvis
    rules:
      - alert: JarvisBackendErrors
        expr: jarvis_backend_error_rate > 0.05
        labels: {severity: critical}
"""


class _Service(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, routes):
        self.routes = routes  # (method, path) -> callable(body) -> (status, object or text)
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
        route = self.server.routes.get((method, self.path))
        if route is None:
            self.send_error(404)
            return
        status, answer = route(body)
        data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._answer("GET")

    def do_POST(self):
        self._answer("POST")


class JarvisStandIn:
    FAULTS = ("prometheus-alert", "no-models", "chat-empty", "postgres-down", "redis-down", "service-exited",
              "container-unhealthy", "pg-dump-stale", "pg-dump-empty")

    def __init__(self, root: Path):
        self.root = Path(root)
        self.backups = self.root / "backups"
        self.project = f"sutazaiapp-{uuid.uuid4().hex[:8]}"
        self.state = {"models": [{"name": "tinyllama:latest", "size": 637700138}], "chat": "Hello! All systems nominal.",
                      "error_rate": 0.0}
        self._stack = contextlib.ExitStack()

    # ---- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> "JarvisStandIn":
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _start(self) -> None:
        self.pg = self._stack.enter_context(PostgresServer())
        self.pg.sql(f"CREATE ROLE sutazai LOGIN CREATEDB PASSWORD '{PG_PASSWORD}'", "postgres")
        self.pg.sql("CREATE DATABASE sutazai OWNER sutazai", "postgres")
        self.pg.sql("CREATE TABLE conversations (id serial PRIMARY KEY, body text);"
                    "INSERT INTO conversations (body) SELECT 'message ' || g FROM generate_series(1, 200) g;"
                    "ALTER TABLE conversations OWNER TO sutazai", "sutazai")
        self.redis = self._stack.enter_context(RedisServer(self.root, password=REDIS_PASSWORD))
        self.ollama = self._serve({("GET", "/api/tags"): lambda _: (200, {"models": self.state["models"]}),
                                   ("POST", "/api/generate"): self._generate})
        self.backend = self._serve({("GET", "/health"): self._health,
                                    ("POST", "/simple-chat"): self._chat,
                                    ("GET", "/public/metrics"): lambda _: (200, {"system": {"cpu_percent": 12.0,
                                                                                            "memory_percent": 40.0}}),
                                    ("GET", "/metrics"): lambda _: (200, "# TYPE jarvis_backend_error_rate gauge\n"
                                                                         f"jarvis_backend_error_rate {self.state['error_rate']}\n")})
        self.grafana = self._serve({("GET", "/api/alerts"): lambda _: (200, [{"name": "backend", "state": "ok"}])})
        self.prometheus_url = self._prometheus()
        self.engine = self._stack.enter_context(PodmanEngine(self.root))
        self.containers = {service: self._container(service) for service in SERVICES}
        self.engine.healthcheck(self.containers["backend"].name)
        self.backups.mkdir()
        self.dump(time.time())

    def _serve(self, routes) -> _Service:
        server = _Service(routes)
        self._stack.callback(server.server_close)
        self._stack.callback(server.shutdown)
        return server

    def _container(self, service: str):
        extra = {"healthcheck": HEALTHCHECK} if service == "backend" else {}
        return self.engine.run(f"echo {service} started; sleep 3600", name=f"{self.project}-{service}-1",
                               labels={"com.docker.compose.project": self.project,
                                       "com.docker.compose.service": service}, **extra)

    def _prometheus(self) -> str:
        folder = self.root / "prometheus"
        folder.mkdir()
        port = free_port()
        (folder / "rules.yml").write_text(RULES)
        (folder / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [rules.yml]\nscrape_configs:\n"
            f"  - job_name: backend\n    static_configs: [{{targets: ['127.0.0.1:{self.backend.port}']}}]\n")
        log = open(folder / "log", "w")
        self._stack.callback(log.close)
        process = subprocess.Popen([shutil.which("prometheus") or "prometheus", f"--config.file={folder / 'prometheus.yml'}",
                                    f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                                   stdout=log, stderr=subprocess.STDOUT)
        self._stack.callback(self._end, process)
        url = f"http://127.0.0.1:{port}"
        self._until(lambda: requests.get(f"{url}/api/v1/query", params={"query": "up"}, timeout=2)
                    .json()["data"]["result"][0]["value"][1] == "1", "prometheus scraping the backend")
        return url

    @staticmethod
    def _end(process: subprocess.Popen) -> None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()

    @staticmethod
    def _until(condition, what: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while True:
            with contextlib.suppress(Exception):
                if condition():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"stand-in: waited {seconds:g}s for {what}")
            time.sleep(0.2)

    # ---- answers ----------------------------------------------------------------------------
    def _health(self, _):
        up = all(self._listening(port) for port in (self.pg.port, self.redis.port))
        return 200, {"status": "healthy" if up else "degraded", "services": {"database": "ok" if up else "down"}}

    @staticmethod
    def _listening(port: int) -> bool:
        import socket
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        return False

    def _chat(self, body: bytes):
        message = json.loads(body or b"{}").get("message", "")
        return 200, {"response": self.state["chat"], "message": message}

    def _generate(self, body: bytes):
        request = json.loads(body or b"{}")
        if not any(m["name"].split(":")[0] == request.get("model") for m in self.state["models"]):
            return 404, {"error": f"model '{request.get('model')}' not found, try pulling it first"}
        return 200, {"model": request["model"], "response": "test received", "done": True}

    def environ(self) -> dict[str, str]:
        return {"JARVIS_HOST": "127.0.0.1", "JARVIS_BACKEND_PORT": str(self.backend.port),
                "JARVIS_OLLAMA_PORT": str(self.ollama.port), "JARVIS_GRAFANA_URL": f"http://127.0.0.1:{self.grafana.port}",
                "JARVIS_PROMETHEUS_PORT": self.prometheus_url.rsplit(":", 1)[1],
                "JARVIS_PG_PORT": str(self.pg.port), "JARVIS_PG_PASSWORD": PG_PASSWORD,
                "JARVIS_REDIS_PORT": str(self.redis.port), "JARVIS_REDIS_PASSWORD": REDIS_PASSWORD,
                "JARVIS_COMPOSE_PROJECT": self.project, "DOCKER_HOST": self.engine.url,
                "JARVIS_BACKUPS": str(self.backups),
                # a reachable host stands in for 8.8.8.8 (no internet here)
                "JARVIS_INTERNET_HOST": "127.0.0.1", "JARVIS_INTERNET_PORT": str(self.grafana.port)}

    def dump(self, when: float) -> Path:
        """The runbook's emergency backup: pg_dump sutazai > emergency_backup_<epoch>.sql."""
        for old in self.backups.glob("emergency_backup_*.sql"):
            old.unlink()
        path = self.backups / f"emergency_backup_{int(when)}.sql"
        dumped = _as_postgres([_pg_bin("pg_dump"), "-h", str(self.pg.root), "-p", str(self.pg.port), "-U", "postgres",
                               "-d", "sutazai"])
        path.write_text(dumped.stdout)
        os.utime(path, (when, when))
        return path

    # ---- faults -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def fault(self, name: str) -> Iterator[None]:
        if name not in self.FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(self.FAULTS)}")
        saved = dict(self.state)
        backend = self.containers["backend"]
        try:
            if name == "prometheus-alert":
                self.state["error_rate"] = 0.4
                self._until(lambda: self._firing(), "the alert to fire")
            elif name == "no-models":
                self.state["models"] = []
            elif name == "chat-empty":
                self.state["chat"] = None
            elif name == "postgres-down":
                self.pg.stop()
            elif name == "redis-down":
                self.redis.stop()
            elif name == "service-exited":
                self.containers["sutazai-grafana"].stop(timeout=1)
            elif name == "container-unhealthy":
                backend.exec_run(["sh", "-c", "echo sick > /sick"])
                self.engine.healthcheck(backend.name, times=2)
            elif name == "pg-dump-stale":
                self.dump(time.time() - 3 * 86400)  # the RPO is a day
            elif name == "pg-dump-empty":
                self.dump(time.time()).write_text("")
            yield
        finally:
            self.state.update(saved)
            if name == "prometheus-alert":
                self._until(lambda: not self._firing(), "the alert to resolve")
            elif name == "postgres-down":
                self.pg.start()
            elif name == "redis-down":
                self.redis.__enter__()
            elif name == "service-exited":
                self.containers["sutazai-grafana"].start()
            elif name == "container-unhealthy":
                backend.exec_run(["sh", "-c", ": > /sick"])
                self.engine.healthcheck(backend.name)
            elif name.startswith("pg-dump"):
                self.dump(time.time())

    def _firing(self) -> bool:
        alerts = requests.get(f"{self.prometheus_url}/api/v1/alerts", timeout=2).json()["data"]["alerts"]
        return any(a["state"] == "firing" for a in alerts)
