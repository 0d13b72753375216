"""A stand-in for the Personal AI Chatbot: its application, its health script, its unit, its
upstream API and the DNS name of that API, each real and each breakable.

- the application (``chatbot_home/main.py``, a real ``python main.py`` process in the chatbot's
  folder: ``data/logs/app.log``, ``data/chatbot.db``) and ``scripts/health/health_check.py``
  (``--json`` with ``overall_status``, ``--check memory_usage``), copied into the folder;
- :class:`Upstream`: an OpenRouter-like API on loopback that requires the bearer token
  (``GET /api/v1/auth/key``, ``POST /api/v1/chat/completions``);
- a DNS server on loopback (tests.support.dns_server) that resolves the upstream's host name;
- :class:`FakeSystemd`: ``systemctl``/``journalctl`` first in PATH answering for the unit (this
  machine has no systemd), as tests/test_check_systemd.py does; a run's ``conftest.py``
  (:data:`SYSTEMD_CONFTEST`) points the systemd kind at its runtime folder.

Faults: the application's (``degraded``, ``exceptions``, ``memory``, crash), the upstream's
(``rate-limited``, a rejected token), the name's (NXDOMAIN) and the unit's (``failed``, journal errors).
"""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOME = Path(__file__).resolve().parent / "chatbot_home"

UNIT_STATES = {
    "active": "LoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nNRestarts=0\n",
    "failed": "LoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\nNRestarts=0\n",
}

#: a run's conftest.py: the systemd kind looks for systemd's runtime folder where the stand-in made it
SYSTEMD_CONFTEST = ('import os\nfrom opsgate.probes import systemd\n'
                    'systemd.SYSTEMD_RUNTIME = os.environ.get("STANDIN_SYSTEMD_RUNTIME", systemd.SYSTEMD_RUNTIME)\n')


def install(home: Path, memory_limit_mb: int) -> None:
    """The chatbot's folder: main.py, scripts/health/health_check.py, config/settings.json."""
    shutil.copytree(HOME, home, ignore=shutil.ignore_patterns("__pycache__"))
    (home / "config").mkdir()
    (home / "config" / "settings.json").write_text(json.dumps({"memory_limit_mb": memory_limit_mb}))


class Upstream:
    """OpenRouter's API as the guide uses it; every request needs ``Authorization: Bearer <token>``.
    ``rate_limited`` answers chat requests 429."""

    def __init__(self, token: str) -> None:
        self.token, self.rate_limited = token, False
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a) -> None:
                pass

            def reply(self, code: int, obj: dict) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {upstream.token}":
                    return True
                self.reply(401, {"error": {"message": "No auth credentials found", "code": 401}})
                return False

            def do_GET(self) -> None:
                if self.path != "/api/v1/auth/key":
                    return self.reply(404, {"error": {"message": "not found", "code": 404}})
                if self.authorized():
                    self.reply(200, {"data": {"label": "sk-or-v1-stand-in", "usage": 0.42, "limit": None,
                                              "is_free_tier": False, "rate_limit": {"requests": 200, "interval": "10s"}}})

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path != "/api/v1/chat/completions":
                    return self.reply(404, {"error": {"message": "not found", "code": 404}})
                if not self.authorized():
                    return
                if upstream.rate_limited:
                    return self.reply(429, {"error": {"message": "Rate limit exceeded: 200 requests per 10s",
                                                      "code": 429}})
                if not request.get("model") or not request.get("messages"):
                    return self.reply(400, {"error": {"message": "model and messages are required", "code": 400}})
                self.reply(200, {"id": "gen-stand-in", "model": request["model"], "choices": [
                    {"message": {"role": "assistant", "content": "Hello! I received: test"}, "finish_reason": "stop"}]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Upstream":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeSystemd:
    """``bin/systemctl show UNIT`` prints ``show-UNIT``; ``bin/journalctl -u UNIT`` prints ``journal-UNIT``;
    ``runtime`` stands for /run/systemd/system."""

    def __init__(self, root: Path, unit: str) -> None:
        self.bin, self.runtime, self.unit = root / "bin", root / "run-systemd-system", f"{unit}.service"
        self.bin.mkdir(parents=True)
        self.runtime.mkdir()
        for name, body in {"systemctl": 'cat "$here/show-$2"', "journalctl": 'cat "$here/journal-$2"'}.items():
            script = self.bin / name
            script.write_text(f'#!/bin/sh\nhere="$(dirname "$0")"\n{body}\n')
            script.chmod(0o755)
        self.set("active")

    def set(self, state: str, journal: str = "") -> None:
        (self.bin / f"show-{self.unit}").write_text(UNIT_STATES[state])
        (self.bin / f"journal-{self.unit}").write_text(journal)
