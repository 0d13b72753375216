"""Runbook: docker-compose ps shows every service up and healthy; no crash loops; pg_isready inside; no errors in the logs."""


def test_container(container_check, verify):
    verify(container_check)
