"""A gate over a fleet: rules on the share of a group's hosts that pass their checks.

A gate's ``fleet:`` rules (``{severity: [P0], group: web, at_least: 99%}``) judge hosts, not
checks. A host passes a rule when every check of those severities on it passed or warned; a
failed, errored or blocked one breaks it (blocked counts at its root cause, which is named),
and so does a host on which no check of those severities ran. A waived failure does not break
its host. When the passing share of the group's hosts is at least ``at_least`` the rule holds
and the failures it covers are tolerated (shown as warnings, like ``tolerate:``); otherwise
they block and the verdict lists the hosts that broke it with their root causes. A group with
no host in the reports is ERROR: there is nothing to judge; so is one with fewer hosts than the
rule's ``min_hosts`` (merged self-check reports know only the machines that reported).

Hosts and their groups come from the reports: a fleet run's ``opsgate.hosts`` map (host ->
groups), a check's ``host``, and for a run without hosts (a machine checking itself on a
timer) the report's own host. A gate's ``groups:`` add members by host-name pattern, and the
group ``all`` holds every host.

>>> from opsgate.gate.reports import CheckRecord, Report
>>> from opsgate.gate.policy import FleetRule
>>> def report(host, status):
...     return Report(f"{host}.json", "shop", host, checks=[
...         CheckRecord(f"shop@{host}", "t::test_tcp[db]", "db", "tcp", "P0", "daily", status, host=host)])
>>> reports = [report("web1", "pass"), report("web2", "pass"), report("web3", "fail")]
>>> hosts = membership(reports, {"web": ["web*"]})
>>> sorted(hosts["web3"])
['all', 'web']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from ..results import Status
from .policy import ALL_HOSTS, FleetRule, glob_match
from .reports import CheckRecord, Report

#: statuses that break a host (blocked: at its root cause)
BREAKS = frozenset({Status.FAIL, Status.ERROR, Status.BLOCKED})
PASSES = frozenset({Status.PASS, Status.WARN})


@dataclass
class FleetOutcome:
    """One rule, judged: the group's hosts and the ones that broke it with their root causes."""

    index: int
    rule: FleetRule
    hosts: list[str]
    broken: dict[str, list[str]] = field(default_factory=dict)  # host -> its root causes, in words

    @property
    def passing(self) -> int:
        return len(self.hosts) - len(self.broken)

    @property
    def holds(self) -> bool:
        # exact: 99 % of 100 hosts is 99 hosts, not 98.99999
        return bool(self.hosts) and self.passing * 100 >= Fraction(str(self.rule.at_least)) * len(self.hosts)

    def summary(self) -> str:
        """``fleet rule 1 (P0 on group web, at least 60%): 2 of 3 hosts pass (66.7%): holds``."""
        share = 100 * self.passing / len(self.hosts) if self.hosts else 0.0
        state = "holds" if self.holds else "broken"
        return (f"fleet rule {self.index + 1} ({self.rule.describe()}): {self.passing} of {len(self.hosts)} "
                f"host{'s' * (len(self.hosts) != 1)} pass ({share:.3g}%): {state}")

    def broken_lines(self) -> list[str]:
        """One line per host that broke the rule: ``web3: db (failed: connection refused)``."""
        return [f"{host}: {'; '.join(causes)}" for host, causes in sorted(self.broken.items())]


def membership(reports: list[Report], patterns: dict[str, list[str]]) -> dict[str, set[str]]:
    """Every host of the reports -> the groups it belongs to (``all`` included)."""
    hosts: dict[str, set[str]] = {}
    for report in reports:
        for name, groups in report.hosts.items():
            hosts.setdefault(name, set()).update(groups)
        for check in report.checks:
            if check.host:
                hosts.setdefault(check.host, set())
    for name, groups in hosts.items():
        groups.add(ALL_HOSTS)
        groups.update(group for group, globs in patterns.items() if any(glob_match(name, g) for g in globs))
    return hosts


def covers(rule: FleetRule, hosts: dict[str, set[str]], check: CheckRecord, level: str) -> bool:
    """Whether ``rule`` judges ``check`` (counted at severity ``level``): its host is in the
    rule's group and the level is one of the rule's."""
    return bool(check.host) and level in rule.severity and rule.group in hosts.get(check.host, ())


def judge(rules: list[FleetRule], hosts: dict[str, set[str]], findings: list) -> tuple[list[FleetOutcome], list[str]]:
    """Judge every rule over the findings; returns the outcomes and the reasons the gate cannot
    judge one (ERROR). The findings the rules cover are re-labelled: blocking when a rule
    covering them is broken, tolerated when every one holds."""
    from .decide import Effect

    outcomes, errors = [], []
    by_name = {(f.check.source, f.check.name): f for f in findings}
    for index, rule in enumerate(rules):
        members = sorted(h for h, groups in hosts.items() if rule.group in groups)
        outcome = FleetOutcome(index, rule, members)
        if not members:
            known = sorted({g for groups in hosts.values() for g in groups} - {ALL_HOSTS})
            errors.append(f"fleet rule {index + 1} ({rule.describe()}): group {rule.group!r} has no host in these "
                          f"reports; nothing to judge (groups seen: {', '.join(known) or 'none'}; "
                          f"hosts seen: {', '.join(sorted(hosts)) or 'none'})")
            outcomes.append(outcome)
            continue
        if len(members) < rule.min_hosts:  # the share of the hosts that reported is no share of the fleet
            errors.append(f"fleet rule {index + 1} ({rule.describe()}): group {rule.group!r} has {len(members)} "
                          f"host{'s' * (len(members) != 1)} in these reports ({', '.join(members)}); the rule expects "
                          f"at least {rule.min_hosts} (min_hosts): a report is missing?")
        judged: set[str] = set()
        for finding in findings:
            check = finding.check
            # judged at its own severity, or as a root cause at the highest of what it blocks
            if check.host not in members or (check.severity not in rule.severity and finding.severity not in rule.severity):
                continue
            if check.status in PASSES or finding.effect == Effect.WAIVED:
                judged.add(check.host)
            elif check.status in BREAKS and finding.effect != Effect.WAIVED:
                judged.add(check.host)
                causes = outcome.broken.setdefault(check.host, [])
                for cause in _causes(finding, by_name):
                    if cause not in causes:
                        causes.append(cause)
        if not judged:
            errors.append(f"fleet rule {index + 1} ({rule.describe()}): no {'/'.join(rule.severity)} check ran on any "
                          f"host of group {rule.group!r} ({', '.join(members)}); nothing to judge")
        for host in members:
            if host not in judged and host not in outcome.broken:
                outcome.broken[host] = [f"no {'/'.join(rule.severity)} check ran on it"]
        outcomes.append(outcome)
    for finding in findings:
        _relabel(finding, [o for o in outcomes if covers(o.rule, hosts, finding.check, finding.severity)])
    return outcomes, errors


def _causes(finding, by_name: dict) -> list[str]:
    """A broken host's root causes in words: the failed check itself, or what blocked it."""
    check = finding.check
    if check.status == Status.BLOCKED and finding.causes:
        out = []
        for name in finding.causes:
            root = by_name.get((check.source, name))
            out.append(_cause(root.check) if root is not None else f"{name} (blocks {check.name})")
        return out
    return [_cause(check)]


def _cause(check: CheckRecord) -> str:
    message = " ".join(check.message.split())
    message = message if len(message) <= 160 else message[:160] + "…"
    return f"{check.name} ({check.status}{': ' + message if message else ''})"


def _relabel(finding, covering: list[FleetOutcome]) -> None:
    from .decide import Effect

    if not covering or finding.check.status not in BREAKS or finding.effect not in (
            Effect.BLOCK, Effect.TOLERATED, Effect.WARN, Effect.IGNORED):
        return
    broken = [o for o in covering if not o.holds]
    if broken:
        finding.effect = Effect.BLOCK
        finding.reason += "; breaks " + ", ".join(o.summary() for o in broken)
    elif finding.effect in (Effect.BLOCK, Effect.TOLERATED):
        finding.effect = Effect.TOLERATED
        finding.reason += "; tolerated by " + ", ".join(o.summary() for o in covering)
