"""``redis``: PING, role and replicas, persistence, memory, evictions and blocked clients.

Observed (``values``): ``latency_ms`` (PING), ``role`` (master/replica),
``connected_replicas``, ``rdb_last_bgsave_status``, ``rdb_bgsave_in_progress``,
``last_save_age_s`` (seconds since the last *successful* save: the data a crash would
lose, an RPO signal), ``aof_enabled`` with ``aof_last_write_status`` and
``aof_last_bgrewrite_status``, ``used_memory``, ``maxmemory``, ``memory_percent``,
``evicted_keys``, ``blocked_clients``. ``expect``/``warn`` read these values.

Checks on the same URL share one client for the run. All the replies of one check together
are bounded by the item's timeout and by ``MAX_ANSWER_BYTES`` (a server that trickles or
streams an endless reply is cut), and INFO is read as text: a field a setting needs that
the server did not send, or sent as something other than a number, fails the check naming
it. The password is registered with the redactor when the environment loads.

>>> from opsgate.probes import ProbeContext
>>> observe(RedisCheck(name="cache", url="redis://127.0.0.1:1/0", timeout=1), ProbeContext()).error
'redis 127.0.0.1:1/0: connection refused (is the server running?)'
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, ClassVar, Iterator, Literal

from pydantic import Field

from ..conditions import Condition
from ..kinds import Kind
from ..redact import REDACTOR
from ..results import Observation
from ..schema import CheckItem, Limit
from . import target_name


class RedisCheck(CheckItem):
    """Redis: PING latency, role and replicas, persistence (last save ok and its age as an RPO
    signal, AOF status), memory use against maxmemory, evictions, blocked clients."""

    kind: ClassVar[str] = "redis"
    url: str = Field(pattern=r"^rediss?://", description="redis://[:password@]host:port/db (password redacted)")
    max_latency_ms: float | None = Field(None, description="PING round trip")
    role: Literal["master", "replica"] | None = None
    min_replicas: int | None = Field(None, ge=0, description="master: connected replicas")
    rdb_status_ok: bool = Field(True, description="rdb_last_bgsave_status must be ok")
    last_save_age_s: Limit | None = Field(None, description="seconds since the last successful save (RPO)")
    aof_status_ok: bool = Field(True, description="when AOF is on: last write and rewrite must be ok")
    memory_percent: Limit | None = Field(None, description="used_memory as % of maxmemory (needs maxmemory set)")
    max_evicted_keys: int | None = Field(None, ge=0)
    max_blocked_clients: int | None = Field(None, ge=0)


#: all the replies of one check together: a real INFO is a few KB; more is a target flooding us
MAX_ANSWER_BYTES = 4 * 1024 * 1024

_local = threading.local()  # the reply budget of the check this thread is running


class _Budget:
    """What the replies of the running check may still take: time until its deadline, and bytes."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.received = 0
        self.pending = 0  # bytes of the answer to the last command sent
        self.cause: str | None = None  # why a read was cut, for the message


@contextmanager
def _bounded_replies(timeout: float) -> Iterator[_Budget]:
    """Reads of this thread's redis connections, within the block, share one budget."""
    _local.budget = budget = _Budget(timeout)
    try:
        yield budget
    finally:
        _local.budget = None


class _BoundedSocket:
    """A connection's socket whose reads stop at the running check's deadline and byte budget.
    redis-py's socket_timeout is per read: a server trickling a byte at a time held a check
    forever, and one streaming an endless bulk string filled memory with it."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._timeout = sock.gettimeout()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def settimeout(self, value: float | None) -> None:
        self._timeout = value
        self._sock.settimeout(value)

    def sendall(self, data: bytes, *flags: int) -> None:
        budget = getattr(_local, "budget", None)
        if budget is not None:
            budget.pending = 0
        self._sock.sendall(data, *flags)

    def recv(self, size: int, *flags: int) -> bytes:
        import redis

        budget = getattr(_local, "budget", None)
        if budget is None:
            return self._sock.recv(size, *flags)
        left = budget.deadline - time.monotonic()
        try:
            if left <= 0:
                raise socket.timeout("timed out")
            self._sock.settimeout(left if self._timeout is None else min(self._timeout, left))
            data = self._sock.recv(min(size, MAX_ANSWER_BYTES - budget.received + 1), *flags)
        except socket.timeout:
            if budget.pending:  # not silence: a trickle, each byte in time, the whole never
                budget.cause = (f"no whole answer within {budget.timeout:g}s (it came too slowly: "
                                f"{budget.pending} bytes of it by then)")
            raise
        finally:
            self._sock.settimeout(self._timeout)
        budget.received += len(data)
        budget.pending += len(data)
        if budget.received > MAX_ANSWER_BYTES:
            budget.cause = f"answered more than {MAX_ANSWER_BYTES // (1024 * 1024)} MiB (a real INFO is a few KB)"
            raise redis.ConnectionError(budget.cause)
        return data


def _bounded(base: type) -> type:
    """``base`` (a redis-py connection class) with its sockets read through ``_BoundedSocket``."""

    class BoundedConnection(base):
        def _connect(self):
            return _BoundedSocket(super()._connect())

    return BoundedConnection


class _BadAnswer(Exception):
    """The server answered, but not what a Redis says; the message names what was wrong."""


def _cause(exc: Exception, item: RedisCheck, budget: _Budget | None = None) -> str:
    import redis

    if budget is not None and budget.cause:
        return budget.cause
    text = " ".join(str(exc).split())
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return "authentication failed (wrong or missing password)"
    if isinstance(exc, redis.TimeoutError):
        return f"no answer within {item.timeout:g}s"
    if "Connection refused" in text or "ECONNREFUSED" in text or "Error 111" in text:
        return "connection refused (is the server running?)"
    return f"{type(exc).__name__}: {REDACTOR.excerpt(text, 200)}"


def _client(item: RedisCheck, route=None) -> redis.Redis:
    import redis  # paid by runs that check Redis

    if route is not None:  # via: web1 - its connections opened on that host
        from ..via import redis_connection

        base = redis_connection(route)
    else:
        base = redis.SSLConnection if item.url.startswith("rediss:") else redis.Connection
    # protocol=2: RESP2 is what every Redis speaks; redis-py's default RESP3 opens with HELLO,
    # which Redis < 6 and RESP2-only proxies refuse, failing a healthy server
    client = redis.Redis.from_url(item.url, socket_timeout=item.timeout, socket_connect_timeout=item.timeout,
                                  retry_on_timeout=False, client_name="opsgate", protocol=2,
                                  connection_class=_bounded(base))
    client.set_response_callback("INFO", lambda response, **options: response)  # parsed by _info_fields
    return client


def _info_fields(answer: Any) -> dict[str, str]:
    """INFO's ``key:value`` lines as text; anything but a bulk string is not an INFO.

    >>> _info_fields(b"# Server\\r\\nrole:master\\r\\nevicted_keys:0\\r\\n")
    {'role': 'master', 'evicted_keys': '0'}
    """
    if not isinstance(answer, (bytes, str)):
        shape = {type(None): "a null", int: "an integer", list: "an array"}.get(type(answer), type(answer).__name__)
        raise _BadAnswer(f"answered INFO with {shape}, expected its text")
    text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else answer
    fields = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and not line.startswith("#"):
            fields[key.strip()] = value.strip()
    return fields


def _needed(item: RedisCheck, fields: dict[str, str]) -> dict[str, str]:
    """The INFO fields the item's settings read, each with the setting that reads it."""
    needs = {"role": item.role is not None and "role", "connected_slaves": item.min_replicas is not None and "min_replicas",
             "rdb_last_bgsave_status": item.rdb_status_ok and "rdb_status_ok",
             "rdb_last_save_time": bool(item.last_save_age_s) and "last_save_age_s",
             "used_memory": bool(item.memory_percent) and "memory_percent",
             "maxmemory": bool(item.memory_percent) and "memory_percent",
             "evicted_keys": item.max_evicted_keys is not None and "max_evicted_keys",
             "blocked_clients": item.max_blocked_clients is not None and "max_blocked_clients"}
    if item.aof_status_ok and fields.get("aof_enabled") not in (None, "", "0"):
        needs.update(aof_last_write_status="aof_status_ok", aof_last_bgrewrite_status="aof_status_ok")
    return {key: setting for key, setting in needs.items() if setting}


def _number(fields: dict[str, str], key: str, needed: dict[str, str]) -> int | None:
    """An INFO field as a whole number; None when absent, empty or, for a field no setting reads,
    not a number (only evidence then).

    >>> _number({"evicted_keys": "many"}, "evicted_keys", {"evicted_keys": "max_evicted_keys"})
    Traceback (most recent call last):
    opsgate.probes.redis._BadAnswer: answered INFO field 'evicted_keys' = 'many', expected a number (read by max_evicted_keys)
    """
    text = fields.get(key) or None
    if text is None:
        return None
    try:
        return int(float(text)) if "." in text else int(text)
    except ValueError:
        if key not in needed:
            return None
        raise _BadAnswer(f"answered INFO field {key!r} = {REDACTOR.excerpt(text, 60)!r}, expected a number "
                         f"(read by {needed[key]})") from None


def observe(item: RedisCheck, ctx) -> Observation:
    import redis

    from .. import via

    shown = target_name("redis", item.url, 6379, "/0")
    values: dict[str, Any] = {"target": shown, **via.evidence(item)}
    route = None
    try:
        route = via.route_of(item, ctx)
        if route is not None and item.url.startswith("rediss:"):
            raise via.ViaError(f"via {item.via}: rediss:// (TLS) cannot go through a host yet; use redis:// or "
                               "no via:")
    except via.ViaError as exc:
        return Observation(values, error=f"{shown}: {exc}")
    shown += f" via {item.via}" if route is not None else ""
    budget = None
    try:
        # keyed by the route too: a client through web1 and one from here never share connections
        with ctx.shared.use(("redis", item.url, item.via), lambda: _client(item, route), item.timeout) as client, \
                _bounded_replies(item.timeout) as budget:
            started = time.perf_counter()
            pong = client.ping()
            values["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
            if pong is not True:  # redis-py says False for anything but PONG: not a Redis that is up
                raise _BadAnswer("answered PING with something other than PONG")
            fields = _info_fields(client.info())
        needed = _needed(item, fields)
        missing = {key: setting for key, setting in needed.items() if not fields.get(key)}
        if missing:  # a default of 0 or "ok" for them would pass a check on what was never said
            raise _BadAnswer("answered INFO without " + ", ".join(f"{key!r} (read by {setting})"
                                                                  for key, setting in missing.items()))

        def number(key: str) -> int | None:
            return _number(fields, key, needed)

        save_time = number("rdb_last_save_time")
        used, maxmemory = number("used_memory"), number("maxmemory") or 0
        values.update(
            role="replica" if fields.get("role") == "slave" else fields.get("role"),
            connected_replicas=number("connected_slaves"),
            rdb_last_bgsave_status=fields.get("rdb_last_bgsave_status"),
            rdb_bgsave_in_progress=number("rdb_bgsave_in_progress"),
            last_save_age_s=round(time.time() - save_time, 1) if save_time is not None else None,
            changes_since_last_save=number("rdb_changes_since_last_save"),
            aof_enabled=fields.get("aof_enabled") not in (None, "", "0"),
            used_memory=used,
            maxmemory=maxmemory,
            memory_percent=round(100 * used / maxmemory, 2) if maxmemory and used is not None else None,
            evicted_keys=number("evicted_keys"),
            blocked_clients=number("blocked_clients"),
        )
    except _BadAnswer as exc:
        return Observation(values, error=f"{shown}: {exc}")
    except (redis.RedisError, OSError, TimeoutError) as exc:
        return Observation(values, error=f"{shown}: {_cause(exc, item, budget)}{via.cause(route, item.url, str(exc))}")
    if values["aof_enabled"]:
        values["aof_last_write_status"] = fields.get("aof_last_write_status")
        values["aof_last_bgrewrite_status"] = fields.get("aof_last_bgrewrite_status")
    if item.memory_percent and not maxmemory:
        return Observation(values, error=f"{shown}: maxmemory is 0 (no limit), so memory_percent cannot be judged; "
                                         "set maxmemory or drop memory_percent")
    return Observation(values)


def limits(item: RedisCheck) -> list[Condition]:
    out = []
    if item.max_latency_ms is not None:
        out.append(Condition.compare("latency_ms", "<=", item.max_latency_ms, label=f"PING latency_ms <= {item.max_latency_ms:g}"))
    if item.role:
        out.append(Condition.compare("role", "==", item.role))
    if item.min_replicas is not None:
        out.append(Condition.compare("connected_replicas", ">=", item.min_replicas))
    if item.rdb_status_ok:
        out.append(Condition.compare("rdb_last_bgsave_status", "==", "ok", label="last background save ok"))
    if item.last_save_age_s:
        out += item.last_save_age_s.conditions("last_save_age_s")
    if item.aof_status_ok:
        out.append(Condition.compare("aof_last_write_status", "==", "ok", default="ok", label="AOF last write ok (when AOF is on)"))
        out.append(Condition.compare("aof_last_bgrewrite_status", "==", "ok", default="ok", label="AOF last rewrite ok (when AOF is on)"))
    if item.memory_percent:
        out += item.memory_percent.conditions("memory_percent")
    if item.max_evicted_keys is not None:
        out.append(Condition.compare("evicted_keys", "<=", item.max_evicted_keys))
    if item.max_blocked_clients is not None:
        out.append(Condition.compare("blocked_clients", "<=", item.max_blocked_clients))
    return out


KIND = Kind(name="redis", schema=RedisCheck, observe=observe, limits=limits,
            summary="Redis: PING latency, role and replicas, persistence (last save, AOF), memory use, evictions, blocked clients",
            secret_fields=("url",), host_level=False)
