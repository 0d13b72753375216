"""``via: web1``: an http, metrics, prometheus or redis check's requests made from a host of the
environment, through that host's ssh connection (issue 14: these kinds connect from where
opsgate runs, optionally through a host).

How: the request still runs here, in opsgate's own client (HTTP, or redis-py), but its TCP
connections are opened on the host: ``ssh -O forward -L <socket>:<address>:<port>`` asks the
host's existing master connection (the one its checks share, see :mod:`opsgate.targets.fleet`)
for a forward from a Unix socket in a private folder of this run (mode 0700: no other user of this machine
can use it) to ``address:port`` as the host sees it - its own loopback, its own network, its
own name resolution. So every defence of the client holds unchanged (one deadline, size
limits, redirects that keep secrets at their origin, hostile-server bounds), and the URL's host
name is still what TLS verifies (SNI) and what the Host header says. A forward is made once per
(host, address, port) per run, and removed with the run's control sockets.

Why not a SOCKS proxy (``ssh -D``): it needs PySocks, and OpenSSH answers a SOCKS request with
success before it tries to connect, so it tells no more than a forward does; a forward also
serves any TCP client. Either way a connection the host cannot make is only seen as closed at
once; :meth:`Route.diagnose` then asks for the same address once more on a connection of its own
(``ssh -W``, logging on), whose refusal names the cause ("connection refused" on web1).

>>> Route.address("::1", 8080), Route.address("api.internal", 443)
('[::1]:8080', 'api.internal:443')
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time

#: transports a route can be made over (an OpenSSH master connection)
VIA_TRANSPORTS = ("ssh", "safe-ssh")
#: the kinds that accept ``via:`` (their client takes a socket opened elsewhere: opsgate's HTTP
#: client, redis-py). Not: postgres (libpq opens its own), tcp (a forward accepts before the host
#: connects, so a closed port would pass), rediss:// (redis-py puts TLS only on its own sockets)
VIA_KINDS = ("http", "metrics", "prometheus", "redis")
#: the port a URL without one means, by scheme
DEFAULT_PORTS = {"http": 80, "https": 443, "redis": 6379, "rediss": 6379}


class ViaError(OSError):
    """The host could not forward the connection; the message names the host and why."""


class Route:
    """Connections opened on host ``name`` (a testinfra ssh target of the run's fleet)."""

    def __init__(self, name: str, target, diagnose_timeout: float = 10.0) -> None:
        backend = getattr(getattr(target, "host", None), "backend", None)
        # the argv testinfra's ssh backend runs (its options: config, user, port, key, control
        # path), without the host and command; a private method, pinned by tests/test_via.py
        build = getattr(backend, "_build_ssh_command", None)
        command, args = build("") if build else ([""], [])
        if command[0] != "ssh":
            raise ViaError(f"via {name}: only a host reached with ssh (a key or an agent) can forward")
        self.name, self.target, self.diagnose_timeout = name, target, diagnose_timeout
        self._ssh = shlex.split(" ".join(command[:-1]) % tuple(shlex.quote(str(a)) for a in args[:-2]))
        self._host = backend.host.name
        self._dir: str | None = None
        self._forwards: dict[tuple[str, int], str] = {}
        self._made = 0  # forwards made: each gets a new socket path (an ended master may leave its file)
        self._lock = threading.Lock()

    @staticmethod
    def address(host: str, port: int) -> str:
        """``host:port`` as ssh's -L and -W read it (an IPv6 address in brackets)."""
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def connect(self, host: str, port: int, timeout: float) -> socket.socket:
        """A connected socket to ``host:port`` as the host sees it; ViaError when the host cannot
        forward, TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        for attempt in (1, 2):
            path = self._forward(host, port, deadline)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                sock.connect(path)
                return sock
            except (FileNotFoundError, ConnectionRefusedError):  # the master ended: its forwards with it
                sock.close()
                with self._lock:
                    if self._forwards.get((host, port)) == path:
                        del self._forwards[(host, port)]
                if attempt == 2:
                    raise ViaError(f"via {self.name}: its ssh connection ended and could not "
                                                       "forward again") from None
            except BaseException:
                sock.close()
                raise
        raise AssertionError("unreachable")

    def _forward(self, host: str, port: int, deadline: float) -> str:
        # bounded: another check setting up a forward to a host that stopped answering must not
        # hold this one past its own deadline
        if not self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.001)):
            raise TimeoutError(f"via {self.name}: another check's forward through it did not finish in time")
        try:
            path = self._forwards.get((host, port))
            if path is not None:
                return path
            if self._dir is None:  # short: a socket path is limited to ~100 bytes
                self._dir = tempfile.mkdtemp(prefix="opsgate-via-")
            self._made += 1
            path = f"{self._dir}/{self._made}"
            spec = f"{path}:{self.address(host, port)}"
            ran = self._ssh_control(["-O", "forward", "-L", spec], deadline)
            if ran.returncode != 0:  # no master (not made yet, or it ended): make it, then once more
                self.target.ping(max(deadline - time.monotonic(), 0.001))
                ran = self._ssh_control(["-O", "forward", "-L", spec], deadline)
            if ran.returncode != 0:
                raise ViaError(f"via {self.name}: ssh could not forward to {self.address(host, port)}: "
                               f"{_last_line(ran.stderr) or f'exit code {ran.returncode}'}")
            self._forwards[(host, port)] = path
            return path
        finally:
            self._lock.release()

    def _ssh_control(self, options: list[str], deadline: float) -> subprocess.CompletedProcess:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"via {self.name}: no forward within the check's timeout")
        try:
            return subprocess.run([*self._ssh, *options, self._host], capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=left, check=False)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"via {self.name}: its ssh connection did not set up a forward in time") from None

    def diagnose(self, host: str, port: int) -> str | None:
        """Why the host cannot connect to ``host:port`` ("connection refused"), asked on a
        connection of its own (a forward through the master only says it closed); None when
        that connection succeeds or says nothing clear."""
        argv = ["ssh", "-o", "LogLevel=INFO", "-o", "ControlMaster=no", "-o", "ControlPath=none", *self._ssh[1:],
                "-W", self.address(host, port), self._host]  # ssh keeps an option's first value: these win
        try:
            ran = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                 timeout=self.diagnose_timeout, check=False)
        except subprocess.TimeoutExpired:
            return None
        for line in ran.stderr.splitlines():
            if "open failed:" in line:
                reason = line.split("open failed:", 1)[1].strip().removeprefix("connect failed:").strip()
                return f"{self.name} cannot connect to {self.address(host, port)}: {reason[:200]}"
        return None

    def close(self) -> None:
        """Forget the forwards (they end with the master connection) and remove their sockets."""
        with self._lock:
            self._forwards.clear()
            folder, self._dir = self._dir, None
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def route_for(ctx, name: str) -> Route:
    """The route through host ``name`` of the run's fleet (LookupError when the run has no such
    host, ViaError when it cannot forward)."""
    if ctx.fleet is None:
        raise LookupError(f"via {name}: no hosts in this run (the environment's hosts: section names them)")
    return ctx.fleet.route(name)


def route_of(item, ctx) -> Route | None:
    """The route of an item with ``via:`` (None without one); ViaError naming the host when it
    cannot be made (no such host in the run, testinfra missing, not an ssh host).

    >>> from opsgate.probes import ProbeContext
    >>> from opsgate.probes.http import HttpCheck
    >>> route_of(HttpCheck(name="a", url="http://x/"), ProbeContext()) is None
    True
    >>> route_of(HttpCheck(name="a", url="http://x/", via="web1"), ProbeContext())
    Traceback (most recent call last):
    opsgate.via.ViaError: via web1: no hosts in this run (the environment's hosts: section names them)
    """
    if item.via is None:
        return None
    try:
        return route_for(ctx, item.via)
    except ViaError:
        raise
    except (LookupError, ImportError, OSError, ValueError) as exc:
        text = str(exc) if str(exc).startswith("via ") else f"via {item.via}: cannot make its connection: {exc}"
        raise ViaError(text) from None


def redis_connection(route: Route):
    """A redis-py connection class whose sockets are opened through ``route`` (plain redis://:
    redis-py cannot put TLS on a socket it did not make, so rediss:// is refused by the probe)."""
    import redis

    class RoutedConnection(redis.Connection):
        def _connect(self):
            sock = route.connect(self.host, self.port, self.socket_connect_timeout or 10.0)
            sock.settimeout(self.socket_timeout)
            return sock

        def _host_error(self):
            return f"{self.host}:{self.port} via {route.name}"

    return RoutedConnection


def evidence(item) -> dict[str, str]:
    """What a check's values say of its route: ``{"via": "web1"}``, or nothing without one."""
    return {"via": item.via} if item.via is not None else {}


def cause(route: Route | None, url: str, failure: str = "") -> str:
    """What to add to a ``failure`` through ``route``: why the host cannot connect to the URL's
    address, when it cannot ("; web1 cannot connect to 127.0.0.1:8080: Connection refused").
    Not asked after a stall: a host that stopped answering would only hold the check longer.

    >>> cause(None, "http://x/", "connection refused")
    ''
    """
    if route is None or "(stalled " in failure:
        return ""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
    except ValueError:
        return ""
    found = route.diagnose(parts.hostname or "", port)
    return f"; {found}" if found else ""
