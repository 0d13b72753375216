"""The gate's decision: reports + a named gate -> PASS / WARN / FAIL / ERROR and an exit code.

This is the one code path that decides, whether called by ``opsgate gate`` on report
files or by ``pytest --gate NAME`` on the run it just finished.

Order of judgement:

1. ERROR, with its reasons, when a report cannot be trusted (see ``reports``), is older
   than the gate's ``max_age``, ran fewer than ``min_checks`` checks, or a required
   check is absent, deselected, skipped or blocked.
2. A check blocked by a failed prerequisite is not counted; its prerequisite is one
   root cause, judged at the highest severity among itself and what it blocks.
3. A failure (or error) is waived by an active waiver; otherwise its severity's action
   in the gate applies: ``block`` (FAIL, unless within ``tolerate``), ``warn`` or
   ``ignore``. A required check that failed always blocks, waived or not; a waiver on a
   root cause does not cover the higher-severity checks it kept from running.
4. A warn-level breach makes WARN unless waived.
5. The gate's ``fleet:`` rules judge the hosts of a group (see ``fleet``): the failures a rule
   covers block when it is broken (listing the hosts that broke it and their root causes) and
   are tolerated when it holds; a broken rule makes FAIL, a group with no host ERROR.

Exit codes: PASS 0, WARN 0 (1 with ``warn_blocks``), FAIL 1, ERROR 2.

>>> from opsgate.gate.reports import Report, CheckRecord
>>> from opsgate.gate.policy import load_policy
>>> ok = CheckRecord("demo@h", "t.py::test_http[api]", "api", "http", "P0", "daily", "pass")
>>> evaluate([Report("r.json", "demo", "h", checks=[ok])], load_policy(None)).verdict
'PASS'
>>> evaluate([], load_policy(None)).errors
['no report given: a gate never passes on nothing']
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum

from .. import severity as sev
from ..results import Status
from . import fleet as fleet_rules
from .policy import DEFAULT_GATE, Gate, LoadedPolicy, Waiver
from .reports import EXECUTED, CheckRecord, Report

class Verdict(StrEnum):
    """A gate's answer; str-valued, so reports, JSON and comparisons keep the plain words."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    ERROR = "ERROR"

    def __repr__(self) -> str:
        return repr(self.value)


class Effect(StrEnum):
    """What a gate made of one check, in the order an operator reads them."""

    BLOCK = "block"
    WARN = "warn"
    TOLERATED = "tolerated"  # a blocking failure within the gate's tolerance
    WAIVED = "waived"
    IGNORED = "ignored"  # a severity the gate does not look at
    BLOCKED = "blocked"  # not run behind a failed prerequisite, counted at that one
    SKIPPED = "skipped"
    OK = "ok"

    def __repr__(self) -> str:
        return repr(self.value)


EXIT_CODES = {Verdict.PASS: 0, Verdict.WARN: 0, Verdict.FAIL: 1, Verdict.ERROR: 2}
CLOCK_SKEW_S = 300  # a report may seem this far in the future before its age is distrusted
#: effects, in the order an operator reads them
EFFECTS = tuple(Effect)


@dataclass(slots=True)  # slots: one per check of a run
class Finding:
    """One check as the gate judged it."""

    check: CheckRecord
    effect: Effect | str  # "" until judged
    reason: str
    severity: str  # effective severity: a root cause takes the highest of what it blocks
    blocks: list[CheckRecord] = field(default_factory=list)  # checks it blocked (root causes)
    waiver: Waiver | None = None
    causes: tuple[str, ...] = ()  # a blocked check: the root causes it is counted under

    @property
    def is_root_cause(self) -> bool:
        return bool(self.blocks)


@dataclass
class SourceVerdict:
    """The verdict for one environment@host."""

    source: str
    reports: list[str]
    verdict: Verdict
    counts: dict[str, int]


@dataclass
class GateResult:
    gate: str
    policy: str
    verdict: Verdict
    exit_code: int
    warn_blocks: bool
    errors: list[str]
    findings: list[Finding]
    notes: list[str]  # partial runs; waivers that expired or were not used
    sources: list[SourceVerdict]
    reports: list[Report]
    decided_at: datetime
    fleet: list[fleet_rules.FleetOutcome] = field(default_factory=list)  # the gate's fleet rules, judged

    def effect(self, *effects: str) -> list[Finding]:
        """Findings with these effects, most severe first."""
        return sorted((f for f in self.findings if f.effect in effects), key=lambda f: (sev.rank(f.severity), f.check.nodeid))

    @property
    def root_causes(self) -> list[Finding]:
        return sorted((f for f in self.findings if f.is_root_cause), key=lambda f: (sev.rank(f.severity), -len(f.blocks)))

    @property
    def counts(self) -> dict[str, int]:
        return _counts(self.findings)

    def headline(self) -> str:
        """``FAIL: 1 root cause (db-port, blocks 12); 1 blocking; 2 warnings; 1 waived``."""
        parts = []
        if self.errors:
            parts.append(f"{len(self.errors)} reason{'s' * (len(self.errors) != 1)} the gate cannot trust the result")
        roots = [f for f in self.root_causes if f.effect == Effect.BLOCK]
        if roots:
            names = ", ".join(f"{f.check.name} blocks {len(f.blocks)}" for f in roots[:3])
            parts.append(f"{len(roots)} root cause{'s' * (len(roots) != 1)} ({names})")
        plain = [f for f in self.effect(Effect.BLOCK) if not f.is_root_cause]
        if plain:
            parts.append(f"{len(plain)} blocking failure{'s' * (len(plain) != 1)}")
        warnings = self.effect(Effect.WARN, Effect.TOLERATED)
        if warnings:
            parts.append(f"{len(warnings)} warning{'s' * (len(warnings) != 1)}")
        waived = self.effect(Effect.WAIVED)
        if waived:
            parts.append(f"{len(waived)} waived")
        for outcome in self.fleet:
            if outcome.hosts and not outcome.holds:
                parts.append(f"fleet rule {outcome.index + 1} broken: {outcome.passing} of {len(outcome.hosts)} hosts of "
                             f"{outcome.rule.group} pass {'/'.join(outcome.rule.severity)}, at least "
                             f"{outcome.rule.at_least:g}% must (broken: {', '.join(sorted(outcome.broken))})")
        executed = sum(1 for f in self.findings if f.check.status in EXECUTED)
        parts.append(f"{executed} checks ran in {len(self.reports)} report{'s' * (len(self.reports) != 1)}")
        return f"{self.verdict}: " + "; ".join(parts)


def evaluate(reports: list[Report], policy: LoadedPolicy, gate_name: str | None = None,
             now: datetime | None = None, environment: str | None = None) -> GateResult:
    """Decide one gate over one or more reports. With an ``environment`` (or the gate's own
    ``environment:``), a report of any other environment is ERROR.

    >>> from opsgate.gate.reports import Report, CheckRecord
    >>> from opsgate.gate.policy import load_policy
    >>> ok = CheckRecord("b@h", "t.py::test_http[api]", "api", "http", "P0", "daily", "pass")
    >>> evaluate([Report("r.json", "b", "h", checks=[ok])], load_policy(None), environment="a").errors
    ["r.json: a report of environment 'b'; this gate gates environment 'a'"]
    """
    name = gate_name or DEFAULT_GATE
    gate = policy.gate(name)
    environment = environment or gate.environment
    now = now or datetime.now(timezone.utc)
    waivers = [w for w in policy.policy.waivers if w.applies_to(name)]
    usage: dict[int, list[Finding]] = defaultdict(list)
    errors: list[str] = [] if reports else ["no report given: a gate never passes on nothing"]
    findings: list[Finding] = []
    report_errors: dict[str, list[str]] = defaultdict(list)
    hosts = fleet_rules.membership(reports, gate.groups) if gate.fleet else {}

    def covered(check: CheckRecord, level: str) -> bool:
        return any(fleet_rules.covers(rule, hosts, check, level) for rule in gate.fleet)

    for report in reports:
        problems = list(report.problems) + _freshness(report, gate, now)
        if environment is not None and report.environment != environment:
            problems.insert(0, f"{report.path}: a report of environment {report.environment!r}; "
                               f"this gate gates environment {environment!r}")
        if not report.problems and report.executed < gate.min_checks:
            problems.append(f"{report.path}: {report.executed} checks ran; the gate needs at least {gate.min_checks}")
        errors.extend(problems)
        report_errors[report.source].extend(problems)
        findings.extend(_judge(report, gate, waivers, now, usage, covered))
    outcomes, fleet_errors = fleet_rules.judge(gate.fleet, hosts, findings) if gate.fleet else ([], [])
    errors.extend(fleet_errors)
    errors.extend(_required(reports, gate, findings))
    notes = [f"{r.path}: partial run ({r.partial})" for r in reports if r.partial]
    notes += _waiver_notes(waivers, usage, findings, now)
    verdict = _verdict(errors, findings)
    if verdict in (Verdict.PASS, Verdict.WARN) and any(not o.holds for o in outcomes):
        verdict = Verdict.FAIL  # a host broken only by a check that ran nowhere, or blocked by an ungated one
    elif verdict == Verdict.PASS and any(o.broken for o in outcomes):
        verdict = Verdict.WARN  # a rule that holds tolerates its broken hosts: a warning, never a plain PASS
    sources = []
    by_source: dict[str, list[Report]] = defaultdict(list)
    for report in reports:
        by_source[report.source].append(report)
    for source, group in by_source.items():
        mine = [f for f in findings if f.check.source == source]
        sources.append(SourceVerdict(source, [r.path for r in group], _verdict(report_errors[source], mine), _counts(mine)))
    code = EXIT_CODES[verdict] if not (verdict == Verdict.WARN and gate.warn_blocks) else 1
    return GateResult(name, policy.source, verdict, code, gate.warn_blocks, errors, findings, notes, sources,
                      list(reports), now, outcomes)


def _verdict(errors: list[str], findings: list[Finding]) -> Verdict:
    if errors:
        return Verdict.ERROR
    effects = {f.effect for f in findings}
    if Effect.BLOCK in effects:
        return Verdict.FAIL
    if effects & {Effect.WARN, Effect.TOLERATED}:
        return Verdict.WARN
    return Verdict.PASS


def _counts(findings: list[Finding]) -> dict[str, int]:
    statuses = Counter(f.check.status for f in findings)
    out = {str(s): statuses.get(s, 0) for s in Status}
    out["waived"] = sum(1 for f in findings if f.effect == Effect.WAIVED)
    return out


def _freshness(report: Report, gate: Gate, now: datetime) -> list[str]:
    if gate.max_age is None or report.problems:
        return []
    if report.finished_at is None:
        return [f"{report.path}: the report does not say when it finished, so its age ({gate.max_age:g}s allowed) is unknown"]
    finished = report.finished_at if report.finished_at.tzinfo else report.finished_at.replace(tzinfo=timezone.utc)
    age = now - finished
    if age < -timedelta(seconds=CLOCK_SKEW_S):
        return [f"{report.path}: report finished {finished.isoformat(timespec='seconds')}, "
                f"{_human(-age.total_seconds())} in the future: its age cannot be trusted (clock skew?)"]
    if age > timedelta(seconds=gate.max_age):
        return [f"{report.path}: report is stale: finished {finished.isoformat(timespec='seconds')}, "
                f"{_human(age.total_seconds())} ago; the gate allows {_human(gate.max_age)}"]
    return []


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _roots(report: Report) -> tuple[dict[str, list[CheckRecord]], dict[int, list[str]]]:
    """Root cause name -> the checks it blocked (transitively); and, by id() of each blocked
    check, the root causes it is counted under (empty: no root in the report)."""
    by_name = {c.name: c for c in report.checks}
    roots: dict[str, list[CheckRecord]] = defaultdict(list)
    causes_of: dict[int, list[str]] = {}
    for check in report.checks:
        if check.status != Status.BLOCKED:
            continue
        found, seen, todo = set(), set(), list(check.blocked_by)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            prerequisite = by_name.get(name)
            if prerequisite is None:
                continue
            if prerequisite.status == Status.BLOCKED:
                todo.extend(prerequisite.blocked_by)
            elif prerequisite.status in (Status.FAIL, Status.ERROR):
                found.add(name)
        for name in found:
            roots[name].append(check)
        causes_of[id(check)] = sorted(found)
    return roots, causes_of


def _judge(report: Report, gate: Gate, waivers: list[Waiver], now: datetime,
           usage: dict[int, list[Finding]], covered=lambda check, level: False) -> list[Finding]:
    """Each check of the report judged alone; ``covered(check, level)`` says a fleet rule judges
    it (its tolerance is the rule's, so it does not spend the gate's ``tolerate:``)."""
    roots, causes_of = _roots(report)
    failures: Counter[str] = Counter()
    out = []
    for check in report.checks:
        status = check.status
        if status == Status.PASS:
            out.append(Finding(check, Effect.OK, "passed", check.severity))
            _mark_waivers(check, waivers, now, usage, out[-1])
            continue
        if status == Status.SKIPPED:
            out.append(Finding(check, Effect.SKIPPED, check.message or "skipped", check.severity))
            continue
        if status == Status.BLOCKED and causes_of.get(id(check)):
            out.append(Finding(check, Effect.BLOCKED, f"not run: blocked by {', '.join(causes_of[id(check)])} (counted there)",
                               check.severity, causes=tuple(causes_of[id(check)])))
            continue
        blocks = roots.get(check.name, [])
        level = min([check.severity, *(c.severity for c in blocks)], key=sev.rank)
        finding = Finding(check, "", "", level, blocks)
        waiver = _mark_waivers(check, waivers, now, usage, finding)
        if waiver is not None and level != check.severity:
            # a waiver excuses this check's own failure, not the higher-severity checks it kept from running
            finding.reason = f"waiver ignored: it excuses a {check.severity} failure, but this blocks {level} checks; "
            waiver = None
        if waiver is not None:
            finding.effect, finding.waiver = Effect.WAIVED, waiver
            finding.reason = f"waived until {waiver.expires.isoformat()}: {waiver.justification}"
        elif status == Status.WARN:
            finding.effect, finding.reason = Effect.WARN, "a warn-level limit was breached"
        else:
            prefix = finding.reason  # "waiver ignored: ..." when one matched but could not apply
            raised = f" (raised from {check.severity}: it blocks {level} checks)" if level != check.severity else ""
            what = "blocked by a prerequisite that is not in this report" if status == "blocked" else \
                "the check could not decide (error)" if status == "error" else "failed"
            action = gate.action(level)
            if action == "block" and covered(check, level):
                finding.effect, finding.reason = Effect.BLOCK, f"{what}; {level} blocks this gate{raised}"  # fleet decides
            elif action == "block":
                failures[level] += 1
                allowed = gate.tolerate.get(level, 0)
                if failures[level] <= allowed:
                    finding.effect = Effect.TOLERATED
                    finding.reason = f"{what}; {level} failure {failures[level]} of {allowed} tolerated{raised}"
                else:
                    finding.effect, finding.reason = Effect.BLOCK, f"{what}; {level} blocks this gate{raised}"
            elif action == "warn":
                finding.effect, finding.reason = Effect.WARN, f"{what}; {level} only warns in this gate{raised}"
            else:
                finding.effect, finding.reason = Effect.IGNORED, f"{what}; {level} is not gated here{raised}"
            finding.reason = prefix + finding.reason
        out.append(finding)
    return out


def _mark_waivers(check: CheckRecord, waivers: list[Waiver], now: datetime, usage: dict[int, list[Finding]],
                  finding: Finding) -> Waiver | None:
    """Record which waivers match this check; return the first active one."""
    active = None
    for index, waiver in enumerate(waivers):
        if waiver.matches(check):
            usage[index].append(finding)
            if active is None and not waiver.expired(now.date()) and check.status != "pass":
                active = waiver
    return active


def _required(reports: list[Report], gate: Gate, findings: list[Finding]) -> list[str]:
    errors = []
    for requirement in gate.require:
        matched = [f for f in findings if requirement.matches(f.check)]
        if not matched:
            deselected = [n for r in reports for n in r.deselected if requirement.matches_nodeid(n)]
            errors.append(f"required check ({requirement.describe()}) "
                          + (f"was deselected: {deselected[0]}" if deselected else "is absent from every report"))
            continue
        for finding in matched:
            check = finding.check
            if check.status in (Status.SKIPPED, Status.BLOCKED):
                errors.append(f"required check {check.test_id} ({check.source}) did not run: {check.status}"
                              + (f": {check.message}" if check.message else ""))
            elif check.status in (Status.FAIL, Status.ERROR) and finding.effect in (Effect.WARN, Effect.TOLERATED, Effect.IGNORED, Effect.WAIVED):
                if finding.effect == Effect.WAIVED:
                    finding.reason = f"failed; {finding.waiver.check!r} waiver does not apply to a required check"
                    finding.waiver = None
                finding.effect = Effect.BLOCK
                finding.reason += f"; required by the gate ({requirement.describe()}), so it blocks"
    return errors


def _waiver_notes(waivers: list[Waiver], usage: dict[int, list[Finding]], findings: list[Finding],
                  now: datetime) -> list[str]:
    notes = []
    today = now.date()
    for index, waiver in enumerate(waivers):
        matched = usage.get(index, [])
        label = f"waiver for {waiver.check!r} ({waiver.justification})"
        if waiver.expired(today):
            failing = [f.check.test_id for f in matched if f.check.status != "pass"]
            notes.append(f"{label} expired on {waiver.expires.isoformat()} and no longer applies"
                         + (f"; {', '.join(failing[:5])} counted normally" if failing else ""))
        elif not matched:
            notes.append(f"{label} is unused: it matches no check in these reports")
        elif not any(f.waiver is waiver for f in matched):
            refused = [f.check.test_id for f in matched if f.check.status != "pass"]
            passed = [f.check.test_id for f in matched if f.check.status == "pass"]
            if refused:
                notes.append(f"{label} did not apply to {', '.join(refused[:5])} (see the reason given there)")
            else:
                notes.append(f"{label} is unused: {', '.join(passed[:5]) or 'the matching checks'} passed (remove it?)")
    return notes
