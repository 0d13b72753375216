"""Gate policies (``config/gates.yaml``): named gates and waivers.

A gate says which severities block and which only warn, how many failures of a
severity it tolerates, which checks must have run and passed, how old a report may
be, and whether WARN blocks. A waiver excuses one check's failure until a date, with
a justification.

Example ``config/gates.yaml``::

    gates:
      deploy:
        block: [P0, P1]        # failures of these make FAIL
        warn: [P2, P3]         # failures of these only make WARN
        tolerate: {P1: 1}      # one P1 failure is tolerated (shown as a warning)
        max_age: 26h           # an older report is ERROR
        warn_blocks: false     # WARN exits 0
        require:
          - id: "test_http[api-*]"
          - tag: database
      fleet:
        block: [P0, P1]
        fleet:                 # P0 checks pass on >= 99 % of group web's hosts, on every db host
          - {severity: [P0], group: web, at_least: 99%}
          - {severity: [P0], group: db, at_least: 100%}
        groups: {web: ["web*"]}  # membership by host-name pattern (merged self-check reports)
      release:
        seal_key: {file: /etc/opsgate/seal.key}   # only reports signed with this key are trusted
    waivers:
      - check: demo-models
        justification: "models are being re-pulled after the upgrade, OPS-142"
        expires: 2026-12-01

>>> load_policy(None).gates["default"].block
['P0', 'P1', 'P2', 'P3']
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from .. import severity as sev
from ..model import Duration, Strict
from ..yamlfile import Problem, ProblemsError, parse, problems_from, read

DEFAULT_GATE = "default"


def _level(value: Any) -> str:
    return sev.normalise(value)


Level = Annotated[str, BeforeValidator(_level)]


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


def glob_match(text: str, pattern: str) -> bool:
    """Shell-style ``*`` and ``?`` (argument order as fnmatch); brackets are literal, since
    test ids contain them.

    >>> glob_match("test_http[api-health]", "test_http[api-*]"), glob_match("db-10", "db-?")
    (True, False)
    """
    return _compiled(pattern).fullmatch(text) is not None


def _glob(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty pattern")
    return value


Pattern = Annotated[str, AfterValidator(_glob)]


class Require(Strict):
    """A check that must have run and passed, chosen by exactly one of id, tag or marker."""

    id: Pattern | None = Field(None, description="glob on the check name, test id (test_http[api-*]) or nodeid")
    tag: Pattern | None = Field(None, description="a tag from the environment file")
    marker: Pattern | None = Field(None, description="a pytest marker or keyword (P0, daily, http, ...)")

    @model_validator(mode="after")
    def _one(self) -> "Require":
        given = [k for k in ("id", "tag", "marker") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"expected exactly one of id, tag, marker; seen {', '.join(given) or 'none'}")
        return self

    def describe(self) -> str:
        """``id test_http[api-*]``, ``tag database``."""
        key = "id" if self.id else "tag" if self.tag else "marker"
        return f"{key} {getattr(self, key)}"

    def matches(self, check) -> bool:
        if self.id:
            return any(glob_match(text, self.id) for text in (check.name, check.test_id, check.nodeid))
        if self.tag:
            return any(glob_match(t, self.tag) for t in check.tags)
        return any(glob_match(k, self.marker) for k in
                   (*check.keywords, check.severity, check.cadence, check.kind, *check.tags))

    def matches_nodeid(self, nodeid: str) -> bool:
        """For deselected tests, of which only the nodeid is known."""
        return bool(self.id) and any(glob_match(t, self.id) for t in (nodeid, nodeid.rsplit("::", 1)[-1]))


def _percent(value: Any) -> float:
    """``"99%"`` -> 99.0; anything else (a bare number is ambiguous: 1 or 100 %?) is refused.

    >>> _percent("99.5%"), _percent(" 100 % ")
    (99.5, 100.0)
    """
    text = value.strip() if isinstance(value, str) else ""
    if text.endswith("%"):
        try:
            number = float(text[:-1])
        except ValueError:
            number = -1.0
        if 0 <= number <= 100:
            return number
    raise ValueError(f"expected a percentage from 0% to 100% such as 99%, seen {value!r}")


def _levels(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _group_name(value: str) -> str:
    if not value.strip() or value == ALL_HOSTS:
        raise ValueError(f"expected a group name other than {ALL_HOSTS!r} (it means every host) and not empty")
    return value


def _some_patterns(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("expected at least one host-name pattern, e.g. [\"web*\"]")
    return value


#: the group every host of the reports belongs to
ALL_HOSTS = "all"


class FleetRule(Strict):
    """Of the hosts of ``group``, at least ``at_least`` must pass every check of ``severity``
    (pass or warn; blocked, failed and errored checks break the host)."""

    severity: Annotated[list[Level], BeforeValidator(_levels), Field(min_length=1)] = Field(
        description="the severities judged per host, e.g. [P0]")
    group: Annotated[str, Field(min_length=1)] = Field(
        description="a group of the environment's hosts, one of the gate's groups:, or all")
    at_least: Annotated[float, BeforeValidator(_percent)] = Field(
        description="the share of the group's hosts that must pass, e.g. 99%")
    min_hosts: Annotated[int, Field(ge=1)] = Field(
        1, description="fewer hosts of the group in the reports is ERROR (a machine whose report is missing)")

    def describe(self) -> str:
        """``P0 on group web, at least 99%``.

        >>> FleetRule(severity="P0", group="web", at_least="99%").describe()
        'P0 on group web, at least 99%'
        """
        return f"{'/'.join(self.severity)} on group {self.group}, at least {self.at_least:g}%"


class SealKey(Strict):
    """Where the gate reads the HMAC key that signed the reports: an environment variable or a
    file (never the key itself in the policy). With a key, an unsigned or wrongly signed
    report is ERROR."""

    env: str | None = Field(None, description="name of an environment variable holding the key")
    file: str | None = Field(None, description="path of a file holding the key")

    @model_validator(mode="after")
    def _one(self) -> "SealKey":
        if bool(self.env) == bool(self.file):
            raise ValueError(f"expected exactly one of env, file; seen {', '.join(k for k in ('env', 'file') if getattr(self, k)) or 'none'}")
        return self

    def describe(self) -> str:
        """``env GATE_KEY`` or ``file /etc/opsgate/seal.key`` (the source, never the key)."""
        return f"env {self.env}" if self.env else f"file {self.file}"

    def read(self) -> bytes:
        """The key; ValueError naming the source (not the value) when it cannot be had."""
        from ..report import ReportError, read_key_file

        if self.env:
            value = os.environ.get(self.env, "").strip()
            if not value:
                raise ValueError(f"seal_key: the environment variable {self.env} is not set or empty")
            return value.encode("utf-8")
        try:
            return read_key_file(self.file, "seal_key")
        except ReportError as exc:
            raise ValueError(str(exc)) from None


class Gate(Strict):
    """One named gate."""

    description: str = ""
    block: list[Level] = Field(default_factory=lambda: list(sev.LEVELS),
                               description="severities whose failures make the verdict FAIL")
    warn: list[Level] = Field(default_factory=list, description="severities whose failures only make it WARN")
    tolerate: dict[Level, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, description="failures of a blocking severity tolerated per report (shown as warnings)")
    warn_blocks: bool = Field(False, description="WARN exits 1 instead of 0")
    max_age: Duration | None = Field(None, description="a report older than this is ERROR (e.g. 26h)")
    require: list[Require] = Field(default_factory=list, description="checks that must have run and passed")
    min_checks: Annotated[int, Field(ge=1)] = Field(1, description="fewer executed checks than this is ERROR")
    seal_key: SealKey | None = Field(None, description="HMAC key source; reports not signed with it are ERROR "
                                                       "(default: the policy's top-level seal_key)")
    environment: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="the environment this gate gates: a report of another one is ERROR "
                          "(opsgate gate --environment overrides it)")
    fleet: list[FleetRule] = Field(default_factory=list, description="rules over the hosts of a group: "
                                   "{severity: [P0], group: web, at_least: 99%}")
    groups: dict[Annotated[str, AfterValidator(_group_name)], Annotated[list[Pattern], AfterValidator(_some_patterns)]] = Field(
        default_factory=dict, description="groups by host-name pattern, e.g. {web: [\"web*\"]}, "
                                          "added to the groups the reports' hosts carry")

    @model_validator(mode="after")
    def _disjoint(self) -> "Gate":
        both = sorted(set(self.block) & set(self.warn))
        if both:
            raise ValueError(f"expected a severity in block or in warn, seen {', '.join(both)} in both")
        return self

    def action(self, level: str) -> str:
        """``block``, ``warn`` or ``ignore`` (a severity in neither list is not gated)."""
        return "block" if level in self.block else "warn" if level in self.warn else "ignore"


class Waiver(Strict):
    """Excuse a check's failure (or warning) until ``expires``."""

    check: Pattern = Field(description="glob on the check name, test id or nodeid")
    justification: Annotated[str, Field(min_length=10)] = Field(description="why, and the ticket")
    expires: date = Field(description="last day the waiver applies (YYYY-MM-DD)")
    gates: list[str] = Field(default_factory=list, description="gates it applies to (default: all)")
    source: Pattern | None = Field(None, description="glob on environment@host (default: all)")
    host: Pattern | None = Field(None, description="glob on the host the check judged (a fleet host, or the machine "
                                                   "of a self-check report); check: then also matches the name "
                                                   "without @host (default: any host, names as written)")

    def applies_to(self, gate: str) -> bool:
        return not self.gates or gate in self.gates

    def matches(self, check) -> bool:
        """Whether this waiver covers ``check`` (a CheckRecord).

        >>> from opsgate.gate.reports import CheckRecord
        >>> on_web3 = CheckRecord("shop@ctl", "f::test_process[server@web3]", "server@web3", "process", "P0",
        ...                       "daily", "fail", host="web3")
        >>> w = dict(justification="web3 is being rebuilt, OPS-501", expires="2999-01-01")
        >>> [Waiver(check=c, host=h, **w).matches(on_web3) for c, h in
        ...  (("server@web3", None), ("server", None), ("server", "web3"), ("server", "web*"), ("server", "web1"))]
        [True, False, True, True, False]
        """
        if self.source and not glob_match(check.source, self.source):
            return False
        names = (check.name, check.test_id, check.nodeid)
        if self.host:
            host = getattr(check, "host", None)
            if host is None or not glob_match(host, self.host):
                return False
            base = check.name.removesuffix(f"@{host}")
            names += (base,)
        return any(glob_match(text, self.check) for text in names)

    def expired(self, today: date) -> bool:
        return today > self.expires


_DEFAULT_GATE_DESCRIPTION = "every failing check blocks; the plain reading of a run"


class Policy(Strict):
    """The whole gates file."""

    gates: dict[str, Gate] = Field(default_factory=dict)
    waivers: list[Waiver] = Field(default_factory=list)
    seal_key: SealKey | None = Field(None, description="HMAC key source for every gate without its own")

    @model_validator(mode="after")
    def _default_gate(self) -> "Policy":
        self.gates.setdefault(DEFAULT_GATE, Gate(description=_DEFAULT_GATE_DESCRIPTION))
        return self


class PolicyError(ProblemsError):
    """The gates file cannot be used; ``problems`` lists every reason."""


@dataclass
class LoadedPolicy:
    policy: Policy
    path: Path | None  # None: the built-in default

    @property
    def gates(self) -> dict[str, Gate]:
        return self.policy.gates

    @property
    def source(self) -> str:
        return str(self.path) if self.path else "built-in"

    def gate(self, name: str | None) -> Gate:
        """The named gate; PolicyError naming the gates there are."""
        name = name or DEFAULT_GATE
        if name not in self.gates:
            raise PolicyError([Problem(self.source, None, "gates",
                                       f"expected a gate named {name!r}, seen only: {', '.join(sorted(self.gates))}")])
        return self.gates[name]

    def seal_key(self, name: str | None) -> bytes | None:
        """The named gate's seal key (its own source, else the policy's), None when neither names
        one; PolicyError naming the source, never the key, when it cannot be read."""
        source = self.gate(name).seal_key or self.policy.seal_key
        if source is None:
            return None
        try:
            return source.read()
        except ValueError as exc:
            raise PolicyError([Problem(self.source, None, "seal_key", str(exc))]) from None


def find_policy(explicit: str | os.PathLike | None, search: list[Path]) -> Path | None:
    """``--policy``, else ``$OPSGATE_POLICY``, else ``config/gates.yaml`` under a search folder, else None."""
    chosen = explicit or os.environ.get("OPSGATE_POLICY")
    if chosen:
        return Path(chosen)
    for folder in search:
        for name in ("gates.yaml", "gates.yml"):
            if (folder / "config" / name).is_file():
                return folder / "config" / name
    return None


def _default_policy() -> Policy:
    """``Policy()``: the default gate only. Made from the models' defaults without validating
    them (there is nothing to check), so a run without a gates file never builds the policy
    models' validators (~8 ms of every opsgate run's start).

    >>> _default_policy() == Policy()
    True
    """
    gate = Gate.model_construct(description=_DEFAULT_GATE_DESCRIPTION)
    return Policy.model_construct(gates={DEFAULT_GATE: gate})


def load_policy(path: str | os.PathLike | None) -> LoadedPolicy:
    """Read and validate a gates file (None: the built-in default gate only)."""
    if path is None:
        return LoadedPolicy(_default_policy(), None)
    path = Path(path)
    shown = str(path)
    data, lines = parse(read(path, shown, PolicyError), shown, PolicyError)  # bounded; bytes checked as UTF-8
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError([Problem(shown, 1, "", f"expected a mapping with 'gates' and 'waivers', seen {type(data).__name__}")])
    try:
        policy = Policy.model_validate(data)
    except pydantic.ValidationError as exc:
        raise PolicyError(problems_from(exc.errors(include_url=False), data, lines, shown, Policy)) from None
    unknown = [(i, g) for i, w in enumerate(policy.waivers) for g in w.gates if g not in policy.gates]
    if unknown:
        raise PolicyError([Problem(shown, lines.get(("waivers", i, "gates")), f"waivers[{i}].gates",
                                   f"expected the name of a gate ({', '.join(sorted(policy.gates))}), seen {g!r}")
                           for i, g in unknown])
    return LoadedPolicy(policy, path)

