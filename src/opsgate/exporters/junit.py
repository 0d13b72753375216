"""JUnit XML of a gate's result, for CI systems that read JUnit.

One ``<testsuite>`` per source (environment@host), one ``<testcase>`` per check with
``severity``, ``cadence``, ``kind``, ``status``, ``gate_effect`` and ``host`` (the host the check
judged, when known) as properties (and ``remedy``,
the runbook's next step, when a failing or warning check names one: also in its failure text).
Only what the gate blocks on is a ``<failure>``/``<error>``; a waived or blocked check
is ``<skipped>`` with the reason; a warning passes with its message in ``system-out``.
When the gate's verdict is ERROR a ``gate`` testcase carries the reasons as ``<error>``,
so a JUnit reader fails closed too. A gate's ``fleet:`` rules are a ``fleet`` testsuite, one
testcase per rule, a ``<failure>`` naming the hosts that broke it and their root causes.

>>> from opsgate.gate import evaluate, load_policy, read_report
>>> xml = render(evaluate([read_report("/nonexistent.json")], load_policy(None)))
>>> xml.splitlines()[1]
'<testsuites name="opsgate gate default" verdict="ERROR">'
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict

from ..gate.decide import Finding, GateResult
from ..redact import REDACTOR

# XML 1.0 forbids these (and ANSI colour codes from command output start with one): dropped
_NOT_XML = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    r"""Drop what XML 1.0 cannot carry.

    >>> _clean("\x1b[31mFAIL\x1b[0m ok\x07")
    'FAIL ok'
    """
    return _NOT_XML.sub("", text)


def _case(parent: ET.Element, finding: Finding) -> None:
    check = finding.check
    case = ET.SubElement(parent, "testcase", classname=_clean(f"{check.source}.{check.kind}"), name=_clean(check.test_id),
                         time=f"{check.duration_s:.3f}")
    props = ET.SubElement(case, "properties")
    for key, value in (("severity", finding.severity), ("cadence", check.cadence), ("kind", check.kind),
                       ("status", check.status), ("gate_effect", finding.effect), ("nodeid", check.nodeid)):
        ET.SubElement(props, "property", name=key, value=_clean(value))
    if check.host:
        ET.SubElement(props, "property", name="host", value=_clean(check.host))
    remedy = _clean(check.remedy)
    if remedy:
        ET.SubElement(props, "property", name="remedy", value=remedy)
    message = REDACTOR.excerpt(" ".join(_clean(check.message or finding.reason).split()), 1000)  # cut redaction-aware
    reason = _clean(finding.reason)
    if finding.effect == "block":
        tag = "error" if check.status == "error" else "failure"
        ET.SubElement(case, tag, message=message, type=f"{finding.severity} {check.status}").text = \
            reason + (f"\nremedy: {remedy}" if remedy else "")
    elif finding.effect in ("waived", "blocked", "skipped"):
        ET.SubElement(case, "skipped", message=REDACTOR.excerpt(f"{finding.effect}: {reason}", 1000))
    elif finding.effect in ("warn", "tolerated", "ignored"):
        ET.SubElement(case, "system-out").text = f"{finding.effect.upper()}: {message} ({reason})" + (
            f"\nremedy: {remedy}" if remedy else "")


def render(result: GateResult) -> str:
    root = ET.Element("testsuites", name=f"opsgate gate {result.gate}", verdict=result.verdict)
    by_source: dict[str, list[Finding]] = defaultdict(list)
    for finding in result.findings:
        by_source[finding.check.source].append(finding)
    for source in [s.source for s in result.sources] or ["gate"]:
        findings = by_source.get(source, [])
        suite = ET.SubElement(root, "testsuite", name=source, tests=str(len(findings)),
                              failures=str(sum(f.effect == "block" and f.check.status != "error" for f in findings)),
                              errors=str(sum(f.effect == "block" and f.check.status == "error" for f in findings)),
                              skipped=str(sum(f.effect in ("waived", "blocked", "skipped") for f in findings)),
                              timestamp=result.decided_at.isoformat(timespec="seconds"))
        for finding in findings:
            _case(suite, finding)
    if result.fleet:
        broken = [o for o in result.fleet if o.hosts and not o.holds]
        suite = ET.SubElement(root, "testsuite", name="fleet", tests=str(len(result.fleet)), failures=str(len(broken)),
                              errors=str(sum(not o.hosts for o in result.fleet)), skipped="0")
        for o in result.fleet:
            case = ET.SubElement(suite, "testcase", classname="opsgate.fleet", name=_clean(f"rule {o.index + 1}: {o.rule.describe()}"))
            if not o.hosts:
                ET.SubElement(case, "error", message=_clean(f"group {o.rule.group} has no host"), type="ERROR")
            elif not o.holds:
                ET.SubElement(case, "failure", message=_clean(o.summary()), type="fleet").text = \
                    REDACTOR.text(_clean("\n".join(o.broken_lines())))
            else:
                ET.SubElement(case, "system-out").text = _clean("\n".join([o.summary(), *o.broken_lines()]))
    if result.errors:
        suite = ET.SubElement(root, "testsuite", name="opsgate gate", tests="1", failures="0", errors="1", skipped="0")
        case = ET.SubElement(suite, "testcase", classname="opsgate.gate", name=f"gate {result.gate}")
        ET.SubElement(case, "error", message=_clean(result.errors[0][:1000]), type="ERROR").text = _clean("\n".join(result.errors))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
