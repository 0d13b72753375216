"""Runbook: critical files exist, are fresh, sized sensibly and not world-writable."""


def test_file(file_check, verify):
    verify(file_check)
