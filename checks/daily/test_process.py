"""Runbook: the service processes are running, in the right number, within memory and CPU."""


def test_process(process_check, verify):
    verify(process_check)
