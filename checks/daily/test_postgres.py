"""Runbook: pg_isready and SELECT 1; role, replication lag, connections, long transactions, size, custom SQL."""


def test_postgres(postgres_check, verify):
    verify(postgres_check)
