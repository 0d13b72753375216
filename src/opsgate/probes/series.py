"""``series``: limits on aggregates of a metric's recent samples: its average, peak, minimum,
percentiles and slope per hour, over the last N samples or the last T minutes.

Where the samples come from:

- ``path`` + ``field``: a JSON-lines file, one object a line, ``field`` a key path
  (``memory.rss_mb``), ``time_field`` its timestamp (epoch seconds, or ISO 8601 text; a
  time without a zone is UTC). The file is read from its end, in 64 KiB blocks through the
  target, at most ``max_read`` bytes, within the item's timeout: only as far back as the
  window needs. Samples are taken to be in time order (the newest last).
- ``prometheus: {url, query, step}``: ``/api/v1/query_range`` over the window (``step``
  apart; ``last_samples`` N covers ``(N - 1) * step``); the query must return exactly one
  series (aggregate it: ``avg(...)``), body at most 16 MiB.

Nothing unreadable passes silently: a line that is not a JSON object, a value that is
missing, null, not a number, NaN or infinite, a time that cannot be read, are *bad
samples*, counted in the window and named (byte offset and an excerpt); more than
``max_bad`` of them (0 by default) fails. Fewer good samples than ``min_samples`` (the
whole ``last_samples`` by default, else 2) fails naming how many there were.

>>> s = aggregates([(0, 10.0), (1800, 20.0), (3600, 30.0)], ["p50"])
>>> s["average"], s["peak"], s["min"], s["percentiles"], s["slope_per_hour"]
(20.0, 30.0, 10.0, {'p50': 20.0}, 20.0)
"""

from __future__ import annotations

import json
import math
import re
import time
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator

from ..conditions import Condition
from ..jsondoc import TooDeep, loads_bounded
from ..kinds import Kind
from ..redact import REDACTOR
from ..results import Observation
from ..schema import CheckItem, Duration, Limit, Strict
from . import target_name
from .prometheus import ApiError as PrometheusApiError, _api as prometheus_api, _field as prometheus_field

BLOCK = 64 << 10  # bytes read at once from the file's end
LONGEST_LINE = 1 << 20  # a longer line is a bad sample (its start is not kept)
_NAMED = 5  # bad samples named in a message
_PROMETHEUS_POINTS = 11_000  # Prometheus refuses longer range answers


class SeriesPrometheus(Strict):
    url: str = Field(pattern=r"^https?://", description="the Prometheus server, e.g. http://127.0.0.1:9090")
    query: str = Field(description="PromQL returning one series, e.g. avg(node_memory_used_percent)")
    step: Duration = Field(15.0, description="seconds between samples")
    tls_verify: bool = True

    @field_validator("step")
    @classmethod
    def _step(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("expected a step above 0")
        return value


def _percentile_key(key: str) -> str:
    found = re.fullmatch(r"p(\d{1,2}(?:\.\d+)?|100)", key)
    if not found:
        raise ValueError(f"expected a percentile name like p95 or p99.9, seen {key!r}")
    return key


class SeriesCheck(CheckItem):
    """A metric's recent samples: average, peak, minimum, percentiles and slope per hour held to limits."""

    kind: ClassVar[str] = "series"
    path: str | None = Field(None, description="a JSON-lines file of samples (relative to base_dir)")
    field: str | None = Field(None, description="the value's key path in each line, e.g. cpu_percent or memory.rss_mb")
    time_field: str | None = Field(None, description="the timestamp's key path (epoch seconds or ISO 8601)")
    prometheus: SeriesPrometheus | None = None
    last_samples: int | None = Field(None, ge=1, le=1_000_000)
    last_minutes: float | None = Field(None, gt=0)
    min_samples: int | None = Field(None, ge=1, description="fewest good samples (default: last_samples, else 2)")
    max_bad: int = Field(0, ge=0, description="most bad samples (unparsable, null, not a number) allowed in the window")
    max_read: int = Field(64 << 20, ge=BLOCK, description="most bytes read from the file's end")
    average: Limit | None = None
    peak: Limit | None = None
    min: Limit | None = Field(None, description="a lower bound: the lowest sample must stay at or above it")
    percentiles: dict[str, Limit] = Field({}, description="by name: p95: {warn: 80, critical: 90}")
    slope_per_hour: Limit | None = Field(None, description="least-squares growth per hour (a leak)")

    @field_validator("percentiles")
    @classmethod
    def _percentiles(cls, value: dict[str, Limit]) -> dict[str, Limit]:
        for key in value:
            _percentile_key(key)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "SeriesCheck":
        if (self.path is None) == (self.prometheus is None):
            raise ValueError("expected exactly one of path (a JSON-lines file) or prometheus")
        if self.path is not None and not self.field:
            raise ValueError("expected field (the value's key path) with path")
        if (self.last_samples is None) == (self.last_minutes is None):
            raise ValueError("expected exactly one of last_samples or last_minutes")
        if self.path is not None and not self.time_field and (self.last_minutes or self.slope_per_hour):
            raise ValueError("expected time_field with last_minutes or slope_per_hour (the samples' times)")
        if self.prometheus and self.window_s() / self.prometheus.step > _PROMETHEUS_POINTS:
            raise ValueError(f"the window holds more than {_PROMETHEUS_POINTS} steps of {self.prometheus.step:g}s: "
                             "raise step")
        return self

    def window_s(self) -> float:
        if self.last_minutes is not None:
            return self.last_minutes * 60
        return (self.last_samples - 1) * (self.prometheus.step if self.prometheus else 0)

    def needed(self) -> int:
        return self.min_samples if self.min_samples is not None else (self.last_samples or 2)

    def shown(self) -> str:
        """How messages name the series: its field, or its query."""
        if self.field:
            return self.field
        query = self.prometheus.query
        return query if len(query) <= 60 else query[:57] + "..."

    def scope(self) -> str:
        if self.last_samples is not None:
            return f"the last {self.last_samples} samples"
        return f"the last {self.last_minutes:g} minutes"


# --- aggregates ---------------------------------------------------------------------------

def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 95)
    3.85
    """
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return round(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low), 6)


def slope_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of value over time, per hour; None when all times are equal.

    >>> slope_per_hour([(0, 100.0), (3600, 150.0), (7200, 200.0)])
    50.0
    """
    n = len(samples)
    if n < 2:
        return None
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return None
    slope = sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread
    return round(slope * 3600, 6)


def aggregates(samples: list[tuple[float | None, float]], percentiles: list[str]) -> dict[str, Any]:
    """Average, peak, min, the named percentiles and (with times) the slope per hour."""
    values = [v for _, v in samples]
    ordered = sorted(values)
    timed = [(t, v) for t, v in samples if t is not None]
    return {
        "average": round(sum(values) / len(values), 6),
        "peak": ordered[-1],
        "min": ordered[0],
        "percentiles": {key: percentile(ordered, float(key[1:])) for key in percentiles},
        "slope_per_hour": slope_per_hour(timed) if len(timed) == len(samples) else None,
    }


# --- reading samples ---------------------------------------------------------------------

class _Bad(Exception):
    """A line or point that is not a usable sample; the message says why."""


def _at(document: Any, path: str) -> Any:
    """The value at a dotted key path; _Bad when it is missing."""
    value = document
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise _Bad(f"{path} is missing")
        value = value[key]
    return value


def number(value: Any, what: str) -> float:
    """A finite number, or _Bad naming what it is instead.

    >>> number(3, "cpu"), number("4.5", "cpu")
    (3.0, 4.5)
    >>> number(None, "cpu")
    Traceback (most recent call last):
    opsgate.probes.series._Bad: cpu is null
    """
    if value is None:
        raise _Bad(f"{what} is null")
    if isinstance(value, bool):
        raise _Bad(f"{what} is a boolean ({str(value).lower()}), not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _Bad(f"{what} is the text {REDACTOR.excerpt(value, 40)!r}, not a number") from None
    if not isinstance(value, (int, float)):
        raise _Bad(f"{what} is a JSON {type(value).__name__}, not a number")
    value = float(value)
    if not math.isfinite(value):
        raise _Bad(f"{what} is {value}, not a finite number")
    return value


def timestamp(value: Any, what: str) -> float:
    """Epoch seconds from a number or ISO 8601 text (no zone: UTC).

    >>> timestamp("2026-12-01T00:00:00Z", "ts") == timestamp(1796083200, "ts")
    True
    """
    if isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.strip())
        except ValueError:
            try:
                return number(value, what)
            except _Bad:
                raise _Bad(f"{what} {REDACTOR.excerpt(value, 40)!r} is not an ISO 8601 time nor epoch seconds") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        return stamp.timestamp()
    return number(value, what)


class _Window:
    """Samples gathered newest first until the window is full; bad ones counted and named."""

    def __init__(self, item: SeriesCheck, now: float) -> None:
        self.item = item
        self.cutoff = now - item.last_minutes * 60 if item.last_minutes is not None else None
        self.samples: list[tuple[float | None, float]] = []
        self.bad = 0
        self.named: list[str] = []

    def full(self) -> bool:
        return self.item.last_samples is not None and len(self.samples) >= self.item.last_samples

    def add_bad(self, where: str, why: str) -> None:
        self.bad += 1
        if len(self.named) < _NAMED:
            self.named.append(f"{where}: {why}")

    def add_line(self, offset: int, raw: bytes) -> bool:
        """Take one line (newest first); False once the window is complete and reading may stop."""
        item = self.item
        where = f"line at byte {offset}"
        if len(raw) > LONGEST_LINE:
            self.add_bad(where, f"longer than {LONGEST_LINE} bytes")
            return True
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return True
        try:
            document = loads_bounded(text, 50)
        except (TooDeep, ValueError, RecursionError):
            self.add_bad(where, f"not JSON: {REDACTOR.excerpt(text, 60)!r}")
            return True
        if not isinstance(document, dict):
            self.add_bad(where, f"a JSON {type(document).__name__}, not an object")
            return True
        try:
            at = timestamp(_at(document, item.time_field), item.time_field) if item.time_field else None
            if at is not None and self.cutoff is not None and at < self.cutoff:
                return False  # older than the window: everything before it is too
            value = number(_at(document, item.field), item.field)
        except _Bad as exc:
            self.add_bad(where, str(exc))
            return True
        self.samples.append((at, value))
        return not self.full()


def _read_file(item: SeriesCheck, ctx, window: _Window, deadline: float) -> dict[str, Any]:
    """Feed the file's lines to ``window`` newest first, reading blocks from its end."""
    path = str(ctx.path(item.path))
    read = 0
    if not ctx.target.stat(path, item.timeout).is_file:  # a FIFO or a device would hang the read
        raise _Bad(f"{path} is not a regular file")
    with ctx.target.open(path, deadline) as handle:
        end = handle.seek(0, 2)
        position = end
        carry = b""  # the start of the newest line not yet complete (it continues after)
        while position > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading took longer than the timeout ({item.timeout:g}s)")
            if read >= item.max_read:
                return {"bytes_read": read, "stopped": f"read the last {item.max_read} bytes only (max_read)"}
            size = min(BLOCK, position)
            position -= size
            handle.seek(position)
            block = handle.read(size)
            read += len(block)
            data = block + carry
            lines = data.split(b"\n")
            carry = lines[0]  # may continue in the previous block
            offset = position + len(data)
            for line in reversed(lines[1:]):
                offset -= len(line) + 1
                if not window.add_line(offset + 1, line):
                    return {"bytes_read": read}
            if len(carry) > LONGEST_LINE:
                carry = carry[-(LONGEST_LINE + 1):]  # still too long once complete: a bad sample
        if carry:
            window.add_line(0, carry)
    return {"bytes_read": read}


def _without_credentials(url: str) -> str:
    """
    >>> _without_credentials("http://ops:pw@prom.internal:9090/")
    'http://prom.internal:9090/'
    """
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _read_prometheus(item: SeriesCheck, window: _Window, deadline: float, now: float) -> dict[str, Any]:
    prom = item.prometheus
    start = now - item.window_s()
    params = {"query": prom.query, "start": f"{start:.3f}", "end": f"{now:.3f}", "step": f"{prom.step:g}"}
    server = SimpleNamespace(url=prom.url, timeout=item.timeout, tls_verify=prom.tls_verify)
    try:  # the prometheus kind's API call: bounded body, the deadline, the server's own error named
        data = prometheus_api(server, deadline, "/api/v1/query_range", params)
        result = prometheus_field(data, "result", "/api/v1/query_range")
    except PrometheusApiError as exc:  # its message names the URL: without the credentials in it
        raise _Bad(str(exc).replace(prom.url.rstrip("/"), _without_credentials(prom.url).rstrip("/"))) from None
    if len(result) != 1:
        raise _Bad(f"the query returned {len(result)} series, expected exactly one"
                   + (" (aggregate it, e.g. avg(...))" if result else " (no data in the window)"))
    points = result[0].get("values") if isinstance(result[0], dict) else None
    if not isinstance(points, list):
        raise _Bad("/api/v1/query_range: expected the series' values to be a list of [time, value] points")
    for point in reversed(points):  # newest first, as a file is read
        try:
            at, raw = point
            at = number(at, "time")
            value = number(raw, "value")
        except (TypeError, ValueError):
            window.add_bad("a point", f"{REDACTOR.excerpt(json.dumps(point), 60)} is not a [time, value] pair")
            continue
        except _Bad as exc:
            window.add_bad(f"the point at {point[0]}", str(exc))
            continue
        window.samples.append((at, value))
        if window.full():
            break
    return {"points": len(points)}


def observe(item: SeriesCheck, ctx) -> Observation:
    deadline = time.monotonic() + item.timeout
    now = time.time()
    window = _Window(item, now)
    shown = f"series {item.shown()}"
    # a URL's credentials never reach a message: the server is named by host, port and path
    source = str(ctx.path(item.path)) if item.path else target_name("prometheus", item.prometheus.url, 9090)
    values: dict[str, Any] = {"source": source}
    try:
        if item.path:
            values.update(_read_file(item, ctx, window, deadline))
        else:
            values.update(_read_prometheus(item, window, deadline, now))
    except FileNotFoundError:
        return Observation(values, error=f"{shown}: {source} does not exist")
    except TimeoutError as exc:
        return Observation(values, error=f"{shown}: {source}: {exc}")
    except OSError as exc:
        return Observation(values, error=f"{shown}: {source}: cannot read: {exc.strerror or exc}")
    except _Bad as exc:
        return Observation(values, error=f"{shown}: {exc}")
    window.samples.reverse()  # oldest first
    values["samples"] = len(window.samples)
    values["bad_samples"] = window.bad
    bad = ""
    if window.bad:
        bad = f"{window.bad} bad sample{'s' if window.bad > 1 else ''}: " + "; ".join(window.named)
        values["bad_named"] = window.named
    if len(window.samples) < item.needed():
        return Observation(values, error=f"{shown}: only {len(window.samples)} good sample"
                                         f"{'' if len(window.samples) == 1 else 's'} in {item.scope()} of {source}, "
                                         f"{item.needed()} needed" + (f" ({bad})" if bad else ""))
    values.update(aggregates(window.samples, list(item.percentiles)))
    if window.samples[0][0] is not None:
        values["first_at"] = window.samples[0][0]
        values["last_at"] = window.samples[-1][0]
    return Observation(values, explain=bad or None)


def limits(item: SeriesCheck) -> list[Condition]:
    """Labels name the series, the aggregate and the window.

    >>> item = SeriesCheck(name="c", path="m.jsonl", field="cpu_percent", last_samples=100, average={"critical": 80})
    >>> [c.label for c in limits(item)]
    ['series cpu_percent: bad samples in the last 100 samples <= 0', 'series cpu_percent: average of the last 100 samples <= 80']
    """
    shown, scope = f"series {item.shown()}", item.scope()

    def bounded(limit: Limit | None, key, what: str, op: str = "<=") -> list[Condition]:
        out = []
        for level, value in (("fail", limit and limit.critical), ("warn", limit and limit.warn)):
            if limit is not None and value is not None:
                out.append(Condition.compare(key, op, value, level, label=f"{shown}: {what} of {scope} {op} {value:g}"))
        return out

    out = [Condition.compare("bad_samples", "<=", item.max_bad, label=f"{shown}: bad samples in {scope} <= {item.max_bad}")]
    out += bounded(item.average, "average", "average")
    out += bounded(item.peak, "peak", "peak")
    out += bounded(item.min, "min", "minimum", ">=")
    for key, limit in item.percentiles.items():
        out += bounded(limit, ("percentiles", key), key)
    out += bounded(item.slope_per_hour, "slope_per_hour", "slope per hour")
    return out


KIND = Kind(name="series", schema=SeriesCheck, observe=observe, limits=limits,
            summary="a metric's last N samples or T minutes (JSON-lines file or Prometheus range): average, "
                    "peak, minimum, percentiles, slope per hour",
            host_level=True)
