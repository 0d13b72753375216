"""A real DNS server on a free loopback UDP port, for the ``dns`` kind's tests.

It answers from a table of records (dnspython builds the wire messages), NXDOMAIN for any
other name, and can be told to stay silent for a name (a server that never answers) or to
answer it late.

>>> with DnsServer({"api.internal": {"A": ["10.0.0.5"]}}) as server:
...     server.address.startswith("127.0.0.1:")
True
"""

from __future__ import annotations

import socket
import threading
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class DnsServer:
    """``records``: name -> {type: [answers]}; ``silent``: names never answered; ``delay``: name
    -> seconds to wait before answering."""

    def __init__(self, records: dict[str, dict[str, list[str]]], silent: set[str] = frozenset(),
                 delay: dict[str, float] | None = None) -> None:
        self.records = {name.rstrip(".").lower(): value for name, value in records.items()}
        self.silent = {name.rstrip(".").lower() for name in silent}
        self.delay = {name.rstrip(".").lower(): s for name, s in (delay or {}).items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.queries: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-server", daemon=True)

    def __enter__(self) -> "DnsServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:  # a malformed packet is dropped, as a server would
                continue
            name = query.question[0].name.to_text().rstrip(".").lower()
            self.queries.append(name)
            if name in self.silent:
                continue
            # a late answer goes out from its own thread, so other queries are not held up
            threading.Thread(target=self._answer, args=(query, name, peer), daemon=True).start()

    def _answer(self, query: dns.message.Message, name: str, peer) -> None:
        if name in self.delay:
            time.sleep(self.delay[name])
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        question = query.question[0]
        table = self.records.get(name)
        if table is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        else:
            kind = dns.rdatatype.to_text(question.rdtype)
            if table.get(kind):
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", kind, *table[kind]))
        try:
            self.sock.sendto(reply.to_wire(), peer)
        except OSError:
            pass
