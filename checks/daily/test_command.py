"""Runbook: ./run_tests.sh passes (9/9); health_check.py --json says healthy."""


def test_command(command_check, verify):
    verify(command_check)
