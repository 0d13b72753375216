"""``opsgate init --discover`` against a machine state the test sets up: a JSON health
endpoint, PostgreSQL, Redis (with a password), and a service that listens on a port, holds
a log file open and has a password in its command line and environment.

Other servers may run on this machine (other tests): every assertion is about this test's
own ports, PIDs and files, and the daily run selects only the checks that target them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import pytest

from opsgate import envfile
from tests.support.http_target import HttpTarget
from tests.support.project import make_project, reports_of, run_pytest
from tests.support.servers import APP_PASSWORD, PostgresServer, RedisServer

REDIS_PASSWORD = "r3dis-Discover-91"
CMDLINE_SECRET = "cmdline-Secret-4471"
ENV_SECRET = "environ-Secret-8830"
ADMIN_PASSWORD = "postgres-admin"  # the PG superuser's, set by PostgresServer

SERVICE = textwrap.dedent("""
    import socket, sys, time
    log = open(sys.argv[1], "a", buffering=1)
    log.write("INFO service started\\n")
    sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(8)
    print(sock.getsockname()[1], flush=True)
    while True:
        time.sleep(1)
""")


def _init_argv() -> list[str]:
    """``opsgate init`` of the installed CLI (``python -m opsgate.discover`` until cli.py has the hook)."""
    cli = shutil.which("opsgate", path=str(Path(sys.executable).parent))
    has_hook = cli and subprocess.run([cli, "init", "--help"], capture_output=True, timeout=30).returncode == 0
    return [cli, "init"] if has_hook else [sys.executable, "-m", "opsgate.discover"]


def _opsgate_init(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*_init_argv(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """The test's own services, running while the module's tests look at the machine."""
    root = tmp_path_factory.mktemp("machine")
    log = root / f"svc-{uuid.uuid4().hex[:8]}.log"
    service = subprocess.Popen([sys.executable, "-c", SERVICE, str(log), f"--password={CMDLINE_SECRET}"],
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "SERVICE_PASSWORD": ENV_SECRET})
    try:
        service_port = int(service.stdout.readline())
        with HttpTarget() as http, PostgresServer() as pg, RedisServer(root, password=REDIS_PASSWORD) as redis:
            yield {"root": root, "log": log, "service": service, "service_port": service_port,
                   "http": http, "pg": pg, "redis": redis}
    finally:
        service.kill()
        service.wait(timeout=10)


@pytest.fixture(scope="module")
def discovered(machine):
    out = machine["root"] / "env.yaml"
    proc = _opsgate_init("--discover", "-o", str(out), "--name", "discovered", cwd=machine["root"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out.read_text()


def _variables(text: str, own: dict[str, str]) -> dict[str, str]:
    """Every ${VAR} without a default: the test's own values for its ports, a dummy for the rest."""
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
    return {**{name: "dummy-value-for-other-servers" for name in names}, **own}


def _own_variables(machine) -> dict[str, str]:
    pg, redis = machine["pg"].port, machine["redis"].port
    return {f"PG_P{pg}_PASSWORD": APP_PASSWORD, f"PG_P{pg}_USER": "app", f"PG_P{pg}_DATABASE": "app",
            f"REDIS_P{redis}_PASSWORD": REDIS_PASSWORD}


def _pid_of(path: Path) -> int:
    return int(path.read_text().split()[0])


def test_the_file_validates_and_names_every_own_port_with_its_owner(machine, discovered):
    env = envfile.load(machine["root"] / "env.yaml", environ=_variables(discovered, _own_variables(machine))).env
    assert env.name == "discovered"
    pg, redis, http, svc = machine["pg"], machine["redis"], machine["http"], machine["service_port"]
    pg_pid = _pid_of(pg.data / "postmaster.pid")
    redis_pid = _pid_of(redis.dir / "r.pid")
    me = psutil.Process().name()
    service_name = psutil.Process(machine["service"].pid).name()
    for seen in (f"port {pg.port} on 127.0.0.1 owned by postgres (pid {pg_pid})",
                 f"port {redis.port} on 127.0.0.1 owned by redis-server (pid {redis_pid})",
                 f"port {http.port} on 127.0.0.1 owned by {me} (pid {os.getpid()})",
                 f"port {svc} on 127.0.0.1 owned by {service_name} (pid {machine['service'].pid})"):
        assert f"# {seen}" in discovered, seen
    names = {check.name: check for kind in ("http", "tcp", "process", "postgres", "redis", "log")
             for check in getattr(env, kind)}
    assert names[f"postgres-p{pg.port}"].dsn.endswith(f"127.0.0.1:{pg.port}/app")
    assert f"${{PG_P{pg.port}_PASSWORD}}" in discovered and f"${{REDIS_P{redis.port}_PASSWORD}}" in discovered
    assert names[f"http-p{http.port}-health"].expect == ["status == 'healthy'"]
    assert names[f"tcp-p{svc}"].port == svc
    for port in (pg.port, redis.port, http.port, svc):
        process = [c for c in env.process if c.port == port]
        assert len(process) == 1 and process[0].min_count == 1, port
    logs = [c for c in env.log if c.path == str(machine["log"])]
    assert len(logs) == 1 and logs[0].last_lines == 100 and logs[0].patterns[0].regex == "ERROR|CRITICAL"
    assert f"held open by {service_name} (pid {machine['service'].pid})" in discovered
    host = env.host[0]
    assert (host.cpu_percent.warn, host.cpu_percent.critical) == (80, 90)
    assert any(d.path == "/" and d.used_percent.critical == 90 for d in host.disks)


def test_no_secret_it_could_have_seen_is_written(machine, discovered):
    for secret in (APP_PASSWORD, REDIS_PASSWORD, CMDLINE_SECRET, ENV_SECRET, ADMIN_PASSWORD):
        assert secret not in discovered


def test_the_daily_run_of_the_discovered_environment_passes_for_the_own_servers(machine, discovered, tmp_path):
    own_ports = {machine["pg"].port, machine["redis"].port, machine["http"].port, machine["service_port"]}
    env = envfile.load(machine["root"] / "env.yaml", environ=_variables(discovered, _own_variables(machine))).env
    own = [c.name for kind in ("http", "tcp", "process", "postgres", "redis") for c in getattr(env, kind)
           if any(re.search(rf"-p{port}(-|$)", c.name) for port in own_ports)]
    own += [c.name for c in env.log if c.path == str(machine["log"])]
    assert len(own) >= 9, own
    project = make_project(tmp_path, discovered)
    run = run_pytest(project, "-k", " or ".join(own), env=_variables(discovered, _own_variables(machine)))
    assert run.returncode == 0 and "verdict: PASS" in run.output, run.output[-3000:]
    # a -k run is partial: its report is the timestamped one (daily-latest.json is left alone)
    written = sorted(reports_of(project, "discovered").glob("daily-2*.json"))
    assert written, run.output[-3000:]
    statuses = {re.search(r"\[(.*)\]$", t["nodeid"]).group(1): t["metadata"]["opsgate"]["status"]
                for t in json.loads(written[-1].read_text())["tests"]}
    assert set(own) <= set(statuses), run.output[-3000:]
    assert {n: s for n, s in statuses.items() if n in own and s != "pass"} == {}, run.output[-3000:]


def test_an_existing_file_is_not_overwritten_without_force(tmp_path):
    out = tmp_path / "env.yaml"
    out.write_text("name: mine\n")
    refused = _opsgate_init("--discover", "-o", str(out), "--seconds", "3", cwd=tmp_path)
    assert refused.returncode != 0 and "exists" in refused.stderr and out.read_text() == "name: mine\n"
    forced = _opsgate_init("--discover", "-o", str(out), "--force", "--seconds", "3", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert out.read_text().startswith("# Written by `opsgate init --discover`")


def test_prometheus_a_container_and_a_port_that_never_answers(tmp_path):
    """Prometheus is recognised by /api/v1/status/buildinfo, a container engine by /_ping (here
    through $DOCKER_HOST) with its running container, and a port that accepts but never
    answers costs its own probes' timeouts only: discovery stays bounded and still lists it."""
    from tests.support.http_target import HangingTarget
    from tests.support.podman import PodmanEngine
    from tests.support.servers import PrometheusServer

    with HangingTarget() as hanging, HttpTarget() as api, PrometheusServer(tmp_path, api.port) as prom, \
            PodmanEngine(tmp_path) as engine:
        container = engine.run("sleep 120")
        out = tmp_path / "env.yaml"
        started = time.monotonic()
        proc = subprocess.run([*_init_argv(), "--discover", "-o", str(out)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "DOCKER_HOST": engine.url})
        elapsed = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr
        assert elapsed < 15, elapsed  # the old behaviour to guard against: no bound at all
        text = out.read_text()
        env = envfile.load(out, environ=_variables(text, {})).env
        assert [c.url for c in env.prometheus if c.name == f"prometheus-p{prom.port}"] == [prom.url]
        assert f"port {prom.port} on 127.0.0.1 owned by prometheus (pid {prom.process.pid}): " \
               "/api/v1/status/buildinfo answered (Prometheus)" in text
        ours = [c for c in env.container if c.container == container.name]
        assert len(ours) == 1 and ours[0].engine == engine.url and ours[0].running
        assert [c.port for c in env.tcp if c.name == f"tcp-p{hanging.port}"] == [hanging.port]
        project = make_project(tmp_path, text)
        run = run_pytest(project, "-k", f"{ours[0].name} or tcp-p{hanging.port}", env=_variables(text, {}))
        assert run.returncode == 0 and "2 pass, 0 fail" in run.output, run.output[-3000:]


def test_init_without_discover_or_with_an_unwritable_file_says_so(tmp_path):
    bare = _opsgate_init("-o", str(tmp_path / "env.yaml"), cwd=tmp_path)
    assert bare.returncode == 2 and "--discover" in bare.stderr and not (tmp_path / "env.yaml").exists()
    missing = tmp_path / "no-such-folder" / "env.yaml"
    failed = _opsgate_init("--discover", "-o", str(missing), "--seconds", "2", cwd=tmp_path)
    assert failed.returncode == 1 and f"cannot write {missing}" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
