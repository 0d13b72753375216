"""``container`` checks against a broken or hostile container engine: a fake Docker Engine API
on a free loopback port (``engine: tcp://...``) that answers /version properly and then
trickles, or answers ``null`` where a container's inspect document belongs.

What must never happen: a check held past its phases' timeouts (the Docker SDK's timeout is
per socket read), or a PASS on a document that is not a container's.
"""

from __future__ import annotations

import json
import threading

from opsgate.model import ContainerCheck
from opsgate.probes import ProbeContext
from opsgate.probes.container import PHASES
from opsgate.runner import run_check
from tests.support.scripted_tcp import ScriptedTcp

GRACE_S = 5
INSPECT = {"Id": "abc", "Name": "/web", "RestartCount": 0, "Config": {"Image": "web:1", "Labels": {}},
           "State": {"Status": "running", "StartedAt": "2020-01-01T00:00:00Z"}}


def http(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class FakeEngine(ScriptedTcp):
    """/version answered as Docker 20.10 would; every other request gets ``answer(self, conn)``."""

    def __init__(self, answer):
        self.answer = answer
        super().__init__(self._serve)

    def _serve(self, conn) -> None:
        buffer = b""
        while not self.stopped.is_set():
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            if head.split(b" ")[1].endswith(b"/version"):
                conn.sendall(http(json.dumps({"ApiVersion": "1.41", "Version": "20.10.0", "MinAPIVersion": "1.12"}).encode()))
            else:
                self.answer(self, conn)


def check(engine: FakeEngine, timeout: float = 1):
    box = {}
    item = ContainerCheck(name="c", container="web", engine=f"tcp://127.0.0.1:{engine.port}", timeout=timeout)
    worker = threading.Thread(target=lambda: box.update(result=run_check(item, ProbeContext())), daemon=True)
    worker.start()
    limit = PHASES * timeout + item.cpu_sample + 1
    worker.join(limit + GRACE_S)
    assert "result" in box, f"the check was still running {GRACE_S}s past its {limit:g}s bound"
    return box["result"]


def test_the_fake_engine_passes_when_healthy():
    with FakeEngine(lambda engine, conn: conn.sendall(http(json.dumps(INSPECT).encode()))) as engine:
        result = check(engine)
    assert result.status == "pass", result.message


def test_an_engine_that_trickles_its_answer_is_cut():
    """Each byte within the per-read timeout, the whole never: the check waited for ever."""
    with FakeEngine(lambda engine, conn: engine.trickle(conn, http(json.dumps(INSPECT).encode() + b" " * 100_000))) as engine:
        result = check(engine)
    assert result.status == "fail"
    assert result.message == (f"container web: the container engine at tcp://127.0.0.1:{engine.port} did not finish "
                              f"answering within {PHASES * 1 + 1 + 1:g}s (it kept the connection open, answering too slowly)")


def test_a_null_inspect_document_never_passes():
    with FakeEngine(lambda engine, conn: conn.sendall(http(b"null"))) as engine:
        result = check(engine)
    assert result.status == "error"
    assert "Can't create Container from None" in result.message
