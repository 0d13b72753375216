"""A PostgreSQL-backed DR drill, run as a user runs it (``pytest checks/quarterly --env``):
restore the newest dump into a scratch database, start a small chat service against it on a
free port, wait until healthy, POST a chat request, compare row counts, tear down.

Runbook steps protected: Perfect Jarvis "restore PostgreSQL from the latest dump, then check
that a chat request works"; Aura's quarterly DR test (copy, install, start, curl health).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.support.project import run_pytest
from tests.support.servers import APP_PASSWORD, PostgresServer

ADMIN_PASSWORD = "postgres-admin"  # tests.support.servers' superuser password

SERVICE = textwrap.dedent('''
    """A chat service: answers /health after SELECT 1, and POST /chat stores the message."""
    import json, os
    from http.server import BaseHTTPRequestHandler, HTTPServer
    import psycopg
    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def answer(self, obj):
            body = json.dumps(obj).encode()
            self.send_response(200); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
        def do_GET(self):
            conn.execute("SELECT 1")
            self.answer({"status": "ok"})
        def do_POST(self):
            message = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["message"]
            conn.execute("INSERT INTO messages (body) VALUES (%s)", (message,))
            count = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            self.answer({"reply": "echo: " + message, "messages": count})
    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
''')

ENV = """
name: chat
backup:
  - name: chat-db
    source: postgres
    path: backups/chat-*.dump
    cadence: weekly
    level: 2
    postgres:
      live_dsn: "{live}"
      scratch_dsn: "{admin}"
drill:
  - name: chat-dr
    severity: P0
    timeout: 2m
    restore:
      - copy: app
      - backup: chat-db
    start:
      argv: ["{python}", "service.py"]
      env: {{DATABASE_URL: "{{{{restored:chat-db}}}}", PORT: "{{{{port}}}}"}}
    healthy:
      - http: {{url: "{{{{url}}}}/health", expect: ["status == 'ok'"]}}
    verify:
      - http:
          url: "{{{{url}}}}/chat"
          method: POST
          headers: {{Content-Type: application/json}}
          body: '{{"message": "hello"}}'
          expect: ["reply == 'echo: hello'", "messages == `3`"]
      - postgres:
          dsn: "{{{{restored:chat-db}}}}"
          query: "SELECT (SELECT count(*) FROM items) AS items"
          expect: ["row.items == `1000`"]
"""


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        server.sql("CREATE TABLE items AS SELECT g AS id FROM generate_series(1, 1000) g;"
                   "CREATE TABLE messages (id serial PRIMARY KEY, body text);"
                   "INSERT INTO messages (body) VALUES ('first'), ('second');"
                   "ALTER TABLE items OWNER TO app; ALTER TABLE messages OWNER TO app", "app")
        yield server


def project(tmp_path: Path, pg, **replace) -> Path:
    root = tmp_path / "proj"
    (root / "checks" / "quarterly").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "app").mkdir()
    (root / "app" / "service.py").write_text(SERVICE)
    (root / "backups").mkdir()
    os.chmod(root / "backups", 0o755)
    subprocess.run(["pg_dump", "-Fc", "-f", str(root / "backups" / "chat-20261130.dump"),
                    "-d", f"host=127.0.0.1 port={pg.port} user=app dbname=app"],
                   env=dict(os.environ, PGPASSWORD=APP_PASSWORD), check=True, timeout=60)
    text = ENV.format(live=pg.dsn(), admin=pg.dsn(user="postgres", password=ADMIN_PASSWORD, db="postgres"),
                      python=os.sys.executable)
    for old, new in replace.items():
        text = text.replace(old, new)
    (root / "env.yaml").write_text(text)
    return root


def scratch_databases(pg) -> list[str]:
    return [r[0] for r in pg.sql("SELECT datname FROM pg_database WHERE datname LIKE 'opsgate\\_scratch\\_%'",
                                 "postgres")]


def services(root: Path) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if "service.py" in " ".join(p.info["cmdline"] or [])
            and str(root) not in " ".join(p.info["cmdline"] or []) and p.info["cmdline"][0] == os.sys.executable]


def test_a_postgres_drill_restores_starts_answers_a_chat_request_and_leaves_nothing(tmp_path, pg, monkeypatch):
    root = project(tmp_path, pg)
    run = run_pytest(root, suite="checks/quarterly", env={"OPSGATE_SCRATCH_DIR": str(tmp_path / "scratch")})
    assert run.returncode == 0, run.output
    check = next(t for t in run.report()["tests"] if t["nodeid"].endswith("test_drill[chat-dr]"))["metadata"]["opsgate"]
    record = check["evidence"]["observed"]
    assert [s["phase"] for s in record["steps"]] == ["restore", "restore", "start", "healthy", "verify", "verify",
                                                    "teardown"]
    assert record["recovery_points"][1]["id"].endswith("chat-20261130.dump")
    assert record["rto_s"] > 0 and record["rpo_s"] > 0 and record["rto_target_s"] == 900
    assert scratch_databases(pg) == []
    assert list((tmp_path / "scratch").iterdir()) == []
    assert APP_PASSWORD not in run.report_text and ADMIN_PASSWORD not in run.report_text
    # the live database was not touched by the chat request
    assert pg.sql("SELECT count(*) FROM messages", "app") == [(2,)]
    # the auditor's record: beside the reports, naming the report's seal
    records = sorted((root / "reports" / "drills" / "chat").iterdir())
    assert [p.suffix for p in records] == [".html", ".md"]
    text = records[1].read_text()
    digest = run.report_text.rstrip().rsplit('"opsgate_digest": "', 1)[1].split('"')[0]
    assert "# DR drill `chat-dr`: PASSED" in text and digest in text
    assert "| RTO | 15m00s |" in text and "chat-20261130.dump" in text
    assert APP_PASSWORD not in text and ADMIN_PASSWORD not in text


def test_plan_mode_prints_the_steps_and_touches_nothing(tmp_path, pg):
    root = project(tmp_path, pg)
    before = scratch_databases(pg)
    run = run_pytest(root, "--plan", suite="checks/quarterly", env={"OPSGATE_SCRATCH_DIR": str(tmp_path / "scratch")})
    assert run.returncode == 0, run.output
    assert "drill chat-dr (P0): RTO target 15m00s" in run.output
    assert "1. restore: copy app ->" in run.output and "2. restore: backup chat-db" in run.output
    assert "4. healthy: http chat-dr.healthy.1 -> http://127.0.0.1:" in run.output
    assert not (root / "reports").exists() and not (tmp_path / "scratch").exists()
    assert scratch_databases(pg) == before and not services(root)


@pytest.mark.negative("drill")
def test_a_recovery_point_older_than_the_rpo_fails_the_drill_with_its_age(tmp_path, pg):
    root = project(tmp_path, pg, **{"    timeout: 2m\n": "    timeout: 2m\n    rpo: 1s\n"})
    dump = root / "backups" / "chat-20261130.dump"
    os.utime(dump, (dump.stat().st_atime, dump.stat().st_mtime - 3600))
    run = run_pytest(root, suite="checks/quarterly", env={"OPSGATE_SCRATCH_DIR": str(tmp_path / "scratch")})
    assert run.returncode == 1
    assert "RPO (seconds, age of the recovery point) <= target 1: observed 36" in run.output
    assert scratch_databases(pg) == []


@pytest.mark.negative("drill")
def test_a_service_that_cannot_reach_its_restored_database_fails_at_the_named_step(tmp_path, pg):
    root = project(tmp_path, pg, **{'DATABASE_URL: "{{restored:chat-db}}"': 'DATABASE_URL: "postgresql://nobody@127.0.0.1:1/x"'})
    run = run_pytest(root, suite="checks/quarterly", env={"OPSGATE_SCRATCH_DIR": str(tmp_path / "scratch")})
    assert run.returncode == 1
    assert "(healthy: http chat-dr.healthy.1) failed: the started service exited with code 1" in run.output
    assert "teardown ran" in run.output
    assert scratch_databases(pg) == []
