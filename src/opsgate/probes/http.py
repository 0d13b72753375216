"""``http``: one HTTP(S) request; status, latency, JSON body conditions, body regex, certificate expiry.

The whole request, body included, is bounded by the item's ``timeout``; the body is
read up to ``max_body_bytes``. For https the days left on the server's certificate
are observed over a separate TLS handshake, so an expiring certificate is caught
even when verification is off.

>>> from opsgate.model import HttpCheck
>>> from opsgate.probes import ProbeContext
>>> observe(HttpCheck(name="down", url="http://127.0.0.1:1/health", timeout=1), ProbeContext()).error
'GET http://127.0.0.1:1/health: connection refused'
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

import requests
import urllib3

from ..conditions import Condition
from ..model import HttpCheck
from ..redact import REDACTOR
from ..results import NO_DOCUMENT, Observation


# tls_verify: false is the user's explicit choice; the per-request warning would only add noise
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def _cause(exc: requests.RequestException, url: str, timeout: float, max_redirects: int) -> str:
    """Turn a requests exception into the operator's words."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return f"redirect loop: more than {max_redirects} redirects"
    if isinstance(exc, requests.exceptions.SSLError):
        reason = re.search(r"\[SSL[^\]]*\][^\(\)']*|certificate verify failed[^\(\)']*", text)
        return f"TLS error: {reason.group(0).strip() if reason else text[:200]}"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no connection within {timeout:g}s (connect timed out)"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"no response within {timeout:g}s (connected, but the server did not answer: read timed out)"
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return f"cannot resolve host {urlsplit(url).hostname!r}"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError) or "RemoteDisconnected" in text:
        return "the server closed the connection without a complete response"
    return f"{type(exc).__name__}: {text[:200]}"


def _body_chunks(response: requests.Response, size: int = 65536):
    """The body in pieces, each handed over as soon as it arrives, so the caller's deadline
    holds against a server that trickles (``iter_content`` waits for ``size`` bytes)."""
    raw = response.raw
    if not hasattr(raw, "read1"):  # urllib3 < 2.3
        yield from response.iter_content(size)
        return
    errors = urllib3.exceptions
    try:
        while chunk := raw.read1(size, decode_content=True):
            yield chunk
    except errors.ReadTimeoutError as exc:  # the same requests exceptions iter_content would raise
        raise requests.exceptions.ReadTimeout(exc) from exc
    except errors.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc
    except errors.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
    except (errors.ProtocolError, errors.IncompleteRead) as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except (errors.HTTPError, OSError) as exc:
        raise requests.exceptions.ConnectionError(exc) from exc


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


def _read_body(response: requests.Response, max_bytes: int, deadline: float) -> bytes:
    """The whole body, or _BodyTooLarge past ``max_bytes`` / _BodyTooSlow past ``deadline``."""
    body = bytearray()
    for chunk in _body_chunks(response):
        body += chunk
        if len(body) > max_bytes:
            raise _BodyTooLarge
        if time.monotonic() > deadline:
            raise _BodyTooSlow
    return bytes(body)


class FetchError(Exception):
    """A GET that did not complete; the message names the cause in the operator's words."""


def fetch(url: str, timeout: float, verify: bool | str = True, max_bytes: int = 16 * 1024 * 1024,
          params: dict | None = None) -> tuple[int, bytes]:
    """GET ``url`` (status, body), the whole body within ``timeout`` and ``max_bytes``; for
    probes that read an API (Prometheus, /metrics) rather than judge an endpoint.

    >>> fetch("http://127.0.0.1:1/metrics", 1)
    Traceback (most recent call last):
    opsgate.probes.http.FetchError: GET http://127.0.0.1:1/metrics: connection refused
    """
    deadline = time.monotonic() + timeout
    try:
        with requests.get(url, params=params, timeout=(timeout, timeout), verify=verify, stream=True) as response:
            return response.status_code, _read_body(response, max_bytes, deadline)
    except _BodyTooLarge:
        raise FetchError(f"GET {url}: response body exceeds {max_bytes} bytes") from None
    except _BodyTooSlow:
        raise FetchError(f"GET {url}: body not received within {timeout:g}s") from None
    except requests.RequestException as exc:
        raise FetchError(f"GET {url}: {_cause(exc, url, timeout, requests.models.DEFAULT_REDIRECT_LIMIT)}") from None


def cert_days_left(host: str, port: int, timeout: float) -> float:
    """Days until the certificate served at host:port expires (negative once expired)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    from cryptography import x509  # only https checks pay for importing it

    expires = x509.load_der_x509_certificate(der).not_valid_after_utc
    return round((expires - datetime.now(timezone.utc)).total_seconds() / 86400, 3)


def observe(item: HttpCheck, ctx) -> Observation:
    shown = f"{item.method} {item.url}"
    values: dict = {"url": item.url}
    deadline = time.monotonic() + item.timeout
    verify = item.tls_verify if isinstance(item.tls_verify, bool) else str(ctx.path(item.tls_verify))
    started = time.perf_counter()
    try:
        with requests.Session() as session:
            session.max_redirects = item.max_redirects
            with session.request(item.method, item.url, headers=item.header_values(), data=item.body,
                                 timeout=(item.timeout, item.timeout), verify=verify,
                                 allow_redirects=item.follow_redirects, stream=True) as response:
                body = _read_body(response, item.max_body_bytes, deadline)
    except _BodyTooLarge:
        return Observation(values, error=f"{shown}: response body exceeds max_body_bytes={item.max_body_bytes}")
    except _BodyTooSlow:
        return Observation(values, error=f"{shown}: body not received within {item.timeout:g}s")
    except requests.RequestException as exc:
        return Observation(values, error=f"{shown}: {_cause(exc, item.url, item.timeout, item.max_redirects)}")
    values.update(
        status_code=response.status_code,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
        body_bytes=len(body),
        content_type=response.headers.get("Content-Type", ""),
        redirects=len(response.history),
    )
    if response.history:
        values["final_url"] = response.url
    text = body.decode(response.encoding or "utf-8", errors="replace")
    excerpt = REDACTOR.text(" ".join(text[:300].split()))
    parts = urlsplit(item.url)
    if parts.scheme == "https":
        try:
            values["cert_days_left"] = cert_days_left(parts.hostname, parts.port or 443, item.timeout)
        except (OSError, ValueError) as exc:
            values["cert_error"] = str(exc)
    if item.body_regex:
        values["body_regex_found"] = bool(re.search(item.body_regex, text))
    if item.body_not_regex:
        values["body_not_regex_found"] = bool(re.search(item.body_not_regex, text))
    document = NO_DOCUMENT
    if item.expect or item.warn:
        try:
            document = json.loads(text)
        except ValueError as exc:
            return Observation(values, error=f"{shown}: body is not valid JSON ({exc}); body starts: {excerpt[:120]!r}",
                               details={"body_excerpt": excerpt})
    return Observation(values, document=document, details={"body_excerpt": excerpt}, explain=f"body: {excerpt[:120]}")


def limits(item: HttpCheck) -> list[Condition]:
    codes = item.status if isinstance(item.status, list) else [item.status]
    out = [Condition.compare("status_code", "in", codes, label=f"HTTP status in {codes}")
           if len(codes) > 1 else Condition.compare("status_code", "==", codes[0], label=f"HTTP status == {codes[0]}")]
    if item.max_latency_ms is not None:
        out.append(Condition.compare("elapsed_ms", "<=", item.max_latency_ms))
    if item.warn_latency_ms is not None:
        out.append(Condition.compare("elapsed_ms", "<=", item.warn_latency_ms, "warn"))
    if item.body_regex:
        out.append(Condition.compare("body_regex_found", "==", True, label=f"body matches /{item.body_regex}/"))
    if item.body_not_regex:
        out.append(Condition.compare("body_not_regex_found", "==", False, label=f"body has no /{item.body_not_regex}/"))
    if item.cert_min_days is not None:
        out.append(Condition.compare("cert_days_left", ">=", item.cert_min_days, label=f"certificate days left >= {item.cert_min_days:g}"))
    if item.cert_warn_days is not None:
        out.append(Condition.compare("cert_days_left", ">=", item.cert_warn_days, "warn",
                                     label=f"certificate days left >= {item.cert_warn_days:g}"))
    return out
