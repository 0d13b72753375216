"""A Prometheus API that answers with the wrong shape — ``null``, a list, a missing field,
an empty target list — fails the check naming what was wrong; it never passes and never
crashes the probe. (The real server's answers are covered by test_check_prometheus.py;
these shapes come from a loopback stand-in, since a real Prometheus never sends them.)"""

from __future__ import annotations

import pytest

from opsgate.model import PrometheusCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check
from tests.support.http_target import StaticTarget

OK = {"status": "success"}


def prometheus_answering(path: str, answer):
    return StaticTarget({path: answer})


@pytest.mark.parametrize("answer, cause", [
    (None, "a JSON NoneType, expected an object"),
    ([], "a JSON list, expected an object"),
    ({**OK, "data": None}, "expected data.alerts to be a list of objects, seen null"),
    ({**OK, "data": {"alerts": None}}, "expected data.alerts to be a list of objects, seen null"),
    ({**OK, "data": {"alerts": [None]}}, "expected data.alerts to be a list of objects"),
    ({"status": "error", "errorType": "bad_data", "error": "nope"}, "bad_data: nope"),
])
def test_alerts_answer_of_the_wrong_shape_fails_naming_it(answer, cause):
    with prometheus_answering("/api/v1/alerts", answer) as target:
        result = run_check(PrometheusCheck(name="p", url=target.base, no_firing_alerts=True, timeout=3), ProbeContext())
    assert result.status == "fail", result.message
    assert cause in result.message
    assert "crashed" not in result.message


def test_alert_without_labels_still_counts_as_firing():
    answer = {**OK, "data": {"alerts": [{"state": "firing", "labels": None}]}}
    with prometheus_answering("/api/v1/alerts", answer) as target:
        result = run_check(PrometheusCheck(name="p", url=target.base, no_firing_alerts=True, timeout=3), ProbeContext())
    assert result.status == "fail", result.message
    assert "no firing alerts: observed 1" in result.message


def test_no_active_targets_is_not_every_target_up():
    answer = {**OK, "data": {"activeTargets": []}}
    with prometheus_answering("/api/v1/targets?state=active", answer) as target:
        result = run_check(PrometheusCheck(name="p", url=target.base, targets_up=True, timeout=3), ProbeContext())
    assert result.status == "fail", result.message
    assert "at least one active scrape target: observed 0" in result.message


@pytest.mark.parametrize("result_field", [None, [{"metric": None, "value": None}], [{"metric": {}, "value": [1]}]])
def test_query_result_of_the_wrong_shape_never_passes(result_field):
    answer = {**OK, "data": {"resultType": "vector", "result": result_field}}
    with prometheus_answering("/api/v1/query?query=up", answer) as target:
        result = run_check(PrometheusCheck(name="p", url=target.base, query="up", series_condition="value == 1",
                                           timeout=3), ProbeContext())
    assert result.status == "fail", result.message
    assert "crashed" not in result.message
