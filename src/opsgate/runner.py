"""Run one check: probe, hold its conditions, and wait or watch when asked.

- plain: one attempt.
- ``retry``: wait until healthy - attempt every interval, pass as soon as the
  conditions hold, fail at the timeout with the last observation.
- ``window``: stability - after passing, sample every interval for the duration;
  every sample must pass (the first breach ends the window). Samples are evidence.

>>> from opsgate.model import FileCheck
>>> from opsgate.probes import ProbeContext
>>> result = run_check(FileCheck(name="hosts", path="/etc/hostname"), ProbeContext())
>>> result.status
'pass'
"""

from __future__ import annotations

import time
from contextvars import ContextVar
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from . import probes
from .conditions import ConditionResult
from .model import CheckItem
from .redact import REDACTOR
from .results import NO_DOCUMENT, CheckResult, Observation, Status


def _quiet(text: str) -> None:
    pass


#: what the check being run may tell the progress line, for probes that take long (a drill's steps)
current_note: ContextVar[Callable[[str], None]] = ContextVar("opsgate_current_note", default=_quiet)


@dataclass
class Attempt:
    """One probe plus the verdict of its conditions."""

    status: Status
    message: str
    observation: Observation
    conditions: list[ConditionResult]
    at: float
    duration_s: float

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"observed": self.observation.values}
        if self.conditions:
            out["conditions"] = [c.to_json() for c in self.conditions]
        if self.observation.details:
            out["details"] = self.observation.details
        if self.observation.error:
            out["error"] = self.observation.error
        return out

    def sample(self, t0: float) -> dict[str, Any]:
        """A compact record for a window's sample list."""
        out = {"t": round(self.at - t0, 3), "status": str(self.status), "observed": _scalars(self.observation.values)}
        if self.message:
            out["message"] = self.message
        return out


def attempt(item: CheckItem, ctx: "probes.ProbeContext") -> Attempt:
    """Probe once and hold every condition against what was seen."""
    started = time.time()
    try:
        observation = probes.observe(item, ctx)
    except Exception as exc:  # a probe bug must not pass nor crash the run: it is an error with its cause
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Attempt(Status.ERROR, f"probe crashed: {tb}", Observation(), [], started, time.time() - started)
    duration = time.time() - started
    if observation.not_applicable:
        return Attempt(Status.SKIPPED, f"not applicable here: {observation.not_applicable}", observation, [],
                       started, duration)
    if observation.error:
        message = observation.error + (f" -- {observation.explain}" if observation.explain else "")
        return Attempt(Status.FAIL, message, observation, [], started, duration)
    # a parsed document is what user conditions read, even null/[]/0: never opsgate's own fields
    user_root = observation.values if observation.document is NO_DOCUMENT else observation.document
    results = [c.evaluate(observation.values) for c in probes.limits(item)]
    results += [c.evaluate(user_root) for c in item.conditions()]
    failures = [r for r in results if not r.ok and r.level == "fail"]
    warnings = [r for r in results if not r.ok and r.level == "warn"]
    status = Status.FAIL if failures else Status.WARN if warnings else Status.PASS
    message = "; ".join(r.describe() for r in failures or warnings)
    if message and observation.explain:
        message += f" -- {observation.explain}"
    return Attempt(status, message, observation, results, started, duration)


def run_check(item: CheckItem, ctx: "probes.ProbeContext", note: Callable[[str], None] | None = None) -> CheckResult:
    """Run ``item`` with its retry and window settings; never raises. ``note`` is told what
    the check is waiting for ("retry until healthy, attempt 3", "window sample 4/10"), for
    the run's progress line; a probe reaches it as :data:`current_note` (a drill names its step)."""
    if note is None:  # a check run inside another (a drill's step): the outer check's note stays
        return _run_check(item, ctx, current_note.get())
    token = current_note.set(note)
    try:
        return _run_check(item, ctx, note)
    finally:
        current_note.reset(token)


def _run_check(item: CheckItem, ctx: "probes.ProbeContext", note: Callable[[str], None]) -> CheckResult:
    t0 = time.time()
    attempts = 0
    note = note or _quiet
    last = _until_healthy(item, ctx, note) if item.retry else attempt(item, ctx)
    attempts = getattr(last, "count", 1)
    evidence = last.evidence()
    message = last.message
    status = last.status
    if item.retry and status in (Status.FAIL, Status.ERROR):
        message = f"not healthy within {item.retry.timeout:g}s ({attempts} attempts); last: {message}"
    if item.window and status in (Status.PASS, Status.WARN):
        status, message, samples = _watch(item, ctx, last, t0, note)
        attempts += len(samples) - 1
        evidence["samples"] = samples
        evidence["window"] = {"duration_s": item.window.duration, "interval_s": item.window.interval}
    if item.retry:
        evidence["retry"] = {"timeout_s": item.retry.timeout, "interval_s": item.retry.interval, "attempts": attempts}
    return CheckResult(item.name, item.kind, item.severity, status, message, bound_evidence(evidence),
                       t0, round(time.time() - t0, 4), attempts)


MAX_DEPTH = 32  # nesting kept in evidence: deeper values are cut (a report serialiser stops at 255)
MAX_ITEMS = 200  # entries kept per list or mapping
MAX_TEXT = 4096  # characters kept per string
MAX_VALUES = 20_000  # values kept in one check's evidence in all


def bound_evidence(value: Any, depth: int = MAX_DEPTH) -> Any:
    """``value`` cut to what a report can always hold: nesting, entries per list or mapping,
    string length and the number of values, each bounded; each cut says where it was made.
    Only the stored evidence is cut: the check's verdict was decided on the whole value.

    >>> deep = []
    >>> for _ in range(300):
    ...     deep = [deep]
    >>> cut = bound_evidence({"observed": deep}, depth=3)
    >>> cut
    {'observed': [['…truncated at depth 3']]}
    >>> bound_evidence(["x" * 5000])[0][-32:]
    '… (5000 characters, cut at 4096)'
    """
    budget = [MAX_VALUES]
    return _bound(value, 1, depth, budget)


_PLAIN = frozenset({int, float, bool, type(None)})
_SHARED_TYPES = frozenset({str, int, float, bool, type(None)})
_ONLY_STR = frozenset({str})
_SHARED_MAX_ENTRIES = 8
_SHARED_LIMIT = 4096  # distinct mappings remembered; past it the cache starts over
#: small flat mappings of evidence, by content: thousands of checks whose evidence holds the
#: same condition outcome or the same headers keep one dict, not one each (~1 KB per check)
_SHARED: dict[tuple, Any] = {}


def _shared(mapping: dict) -> dict:
    """An equal dict kept by an earlier check, else ``mapping`` (remembered): only a flat
    dict of plain values (their types equal too: ``True`` is not ``1``, a ``Status`` not a
    ``str``), string keys, and no ``0.0`` (equal to ``-0.0``, which a report writes apart).

    A shared dict is never changed afterwards but by the report's redaction in place, which
    gives equal content equal output; :func:`forget_shared` starts over before it runs, so
    no later check is handed a redacted dict.

    >>> a = _shared({"ok": True, "level": "fail"}); b = _shared({"ok": True, "level": "fail"})
    >>> a is b, _shared({"ok": 1, "level": "fail"}) is a, _shared({"x": [1]}) == {"x": [1]}
    (True, False, True)
    """
    keys, values = tuple(mapping), tuple(mapping.values())
    types = tuple(map(type, values))
    if not _SHARED_TYPES.issuperset(types) or (float in types and 0.0 in values) or \
            not _ONLY_STR.issuperset(map(type, keys)):
        return mapping
    return _remembered((keys, values, types), mapping)


def _shared_list(items: list[dict]) -> list[dict]:
    """A list of the very same dicts (shared ones: a check's condition outcomes) as a list an
    earlier check kept, else ``items`` (remembered). The cache holds the list, so the ids of
    its dicts cannot be reused by other objects while it is remembered.

    >>> a = _shared({"ok": True}); _shared_list([a]) is _shared_list([a]), _shared_list([{"ok": True}]) == [a]
    (True, True)
    """
    return _remembered((list, *map(id, items)), items)


def _remembered(key: tuple, value):
    """What ``_SHARED`` holds under ``key``, else ``value``, remembered (the cache starts over
    when full)."""
    found = _SHARED.get(key)
    if found is not None:
        return found
    if len(_SHARED) >= _SHARED_LIMIT:
        _SHARED.clear()
    _SHARED[key] = value
    return value


def forget_shared() -> None:
    """Start the shared mappings over (before a report is redacted in place)."""
    _SHARED.clear()


def _bound(value: Any, level: int, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if type(value) in _PLAIN:  # most values: returned as they are, before any isinstance test
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else (
            # redaction-aware cut: a secret cut in half could no longer be recognised at the sink
            REDACTOR.excerpt(value, MAX_TEXT) + f"… ({len(value)} characters, cut at {MAX_TEXT})")
    if not isinstance(value, (dict, list, tuple)):
        return value
    if level > depth:
        return f"…truncated at depth {depth}"
    if budget[0] <= 0:
        return f"…truncated: evidence larger than {MAX_VALUES} values"
    count = len(value)
    if isinstance(value, dict):
        kept = value.items() if count <= MAX_ITEMS else list(value.items())[:MAX_ITEMS]
        out: Any = {k if isinstance(k, (str, int, float, bool)) or k is None else str(k):
                    _bound(v, level + 1, depth, budget) for k, v in kept}
        if count > MAX_ITEMS:
            out["…"] = f"{count - MAX_ITEMS} more entries not kept"
        elif level > 1 and count <= _SHARED_MAX_ENTRIES:
            return _shared(out)
        return out
    out = [_bound(v, level + 1, depth, budget) for v in (value if count <= MAX_ITEMS else value[:MAX_ITEMS])]
    if count > MAX_ITEMS:
        out.append(f"… {count - MAX_ITEMS} more items not kept")
    elif level > 1 and 0 < count <= _SHARED_MAX_ENTRIES and all(type(v) is dict for v in out):
        return _shared_list(out)
    return out




def _until_healthy(item: CheckItem, ctx: "probes.ProbeContext", note: Callable[[str], None]) -> Attempt:
    deadline = time.monotonic() + item.retry.timeout
    count = 0
    while True:
        count += 1
        note(f"retry until healthy, attempt {count}")
        last = attempt(item, ctx)
        if last.status in (Status.PASS, Status.WARN, Status.SKIPPED) or time.monotonic() + item.retry.interval > deadline:
            last.count = count  # type: ignore[attr-defined]
            return last
        time.sleep(item.retry.interval)


def _watch(item: CheckItem, ctx: "probes.ProbeContext", first: Attempt, t0: float,
           note: Callable[[str], None] = _quiet) -> tuple[str, str, list[dict]]:
    """Sample until the window closes; the first failing sample ends it."""
    window = item.window
    start = time.monotonic()
    samples = [first.sample(t0)]
    status = first.status
    # one sample at t=0 and one each interval up to the duration (1e-9: 0.3 // 0.1 is 2.0 in floats)
    expected = int((window.duration + 1e-9) // window.interval) + 1 if window.interval else 1
    while len(samples) < expected:
        note(f"window sample {len(samples)}/{expected}")
        next_at = start + len(samples) * window.interval
        time.sleep(max(0.0, next_at - time.monotonic()))
        current = attempt(item, ctx)
        samples.append(current.sample(t0))
        if current.status in (Status.FAIL, Status.ERROR):
            return current.status, (f"unstable: sample {len(samples)}/{expected} at "
                                    f"t={samples[-1]['t']:g}s failed: {current.message}"), samples
        if current.status == "warn":
            status = Status.WARN
    # cut redaction-aware: the message is redacted at the sinks, where a secret cut here could no longer be recognised
    message = "" if status == Status.PASS else REDACTOR.excerpt("; ".join(s.get("message", "") for s in samples
                                                                          if s["status"] == Status.WARN), 500)
    return status, message, samples


def _scalars(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool)) or v is None}
