"""A hostile HTTP server on loopback: real sockets, raw writes, one behaviour per path.

Each connection gets its own thread and one response, written byte by byte where the
behaviour calls for it, so a client meets the real thing: trickled headers, a stalled
body, endless chunks, a gzip bomb, a reset, garbage instead of HTTP.

Paths (``interval`` is the trickle pace, 0.25 s unless given):

- ``/health``                healthy JSON at once
- ``/trickle-headers``       a 200 with an empty body whose headers arrive one byte per interval (~14 s)
- ``/stall-headers``         the status line, then silence
- ``/trickle-body``          healthy JSON after 40 bytes of whitespace trickled one per interval
- ``/redirect-chain/N``      N redirects, each answered after ``delay`` ms (query ``?delay=800``), then healthy JSON
- ``/redirect-to/PORT/PATH`` 302 to http://127.0.0.1:PORT/PATH (another origin)
- ``/redirect-here/PATH``    302 to /PATH on this server (same origin)
- ``/echo``                  the request's headers as JSON
- ``/endless-chunks``        a chunked body that never ends
- ``/gzip-bomb``             Content-Encoding: gzip, ~1 MB on the wire, 1 GiB decoded
- ``/reset``                 half a body, then a TCP reset
- ``/garbage``               bytes that are not HTTP, then close
- ``/deep-json``             a 100,000-deep JSON array
- ``/null``                  the JSON document ``null``
- ``/bogus-charset``         healthy JSON declared as ``charset=x-bogus``
- ``/bad-utf8``              healthy-looking JSON with bytes that are not UTF-8
- anything registered with ``script(path, raw_bytes)`` is written as given, then closed

Every request's path and headers are kept in ``seen``.

>>> import requests
>>> with HostileHttp() as h:
...     requests.get(h.url("/health"), timeout=5).json()["status"], h.seen[-1][0]
('healthy', '/health')
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import zlib
from urllib.parse import parse_qs, urlsplit

HEALTHY = json.dumps({"status": "healthy"}).encode()
_BOMB: bytes | None = None
_BOMB_LOCK = threading.Lock()


def gzip_bomb(decoded: int = 1 << 30) -> bytes:
    """A valid gzip stream of ``decoded`` zero bytes (1 GiB -> about 1 MB), made once: one
    compressed MiB, flushed so that it repeats byte for byte, then the gzip trailer.

    >>> import zlib
    >>> len(zlib.decompressobj(31).decompress(gzip_bomb(), 1 << 20)) == 1 << 20
    True
    """
    global _BOMB
    with _BOMB_LOCK:
        if _BOMB is None:
            block = bytes(1 << 20)
            z = zlib.compressobj(9, zlib.DEFLATED, -15)
            piece = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
            crc = 0
            for _ in range(decoded >> 20):
                crc = zlib.crc32(block, crc)
            _BOMB = (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + piece * (decoded >> 20)
                     + b"\x03\x00" + struct.pack("<II", crc, decoded & 0xFFFFFFFF))
        return _BOMB


def response(status: str = "200 OK", body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """Raw bytes of a whole HTTP/1.1 response with Content-Length."""
    head = {"Content-Type": "application/json", "Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"HTTP/1.1 {status}\r\n{lines}\r\n".encode("latin-1") + body


class HostileHttp:
    """The server; ``url(path)`` builds a URL, ``script(path, raw)`` adds a raw response."""

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.seen: list[tuple[str, dict[str, str]]] = []
        self._scripts: dict[str, bytes] = {}
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, raw: bytes) -> str:
        """Serve ``raw`` verbatim at ``path``; returns its URL."""
        self._scripts[path] = raw
        return self.url(path)

    def __enter__(self) -> "HostileHttp":
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1024)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                path, headers = _read_request(conn)
                if path is None:
                    return
                self.seen.append((path, headers))
                self._respond(conn, path, headers)
        except OSError:
            pass  # the client gave up or was cut off: expected here
        finally:
            with self._lock:
                self._conns.discard(conn)

    def _trickle(self, conn: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            if self._stop.wait(self.interval):
                return
            conn.sendall(data[i:i + 1])

    def _respond(self, conn: socket.socket, path: str, headers: dict[str, str]) -> None:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = parts.path
        if route in self._scripts:
            conn.sendall(self._scripts[route])
        elif route == "/health":
            conn.sendall(response(body=HEALTHY))
        elif route == "/trickle-headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            self._trickle(conn, b"Content-Length: 0\r\nX-Pad: " + b"p" * 20 + b"\r\n\r\n")
        elif route == "/stall-headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            self._stop.wait(30)
        elif route == "/trickle-body":
            body = b" " * 40 + HEALTHY
            conn.sendall(response(body=body)[:-len(body)])  # the head only
            self._trickle(conn, body)
        elif route.startswith("/redirect-chain/"):
            left = int(route.rsplit("/", 1)[1])
            self._stop.wait(int(query.get("delay", "0")) / 1000)
            if left <= 0:
                conn.sendall(response(body=HEALTHY))
            else:
                target = f"/redirect-chain/{left - 1}" + (f"?{parts.query}" if parts.query else "")
                conn.sendall(response("302 Found", headers={"Location": target}))
        elif route.startswith("/redirect-to/"):
            port, _, rest = route[len("/redirect-to/"):].partition("/")
            conn.sendall(response("302 Found", headers={"Location": f"http://127.0.0.1:{port}/{rest}"}))
        elif route.startswith("/redirect-here/"):
            conn.sendall(response("302 Found", headers={"Location": "/" + route[len("/redirect-here/"):]}))
        elif route == "/echo":
            conn.sendall(response(body=json.dumps({"status": "healthy", "headers": headers}).encode()))
        elif route == "/endless-chunks":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"1000\r\n" + b" " * 4096 + b"\r\n"
            while not self._stop.is_set():
                conn.sendall(chunk)
        elif route == "/gzip-bomb":
            bomb = gzip_bomb()
            conn.sendall(response(body=bomb, headers={"Content-Encoding": "gzip"}))
        elif route == "/reset":
            conn.sendall(response(body=b'{"status": "healthy", "pad": "' + b"x" * 2000)[:-1000])
            self._stop.wait(0.1)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif route == "/garbage":
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\x00\xff\xfe garbage, not HTTP\r\n\r\n")
        elif route == "/deep-json":
            conn.sendall(response(body=b"[" * 100_000 + b"]" * 100_000))
        elif route == "/null":
            conn.sendall(response(body=b"null"))
        elif route == "/bogus-charset":
            conn.sendall(response(body=HEALTHY, headers={"Content-Type": "application/json; charset=x-bogus"}))
        elif route == "/bad-utf8":
            conn.sendall(response(body=b'{"status": "healthy", "note": "\xff\xfe\xc3"}',
                                  headers={"Content-Type": "application/json; charset=utf-8"}))
        else:
            conn.sendall(response("404 Not Found", body=b'{"error": "not found"}'))


def _read_request(conn: socket.socket) -> tuple[str | None, dict[str, str]]:
    """The request line's path and the headers (names lower-cased); the body is drained."""
    conn.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece or len(data) > 1 << 16:
            return None, {}
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(rest) < length:
        piece = conn.recv(65536)
        if not piece:
            break
        rest += piece
    conn.settimeout(None)
    return (parts[1] if len(parts) > 1 else "/"), headers

