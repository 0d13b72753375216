"""``container``: containers through the Docker Engine API (the ``docker`` SDK; Docker itself or
podman's compatible service), the runbook's `docker ps`, `docker inspect`, `docker exec` and
`docker logs`.

One container (``container``) — observed: ``status``, ``exit_code``, ``health``
(healthy/unhealthy/starting, or none without a healthcheck), ``restart_count``,
``uptime_s``; with ``exec`` (bounded by the item's timeout), ``exec_exit_code`` and
``exec_stdout_regex_found``; with
``log_patterns``, ``matches`` per regex over the last ``log_minutes`` of its logs; with
``cpu_percent``/``memory_percent``/``memory_mb`` limits, those readings from the engine's stats.

CPU and memory are read as ``docker stats --no-stream`` shows them: a non-streaming stats call
per running container, bounded by the item's timeout. CPU % is the container's share of the
host's CPU time between two readings times the number of CPUs (100 = one core busy): Docker
returns both readings in one call; podman returns one, so a second call follows ``cpu_sample``
later (one pause for all the containers of a project). Memory is the usage less the
inactive page cache, in MiB and as a percent of the container's limit (the host's memory
when it has none).

A compose project (``compose_project``) — every container labelled
``com.docker.compose.project=NAME``, by ``com.docker.compose.service``: ``containers``,
``missing_services``, ``not_running``, ``unhealthy``, ``max_restart_count``, ``min_uptime_s``;
with stats limits ``max_cpu_percent``, ``max_memory_percent``, ``max_memory_mb`` over the running
services (``stats`` per service); with ``log_patterns``, ``matches`` summed over every
service's logs (``matches_by_service`` names where).

The engine is ``engine``, else ``$DOCKER_HOST``, else the local Docker socket; one client per
engine per run; every API call is bounded by the item's timeout.

>>> from opsgate.probes import ProbeContext
>>> observe(ContainerCheck(name="c", container="web", engine="unix:///nonexistent.sock", timeout=1), ProbeContext()).error
'container web: cannot reach the container engine at unix:///nonexistent.sock (no such socket)'
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field, model_validator

from ..conditions import Condition
from ..kinds import Kind
from ..redact import REDACTOR
from ..results import Observation
from ..schema import CheckItem, Duration, Limit, LogPattern, Regex
from .log import count_patterns, pattern_limits


class ContainerCheck(CheckItem):
    """Containers through the Docker Engine API (Docker, or podman's compatible service): one
    container, or every service of a compose project (``com.docker.compose.project`` label):
    running, healthy, restart count, uptime (crash loops), a command run inside, error lines
    in its recent logs."""

    kind: ClassVar[str] = "container"
    engine: str | None = Field(None, description="DOCKER_HOST-style address (default $DOCKER_HOST, else the local socket)")
    container: str | None = Field(None, description="container name or id")
    compose_project: str | None = Field(None, description="every container with this com.docker.compose.project label")
    services: list[str] = Field([], description="compose services that must exist (default: those found)")
    running: bool = True
    healthy: bool = Field(False, description="health status must be 'healthy'; in a compose project only services that "
                                             "define a healthcheck are judged (the others are listed as 'no healthcheck')")
    require_healthcheck: bool = Field(False, description="with healthy in a compose project: a service without a "
                                                         "healthcheck fails too")
    max_restarts: int | None = Field(None, ge=0)
    min_uptime: Duration | None = Field(None, description="running at least this long (a crash loop restarts it sooner)")
    exec: list[str] | None = Field(None, description="argv run inside the container, e.g. [pg_isready, -U, app]")
    exec_exit_code: int = 0
    exec_stdout_regex: Regex | None = None
    log_minutes: float = Field(10, gt=0, description="how far back log_patterns look")
    log_patterns: list[LogPattern] = Field([], description="regexes counted in the recent log lines of the container, "
                                                           "or of every service of the compose project together")
    cpu_percent: Limit | None = Field(None, description="CPU % from the engine's stats, as docker stats shows it "
                                                        "(100 = one core); in a project, of every running service")
    memory_percent: Limit | None = Field(None, description="memory used as a % of the container's limit (of the host's "
                                                           "memory without one), from the engine's stats")
    memory_mb: Limit | None = Field(None, description="memory used in MiB (usage less inactive page cache), from the "
                                                      "engine's stats")
    cpu_sample: Duration = Field(1.0, gt=0, description="with cpu_percent, on an engine whose stats carry one reading "
                                                        "(podman): the pause between two")

    @model_validator(mode="after")
    def _one_target(self) -> "ContainerCheck":
        if bool(self.container) == bool(self.compose_project):
            raise ValueError("expected exactly one of container or compose_project")
        if self.compose_project and self.exec:
            raise ValueError("expected exec with container, not compose_project")
        if self.services and not self.compose_project:
            raise ValueError("expected services with compose_project")
        return self

    def wants_stats(self) -> bool:
        return any(limit is not None for limit in (self.cpu_percent, self.memory_percent, self.memory_mb))


PROJECT = "com.docker.compose.project"
_MAX_EXEC_OUTPUT = 64 * 1024  # the tail of an exec's output kept for its regex and evidence
_MAX_LINE = 64 * 1024  # a log line longer than this is searched in its first 64 KiB
SERVICE = "com.docker.compose.service"


def engine_of(item: ContainerCheck) -> str:
    return item.engine or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _client(item: ContainerCheck) -> docker.DockerClient:
    import docker  # docker and requests: paid by runs that check containers

    return docker.DockerClient(base_url=engine_of(item), timeout=max(1, round(item.timeout)))


def _cause(exc: Exception, item: ContainerCheck) -> str:
    import docker
    import requests

    text = " ".join(str(exc).split())
    engine = engine_of(item)
    if isinstance(exc, docker.errors.NotFound):
        return f"no container named {item.container!r} on {engine}"
    if "FileNotFoundError" in text or "No such file or directory" in text:
        return f"cannot reach the container engine at {engine} (no such socket)"
    if "Connection refused" in text:
        return f"cannot reach the container engine at {engine} (connection refused)"
    if isinstance(exc, (requests.exceptions.ReadTimeout, requests.exceptions.ConnectTimeout)) or "timed out" in text:
        return f"the container engine at {engine} did not answer within {item.timeout:g}s"
    return f"{type(exc).__name__}: {REDACTOR.excerpt(text, 200)}"


def _started(value: str | None) -> float | None:
    """Docker's RFC 3339 time with nanoseconds -> epoch seconds (None for the zero time)."""
    if not value or value.startswith("0001-"):
        return None
    value = re.sub(r"(\.\d{6})\d*", r"\1", value).replace("Z", "+00:00")
    return datetime.fromisoformat(value).timestamp()


def _state(container: Any) -> dict[str, Any]:
    attrs = container.attrs
    state = attrs.get("State", {})
    started = _started(state.get("StartedAt"))
    running = state.get("Status") == "running"
    return {
        "name": container.name,
        "status": state.get("Status", "unknown"),
        "exit_code": state.get("ExitCode"),
        "health": (state.get("Health") or state.get("Healthcheck") or {}).get("Status") or "none",
        "restart_count": int(attrs.get("RestartCount") or 0),
        "uptime_s": round(time.time() - started, 1) if running and started else 0.0,
    }


#: the phases of one check (the API calls, exec, logs) are each bounded by its timeout
PHASES = 3


def observe(item: ContainerCheck, ctx) -> Observation:
    """``_observe`` on its own thread, abandoned past every phase's timeout: the Docker SDK's
    timeout bounds each socket read, so an engine that trickles its answer a byte at a time
    held the check for ever. The abandoned thread ends when the engine stops or the run does."""
    shown = f"container {item.container}" if item.container else f"compose project {item.compose_project}"
    limit = PHASES * item.timeout + item.cpu_sample + 1
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["observation"] = _observe(item, ctx)
        except BaseException as exc:  # raised again on the caller's thread: a probe bug stays one
            box["raised"] = exc

    worker = threading.Thread(target=run, daemon=True, name=f"container probe {shown}")
    worker.start()
    worker.join(limit)
    if "raised" in box:
        raise box["raised"]
    if "observation" not in box:
        return Observation({"target": shown}, error=(
            f"{shown}: the container engine at {engine_of(item)} did not finish answering within {limit:g}s "
            "(it kept the connection open, answering too slowly)"))
    return box["observation"]


def _observe(item: ContainerCheck, ctx) -> Observation:
    import docker
    import requests

    shown = f"container {item.container}" if item.container else f"compose project {item.compose_project}"
    try:
        with ctx.shared.use(("docker", engine_of(item)), lambda: _client(item), item.timeout) as client:
            if item.container:
                return _one(item, client, client.containers.get(item.container))
            found = client.containers.list(all=True, filters={"label": f"{PROJECT}={item.compose_project}"})
            return _project(item, client, found)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError, TimeoutError) as exc:
        return Observation({"target": shown}, error=f"{shown}: {_cause(exc, item)}")


# --- CPU and memory from the engine's stats --------------------------------------------------

MIB = 1024 * 1024


def _stats_call(client: docker.DockerClient, container: Any) -> dict[str, Any]:
    """One non-streaming stats reading (the client's timeout bounds it)."""
    reading = client.api.stats(container.id, stream=False)
    if not isinstance(reading, dict) or "cpu_stats" not in reading:
        raise ValueError(f"the engine's stats for {container.name} hold no cpu_stats")
    return reading


def _cpu_times(cpu: dict[str, Any]) -> tuple[int, int] | None:
    """(container CPU ns, host CPU ns) of one reading; None when it has no host time."""
    total, system = (cpu.get("cpu_usage") or {}).get("total_usage"), cpu.get("system_cpu_usage")
    return (int(total), int(system)) if total is not None and system else None


def usage(first: dict[str, Any], second: dict[str, Any] | None = None) -> dict[str, float | None]:
    """``cpu_percent``, ``memory_mb`` and ``memory_percent`` as ``docker stats`` computes them,
    from one reading carrying its predecessor (Docker) or from two (``second`` later).

    >>> one = {"cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000}, "system_cpu_usage": 20_000_000_000,
    ...                      "online_cpus": 2},
    ...        "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000}, "system_cpu_usage": 18_000_000_000},
    ...        "memory_stats": {"usage": 300 * MIB, "limit": 1000 * MIB, "stats": {"inactive_file": 100 * MIB}}}
    >>> usage(one)
    {'cpu_percent': 100.0, 'memory_mb': 200.0, 'memory_percent': 20.0}
    """
    now = (second or first)["cpu_stats"]
    before = _cpu_times(first["cpu_stats"]) if second else _cpu_times(first.get("precpu_stats") or {})
    after = _cpu_times(now)
    cpus = now.get("online_cpus") or len((now.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu = None
    if before and after and after[1] > before[1]:
        cpu = round(max(0, after[0] - before[0]) / (after[1] - before[1]) * cpus * 100, 2)
    memory = (second or first).get("memory_stats") or {}
    used = memory.get("usage")
    if used is not None:
        extra = memory.get("stats") or {}
        cache = extra.get("inactive_file", extra.get("total_inactive_file", extra.get("cache", 0)))
        used = max(0, used - (cache if cache < used else 0))
    limit = memory.get("limit")
    return {"cpu_percent": cpu,
            "memory_mb": round(used / MIB, 1) if used is not None else None,
            "memory_percent": round(used / limit * 100, 2) if used is not None and limit else None}


def measure(item: ContainerCheck, client: docker.DockerClient, containers: list[Any]) -> dict[str, dict]:
    """Each running container's usage, by name: one stats call each, and on an engine whose
    stats carry no previous CPU reading (podman) a second one after ``cpu_sample`` (one pause for all).
    A container that stopped meanwhile has no readings (None: a limit on it fails as missing)."""
    running = [c for c in containers if c.attrs.get("State", {}).get("Status") == "running"]
    first = {c.name: _reading(client, c) for c in running}
    single = item.cpu_percent is not None and any(
        r is not None and not _cpu_times(r.get("precpu_stats") or {}) for r in first.values())
    if single:
        time.sleep(min(item.cpu_sample, item.timeout / 3))
    out = {}
    for c in running:
        second = _reading(client, c) if single and first[c.name] is not None else None
        out[c.name] = usage(first[c.name], second) if first[c.name] is not None and (second or not single) else \
            dict.fromkeys(("cpu_percent", "memory_mb", "memory_percent"))
    return out


def _reading(client: docker.DockerClient, container: Any) -> dict[str, Any] | None:
    """A stats reading, or None when the container is gone or stopped (the engine answers
    404, or podman with a body that is not JSON)."""
    import docker

    try:
        return _stats_call(client, container)
    except (docker.errors.NotFound, ValueError):
        return None


def run_inside(client: docker.DockerClient, container: Any, argv: list[str], timeout: float) -> tuple[int | None, str]:
    """Run ``argv`` in the container: (exit code, output), or (None, output so far) when it has
    not finished within ``timeout``. The SDK's exec_run would wait for ever; this reads the
    exec's raw socket against a deadline."""
    api = client.api
    exec_id = api.exec_create(container.id, argv, tty=True)["Id"]  # tty: raw output, no stream framing
    stream = api.exec_start(exec_id, tty=True, socket=True)
    raw = getattr(stream, "_sock", stream)
    deadline = time.monotonic() + timeout
    output = bytearray()
    try:
        while (left := deadline - time.monotonic()) > 0:
            raw.settimeout(left)
            try:
                chunk = raw.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            if not chunk:
                break
            output += chunk
            if len(output) > _MAX_EXEC_OUTPUT:  # a chatty command: keep its tail, bounded
                del output[:-_MAX_EXEC_OUTPUT]
    finally:
        stream.close()
    text = output.decode("utf-8", errors="replace").replace("\r\n", "\n")
    while True:  # the exit code lands a moment after the output ends
        info = api.exec_inspect(exec_id)
        if not info.get("Running"):
            return info.get("ExitCode"), text
        if time.monotonic() > deadline:
            return None, text
        time.sleep(0.02)


def _one(item: ContainerCheck, client: docker.DockerClient, container: Any) -> Observation:
    values = _state(container)
    details: dict[str, Any] = {"image": container.attrs.get("Config", {}).get("Image")}
    explain = []
    if item.exec:
        exit_code, output = run_inside(client, container, item.exec, item.timeout)
        if exit_code is None:
            return Observation(values, error=f"container {container.name}: {' '.join(item.exec)} did not finish within "
                                             f"{item.timeout:g}s; output so far: {REDACTOR.excerpt(output, 200, keep='tail')!r}")
        values["exec_exit_code"] = exit_code
        if item.exec_stdout_regex:
            values["exec_stdout_regex_found"] = bool(re.search(item.exec_stdout_regex, output))
        details["exec_output"] = REDACTOR.excerpt(output, 2000, keep="tail")
        if exit_code != item.exec_exit_code or not values.get("exec_stdout_regex_found", True):
            explain.append(f"{' '.join(item.exec)}: " + " | ".join(REDACTOR.text(output).strip().splitlines()[-3:]))
    if item.wants_stats() and values["status"] == "running":
        values.update(measure(item, client, [container]).get(container.name, {}))
    if item.log_patterns:
        logs = _logs(item, [container], time.monotonic() + item.timeout)
        if isinstance(logs, str):
            return Observation(values, error=f"container {container.name}: {logs}")
        values.update(log_lines=logs["log_lines"], matches=logs["matches"])
        details["lines"] = logs["lines"]
        if logs["first"]:
            explain.append(logs["first"])
    if values["status"] != "running":
        explain.append(f"{values['status']} with exit code {values['exit_code']}")
    return Observation(values, details=details, explain="; ".join(explain) or None)


def _logs(item: ContainerCheck, containers: list[Any], deadline: float) -> dict[str, Any] | str:
    """``log_patterns`` counted over the last ``log_minutes`` of each container's logs, together
    (evidence lines name the container); a string says why they could not all be read."""
    since = int(time.time() - item.log_minutes * 60)
    total = {p.regex: 0 for p in item.log_patterns}
    by_container: dict[str, dict[str, int]] = {}
    lines_found: dict[str, list[str]] = {p.regex: [] for p in item.log_patterns}
    count = 0
    for container in containers:
        lines = _LogLines(container.logs(stdout=True, stderr=True, since=since, stream=True, follow=False), deadline)
        matches, found = count_patterns(item.log_patterns, ((container.name, line) for line in lines), 20)
        count += lines.count
        if lines.timed_out:
            return f"reading the logs of {container.name} took longer than {item.timeout:g}s ({count} lines read)"
        by_container[container.name] = matches
        for regex, n in matches.items():
            total[regex] += n
            lines_found[regex] = (lines_found[regex] + found[regex])[:20]
    first = [line for hits in lines_found.values() for line in hits][:3]
    return {"log_lines": count, "matches": total, "by_container": by_container, "lines": lines_found,
            "first": ("first: " + " | ".join(first)) if first else None}


class _LogLines:
    """The lines of a container's log stream, one at a time (memory stays bounded however much
    it logged: a line is cut at ``_MAX_LINE``), until the stream ends or ``deadline`` passes."""

    def __init__(self, chunks: Any, deadline: float):
        self.chunks, self.deadline = chunks, deadline
        self.count = 0
        self.timed_out = False

    def __iter__(self):
        pending = b""
        for chunk in self.chunks:
            if time.monotonic() > self.deadline:
                self.timed_out = True
                return
            pending += chunk
            *complete, pending = pending.split(b"\n")
            pending = pending[-_MAX_LINE:]
            for raw in complete:
                self.count += 1
                yield raw[:_MAX_LINE].decode("utf-8", errors="replace").rstrip("\r")
        if pending:
            self.count += 1
            yield pending.decode("utf-8", errors="replace")


def _project(item: ContainerCheck, client: docker.DockerClient, containers: list[Any]) -> Observation:
    names = [container.labels.get(SERVICE, container.name) for container in containers]
    services = {}
    for service, container in zip(names, containers):
        # replicas of one service each keep their own entry: a crashed replica is never hidden
        # behind a healthy one of the same name
        key = service if names.count(service) == 1 else f"{service} ({container.name})"
        services[key] = _state(container)
    present = set(names)
    running = [s for s in services.values() if s["status"] == "running"]
    values: dict[str, Any] = {
        "project": item.compose_project,
        "containers": len(services),
        "missing_services": [s for s in item.services if s not in present],
        "not_running": sorted(f"{name} ({s['status']}, exit {s['exit_code']})"
                              for name, s in services.items() if s["status"] != "running"),
        # a service without a healthcheck has no health to judge, unless require_healthcheck says it must
        "unhealthy": sorted(f"{name} ({s['health']})" for name, s in services.items()
                            if s["health"] != "healthy" and (s["health"] != "none" or item.require_healthcheck)),
        "no_healthcheck": sorted(name for name, s in services.items() if s["health"] == "none"),
        "with_healthcheck": sum(s["health"] != "none" for s in services.values()),
        "max_restart_count": max((s["restart_count"] for s in services.values()), default=0),
        "min_uptime_s": min((s["uptime_s"] for s in running), default=0.0),
    }
    restarted = sorted(((s["restart_count"], n) for n, s in services.items() if s["restart_count"]), reverse=True)
    explain = []
    if values["missing_services"]:
        explain.append(f"missing: {', '.join(values['missing_services'])}")
    if values["not_running"]:
        explain.append(f"not running: {', '.join(values['not_running'])}")
    if item.healthy and values["unhealthy"]:
        explain.append(f"unhealthy: {', '.join(values['unhealthy'])}")
    if item.healthy and values["no_healthcheck"] and not item.require_healthcheck:
        explain.append(f"no healthcheck (not judged): {', '.join(values['no_healthcheck'])}")
    if restarted and item.max_restarts is not None and restarted[0][0] > item.max_restarts:
        explain.append("restarted: " + ", ".join(f"{n} ({count}x)" for count, n in restarted[:5]))
    if running and item.min_uptime is not None and values["min_uptime_s"] < item.min_uptime:
        shortest = min((s["uptime_s"], n) for n, s in services.items() if s["status"] == "running")
        explain.append(f"shortest uptime: {shortest[1]} ({shortest[0]:g}s)")
    details: dict[str, Any] = {"services": services}
    if item.wants_stats():
        by_name = measure(item, client, containers)
        keys = keys_of(services, containers)
        values["stats"] = {keys[name]: used for name, used in by_name.items()}
        for field in ("cpu_percent", "memory_percent", "memory_mb"):
            limit = getattr(item, field)
            readings = [(used[field], name) for name, used in values["stats"].items() if used[field] is not None]
            values[f"max_{field}"] = max(readings)[0] if readings else None
            over = sorted(readings, reverse=True)
            if limit is not None and over and (limit.warn is not None and over[0][0] >= limit.warn
                                               or limit.critical is not None and over[0][0] >= limit.critical):
                explain.append(f"{field}: " + ", ".join(f"{name} {value:g}" for value, name in over[:5]))
    if item.log_patterns:
        logs = _logs(item, containers, time.monotonic() + item.timeout)
        if isinstance(logs, str):
            return Observation(values, details=details, error=f"compose project {item.compose_project}: {logs}")
        values.update(log_lines=logs["log_lines"], matches=logs["matches"])
        details.update(lines=logs["lines"], matches_by_service={keys_of(services, containers)[n]: m
                                                                for n, m in logs["by_container"].items()})
        if logs["first"]:
            explain.append(logs["first"])
    if explain or not services:
        explain.append("services: " + (", ".join(f"{n}={s['status']}/{s['health']}" for n, s in sorted(services.items()))
                                       or "none"))
    return Observation(values, details=details, explain="; ".join(explain) or None)


def keys_of(services: dict[str, Any], containers: list[Any]) -> dict[str, str]:
    """Container name -> its key in ``services`` (the service, or ``service (name)`` for replicas)."""
    return {c.name: key for key, c in zip(services, containers)}


def limits(item: ContainerCheck) -> list[Condition]:
    out = []
    if item.compose_project:
        out.append(Condition.compare("containers", ">=", 1, label=f"project {item.compose_project} has containers"))
        if item.services:
            out.append(Condition.compare("missing_services", "==", 0, length=True, label="every expected service exists"))
        if item.running:
            out.append(Condition.compare("not_running", "==", 0, length=True, label="every service running"))
        if item.healthy:
            if item.require_healthcheck:
                out.append(Condition.compare("unhealthy", "==", 0, length=True, label="every service healthy (healthcheck required)"))
            else:
                # healthy: true over services none of which has a healthcheck would judge nothing
                out.append(Condition.compare("with_healthcheck", ">=", 1, label="at least one service defines a healthcheck"))
                out.append(Condition.compare("unhealthy", "==", 0, length=True, label="every service with a healthcheck healthy"))
        if item.max_restarts is not None:
            out.append(Condition.compare("max_restart_count", "<=", item.max_restarts))
        if item.min_uptime is not None:
            out.append(Condition.compare("min_uptime_s", ">=", item.min_uptime, label=f"every service up >= {item.min_uptime:g}s"))
        out += _stats_limits(item, "max_", "every running service's ")
        out += pattern_limits(item.log_patterns, f"last {item.log_minutes:g} min of the logs of every service")
        return out
    if item.running:
        out.append(Condition.compare("status", "==", "running"))
    if item.healthy:
        out.append(Condition.compare("health", "==", "healthy"))
    if item.max_restarts is not None:
        out.append(Condition.compare("restart_count", "<=", item.max_restarts))
    if item.min_uptime is not None:
        out.append(Condition.compare("uptime_s", ">=", item.min_uptime, label=f"up >= {item.min_uptime:g}s (not crash-looping)"))
    if item.exec:
        out.append(Condition.compare("exec_exit_code", "==", item.exec_exit_code, label=f"{' '.join(item.exec)} exits {item.exec_exit_code}"))
        if item.exec_stdout_regex:
            out.append(Condition.compare("exec_stdout_regex_found", "==", True, label=f"{item.exec[0]} output matches /{item.exec_stdout_regex}/"))
    out += _stats_limits(item, "", "")
    out += pattern_limits(item.log_patterns, f"last {item.log_minutes:g} min of logs")
    # one line names the container that broke the limit
    return [replace(c, label=f"container {item.container}: {c.label or c.expression}") for c in out]


def _stats_limits(item: ContainerCheck, prefix: str, whose: str) -> list[Condition]:
    """``cpu_percent < 90.0`` (a project: ``every running service's cpu_percent < 90.0``, held
    to the highest reading)."""
    out = []
    for field in ("cpu_percent", "memory_percent", "memory_mb"):
        limit = getattr(item, field)
        if limit is not None:
            out += [replace(c, label=f"{whose}{field} {c.op} {c.limit:g}") for c in limit.conditions(prefix + field)]
    return out


KIND = Kind(name="container", schema=ContainerCheck, observe=observe, limits=limits,
            summary="containers through the Docker Engine API: running, healthy, restarts, uptime, CPU and memory from its "
                    "stats, a command inside, log lines (of one container or a whole compose project)",
            secret_fields=("engine",), host_level=False)
