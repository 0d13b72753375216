"""Runbook: no firing alerts in Prometheus; up{job="api"} == 1 for every instance; every scrape target up."""


def test_prometheus(prometheus_check, verify):
    verify(prometheus_check)
