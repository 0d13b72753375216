"""Many hosts: an environment's ``hosts:``, ``host_options:`` and ``inventory:`` sections, and the
expansion of a check with ``hosts:`` into one check per host.

A host-level check (host, process, tcp, file, log, command, systemd, packages, series from a
file) that names ``hosts:`` (a host, a group, ``all``, or a list of them) becomes one check
per host, named ``check@host``, run through that host's target (a pytest-testinfra host:
``ssh://``, ``paramiko://``, ``podman://``, ``local://`` ...). Each host with checks gets a
synthetic ``reachable@host`` check (kind ``reachable``): every check on that host depends on
it, so an unreachable host is one root cause, not forty failures; its severity is the highest
of that host's checks and it runs in every cadence they run in.

>>> from opsgate.model import Environment
>>> env = Environment.model_validate({"name": "shop",
...     "hosts": {"web1": {"url": "ssh://root@10.0.0.1", "groups": ["web"]}, "web2": "ssh://root@10.0.0.2"},
...     "process": [{"name": "server", "hosts": "all", "severity": "P0", "process_name": "python3"}],
...     "file": [{"name": "conf", "hosts": "web", "path": "/etc/app.conf", "depends_on": ["server"]}]})
>>> [(i.name, i.on_host, i.depends_on) for i in env.items()]  # doctest: +NORMALIZE_WHITESPACE
[('reachable@web1', 'web1', []), ('server@web1', 'web1', ['reachable@web1']),
 ('reachable@web2', 'web2', []), ('server@web2', 'web2', ['reachable@web2']),
 ('conf@web1', 'web1', ['reachable@web1', 'server@web1'])]
>>> env.items("reachable")[0].severity
'P0'
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from . import severity as sev
from .schema import CADENCES, CheckItem, Duration, Strict

#: a host's or a group's name: what ids, reports and gates show (``server@web1``)
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
HostName = Annotated[str, Field(pattern=NAME)]

#: pytest-testinfra's connection backends (``testinfra.backend.BACKENDS``), named here so an
#: environment is checked without importing testinfra
TRANSPORTS = ("local", "ssh", "safe-ssh", "paramiko", "docker", "podman", "kubectl", "ansible", "lxc", "openshift",
              "chroot", "salt", "winrm")

#: host-level kinds that may run on another host (``drill`` restores and starts services where
#: opsgate runs; ``series`` only from a file, not from Prometheus)
REMOTE_KINDS = ("host", "process", "tcp", "file", "log", "command", "systemd", "packages", "series", "reachable")

#: the name of "every host"
ALL = "all"


class HostEntry(Strict):
    """One host: its pytest-testinfra spec and the groups it belongs to."""

    url: str = Field(description="a pytest-testinfra host spec: ssh://user@address[:port], paramiko://..., "
                                 "podman://container, docker://container, local:// ... (a password only as ${VAR})")
    groups: list[HostName] = []
    identity_file: str | None = Field(None, description="this host's ssh private key (default: host_options')")

    @field_validator("url")
    @classmethod
    def _transport(cls, value: str) -> str:
        scheme, sep, _rest = value.partition("://")
        if not sep or scheme not in TRANSPORTS:
            raise ValueError(f"expected a pytest-testinfra host spec, <transport>://..., with transport one of "
                             f"{', '.join(TRANSPORTS)}; seen {_shown_url(value)!r}")
        return value

    @property
    def transport(self) -> str:
        return self.url.partition("://")[0]


def _shown_url(url: str) -> str:
    """A spec as messages show it: a password replaced by ``***``.

    >>> _shown_url("ssh://deploy:hunter22@web1:2222")
    'ssh://deploy:***@web1:2222'
    """
    return re.sub(r"^([a-z-]+://[^:@/]*):[^@/]*@", r"\1:***@", url)


class HostOptions(Strict):
    """How every host is connected to."""

    known_hosts: str | None = Field(None, description="the known_hosts file host keys are checked against (relative "
                                                      "to base_dir; default: ssh's own, ~/.ssh/known_hosts)")
    insecure_no_host_key_check: bool = Field(False, description="do not check host keys (warned at load and in "
                                                                "every report): anyone on the path can pose as a host")
    identity_file: str | None = Field(None, description="the ssh private key (default: the ssh agent's keys)")
    connect_timeout: Duration = Field(10.0, description="limit for connecting to one host (the reachable check's "
                                                        "timeout)")
    per_host_concurrency: int = Field(4, ge=1, le=64, description="remote operations in flight per host (hosts are "
                                                                  "checked in parallel)")


class Inventory(Strict):
    """Hosts from an Ansible inventory (needs ansible-core's ``ansible-inventory``)."""

    file: str = Field(description="the inventory file (relative to base_dir)")
    pattern: str = Field(ALL, description="an Ansible host pattern: all, web, web:db ...")


def host_entries(value: Any) -> Any:
    """The short form ``web1: ssh://root@10.0.0.1`` is ``{url: ...}``.

    >>> host_entries({"a": "local://", "b": {"url": "local://"}})
    {'a': {'url': 'local://'}, 'b': {'url': 'local://'}}
    """
    if isinstance(value, dict):
        return {k: ({"url": v} if isinstance(v, str) else v) for k, v in value.items()}
    return value


def groups_of(hosts: dict[str, HostEntry]) -> dict[str, list[str]]:
    """Group name -> its hosts, in the order hosts are listed.

    >>> groups_of({"a": HostEntry(url="local://", groups=["web"]), "b": HostEntry(url="local://", groups=["web", "x"])})
    {'web': ['a', 'b'], 'x': ['b']}
    """
    groups: dict[str, list[str]] = {}
    for name, entry in hosts.items():
        for group in entry.groups:
            groups.setdefault(group, []).append(name)
    return groups


def resolve(selectors: list[str], hosts: dict[str, HostEntry]) -> tuple[list[str], list[str]]:
    """The hosts a ``hosts:`` list names (each once, in the order hosts are listed), and the
    selectors that name no host or group.

    >>> hosts = {"a": HostEntry(url="local://", groups=["web"]), "b": HostEntry(url="local://")}
    >>> resolve(["web"], hosts), resolve(["b", "all"], hosts), resolve(["nope"], hosts)
    ((['a'], []), (['a', 'b'], []), ([], ['nope']))
    """
    groups = groups_of(hosts)
    wanted: set[str] = set()
    unknown = []
    for selector in selectors:
        if selector == ALL:
            wanted.update(hosts)
        elif selector in hosts:
            wanted.add(selector)
        elif selector in groups:
            wanted.update(groups[selector])
        else:
            unknown.append(selector)
    return [name for name in hosts if name in wanted], unknown


def known_names(hosts: dict[str, HostEntry]) -> str:
    """What a ``hosts:`` list may name, for a load error."""
    groups = groups_of(hosts)
    shown = [f"hosts {', '.join(hosts)}" if hosts else "no hosts (the environment has no hosts: section)"]
    if groups:
        shown.append(f"groups {', '.join(groups)}")
    return "; ".join(shown + [ALL])


def expand(items: list[CheckItem], hosts: dict[str, HostEntry], options: HostOptions | None) -> list[CheckItem]:
    """One copy of each check with ``hosts:`` per host it names (``check@host``, its ``on_host``
    set, ``depends_on`` mapped to the same host's copies and led by ``reachable@host``), then one
    ``reachable@host`` check per host that has checks. Items without ``hosts:`` stay as they are.
    Unknown names are left out here (the loader reports them)."""
    on: dict[str, list[str]] = {i.name: resolve(i.hosts, hosts)[0] for i in items if i.hosts}
    via = {i.name: i.via for i in items if i.via in hosts}  # run here, connecting through that host
    if not on and not via:
        return items
    out: list[CheckItem] = []
    per_host: dict[str, list[CheckItem]] = {}
    first: dict[str, int] = {}  # host -> where its first check is: its reachable check goes there
    for item in items:
        if item.name in via:  # it needs its host reachable, as that host's own checks do
            host = via[item.name]
            first.setdefault(host, len(out))
            item = item.model_copy(update={"depends_on": [reachable_name(host), *item.depends_on]})
            per_host.setdefault(host, []).append(item)
        if item.name not in on:
            out.append(item)
            continue
        for host in on[item.name]:
            first.setdefault(host, len(out))
            deps = [f"{d}@{host}" if host in on.get(d, ()) else d for d in item.depends_on]
            copy = item.model_copy(update={"name": f"{item.name}@{host}", "hosts": [host],
                                           "depends_on": [reachable_name(host), *deps]})
            copy._on_host = host
            out.append(copy)
            per_host.setdefault(host, []).append(copy)
    for host in sorted(first, key=first.__getitem__, reverse=True):  # from the end: earlier places stay put
        out.insert(first[host], reachable_check(host, per_host[host], options))
    return out


def reachable_name(host: str) -> str:
    return f"reachable@{host}"


def reachable_check(host: str, checks: list[CheckItem], options: HostOptions | None) -> CheckItem:
    """The synthetic check every check on ``host`` depends on: the highest of their severities,
    every cadence they run in, the connect timeout as its timeout."""
    from .probes.reachable import ReachableCheck

    cadences = {c for check in checks for c in check.cadence}
    item = ReachableCheck.model_construct(
        name=reachable_name(host), severity=min((c.severity for c in checks), key=sev.rank),
        cadence=[c for c in CADENCES if c in cadences], timeout=(options or HostOptions()).connect_timeout,
        hosts=[host], description=f"{host} answers (its checks depend on it)")
    item._on_host = host
    return item


class FleetSettings(Strict):
    """The environment settings of many hosts (a mixin of the environment's settings)."""

    hosts: Annotated[dict[HostName, HostEntry], Field(description="hosts host-level checks may run on: name -> "
                                                      "{url, groups, identity_file} or the url alone")] = {}
    host_options: HostOptions | None = Field(None, description="how hosts are connected to (known_hosts, "
                                             "identity_file, connect_timeout, per_host_concurrency)")
    inventory: Inventory | None = Field(None, description="hosts from an Ansible inventory and a host pattern "
                                        "(needs ansible-core)")

    @field_validator("hosts", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return host_entries(value)

    @model_validator(mode="after")
    def _groups_are_not_hosts(self) -> "FleetSettings":
        clash = [g for g in groups_of(self.hosts) if g in self.hosts or g == ALL]
        if clash:
            raise ValueError(f"expected group names other than host names and {ALL!r}, seen group {clash[0]!r}")
        if ALL in self.hosts:
            raise ValueError(f"expected host names other than {ALL!r} (it means every host)")
        return self


_LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|::1|\[::1\])$")


def fleet_problems(env: Any, lines: dict, shown: str) -> list:
    """Load errors of the hosts an environment's items name: ``hosts:`` on a kind that connects
    from where opsgate runs, an unknown host or group (the known ones named), a tcp check that
    would connect to this machine's loopback instead of the host's port, a series read from
    Prometheus on a host, and ``depends_on`` a check that does not run on the same hosts."""
    from .kinds import REGISTRY
    from .yamlfile import Problem, dotted, line_of

    problems: list = []
    hosts = env.hosts
    on: dict[str, list[str]] = {}

    def problem(at: tuple, name: str, message: str) -> None:
        line = line_of(lines, at) or line_of(lines, at[:-1]) or line_of(lines, at[:2])
        problems.append(Problem(shown, line, dotted(at) + f" ({name})", message))

    for kind in REGISTRY:
        for index, item in enumerate(getattr(env, kind)):
            if item.via is not None:
                via_problem((kind, index, "via"), item, kind, hosts, problem)
            if item.hosts is None:
                continue
            at = (kind, index, "hosts")
            if kind not in REMOTE_KINDS:
                problem(at, item.name, f"expected no hosts: on a {kind} check (it connects from where opsgate runs); "
                                       f"hosts: is for the kinds that read a machine: {', '.join(REMOTE_KINDS)}")
                continue
            if kind == "series" and getattr(item, "path", None) is None:
                problem(at, item.name, "expected path (a JSON-lines file on each host) with hosts: a series from "
                                       "Prometheus is read from where opsgate runs, once")
            if kind == "tcp" and item.connect and ("host" not in item.model_fields_set or _LOOPBACK.match(item.host)):
                problem(at, item.name, "expected connect: false (the port's owner is read on each host) or host: an "
                                       "address of the host reachable from here; seen a connection to "
                                       f"{item.host}, this machine, which says nothing of the hosts")
            if item.name == "reachable":  # its copies would take the names of the hosts' own reachable checks
                problem((kind, index, "name"), item.name, "expected another name for a check with hosts: "
                                                          "reachable@<host> is each host's own reachability check")
            found, unknown = resolve(item.hosts, hosts)
            for selector in unknown:
                where = at + (item.hosts.index(selector),) if len(item.hosts) > 1 else at
                close = difflib.get_close_matches(selector, [*hosts, *groups_of(hosts)], 1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problem(where, item.name, f"expected a host, a group or {ALL} ({known_names(hosts)}), seen "
                                          f"{selector!r}{hint}")
            if not found and not unknown:  # `all` with no hosts: the check would silently run nowhere
                problem(at, item.name, f"expected hosts: to name at least one host ({known_names(hosts)}), seen "
                                       f"{', '.join(item.hosts)}, which names none")
            on[item.name] = found
    for kind in REGISTRY:
        for index, item in enumerate(getattr(env, kind)):
            for d_index, dep in enumerate(item.depends_on):
                if dep not in on:
                    continue
                at = (kind, index, "depends_on", d_index)
                mine = on.get(item.name)
                if mine is None:
                    problem(at, item.name, f"expected a check that runs here, seen {dep!r}, which runs on hosts "
                                           f"{', '.join(on[dep]) or '(none)'} (give this check hosts: too)")
                elif missing := [h for h in mine if h not in on[dep]]:
                    problem(at, item.name, f"expected {dep!r} to run on every host this check runs on (each copy "
                                           f"depends on its own host's), seen it not on {', '.join(missing)}")
    return problems


def via_problem(at: tuple, item: CheckItem, kind: str, hosts: dict[str, HostEntry], problem) -> None:
    """What is wrong with an item's ``via:``: a kind that does not connect with the HTTP client,
    a name that is no host of ``hosts:`` (a group neither: one request, one host), a host not
    reached over ssh (the forward rides its ssh connection)."""
    from .via import VIA_KINDS, VIA_TRANSPORTS

    if kind not in VIA_KINDS:
        problem(at, item.name, f"expected no via: on a {kind} check; via: (a request made through a host) is for "
                               f"{', '.join(VIA_KINDS)}")
    elif item.via not in hosts:
        close = difflib.get_close_matches(item.via, list(hosts), 1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        named = f"hosts {', '.join(hosts)}" if hosts else "no hosts (the environment has no hosts: section)"
        group = " (a group: via: names one host)" if item.via in groups_of(hosts) or item.via == ALL else ""
        problem(at, item.name, f"expected a host of hosts: ({named}), seen {item.via!r}{group}{hint}")
    elif hosts[item.via].transport not in VIA_TRANSPORTS:
        problem(at, item.name, f"expected a host reached over ssh:// (the request goes through a forward over its ssh "
                               f"connection), seen {item.via!r}, a {hosts[item.via].transport}:// host")


class InventoryError(ValueError):
    """An ``inventory:`` that cannot be read."""


#: how long ``ansible-inventory`` may take to list an inventory
INVENTORY_TIMEOUT_S = 60


def inventory_hosts(inventory: Inventory, base_dir: Path) -> dict[str, HostEntry]:
    """The hosts of an Ansible inventory matching its pattern, with their groups, each reached
    through testinfra's ansible backend (``ansible://name?ansible_inventory=FILE``). Reading it
    needs ansible-core (``ansible-inventory``); InventoryError says what is missing or wrong."""
    path = Path(inventory.file).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.exists():
        raise InventoryError(f"expected an Ansible inventory file, seen none at {path}")
    program = shutil.which("ansible-inventory")
    if program is None:
        beside = shutil.which("ansible-inventory", path=os.path.dirname(sys.executable))
        if beside:  # installed with opsgate, in a virtualenv that is not activated
            raise InventoryError(f"expected ansible-inventory on PATH, seen it only in {os.path.dirname(beside)} "
                                 "(testinfra's ansible backend runs ansible from PATH): activate the virtualenv "
                                 "or put that folder on PATH")
        raise InventoryError("expected ansible-core to read an Ansible inventory (ansible-inventory is not on PATH): "
                             "pip install ansible-core, or list the hosts in hosts: instead")
    try:
        ran = subprocess.run([program, "-i", str(path), "--list", "--limit", inventory.pattern], capture_output=True,
                             text=True, timeout=INVENTORY_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise InventoryError(f"ansible-inventory did not list {path} within {INVENTORY_TIMEOUT_S}s") from None
    if ran.returncode != 0:
        raise InventoryError(f"ansible-inventory cannot list {path}: {ran.stderr.strip()[-300:]}")
    try:
        data = json.loads(ran.stdout)
    except ValueError:
        raise InventoryError(f"ansible-inventory printed no JSON for {path}") from None
    members: dict[str, set[str]] = {}

    def walk(group: str, seen: tuple[str, ...]) -> set[str]:
        if group in members:
            return members[group]
        node = data.get(group) or {}
        found = set(node.get("hosts") or [])
        for child in node.get("children") or []:
            if child not in seen:
                found |= walk(child, seen + (child,))
        members[group] = found
        return found

    listed: dict[str, None] = {}
    for group in data:
        if group != "_meta":
            for host in sorted(walk(group, (group,))):
                listed.setdefault(host)
    hosts = {}
    for host in listed:
        if not re.match(NAME, host):
            raise InventoryError(f"expected host names of letters, digits, '.', '_' and '-', seen {host!r} in {path}")
        groups = [g for g in data if g not in ("_meta", ALL, "ungrouped") and host in members.get(g, ())]
        hosts[host] = HostEntry(url=f"ansible://{host}?ansible_inventory={path}", groups=groups)
    return hosts


def hosts_block(env: Any) -> dict[str, dict[str, Any]]:
    """The report's ``hosts``: each host's groups and transport scheme (never its url: it may hold
    a user or a password), and whether its host key is checked where there is one.

    >>> from opsgate.model import Environment
    >>> hosts_block(Environment.model_validate({"name": "x", "hosts": {"web1": {"url": "ssh://u:p@a", "groups": ["web"]}}}))
    {'web1': {'groups': ['web'], 'transport': 'ssh', 'host_key_checked': True}}
    """
    insecure = bool(env.host_options and env.host_options.insecure_no_host_key_check)
    block = {}
    for name, entry in env.hosts.items():
        block[name] = {"groups": list(entry.groups), "transport": entry.transport}
        if entry.transport in ("ssh", "safe-ssh", "paramiko"):
            block[name]["host_key_checked"] = not insecure
    return block
