"""An HTTP(S) client for probes (the ``http``, ``prometheus`` and ``metrics`` kinds): one exchange
in bounded time and memory, redirects that never carry a secret to another origin.

One deadline, the caller's ``timeout``, covers the whole exchange: connecting, sending,
the response headers, the body and every redirect hop. A socket timeout alone cannot
give that (it restarts with every byte, so a server trickling one byte a second would
hold a 2 s check for minutes): a watchdog shuts the exchange's sockets down when the
deadline passes, and the failure names the phase that stalled.

Redirects are followed here, hop by hop, so that a hop to another origin (scheme, host
or port) never carries a header with a secret (Authorization, Cookie, any header marked
``secret: true``, named like a key/token/secret, or holding a registered secret value).

The body is read up to ``max_bytes`` of DECODED bytes (a gzip bomb stops at the limit,
never inflated whole); it must decode in its declared charset and, for conditions, parse
as JSON of bounded depth. For https the days left on the server's certificate are
observed from the same connection; when verification fails they are still measured.

Importing it costs requests and urllib3, so the kind modules import it when they probe.
"""

from __future__ import annotations

import codecs
import heapq
import http.client
import ipaddress
import os
import re
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .jsondoc import TooDeep, loads_bounded
from .redact import REDACTOR


# tls_verify: false is the user's explicit choice; the per-request warning would only add noise
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

REDIRECT_CODES = (301, 302, 303, 307, 308)
# looked up before asking urllib for proxies: scanning the whole environment costs more than
# the rest of a failed probe, and a thousand probes start at once
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
#: deeper JSON than this is refused: no health document needs it, and deeper values break
#: recursive consumers further down (conditions, evidence, the report's serialiser)
MAX_JSON_DEPTH = 128
#: header names whose value is a credential whatever the words in them
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_SECRET_HEADER_WORD = re.compile(r"key|token|secret|auth|session|password|passwd|credential", re.IGNORECASE)
# codecs that are no charset a server can mean, and decode in quadratic time
_REFUSED_CODECS = frozenset({"punycode", "idna"})
_PHASES = {"resolve": ("host name not resolved", "resolving the host name"),
           "connect": ("no connection", "connecting: connect timed out"),
           "tls": ("TLS handshake not completed", "in the TLS handshake"),
           "request": ("request not sent", "sending the request"),
           "headers": ("no response headers", "waiting for the response headers: read timed out"),
           "body": ("body not received", "reading the body{progress}: read timed out")}


def is_secret_header(name: str) -> bool:
    """True when a header's name says it carries a credential.

    >>> [is_secret_header(h) for h in ("Authorization", "X-Api-Key", "X-Auth-Token", "Accept", "X-Request-Id")]
    [True, True, True, False, False]
    """
    return name.lower() in SECRET_HEADERS or bool(_SECRET_HEADER_WORD.search(name))


class Failed(Exception):
    """The exchange did not give a usable answer; the message is the cause in the operator's words
    (``cert_days_left``: measured although the TLS handshake failed)."""

    def __init__(self, message: str, cert_days_left: float | None = None):
        super().__init__(message)
        self.cert_days_left = cert_days_left


class TooLarge(Exception):
    pass


# --- one deadline for the whole exchange -------------------------------------------------

class _Exchange:
    """The state of one exchange: its deadline, the phase it is in, its open connections."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.phase = "connect"
        self.hop = 0
        self.received = 0  # body bytes received so far (for the stall message)
        self.expired = False
        self.done = False
        self.peer_cert: bytes | None = None  # DER of the first hop's certificate
        self.reused = False  # the current request went out on a kept-alive connection
        self.route = None  # opsgate.via.Route: connections are opened on that host (via:)
        self.entry: list | None = None  # its place in the watchdog's heap
        self._lock = threading.Lock()
        # a duplicate of each open socket: shutting a duplicate down ends reads on the original
        # even while TLS owns it (a handshake in progress), and it is never closed under us
        self._open: dict = {}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def over(self) -> bool:
        return self.expired or time.monotonic() >= self.deadline

    def watch(self, key, sock: socket.socket) -> None:
        # the descriptor duplicated, not the object: a kept-alive TLS socket cannot be dup()ed
        dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
        with self._lock:
            self._open[key] = dup
            if self.expired:  # connected just as the deadline passed
                _shut(dup)

    def forget(self, key) -> None:
        with self._lock:
            dup = self._open.pop(key, None)
        if dup is not None:
            dup.close()

    def watching(self, key) -> bool:
        return key in self._open

    def release(self, key) -> bool:
        """A connection going back to the run's pool: True when it may be reused (the exchange
        is within its deadline and the watchdog never shut it down); the watchdog stops
        watching it either way, so it cannot shut a socket another exchange then uses."""
        with self._lock:
            dup = self._open.pop(key, None)
            reusable = not self.expired and not self.done and time.monotonic() < self.deadline
        if dup is not None:
            dup.close()
        return reusable

    def expire(self) -> None:
        """Called by the watchdog at the deadline: every socket of the exchange is shut down,
        so a blocked read returns at once whatever the server trickles."""
        with self._lock:
            if self.done:
                return
            self.expired = True
            for key, dup in self._open.items():
                if isinstance(key, _Watched):
                    key.tainted = True  # its pool closes it instead of keeping it
                _shut(dup)

    def finish(self) -> None:
        with self._lock:
            self.done = True
            dups, self._open = list(self._open.items()), {}
        _WATCHDOG.forget(self)
        for key, dup in dups:
            if isinstance(key, _Watched):  # still watched: not released whole, never reused
                key.tainted = True
            dup.close()

    def stalled(self) -> Failed:
        what, how = _PHASES[self.phase]
        progress = f" after {self.received} bytes" if self.received else ""
        where = f"redirect hop {self.hop}: " if self.hop else ""
        return Failed(f"{where}{what} within {self.timeout:g}s (stalled {how.format(progress=progress)})")


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the peer is gone already


class _Watchdog:
    """One daemon thread that expires exchanges at their deadlines (a heap, not a timer
    thread per probe: a thousand probes waiting at once cost one thread here). A finished
    exchange is let go at once: its entry keeps only its deadline until the heap drops it,
    so thousands of exchanges finished within their timeout are not all held until then."""

    def __init__(self) -> None:
        self._heap: list = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._finished = 0  # entries in the heap whose exchange finished

    def add(self, exchange: _Exchange) -> None:
        with self._cond:
            self._seq += 1
            if self._finished > 64 and self._finished * 2 > len(self._heap):
                self._heap = [e for e in self._heap if e[2] is not None]  # amortised: O(1) per add
                heapq.heapify(self._heap)
                self._finished = 0
            entry = exchange.entry = [exchange.deadline, self._seq, exchange]
            heapq.heappush(self._heap, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="opsgate-http-watchdog", daemon=True)
                self._thread.start()
            if self._heap[0] is entry:  # only an earlier deadline than it waits for wakes it
                self._cond.notify()

    def forget(self, exchange: _Exchange) -> None:
        """``exchange`` finished: nothing is left to expire."""
        entry = getattr(exchange, "entry", None)
        if entry is None:
            return
        with self._cond:
            if entry[2] is not None:
                entry[2] = None
                self._finished += 1

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                entry = self._heap[0]
                exchange = entry[2]
                if exchange is not None:
                    wait = entry[0] - time.monotonic()
                    if wait > 0:
                        self._cond.wait(wait)
                        continue
                    entry[2] = None  # expired here: a later forget() has nothing to count
                else:
                    self._finished -= 1
                heapq.heappop(self._heap)
            if exchange is not None:
                exchange.expire()


_WATCHDOG = _Watchdog()
_CURRENT = threading.local()  # the exchange the calling thread is running


class _Watched:
    """urllib3 connections that join the calling thread's exchange, so its watchdog can shut
    them down, and that mark the phases (connect -> request -> headers). A kept-alive
    connection taken from the run's pool joins the exchange when its request is sent; one
    the watchdog shut down or an exchange left unfinished is ``tainted`` and never reused."""

    tainted = False

    def request(self, *args, **kwargs):
        exchange = getattr(_CURRENT, "exchange", None)
        sock = self.sock
        if exchange is not None and sock is not None and not exchange.watching(self):
            exchange.reused = True  # kept alive from an earlier exchange of the run
            exchange.watch(self, sock)
            exchange.phase = "request"
            if exchange.hop == 0 and exchange.peer_cert is None and isinstance(sock, ssl.SSLSocket):
                exchange.peer_cert = sock.getpeercert(binary_form=True)
        return super().request(*args, **kwargs)

    def _new_conn(self):
        exchange = getattr(_CURRENT, "exchange", None)
        if exchange is not None and exchange.route is not None:
            sock = _routed(exchange.route, self.host, self.port, exchange.left())  # resolved on that host
        else:
            if exchange is not None:
                _resolvable(self._dns_host, self.port, exchange)
            sock = super()._new_conn()
        if exchange is not None:
            exchange.watch(self, sock)
            if isinstance(self, HTTPSConnection):
                exchange.phase = "tls"
        return sock

    def connect(self):
        exchange = getattr(_CURRENT, "exchange", None)
        if exchange is not None:
            exchange.phase = "connect"
        super().connect()
        if exchange is not None:
            exchange.phase = "request"
            if exchange.hop == 0 and exchange.peer_cert is None and isinstance(self.sock, ssl.SSLSocket):
                exchange.peer_cert = self.sock.getpeercert(binary_form=True)

    def getresponse(self, *args, **kwargs):
        exchange = getattr(_CURRENT, "exchange", None)
        if exchange is not None:
            exchange.phase = "headers"
        return super().getresponse(*args, **kwargs)

    def close(self):
        exchange = getattr(_CURRENT, "exchange", None)
        if exchange is not None:
            exchange.forget(self)
        super().close()
        self.tainted = False  # closed: its next use is a new socket


def _routed(route, host: str, port: int, timeout: float) -> socket.socket:
    """A connection to ``host:port`` opened on the route's host (``via:``); the URL's host name
    still goes to TLS (SNI, verification) and the Host header."""
    try:
        return route.connect(host, port, timeout)
    except TimeoutError as exc:
        raise Failed(str(exc)) from None
    except OSError as exc:
        raise Failed(exc.strerror or str(exc)) from None


def _resolvable(host: str, port: int, exchange: _Exchange) -> None:
    """Resolve ``host`` on a helper thread within the exchange's deadline (getaddrinfo cannot
    be interrupted, and a silent DNS server holds it for 5 s per attempt); the connection then
    resolves it again, from the answer just fetched. Literal addresses and failures pass
    through: the connection reports those itself."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return
    except ValueError:
        pass
    exchange.phase = "resolve"
    done = threading.Event()

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            pass
        done.set()

    threading.Thread(target=resolve, name="opsgate-resolve", daemon=True).start()
    if not done.wait(max(0.0, exchange.left())):
        raise exchange.stalled()
    exchange.phase = "connect"


class _Conn(_Watched, HTTPConnection):
    pass


class _TlsConn(_Watched, HTTPSConnection):
    pass


class _Reusing:
    """A pool that keeps a connection for the next exchange only when the exchange that used
    it read its answer whole within its deadline; any other is closed before it is put back."""

    def _put_conn(self, conn) -> None:
        if conn is not None:
            exchange = getattr(_CURRENT, "exchange", None)
            reusable = exchange.release(conn) if exchange is not None else True
            if not reusable or conn.tainted:
                conn.close()
        super()._put_conn(conn)


class _Pool(_Reusing, HTTPConnectionPool):
    ConnectionCls = _Conn


class _TlsPool(_Reusing, HTTPSConnectionPool):
    ConnectionCls = _TlsConn


class _Adapter(HTTPAdapter):
    """requests' adapter with watched connections (direct and through a proxy)."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}

    def proxy_manager_for(self, proxy, **kwargs):
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}
        return manager


#: keep-alive connections each (scheme, host, port, TLS settings) keeps for the run's next exchanges
POOL_SIZE = 10
_pools: _Adapter | None = None
_pools_lock = threading.Lock()


_routed_pools: dict = {}  # route -> its adapter: a kept-alive connection never changes route


def _adapter(route=None) -> _Adapter:
    """The process's adapter: one urllib3 pool per origin and TLS settings (requests keys its
    pools by scheme, host, port, verify and client certificate), shared by every exchange;
    the exchanges through a route (``via:``) have an adapter of their own."""
    global _pools
    if route is not None:
        with _pools_lock:
            if route not in _routed_pools:
                _routed_pools[route] = _Adapter(pool_connections=max(10, POOL_SIZE), pool_maxsize=POOL_SIZE)
            return _routed_pools[route]
    adapter = _pools
    if adapter is None:
        with _pools_lock:
            if _pools is None:
                _pools = _Adapter(pool_connections=max(10, POOL_SIZE), pool_maxsize=POOL_SIZE)
            adapter = _pools
    return adapter


def size_pools(connections: int) -> None:
    """Keep up to ``connections`` alive per origin (a run's concurrency); the pools open now
    are closed (their connections are idle between runs).

    >>> import opsgate.httpclient as client  # the module's globals, not the doctest's copy of them
    >>> client.size_pools(100); client.POOL_SIZE, client._pools is None
    (100, True)
    """
    global POOL_SIZE, _pools
    with _pools_lock:
        POOL_SIZE, old, _pools = max(1, connections), _pools, None
    if old is not None:
        old.close()
    _close_routed()


def close_pools() -> None:
    """Close every kept-alive connection (the run's end)."""
    global _pools
    with _pools_lock:
        old, _pools = _pools, None
    if old is not None:
        old.close()
    _close_routed()


def _close_routed() -> None:
    with _pools_lock:
        routed = list(_routed_pools.values())
        _routed_pools.clear()
    for adapter in routed:
        adapter.close()


# --- the body: decoded within max_bytes --------------------------------------------------

class _Decoder:
    """Content-Encoding undone incrementally; the output never exceeds the limit by more than
    one byte, however far the input would inflate."""

    def __init__(self, content_encoding: str):
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip().lower() not in ("", "identity")]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise Failed(f"body uses an unsupported Content-Encoding {REDACTOR.excerpt(content_encoding, 60)!r}")
        self.coding = codings[0] if codings else ""
        self.wbits = 31 if self.coding in ("gzip", "x-gzip") else 15
        self.z = zlib.decompressobj(self.wbits) if self.coding else None
        self.started = False

    def feed(self, data: bytes, out: bytearray, limit: int) -> None:
        if self.z is None:
            out += data
        else:
            try:
                try:
                    self._inflate(data, out, limit)
                except zlib.error:
                    if self.coding != "deflate" or self.started:
                        raise
                    self.wbits, self.z = -15, zlib.decompressobj(-15)  # raw deflate, as some servers send it
                    del out[:]
                    self._inflate(data, out, limit)
            except zlib.error as exc:
                raise Failed(f"body is not valid {self.coding} data ({exc})") from None
            self.started = True
        if len(out) > limit:
            raise TooLarge

    def _inflate(self, data: bytes, out: bytearray, limit: int) -> None:
        while data:
            out += self.z.decompress(data, max(1, limit + 1 - len(out)))
            if len(out) > limit:
                raise TooLarge
            if self.z.eof:  # another gzip member may follow
                data = self.z.unused_data
                if data:
                    self.z = zlib.decompressobj(self.wbits)
            else:
                data = self.z.unconsumed_tail

    def finish(self) -> None:
        if self.z is not None and self.started and not self.z.eof:
            raise Failed(f"body's {self.coding} stream ends early (truncated)")


def _read_body(response: "_Response", max_bytes: int, exchange: _Exchange) -> bytes:
    """The decoded body, or TooLarge past ``max_bytes``; a stall past the deadline is a Failed."""
    exchange.phase = "body"
    decoder = _Decoder(response.headers.get("Content-Encoding", ""))
    raw = response.raw
    body = bytearray()
    errors = urllib3.exceptions
    try:
        while chunk := raw.read1(65536, decode_content=False):
            exchange.received += len(chunk)
            decoder.feed(chunk, body, max_bytes)
            if exchange.received > max_bytes:  # the wire bytes count too (identity or not)
                raise TooLarge
            if exchange.over():
                raise exchange.stalled()
    except (errors.HTTPError, OSError, http.client.HTTPException) as exc:
        if exchange.over() or isinstance(exc, errors.ReadTimeoutError):
            raise exchange.stalled() from None
        raise Failed(_broken_body(exc)) from None
    if exchange.over():  # the watchdog's shutdown reads as a clean end of a close-delimited body
        raise exchange.stalled()
    decoder.finish()
    return bytes(body)


def _broken_body(exc: BaseException) -> str:
    text = repr(exc)
    if "reset" in text.lower():
        return "the server reset the connection while sending the body"
    if "IncompleteRead" in text or "Connection broken" in text or "InvalidChunkLength" in text:
        return f"the server closed the connection without a complete response ({REDACTOR.excerpt(str(exc), 160)})"
    return f"the body could not be read: {type(exc).__name__}: {REDACTOR.excerpt(str(exc), 160)}"


# --- the exchange: hops, headers, failures ------------------------------------------------

@dataclass
class Answer:
    """What one exchange got: the final response's status, headers and decoded body."""

    status: int
    headers: dict
    body: bytes
    url: str
    redirects: int = 0
    peer_cert: bytes | None = None
    dropped_headers: list = field(default_factory=list)


def _origin(url: str) -> tuple:
    """(scheme, host, port); a URL whose port cannot be read is an origin of its own.

    >>> _origin("HTTP://Example.com/x") == _origin("http://example.com:80/y"), _origin("http://h:99999/")
    (True, ('invalid', 'http://h:99999/'))
    """
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return "invalid", url
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _secret_headers(headers: dict[str, str], marked: set[str]) -> list[str]:
    """Names of the headers that must not leave the configured origin."""
    return [name for name, value in headers.items()
            if name in marked or is_secret_header(name) or REDACTOR.text(value) != value]


def exchange(method: str, url: str, timeout: float, *, headers: dict[str, str] | None = None, body: str | None = None,
             verify: bool | str = True, max_bytes: int = 1024 * 1024, follow_redirects: bool = True,
             max_redirects: int = 10, secret_headers: set[str] = frozenset(), route=None) -> Answer:
    """One HTTP exchange within ``timeout`` seconds in all (every hop, headers and body);
    raises Failed with the cause. ``secret_headers`` names headers marked secret: they, and
    every header that looks secret, are sent to the configured origin only. ``route`` (an
    :class:`opsgate.via.Route`) opens every connection on that host instead of here.

    >>> exchange("GET", "http://127.0.0.1:1/health", 1)
    Traceback (most recent call last):
    opsgate.httpclient.Failed: connection refused
    """
    state = _Exchange(timeout)
    state.route = route
    if verify is True:  # the CA bundle requests' sessions take from the environment, as before
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    sent_headers = {"Accept-Encoding": "gzip, deflate", **(headers or {})}
    secret = _secret_headers(sent_headers, set(secret_headers))
    origin = _origin(url)
    current, current_method, current_body = url, method, body
    dropped: list[str] = []
    previous = getattr(_CURRENT, "exchange", None)
    _CURRENT.exchange = state
    _WATCHDOG.add(state)
    adapter = _adapter(route)
    try:
        while True:
            state.phase = "connect"
            hop_headers = sent_headers
            if state.hop and _origin(current) != origin:  # Host too: it names the configured origin, not this one
                hop_headers = {k: v for k, v in sent_headers.items() if k not in secret and k.lower() != "host"}
                dropped = sorted(set(secret) & set(sent_headers))
            response = _send(adapter, state, current_method, current, hop_headers, current_body, verify)
            location = response.headers.get("Location")
            if follow_redirects and response.status_code in REDIRECT_CODES and location:
                response.close()
                if state.hop >= max_redirects:
                    raise Failed(f"redirect loop: more than {max_redirects} redirects")
                try:
                    current = urljoin(current, location.strip())
                    usable = urlsplit(current).scheme.lower() in ("http", "https") and _origin(current)[0] != "invalid"
                except ValueError:
                    usable = False
                if not usable:
                    raise Failed(f"redirect hop {state.hop + 1} leads to an unusable URL "
                                  f"{REDACTOR.excerpt(location.strip(), 120)!r}")
                if response.status_code == 303 and current_method != "HEAD" or \
                        response.status_code in (301, 302) and current_method == "POST":
                    current_method, current_body = "GET", None  # as browsers and requests do
                state.hop += 1
                continue
            try:
                data = _read_body(response, max_bytes, state)
            finally:
                response.close()
            return Answer(response.status_code, dict(response.headers), data, current, state.hop,
                          state.peer_cert, dropped)
    finally:
        state.finish()
        _CURRENT.exchange = previous


def _send(adapter: _Adapter, state: _Exchange, method: str, url: str, headers: dict, body, verify) -> "_Response":
    left = state.left()
    if left <= 0:
        raise state.stalled()
    try:
        prepared = _prepare(method, url, headers, body)
        # through a route the request is the host's: this machine's proxy settings do not apply
        proxies = requests.utils.get_environ_proxies(url) if state.route is None and any(
            map(os.environ.get, _PROXY_VARS)) else {}
        state.reused = False
        try:
            response = _adapter_send(adapter, prepared, left, verify, proxies)
        except requests.exceptions.ConnectionError as exc:
            # a kept-alive connection the server closed as it was taken: the request never
            # reached it; an idempotent request goes once more, on a new connection
            if not (state.reused and method in _IDEMPOTENT and _stale(exc)) or state.left() <= 0:
                raise
            response = _adapter_send(adapter, prepared, state.left(), verify, proxies)
    except requests.exceptions.SSLError as exc:
        raise _tls_failure(exc, url, state) from None
    except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout):
        raise state.stalled() from None
    except requests.RequestException as exc:
        if state.over():
            raise state.stalled() from None
        raise Failed(_cause(exc, url)) from None
    except Failed:
        raise
    except (ValueError, UnicodeError) as exc:  # a URL requests cannot prepare (e.g. from a Location)
        raise Failed(f"cannot request {REDACTOR.excerpt(url, 120)!r}: {exc}") from None
    # the watchdog's shutdown mid-headers reads as their end: http.client returns what it had
    if state.over():
        response.close()
        raise state.stalled()
    original = getattr(response.raw, "_original_response", None)
    defects = getattr(getattr(original, "msg", None), "defects", [])
    if any(type(d).__name__ == "MissingHeaderBodySeparatorDefect" for d in defects):
        response.close()
        raise Failed("the response headers are cut short or malformed (a line that is not a header)")
    return response


_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def _prepare(method: str, url: str, headers: dict, body: str | None) -> requests.PreparedRequest:
    """``requests.Request(...).prepare()`` without the cookie jar and hooks an exchange never
    uses (an empty jar adds no header): the URL, headers, body and URL credentials as before."""
    prepared = requests.PreparedRequest()
    prepared.prepare_method(method)
    prepared.prepare_url(url, None)
    prepared.prepare_headers(headers)
    prepared.prepare_body(body, None, None)
    if "@" in prepared.url:  # no userinfo without one: requests would find none
        prepared.prepare_auth(None, url)  # user:password@ in the URL becomes Basic auth, as before
    return prepared


class _Response:
    """What an exchange reads of an answer: the urllib3 response, its status and headers
    (case-insensitive). requests' Response would also parse its cookies into a jar and guess
    an encoding, per exchange, for nothing."""

    __slots__ = ("raw", "status_code", "headers")

    def __init__(self, raw) -> None:
        self.raw, self.status_code, self.headers = raw, raw.status, raw.headers

    def close(self) -> None:
        # as requests' Response.close of a streamed answer: the raw response closed, then its
        # connection handed back to the pool (which keeps it only when it was read whole in time)
        self.raw.close()
        self.raw.release_conn()


def _adapter_send(adapter: _Adapter, request: requests.PreparedRequest, left: float, verify, proxies) -> _Response:
    """requests' ``HTTPAdapter.send(request, stream=True, timeout=(left, left), ...)``: the same
    pool (by origin and TLS settings), certificate settings, urllib3 call and exception
    mapping (so failures read as before), answered by a :class:`_Response`."""
    errors = urllib3.exceptions
    rx = requests.exceptions
    try:
        if proxies:
            conn = adapter.get_connection_with_tls_context(request, verify, proxies=proxies)
        else:  # what it does with no proxy, without looking for one in an empty mapping twice
            try:
                host_params, pool_kwargs = adapter.build_connection_pool_key_attributes(request, verify, None)
            except ValueError as e:
                raise rx.InvalidURL(e, request=request)
            conn = adapter.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)
    except errors.LocationValueError as e:
        raise rx.InvalidURL(e, request=request)
    adapter.cert_verify(conn, request.url, verify, None)
    url = adapter.request_url(request, proxies) if proxies else request.path_url
    try:
        resp = conn.urlopen(method=request.method, url=url, body=request.body, headers=request.headers,
                            redirect=False, assert_same_host=False, preload_content=False, decode_content=False,
                            retries=adapter.max_retries, timeout=urllib3.Timeout(connect=left, read=left),
                            chunked=not (request.body is None or "Content-Length" in request.headers))
    except (errors.ProtocolError, OSError) as err:
        raise rx.ConnectionError(err, request=request)
    except errors.MaxRetryError as e:
        if isinstance(e.reason, errors.ConnectTimeoutError) and not isinstance(e.reason, errors.NewConnectionError):
            raise rx.ConnectTimeout(e, request=request)
        if isinstance(e.reason, errors.ResponseError):
            raise rx.RetryError(e, request=request)
        if isinstance(e.reason, errors.ProxyError):
            raise rx.ProxyError(e, request=request)
        if isinstance(e.reason, errors.SSLError):
            raise rx.SSLError(e, request=request)
        raise rx.ConnectionError(e, request=request)
    except errors.ClosedPoolError as e:
        raise rx.ConnectionError(e, request=request)
    except errors.ProxyError as e:
        raise rx.ProxyError(e)
    except errors.SSLError as e:
        raise rx.SSLError(e, request=request)
    except errors.ReadTimeoutError as e:
        raise rx.ReadTimeout(e, request=request)
    except errors.InvalidHeader as e:
        raise rx.InvalidHeader(e, request=request)
    return _Response(resp)


def _stale(exc: Exception) -> bool:
    """The error a kept-alive connection closed by the server gives before any answer."""
    text = repr(exc)
    return isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(
        exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.ProxyError)) and \
        ("RemoteDisconnected" in text or "reset by peer" in text.lower() or "Broken pipe" in text)


def _tls_failure(exc: Exception, url: str, state: _Exchange) -> Failed:
    """The TLS error, and the certificate's days left measured anyway (within the deadline)."""
    if state.over():
        return state.stalled()
    text = str(exc)
    reason = re.search(r"certificate verify failed[^\(\)'\"]*|\[SSL[^\]]*\][^\(\)'\"]*", text)
    message = f"TLS error: {(reason.group(0) if reason else REDACTOR.excerpt(text, 200)).strip()}"
    parts = urlsplit(url)
    if "verify failed" not in message or state.left() <= 0:
        return Failed(message)
    try:
        days = cert_days_left(parts.hostname, parts.port or 443, state.left(), state, state.route)
    except (OSError, ValueError):
        return Failed(message)
    message += f"; expires in {days:.1f} days" if days >= 0 else f"; expired {-days:.1f} days ago"
    return Failed(message, cert_days_left=days)


def _cause(exc: requests.RequestException, url: str) -> str:
    """Turn a requests exception into the operator's words."""
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return f"cannot resolve host {urlsplit(url).hostname!r}"
    if "BadStatusLine" in text or "LineTooLong" in text or "HeaderParsingError" in text:
        return f"the server did not answer with valid HTTP ({REDACTOR.excerpt(text, 160)})"
    if "reset" in text.lower():
        return "the server reset the connection before answering"
    if "RemoteDisconnected" in text or isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the server closed the connection without a complete response"
    return f"{type(exc).__name__}: {REDACTOR.excerpt(text, 200)}"


class FetchError(Exception):
    """A GET that did not complete; the message names the cause in the operator's words."""


def fetch(url: str, timeout: float, verify: bool | str = True, max_bytes: int = 16 * 1024 * 1024,
          params: dict | None = None, route=None) -> tuple[int, bytes]:
    """GET ``url`` (status, body), the whole exchange within ``timeout`` and ``max_bytes``; for
    probes that read an API (Prometheus, /metrics) rather than judge an endpoint. ``route``:
    made through that host (``via:``, as :func:`exchange`).

    >>> fetch("http://127.0.0.1:1/metrics", 1)
    Traceback (most recent call last):
    opsgate.httpclient.FetchError: GET http://127.0.0.1:1/metrics: connection refused
    """
    full = requests.Request("GET", url, params=params).prepare().url if params else url
    shown = f"GET {url}" + (f" via {route.name}" if route is not None else "")
    try:
        answer = exchange("GET", full, timeout, verify=verify, max_bytes=max_bytes,
                          max_redirects=requests.models.DEFAULT_REDIRECT_LIMIT, route=route)
    except TooLarge:
        raise FetchError(f"{shown}: response body exceeds {max_bytes} bytes") from None
    except Failed as exc:
        raise FetchError(f"{shown}: {exc}") from None
    return answer.status, answer.body


def cert_days_left(host: str, port: int, timeout: float, state: _Exchange | None = None, route=None) -> float:
    """Days until the certificate served at host:port expires (negative once expired); the
    handshake is not verified, so an untrusted certificate is measured too. ``route``: as the
    host it names sees host:port."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (route.connect(host, port, timeout) if route is not None else
          socket.create_connection((host, port), timeout=timeout)) as raw:
        if state is not None:
            state.watch(raw, raw)
        try:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
        finally:
            if state is not None:
                state.forget(raw)
    return days_left(der)


def days_left(der: bytes) -> float:
    from cryptography import x509  # only https checks pay for importing it

    expires = x509.load_der_x509_certificate(der).not_valid_after_utc
    return round((expires - datetime.now(timezone.utc)).total_seconds() / 86400, 3)


# --- reading the body as text and JSON ----------------------------------------------------

def body_text(body: bytes, content_type: str) -> str:
    """The body decoded in its declared charset (UTF-8 when none); Failed names what is wrong.

    >>> body_text(b'{"a": 1}', "application/json; charset=x-bogus")
    Traceback (most recent call last):
    opsgate.httpclient.Failed: body declares an unknown charset 'x-bogus'
    """
    _, params = requests.utils._parse_content_type_header(content_type or "")
    declared = str(params.get("charset", "")).strip("'\" ")
    name = declared or "utf-8"
    try:
        codec = codecs.lookup(name)
        if codec.name in _REFUSED_CODECS or not getattr(codec, "_is_text_encoding", True):
            raise LookupError(name)
        encoding = "utf-8-sig" if codec.name == "utf-8" else codec.name
        return body.decode(encoding)
    except LookupError:
        raise Failed(f"body declares an unknown charset {REDACTOR.excerpt(declared, 60)!r}") from None
    except UnicodeDecodeError as exc:
        raise Failed(f"body is not valid {name} (byte {exc.start}: {exc.reason})") from None


def body_json(text: str):
    """The body parsed as JSON, nested at most MAX_JSON_DEPTH levels; Failed otherwise.

    >>> body_json("null") is None
    True
    >>> body_json("[" * 100000)
    Traceback (most recent call last):
    opsgate.httpclient.Failed: body is JSON nested too deeply to read (more than 128 levels)
    """
    try:
        return loads_bounded(text, MAX_JSON_DEPTH)
    except TooDeep:
        raise Failed(f"body is JSON nested too deeply to read (more than {MAX_JSON_DEPTH} levels)") from None
    except ValueError as exc:
        raise Failed(f"body is not valid JSON ({exc})") from None
