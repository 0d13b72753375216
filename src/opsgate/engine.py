"""Run many checks at once, bounded, honouring ``depends_on``; a stuck probe never starves a healthy one.

The pytest plugin starts an Engine with every selected check before the first test
runs; each test then waits for its own result. A run's wall time follows its slowest
probe, not the sum. A check whose prerequisite failed is not run: its result is
``blocked`` and names the prerequisite (decided and worded by :mod:`opsgate.scheduler`).

Scheduling: ``concurrency`` is a soft limit. A check takes one of ``concurrency`` slots
when it starts. A probe still running after ``STALL_S`` (or its own timeout, if shorter)
counts as *stalled*: it gives its slot back, so the next check in line starts, and keeps
running on its own thread until its own deadline ends it (every probe is bounded by its
timeout). Stalled probes are capped (``overtime`` = 4 x concurrency, at most 1024), so a
run never holds more than ``concurrency + overtime`` probes at once; past the cap, the
slots stay held until a stalled probe ends. So a healthy check waits behind stuck ones
for at most STALL_S per ``concurrency`` of them, and not at all once the cap is free
(old behaviour: five header-trickling targets at concurrency 2 held both slots for
minutes and the healthy check timed out unrun). The price: a long probe that is
working, not waiting (a command running a test suite), also stops counting after
STALL_S, so up to ``concurrency + overtime`` such probes may run at once; set
``concurrency`` with that in mind.

>>> from opsgate.model import FileCheck
>>> from opsgate.probes import ProbeContext
>>> engine = Engine([FileCheck(name="a", path="/etc/hostname"),
...                  FileCheck(name="b", path="/nonexistent", depends_on=[]),
...                  FileCheck(name="c", path="/etc/hostname", depends_on=["b"])], ProbeContext())
>>> engine.start()
>>> [engine.result(n).status for n in "abc"]
['pass', 'fail', 'blocked']
>>> engine.shutdown()
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Iterable

from .model import CheckItem
from .probes import ProbeContext
from .results import CheckResult, Status
from .runner import run_check
from .scheduler import blocked

#: a probe running longer than this (or than its own timeout) no longer holds a slot
STALL_S = 0.5
#: stalled probes allowed at once, per slot of concurrency, and in all
OVERTIME_PER_SLOT = 4
OVERTIME_MAX = 1024


class _Outcome:
    """One check's result once it is known; waiters share the engine's condition (a Future
    with its own Condition and lock per check costs ~1 KB in a run of thousands)."""

    __slots__ = ("value", "_cond")

    def __init__(self, cond: threading.Condition) -> None:
        self.value: CheckResult | None = None
        self._cond = cond

    def done(self) -> bool:
        return self.value is not None

    def result(self, timeout: float | None = None) -> CheckResult:
        """The result; TimeoutError when it is not known within ``timeout``."""
        value = self.value
        if value is not None:
            return value
        with self._cond:
            if not self._cond.wait_for(lambda: self.value is not None, timeout):
                raise TimeoutError
            return self.value

    def set_result(self, value: CheckResult) -> None:
        with self._cond:
            self.value = value
            self._cond.notify_all()


class Engine:
    """Schedules checks on daemon threads under a soft concurrency limit (see the module's
    docstring); a check starts once its prerequisites finish. Threads are daemons: a probe
    that outlived its timeout (a bug) never holds the process after the verdict."""

    def __init__(self, items: Iterable[CheckItem], ctx: ProbeContext, concurrency: int = 50):
        self.items = {i.name: i for i in items}
        self.ctx = ctx
        self.concurrency = max(1, concurrency)
        self.overtime = min(OVERTIME_MAX, OVERTIME_PER_SLOT * self.concurrency)
        self._done = threading.Condition()  # a result was set: whoever waits for one looks
        self.futures: dict[str, _Outcome] = {name: _Outcome(self._done) for name in self.items}
        self._submitted: set[str] = set()
        # only checks something depends on have an entry: not an empty list for each of thousands
        self._dependents: dict[str, list[str]] = {}
        for item in self.items.values():
            for dep in item.depends_on:
                if dep in self.items:
                    self._dependents.setdefault(dep, []).append(item.name)
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._ready: deque[str] = deque()
        self._slotted: dict[str, float] = {}  # running and holding a slot: name -> when it stalls
        self._stalled: set[str] = set()  # running past its stall time: no slot held
        self._stopping = False
        self._scheduler: threading.Thread | None = None
        # workers wait here for a check to run; there are always as many as running checks
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._workers = 0
        self.notes: dict[str, str] = {}  # running check -> what it is doing now, for progress

    def start(self) -> None:
        """Queue every check whose prerequisites are met (all of them without depends_on)."""
        # started before any probe runs: a thread started while hundreds of probes compete
        # for the interpreter takes milliseconds, which would spread their start over seconds
        self._spawn(min(self.concurrency, len(self.items)))
        self._scheduler = threading.Thread(target=self._schedule, name="opsgate-scheduler", daemon=True)
        self._scheduler.start()
        for name in self.items:
            blocked = self._maybe_submit(name)  # a prerequisite may already have failed
            if blocked:
                self._finish(*blocked)

    def waiting(self) -> tuple[int, list[tuple[str, str]]]:
        """Checks done, and each check not done with what it waits for ("probing", "retry
        until healthy, attempt 3", "window sample 4/10", "waiting for a prerequisite db")."""
        done, left = 0, []
        for name, future in list(self.futures.items()):
            if future.done():
                done += 1
            elif (note := self.notes.get(name)) is not None:
                left.append((name, note))
            else:
                pending = [d for d in self.items[name].depends_on if d in self.futures and not self.futures[d].done()]
                left.append((name, f"waiting for a prerequisite {pending[0]}" if pending else "waiting for a free slot"))
        return done, left

    def result(self, name: str, timeout: float | None = None) -> CheckResult:
        """Wait for one check's result (raises TimeoutError after ``timeout``)."""
        return self.futures[name].result(timeout=timeout)

    def shutdown(self) -> None:
        """Checks not yet started are not run (their result says so); running ones end at
        their own deadlines."""
        with self._cond:
            self._stopping = True
            left, self._ready = list(self._ready), deque()
            self._cond.notify_all()
            workers, self._workers = self._workers, 0
        for _ in range(workers):
            self._tasks.put(None)
        for name in left:
            item = self.items[name]
            self._finish(name, CheckResult(item.name, item.kind, item.severity, Status.ERROR, "not run: the run was stopped"))

    def _maybe_submit(self, name: str) -> tuple[str, CheckResult] | None:
        """Queue ``name`` once its prerequisites are done; return its result instead when it
        cannot run (blocked, or the run is stopping), for the caller to finish."""
        item = self.items[name]
        deps = [d for d in item.depends_on if d in self.items]
        with self._lock:
            if name in self._submitted or not all(self.futures[d].done() for d in deps):
                return
            self._submitted.add(name)
        result = blocked(item.name, item.kind, item.severity, [(d, self.futures[d].result().status) for d in deps])
        if result is not None:
            return name, result
        with self._cond:
            if self._stopping:
                stopped = True
            else:
                stopped = False
                self._ready.append(name)
                self._cond.notify_all()
        if stopped:
            return name, CheckResult(item.name, item.kind, item.severity, Status.ERROR, "not run: the run was stopped")
        return None

    def _schedule(self) -> None:
        """Start checks while a slot is free; move probes past their stall time out of the slots."""
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = time.monotonic()
                for name, stall_at in list(self._slotted.items()):
                    if stall_at <= now and len(self._stalled) < self.overtime:
                        del self._slotted[name]
                        self._stalled.add(name)
                starting = []
                while self._ready and len(self._slotted) < self.concurrency:
                    name = self._ready.popleft()
                    self._slotted[name] = now + min(STALL_S, self.items[name].timeout)
                    starting.append(name)
                missing = len(self._slotted) + len(self._stalled) - self._workers
                if not starting:
                    waits = [at - now for at in self._slotted.values()]
                    room = len(self._stalled) < self.overtime
                    self._cond.wait(max(0.005, min(waits)) if waits and room else None)
            self._spawn(missing)  # outside the lock: probes that end meanwhile are not held up
            for name in starting:
                self._tasks.put(name)

    def _spawn(self, count: int) -> None:
        for _ in range(max(0, count)):
            with self._cond:
                self._workers += 1
                index = self._workers
            threading.Thread(target=self._work, name=f"opsgate-probe-{index}", daemon=True).start()

    def _work(self) -> None:
        while (name := self._tasks.get()) is not None:
            self._run(name)

    def _run(self, name: str) -> None:
        item = self.items[name]
        self.notes[name] = "probing"
        try:
            result = run_check(item, self.ctx, lambda text: self.notes.__setitem__(name, text))
        except BaseException as exc:  # run_check never raises; if it does, the check says so
            result = CheckResult(item.name, item.kind, item.severity, Status.ERROR, f"internal error: {type(exc).__name__}: {exc}")
        with self._cond:
            self._slotted.pop(name, None)
            self._stalled.discard(name)
            self._cond.notify_all()
        self._finish(name, result)
        self.notes.pop(name, None)

    def _finish(self, name: str, result: CheckResult) -> None:
        # a loop, not recursion: a failed root of a 3,000-link depends_on chain blocks them all
        pending = [(name, result)]
        while pending:
            done, outcome = pending.pop()
            if outcome.host is None:  # a check@host copy's result names its host
                outcome.host = self.items[done].on_host
            self.futures[done].set_result(outcome)
            for dependent in self._dependents.get(done, ()):
                blocked = self._maybe_submit(dependent)
                if blocked:
                    pending.append(blocked)
