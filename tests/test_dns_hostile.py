"""``dns`` checks against broken or hostile servers: a UDP server on a free loopback port that
answers each query with datagrams a test scripts (records for another name, a wrong ID,
garbage, a truncated answer whose TCP retry goes nowhere).

What must never happen: a PASS on records that are not the name's (a server answering for
another name with the expected address), or a check held past its timeout.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable

import dns.flags
import dns.message
import dns.rrset

from opsgate.model import DnsCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check
from tests.support.scripted_tcp import ScriptedTcp

GRACE_S = 5


class ScriptedDns:
    """UDP on 127.0.0.1: each query is answered by ``script(query)``, a list of wire datagrams.
    ``tcp``: a ScriptedTcp whose port it shares (the retry of a truncated answer)."""

    def __init__(self, script: Callable[[dns.message.Message], list[bytes]], tcp: ScriptedTcp | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", tcp.port if tcp else 0))
        self.port = self.sock.getsockname()[1]
        self.script = script

    def __enter__(self) -> "ScriptedDns":
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
                for wire in self.script(dns.message.from_wire(data)):
                    self.sock.sendto(wire, peer)
            except OSError:
                return

    def __exit__(self, *exc) -> None:
        self.sock.close()


def answer(query, *records: tuple[str, str, str], id_shift: int = 0, truncated: bool = False) -> bytes:
    reply = dns.message.make_response(query)
    for name, kind, value in records:
        reply.answer.append(dns.rrset.from_text(name, 60, "IN", kind, value))
    reply.id = (reply.id + id_shift) % 65536
    if truncated:
        reply.flags |= dns.flags.TC
    return reply.to_wire()


def check(server: ScriptedDns, timeout: float = 1, **fields):
    box = {}
    fields.setdefault("answers", ["10.0.0.5"])
    item = DnsCheck(name="d", host="api.internal", server=f"127.0.0.1:{server.port}", timeout=timeout, **fields)
    worker = threading.Thread(target=lambda: box.update(result=run_check(item, ProbeContext())), daemon=True)
    worker.start()
    worker.join(timeout + GRACE_S)
    assert "result" in box, f"the check was still running {GRACE_S}s past its {timeout:g}s timeout"
    return box["result"]


def test_records_for_another_name_are_not_the_answer():
    """The expected address under another name passed: any A record of the answer counted."""
    with ScriptedDns(lambda q: [answer(q, ("evil.example.", "A", "10.0.0.5"))]) as server:
        result = check(server)
    assert result.status == "fail"
    assert result.message == (f"dns api.internal: no A record in the answer from 127.0.0.1:{server.port} "
                              "(it has records for: evil.example A)")


def test_a_cname_chain_to_the_address_still_passes():
    with ScriptedDns(lambda q: [answer(q, ("api.internal.", "CNAME", "web.internal."),
                                       ("web.internal.", "A", "10.0.0.5"))]) as server:
        result = check(server)
    assert result.status == "pass", result.message


def test_a_cname_asked_for_is_the_answer():
    with ScriptedDns(lambda q: [answer(q, ("api.internal.", "CNAME", "web.internal."))]) as server:
        result = check(server, record="CNAME", answers=["web.internal"])
    assert result.status == "pass", result.message


def test_an_answer_with_another_id_fails_naming_it():
    with ScriptedDns(lambda q: [answer(q, ("api.internal.", "A", "10.0.0.5"), id_shift=1)]) as server:
        result = check(server)
    assert result.status == "fail"
    assert "does not respond to the question asked" in result.message


def test_garbage_fails_naming_it():
    with ScriptedDns(lambda q: [b"\x00\x01garbage"]) as server:
        result = check(server)
    assert result.status == "fail"
    assert result.message.startswith(f"dns api.internal: unusable answer from 127.0.0.1:{server.port}:")


def test_a_truncated_answer_whose_tcp_retry_never_answers_fails_in_time():
    def read_and_never_answer(conn):
        while conn.recv(65536):
            pass

    with ScriptedTcp(read_and_never_answer) as tcp, \
            ScriptedDns(lambda q: [answer(q, ("api.internal.", "A", "10.0.0.5"), truncated=True)], tcp) as server:
        result = check(server)
    assert result.status == "fail"
    assert result.message == f"dns api.internal: no answer from 127.0.0.1:{server.port} within 1s (timed out)"
