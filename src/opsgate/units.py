"""Durations and sizes as people write them in runbooks: ``90s``, ``10m``, ``24h``, ``10MB``.

>>> parse_duration("10m"), parse_duration(2.5), parse_duration("1h30m")
(600.0, 2.5, 5400.0)
>>> parse_size("10MB"), parse_size("1KiB"), parse_size(512)
(10000000, 1024, 512)
"""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")


def parse_duration(value: object) -> float:
    """Seconds in ``value``: a number (seconds) or text like ``30s``, ``5m``, ``1h30m``, ``2d``;
    ValueError for anything else, infinity and NaN included."""
    try:
        seconds = _seconds(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration like 30s, 5m, 2h, seen {_shown(value)}")
    return seconds


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def _seconds(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 5m, 2h, seen {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"expected a duration >= 0, seen {value!r}")
        return float(value)
    text = str(value).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"expected a duration like 30s, 5m, 2h, seen {value!r}")
    return float(sum(float(n) * _DURATION_UNITS[u] for n, u in parts))


def parse_size(value: object) -> int:
    """Bytes in ``value``: a number or text like ``512``, ``10MB``, ``1.5GiB``; ValueError for
    anything else, infinity and NaN included."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 10MB, seen {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        size = value
    else:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", str(value).strip().lower())
        if not match or match.group(2) not in _SIZE_UNITS | {"": 1}:
            raise ValueError(f"expected a size like 512, 10MB or 1GiB, seen {_shown(value)}")
        size = float(match.group(1)) * _SIZE_UNITS.get(match.group(2), 1)
    if not math.isfinite(size):
        raise ValueError(f"expected a finite size like 512, 10MB or 1GiB, seen {_shown(value)}")
    return int(size)
