"""Runbook: each port accepts connections, and the right process owns it."""


def test_tcp(tcp_check, verify):
    verify(tcp_check)
