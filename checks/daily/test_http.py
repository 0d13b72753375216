"""Runbook: curl each HTTP endpoint - status, latency, JSON body conditions, certificate expiry."""


def test_http(http_check, verify):
    verify(http_check)
