"""``redis`` checks against broken or hostile servers: a fake Redis on a free loopback port
(tests/support/scripted_tcp.py) answers each command with raw RESP chosen per test.

What must never happen: a PASS on an answer that is not a healthy Redis's (PING not PONG, an
INFO without the field a setting reads), a check held past its timeout by a server that
trickles its reply, or memory filled by one that streams an endless one.
"""

from __future__ import annotations

import threading
import time

import pytest

from opsgate.model import RedisCheck
from opsgate.probes import ProbeContext
from opsgate.probes.redis import MAX_ANSWER_BYTES
from opsgate.runner import run_check
from tests.support.scripted_tcp import RespServer, info_reply

PONG = b"+PONG\r\n"
STRICT = dict(role="master", max_evicted_keys=0, max_blocked_clients=0, memory_percent={"critical": 90},
              min_replicas=0, last_save_age_s={"critical": 3600})


def healthy_info(**changes) -> dict[str, str]:
    fields = {"role": "master", "connected_slaves": "0", "rdb_last_bgsave_status": "ok", "rdb_bgsave_in_progress": "0",
              "rdb_last_save_time": str(int(time.time())), "rdb_changes_since_last_save": "0", "aof_enabled": "0",
              "used_memory": "1000", "maxmemory": "10000", "evicted_keys": "0", "blocked_clients": "0"}
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def check_against(replies: dict, timeout: float = 1, **fields):
    """The check's result against a fake Redis answering ``replies``; run on a thread so that a
    hang fails the test instead of holding it."""
    box = {}
    with RespServer(replies) as fake:
        url = f"redis://127.0.0.1:{fake.port}/0"
        worker = threading.Thread(target=lambda: box.update(result=run_check(
            RedisCheck(name="cache", url=url, timeout=timeout, **fields), ProbeContext())), daemon=True)
        worker.start()
        worker.join(timeout + 5)
    assert "result" in box, f"the check was still running {timeout + 5:g}s after its {timeout:g}s timeout"
    return box["result"], f"redis 127.0.0.1:{fake.port}/0"


def test_the_fake_redis_passes_when_healthy():
    result, _ = check_against({"PING": PONG, "INFO": info_reply(healthy_info())}, **STRICT)
    assert result.status == "pass", result.message


@pytest.mark.parametrize("answer", [b"+NOPE\r\n", b"$-1\r\n", b":1\r\n"], ids=["other-word", "null", "integer"])
def test_ping_answered_with_anything_but_pong_fails(answer):
    result, shown = check_against({"PING": answer, "INFO": info_reply(healthy_info())})
    assert result.status == "fail"
    assert result.message == f"{shown}: answered PING with something other than PONG"


@pytest.mark.parametrize("answer, shape", [(b"$-1\r\n", "a null"), (b":5\r\n", "an integer"), (b"*0\r\n", "an array")])
def test_info_that_is_not_text_fails_naming_what_came(answer, shape):
    result, shown = check_against({"PING": PONG, "INFO": answer})
    assert result.status == "fail"
    assert result.message == f"{shown}: answered INFO with {shape}, expected its text"


@pytest.mark.parametrize("field, setting", [("evicted_keys", "max_evicted_keys"), ("blocked_clients", "max_blocked_clients"),
                                            ("used_memory", "memory_percent"), ("role", "role"),
                                            ("connected_slaves", "min_replicas")])
def test_info_without_a_field_a_setting_reads_fails_naming_it(field, setting):
    """A missing field was read as 0 (no evictions, no memory used): a PASS on nothing said."""
    result, shown = check_against({"PING": PONG, "INFO": info_reply(healthy_info(**{field: None}))}, **STRICT)
    assert result.status == "fail"
    assert result.message == f"{shown}: answered INFO without {field!r} (read by {setting})"


def test_info_field_with_an_empty_value_is_not_a_value():
    result, shown = check_against({"PING": PONG, "INFO": info_reply(healthy_info(role=""))}, role="master")
    assert result.status == "fail"
    assert result.message == f"{shown}: answered INFO without 'role' (read by role)"


def test_aof_on_without_its_statuses_fails():
    """Their limits count a missing status as ok (AOF off): with AOF on, it must be said."""
    info = info_reply(healthy_info(aof_enabled="1"))
    result, shown = check_against({"PING": PONG, "INFO": info})
    assert result.status == "fail"
    assert result.message == (f"{shown}: answered INFO without 'aof_last_write_status' (read by aof_status_ok), "
                              "'aof_last_bgrewrite_status' (read by aof_status_ok)")


def test_a_field_no_setting_reads_may_be_missing_or_odd():
    info = info_reply(healthy_info(evicted_keys="many", blocked_clients=None))
    result, _ = check_against({"PING": PONG, "INFO": info}, role="master")
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["evicted_keys"] is None


def test_a_number_that_is_not_one_fails_naming_the_field():
    result, shown = check_against({"PING": PONG, "INFO": info_reply(healthy_info(evicted_keys="many"))}, max_evicted_keys=0)
    assert result.status == "fail"
    assert result.message == f"{shown}: answered INFO field 'evicted_keys' = 'many', expected a number (read by max_evicted_keys)"


def test_a_redis_that_speaks_resp2_only_is_checked():
    """Redis < 6 (and RESP2-only proxies) refuse HELLO; redis-py's RESP3 default failed them."""
    result, _ = check_against({"HELLO": b"-ERR unknown command `HELLO`\r\n", "PING": PONG,
                               "INFO": info_reply(healthy_info())})
    assert result.status == "pass", result.message


def test_another_protocol_fails_naming_it():
    result, shown = check_against({"PING": b"HTTP/1.1 400 Bad Request\r\n\r\n"})
    assert result.status == "fail"
    assert result.message.startswith(f"{shown}: InvalidResponse: Protocol Error: b'HTTP/1.1 400 Bad Request'")


def test_an_error_answer_to_info_fails_naming_it():
    result, shown = check_against({"PING": PONG, "INFO": b"-ERR unknown command 'INFO'\r\n"})
    assert result.status == "fail"
    assert result.message == f"{shown}: ResponseError: unknown command 'INFO'"


def test_a_server_closing_mid_answer_fails():
    def half_then_close(server, conn):
        conn.sendall(info_reply(healthy_info())[:40])
        conn.close()

    result, shown = check_against({"PING": PONG, "INFO": half_then_close})
    assert result.status == "fail"
    assert result.message.startswith(f"{shown}: ConnectionError:") and "closed" in result.message


@pytest.mark.negative("redis")
def test_a_trickled_answer_is_cut_at_the_timeout():
    """Each byte well within the per-read timeout, the whole never: redis-py waited forever."""
    def trickle(server, conn):
        server.trickle(conn, info_reply(healthy_info(pad="x" * 100_000)))

    result, shown = check_against({"PING": PONG, "INFO": trickle}, timeout=1)
    assert result.status == "fail"
    assert result.message.startswith(f"{shown}: no whole answer within 1s (it came too slowly: ")


def test_an_endless_line_is_cut_at_the_timeout():
    def trickle(server, conn):
        server.trickle(conn, b"+PONG" + b"G" * 100_000, every=0.05)

    result, shown = check_against({"PING": trickle}, timeout=1)
    assert result.status == "fail" and result.message.startswith(f"{shown}: no whole answer within 1s")


def test_an_enormous_answer_is_refused_past_its_bound():
    """64 MiB of INFO was read whole into memory (and passed)."""
    def flood(server, conn):
        text = "".join(f"{k}:{v}\r\n" for k, v in healthy_info().items()).encode() + b"# " + b"x" * (64 << 20) + b"\r\n"
        conn.sendall(b"$%d\r\n%s\r\n" % (len(text), text))

    result, shown = check_against({"PING": PONG, "INFO": flood}, timeout=5)
    assert result.status == "fail"
    assert result.message == f"{shown}: answered more than {MAX_ANSWER_BYTES // (1 << 20)} MiB (a real INFO is a few KB)"
