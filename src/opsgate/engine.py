"""Run many checks at once, bounded, honouring ``depends_on``.

The pytest plugin starts an Engine with every selected check before the first test
runs; each test then waits for its own result. A run's wall time follows its slowest
probe, not the sum. A check whose prerequisite failed is not run: its result is
``blocked`` and names the prerequisite.

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
from concurrent.futures import Future
from typing import Any, Callable, Iterable

from .model import CheckItem
from .probes import ProbeContext
from .results import CheckResult
from .runner import run_check


class DaemonPool:
    """A bounded pool of daemon threads. ThreadPoolExecutor's workers are joined at interpreter
    exit, so one probe that outlived its timeout (a bug) would hold the process after the
    verdict was printed; these are not.

    >>> pool = DaemonPool(2, "demo")
    >>> pool.submit(sum, [1, 2]).result()
    3
    >>> pool.shutdown()
    """

    def __init__(self, workers: int, name: str):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._workers = workers
        for index in range(workers):
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True).start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        self._tasks.put((future, fn, args))
        return future

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, fn, args = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)

    def shutdown(self) -> None:
        """Cancel what has not started; let the workers end when idle."""
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task[0].cancel()
        for _ in range(self._workers):
            self._tasks.put(None)


class Engine:
    """Schedules checks on a bounded thread pool; a check starts once its prerequisites finish."""

    def __init__(self, items: Iterable[CheckItem], ctx: ProbeContext, concurrency: int = 50):
        self.items = {i.name: i for i in items}
        self.ctx = ctx
        self.concurrency = max(1, concurrency)
        self.futures: dict[str, Future] = {name: Future() for name in self.items}
        self._submitted: set[str] = set()
        self._dependents: dict[str, list[str]] = {name: [] for name in self.items}
        for item in self.items.values():
            for dep in item.depends_on:
                if dep in self.items:
                    self._dependents[dep].append(item.name)
        self._lock = threading.Lock()
        self._pool: DaemonPool | None = None

    def start(self) -> None:
        """Submit every check whose prerequisites are met (all of them without depends_on)."""
        self._pool = DaemonPool(min(self.concurrency, max(1, len(self.items))), "opsgate-probe")
        for name in self.items:
            self._maybe_submit(name)

    def result(self, name: str, timeout: float | None = None) -> CheckResult:
        """Wait for one check's result (raises TimeoutError after ``timeout``)."""
        return self.futures[name].result(timeout=timeout)

    def shutdown(self) -> None:
        if self._pool:
            self._pool.shutdown()

    def _maybe_submit(self, name: str) -> None:
        item = self.items[name]
        deps = [d for d in item.depends_on if d in self.items]
        with self._lock:
            if name in self._submitted or not all(self.futures[d].done() for d in deps):
                return
            self._submitted.add(name)
        failed = [d for d in deps if self.futures[d].result().status not in ("pass", "warn")]
        if failed:
            self._finish(name, CheckResult(
                item.name, item.kind, item.severity, "blocked",
                f"not run: blocked by {', '.join(failed)} ({self.futures[failed[0]].result().status})",
                blocked_by=failed))
            return
        future = self._pool.submit(run_check, item, self.ctx)
        future.add_done_callback(lambda f: self._finish(name, _outcome(item, f)))

    def _finish(self, name: str, result: CheckResult) -> None:
        self.futures[name].set_result(result)
        for dependent in self._dependents[name]:
            self._maybe_submit(dependent)


def _outcome(item: CheckItem, future: Future) -> CheckResult:
    if future.cancelled():
        return CheckResult(item.name, item.kind, item.severity, "error", "not run: the run was stopped")
    exc = future.exception()
    if exc is not None:
        return CheckResult(item.name, item.kind, item.severity, "error", f"internal error: {type(exc).__name__}: {exc}")
    return future.result()
