"""A check's remedy: the runbook's next step, shown beside its failure and never on a pass.

A configured item carries it as ``remedy:`` (``"./start_aura.sh - runbook: Server Won't
Start"``, or a URL); a hand-written check as ``@pytest.mark.remedy("...")``. It is shown for
a check that failed, erred or warned - a passed, blocked or skipped check has nothing to act
on (a blocked one's root cause carries its own). Every output that shows it passes it
through the redaction sink like a message, so a remedy naming a secret never prints it.

>>> remedy_for("fail", "./start_aura.sh"), remedy_for("pass", "./start_aura.sh")
('./start_aura.sh', None)
>>> suffix("error", "https://wiki/runbook#db")
' -- remedy: https://wiki/runbook#db'
"""

from __future__ import annotations

from typing import Any

#: statuses beside which a remedy is shown
SHOWN_FOR = frozenset({"fail", "error", "warn"})
MAX_CHARS = 500  # a remedy is a step or a link, not a document: longer ones are cut where shown


def remedy_for(status: Any, remedy: Any) -> str | None:
    """``remedy`` when a check of ``status`` should show it, else None.

    >>> remedy_for("warn", " restart it "), remedy_for("blocked", "x"), remedy_for("fail", "")
    ('restart it', None, None)
    """
    if str(status) not in SHOWN_FOR or not isinstance(remedy, str) or not remedy.strip():
        return None
    text = " ".join(remedy.split())
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + "…"


def of_marker(node: Any) -> str | None:
    """The text of a pytest item's ``@pytest.mark.remedy("...")`` (first argument, or ``text=``), or None.

    >>> import pytest
    >>> class Node:
    ...     def get_closest_marker(self, name):
    ...         return pytest.mark.remedy("systemctl restart app").mark
    >>> of_marker(Node())
    'systemctl restart app'
    """
    mark = node.get_closest_marker("remedy") if hasattr(node, "get_closest_marker") else None
    if mark is None:
        return None
    text = mark.args[0] if mark.args else mark.kwargs.get("text")
    return str(text) if text is not None else None


def of_check(check: Any, node: Any = None) -> str | None:
    """A check's remedy: its item's ``remedy:``, else its test's ``remedy`` marker.

    >>> from opsgate.model import FileCheck
    >>> of_check(FileCheck(name="m", path="x", remedy="touch x"))
    'touch x'
    """
    own = getattr(check, "remedy", None) if check is not None else None
    return own or (of_marker(node) if node is not None else None)


def suffix(status: Any, remedy: Any) -> str:
    """What a one-line failure message gets appended: `` -- remedy: ...``, or nothing."""
    shown = remedy_for(status, remedy)
    return f" -- remedy: {shown}" if shown else ""
