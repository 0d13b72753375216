"""``redis`` checks against real redis-server processes the tests start.

Runbook steps protected here: "redis-cli ping", "is it the master, with its replica?",
"last BGSAVE ok and under an hour old" (the RPO), "memory below 90 % of maxmemory",
"no keys evicted", "no clients stuck in BLPOP".
"""

from __future__ import annotations

import json
import shutil
import re
import threading
import time

import pytest
import redis

from opsgate.model import RedisCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check
from tests.support.http_target import HangingTarget, free_port
from tests.support.servers import RedisServer

PASSWORD = "r3dis-Secret-77"


def check(url: str, **fields):
    fields.setdefault("name", "cache")
    fields.setdefault("timeout", 3)
    return run_check(RedisCheck(url=url, **fields), ProbeContext())


@pytest.fixture
def server(tmp_path):
    with RedisServer(tmp_path, password=PASSWORD) as r:
        yield r


def _bgsave(client: redis.Redis) -> dict:
    client.bgsave()
    deadline = time.monotonic() + 10
    while True:
        info = client.info("persistence")
        if not info["rdb_bgsave_in_progress"] or time.monotonic() > deadline:
            return info
        time.sleep(0.02)


def test_healthy_master_passes_with_evidence(server):
    _bgsave(server.client())
    result = check(server.url(), max_latency_ms=500, role="master", last_save_age_s={"warn": 1800, "critical": 3600},
                   max_evicted_keys=0, max_blocked_clients=0)
    assert result.status == "pass", result.message
    seen = result.evidence["observed"]
    assert seen["role"] == "master" and seen["rdb_last_bgsave_status"] == "ok" and seen["latency_ms"] > 0


@pytest.mark.negative("redis")
def test_stopped_server_fails_naming_connection_refused(tmp_path):
    port = free_port()
    result = check(f"redis://127.0.0.1:{port}/0")
    assert result.status == "fail"
    assert result.message == f"redis 127.0.0.1:{port}/0: connection refused (is the server running?)"


def test_wrong_password_fails_and_no_password_is_shown(server):
    result = check(server.url(password="Wr0ng-redis-pw"))
    assert result.status == "fail"
    assert result.message.endswith("authentication failed (wrong or missing password)")
    text = json.dumps(result.to_json())
    assert "Wr0ng-redis-pw" not in text and PASSWORD not in text


def test_failed_background_save_fails(tmp_path):
    with RedisServer(tmp_path, args=("--enable-protected-configs", "yes")) as server:
        _failed_save_then_check(server, tmp_path)


def _failed_save_then_check(server, tmp_path):
    client = server.client()
    client.set("order:1", "x")
    doomed = tmp_path / "doomed"
    doomed.mkdir()
    client.config_set("dir", str(doomed))
    shutil.rmtree(doomed)  # the save's temp file cannot be created: BGSAVE fails
    info = _bgsave(client)
    assert info["rdb_last_bgsave_status"] == "err"
    result = check(server.url())
    assert result.status == "fail"
    assert result.message.startswith("last background save ok: observed \"err\"")


def test_last_successful_save_too_old_fails(server):
    time.sleep(1.1)  # rdb_last_save_time has 1 s resolution; no save since start
    result = check(server.url(), last_save_age_s={"critical": 1})
    assert result.status == "fail"
    assert result.message.startswith("last_save_age_s < 1.0: observed ")


def test_near_maxmemory_and_evictions_fail(tmp_path):
    with RedisServer(tmp_path, args=("--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru")) as r:
        client = r.client()
        with client.pipeline(transaction=False) as pipe:
            for i in range(400):
                pipe.set(f"k{i}", "x" * 20000)
            pipe.execute()
        full = check(r.url(), memory_percent={"warn": 70, "critical": 90})
        evicted = check(r.url(), max_evicted_keys=0)
    assert full.status == "fail", full.message
    # at or just over maxmemory before allkeys-lru evicts: 9x.x, or 100.0 and a bit on a loaded machine
    assert re.match(r"memory_percent < 90\.0: observed (9\d|1\d\d)(\.\d+)?\b", full.message), full.message
    assert evicted.status == "fail"
    assert evicted.message.startswith("evicted_keys <= 0: observed ")


def test_memory_percent_without_maxmemory_is_named(server):
    result = check(server.url(), memory_percent=90)
    assert result.status == "fail"
    assert "maxmemory is 0 (no limit), so memory_percent cannot be judged" in result.message


def test_blocked_clients_fail(server):
    waiter = server.client()
    thread = threading.Thread(target=lambda: waiter.blpop(["jobs"], timeout=3), daemon=True)
    thread.start()
    time.sleep(0.3)
    result = check(server.url(), max_blocked_clients=0)
    server.client().rpush("jobs", "release")  # let the waiting client go
    thread.join(5)
    assert result.status == "fail"
    assert result.message.startswith("blocked_clients <= 0: observed 1")


def test_replica_role_and_master_sees_it(tmp_path, server):
    with RedisServer(tmp_path / "replica", args=("--replicaof", "127.0.0.1", str(server.port),
                                                 "--masterauth", PASSWORD)) as replica:
        deadline = time.monotonic() + 10
        while server.client().info("replication")["connected_slaves"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        on_master = check(server.url(), role="master", min_replicas=1)
        on_replica = check(replica.url(), role="replica")
        wrong = check(replica.url(), role="master")
    assert on_master.status == "pass", on_master.message
    assert on_replica.status == "pass", on_replica.message
    assert wrong.status == "fail" and wrong.message.startswith("role == 'master': observed \"replica\"")


def test_master_without_replicas_fails(server):
    result = check(server.url(), min_replicas=1)
    assert result.status == "fail"
    assert result.message.startswith("connected_replicas >= 1: observed 0")


def test_server_that_accepts_but_never_answers_fails_within_the_timeout():
    """No probe may hang: a port that accepts and then says nothing."""
    with HangingTarget() as wedged:
        started = time.monotonic()
        result = check(f"redis://127.0.0.1:{wedged.port}/0", timeout=1)
        took = time.monotonic() - started
    assert result.status == "fail"
    assert result.message == f"redis 127.0.0.1:{wedged.port}/0: no answer within 1s"
    assert took < 5


def test_aof_on_and_ok_passes_and_a_failed_rewrite_fails(tmp_path):
    with RedisServer(tmp_path, args=("--appendonly", "yes", "--enable-protected-configs", "yes")) as server:
        client = server.client()
        client.set("order:1", "x")
        ok = check(server.url())
        doomed = tmp_path / "doomed"
        doomed.mkdir()
        client.config_set("dir", str(doomed))
        shutil.rmtree(doomed)  # the rewrite's files cannot be created
        with pytest.raises(redis.ResponseError):
            client.bgrewriteaof()
        broken = check(server.url())
    assert ok.status == "pass", ok.message
    assert ok.evidence["observed"]["aof_enabled"] is True and ok.evidence["observed"]["aof_last_write_status"] == "ok"
    assert broken.status == "fail"
    assert 'AOF last rewrite ok (when AOF is on): observed "err"' in broken.message
