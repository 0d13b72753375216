"""The run's progress line: checks done of total, what the others wait for, time elapsed.

A long run (a ten-minute stability window) is not ten minutes of silence. Nothing is shown
for the first ``delay`` seconds (2): a short run prints nothing. On a terminal the line is
redrawn in place (``\\r``) and cleared, with pytest's own partial line put back, before
pytest writes again; elsewhere (CI logs) a plain line is written every ``interval`` seconds
(10) at most. ``tick`` and ``clear`` are called by the thread that waits for a check's
result (pytest's own), between short waits: no second thread writes to the terminal.

>>> out = []
>>> clock = iter([0.0, 1.0, 3.0, 12.0]).__next__
>>> p = Progress(lambda: (1, [("api", "retry until healthy, attempt 3")]), 2, out.append,
...              tty=False, interval=10, clock=clock)
>>> p.tick(); p.tick(); p.tick()
>>> out
['opsgate: 1/2 done, 3s; api: retry until healthy, attempt 3\\n']
"""

from __future__ import annotations

import time
from typing import Callable

from .redact import sink

Snapshot = Callable[[], "tuple[int, list[tuple[str, str]]]"]

#: how many waiting checks the line names before "+N more"
SHOWN = 3


def render(done: int, total: int, waiting: list[tuple[str, str]], elapsed: float) -> str:
    """One progress line.

    >>> render(0, 2, [("stable", "window sample 4/10"), ("api", "waiting for a prerequisite db-port")], 12.4)
    'opsgate: 0/2 done, 12s; stable: window sample 4/10; api: waiting for a prerequisite db-port'
    >>> render(5, 10, [(f"c{i}", "probing") for i in range(5)], 61)
    'opsgate: 5/10 done, 1m01s; c0: probing; c1: probing; c2: probing; +2 more'
    """
    clock = f"{int(elapsed) // 60}m{int(elapsed) % 60:02d}s" if elapsed >= 60 else f"{int(elapsed)}s"
    parts = [f"opsgate: {done}/{total} done, {clock}", *(f"{name}: {why}" for name, why in waiting[:SHOWN])]
    if len(waiting) > SHOWN:
        parts.append(f"+{len(waiting) - SHOWN} more")
    return sink("; ".join(parts))


class Progress:
    """Shows ``snapshot()`` (checks done, and each waiting check with its reason) through
    ``write``; ``current_line()`` is what pytest has written on the terminal's current line,
    put back when the live line is cleared."""

    def __init__(self, snapshot: Snapshot, total: int, write: Callable[[str], None], tty: bool,
                 width: int = 80, current_line: Callable[[], str] = lambda: "", delay: float = 2.0,
                 interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.snapshot, self.total, self.write, self.tty = snapshot, total, write, tty
        self.width, self.current_line = max(20, width), current_line
        self.delay, self.interval, self.clock = delay, interval, clock
        self.started = clock()
        self.shown = 0  # characters of the live line now on screen
        self.drawn = ""  # the live line now on screen
        self.last: float | None = None  # when the last plain line was written

    def tick(self) -> None:
        """Draw the line if it is due; call it between short waits."""
        now = self.clock()
        elapsed = now - self.started
        if elapsed < self.delay or (not self.tty and self.last is not None and now - self.last < self.interval):
            return
        done, waiting = self.snapshot()
        text = render(done, self.total, waiting, elapsed)
        if self.tty:
            text = text[: self.width - 1]  # a wrapped line could not be redrawn in place
            if self.shown and text == self.drawn:
                return
            self.drawn = text
            self.write("\r" + text + " " * max(0, self.shown - len(text)))
            self.shown = len(text)
        else:
            line = self.current_line()
            self.write(("\n" if line else "") + text + "\n" + line)
            self.last = now

    def clear(self) -> None:
        """Erase the live line and put pytest's partial line back (a no-op when none is shown)."""
        if self.tty and self.shown:
            self.write("\r" + " " * self.shown + "\r" + self.current_line())
            self.shown = 0
