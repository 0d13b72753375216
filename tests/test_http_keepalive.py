"""The run's kept-alive HTTP connections (opsgate.httpclient's pools): a connection is reused
only after an exchange that read its answer whole within its deadline; a reused connection is
still cut by the exchange's watchdog; a kept-alive connection the server dropped is retried
once on a new one (idempotent methods only). A real HTTP/1.1 server on loopback, which
records the client port of every request (one port = one connection)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from opsgate import httpclient

BODY = json.dumps({"status": "healthy"}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client closes

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.ports.append((self.path, self.client_address[1]))
        served = getattr(self, "served", 0)
        self.served = served + 1
        if self.path == "/once-per-connection" and served:
            self.close_connection = True  # what a server that dropped an idle connection looks like
            return
        if self.path == "/trickle-headers":  # one byte of headers at a time: a socket timeout never fires
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 50:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)
            self.close_connection = True
            return
        if self.path == "/stall-body":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"status": ')
            self.wfile.flush()
            time.sleep(3)
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.ports = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpclient.close_pools()  # no connection kept from another test
    try:
        yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpclient.close_pools()
        httpd.shutdown()
        httpd.server_close()


def ports(httpd, path: str) -> list[int]:
    return [port for p, port in httpd.ports if p == path]


def test_a_connection_is_kept_alive_for_the_next_exchange(server):
    httpd, url = server
    for _ in range(3):
        assert httpclient.exchange("GET", url + "/ok", 5).status == 200
    assert len(set(ports(httpd, "/ok"))) == 1


def test_the_connection_of_a_timed_out_exchange_is_never_reused(server):
    httpd, url = server
    with pytest.raises(httpclient.Failed, match=r"body not received within 0.5s"):
        httpclient.exchange("GET", url + "/stall-body", 0.5)
    assert httpclient.exchange("GET", url + "/ok", 5).status == 200
    assert ports(httpd, "/stall-body")[0] != ports(httpd, "/ok")[0]


def test_a_reused_connection_is_still_cut_at_the_deadline(server):
    httpd, url = server
    assert httpclient.exchange("GET", url + "/ok", 5).status == 200
    with pytest.raises(httpclient.Failed, match=r"no response headers within 0.5s"):
        httpclient.exchange("GET", url + "/trickle-headers", 0.5)
    assert ports(httpd, "/trickle-headers") == ports(httpd, "/ok")  # it was the kept-alive connection


def test_a_kept_alive_connection_the_server_dropped_is_retried_on_a_new_one(server):
    httpd, url = server
    assert httpclient.exchange("GET", url + "/once-per-connection", 5).status == 200
    assert httpclient.exchange("GET", url + "/once-per-connection", 5).status == 200
    seen = ports(httpd, "/once-per-connection")
    assert len(seen) == 3 and seen[0] == seen[1] != seen[2]  # dropped on the kept-alive one, answered on a new one


def test_a_non_idempotent_request_is_not_sent_twice(server):
    httpd, url = server
    assert httpclient.exchange("GET", url + "/once-per-connection", 5).status == 200
    with pytest.raises(httpclient.Failed, match="closed the connection without a complete response"):
        httpclient.exchange("POST", url + "/once-per-connection", 5, body="{}")


def test_finished_exchanges_are_not_held_until_their_deadline(server):
    """The watchdog lets a finished exchange go at once (a run of thousands of checks with a
    long timeout would otherwise hold every exchange until then), and still cuts a stalled
    one at its deadline afterwards."""
    httpd, url = server
    for _ in range(200):
        assert httpclient.exchange("GET", url + "/ok", 60).status == 200
    ours = [entry for entry in list(httpclient._WATCHDOG._heap) if entry[0] > time.monotonic() + 30]
    assert all(entry[2] is None for entry in ours)  # no finished exchange is referenced
    assert len(ours) < 200  # and their entries are compacted away as exchanges are added
    with pytest.raises(httpclient.Failed, match=r"body not received within 0.5s"):
        httpclient.exchange("GET", url + "/stall-body", 0.5)
