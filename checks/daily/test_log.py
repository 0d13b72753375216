"""Runbook: no ERROR or CRITICAL in the last 100 lines (or last minutes) of each log."""


def test_log(log_check, verify):
    verify(log_check)
