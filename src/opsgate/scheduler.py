"""Prerequisites: whether a check is blocked by a failed one, and in what order to run them.

One place decides and words "blocked by a failed prerequisite" for every way a check runs:
configured checks run by the engine (:mod:`opsgate.engine`), configured checks run inline on a
pytest-xdist worker, and hand-written checks with ``@pytest.mark.depends_on``. A prerequisite
that passed or warned lets its dependents run; anything else (fail, error, blocked, a
hand-written check that was skipped or did not run first) blocks them, and the message names
each failed prerequisite with its status.

>>> result = blocked("api", "http", "P0", [("db-port", "fail"), ("cache", "pass"), ("dns", "error")])
>>> result.status, result.message, result.blocked_by
('blocked', 'not run: blocked by db-port (fail), dns (error)', ['db-port', 'dns'])
>>> blocked("api", "http", "P0", [("db-port", "warn")]) is None
True
>>> prerequisites_first("c", {"c": ["b"], "b": ["a"], "a": []}.__getitem__)
['a', 'b', 'c']
"""

from __future__ import annotations

from typing import Callable, Iterable

from .results import CheckResult, Status

#: a prerequisite with one of these statuses lets its dependents run
LETS_RUN = frozenset({Status.PASS, Status.WARN})


def blocked_message(failed: Iterable[tuple[str, str]]) -> str:
    """``not run: blocked by db-port (fail), test_schema (skipped)``."""
    return "not run: blocked by " + ", ".join(f"{name} ({status})" for name, status in failed)


def blocked(name: str, kind: str, severity: str, prerequisites: Iterable[tuple[str, str]]) -> CheckResult | None:
    """The ``blocked`` result of a check whose prerequisites ended with these ``(name, status)``
    pairs, or None when every one of them passed or warned (the check may run)."""
    failed = [(dep, str(status)) for dep, status in prerequisites if status not in LETS_RUN]
    if not failed:
        return None
    return CheckResult(name, kind, severity, Status.BLOCKED, blocked_message(failed),
                       blocked_by=[dep for dep, _ in failed])


def prerequisites_first(name: str, depends_on: Callable[[str], Iterable[str]]) -> list[str]:
    """``name`` and everything it depends on (``depends_on(n)`` lists n's known prerequisites),
    each once, every prerequisite before its dependents. A loop, not recursion: a chain of
    thousands of links does not reach Python's recursion limit. A cycle (refused when the
    environment is loaded) cannot loop here: a check already on the path is not entered again.

    >>> chain = {str(i): [str(i - 1)] if i else [] for i in range(5000)}
    >>> order = prerequisites_first("4999", chain.__getitem__)
    >>> order[:3], order[-1], len(order)
    (['0', '1', '2'], '4999', 5000)
    """
    order: list[str] = []
    seen = {name}
    stack = [(name, iter(depends_on(name)))]
    while stack:
        current, deps = stack[-1]
        dep = next(deps, None)
        if dep is None:
            stack.pop()
            order.append(current)
        elif dep not in seen:
            seen.add(dep)
            stack.append((dep, iter(depends_on(dep))))
    return order
