"""Real loopback network targets for opsgate's tests.

These are not mocks: every helper here binds a real socket on 127.0.0.1 so that
opsgate's checks exercise genuine TCP, HTTP and TLS behaviour (timeouts, bad
status codes, truncated JSON, oversized bodies, redirect loops, expiring
certificates, servers that accept and then hang).

- ``HttpTarget``    -- threaded HTTP(S) server with a fixed set of routes
- ``HangingTarget`` -- accepts TCP connections and never answers
- ``TlsCert``       -- self-signed certificate written to a temp directory
- ``free_port()``   -- a port that nothing is listening on
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CHUNK = 64 * 1024
JSON = "application/json"
HEALTHY = {
    "status": "healthy",
    "checks": {"cpu_healthy": True, "memory_healthy": True},
    "metrics": {"cpu_percent": 25.5, "memory_percent": 45.2,
                "disk_usage_percent": 7.0, "active_connections": 3},
    "alerts": [],
}
DEGRADED = {**HEALTHY, "status": "degraded",
            "checks": {**HEALTHY["checks"], "cpu_healthy": False},
            "metrics": {**HEALTHY["metrics"], "cpu_percent": 91.2}}
STATIC = {"/health": HEALTHY, "/degraded": DEGRADED,
          "/models": {"models": [{"name": "llama3"}]}, "/models-empty": {"models": []}}


def free_port() -> int:
    """Return a loopback port that nothing listens on (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TlsCert:
    """Self-signed certificate (CN/SAN localhost + 127.0.0.1) usable as its own CA.

    >>> import tempfile, pathlib, requests
    >>> cert = TlsCert.self_signed(pathlib.Path(tempfile.mkdtemp()), days_valid=0.5)
    >>> with HttpTarget(tls=cert) as target:
    ...     requests.get(target.url + "/health", verify=str(cert.cert_path), timeout=5).status_code
    200

    A negative ``days_valid`` yields an already-expired certificate.
    """

    def __init__(self, cert_path: Path, key_path: Path, not_after: dt.datetime):
        self.cert_path, self.key_path, self.not_after = cert_path, key_path, not_after

    @classmethod
    def self_signed(cls, tmp_dir: Path, days_valid: float = 3.0) -> "TlsCert":
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        not_after = now + dt.timedelta(days=days_valid)
        not_before = min(now - dt.timedelta(hours=1), not_after - dt.timedelta(hours=1))
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            # KeyUsage/EKU/AKI keep strict verifiers (e.g. Python 3.13 X509_STRICT) happy.
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        tmp_dir = Path(tmp_dir)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = tmp_dir / "cert.pem", tmp_dir / "key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return cls(cert_path, key_path, cert.not_valid_after_utc)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx


def _big_body(n: int):
    """Yield exactly n bytes of JSON ({"pad":"xxx..."}) in CHUNK-sized pieces."""
    head, tail = b'{"pad":"', b'"}'
    if n < len(head) + len(tail):
        yield b"{}        "[:n]
        return
    yield head
    for left in range(n - len(head) - len(tail), 0, -CHUNK):
        yield b"x" * min(CHUNK, left)
    yield tail


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections give up eventually
    server: "_Server"

    def log_message(self, format, *args):  # silence default stderr logging
        pass

    def _route(self):
        """Return (status, content_type, length, chunks, extra_headers)."""
        path = self.path.split("?", 1)[0]
        kind, _, arg = path[1:].partition("/")
        if path in STATIC:
            return _json(200, STATIC[path])
        if kind == "slow" and arg.isdigit():
            time.sleep(int(arg) / 1000)
            return _json(200, HEALTHY)
        if kind == "status" and arg.isdigit():
            return _json(int(arg), {"status": "error", "code": int(arg)})
        if kind == "big" and arg.isdigit():
            return 200, JSON, int(arg), _big_body(int(arg)), {}
        if path == "/malformed":
            return 200, JSON, 16, [b'{"status": "heal'], {}
        if path == "/redirect-loop":
            return 302, JSON, 0, [], {"Location": "/redirect-loop"}
        if path == "/echo":
            headers = {k.lower(): v for k, v in self.headers.items()}
            return _json(200, {"headers": headers, "path": self.path, "method": self.command})
        if path == "/text":
            return 200, "text/plain", 8, [b"OK ready"], {}
        return _json(404, {"error": "not found"})

    def _serve(self, send_body: bool = True):
        self.server.count()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # drain POST body
        status, ctype, length, chunks, extra = self._route()
        self.send_response(status)
        for name, value in {"Content-Type": ctype, "Content-Length": length, **extra}.items():
            self.send_header(name, str(value))
        self.end_headers()
        try:
            for chunk in chunks if send_body else ():
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # client gave up mid-body: expected

    do_GET = do_POST = _serve

    def do_HEAD(self):
        self._serve(send_body=False)


def _json(status: int, obj):
    body = json.dumps(obj).encode()
    return status, JSON, len(body), [body], {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def __init__(self, addr):
        super().__init__(addr, _Handler)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.requests_seen = 0

    def count(self):
        with self._lock:
            self.requests_seen += 1

    def handle_error(self, request, client_address):
        pass  # TLS handshake failures, client resets: expected in these tests

    def process_request(self, request, client_address):
        with self._lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def server_close(self):
        """Also drop keep-alive connections, so a stopped target is really down."""
        super().server_close()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class HttpTarget:
    """Real threaded HTTP(S) server on 127.0.0.1 with canned routes.

    >>> import requests
    >>> with HttpTarget() as t:
    ...     requests.get(t.url + "/health", timeout=5).json()["status"]
    'healthy'

    Routes: /health /degraded /slow/<ms> /status/<code> /malformed /big/<nbytes>
    /redirect-loop /models /models-empty /echo /text; anything else is 404.
    """

    def __init__(self, tls: "TlsCert | None" = None):
        self.tls = tls
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.url = ""

    @property
    def requests_seen(self) -> int:
        return self._server.requests_seen if self._server else 0

    def __enter__(self) -> "HttpTarget":
        self._server = _Server(("127.0.0.1", 0))
        if self.tls is not None:
            # Handshake lazily in the per-connection thread, not in the accept loop.
            self._server.socket = self.tls.server_context().wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class HangingTarget:
    """TCP listener that accepts connections and never reads or writes.

    >>> import requests
    >>> with HangingTarget() as h:
    ...     requests.get(h.url, timeout=0.5)
    Traceback (most recent call last):
    requests.exceptions.ReadTimeout: ...
    """

    def __init__(self):
        self.host = "127.0.0.1"
        self.port = 0
        self.url = ""
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()

    def __enter__(self) -> "HangingTarget":
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((self.host, 0))
        self._sock.listen(512)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:  # timeout tick, or socket closed on exit
                continue
            self._conns.append(conn)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        for conn in self._conns:
            conn.close()


class StaticTarget:
    """A loopback server answering fixed routes: a str is served as text (the Prometheus
    format), anything else as JSON; other paths get 404.

    >>> import requests
    >>> with StaticTarget({"/health": {"status": "healthy"}, "/metrics": "up 1\\n"}) as t:
    ...     requests.get(t.base + "/health", timeout=5).json(), requests.get(t.base + "/metrics", timeout=5).text
    ({'status': 'healthy'}, 'up 1\\n')
    """

    def __init__(self, routes: dict[str, object]):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                payload = routes.get(self.path, {"error": "not found"})
                text = isinstance(payload, str)
                body = (payload if text else json.dumps(payload)).encode()
                self.send_response(200 if self.path in routes else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4" if text else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
