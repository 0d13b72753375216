"""``http``: one HTTP(S) exchange; status, latency, JSON body conditions, response headers, body regex,
certificate expiry.

Response headers are in the values as ``headers`` (names lower-cased, repeated headers joined
with ``, ``); ``expect``/``warn`` conditions that start with ``headers.`` read them rather than the
body: ``headers."access-control-allow-origin" == '*'`` (quote names with dashes; a body key named
``headers`` is read as ``@.headers``). A secret-looking
header's value (``set-cookie``) is registered as a secret, so outputs mask it.

The exchange itself - one deadline for all of it, redirects that never carry a secret to
another origin, a body read in bounded memory and decoded in its charset - is
:mod:`opsgate.httpclient`'s; this module is the kind: its schema, probe and limits.

>>> from opsgate.probes import ProbeContext
>>> observe(HttpCheck(name="down", url="http://127.0.0.1:1/health", timeout=1), ProbeContext()).error
'GET http://127.0.0.1:1/health: connection refused'
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from ..conditions import Condition
from ..kinds import Kind
from ..redact import REDACTOR, is_secret_name
from ..results import NO_DOCUMENT, Observation
from ..schema import CheckItem, Regex, SecretValue, Size


class HttpCheck(CheckItem):
    """An HTTP(S) request: status, latency, JSON body conditions, response headers, body regex,
    certificate expiry; a JSON request body for POST/PUT (``json:``) for the runbooks' chat and
    generate requests. ``expect``/``warn`` read the JSON reply, except conditions starting with
    ``headers.``, which read the response headers (names lower-cased; ``@.headers`` is a body key)."""

    kind: ClassVar[str] = "http"
    url: str = Field(pattern=r"^https?://", description="http:// or https:// URL")
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str | SecretValue] = {}
    body: str | None = None
    json_body: Any = Field(None, alias="json", description="a JSON request body (POST, PUT, PATCH, DELETE): sent "
                                                           "serialised, with Content-Type: application/json unless "
                                                           "headers set one")
    status: int | list[int] = 200
    max_latency_ms: float | None = Field(None, description="budget for the whole reply in ms: connecting, TLS, the "
                                                           "request, every redirect and the body read to its end")
    warn_latency_ms: float | None = Field(None, description="whole-reply time in ms above which it warns")
    body_regex: Regex | None = None
    body_not_regex: Regex | None = None
    tls_verify: bool | str = Field(True, description="false, true, or a CA bundle path")
    cert_min_days: float | None = None
    cert_warn_days: float | None = None
    follow_redirects: bool = True
    max_redirects: int = Field(10, ge=0)
    max_body_bytes: Size = 1024 * 1024

    @model_validator(mode="after")
    def _one_body(self) -> "HttpCheck":
        if self.json_body is not None and self.body is not None:
            raise ValueError("expected json or body, not both")
        if self.json_body is not None and self.method in ("GET", "HEAD", "OPTIONS"):
            raise ValueError(f"a json body needs method POST, PUT, PATCH or DELETE, seen {self.method}")
        return self

    def header_values(self) -> dict[str, str]:
        sent = {k: (v.value if isinstance(v, SecretValue) else v) for k, v in self.headers.items()}
        if self.json_body is not None and not any(k.lower() == "content-type" for k in sent):
            sent = {"Content-Type": "application/json", **sent}
        return sent

    def request_body(self) -> str | None:
        return json.dumps(self.json_body) if self.json_body is not None else self.body

    def conditions(self) -> list[Condition]:
        """The conditions on the reply's body; those on its headers are limits (they read ``values``)."""
        return [c for c in super().conditions() if not on_headers(c.expression)]

    def header_conditions(self) -> list[Condition]:
        return [c for c in super().conditions() if on_headers(c.expression)]


def on_headers(expression: str) -> bool:
    """Whether a condition reads the response headers rather than the body: it names
    ``headers`` at its top level, anywhere (``headers.vary``, ``contains(headers."content-type",
    'json')``); ``@.headers`` and ``data.headers`` are body keys.

    >>> on_headers("headers.vary == 'Origin'"), on_headers("status == 'ok'")
    (True, False)
    >>> on_headers('contains(headers."content-type", `"json"`)'), on_headers("data.headers == `1`")
    (True, False)
    """
    return _on_headers(expression)


@functools.lru_cache(maxsize=4096)  # asked for each condition of each check as it runs
def _on_headers(expression: str) -> bool:
    import jmespath

    try:
        tree = jmespath.compile(expression).parsed
    except Exception:  # an unparsable condition is refused where it is compiled, with its reason
        return re.match(r"\s*headers\s*[.\[]", expression) is not None
    return _names_at_top(tree, "headers")


def _names_at_top(node: dict, name: str) -> bool:
    """A field ``name`` read from the document's root: the first link of a chain, or any operand
    of a function, comparison or boolean (walked without recursion)."""
    todo = [node]
    while todo:
        current = todo.pop()
        if not isinstance(current, dict):
            continue
        kind, children = current.get("type"), current.get("children") or []
        if kind == "field":
            if current.get("value") == name:
                return True
        elif kind in ("subexpression", "index_expression", "projection", "value_projection", "filter_projection",
                      "flatten", "pipe"):
            todo.extend(children[:1])  # what follows the first link reads a child, not the root
        else:
            todo.extend(children)
    return False


def observe(item: HttpCheck, ctx) -> Observation:
    """One exchange with ``item.url`` (see :mod:`opsgate.httpclient`): status, latency, body, certificate."""
    from .. import httpclient as client  # requests and urllib3: paid by runs that probe HTTP

    shown = f"{item.method} {item.url}"
    values: dict = {"url": item.url}
    route = None
    if item.via is not None:  # the request's connections are opened on that host (opsgate.via)
        from .. import via

        values["via"] = item.via
        try:
            route = via.route_of(item, ctx)
        except via.ViaError as exc:
            return Observation(values, error=f"{shown}: {exc}")
        shown = f"{shown} via {item.via}"
    verify = item.tls_verify if isinstance(item.tls_verify, bool) else str(ctx.path(item.tls_verify))
    marked = {k for k, v in item.headers.items() if isinstance(v, SecretValue)}
    started = time.perf_counter()
    try:
        answer = client.exchange(item.method, item.url, item.timeout, headers=item.header_values(),
                                 body=item.request_body(),
                                 verify=verify, max_bytes=item.max_body_bytes, follow_redirects=item.follow_redirects,
                                 max_redirects=item.max_redirects, secret_headers=marked, route=route)
    except client.TooLarge:
        return Observation(values, error=f"{shown}: response body exceeds max_body_bytes={item.max_body_bytes}")
    except client.Failed as exc:
        if exc.cert_days_left is not None:
            values["cert_days_left"] = exc.cert_days_left
        return Observation(values, error=f"{shown}: {exc}{via.cause(route, item.url, str(exc)) if route else ''}")
    elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
    headers = response_headers(answer.headers)
    values.update(
        status_code=answer.status,
        elapsed_ms=elapsed_ms,
        body_bytes=len(answer.body),
        content_type=headers.get("content-type", ""),
        redirects=answer.redirects,
        headers=headers,
    )
    if answer.redirects:
        values["final_url"] = answer.url
    if answer.dropped_headers:
        values["headers_dropped_on_redirect"] = answer.dropped_headers
    if urlsplit(item.url).scheme == "https":
        try:
            values["cert_days_left"] = client.days_left(answer.peer_cert) if answer.peer_cert else \
                client.cert_days_left(urlsplit(item.url).hostname, urlsplit(item.url).port or 443, item.timeout,
                                      route=route)
        except (OSError, ValueError) as exc:
            values["cert_error"] = str(exc)
    needs_text = bool(item.body_regex or item.body_not_regex or item.conditions())
    try:
        text = client.body_text(answer.body, values["content_type"])
    except client.Failed as exc:
        excerpt = REDACTOR.excerpt(" ".join(answer.body.decode("utf-8", "replace").split()), 300)
        if needs_text:
            return Observation(values, error=f"{shown}: {exc}; body starts: {REDACTOR.excerpt(excerpt, 120)!r}",
                               details={"body_excerpt": excerpt})
        values["body_decode_error"] = str(exc)
        return Observation(values, details={"body_excerpt": excerpt}, explain=f"body: {REDACTOR.excerpt(excerpt, 120)}")
    excerpt = REDACTOR.excerpt(" ".join(text.split()), 300)
    if item.body_regex:
        values["body_regex_found"] = bool(re.search(item.body_regex, text))
    if item.body_not_regex:
        values["body_not_regex_found"] = bool(re.search(item.body_not_regex, text))
    document = NO_DOCUMENT
    if item.conditions():
        try:
            document = client.body_json(text)
        except client.Failed as exc:
            return Observation(values, error=f"{shown}: {exc}; body starts: {REDACTOR.excerpt(excerpt, 120)!r}",
                               details={"body_excerpt": excerpt})
    return Observation(values, document=document, details={"body_excerpt": excerpt},
                       explain=f"body: {REDACTOR.excerpt(excerpt, 120)}")


def response_headers(received: dict) -> dict[str, str]:
    """The reply's headers by lower-cased name; a secret-looking one's value is registered as a
    secret (every output masks it) - conditions still read it whole.

    >>> response_headers({"Content-Type": "application/json", "Access-Control-Allow-Origin": "*"})
    {'content-type': 'application/json', 'access-control-allow-origin': '*'}
    """
    out = {}
    for name, value in received.items():
        # interned: thousands of checks keep the same few names and values (server,
        # content-type ...) as one string each, not one per check (interned strings still go
        # once nothing holds them)
        key = sys.intern(str(name).lower())
        text = str(value)
        out[key] = f"{out[key]}, {text}" if key in out else sys.intern(text) if len(text) <= 256 else text
        if is_secret_name(key):
            REDACTOR.add(out[key])
    return out


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
    return out + item.header_conditions()


KIND = Kind(name="http", schema=HttpCheck, observe=observe, limits=limits,
            summary="an HTTP(S) request (a JSON body for POST/PUT too): status, whole-reply latency, body regex, JSON "
                    "body conditions, response headers, certificate days left",
            secret_fields=("headers", "url"), host_level=False)


def __getattr__(name: str):
    """``fetch``, ``FetchError`` ... were this module's before the client moved to :mod:`opsgate.httpclient`."""
    if name in ("fetch", "FetchError", "exchange", "cert_days_left", "body_text", "body_json", "is_secret_header"):
        from .. import httpclient

        return getattr(httpclient, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
