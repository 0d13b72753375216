"""The environment file's schema: one pydantic model per check kind.

An environment lists items per kind (``http``, ``tcp``, ``process``, ``host``, ``log``,
``command``, ``file``). Every item has a ``name`` (its test id), a ``severity`` and
optional ``depends_on``, ``tags``, ``timeout``, ``retry`` and ``window``; ``expect``
conditions must hold and ``warn`` conditions should hold.

>>> env = Environment.model_validate({"name": "demo", "http": [{"name": "api", "url": "http://127.0.0.1:8000/health"}]})
>>> env.items()[0].severity, env.items()[0].kind
('P2', 'http')
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from .conditions import Condition
from .schema import (CADENCES, Cadences, CheckItem, DiskLimits, Duration, Interval, Limit, LogPattern, ProcessScope,
                     Regex, Retry, SecretValue, Severity, Size, Strict, Window)
from .units import parse_size

__all__ = ["CADENCES", "Cadences", "CheckItem", "DiskLimits", "Duration", "Interval", "Limit", "LogPattern",
           "ProcessScope", "Regex", "Retry", "SecretValue", "Severity", "Size", "Strict", "Window"]


class HttpCheck(CheckItem):
    """An HTTP(S) request: status, latency, JSON body conditions, body regex, certificate expiry."""

    kind: ClassVar[str] = "http"
    url: str = Field(pattern=r"^https?://", description="http:// or https:// URL")
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str | SecretValue] = {}
    body: str | None = None
    status: int | list[int] = 200
    max_latency_ms: float | None = None
    warn_latency_ms: float | None = None
    body_regex: Regex | None = None
    body_not_regex: Regex | None = None
    tls_verify: bool | str = Field(True, description="false, true, or a CA bundle path")
    cert_min_days: float | None = None
    cert_warn_days: float | None = None
    follow_redirects: bool = True
    max_redirects: int = Field(10, ge=0)
    max_body_bytes: Size = 1024 * 1024


    def header_values(self) -> dict[str, str]:
        return {k: (v.value if isinstance(v, SecretValue) else v) for k, v in self.headers.items()}


class TcpCheck(CheckItem):
    """A host:port accepts a connection; optionally the local port is owned by the right process:
    ``listening_process`` (regex on its name or command line) and/or ``listening`` (scopes:
    pid_file, user, exe, cwd, container, systemd_unit). Every process listening on the port
    must match."""

    kind: ClassVar[str] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    connect: bool = True
    max_connect_ms: float | None = None
    listening_process: Regex | None = Field(None, description="regex on the owning process's name or command line")
    listening: ProcessScope | None = Field(None, description="the owning process's scopes (pid_file, user, exe, "
                                                             "cwd, container, systemd_unit)")


class ProcessCheck(ProcessScope, CheckItem):
    """Processes by name or command-line regex, or the one whose PID is in a file (and, with
    ``children``, its descendants), or the one listening on a local ``port``: count within
    bounds, RSS and CPU limits. Scopes (pid_file, port, user, exe, cwd, container,
    systemd_unit) narrow the match, so other copies of the same program on the host (another
    deployment, a test run) are neither counted nor mistaken for it."""

    kind: ClassVar[str] = "process"
    process_name: str | None = Field(None, description="exact process name")
    cmdline: Regex | None = Field(None, description="regex searched in the joined command line")
    port: int | None = Field(None, ge=1, le=65535, description="only the process(es) listening on this local port")
    min_count: int = Field(1, ge=0)
    max_count: int | None = Field(None, ge=0)
    rss_mb: Limit | None = None
    cpu_percent: Limit | None = None
    cpu_sample: Duration = 0.5


    @model_validator(mode="after")
    def _needs_a_matcher(self) -> "ProcessCheck":
        if not (self.process_name or self.cmdline or self.pid_file or self.port):
            raise ValueError("expected process_name, cmdline, pid_file or port, seen none of them")
        return self


class HostCheck(CheckItem):
    """Local host resources: CPU %, memory %, load per core, disk and inode use per path."""

    kind: ClassVar[str] = "host"
    cpu_percent: Limit | None = None
    memory_percent: Limit | None = None
    load_per_core: Limit | None = None
    disks: list[DiskLimits] = []
    cpu_sample: Duration = 0.5


class LogCheck(CheckItem):
    """Log files by glob (rotated ones too): pattern counts over the last N lines or T minutes."""

    kind: ClassVar[str] = "log"
    path: str = Field(description="file or glob; relative to the environment's base_dir")
    rotated: bool = Field(True, description="also read PATH.1, PATH.2.gz ...")
    last_lines: int | None = Field(None, ge=1)
    last_minutes: float | None = Field(None, gt=0)
    patterns: list[LogPattern] = Field(min_length=1)
    missing_ok: bool = False
    max_evidence_lines: int = 20
    timestamp_format: str | None = Field(None, description='strptime format of the time in each line, e.g. '
                                         '"%d.%m.%Y %H:%M:%S" (for last_minutes; replaces the built-in formats)')
    timestamp_regex: Regex | None = Field(None, description="where the time is in a line: the first group (or the "
                                          "whole match) is read with timestamp_format")

    @field_validator("timestamp_format")
    @classmethod
    def _timestamp_format_readable(cls, value: str | None) -> str | None:
        if value is not None:
            from .probes.log import strptime_regex  # the probe owns the format reading

            strptime_regex(value)
        return value

    @model_validator(mode="after")
    def _timestamp_fields(self) -> "LogCheck":
        if self.timestamp_regex and not self.timestamp_format:
            raise ValueError("timestamp_regex needs timestamp_format (how to read what it finds)")
        if self.timestamp_format and not self.last_minutes:
            raise ValueError("timestamp_format is read only with last_minutes")
        return self


class CommandCheck(CheckItem):
    """A command: exit code, stdout/stderr regex, conditions on JSON stdout."""

    kind: ClassVar[str] = "command"
    argv: list[str] | None = None
    shell: str | None = None
    cwd: str | None = None
    env: dict[str, str | SecretValue] = {}
    exit_code: int | list[int] = 0
    stdout_regex: Regex | None = None
    stderr_regex: Regex | None = None
    stdout_not_regex: Regex | None = None
    json_stdout: bool = Field(False, description="parse stdout as JSON for expect/warn (implied by expect/warn)")


    @model_validator(mode="after")
    def _argv_or_shell(self) -> "CommandCheck":
        if bool(self.argv) == bool(self.shell):
            raise ValueError("expected exactly one of argv or shell")
        return self

    def env_values(self) -> dict[str, str]:
        return {k: (v.value if isinstance(v, SecretValue) else v) for k, v in self.env.items()}


class FileCheck(CheckItem):
    """A file: exists (or not), maximum age, size bounds, not world-writable."""

    kind: ClassVar[str] = "file"
    path: str
    exists: bool = True
    max_age: Duration | None = None
    warn_age: Duration | None = None
    min_size: Size | None = None
    max_size: Size | None = None
    allow_world_writable: bool = False


class PostgresCheck(CheckItem):
    """PostgreSQL: accepting connections, SELECT 1 latency, role, replication lag, connection
    use, oldest transactions, database size, and a custom query with conditions on its rows.
    Every postgres check on the same DSN shares one connection per run."""

    kind: ClassVar[str] = "postgres"
    dsn: str = Field(pattern=r"^postgres(ql)?://", description="postgresql://user:password@host:port/db (password redacted)")
    max_latency_ms: float | None = Field(None, description="SELECT 1 round trip")
    role: Literal["primary", "replica"] | None = None
    replication_lag_s: Limit | None = Field(None, description="replica: seconds behind; primary: worst replica's replay lag")
    min_replicas: int | None = Field(None, ge=0, description="primary: streaming replicas connected")
    connections_percent: Limit | None = Field(None, description="client connections as % of max_connections")
    oldest_transaction_s: Limit | None = Field(None, description="age of the oldest running transaction")
    oldest_idle_in_transaction_s: Limit | None = Field(None, description="age of the oldest idle-in-transaction session")
    database_size: Limit | None = Field(None, description="bytes (or text like 10GB) for critical/warn")
    query: str | None = Field(None, description="custom SQL; expect/warn read {rows, row, count}")

    @field_validator("database_size", mode="before")
    @classmethod
    def _sizes(cls, value: Any) -> Any:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = {"critical": value}
        if isinstance(value, dict):
            return {k: parse_size(v) if isinstance(v, str) else v for k, v in value.items()}
        return value


class RedisCheck(CheckItem):
    """Redis: PING latency, role and replicas, persistence (last save ok and its age as an RPO
    signal, AOF status), memory use against maxmemory, evictions, blocked clients."""

    kind: ClassVar[str] = "redis"
    url: str = Field(pattern=r"^rediss?://", description="redis://[:password@]host:port/db (password redacted)")
    max_latency_ms: float | None = Field(None, description="PING round trip")
    role: Literal["master", "replica"] | None = None
    min_replicas: int | None = Field(None, ge=0, description="master: connected replicas")
    rdb_status_ok: bool = Field(True, description="rdb_last_bgsave_status must be ok")
    last_save_age_s: Limit | None = Field(None, description="seconds since the last successful save (RPO)")
    aof_status_ok: bool = Field(True, description="when AOF is on: last write and rewrite must be ok")
    memory_percent: Limit | None = Field(None, description="used_memory as % of maxmemory (needs maxmemory set)")
    max_evicted_keys: int | None = Field(None, ge=0)
    max_blocked_clients: int | None = Field(None, ge=0)


class PrometheusCheck(CheckItem):
    """A Prometheus server's view: no firing alerts (optionally only at some severities, with
    an allow-list), an instant query whose every series meets a condition, all scrape
    targets up."""

    kind: ClassVar[str] = "prometheus"
    url: str = Field(pattern=r"^https?://", description="the Prometheus server, e.g. http://127.0.0.1:9090")
    no_firing_alerts: bool = Field(False, description="fail on any firing alert (after the filters below)")
    alert_severities: list[str] = Field([], description="only firing alerts with one of these severity labels count")
    allow_alerts: list[str] = Field([], description="alert names that never count")
    query: str | None = Field(None, description="PromQL instant query, e.g. up{job=\"api\"}")
    series_condition: str | None = Field(None, description="held for every series of query: 'value == 1'")
    min_series: int = Field(1, ge=0, description="fewest series query must return")
    targets_up: bool = Field(False, description="every active scrape target is up")
    jobs: list[str] = Field([], description="with targets_up: only these jobs (default: all)")
    tls_verify: bool = True

    @field_validator("series_condition")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is not None:
            Condition.parse(value)
        return value

    @model_validator(mode="after")
    def _something_to_check(self) -> "PrometheusCheck":
        if not (self.no_firing_alerts or self.alert_severities or self.query or self.targets_up):
            raise ValueError("expected at least one of no_firing_alerts, alert_severities, query, targets_up")
        if self.series_condition and not self.query:
            raise ValueError("expected query with series_condition")
        return self


class MetricsCheck(CheckItem):
    """Scrape a plain /metrics exposition and hold one metric's samples to limits."""

    kind: ClassVar[str] = "metrics"
    url: str = Field(pattern=r"^https?://", description="the exposition, e.g. http://127.0.0.1:5002/metrics/prometheus")
    metric: str = Field(description="sample or family name, e.g. http_request_duration_seconds")
    labels: dict[str, str] = Field({}, description="only samples with these label values")
    max_value: Limit | None = Field(None, description="every matching sample below critical (and warn)")
    min_value: Limit | None = Field(None, description="every matching sample above critical (and warn)")
    min_samples: int = Field(1, ge=0)
    tls_verify: bool = True
    max_body_bytes: Size = 16 * 1024 * 1024


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
    log_patterns: list[LogPattern] = Field([], description="regexes counted in the container's recent log lines")


    @model_validator(mode="after")
    def _one_target(self) -> "ContainerCheck":
        if bool(self.container) == bool(self.compose_project):
            raise ValueError("expected exactly one of container or compose_project")
        if self.compose_project and (self.exec or self.log_patterns):
            raise ValueError("expected exec and log_patterns with container, not compose_project")
        if self.services and not self.compose_project:
            raise ValueError("expected services with compose_project")
        return self


KINDS: dict[str, type[CheckItem]] = {
    cls.kind: cls for cls in (HttpCheck, TcpCheck, ProcessCheck, HostCheck, LogCheck, CommandCheck, FileCheck,
                              PostgresCheck, RedisCheck, PrometheusCheck, MetricsCheck, ContainerCheck)
}


class Defaults(Strict):
    """Values every item gets unless it sets its own."""

    severity: Severity | None = None
    timeout: Duration | None = None
    cadence: Cadences | None = Field(None, description="cadence(s) of every item that sets none (and whose kind "
                                     "section sets none); default daily")


class Environment(Strict):
    """One target system: its settings and its checks, by kind."""

    name: str = Field(description="the environment's name, recorded in every report")
    description: str | None = None
    severity_scale: Literal["P0-P3", "P1-P4", "SEV0-SEV3"] = "P0-P3"
    base_dir: str | None = Field(None, description="relative paths resolve here (default: the file's folder)")
    concurrency: int = Field(50, ge=1, le=1024, description="probes run at once")
    secrets: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        [], description="names of environment variables whose values are secret wherever they are substituted "
                        "(besides names with KEY, SECRET, TOKEN, PASSWORD, PASSWD, CREDENTIAL, PRIVATE)")
    defaults: Defaults = Defaults()
    http: list[HttpCheck] = []
    tcp: list[TcpCheck] = []
    process: list[ProcessCheck] = []
    host: list[HostCheck] = []
    log: list[LogCheck] = []
    command: list[CommandCheck] = []
    file: list[FileCheck] = []
    postgres: list[PostgresCheck] = []
    redis: list[RedisCheck] = []
    prometheus: list[PrometheusCheck] = []
    metrics: list[MetricsCheck] = []
    container: list[ContainerCheck] = []

    def items(self, kind: str | None = None, cadence: str | None = None) -> list[CheckItem]:
        """Every item, or those of one kind and cadence, in file order."""
        kinds = [kind] if kind else list(KINDS)
        return [i for k in kinds for i in getattr(self, k) if cadence is None or cadence in i.cadence]
