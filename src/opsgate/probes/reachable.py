"""``reachable``: a host answers - connect and run a command through its target within the timeout
(remotely ``echo <token>``, whose token must come back: exit code 0 alone is not an answer).

An environment's loader adds one ``reachable@<host>`` check per host that has checks (see
:mod:`opsgate.hosts`); every check on that host depends on it, so a host that is down, hangs,
refuses its host key or its credentials is one failure with its cause, and its other checks
are blocked by it. The evidence carries the connection set-up time (``connect_s``): the
first operation on a host opens its connection. A refusal says why, never with a secret:
"host key verification failed for 10.77.1.2 (known_hosts: /etc/opsgate/known_hosts)".

>>> from opsgate.probes import ProbeContext
>>> obs = observe(ReachableCheck(name="here"), ProbeContext())
>>> obs.error, sorted(obs.values)
(None, ['connect_s', 'transport'])
"""

from __future__ import annotations

import time
from typing import ClassVar

from ..conditions import Condition
from ..kinds import Kind
from ..results import Observation
from ..schema import CheckItem

# what ssh (or paramiko) says -> the cause as an operator would name it; {address}, {known_hosts}
# and {identity} are filled from the host's options (never a password)
_CAUSES = (
    (("REMOTE HOST IDENTIFICATION HAS CHANGED",), "host key verification failed for {address}: its key is not the "
     "one {known_hosts} lists for it (the host was replaced, or someone poses as it)"),
    (("Host key verification failed", "No ED25519 host key is known", "No ECDSA host key is known",
      "No RSA host key is known", "not found in known_hosts", "BadHostKeyException", "Server '"),
     "host key verification failed for {address} ({known_hosts} does not list its key)"),
    (("Permission denied", "Authentication failed", "AuthenticationException", "no acceptable"),
     "authentication failed for {address} ({identity})"),
    (("Connection refused",), "connection refused by {address} (no ssh server listens there)"),
    (("Connection timed out", "timed out", "did not answer"), "no answer from {address} within {timeout:g}s"),
    (("No route to host", "Network is unreachable"), "no route to {address}"),
    (("Could not resolve hostname", "Name or service not known"), "cannot resolve {address}"),
)


class ReachableCheck(CheckItem):
    """A host answers: its target connects and runs a command (remotely ``echo <token>``, the token read back) within the timeout."""

    kind: ClassVar[str] = "reachable"


def cause(text: str, **where: object) -> str:
    """The cause of a failed connection, from the transport's message.

    >>> cause("ssh: Host key verification failed.", address="10.0.0.1:22", known_hosts="kh", identity="agent",
    ...       timeout=10)
    'host key verification failed for 10.0.0.1:22 (kh does not list its key)'
    >>> cause("something odd", address="x", known_hosts="kh", identity="agent", timeout=10)
    'something odd'
    """
    for phrases, wording in _CAUSES:
        if any(p in text for p in phrases):
            return wording.format(**where)
    return text


def observe(item: ReachableCheck, ctx) -> Observation:
    target = ctx.target
    where = ctx.describe() if hasattr(ctx, "describe") else {}
    values: dict = {"transport": where.get("transport", "local")}
    started = time.perf_counter()
    try:
        target.ping(item.timeout)
    except OSError as exc:  # TimeoutError too
        values["connect_s"] = round(time.perf_counter() - started, 3)
        text = exc.strerror if isinstance(exc.strerror, str) and exc.strerror else str(exc)
        text = text.removeprefix(f"{target.name}: ")
        if isinstance(exc, TimeoutError) and not any(p in text for phrases, _ in _CAUSES for p in phrases):
            text += " (timed out)"
        found = cause(text, address=where.get("address", target.name), known_hosts=where.get("known_hosts", "known_hosts"),
                      identity=where.get("identity", "the ssh agent's keys"), timeout=item.timeout)
        host = f"{ctx.host}: " if getattr(ctx, "host", None) else ""
        shown = found if found != text else f"cannot run a command on {where.get('address', target.name)} " \
                                            f"({values['transport']}): {text}"
        return Observation(values, error=f"{host}{shown}")
    values["connect_s"] = round(time.perf_counter() - started, 3)
    return Observation(values)


def limits(item: ReachableCheck) -> list[Condition]:
    return []


KIND = Kind(name="reachable", schema=ReachableCheck, observe=observe, limits=limits,
            summary="a host answers: its target connects and runs a command within the timeout (added per host "
                    "of a hosts: section; its checks depend on it)",
            host_level=True)
