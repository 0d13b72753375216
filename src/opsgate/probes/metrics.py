"""``metrics``: scrape a plain Prometheus exposition (``/metrics``) and hold one metric to limits.

The text is parsed with prometheus_client's parser. Samples are chosen by their exact
name (a counter's ``NAME_total`` also answers to ``NAME``; a histogram's buckets are
chosen as ``NAME_bucket``) and by exact label values. Observed (``values``): ``samples`` (how many matched), ``max``,
``min``, ``sum`` of their values; ``document`` for ``expect``/``warn`` is
``{samples: [{name, labels, value}], max, min, sum, count}``.

>>> from opsgate.probes import ProbeContext
>>> observe(MetricsCheck(name="m", url="http://127.0.0.1:1/metrics", metric="up", timeout=1), ProbeContext()).error
'GET http://127.0.0.1:1/metrics: connection refused'
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import Field

from ..conditions import Condition
from ..kinds import Kind
from ..results import NO_DOCUMENT, Observation
from ..schema import CheckItem, Limit, Size


class MetricsCheck(CheckItem):
    """Scrape a plain /metrics exposition and hold one metric's samples to limits."""

    kind: ClassVar[str] = "metrics"
    url: str = Field(pattern=r"^https?://", description="the exposition, e.g. http://127.0.0.1:5002/metrics/prometheus")
    metric: str = Field(description="sample or family name, e.g. http_request_duration_seconds")
    labels: dict[str, str] = Field({}, description="only samples with these label values")
    max_value: Limit | None = Field(None, description="every matching sample below critical (and warn)")
    min_value: Limit | None = Field(None, description="every matching sample above critical (and warn)")
    min_samples: int = Field(1, ge=0)
    tls_verify: bool = True
    max_body_bytes: Size = 16 * 1024 * 1024


def observe(item: MetricsCheck, ctx) -> Observation:
    from prometheus_client.parser import text_string_to_metric_families  # paid by runs that scrape

    from .. import via
    from ..httpclient import FetchError, fetch

    route = None
    try:
        route = via.route_of(item, ctx)  # via: web1 - scraped from that host
        status, body = fetch(item.url, item.timeout, item.tls_verify, item.max_body_bytes, route=route)
    except (FetchError, via.ViaError) as exc:
        return Observation({"url": item.url, **via.evidence(item)}, error=f"{exc}{via.cause(route, item.url, str(exc))}")
    values: dict[str, Any] = {"url": item.url, **via.evidence(item), "status_code": status}
    if status != 200:
        return Observation(values, error=f"GET {item.url}: HTTP {status}, expected 200 with a metrics exposition")
    try:
        families = list(text_string_to_metric_families(body.decode("utf-8", errors="replace")))
    except ValueError as exc:
        return Observation(values, error=f"GET {item.url}: not a Prometheus exposition ({exc})")
    samples = [
        {"name": s.name, "labels": dict(s.labels), "value": s.value}
        for family in families for s in family.samples
        if s.name in (item.metric, f"{item.metric}_total")
        and all(s.labels.get(k) == v for k, v in item.labels.items())
    ]
    numbers = [s["value"] for s in samples if not math.isnan(s["value"])]
    values.update(samples=len(samples), max=max(numbers, default=None), min=min(numbers, default=None),
                  sum=sum(numbers) if numbers else None)
    document = {"samples": samples, "max": values["max"], "min": values["min"], "sum": values["sum"], "count": len(samples)}
    shown = ", ".join(f"{s['name']}{_labels(s['labels'])}={s['value']:g}" for s in samples[:5])
    if not samples:
        known = sorted({f.name for f in families})
        shown = f"no sample named {item.metric!r}" + (f" with {item.labels}" if item.labels else "") + \
            f"; the exposition has {len(known)} families: {', '.join(known[:10])}"
    return Observation(values, document=document if (item.expect or item.warn) else NO_DOCUMENT,
                       details={"samples": samples[:20]}, explain=shown)


def _labels(labels: dict) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""


def limits(item: MetricsCheck) -> list[Condition]:
    out = [Condition.compare("samples", ">=", item.min_samples,
                             label=f"samples of {item.metric}{_labels(item.labels)} >= {item.min_samples}")]
    if item.max_value:
        out += item.max_value.conditions("max", "<")
    if item.min_value:
        out += item.min_value.conditions("min", ">")
    return out


KIND = Kind(name="metrics", schema=MetricsCheck, observe=observe, limits=limits,
            summary="a plain /metrics exposition: one metric's samples held to limits",
            secret_fields=("url",), host_level=False)
