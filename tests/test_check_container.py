"""``container`` checks against real containers (podman's Docker-compatible API, busybox image).

Runbook steps protected here: "docker-compose ps: every service Up (healthy)", "no container
restarting", "pg_isready inside the database container", "no ERROR lines in the last 10
minutes of its logs".
"""

from __future__ import annotations

import time

import pytest

from opsgate.model import ContainerCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check
from tests.support.podman import PodmanEngine

HEALTHY = {"test": ["CMD-SHELL", "true"], "interval": 3_600_000_000_000, "retries": 1}
SICK = {"test": ["CMD-SHELL", "exit 1"], "interval": 3_600_000_000_000, "retries": 1}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with PodmanEngine(tmp_path_factory.mktemp("podman")) as podman:
        yield podman


def check(engine, **fields):
    fields.setdefault("name", "c")
    fields.setdefault("timeout", 10)
    return run_check(ContainerCheck(engine=engine.url, **fields), ProbeContext())


def test_running_healthy_container_passes(engine):
    ct = engine.run("echo started; sleep 300", healthcheck=HEALTHY)
    engine.healthcheck(ct.name)
    result = check(engine, container=ct.name, healthy=True, max_restarts=0, min_uptime=0,
                   exec=["sh", "-c", "echo /run/postgresql:5432 - accepting connections"],
                   exec_stdout_regex="accepting connections", log_patterns=[{"regex": "ERROR|FATAL", "max": 0}])
    assert result.status == "pass", result.message
    seen = result.evidence["observed"]
    assert (seen["status"], seen["health"], seen["restart_count"], seen["exec_exit_code"]) == ("running", "healthy", 0, 0)


@pytest.mark.negative("container")
def test_exited_container_fails_with_its_exit_code(engine):
    ct = engine.run("exit 3")
    time.sleep(0.5)
    result = check(engine, container=ct.name)
    assert result.status == "fail"
    assert result.message == f'container {ct.name}: status == \'running\': observed "exited" -- exited with exit code 3'


def test_unhealthy_container_fails(engine):
    ct = engine.run("sleep 300", healthcheck=SICK)
    engine.healthcheck(ct.name, times=2)
    result = check(engine, container=ct.name, healthy=True)
    assert result.status == "fail"
    assert result.message.startswith(f'container {ct.name}: health == \'healthy\': observed "unhealthy"')


def test_restarting_container_fails_as_a_crash_loop(engine):
    ct = engine.run("sleep 0.2; exit 1", restart_policy={"Name": "on-failure", "MaximumRetryCount": 100})
    time.sleep(2)
    result = check(engine, container=ct.name, max_restarts=2, min_uptime=60)
    assert result.status == "fail"
    assert f"container {ct.name}: restart_count <= 2: observed " in result.message
    assert int(result.evidence["observed"]["restart_count"]) > 2


def test_missing_container_is_named(engine):
    result = check(engine, container="no-such-container")
    assert result.status == "fail"
    assert result.message == f"container no-such-container: no container named 'no-such-container' on {engine.url}"


def test_command_inside_the_container_fails_with_its_output(engine):
    ct = engine.run("sleep 300")
    result = check(engine, container=ct.name, exec=["sh", "-c", "echo '/run/postgresql:5432 - no response'; exit 2"],
                   exec_stdout_regex="accepting connections")
    assert result.status == "fail"
    assert result.message.startswith(f"container {ct.name}: sh -c echo '/run/postgresql:5432 - no response'; exit 2 exits 0: observed 2")
    assert "no response" in result.message


def test_error_lines_in_recent_logs_fail(engine):
    ct = engine.run("echo 'INFO ready'; echo 'ERROR db connection lost'; sleep 300")
    time.sleep(0.5)
    result = check(engine, container=ct.name, log_patterns=[{"regex": "ERROR", "max": 0}], log_minutes=10)
    assert result.status == "fail"
    assert result.message.startswith(f"container {ct.name}: lines matching /ERROR/ in last 10 min of logs <= 0: observed 1")
    assert "ERROR db connection lost" in result.message


def _compose(engine, project, services: dict[str, str]):
    for service, script in services.items():
        engine.run(script, name=f"{project}-{service}-1",
                   labels={"com.docker.compose.project": project, "com.docker.compose.service": service})


def test_compose_project_with_every_service_up_passes(engine):
    _compose(engine, "shop", {"web": "sleep 300", "db": "sleep 300"})
    result = check(engine, compose_project="shop", services=["web", "db"], max_restarts=0)
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["containers"] == 2


def test_compose_service_missing_or_exited_fails(engine):
    _compose(engine, "blog", {"web": "sleep 300", "worker": "exit 1"})
    time.sleep(0.5)
    result = check(engine, compose_project="blog", services=["web", "worker", "cache"])
    assert result.status == "fail"
    assert result.message == ("every expected service exists: observed 1; every service running: observed 1 -- "
                              "missing: cache; not running: worker (exited, exit 1); services: web=running/none, worker=exited/none")
    assert result.evidence["observed"]["missing_services"] == ["cache"]
    assert result.evidence["observed"]["not_running"] == ["worker (exited, exit 1)"]


def test_unknown_compose_project_fails(engine):
    result = check(engine, compose_project="nothing-here")
    assert result.status == "fail"
    assert result.message.startswith("project nothing-here has containers: observed 0")


def test_unreachable_engine_is_named(tmp_path):
    result = run_check(ContainerCheck(name="c", container="web", engine=f"unix://{tmp_path}/none.sock", timeout=2), ProbeContext())
    assert result.status == "fail"
    assert result.message == f"container web: cannot reach the container engine at unix://{tmp_path}/none.sock (no such socket)"


def test_command_inside_that_never_ends_fails_at_the_timeout(engine):
    """No probe may hang: `docker exec` of a command that does not return."""
    ct = engine.run("sleep 300")
    started = time.monotonic()
    result = check(engine, container=ct.name, exec=["sh", "-c", "echo waiting; sleep 60"], timeout=2)
    took = time.monotonic() - started
    assert result.status == "fail"
    assert result.message == f"container {ct.name}: sh -c echo waiting; sleep 60 did not finish within 2s; output so far: 'waiting\\n'"
    assert took < 5


def test_checks_of_one_engine_run_side_by_side(engine):
    """Six checks on one engine, each exec taking 0.6 s with a 2 s timeout: none waits its turn."""
    from concurrent.futures import ThreadPoolExecutor

    ct = engine.run("sleep 300")
    ctx = ProbeContext()
    item = dict(engine=engine.url, container=ct.name, exec=["sleep", "0.6"], timeout=2)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: run_check(ContainerCheck(name=f"c{i}", **item), ctx), range(6)))
    ctx.shared.close()
    assert [r.status for r in results] == ["pass"] * 6, [r.message for r in results]


def test_crashed_replica_is_not_hidden_behind_a_healthy_one_of_the_same_service(engine):
    engine.run("sleep 300", name="scaled-web-1",
               labels={"com.docker.compose.project": "scaled", "com.docker.compose.service": "web"})
    engine.run("exit 3", name="scaled-web-2",
               labels={"com.docker.compose.project": "scaled", "com.docker.compose.service": "web"})
    time.sleep(0.5)
    result = check(engine, compose_project="scaled", services=["web"])
    assert result.status == "fail", result.message
    assert result.evidence["observed"]["containers"] == 2
    assert result.evidence["observed"]["not_running"] == ["web (scaled-web-2) (exited, exit 3)"]


def test_a_container_that_logged_much_is_read_line_by_line(engine):
    ct = engine.run("i=0; while [ $i -lt 20000 ]; do echo INFO line $i; i=$((i+1)); done; echo 'ERROR late'; sleep 300")
    time.sleep(2)
    result = check(engine, container=ct.name, log_patterns=[{"regex": "ERROR", "max": 0}], log_minutes=10)
    assert result.status == "fail", result.message
    assert result.evidence["observed"]["log_lines"] >= 20001
    assert "ERROR late" in result.message


def test_compose_healthy_judges_services_with_a_healthcheck_and_names_the_others(engine):
    """docker-compose ps "Up (healthy)": a service with no healthcheck has no health to judge;
    require_healthcheck: true keeps the strict form."""
    labels = {"com.docker.compose.project": "mixed"}
    engine.run("sleep 300", name="mixed-api-1", healthcheck=HEALTHY, labels={**labels, "com.docker.compose.service": "api"})
    engine.run("sleep 300", name="mixed-worker-1", labels={**labels, "com.docker.compose.service": "worker"})
    engine.healthcheck("mixed-api-1")
    lenient = check(engine, compose_project="mixed", healthy=True)
    assert lenient.status == "pass", lenient.message
    assert lenient.evidence["observed"]["no_healthcheck"] == ["worker"]
    strict = check(engine, compose_project="mixed", healthy=True, require_healthcheck=True)
    assert strict.status == "fail"
    assert "unhealthy: worker (none)" in strict.message


def test_compose_unhealthy_and_restarting_services_are_named(engine):
    labels = {"com.docker.compose.project": "named"}
    engine.run("sleep 300", name="named-db-1", healthcheck=SICK, labels={**labels, "com.docker.compose.service": "db"})
    engine.run("sleep 0.2; exit 1", name="named-job-1", restart_policy={"Name": "on-failure", "MaximumRetryCount": 100},
               labels={**labels, "com.docker.compose.service": "job"})
    engine.healthcheck("named-db-1", times=2)
    time.sleep(2)
    result = check(engine, compose_project="named", healthy=True, max_restarts=0, running=False)
    assert result.status == "fail"
    assert "unhealthy: db (unhealthy)" in result.message
    assert "restarted: job (" in result.message


def test_compose_healthy_with_no_healthcheck_anywhere_judges_nothing_and_fails(engine):
    engine.run("sleep 300", name="bare-web-1", labels={"com.docker.compose.project": "bare",
                                                       "com.docker.compose.service": "web"})
    result = check(engine, compose_project="bare", healthy=True)
    assert result.status == "fail"
    assert result.message.startswith("at least one service defines a healthcheck: observed 0")


# --- CPU and memory from the engine's stats; logs of a whole compose project -------------------

BUSY = "while true; do :; done"
# eight copies of busybox (2 MB) in the container's /dev/shm: tmpfs pages are charged to its memory
HOG = "i=0; while [ $i -lt 8 ]; do cat /bin/busybox > /dev/shm/hog$i; i=$((i+1)); done; echo grown; sleep 300"


def grown(ct, deadline_s=30):
    """Wait until the memory hog printed that it holds its memory."""
    end = time.monotonic() + deadline_s
    while b"grown" not in ct.logs() and time.monotonic() < end:
        time.sleep(0.2)


def test_idle_container_within_cpu_and_memory_limits_passes(engine):
    ct = engine.run("sleep 300")
    result = check(engine, container=ct.name, cpu_percent={"warn": 50, "critical": 90}, memory_mb=200,
                   memory_percent=90)
    assert result.status == "pass", result.message
    seen = result.evidence["observed"]
    assert 0 <= seen["cpu_percent"] < 50 and 0 < seen["memory_mb"] < 200 and 0 <= seen["memory_percent"] < 90


@pytest.mark.negative("container")
def test_busy_container_fails_its_cpu_limit(engine):
    """Runbook (Jarvis): docker stats --no-stream, a container above 80 % CPU."""
    ct = engine.run(BUSY)
    result = check(engine, container=ct.name, cpu_percent=5)
    assert result.status == "fail", result.message
    assert result.message.startswith(f"container {ct.name}: cpu_percent < 5: observed ")
    assert result.evidence["observed"]["cpu_percent"] >= 5


@pytest.mark.negative("container")
def test_container_holding_memory_fails_its_memory_limits(engine):
    ct = engine.run(HOG, mem_limit="64m")
    grown(ct)
    result = check(engine, container=ct.name, memory_mb={"warn": 1, "critical": 4}, memory_percent=6)
    assert result.status == "fail", result.message
    assert f"container {ct.name}: memory_mb < 4: observed " in result.message
    assert f"container {ct.name}: memory_percent < 6: observed " in result.message
    seen = result.evidence["observed"]
    assert seen["memory_mb"] >= 8 and seen["memory_percent"] >= 12  # 15 MiB of a 64 MiB limit


def test_memory_between_warn_and_critical_warns(engine):
    ct = engine.run(HOG)
    grown(ct)
    result = check(engine, container=ct.name, memory_mb={"warn": 4, "critical": 4000})
    assert result.status == "warn", result.message
    assert "memory_mb < 4: observed" in result.message


@pytest.mark.negative("container")
def test_compose_service_over_its_memory_limit_is_named(engine):
    labels = {"com.docker.compose.project": "heavy"}
    engine.run("sleep 300", name="heavy-web-1", labels={**labels, "com.docker.compose.service": "web"})
    hog = engine.run(HOG, name="heavy-worker-1", labels={**labels, "com.docker.compose.service": "worker"})
    grown(hog)
    result = check(engine, compose_project="heavy", memory_mb=4, cpu_percent=400)
    assert result.status == "fail", result.message
    assert result.message.startswith("every running service's memory_mb < 4: observed ")
    assert "memory_mb: worker " in result.message
    stats = result.evidence["observed"]["stats"]
    assert set(stats) == {"web", "worker"} and stats["worker"]["memory_mb"] >= 8 > stats["web"]["memory_mb"]


def test_compose_logs_of_every_service_clean_passes(engine):
    _compose(engine, "quiet", {"api": "echo 'INFO ready'; sleep 300", "db": "echo 'LOG ready'; sleep 300"})
    time.sleep(0.5)
    result = check(engine, compose_project="quiet", log_patterns=[{"regex": "ERROR|FATAL"}])
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["log_lines"] == 2


@pytest.mark.negative("container")
def test_compose_error_in_one_service_log_fails_naming_it(engine):
    """Runbook (Jarvis): docker-compose logs --since=10m | grep -i error | wc -l."""
    _compose(engine, "noisy", {"backend": "echo 'INFO up'; echo 'ERROR ollama unreachable'; sleep 300",
                               "redis": "echo 'Ready to accept connections'; sleep 300"})
    time.sleep(0.5)
    result = check(engine, compose_project="noisy", log_patterns=[{"regex": "ERROR|FATAL", "max": 0}])
    assert result.status == "fail"
    assert result.message.startswith("lines matching /ERROR|FATAL/ in last 10 min of the logs of every service <= 0: "
                                     "observed 1")
    assert "noisy-backend-1: ERROR ollama unreachable" in result.message
    assert result.evidence["details"]["matches_by_service"] == {"backend": {"ERROR|FATAL": 1},
                                                                "redis": {"ERROR|FATAL": 0}}
