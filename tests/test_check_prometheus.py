"""``prometheus`` and ``metrics`` checks against a real Prometheus server (Debian's package)
with two firing rules and one that never fires, scraping itself, an api target and a
batch target that is down; and against a plain /metrics exposition.

Runbook steps protected here: "GET :10200/api/v1/alerts has no firing alerts", "up{job="api"}
is 1", "every scrape target is up", "http_request_duration_seconds from /metrics/prometheus
is under 1.0".
"""

from __future__ import annotations

import pytest

from opsgate.model import MetricsCheck, PrometheusCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check
from tests.support.http_target import HttpTarget
from tests.support.servers import MetricsTarget, PrometheusServer

EXPOSITION = """# HELP http_request_duration_seconds Request latency.
# TYPE http_request_duration_seconds gauge
http_request_duration_seconds{route="/health"} 0.012
http_request_duration_seconds{route="/api/chat"} 1.7
# HELP http_requests Requests served.
# TYPE http_requests counter
http_requests_total{route="/health"} 1027
"""


@pytest.fixture(scope="module")
def api():
    with MetricsTarget(EXPOSITION) as target:
        yield target


@pytest.fixture(scope="module")
def prom(api, tmp_path_factory):
    with PrometheusServer(tmp_path_factory.mktemp("prom"), api.port) as server:
        yield server


def check(kind, **fields):
    fields.setdefault("name", "p")
    fields.setdefault("timeout", 5)
    return run_check(kind(**fields), ProbeContext())


@pytest.mark.negative("prometheus")
def test_firing_alert_fails_naming_it(prom):
    result = check(PrometheusCheck, url=prom.url, no_firing_alerts=True)
    assert result.status == "fail"
    assert result.message == "no firing alerts: observed 2 -- firing: DiskAlmostFull(critical), CertificateRenewalDue(warning)" \
        or result.message == "no firing alerts: observed 2 -- firing: CertificateRenewalDue(warning), DiskAlmostFull(critical)"
    assert "NeverFires" not in result.message


def test_alerts_only_at_given_severities_and_allow_list(prom):
    paging = check(PrometheusCheck, url=prom.url, alert_severities=["page"])
    assert paging.status == "pass", paging.message
    allowed = check(PrometheusCheck, url=prom.url, no_firing_alerts=True, allow_alerts=["DiskAlmostFull", "CertificateRenewalDue"])
    assert allowed.status == "pass", allowed.message
    assert allowed.evidence["observed"]["firing_total"] == 2
    critical = check(PrometheusCheck, url=prom.url, alert_severities=["critical"])
    assert critical.status == "fail" and "DiskAlmostFull" in critical.message and "CertificateRenewalDue" not in critical.message


def test_every_series_of_a_query_meets_its_condition(prom):
    result = check(PrometheusCheck, url=prom.url, query='up{job="api"}', series_condition="value == 1")
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["series"] == 1


def test_a_series_breaking_the_condition_fails_naming_its_labels(prom):
    result = check(PrometheusCheck, url=prom.url, query="up", series_condition="value == 1")
    assert result.status == "fail"
    assert result.message.startswith("every series of up: value == 1: observed 1 -- breaking: ")
    assert 'breaking: up{instance="127.0.0.1:' in result.message and 'job="batch"} = 0' in result.message


def test_a_query_with_no_series_fails(prom):
    result = check(PrometheusCheck, url=prom.url, query='up{job="nonexistent"}', series_condition="value == 1")
    assert result.status == "fail"
    assert result.message == 'query up{job="nonexistent"} returns >= 1 series: observed 0'


def test_a_bad_query_fails_naming_the_parse_error(prom):
    result = check(PrometheusCheck, url=prom.url, query="up{", series_condition="value == 1")
    assert result.status == "fail"
    assert "bad_data" in result.message


def test_scrape_target_down_fails_naming_it(prom):
    result = check(PrometheusCheck, url=prom.url, targets_up=True)
    assert result.status == "fail"
    assert result.message.startswith("every scrape target up: observed 1 -- down: batch/127.0.0.1:")
    assert "batch/127.0.0.1:" in result.message and "connection refused" in result.message
    healthy = check(PrometheusCheck, url=prom.url, targets_up=True, jobs=["prometheus", "api"])
    assert healthy.status == "pass", healthy.message


def test_not_prometheus_is_named():
    with HttpTarget() as other:
        result = check(PrometheusCheck, url=other.url, targets_up=True)
    assert result.status == "fail"
    assert result.message.endswith("/api/v1/targets: HTTP 404, error: not found")


def test_metric_under_its_limit_passes(api):
    result = check(MetricsCheck, url=api.url, metric="http_request_duration_seconds", labels={"route": "/health"},
                   max_value={"warn": 0.5, "critical": 1.0})
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["max"] == 0.012


@pytest.mark.negative("metrics")
def test_metric_over_its_limit_fails_naming_the_sample(api):
    result = check(MetricsCheck, url=api.url, metric="http_request_duration_seconds", max_value=1.0)
    assert result.status == "fail"
    assert result.message.startswith("max < 1.0: observed 1.7")
    assert 'http_request_duration_seconds{route="/api/chat"}=1.7' in result.message


def test_counter_by_family_name_and_conditions_on_samples(api):
    result = check(MetricsCheck, url=api.url, metric="http_requests", expect=["sum > 1000"])
    assert result.status == "pass", result.message


def test_missing_metric_fails_listing_what_is_there(api):
    result = check(MetricsCheck, url=api.url, metric="http_request_duration_secs")
    assert result.status == "fail"
    assert "no sample named 'http_request_duration_secs'" in result.message
    assert "http_request_duration_seconds" in result.message


def test_not_an_exposition_fails():
    with HttpTarget() as other:
        result = check(MetricsCheck, url=other.url + "/status/503", metric="up")
    assert result.status == "fail"
    assert "HTTP 503, expected 200 with a metrics exposition" in result.message
