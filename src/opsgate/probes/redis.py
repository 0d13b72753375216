"""``redis``: PING, role and replicas, persistence, memory, evictions and blocked clients.

Observed (``values``): ``latency_ms`` (PING), ``role`` (master/replica),
``connected_replicas``, ``rdb_last_bgsave_status``, ``rdb_bgsave_in_progress``,
``last_save_age_s`` (seconds since the last *successful* save: the data a crash would
lose, an RPO signal), ``aof_enabled`` with ``aof_last_write_status`` and
``aof_last_bgrewrite_status``, ``used_memory``, ``maxmemory``, ``memory_percent``,
``evicted_keys``, ``blocked_clients``. ``expect``/``warn`` read these values.

Checks on the same URL share one client for the run; every call is bounded by the item's
timeout. The password is registered with the redactor when the environment loads.

>>> from opsgate.probes import ProbeContext
>>> observe(RedisCheck(name="cache", url="redis://127.0.0.1:1/0", timeout=1), ProbeContext()).error
'redis 127.0.0.1:1/0: connection refused (is the server running?)'
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

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


def _cause(exc: Exception, item: RedisCheck) -> str:
    import redis

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

    routed = {}
    if route is not None:  # via: web1 - its connections opened on that host
        from ..via import redis_connection

        routed = {"connection_class": redis_connection(route)}
    return redis.Redis.from_url(item.url, socket_timeout=item.timeout, socket_connect_timeout=item.timeout,
                                retry_on_timeout=False, client_name="opsgate", **routed)


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
    try:
        # keyed by the route too: a client through web1 and one from here never share connections
        with ctx.shared.use(("redis", item.url, item.via), lambda: _client(item, route), item.timeout) as client:
            started = time.perf_counter()
            client.ping()
            values["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
            info = client.info()
    except (redis.RedisError, OSError, TimeoutError) as exc:
        return Observation(values, error=f"{shown}: {_cause(exc, item)}{via.cause(route, item.url, str(exc))}")
    maxmemory = int(info.get("maxmemory", 0))
    values.update(
        role="replica" if info.get("role") == "slave" else str(info.get("role")),
        connected_replicas=int(info.get("connected_slaves", 0)),
        rdb_last_bgsave_status=str(info.get("rdb_last_bgsave_status")),
        rdb_bgsave_in_progress=int(info.get("rdb_bgsave_in_progress", 0)),
        last_save_age_s=round(time.time() - int(info.get("rdb_last_save_time", 0)), 1),
        changes_since_last_save=int(info.get("rdb_changes_since_last_save", 0)),
        aof_enabled=bool(info.get("aof_enabled")),
        used_memory=int(info.get("used_memory", 0)),
        maxmemory=maxmemory,
        memory_percent=round(100 * int(info.get("used_memory", 0)) / maxmemory, 2) if maxmemory else None,
        evicted_keys=int(info.get("evicted_keys", 0)),
        blocked_clients=int(info.get("blocked_clients", 0)),
    )
    if values["aof_enabled"]:
        values["aof_last_write_status"] = str(info.get("aof_last_write_status"))
        values["aof_last_bgrewrite_status"] = str(info.get("aof_last_bgrewrite_status"))
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
