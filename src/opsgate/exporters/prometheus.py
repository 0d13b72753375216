"""Prometheus text format for node_exporter's textfile collector, written atomically.

Series (``environment``, ``host`` and ``cadence`` label every per-run series). On a per-check
series ``host`` is the host the check judged: a fleet host (``web1``) for a check run on it,
else the report's host (the machine the run was on, as for every check of a run without
hosts). It is never empty, so a fleet check and a check of the controlling machine sum alike,
and ``sum by (host)`` reads a fleet at a glance:

- ``opsgate_check_ok{check,kind,severity,...}`` 1 when the check passed or warned, else 0
- ``opsgate_check_status{...,status}`` 1 for the check's status (pass/warn/fail/error/blocked/skipped)
- ``opsgate_check_observed{...,value}`` every numeric value the check observed (elapsed_ms, cpu_percent ...)
- ``opsgate_check_duration_seconds{...}``
- ``opsgate_check_remedy_info{...,remedy}`` 1 for a failing or warning check that names the runbook's
  next step (an info metric, as ``node_uname_info``: only failing checks have one, so its text adds
  few series; an alert joins it with ``* on(check) group_left(remedy)`` to carry the step). The
  text is redacted like a message; it is not a label of the other series, whose identity must not
  change when a runbook is edited
- ``opsgate_report_finished_timestamp_seconds{environment,host,cadence}`` the run's end
- ``opsgate_gate_verdict{gate,verdict}`` 1 for the verdict, 0 for the other three
- ``opsgate_gate_exit_code{gate}`` and ``opsgate_gate_timestamp_seconds{gate}``
- ``opsgate_gate_fleet_rule_ok{gate,rule,group,severity}`` 1 when a ``fleet:`` rule holds, and
  ``opsgate_gate_fleet_hosts{gate,rule,group,severity,state}`` its hosts passing and broken

>>> from opsgate.gate import evaluate, load_policy, read_report
>>> text = render(evaluate([read_report("/nonexistent.json")], load_policy(None)))
>>> [l for l in text.splitlines() if l.startswith("opsgate_gate_verdict")][3]
'opsgate_gate_verdict{gate="default",verdict="ERROR"} 1.0'
"""

from __future__ import annotations

import math
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import GaugeMetricFamily

from ..gate.decide import GateResult, Verdict
from ..gate.reports import CheckRecord
from ..redact import sink
from ..results import Status

VERDICTS = tuple(Verdict)
STATUSES = tuple(Status)


class _GateCollector:
    """Yields the families straight from a GateResult (metric families, not per-series child
    objects: a 50,000-check run has hundreds of thousands of series)."""

    def __init__(self, result: GateResult):
        self.result = result

    def collect(self):
        result = self.result
        run = ["environment", "host", "cadence"]
        check = [*run, "check", "kind", "severity"]
        ok = GaugeMetricFamily("opsgate_check_ok", "1 when the check passed or warned, else 0", labels=check)
        status = GaugeMetricFamily("opsgate_check_status", "1 for the check's status", labels=[*check, "status"])
        observed = GaugeMetricFamily("opsgate_check_observed", "a numeric value the check observed", labels=[*check, "value"])
        duration = GaugeMetricFamily("opsgate_check_duration_seconds", "how long the check took", labels=check)
        remedy = GaugeMetricFamily("opsgate_check_remedy_info", "the runbook's next step for a failing or warning check",
                                   labels=[*check, "remedy"])
        finished = GaugeMetricFamily("opsgate_report_finished_timestamp_seconds", "when the run ended (unix time)", labels=run)
        # one series per label set (node_exporter refuses duplicates): when the same check of the
        # same run kind appears in several reports (a -latest and a timestamped copy), the last wins
        runs: dict[tuple, float] = {}
        for report in result.reports:
            if report.finished_at is not None:
                runs[(report.environment, report.host, report.cadence)] = report.finished_at.timestamp()
        checks: dict[tuple, CheckRecord] = {}
        for finding in result.findings:
            c = finding.check
            env, _, host = c.source.partition("@")
            checks[(env, c.host or host, c.cadence, c.name, c.kind, c.severity)] = c
        for labels, when in runs.items():
            finished.add_metric(list(labels), when)
        for labels, c in checks.items():
            labels = list(labels)
            ok.add_metric(labels, 1 if c.status in ("pass", "warn") else 0)
            status.add_metric([*labels, c.status], 1)
            duration.add_metric(labels, c.duration_s)
            if c.remedy and c.status in ("warn", "fail", "error"):
                remedy.add_metric([*labels, sink(c.remedy)], 1)
            for key, value in c.observed.items():
                if isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value)):
                    observed.add_metric([*labels, key], float(value))
        verdict = GaugeMetricFamily("opsgate_gate_verdict", "1 for the gate's verdict", labels=["gate", "verdict"])
        for name in VERDICTS:
            verdict.add_metric([result.gate, name], 1 if name == result.verdict else 0)
        exit_code = GaugeMetricFamily("opsgate_gate_exit_code", "the gate's exit code", labels=["gate"])
        exit_code.add_metric([result.gate], result.exit_code)
        decided = GaugeMetricFamily("opsgate_gate_timestamp_seconds", "when the gate decided (unix time)", labels=["gate"])
        decided.add_metric([result.gate], result.decided_at.timestamp())
        yield from (ok, status, observed, duration, remedy, finished, verdict, exit_code, decided)
        if result.fleet:
            yield from _fleet(result)


def _fleet(result: GateResult):
    labels = ["gate", "rule", "group", "severity"]
    rule_ok = GaugeMetricFamily("opsgate_gate_fleet_rule_ok", "1 when the gate's fleet rule holds", labels=labels)
    hosts = GaugeMetricFamily("opsgate_gate_fleet_hosts", "the fleet rule's hosts, passing and broken",
                              labels=[*labels, "state"])
    for o in result.fleet:
        values = [result.gate, str(o.index + 1), o.rule.group, ",".join(o.rule.severity)]
        rule_ok.add_metric(values, 1 if o.holds else 0)
        hosts.add_metric([*values, "passing"], o.passing)
        hosts.add_metric([*values, "broken"], len(o.broken))
    yield from (rule_ok, hosts)


def _registry(result: GateResult) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_GateCollector(result))
    return registry


def render(result: GateResult) -> str:
    return generate_latest(_registry(result)).decode("utf-8")


def write(result: GateResult, path: str | Path) -> None:
    """Write atomically (temp file + rename): the collector never reads half a file."""
    write_to_textfile(str(path), _registry(result))
