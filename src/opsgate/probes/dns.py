"""``dns``: a name resolves (A, AAAA or CNAME) to the expected answers within a latency.

Two ways to ask:

- ``server: 127.0.0.1:5353`` (or ``10.0.0.2``, ``[::1]:53``): one query to that server with
  dnspython, bounded by the item's timeout. Its answer code is the evidence: NXDOMAIN,
  SERVFAIL or no answer at all (timed out) are named in the failure.
- no server: the system's own path, as the application resolves: ``getaddrinfo`` (so
  ``/etc/hosts`` and nsswitch count) for A and AAAA, run in a thread that is abandoned at
  the timeout; CNAME needs a DNS query, so it goes to the first nameserver of
  ``/etc/resolv.conf`` through dnspython.

Answers are compared normalised: addresses in their canonical form, names in lower case
without the trailing dot. ``answers`` is the exact set expected; ``includes`` lists answers
that must be among them (others may be too).

>>> from opsgate.probes import ProbeContext
>>> obs = observe(DnsCheck(name="lo", host="localhost", record="A"), ProbeContext())
>>> obs.error, "127.0.0.1" in obs.values["answers"]
(None, True)
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from ..conditions import Condition
from ..kinds import Kind
from ..results import Observation
from ..schema import CheckItem


class DnsCheck(CheckItem):
    """A DNS name: resolves (A/AAAA/CNAME) to the expected answers, within a latency."""

    kind: ClassVar[str] = "dns"
    host: str = Field(description="the name to resolve, e.g. api.internal")
    record: Literal["A", "AAAA", "CNAME"] = "A"
    server: str | None = Field(None, description="a DNS server to ask, host[:port] ([v6]:port); the system "
                                                 "resolver when absent")
    answers: list[str] | None = Field(None, description="the exact set of answers expected")
    includes: list[str] = Field([], description="answers that must be among those returned")
    max_latency_ms: float | None = None
    warn_latency_ms: float | None = None

    @field_validator("server")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        if value is not None:
            server_address(value)
        return value

    @field_validator("answers", "includes")
    @classmethod
    def _answers(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else [normalise(v) for v in values]


def server_address(text: str) -> tuple[str, int]:
    """``host[:port]`` as an address and port (53 by default); ValueError when it is not one.

    >>> server_address("127.0.0.1:5353"), server_address("10.0.0.2"), server_address("[::1]:53")
    (('127.0.0.1', 5353), ('10.0.0.2', 53), ('::1', 53))
    """
    found = re.fullmatch(r"\[(?P<v6>[0-9A-Fa-f:.]+)\](?::(?P<p6>\d+))?|(?P<v4>[^:\[\]]+)(?::(?P<p4>\d+))?", text.strip())
    if found:
        host = found.group("v6") or found.group("v4")
        port = int(found.group("p6") or found.group("p4") or 53)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            if 0 < port < 65536:
                return host, port
    if text.count(":") > 1:  # a bare IPv6 address, no port
        try:
            return str(ipaddress.ip_address(text.strip())), 53
        except ValueError:
            pass
    raise ValueError(f"expected a DNS server's IP address with an optional port (127.0.0.1:5353, [::1]:53), "
                     f"seen {text!r}")


def normalise(answer: str) -> str:
    """An address in canonical form, a name in lower case without its trailing dot.

    >>> normalise("2001:DB8:0:0::1"), normalise("Web.Example.COM.")
    ('2001:db8::1', 'web.example.com')
    """
    text = answer.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text.rstrip(".").lower()


class _Failed(Exception):
    """The name did not resolve; the message says why."""


def _ask_server(item: DnsCheck, address: str, port: int, shown: str) -> list[str]:
    """One query to ``address:port`` over UDP (TCP when the answer is truncated)."""
    import dns.exception
    import dns.flags
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    query = dns.message.make_query(item.host, item.record)
    deadline = time.monotonic() + item.timeout
    try:
        reply = dns.query.udp(query, address, timeout=item.timeout, port=port)
        if reply.flags & dns.flags.TC:  # too big for UDP: asked again over TCP, in what is left of the timeout
            left = deadline - time.monotonic()
            if left <= 0:
                raise dns.exception.Timeout
            reply = dns.query.tcp(query, address, timeout=left, port=port)
    except dns.exception.Timeout:
        raise _Failed(f"no answer from {shown} within {item.timeout:g}s (timed out)") from None
    except OSError as exc:
        raise _Failed(f"cannot ask {shown}: {exc.strerror or exc}") from None
    except dns.exception.DNSException as exc:
        raise _Failed(f"unusable answer from {shown}: {exc}") from None
    code = reply.rcode()
    if code != dns.rcode.NOERROR:
        raise _Failed(f"{dns.rcode.to_text(code)} from {shown}")
    # only the records of the name asked, through its CNAME chain: a record for another name
    # (a broken or hostile server's) with the expected address passed the check
    try:
        answer = reply.resolve_chaining().answer
    except dns.exception.DNSException as exc:
        raise _Failed(f"unusable answer from {shown}: {exc}") from None
    if answer is None:
        others = sorted({f"{rrset.name.to_text(omit_final_dot=True)} {dns.rdatatype.to_text(rrset.rdtype)}"
                         for rrset in reply.answer})
        raise _Failed(f"no {item.record} record in the answer from {shown}"
                      + (f" (it has records for: {', '.join(others[:5])})" if others else ""))
    return [rd.to_text() for rd in answer]


def _system_nameserver() -> tuple[str, int]:
    try:
        with open("/etc/resolv.conf", encoding="utf-8", errors="replace") as conf:
            for line in conf:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    return server_address(parts[1])
    except (OSError, ValueError):
        pass
    raise _Failed("no nameserver in /etc/resolv.conf to ask for a CNAME (set server:)")


def _ask_system(item: DnsCheck) -> list[str]:
    """getaddrinfo in a daemon thread: the C resolver has no timeout of its own to pass."""
    family = socket.AF_INET if item.record == "A" else socket.AF_INET6
    box: dict = {}

    def resolve() -> None:
        try:
            box["infos"] = socket.getaddrinfo(item.host, None, family, socket.SOCK_STREAM)
        except OSError as exc:
            box["error"] = exc

    worker = threading.Thread(target=resolve, name=f"dns {item.host}", daemon=True)
    worker.start()
    worker.join(item.timeout)
    if worker.is_alive():
        raise _Failed(f"the system resolver gave no answer within {item.timeout:g}s (timed out)")
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, socket.gaierror) and exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            raise _Failed(f"does not resolve through the system resolver ({exc.strerror}; NXDOMAIN or no "
                          f"{item.record} record)")
        raise _Failed(f"the system resolver failed: {getattr(exc, 'strerror', None) or exc}")
    return [info[4][0] for info in box["infos"]]


def observe(item: DnsCheck, ctx) -> Observation:
    """Resolve once; ``answers`` (normalised, sorted, unique), ``latency_ms`` and, per ``includes``
    answer, whether it was returned."""
    if item.server:
        address, port = server_address(item.server)
        shown = item.server
    elif item.record == "CNAME":
        address, port = None, 0
        shown = "the system's nameserver"
    else:
        address, port, shown = None, 0, "the system resolver"
    values: dict = {"host": item.host, "record": item.record, "server": shown}
    started = time.perf_counter()
    try:
        if address is None and item.record == "CNAME":
            address, port = _system_nameserver()
            shown = values["server"] = f"{address}:{port}"
        found = _ask_server(item, address, port, shown) if address else _ask_system(item)
    except _Failed as exc:
        values["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return Observation(values, error=f"dns {item.host}: {exc}")
    values["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    answers = sorted({normalise(a) for a in found})
    values["answers"] = answers
    values["includes"] = {wanted: wanted in answers for wanted in item.includes}
    return Observation(values)


def limits(item: DnsCheck) -> list[Condition]:
    """Labels name the host, so a failure reads as a sentence.

    >>> [c.label for c in limits(DnsCheck(name="a", host="api.internal", answers=["10.0.0.5"], max_latency_ms=50))]
    ['dns api.internal A answers == ["10.0.0.5"]', 'dns api.internal: latency_ms <= 50']
    """
    shown = f"dns {item.host} {item.record}"
    out = []
    if item.answers is not None:
        expected = sorted(set(item.answers))
        out.append(Condition.compare("answers", "==", expected,
                                     label=f"{shown} answers == {'[' + ', '.join(map(repr, expected)) + ']'}"
                                     .replace("'", '"')))
    for wanted in item.includes:
        out.append(Condition.compare(("includes", wanted), "==", True, label=f"{shown} answers include {wanted}"))
    if item.max_latency_ms is not None:
        out.append(Condition.compare("latency_ms", "<=", item.max_latency_ms,
                                     label=f"dns {item.host}: latency_ms <= {item.max_latency_ms:g}"))
    if item.warn_latency_ms is not None:
        out.append(Condition.compare("latency_ms", "<=", item.warn_latency_ms, "warn",
                                     label=f"dns {item.host}: latency_ms <= {item.warn_latency_ms:g}"))
    return out


KIND = Kind(name="dns", schema=DnsCheck, observe=observe, limits=limits,
            summary="a DNS name: resolves (A/AAAA/CNAME) to the expected answers, within a latency, "
                    "from the system resolver or a given server",
            host_level=False)
