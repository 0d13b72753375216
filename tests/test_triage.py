"""Incident triage (``opsgate triage``, and a daily run's own after a P0/P1 failure) against real
targets: a loopback HTTP server answering degraded, a listener that never answers, a real log
file with a planted password, a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.support.http_target import HangingTarget, HttpTarget
from tests.support.project import make_project, run_pytest

PLANTED = "Tq8-planted-Pw4z"  # a DB_PASSWORD: registered as secret by its name


def triage(project: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "PYTEST_"))}
    environ["DB_PASSWORD"] = PLANTED
    return subprocess.run([sys.executable, "-m", "opsgate.cli", "triage", "--env", "env.yaml", *args],
                          cwd=project, env=environ, capture_output=True, text=True, timeout=timeout)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _env(url: str, marker: str, extra: str = "") -> str:
    return f"""
name: shop
{extra}
http:
  - name: api-health
    severity: P0
    url: {url}/degraded
    expect: ["status == 'healthy'"]
    remedy: "./restart_api.sh - runbook: API Unhealthy"
log:
  - {{name: app-log, path: app.log, last_lines: 100, patterns: [{{regex: CRITICAL}}]}}
process:
  - {{name: worker, cmdline: "{marker}", min_count: 1}}
"""


@pytest.fixture
def worker():
    marker = f"opsgate-triage-worker-{uuid.uuid4().hex[:12]}"
    proc = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(120)", marker])
    yield marker, proc.pid
    proc.kill()
    proc.wait()


def _log(project: Path) -> None:
    (project / "app.log").write_text(
        f"{_now()} INFO started\n"
        f"{_now()} ERROR db connect failed for app with password={PLANTED}\n"
        f"{_now()} WARNING retrying with {PLANTED} as the key\n"
        f"{_now()} INFO done\n")


def test_triage_collects_the_runbooks_evidence_and_a_review_skeleton(tmp_path, worker):
    marker, pid = worker
    with HttpTarget() as target:
        project = make_project(tmp_path, _env(target.url, marker))
        _log(project)
        daily = run_pytest(project, env={"DB_PASSWORD": PLANTED})  # the latest daily report: the timeline's source
        assert daily.returncode == 1, daily.output
        done = triage(project, "--id", "inc-42")
    assert done.returncode == 0, done.stderr
    folder = project / "reports" / "incidents" / "inc-42"
    assert f"{folder}/" in done.stdout and "failing or warning now: P0 api-health" in done.stdout
    files = {p.name for p in folder.iterdir()}
    assert {"http-api-health.json", "log-app-log.json", "process-worker.json", "host-this-host.json",
            "summary.md", "review.md"} <= files

    http = json.loads((folder / "http-api-health.json").read_text())
    assert http["status_now"] == "fail" and http["response"]["status"] == "degraded"  # the health JSON itself
    assert http["remedy"] == "./restart_api.sh - runbook: API Unhealthy"

    log = json.loads((folder / "log-app-log.json").read_text())
    tail = log["tail"]["lines"]
    assert len(tail) == 4 and tail[0].endswith("INFO started")
    assert any("password=***" in line for line in tail) and any("retrying with *** as the key" in line for line in tail)
    assert log["errors_last_10_min"]["counts"]["error|exception|critical|fatal"] == 1

    process = json.loads((folder / "process-worker.json").read_text())
    assert process["status_now"] == "pass"
    assert [row["pid"] for row in process["details"]["processes"]] == [pid]

    host = json.loads((folder / "host-this-host.json").read_text())
    assert {"cpu_percent", "memory_percent", "disks"} <= set(host["observed"])

    review = (folder / "review.md").read_text()
    timeline = review.split("## Timeline", 1)[1].split("## Evidence", 1)[0]
    assert "P0 FAIL test_http[api-health]" in timeline  # from the daily report, when it ran
    assert "daily run started" in timeline and "P0 FAIL now: http api-health" in timeline
    assert "**Severity:** P0" in review and "./restart_api.sh - runbook: API Unhealthy" in review
    assert "| [HH:MM] | Service restored | | |" in review
    for path in folder.iterdir():
        assert PLANTED not in path.read_text(), path.name


def test_a_hanging_target_costs_its_timeout_only(tmp_path, worker):
    marker, _ = worker
    with HttpTarget() as healthy, HangingTarget() as hanging:
        stuck = f"  - {{name: stuck, url: '{hanging.url}/health', timeout: 60}}\nlog:\n"
        project = make_project(tmp_path, _env(healthy.url, marker).replace("log:\n", stuck, 1))
        _log(project)
        done = triage(project, "--id", "hang", "--timeout", "2", timeout=50)
    assert done.returncode == 0, done.stderr
    folder = project / "reports" / "incidents" / "hang"
    stuck = json.loads((folder / "http-stuck.json").read_text())
    assert stuck["status_now"] == "fail" and "2s" in stuck["message"], stuck["message"]
    assert stuck["duration_s"] < 60  # bounded by triage's timeout, not the item's own 60 s
    api = json.loads((folder / "http-api-health.json").read_text())
    assert api["response"]["status"] == "degraded"  # the others were collected meanwhile


def test_triage_refuses_to_overwrite_an_incident_and_a_bad_id(tmp_path, worker):
    marker, _ = worker
    with HttpTarget() as target:
        project = make_project(tmp_path, _env(target.url, marker))
        _log(project)
        assert triage(project, "--id", "once").returncode == 0
        again = triage(project, "--id", "once")
        bad = triage(project, "--id", "..")
    assert again.returncode == 2 and "never overwritten" in again.stderr
    assert bad.returncode == 2 and "incident id" in bad.stderr


AUTO = "triage: {on_failure: [P0, P1], timeout: 5s}"


def test_a_daily_run_with_a_p0_failure_collects_a_triage_and_names_it(tmp_path, worker):
    marker, _ = worker
    with HttpTarget() as target:
        project = make_project(tmp_path, _env(target.url, marker, AUTO))
        _log(project)
        result = run_pytest(project, env={"DB_PASSWORD": PLANTED})
    assert result.returncode == 1, result.output
    incidents = list((project / "reports" / "incidents").iterdir())
    assert len(incidents) == 1 and incidents[0].name.startswith("shop-")
    summary = result.output.split("opsgate summary", 1)[1]
    assert f"incident triage: {incidents[0]}/" in summary and "collected after: P0 api-health" in summary
    review = (incidents[0] / "review.md").read_text()
    assert "P0 FAIL test_http[api-health]" in review  # this run's own report is the latest daily
    assert PLANTED not in result.output


def test_no_triage_when_only_a_p2_check_fails(tmp_path, worker):
    marker, _ = worker
    with HttpTarget() as target:
        env = _env(target.url, marker, AUTO).replace("severity: P0", "severity: P2")
        project = make_project(tmp_path, env)
        _log(project)
        result = run_pytest(project, env={"DB_PASSWORD": PLANTED})
    assert "test_http[api-health]" in result.output and result.report()["opsgate"]["counts"]["fail"] == 1
    assert not (project / "reports" / "incidents").exists()
    assert "incident triage" not in result.output


def test_every_example_item_can_be_collected_as_triage_derives_it():
    """Triage re-validates each item with its changes (no retry/window, its timeout, the log's
    tail and error windows): every collected kind's item of the shipped examples survives that."""
    import time

    from opsgate import envfile, triage as t

    deadline = time.monotonic() + 5
    examples = sorted((Path(__file__).resolve().parents[1] / "config" / "examples").glob("*.yaml"))
    seen = 0
    for path in examples:
        env = envfile.load(path, allow_unset=True).env
        for item in t._items(env):
            t._bounded(item, deadline)
            if item.kind == "log":
                t._bounded(item, deadline, last_lines=10, last_minutes=None, require=[], timestamp_format=None,
                           timestamp_regex=None, patterns=[{"regex": "", "max": 10}], max_evidence_lines=10)
            seen += 1
    assert seen > len(examples)


def test_triage_records_a_cache_status_and_never_its_password(tmp_path):
    from tests.support.servers import RedisServer

    password = "Rd5-cache-secret-Kw2"
    with RedisServer(tmp_path, password=password) as server:
        project = make_project(tmp_path, "name: cache\nredis:\n  - {name: cache, severity: P1, url: '${REDIS_URL}'}\n")
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "PYTEST_"))}
        environ["REDIS_URL"] = server.url()
        done = subprocess.run([sys.executable, "-m", "opsgate.cli", "triage", "--env", "env.yaml", "--id", "c"],
                              cwd=project, env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    folder = project / "reports" / "incidents" / "c"
    cache = json.loads((folder / "redis-cache.json").read_text())
    assert cache["status_now"] == "pass" and cache["observed"]["role"] == "master"
    assert {"connected_replicas", "memory_percent", "last_save_age_s"} <= set(cache["observed"])
    for path in folder.iterdir():
        assert password not in path.read_text(), path.name


def test_a_log_without_timestamps_counts_its_errors_in_the_tail(tmp_path):
    project = make_project(tmp_path, "name: plain\nlog:\n  - {name: app, path: app.log, patterns: [{regex: CRITICAL}]}\n")
    (project / "app.log").write_text("starting\nException: boom\nok\nerror again\n")
    done = triage(project, "--id", "p", "--log-lines", "3")
    assert done.returncode == 0, done.stderr
    log = json.loads((project / "reports" / "incidents" / "p" / "log-app.json").read_text())
    errors = log["errors_last_10_min"]
    assert errors["window"].startswith("last 3 lines (no timestamp") and errors["error"] is None
    assert errors["counts"]["error|exception|critical|fatal"] == 2  # 'Exception: boom' and 'error again'
    assert log["tail"]["lines"] == ["app.log:2: Exception: boom", "app.log:3: ok", "app.log:4: error again"]


def test_triage_records_a_containers_state_and_its_recent_error_lines(tmp_path):
    import time

    from opsgate import triage as t
    from opsgate.model import Environment
    from tests.support.podman import PodmanEngine

    (tmp_path / "podman").mkdir()
    with PodmanEngine(tmp_path / "podman") as engine:
        box = engine.run("echo 'INFO ready'; echo 'ERROR db connection lost'; sleep 300")
        time.sleep(0.5)
        env = Environment.model_validate({"name": "stack", "container": [
            {"name": "backend", "severity": "P1", "engine": engine.url, "container": box.name}]})
        found = {c.name: c for c in t.collect(env, tmp_path, timeout=10)}
    backend = found["backend"].to_json()
    assert backend["status_now"] == "pass", backend  # the item itself sets no log limit: it holds
    assert backend["observed"]["status"] == "running" and backend["observed"]["restart_count"] == 0
    assert backend["observed"]["matches"]["error|exception|critical|fatal"] == 1
    assert any("ERROR db connection lost" in line for line in backend["details"]["lines"]["error|exception|critical|fatal"])
    assert "this-host" in found  # no host item: this machine's resources all the same


def _triage_env(project: Path, incident: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "PYTEST_"))}
    env.update(environ or {})
    return subprocess.run([sys.executable, "-m", "opsgate.cli", "triage", "--env", "env.yaml", "--id", incident],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)


def _assert_nothing_holds(folder: Path, *secrets: str) -> None:
    files = list(folder.iterdir())
    assert files
    for path in files:
        text = path.read_text()
        for secret in secrets:
            assert secret not in text, path.name


def test_triage_records_a_databases_status_and_never_its_password(tmp_path):
    """The runbooks' database status (Perfect Jarvis: pg_isready, connections; Living Codex:
    SELECT 1) on a real primary with a streaming replica: role, connections, replication; the
    item's own query is not run; the DSN's password appears in no file of the incident."""
    from tests.support.servers import APP_PASSWORD, PostgresServer

    with PostgresServer() as primary, PostgresServer(replica_of=primary) as replica:
        env = ("name: data\npostgres:\n"
               "  - {name: db, severity: P0, dsn: '${PG_DSN}', query: 'SELECT * FROM no_such_table', expect: ['count > 0']}\n"
               "  - {name: db-replica, severity: P1, dsn: '${PG_REPLICA_DSN}', role: replica}\n")
        project = make_project(tmp_path, env)
        done = _triage_env(project, "db", {"PG_DSN": primary.dsn(), "PG_REPLICA_DSN": replica.dsn()})
    assert done.returncode == 0, done.stderr
    folder = project / "reports" / "incidents" / "db"
    db = json.loads((folder / "postgres-db.json").read_text())
    assert db["collected"] == "database status: role, connections, replication"
    assert db["status_now"] == "pass", db  # the item's own (failing) query is not what triage runs
    observed = db["observed"]
    assert observed["role"] == "primary" and observed["replicas"] == 1, observed
    assert observed["connections"] >= 1 and observed["max_connections"] == 20 and "connections_percent" in observed
    assert observed["target"] == f"postgres 127.0.0.1:{primary.port}/app"
    assert [r["state"] for r in db["details"]["replicas"]] == ["streaming"], db["details"]
    standby = json.loads((folder / "postgres-db-replica.json").read_text())
    assert standby["status_now"] == "pass" and standby["observed"]["role"] == "replica", standby
    assert standby["observed"]["wal_receiver"] == "streaming"
    assert "postgres `db`" in (folder / "summary.md").read_text()
    _assert_nothing_holds(folder, APP_PASSWORD)
    assert APP_PASSWORD not in done.stdout + done.stderr


def test_triage_says_a_database_could_not_be_reached_and_still_completes(tmp_path):
    """PostgreSQL down: the database's file says it could not be reached and why (connection
    refused), the summary and review list it failing, the other items are collected all the
    same, and the password written in the DSN itself appears nowhere."""
    from tests.support.servers import PostgresServer

    password = "Pg7-inline-secret-Zq3"
    with PostgresServer() as server:
        dsn = f"postgresql://app:{password}@127.0.0.1:{server.port}/app"
        server.stop()  # nothing listens on its port now
        with HttpTarget() as api:
            env = (f"name: data\npostgres:\n  - {{name: db, severity: P0, dsn: '{dsn}', "
                   f"remedy: 'systemctl start postgresql - runbook: Database Down'}}\n"
                   f"http:\n  - {{name: api, severity: P1, url: '{api.url}/health'}}\n")
            project = make_project(tmp_path, env)
            done = _triage_env(project, "db-down")
    assert done.returncode == 0, done.stderr
    assert "failing or warning now: P0 db" in done.stdout, done.stdout
    folder = project / "reports" / "incidents" / "db-down"
    db = json.loads((folder / "postgres-db.json").read_text())
    assert db["status_now"] in ("fail", "error"), db
    assert db["message"].endswith(f"postgres 127.0.0.1:{server.port}/app: cannot connect: "
                                  "connection refused (is the server running?)"), db["message"]
    assert db["remedy"] == "systemctl start postgresql - runbook: Database Down"
    assert json.loads((folder / "http-api.json").read_text())["status_now"] == "pass"  # collected all the same
    summary = (folder / "summary.md").read_text()
    assert "postgres `db` | FAIL" in summary or "postgres `db` | ERROR" in summary, summary
    assert "connection refused" in summary and "connection refused" in (folder / "review.md").read_text()
    _assert_nothing_holds(folder, password)
    assert password not in done.stdout + done.stderr
