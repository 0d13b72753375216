"""Runbook: read /metrics and hold a metric to its limit (http_request_duration_seconds < 1.0)."""


def test_metrics(metrics_check, verify):
    verify(metrics_check)
