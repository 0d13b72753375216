"""``http`` checks against real loopback servers: each runbook step, and each way it breaks.

Every negative test points the check at a target that is broken in exactly one way
and asserts the failure message names that cause, so an operator reading the report
knows what to fix without re-running anything.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time

import pytest

from opsgate.model import HttpCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check
from tests.support.http_target import HangingTarget, HttpTarget, TlsCert, free_port


@pytest.fixture(scope="module")
def target():
    with HttpTarget() as t:
        yield t


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed certificate with 3 days left: untrusted by default, and expiring soon."""
    return TlsCert.self_signed(tmp_path_factory.mktemp("tls"), days_valid=3)


@pytest.fixture(scope="module")
def tls_target(cert):
    with HttpTarget(tls=cert) as t:
        yield t


class RawTarget:
    """A one-connection HTTP server scripted byte by byte, for bodies HttpTarget cannot
    misbehave with: trickled, stalled half-way, cut short, gzipped in chunks."""

    def __init__(self, script):
        self.script = script

    def __enter__(self) -> "RawTarget":
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4)
        self._stop = threading.Event()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/health"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        conn, _ = self._sock.accept()
        with conn:
            conn.recv(65536)
            try:
                self.script(conn, self._stop)
            except OSError:
                pass  # the client gave up: expected

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=5)


def _head(length: int | None, extra: str = "") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{size}{extra}\r\n".encode()


def check(tmp_path, **fields):
    fields.setdefault("name", "api-health")
    fields.setdefault("timeout", 5)
    return run_check(HttpCheck(**fields), ProbeContext(tmp_path))


def test_healthy_body_with_conditions_passes(target, tmp_path):
    """Runbook: curl /health; status is healthy, CPU and memory under 80 %."""
    result = check(tmp_path, url=target.url + "/health",
                   expect=["status == 'healthy'", "metrics.cpu_percent < 80", "metrics.memory_percent < 80",
                           "all(values(checks))", "length(alerts) == 0"])
    assert result.status == "pass", result.message
    assert result.message == ""
    assert result.evidence["observed"]["status_code"] == 200
    held = {c["condition"]: c["ok"] for c in result.evidence["conditions"]}
    assert held["status == 'healthy'"] is True
    assert held["metrics.cpu_percent < 80"] is True


@pytest.mark.negative("http")
def test_degraded_status_fails_naming_condition_and_observed_value(target, tmp_path):
    """Runbook: /health .status must be "healthy" -- "degraded" is a failure."""
    result = check(tmp_path, url=target.url + "/degraded", expect=["status == 'healthy'"])
    assert result.status == "fail"
    assert "status == 'healthy'" in result.message
    assert "degraded" in result.message
    failed = [c for c in result.evidence["conditions"] if not c["ok"]]
    assert [(c["condition"], c["observed"]) for c in failed] == [("status == 'healthy'", "degraded")]


def test_cpu_over_limit_fails_with_observed_and_limit(target, tmp_path):
    """Runbook: CPU < 80 % -- the evidence shows the value seen and the limit held."""
    result = check(tmp_path, url=target.url + "/degraded", expect=["metrics.cpu_percent < 80"])
    assert result.status == "fail"
    assert "metrics.cpu_percent < 80" in result.message and "91.2" in result.message
    failed = [c for c in result.evidence["conditions"] if not c["ok"]]
    assert failed[0]["observed"] == 91.2 and failed[0]["limit"] == 80


def test_all_checks_true_fails_naming_the_false_one(target, tmp_path):
    """Runbook: every sub-check in .checks is true; the message says which one is not."""
    result = check(tmp_path, url=target.url + "/degraded", expect=["all(values(checks))"])
    assert result.status == "fail"
    assert "all(values(checks))" in result.message
    assert "cpu_healthy" in result.message


def test_slow_endpoint_over_max_latency_fails(target, tmp_path):
    """Runbook: /health answers within 100 ms."""
    result = check(tmp_path, url=target.url + "/slow/300", max_latency_ms=100)
    assert result.status == "fail"
    assert "elapsed_ms" in result.message and "100" in result.message
    assert result.evidence["observed"]["elapsed_ms"] >= 300


def test_slow_endpoint_over_warn_latency_only_warns(target, tmp_path):
    """Runbook: latency over the warning level is worth a look, not a page."""
    result = check(tmp_path, url=target.url + "/slow/300", max_latency_ms=5000, warn_latency_ms=100)
    assert result.status == "warn"
    assert "elapsed_ms" in result.message
    assert not result.failed


@pytest.mark.timeout(15)
def test_hanging_server_fails_within_the_timeout(tmp_path):
    """Runbook: a server that accepts but never answers is down -- and must not hang the run."""
    with HangingTarget() as hanging:
        started = time.monotonic()
        result = check(tmp_path, url=hanging.url + "/health", timeout=1)
        took = time.monotonic() - started
    assert result.status == "fail"
    assert "read timed out" in result.message
    assert took < 2.5, f"a 1 s timeout took {took:.1f} s"


@pytest.mark.timeout(15)
def test_trickling_body_is_bounded_by_the_timeout(tmp_path):
    """A server sending its body a byte at a time must not hold the check past its timeout."""
    def trickle(conn, stop):
        conn.sendall(_head(40))
        for _ in range(40):
            if stop.wait(0.25):
                return
            conn.sendall(b" ")

    with RawTarget(trickle) as target:
        started = time.monotonic()
        result = check(tmp_path, url=target.url, timeout=1)
        took = time.monotonic() - started
    assert result.status == "fail"
    assert "not received within 1s" in result.message
    assert took < 2.5, f"a 1 s timeout took {took:.1f} s"


@pytest.mark.timeout(15)
def test_body_stalled_half_way_fails_naming_read_timed_out(tmp_path):
    def stall(conn, stop):
        conn.sendall(_head(400) + b'{"status": "hea')
        stop.wait(10)

    with RawTarget(stall) as target:
        started = time.monotonic()
        result = check(tmp_path, url=target.url, timeout=1, expect=["status == 'healthy'"])
        took = time.monotonic() - started
    assert result.status == "fail"
    assert "read timed out" in result.message
    assert took < 2.5


def test_body_cut_short_fails_naming_the_closed_connection(tmp_path):
    def cut(conn, stop):
        conn.sendall(_head(400) + b'{"status": "hea')

    with RawTarget(cut) as target:
        result = check(tmp_path, url=target.url, expect=["status == 'healthy'"])
    assert result.status == "fail"
    assert "closed the connection without a complete response" in result.message


def test_chunked_gzip_body_is_decoded(tmp_path):
    """Compressed, chunked answers (nginx in front of the API) are read like any other."""
    body = gzip.compress(json.dumps({"status": "healthy", "pad": "x" * 200_000}).encode())

    def chunked(conn, stop):
        conn.sendall(_head(None, "Content-Encoding: gzip\r\n"))
        for i in range(0, len(body), 1000):
            part = body[i:i + 1000]
            conn.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
        conn.sendall(b"0\r\n\r\n")

    with RawTarget(chunked) as target:
        result = check(tmp_path, url=target.url, expect=["status == 'healthy'"])
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["body_bytes"] > 200_000


def test_server_error_status_fails_naming_the_status(target, tmp_path):
    """Runbook: /health returns 200."""
    result = check(tmp_path, url=target.url + "/status/500")
    assert result.status == "fail"
    assert "HTTP status == 200" in result.message and "500" in result.message
    assert result.evidence["observed"]["status_code"] == 500


def test_expected_non_200_status_passes(target, tmp_path):
    """Runbook: an unauthenticated call to the admin API is refused (401 or 403)."""
    result = check(tmp_path, url=target.url + "/status/403", status=[401, 403])
    assert result.status == "pass", result.message


def test_truncated_json_fails_naming_not_valid_json(target, tmp_path):
    """Runbook: /health body is JSON -- a truncated body is a failure, not a crash."""
    result = check(tmp_path, url=target.url + "/malformed", expect=["status == 'healthy'"])
    assert result.status == "fail"
    assert "not valid JSON" in result.message
    assert "heal" in result.message  # the start of the body is shown


def test_oversized_body_fails_naming_max_body_bytes_and_stops_reading(target, tmp_path):
    """Runbook guard: a 10 MB /health answer is a fault, and the probe must not swallow it."""
    started = time.monotonic()
    result = check(tmp_path, url=target.url + f"/big/{10 * 1024 * 1024}", max_body_bytes="1MB")
    took = time.monotonic() - started
    assert result.status == "fail"
    assert "max_body_bytes" in result.message
    assert took < 3


def test_body_within_raised_max_body_bytes_passes(target, tmp_path):
    """The same large body is accepted when the limit allows it (the limit is the cause above)."""
    result = check(tmp_path, url=target.url + f"/big/{2 * 1024 * 1024}", max_body_bytes="4MB")
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["body_bytes"] == 2 * 1024 * 1024


def test_redirect_loop_fails_naming_redirect_loop(target, tmp_path):
    result = check(tmp_path, url=target.url + "/redirect-loop", max_redirects=5)
    assert result.status == "fail"
    assert "redirect loop" in result.message


def test_self_signed_certificate_fails_verification_by_default(tls_target, tmp_path):
    """Runbook: https endpoints present a trusted certificate."""
    result = check(tmp_path, url=tls_target.url + "/health")
    assert result.status == "fail"
    assert "certificate verify failed" in result.message


# opsgate turns this warning off at import, but pytest re-enables warnings per test
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_certificate_expiring_soon_fails_even_without_verification(tls_target, tmp_path):
    """Runbook: certificate has at least 7 days left -- checked even when verification is off."""
    result = check(tmp_path, url=tls_target.url + "/health", tls_verify=False, cert_min_days=7)
    assert result.status == "fail"
    assert "certificate days left" in result.message
    days = result.evidence["observed"]["cert_days_left"]
    assert 2.9 <= days <= 3.01
    assert "observed 3" in result.message


def test_certificate_expiring_soon_warns_with_trusted_ca_bundle(tls_target, cert, tmp_path):
    """Runbook: under 7 days left is a warning when only cert_warn_days is set; the CA bundle is trusted."""
    result = check(tmp_path, url=tls_target.url + "/health", tls_verify=str(cert.cert_path), cert_warn_days=7)
    assert result.status == "warn", result.message
    assert "certificate days left" in result.message


def test_certificate_with_enough_days_left_passes(tls_target, cert, tmp_path):
    result = check(tmp_path, url=tls_target.url + "/health", tls_verify=str(cert.cert_path),
                   cert_min_days=1, cert_warn_days=2, expect=["status == 'healthy'"])
    assert result.status == "pass", result.message


def test_ca_bundle_path_is_relative_to_base_dir(tls_target, cert):
    """``tls_verify: cert.pem`` in an environment file means next to that file."""
    result = check(cert.cert_path.parent, url=tls_target.url + "/health", tls_verify="cert.pem")
    assert result.status == "pass", result.message


def test_empty_model_list_fails(target, tmp_path):
    """Runbook: Ollama /api/tags lists at least one model."""
    result = check(tmp_path, url=target.url + "/models-empty", expect=["length(models) > 0"])
    assert result.status == "fail"
    assert "length(models) > 0" in result.message and "observed 0" in result.message


def test_model_list_with_a_model_passes(target, tmp_path):
    result = check(tmp_path, url=target.url + "/models", expect=["length(models) > 0"])
    assert result.status == "pass", result.message


def test_body_regex_on_plain_text(target, tmp_path):
    """Runbook: the readiness page says "OK ready"."""
    assert check(tmp_path, url=target.url + "/text", body_regex=r"^OK ready$").status == "pass"
    result = check(tmp_path, url=target.url + "/text", body_regex=r"^ready: yes$")
    assert result.status == "fail"
    assert "body matches /^ready: yes$/" in result.message
    assert "OK ready" in result.message  # the body is shown next to the failure


def test_body_not_regex_fails_when_present(target, tmp_path):
    result = check(tmp_path, url=target.url + "/degraded", body_not_regex="degraded")
    assert result.status == "fail"
    assert "body has no /degraded/" in result.message


def test_configured_headers_are_sent(target, tmp_path):
    """Runbook: calls carry the probe header the upstream expects (the echo's body key ``headers``
    is read as ``@.headers``: a condition starting with ``headers.`` reads the response's headers)."""
    result = check(tmp_path, url=target.url + "/echo", headers={"X-Probe": "yes"},
                   expect=["@.headers.\"x-probe\" == 'yes'"])
    assert result.status == "pass", result.message
    without = check(tmp_path, url=target.url + "/echo", expect=["@.headers.\"x-probe\" == 'yes'"])
    assert without.status == "fail"
    assert "x-probe" in without.message and "missing" in without.message


def test_method_and_body_are_sent(target, tmp_path):
    result = check(tmp_path, url=target.url + "/echo", method="POST", body='{"q": 1}',
                   expect=["method == 'POST'", "@.headers.\"content-length\" == '8'"])
    assert result.status == "pass", result.message


def test_connection_refused_is_named(tmp_path):
    """Runbook: the API is up -- nothing listening is "connection refused", not a crash."""
    result = check(tmp_path, url=f"http://127.0.0.1:{free_port()}/health", timeout=2)
    assert result.status == "fail"
    assert "connection refused" in result.message


# --- a JSON request body, response headers in conditions, the whole-reply budget ---------------

class ChatTarget:
    """A chat service on loopback as the runbooks call it (`curl -X POST /simple-chat -H
    "Content-Type: application/json" -d '{"message": ...}'`): it answers only JSON requests,
    echoes what it was sent under ``received``, and says CORS on /cors only.
    Routes: POST /simple-chat (message "silence" gets an empty response), GET /cors, GET /page."""

    def __enter__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, payload, ctype="application/json", extra=None):
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Type": ctype, "Content-Length": len(body), **(extra or {})}.items():
                    self.send_header(name, str(value))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Type") != "application/json":
                    return self.reply(415, {"error": f"expected application/json, got {self.headers.get('Content-Type')}"})
                sent = json.loads(raw)
                answer = "" if sent.get("message") == "silence" else f"Hello! You said: {sent.get('message')}"
                self.reply(200, {"response": answer, "model": "tinyllama", "received": sent})

            def do_GET(self):  # noqa: N802
                if self.path == "/cors":
                    return self.reply(200, {"status": "ok"}, extra={"Access-Control-Allow-Origin": "*",
                                                                    "Set-Cookie": "session=cookie-secret-0042"})
                if self.path == "/page":
                    return self.reply(200, b"<html>ok</html>", "text/html; charset=utf-8")
                self.reply(200, {"status": "ok"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def chat():
    with ChatTarget() as t:
        yield t


def test_post_with_a_json_body_and_conditions_on_the_reply(chat, tmp_path):
    """Runbook (Jarvis): POST /simple-chat {"message": "Hello, system test"} | jq '.response'."""
    result = check(tmp_path, url=chat.url + "/simple-chat", method="POST", json={"message": "Hello, system test"},
                   expect=["length(response) > 0", "received.message == 'Hello, system test'"],
                   max_latency_ms=5000)
    assert result.status == "pass", result.message


@pytest.mark.negative("http")
def test_chat_reply_without_an_answer_fails(chat, tmp_path):
    """Runbook (Jarvis): the chat request returns no answer."""
    result = check(tmp_path, url=chat.url + "/simple-chat", method="POST", json={"message": "silence"},
                   expect=["length(response) > 0"])
    assert result.status == "fail"
    assert result.message.startswith("length(response) > 0: observed 0")


@pytest.mark.negative("http")
def test_json_body_sent_with_another_content_type_is_refused_by_the_service(chat, tmp_path):
    """Content-Type is application/json unless the headers say otherwise: then the service's 415 shows."""
    result = check(tmp_path, url=chat.url + "/simple-chat", method="POST", json={"message": "hi"},
                   headers={"content-type": "text/plain"})
    assert result.status == "fail"
    assert "HTTP status == 200: observed 415" in result.message and "expected application/json" in result.message


def test_a_json_body_needs_a_method_that_sends_one():
    with pytest.raises(ValueError, match="a json body needs method POST, PUT, PATCH or DELETE, seen GET"):
        HttpCheck(name="x", url="http://h/", json={"a": 1})
    with pytest.raises(ValueError, match="expected json or body, not both"):
        HttpCheck(name="x", url="http://h/", method="POST", json={"a": 1}, body="{}")


def test_cors_header_condition_passes_and_secret_headers_stay_out_of_outputs(chat, tmp_path):
    """Runbook (Aura): check CORS settings."""
    from opsgate.redact import sink

    result = check(tmp_path, url=chat.url + "/cors", expect=["headers.\"access-control-allow-origin\" == '*'",
                                                              "status == 'ok'"])
    assert result.status == "pass", result.message
    headers = result.evidence["observed"]["headers"]
    assert headers["access-control-allow-origin"] == "*" and headers["content-type"] == "application/json"
    assert "cookie-secret-0042" not in json.dumps(sink(result.to_json()))


@pytest.mark.negative("http")
def test_missing_cors_header_fails_naming_it(chat, tmp_path):
    result = check(tmp_path, url=chat.url + "/health", expect=["headers.\"access-control-allow-origin\" == '*'"])
    assert result.status == "fail"
    assert result.message.startswith("headers.\"access-control-allow-origin\" == '*': observed missing (null)")


@pytest.mark.negative("http")
def test_wrong_content_type_fails_and_a_header_condition_needs_no_json_body(chat, tmp_path):
    """An HTML page where JSON was expected: the header condition says so (the body is not parsed
    for it); warn conditions read headers too."""
    result = check(tmp_path, url=chat.url + "/page", expect=["headers.\"content-type\" == 'application/json'"])
    assert result.status == "fail"
    assert result.message.startswith("headers.\"content-type\" == 'application/json': observed "
                                     "\"text/html; charset=utf-8\"")
    result = check(tmp_path, url=chat.url + "/page", warn=["headers.\"content-type\" == 'application/json'"])
    assert result.status == "warn"


@pytest.mark.negative("http")
def test_max_latency_ms_holds_the_whole_reply_not_just_its_headers(tmp_path):
    """Headers at once, the body 600 ms later: the budget counts until the body's last byte."""
    def late_body(conn, stop):
        body = b'{"status": "healthy"}'
        conn.sendall(_head(len(body)))
        stop.wait(0.6)
        conn.sendall(body)

    with RawTarget(late_body) as target:
        result = check(tmp_path, url=target.url, max_latency_ms=300, expect=["status == 'healthy'"])
    assert result.status == "fail"
    assert "elapsed_ms <= 300" in result.message
    assert result.evidence["observed"]["elapsed_ms"] >= 600


@pytest.mark.negative("http")
def test_a_function_over_a_header_reads_the_header_not_the_body(chat, tmp_path):
    """contains(headers."content-type", ...) names headers inside a function: it reads the
    response's headers (a content type with a charset can be matched), not a body key."""
    ok = check(tmp_path, url=chat.url + "/health", expect=["contains(headers.\"content-type\", 'json')"])
    assert ok.status == "pass", ok.message
    html = check(tmp_path, url=chat.url + "/page", expect=["contains(headers.\"content-type\", 'json')"])
    assert html.status == "fail"
    assert "contains(headers.\"content-type\", 'json')" in html.message and "text/html" in html.message
