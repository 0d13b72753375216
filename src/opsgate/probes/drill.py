"""``drill``: a disaster-recovery drill — restore into scratch, install, start, wait until
healthy, verify, tear down — with RTO and RPO measured and held against their targets.

The steps run in order; the first that fails ends the drill, and teardown always runs
(the started process group is ended, scratch databases and directories removed, the
scratch port checked free). RTO is measured from the start of the restore to the end of
the last verify step; RPO is the age of the recovery point restored (a copy of a live
directory is taken now: its RPO is 0). Targets default to the runbooks' tables: RTO by
severity (P0 15 min, P1 1 h, P2 4 h, P3 24 h), RPO by the kind of data (user data 1 h,
configuration 24 h, logs 24 h).

In the steps, ``{{port}}`` is the scratch instance's port (a free one unless ``port:``
names it), ``{{url}}`` its ``http://127.0.0.1:{{port}}``, ``{{scratch}}`` the scratch
place, ``{{copy}}`` the copied directory and ``{{restored}}`` (``{{restored:NAME}}``) what a
backup was restored to (a DSN, a URL, a path). ``healthy`` and ``verify`` are lists of
checks of any daily kind, written as ``{kind: {fields}}``; a ``healthy`` check retries until
healthy within what is left of the drill's time unless it sets its own ``retry``.

>>> d = DrillCheck(name="dr", severity="P1", restore=[{"copy": "/srv/app"}],
...                start={"argv": ["python", "-m", "app", "--port", "{{port}}"]},
...                healthy=[{"http": {"url": "{{url}}/health"}}])
>>> d.rto_target(), d.rpo_target(), d.cadence
(3600.0, 3600.0, ['quarterly'])
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from ..conditions import Condition
from ..kinds import Kind
from ..schema import Cadences, CheckItem, Duration, SecretValue, Strict
from ..results import Observation
from ..drills import placeholders

#: the runbooks' RTO table, by severity (P0-P3), in seconds
RTO_BY_SEVERITY = {"P0": 15 * 60.0, "P1": 3600.0, "P2": 4 * 3600.0, "P3": 24 * 3600.0}
#: the runbooks' RPO table, by the kind of data restored, in seconds
RPO_BY_DATA = {"user": 3600.0, "configuration": 24 * 3600.0, "logs": 24 * 3600.0}
#: kinds a drill step may not use (they are drills or backups themselves)
NOT_A_STEP = ("drill", "backup")
#: stand-ins for ``{{restored}}`` when a step is checked at load time, by the step's kind
RESTORED_SAMPLE = {"postgres": "postgresql://restored-database/restored", "redis": "redis://restored-redis/0"}
#: kinds that reach a service over the network: a step of them must point at the scratch instance
NETWORK_FIELDS = {"http": ("url",), "tcp": ("port",), "postgres": ("dsn",), "redis": ("url",),
                  "prometheus": ("url",), "metrics": ("url",)}


class DrillCommand(Strict):
    """A command of a drill step: ``argv`` (no shell) or ``shell``, run in the scratch copy."""

    argv: list[str] | None = None
    shell: str | None = None
    cwd: str | None = Field(None, description="working directory, relative to the copy (default: the copy, "
                                              "else the scratch place)")
    env: dict[str, str | SecretValue] = Field({}, description="added to the environment (placeholders filled)")
    timeout: Duration = Field(600.0, description="limit for this command (install steps)")

    @model_validator(mode="after")
    def _argv_or_shell(self) -> "DrillCommand":
        if bool(self.argv) == bool(self.shell):
            raise ValueError("expected exactly one of argv or shell")
        return self

    def env_values(self) -> dict[str, str]:
        return {k: (v.value if isinstance(v, SecretValue) else v) for k, v in self.env.items()}


class DrillRestore(Strict):
    """What is restored into scratch: a copy of a directory (the install) or the newest
    recovery point of one of the environment's ``backup`` items."""

    model_config = ConfigDict(populate_by_name=True)

    # written ``copy:`` in the file (``copy`` is a pydantic method name, hence the alias)
    directory: str | None = Field(None, alias="copy", description="a directory copied into {{copy}} (relative to "
                                                                  "base_dir)")
    backup: str | None = Field(None, description="name of a backup item of this environment: its newest recovery "
                                                 "point is restored into scratch ({{restored:NAME}})")
    exclude: list[str] = Field([], description="with copy: names (globs) not copied, e.g. .venv, __pycache__")
    take_first: bool = Field(False, description="with backup: take a fresh backup first (the runbook's emergency "
                                                "backup, `opsgate backup NAME`), then restore that one")

    @model_validator(mode="after")
    def _one(self) -> "DrillRestore":
        if bool(self.directory) == bool(self.backup):
            raise ValueError("expected exactly one of copy or backup")
        if self.take_first and not self.backup:
            raise ValueError("take_first goes with backup (a copy is always taken now)")
        return self


class DrillCheck(CheckItem):
    """A DR drill: restore, install, start, healthy, verify, teardown; RTO and RPO measured."""

    kind: ClassVar[str] = "drill"
    cadence: Cadences = Field(["quarterly"], description="drills run quarterly unless said otherwise")
    timeout: Duration = Field(3600.0, description="the whole drill's limit (teardown still runs after it)")
    rto: Duration | None = Field(None, description="recovery time objective (default by severity: P0 15m, P1 1h, "
                                                   "P2 4h, P3 24h)")
    rpo: Duration | None = Field(None, description="recovery point objective (default by data: user 1h, "
                                                   "configuration 24h, logs 24h)")
    data: Literal["user", "configuration", "logs"] = Field("user", description="what is restored, for the RPO default")
    restore: list[DrillRestore] = Field(min_length=1)
    install: list[DrillCommand] = []
    start: DrillCommand | None = Field(None, description="starts the service from the copy, e.g. on {{port}}; its "
                                                         "process group is ended at teardown")
    port: int | None = Field(None, ge=1, le=65535, description="the scratch instance's port (default: a free one); "
                                                               "refused when something listens on it")
    healthy: list[dict[str, dict[str, Any]]] = Field([], description="checks waited for after start, e.g. "
                                                     "{http: {url: '{{url}}/health'}}")
    verify: list[dict[str, dict[str, Any]]] = Field([], description="checks of the restored instance, e.g. its test "
                                                    "suite ({command: ...}) or a request ({http: ...})")

    @model_validator(mode="after")
    def _steps_are_checks(self) -> "DrillCheck":
        if not self.healthy and not self.verify:  # restored, never looked at: passing would read nothing
            raise ValueError("expected at least one healthy or verify check: a drill that checks nothing of what "
                             "it restored cannot pass")
        for phase in ("healthy", "verify"):
            for index, _ in enumerate(getattr(self, phase)):
                self.step(phase, index, placeholders.SAMPLE, sample=True)
        return self

    def references(self) -> list[tuple[tuple, str, str]]:
        return [(("restore", i, "backup"), "backup", r.backup) for i, r in enumerate(self.restore) if r.backup]

    def rto_target(self) -> float:
        return self.rto if self.rto is not None else RTO_BY_SEVERITY.get(self.severity, RTO_BY_SEVERITY["P3"])

    def rpo_target(self) -> float:
        return self.rpo if self.rpo is not None else RPO_BY_DATA[self.data]

    def step(self, phase: str, index: int, values: dict[str, str], sample: bool = False) -> CheckItem:
        """Step ``index`` of ``phase`` as a check item, its placeholders filled with ``values``
        (with ``sample``, stand-ins of the right shape for the step's kind, to check it when the
        file is loaded); ValueError names the step and what is wrong."""
        from ..kinds import REGISTRY  # the registry imports this module: look it up when used

        KINDS = {name: kind.schema for name, kind in REGISTRY.items()}
        where = f"{phase}[{index}]"
        spec = getattr(self, phase)[index]
        if len(spec) != 1:
            raise ValueError(f"{where}: expected one check written as {{kind: {{fields}}}}, seen keys "
                             f"{', '.join(map(str, spec)) or 'none'}")
        kind, fields = next(iter(spec.items()))
        if kind in NOT_A_STEP or kind not in KINDS:
            steps = ", ".join(k for k in KINDS if k not in NOT_A_STEP)
            raise ValueError(f"{where}: expected a check kind ({steps}), seen {kind!r}")
        if not isinstance(fields, dict):
            raise ValueError(f"{where}.{kind}: expected a mapping of the check's fields, seen {type(fields).__name__}")
        for field in NETWORK_FIELDS.get(kind, ()):
            used = placeholders.names(fields.get(field, ""))
            if field in fields and not any(n in ("port", "url") or n.startswith("restored") for n in used):
                raise ValueError(f"{where}.{kind}.{field}: {fields[field]!r} does not point at the restored instance: "
                                 "use {{port}}, {{url}} or {{restored}} (a drill never probes the live service)")
        if sample:  # what a backup restores to is known at run time: a stand-in its kind accepts
            stand_in = RESTORED_SAMPLE.get(kind, placeholders.SAMPLE["restored"])
            values = {**values, "restored": stand_in,
                      **{f"restored:{r.backup}": stand_in for r in self.restore if r.backup}}
        try:
            filled = placeholders.fill(fields, values)
        except ValueError as exc:
            raise ValueError(f"{where}.{kind}: {exc}") from None
        filled.setdefault("name", f"{self.name}.{phase}.{index + 1}")
        filled.setdefault("severity", self.severity)
        try:
            return KINDS[kind].model_validate(filled)
        except ValueError as exc:  # pydantic's ValidationError: said with the step's place
            raise ValueError(f"{where}.{kind}: {_first_error(exc)}") from None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        place = ".".join(str(p) for p in first.get("loc", ()))
        return f"{place}: {first.get('msg')}" if place else str(first.get("msg"))
    return str(exc)


def observe(item: DrillCheck, ctx) -> Observation:
    """Run the drill (see :mod:`opsgate.drills.run`); a failed step is the observation's error."""
    from ..drills.run import run_drill

    record = run_drill(item, ctx)
    values = record.to_json()
    if record.failure:
        return Observation(values, error=record.failure)
    return Observation(values)


def limits(item: DrillCheck) -> list[Condition]:
    """RTO and RPO against their targets.

    >>> [c.label for c in limits(DrillCheck(name="d", severity="P0", restore=[{"copy": "/x"}],
    ...                                         verify=[{"command": {"argv": ["true"]}}]))]
    ['RTO (seconds, restore start to verified) <= target 900', 'RPO (seconds, age of the recovery point) <= target 3600']
    """
    return [
        Condition.compare("rto_s", "<=", item.rto_target(),
                          label=f"RTO (seconds, restore start to verified) <= target {item.rto_target():g}"),
        Condition.compare("rpo_s", "<=", item.rpo_target(),
                          label=f"RPO (seconds, age of the recovery point) <= target {item.rpo_target():g}"),
    ]


KIND = Kind(name="drill", schema=DrillCheck, observe=observe, limits=limits,
            summary="a DR drill: restore into scratch, install, start, wait until healthy, verify, tear down; "
                    "RTO and RPO measured against their targets",
            host_level=True)
