"""Runbook: redis-cli ping; role and replicas, last save (RPO), memory, evictions, blocked clients."""


def test_redis(redis_check, verify):
    verify(redis_check)
