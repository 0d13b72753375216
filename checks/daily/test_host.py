"""Runbook: CPU < 80 %, memory < 80 %, disk > 20 % free, load per core - warn and critical levels."""


def test_host(host_check, verify):
    verify(host_check)
