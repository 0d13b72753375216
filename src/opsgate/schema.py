"""The building blocks every check kind's schema is made of: units, cadences, severities,
retry and window settings, limits, secret values, process scopes and log patterns.

Each kind's own schema lives in its module (``opsgate.probes.<kind>``); :mod:`opsgate.model`
puts them together into the environment file's schema.

>>> Limit.model_validate(95).conditions("cpu_percent")[0].expression
'cpu_percent < 95.0'
>>> Retry(timeout="1m").interval
2.0
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationInfo, WithJsonSchema,
                      field_validator, model_validator)

from . import severity as sev
from .conditions import Condition
from .units import parse_duration, parse_size

# incident: run on demand during and after an incident (diagnosis, post-fix watches), never scheduled
CADENCES = ("daily", "weekly", "monthly", "quarterly", "incident")

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$"}],
                    "description": "seconds, or text like 30s, 5m, 2h"}),
]


def _positive_interval(value: float) -> float:
    if value <= 0:
        raise ValueError(f"expected an interval above 0, seen {value:g}")
    return value


# a sampling interval: a duration above 0 (0 would spin a retry or window loop)
Interval = Annotated[Duration, AfterValidator(_positive_interval)]
Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^\d+(\.\d+)?\s*[KMGT]?i?B?$"}],
                    "description": "bytes, or text like 10MB, 1GiB"}),
]


def _compiles(value: str) -> str:
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:  # nested too deeply, a repeat count too large
        shown = repr(value) if len(value) <= 80 else f"{value[:60]!r}... ({len(value)} characters)"
        raise ValueError(f"expected a regular expression, seen {shown}: {exc}") from None
    return value


# a regular expression, compiled once when the file is loaded so a typo is a load error
Regex = Annotated[str, AfterValidator(_compiles)]


def _cadence_list(value: Any) -> Any:
    """``weekly`` or ``[daily, weekly]`` -> a list without repeats (order kept)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if not value:
            raise ValueError("expected at least one cadence, seen an empty list")
        return list(dict.fromkeys(value)) if all(isinstance(v, str) for v in value) else value
    return value


# the cadences an item runs in: one name or a list of them
Cadences = Annotated[
    list[Literal["daily", "weekly", "monthly", "quarterly", "incident"]],
    BeforeValidator(_cadence_list),
    WithJsonSchema({"anyOf": [{"enum": list(CADENCES)}, {"type": "array", "minItems": 1, "items": {"enum": list(CADENCES)}}],
                    "description": "daily, weekly, monthly, quarterly or incident, or a list of them"}),
]
Severity = Annotated[str, WithJsonSchema({"type": "string", "description": "P0..P3 (or critical/high/medium/low, SEV-0..SEV-3)"})]


class Strict(BaseModel):
    """Unknown keys are errors, so a typo never silently disables a limit."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, defer_build=True)  # a NaN limit fails every comparison; .inf disables one


class Retry(Strict):
    """Wait until healthy: probe every ``interval`` until the conditions hold or ``timeout`` passes."""

    timeout: Duration
    interval: Interval = 2.0


class Window(Strict):
    """Stability: the conditions must hold at every sample, one each ``interval``, for ``duration``."""

    duration: Duration
    interval: Interval


class Limit(Strict):
    """A measured value's warn and critical levels; a bare number means critical."""

    warn: float | None = None
    critical: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_number(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"critical": value}
        return value

    def conditions(self, path: str | tuple[str | int, ...], op: str = "<") -> list[Condition]:
        """``cpu_percent`` with warn 80 / critical 95 -> ``cpu_percent < 95`` (fail), ``< 80`` (warn);
        ``path`` is a field name or a key path, ``("disks", "/", "used_percent")``."""
        out = []
        if self.critical is not None:
            out.append(Condition.compare(path, op, self.critical, "fail"))
        if self.warn is not None:
            out.append(Condition.compare(path, op, self.warn, "warn"))
        return out


def _name_list(value: Any) -> Any:
    """``web`` or ``[web, db1]`` -> a list without repeats (order kept)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        if not value:
            raise ValueError("expected at least one host or group, seen an empty list")
        return list(dict.fromkeys(value))
    return value


class CheckItem(Strict):
    """Fields every check item has, whatever its kind."""

    kind: ClassVar[str] = ""
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$", description="unique id; becomes the test id")
    severity: Severity = "P2"
    description: str | None = None
    cadence: Cadences = Field(["daily"], description="daily, weekly, monthly, quarterly or incident, or a list of them "
                              "(the item runs in each): checks/<cadence> runs it")
    depends_on: list[str] = []
    tags: list[str] = []
    timeout: Duration = Field(10.0, description="limit for one probe attempt")
    retry: Retry | None = None
    window: Window | None = None
    expect: list[str] = Field([], description="conditions that must hold (failure otherwise)")
    warn: list[str] = Field([], description="conditions that should hold (warning otherwise)")
    remedy: str | None = Field(None, min_length=1, description="the runbook's next step when this check fails or "
                               "warns, e.g. \"./start_aura.sh - runbook: Server Won't Start\" or a URL; shown beside "
                               "the failure in the terminal, the report and every output (never on a pass)")
    hosts: Annotated[list[str], BeforeValidator(_name_list)] | None = Field(
        None, description="host-level kinds: the hosts it runs on - a host name, a group, \"all\", or a list of them "
                          "(from the environment's hosts: section); one test per host, named check@host")
    via: str | None = Field(None, description="http, metrics, prometheus, redis: a host of hosts: (ssh) the "
                                              "request runs on, through a forward over its ssh connection; the "
                                              "check then depends on reachable@<host>")
    # the host this copy runs on (set when the environment expands ``hosts``); None: where opsgate runs
    _on_host: str | None = PrivateAttr(None)

    @property
    def on_host(self) -> str | None:
        """The name of the host this copy of the check runs on (``web1`` for ``server@web1``), or
        None for a check run where opsgate runs. (Not ``host``: tcp and dns items have a field so named.)"""
        return self._on_host

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any, info: ValidationInfo) -> str:
        scale = (info.context or {}).get("severity_scale", "P0-P3")
        return sev.normalise(value, scale)

    @field_validator("expect", "warn")
    @classmethod
    def _conditions_compile(cls, values: list[str]) -> list[str]:
        for text in values:
            Condition.parse(text)
        return values

    def conditions(self) -> list[Condition]:
        """The user's ``expect`` and ``warn`` conditions, compiled."""
        return [Condition.parse(t, "fail") for t in self.expect] + [Condition.parse(t, "warn") for t in self.warn]

    def references(self) -> list[tuple[tuple, str, str]]:
        """Other items this one names besides ``depends_on``: (where in the item, the kind named,
        the name), checked when the file is loaded (a drill's ``restore: [{backup: NAME}]``)."""
        return []

    def budget(self) -> float:
        """Longest this check may take in all: attempts, waiting and windows."""
        total = self.timeout
        if self.retry:
            total += self.retry.timeout + self.retry.interval
        if self.window:
            total += self.window.duration + self.window.interval + self.timeout
        return total


class SecretValue(Strict):
    """A value to be kept out of every output (``{value: "${TOKEN}", secret: true}``): it is
    masked, in every encoded form, wherever it appears (see :mod:`opsgate.redact`)."""

    value: str
    secret: bool = True


def _container_id(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{12,64}", value):
        raise ValueError(f"expected a container id (12 to 64 hex digits, as `docker ps` or `podman ps` shows), "
                         f"seen {value!r}: container names are not resolved here, only ids found in "
                         "/proc/<pid>/cgroup")
    return value


def _unit_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9:_.@\\-]+", value):
        raise ValueError(f"expected a systemd unit name such as app or app.service, seen {value!r}")
    return value if "." in value else value + ".service"


class ProcessScope(Strict):
    """Which process is meant, besides its name or command line: every scope given must hold,
    so an unrelated process with a similar command line neither satisfies nor breaks a check."""

    pid_file: str | None = Field(None, description="only the process whose PID this file holds (relative to "
                                                   "base_dir)")
    children: bool = Field(False, description="with pid_file: also that process's descendants")
    user: str | int | None = Field(None, description="owner: user name or numeric uid (real uid)")
    exe: str | None = Field(None, description="executable, exact path (symlinks resolved; relative to base_dir)")
    cwd: str | None = Field(None, description="working directory, exact path (relative to base_dir)")
    container: Annotated[str, AfterValidator(_container_id)] | None = Field(
        None, description="container id (prefix of 12+ hex digits) found in /proc/<pid>/cgroup (docker, podman, "
                          "containerd); names are not resolved")
    systemd_unit: Annotated[str, AfterValidator(_unit_name)] | None = Field(
        None, description="systemd unit (app or app.service) in the process's systemd cgroup")

    @model_validator(mode="after")
    def _children_need_pid_file(self) -> "ProcessScope":
        if self.children and not self.pid_file:
            raise ValueError("expected pid_file with children: true (children of which process?)")
        return self


class DiskLimits(Strict):
    path: str = "/"
    used_percent: Limit | None = None
    inodes_percent: Limit | None = None


class LogPattern(Strict):
    regex: Regex
    max: int = Field(0, ge=0, description="most matching lines allowed")
    warn_max: int | None = Field(None, ge=0)
    ignore_case: bool = False
