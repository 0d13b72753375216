"""The Personal AI Chatbot stand-in's application, run as ``python main.py`` from its folder.

It keeps its conversations in SQLite (``data/chatbot.db``, or ``$CHATBOT_DB``), logs to
``data/logs/app.log``, writes its pid to ``data/app.pid`` and its state (database, upstream API
connectivity) to ``data/app_state.json``, which ``scripts/health/health_check.py`` reads. Faults,
switched with ``POST /_standin/fault`` on its port: ``degraded`` (the upstream API is degraded),
``relapse`` (healthy at first, the upstream API degraded ``after_s`` seconds after the health
script's first read: a fix that does not hold), ``exceptions`` (exceptions logged), ``memory``
(256 MB held), ``none`` (healthy, a fresh log).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FAULTS = ("none", "degraded", "relapse", "exceptions", "memory")


class App:
    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        (self.data / "logs").mkdir(parents=True, exist_ok=True)
        self.db = Path(os.environ.get("CHATBOT_DB") or self.data / "chatbot.db")
        with sqlite3.connect(self.db) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS conversations (id INTEGER PRIMARY KEY, title TEXT)")
            if not conn.execute("SELECT count(*) FROM conversations").fetchone()[0]:
                conn.executemany("INSERT INTO conversations (title) VALUES (?)", [("hello",), ("plans",), ("notes",)])
        self.log = logging.getLogger("chatbot")
        self.log.setLevel(logging.INFO)
        self.ballast = b""
        (self.data / "app.pid").write_text(f"{os.getpid()}\n")
        self.set_fault("none")

    def set_fault(self, fault: str, after_s: float = 1.0) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        if fault == "none":  # healthy again, as after a restart: a fresh log
            for handler in list(self.log.handlers):
                self.log.removeHandler(handler)
                handler.close()
            handler = logging.FileHandler(self.data / "logs" / "app.log", mode="w")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            self.log.addHandler(handler)
            self.log.info("Personal AI Chatbot started (pid %s)", os.getpid())
        self.ballast = b"\x01" * (256 << 20) if fault == "memory" else b""
        if fault == "exceptions":
            try:
                raise ConnectionError("upstream closed the connection")
            except ConnectionError:
                self.log.exception("Exception while answering a chat request")
            self.log.error("chat request failed: ConnectionError")
        state = {"pid": os.getpid(), "db": str(self.db),
                 "api_connectivity": "degraded" if fault == "degraded" else "ok"}
        if fault == "relapse":
            state["relapse_after_s"] = after_s
        (self.data / "relapse_since").unlink(missing_ok=True)  # the health script marks its first read
        (self.data / "app_state.json").write_text(json.dumps(state))


def main() -> None:
    parser = argparse.ArgumentParser(description="Personal AI Chatbot (stand-in)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8501")))
    parser.add_argument("--dir", default=".")
    args = parser.parse_args()
    app = App(Path(args.dir))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

        def reply(self, code: int, obj: dict) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self.reply(200, {"app": "personal-ai-chatbot"})

        def do_POST(self) -> None:
            wanted = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            try:
                app.set_fault(wanted.get("fault", "none"), float(wanted.get("after_s", 1.0)))
            except ValueError as exc:
                return self.reply(400, {"error": str(exc)})
            self.reply(200, {"fault": wanted.get("fault", "none")})

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
