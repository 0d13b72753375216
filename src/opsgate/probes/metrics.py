"""``metrics``: scrape a plain Prometheus exposition (``/metrics``) and hold one metric to limits.

The text is parsed with prometheus_client's parser. Samples are chosen by their exact
name (a counter's ``NAME_total`` also answers to ``NAME``; a histogram's buckets are
chosen as ``NAME_bucket``) and by exact label values. Observed (``values``): ``samples`` (how many matched), ``max``,
``min``, ``sum`` of their values, ``nan_samples`` (NaN is no value: with ``max_value`` or
``min_value`` it fails the check, as it would break "every sample below"); ``document`` for
``expect``/``warn`` is ``{samples: [{name, labels, value}], max, min, sum, count}``.

Only the lines that can hold the metric are parsed, in slices, within what is left of the
timeout: a parse of a whole large exposition outlived it (600 000 samples: 8 s). More than
``MAX_SAMPLES`` matching samples fails the check rather than hold them all.

>>> from opsgate.probes import ProbeContext
>>> observe(MetricsCheck(name="m", url="http://127.0.0.1:1/metrics", metric="up", timeout=1), ProbeContext()).error
'GET http://127.0.0.1:1/metrics: connection refused'
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar, Iterator

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


#: matching samples a check holds (each a dict for its conditions); more fails it
MAX_SAMPLES = 100_000
_SLICE_LINES = 5_000  # lines parsed between two looks at the deadline


class _TooMuch(Exception):
    """The exposition could not be read within the check's bounds; the message says which."""


def _samples(text: str, metric: str, deadline: float) -> Iterator[Any]:
    """The samples of ``text`` whose line starts with ``metric`` (the others cannot match),
    parsed a slice of lines at a time. A family cut between slices parses as two: the
    samples, their names and labels are the same.

    >>> [s.name for s in _samples("# TYPE up gauge\\nup 1\\nother 2\\nup_total 3\\n", "up", time.monotonic() + 5)]
    ['up', 'up_total']
    """
    from prometheus_client.parser import text_string_to_metric_families  # paid by runs that scrape

    kept: list[str] = []

    def parse() -> Iterator[Any]:
        if time.monotonic() > deadline:
            raise _TooMuch("no time left to parse the exposition")
        for family in text_string_to_metric_families("\n".join(kept) + "\n"):
            yield from family.samples
        kept.clear()

    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(metric) or (stripped.startswith("#") and metric in stripped):
            kept.append(stripped)
            if len(kept) >= _SLICE_LINES:
                yield from parse()
    yield from parse()


def _parse_head(text: str, size: int = 64 * 1024) -> None:
    """Parse the first ``size`` characters' whole lines (ValueError if they are not an
    exposition): only the metric's own lines are parsed after, and an HTML page or a JSON
    answer has none, which would read as "no such metric" instead of what it is."""
    from prometheus_client.parser import text_string_to_metric_families

    head = text if len(text) <= size else text[:size].rpartition("\n")[0]
    for _ in text_string_to_metric_families(head):
        pass


def _family_names(text: str, deadline: float, most: int = 10_000) -> set[str]:
    """The names the exposition's samples and TYPE lines give (to say what is there instead)."""
    names: set[str] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[:2] == ["#", "TYPE"]:
            names.add(parts[2])
        elif parts and not parts[0].startswith("#"):
            names.add(parts[0].split("{", 1)[0])
        if len(names) >= most or time.monotonic() > deadline:
            break
    return names


def observe(item: MetricsCheck, ctx) -> Observation:
    from .. import via
    from ..httpclient import FetchError, fetch

    deadline = time.monotonic() + item.timeout
    route = None
    try:
        route = via.route_of(item, ctx)  # via: web1 - scraped from that host
        status, body = fetch(item.url, item.timeout, item.tls_verify, item.max_body_bytes, route=route)
    except (FetchError, via.ViaError) as exc:
        return Observation({"url": item.url, **via.evidence(item)}, error=f"{exc}{via.cause(route, item.url, str(exc))}")
    values: dict[str, Any] = {"url": item.url, **via.evidence(item), "status_code": status}
    if status != 200:
        return Observation(values, error=f"GET {item.url}: HTTP {status}, expected 200 with a metrics exposition")
    text = body.decode("utf-8", errors="replace")
    samples = []
    try:
        _parse_head(text)
        for s in _samples(text, item.metric, deadline):
            if s.name in (item.metric, f"{item.metric}_total") and all(s.labels.get(k) == v for k, v in item.labels.items()):
                if len(samples) == MAX_SAMPLES:
                    raise _TooMuch(f"more than {MAX_SAMPLES} samples of {item.metric} match (narrow it with labels:)")
                samples.append({"name": s.name, "labels": dict(s.labels), "value": s.value})
    except ValueError as exc:
        # the parser quotes the bad line whole: a few hundred characters say enough
        return Observation(values, error=f"GET {item.url}: not a Prometheus exposition ({str(exc)[:300]})")
    except _TooMuch as exc:
        return Observation(values, error=f"GET {item.url}: {exc} (within {item.timeout:g}s, {len(body)} bytes)")
    numbers = [s["value"] for s in samples if not math.isnan(s["value"])]
    values.update(samples=len(samples), max=max(numbers, default=None), min=min(numbers, default=None),
                  sum=sum(numbers) if numbers else None, nan_samples=len(samples) - len(numbers))
    document = {"samples": samples, "max": values["max"], "min": values["min"], "sum": values["sum"], "count": len(samples)}
    # NaN ones first: they are the cause when nan_samples fails
    shown = ", ".join(f"{s['name']}{_labels(s['labels'])}={s['value']:g}"
                      for s in sorted(samples, key=lambda s: not math.isnan(s["value"]))[:5])
    if not samples:
        known = sorted(_family_names(text, deadline))
        shown = f"no sample named {item.metric!r}" + (f" with {item.labels}" if item.labels else "") + \
            f"; the exposition has {len(known)} families: {', '.join(known[:10])}"
    return Observation(values, document=document if (item.expect or item.warn) else NO_DOCUMENT,
                       details={"samples": samples[:20]}, explain=shown)


def _labels(labels: dict) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""


def limits(item: MetricsCheck) -> list[Condition]:
    out = [Condition.compare("samples", ">=", item.min_samples,
                             label=f"samples of {item.metric}{_labels(item.labels)} >= {item.min_samples}")]
    if item.max_value or item.min_value:  # NaN is below and above nothing: it breaks either limit
        out.append(Condition.compare("nan_samples", "==", 0,
                                     label=f"every sample of {item.metric}{_labels(item.labels)} is a number (not NaN)"))
    if item.max_value:
        out += item.max_value.conditions("max", "<")
    if item.min_value:
        out += item.min_value.conditions("min", ">")
    return out


KIND = Kind(name="metrics", schema=MetricsCheck, observe=observe, limits=limits,
            summary="a plain /metrics exposition: one metric's samples held to limits",
            secret_fields=("url",), host_level=False)
