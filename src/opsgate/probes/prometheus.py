"""``prometheus``: ask a Prometheus server about alerts, a query's series and scrape targets.

Observed (``values``):

- ``firing_alerts``: names of firing alerts that count (``alert_severities`` filter,
  ``allow_alerts`` removed), ``firing_total`` before filtering;
- ``series``, ``series_failing``: for ``query``, how many series came back and the labels
  of those breaking ``series_condition`` (each series is ``{value, labels}``);
- ``targets``, ``targets_down``: active scrape targets (of ``jobs``), and
  ``job/instance: last error`` for each one not up.

All API calls of a check together are bounded by its timeout.

>>> from opsgate.probes import ProbeContext
>>> observe(PrometheusCheck(name="p", url="http://127.0.0.1:1", targets_up=True, timeout=1), ProbeContext()).error
'prometheus 127.0.0.1:1: GET http://127.0.0.1:1/api/v1/targets: connection refused'
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from ..conditions import Condition
from ..kinds import Kind
from ..redact import REDACTOR
from ..results import Observation
from ..schema import CheckItem
from . import target_name


class PrometheusCheck(CheckItem):
    """A Prometheus server's view: no firing alerts (optionally only at some severities, with
    an allow-list), an instant query whose every series meets a condition, all scrape
    targets up."""

    kind: ClassVar[str] = "prometheus"
    url: str = Field(pattern=r"^https?://", description="the Prometheus server, e.g. http://127.0.0.1:9090")
    no_firing_alerts: bool = Field(False, description="fail on any firing alert (after the filters below)")
    alert_severities: list[str] = Field([], description="only firing alerts with one of these severity labels count")
    allow_alerts: list[str] = Field([], description="alert names that never count")
    query: str | None = Field(None, description="PromQL instant query, e.g. up{job=\"api\"}")
    series_condition: str | None = Field(None, description="held for every series of query: 'value == 1'")
    min_series: int = Field(1, ge=0, description="fewest series query must return")
    targets_up: bool = Field(False, description="every active scrape target is up")
    jobs: list[str] = Field([], description="with targets_up: only these jobs (default: all)")
    tls_verify: bool = True

    @field_validator("series_condition")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is not None:
            Condition.parse(value)
        return value

    @model_validator(mode="after")
    def _something_to_check(self) -> "PrometheusCheck":
        if not (self.no_firing_alerts or self.alert_severities or self.query or self.targets_up):
            raise ValueError("expected at least one of no_firing_alerts, alert_severities, query, targets_up")
        if self.series_condition and not self.query:
            raise ValueError("expected query with series_condition")
        return self


class ApiError(Exception):
    pass


def _api(item: PrometheusCheck, deadline: float, path: str, params: dict | None = None, route=None) -> Any:
    """One API call, within what is left of the check's timeout (a check makes up to three);
    ``route``: made through that host (``via:``)."""
    url = item.url.rstrip("/") + path
    left = deadline - time.monotonic()
    if left <= 0:
        raise ApiError(f"no time left within {item.timeout:g}s for GET {url}")
    from .. import via
    from ..httpclient import FetchError, fetch  # requests: paid by runs that ask Prometheus

    try:
        status, body = fetch(url, left, item.tls_verify, params=params, route=route)
    except FetchError as exc:
        raise ApiError(f"{exc}{via.cause(route, url, str(exc))}") from None
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(f"GET {url}: HTTP {status}, not a Prometheus API answer: "
                       f"{REDACTOR.excerpt(body.decode('utf-8', 'replace'), 120)!r}") from None
    if not isinstance(answer, dict):
        raise ApiError(f"GET {url}: HTTP {status}, not a Prometheus API answer: a JSON {type(answer).__name__}, expected an object")
    if answer.get("status") != "success":
        raise ApiError(REDACTOR.excerpt(f"GET {url}: HTTP {status}, {answer.get('errorType', 'error')}: {answer.get('error', '')}", 300))
    return answer.get("data")


def _field(data: Any, key: str, url_path: str) -> list:
    """``data[key]`` as a list of objects; any other shape is the server's fault, named."""
    found = data.get(key) if isinstance(data, dict) else None
    if not isinstance(found, list) or not all(isinstance(x, dict) for x in found):
        raise ApiError(f"{url_path}: expected data.{key} to be a list of objects, seen {_shape(found)}")
    return found


def _shape(value: Any) -> str:
    return "null" if value is None else f"a JSON {type(value).__name__}"


def _labels_of(entry: dict, key: str = "labels") -> dict:
    labels = entry.get(key)
    return labels if isinstance(labels, dict) else {}


def _series_value(series: dict) -> float:
    """A sample's value, NaN when the server sent none or not a number (NaN fails every limit)."""
    pair = series.get("value")
    try:
        return float(pair[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return math.nan


def observe(item: PrometheusCheck, ctx) -> Observation:
    from .. import via

    shown = target_name("prometheus", item.url, 9090)
    values: dict[str, Any] = {"target": shown, **via.evidence(item)}
    details: dict[str, Any] = {}
    explain = []
    deadline = time.monotonic() + item.timeout
    try:
        route = via.route_of(item, ctx)  # via: web1 - asked from that host
    except via.ViaError as exc:
        return Observation(values, error=f"{shown}: {exc}")
    try:
        if item.no_firing_alerts or item.alert_severities:
            listed = _field(_api(item, deadline, "/api/v1/alerts", route=route), "alerts", "/api/v1/alerts")
            alerts = [a for a in listed if a.get("state") == "firing"]
            counted = [a for a in alerts
                       if _labels_of(a).get("alertname") not in item.allow_alerts
                       and (not item.alert_severities or _labels_of(a).get("severity") in item.alert_severities)]
            values["firing_total"] = len(alerts)
            values["firing_alerts"] = sorted({str(_labels_of(a).get("alertname", "?")) for a in counted})
            details["firing"] = [{"labels": _labels_of(a), "activeAt": a.get("activeAt")} for a in counted[:20]]
            if counted:
                explain.append("firing: " + ", ".join(
                    f"{_labels_of(a).get('alertname')}({_labels_of(a).get('severity', '-')})" for a in counted[:5]))
        if item.query:
            data = _api(item, deadline, "/api/v1/query", {"query": item.query}, route)
            kind = data.get("resultType") if isinstance(data, dict) else None
            if kind not in ("vector", "scalar"):
                raise ApiError(f"query {item.query!r} returned {kind and 'a ' + str(kind) or _shape(data)}, expected an instant vector")
            result = _field(data, "result", "/api/v1/query") if kind == "vector" else [{"metric": {}, "value": data.get("result")}]
            series = [{"labels": _labels_of(s, "metric"), "value": _series_value(s)} for s in result]
            values["series"] = len(series)
            failing = []
            if item.series_condition:
                condition = Condition.parse(item.series_condition)
                failing = [s for s in series if not condition.evaluate(s).ok]
            values["series_failing"] = [s["labels"] for s in failing]
            details["series"] = series[:20]
            if failing:
                explain.append("breaking: " + "; ".join(
                    f"{_labels(s['labels'])} = {s['value']:g}" for s in failing[:5]))
        if item.targets_up:
            targets = _field(_api(item, deadline, "/api/v1/targets", {"state": "active"}, route), "activeTargets",
                             "/api/v1/targets")
            if item.jobs:
                targets = [t for t in targets if _labels_of(t).get("job") in item.jobs]
            down = [t for t in targets if t.get("health") != "up"]
            values["targets"] = len(targets)
            values["targets_down"] = [f"{_labels_of(t).get('job')}/{_labels_of(t).get('instance')}: "
                                      f"{t.get('health')} ({t.get('lastError') or 'not scraped yet'})" for t in down]
            if down:
                explain.append("down: " + "; ".join(values["targets_down"][:5]))
    except ApiError as exc:
        return Observation(values, error=f"{shown}: {exc}")
    return Observation(values, details=details, explain="; ".join(explain) or None)


def _labels(labels: dict) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{inner}}}"


def limits(item: PrometheusCheck) -> list[Condition]:
    out = []
    if item.no_firing_alerts or item.alert_severities:
        scope = f" at severity {', '.join(item.alert_severities)}" if item.alert_severities else ""
        allowed = f" (allowed: {', '.join(item.allow_alerts)})" if item.allow_alerts else ""
        out.append(Condition.compare("firing_alerts", "==", 0, length=True, label=f"no firing alerts{scope}{allowed}"))
    if item.query:
        out.append(Condition.compare("series", ">=", item.min_series, label=f"query {item.query} returns >= {item.min_series} series"))
        if item.series_condition:
            out.append(Condition.compare("series_failing", "==", 0, length=True,
                                         label=f"every series of {item.query}: {item.series_condition}"))
    if item.targets_up:
        # an empty target list is reading nothing, not "every target up"
        scope = f" of jobs {', '.join(item.jobs)}" if item.jobs else ""
        out.append(Condition.compare("targets", ">=", 1, label=f"at least one active scrape target{scope}"))
        out.append(Condition.compare("targets_down", "==", 0, length=True, label="every scrape target up"))
    return out


KIND = Kind(name="prometheus", schema=PrometheusCheck, observe=observe, limits=limits,
            summary="a Prometheus server: no firing alerts, an instant query's every series, all scrape targets up",
            secret_fields=("url",), host_level=False)
