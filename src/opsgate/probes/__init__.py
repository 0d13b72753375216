"""Probes observe; one module per check kind (its schema, ``observe(item, ctx)``, ``limits(item)``
and its ``KIND``, registered in :mod:`opsgate.kinds`).

``observe`` returns an Observation and never hangs: every probe is bounded by the
item's ``timeout``. ``limits`` turns the item's built-in settings (status, latency,
counts, levels) into conditions held against ``Observation.values``.

>>> from opsgate.probes.file import FileCheck
>>> observe(FileCheck(name="h", path="/etc/hostname"), ProbeContext()).values["exists"]
True
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from ..conditions import Condition
from ..schema import CheckItem
from ..results import Observation
from ..targets import Target, local as local_target


#: how long a check may wait, beyond its own timeout, for its turn on an exclusive connection
#: (queueing behind other checks of a slow target is not the target failing)
QUEUE_WAIT_S = 30.0


class QueueTimeout(TimeoutError):
    """A check waited too long for its turn on a shared connection."""


class Shared:
    """Connections the checks of one run share: one per target (a DSN, a URL), reopened when
    broken, closed when the run ends. ``exclusive`` connections (a database session whose
    settings a check changes) serve one check at a time; the others (thread-safe clients
    with their own pools) serve all at once.

    >>> shared = Shared()
    >>> with shared.use("k", lambda: ["conn"], timeout=1) as c1, shared.use("j", lambda: ["other"], timeout=1) as c2:
    ...     c1, c2
    (['conn'], ['other'])
    >>> with shared.use("k", lambda: ["new"], timeout=1) as again:
    ...     again
    ['conn']
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[Any, list] = {}  # key -> [lock, connection or None]

    @contextmanager
    def use(self, key: Any, connect: Callable[[], Any], timeout: float,
            alive: Callable[[Any], bool] = lambda c: True, exclusive: bool = False) -> Iterator[Any]:
        """The connection for ``key``, opened with ``connect`` if needed (bounded by ``timeout``
        by the caller's connect); exclusive ones are held for the whole ``with`` block."""
        with self._lock:
            slot = self._slots.setdefault(key, [threading.Lock(), None])
        wait = timeout + QUEUE_WAIT_S
        if not slot[0].acquire(timeout=wait):
            raise QueueTimeout(f"waited {wait:g}s for its turn on the connection other checks of this target "
                               "were using (the target answers slowly)")
        held = True
        try:
            if slot[1] is not None and not alive(slot[1]):
                _close(slot[1])
                slot[1] = None
            if slot[1] is None:
                slot[1] = connect()
            conn = slot[1]
            if not exclusive:
                slot[0].release()
                held = False
            try:
                yield conn
            except BaseException:
                if held and not alive(conn):  # broken mid-check: the next check reconnects
                    _close(conn)
                    slot[1] = None
                raise
        finally:
            if held:
                slot[0].release()

    def close(self) -> None:
        with self._lock:
            slots, self._slots = self._slots, {}
        for _, conn in slots.values():
            if conn is not None:
                _close(conn)


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # closing a broken connection may fail; it is being dropped anyway
        pass


@dataclass(frozen=True)
class ProbeContext:
    """What probes need besides their item: where relative paths start, the run's shared
    connections, the machine host-level probes read (``opsgate.targets``; this one by default)
    and the environment being checked (a drill restores one of its ``backup`` items)."""

    base_dir: Path = field(default_factory=Path.cwd)
    shared: Shared = field(default_factory=Shared, compare=False, repr=False)
    target: Target = field(default_factory=local_target, compare=False, repr=False)
    environment: Any = field(default=None, compare=False, repr=False)
    #: the run's hosts (``opsgate.targets.fleet.Fleet``) when the environment names any
    fleet: Any = field(default=None, compare=False, repr=False)
    host: str | None = None  # the host ``target`` reads, by its name in the environment; None: this machine

    def for_host(self, name: str) -> "ProbeContext":
        """This context for the checks of host ``name``: the same base_dir, shared connections
        and environment, that host's target (one per host per run, made on first use).

        >>> from opsgate.hosts import HostEntry
        >>> from opsgate.targets.fleet import Fleet
        >>> ctx = ProbeContext(fleet=Fleet({"here": HostEntry(url="local://")}, None))
        >>> ctx.for_host("here").host, ctx.for_host("here").target is ctx.for_host("here").target
        ('here', True)
        """
        if self.fleet is None:
            raise LookupError(f"no hosts in this run: cannot check host {name!r}")
        return replace(self, target=self.fleet.target(name), host=name)

    def describe(self) -> dict[str, str]:
        """How messages name this context's host connection (no credentials)."""
        if self.fleet is None or self.host is None:
            return {"transport": "local", "address": "this machine"}
        return self.fleet.describe(self.host)

    @property
    def remote(self) -> bool:
        """Whether this context reads another machine (a fleet host not reached as ``local://``)."""
        return self.host is not None and self.fleet is not None and self.fleet.describe(self.host)["transport"] != "local"

    def path(self, value: str) -> Path:
        """Resolve ``value`` against the environment's base_dir (``~`` expanded). On a remote host
        a path must be absolute: this machine's folder and home mean nothing there.

        >>> ProbeContext(Path("/srv/ops")).path("logs/app.log")
        PosixPath('/srv/ops/logs/app.log')
        """
        if self.remote and not value.startswith("/"):
            raise RemotePathError(f"path {value!r} is not absolute: on host {self.host} a path must be absolute "
                                  "(a relative path or ~ would be this machine's folder or home, not the host's)")
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


class RemotePathError(ValueError):
    """A relative (or ``~``) path given to a check on a remote host."""


def target_name(label: str, url: str, default_port: int, default_path: str = "") -> str:
    """How messages name a server: ``label host:port/path``, never its credentials.

    >>> target_name("postgres", "postgresql://app:secret@db.internal:5433/shop", 5432)
    'postgres db.internal:5433/shop'
    >>> target_name("redis", "redis://:hunter2@cache", 6379, "/0")
    'redis cache:6379/0'
    """
    parts = urlsplit(url)
    path = parts.path if parts.path not in ("", "/") else default_path
    return f"{label} {parts.hostname or 'localhost'}:{parts.port or default_port}{path}"


def observe(item: CheckItem, ctx: ProbeContext) -> Observation:
    """Run the probe for ``item``'s kind."""
    from .. import kinds  # the registry imports the kind modules, which import this package

    host = item.on_host
    if host is not None and ctx.host != host:  # a check@host copy: that host's target
        try:
            ctx = ctx.for_host(host)
        except (LookupError, ImportError, OSError, ValueError) as exc:  # no such host, a transport not installed
            return Observation(error=f"{host}: cannot make its connection: {exc}")
    try:
        return kinds.get(item.kind).observe(item, ctx)
    except RemotePathError as exc:
        return Observation(error=str(exc))


def limits(item: CheckItem) -> list[Condition]:
    """The built-in conditions for ``item``'s kind."""
    from .. import kinds

    return kinds.get(item.kind).limits(item)
