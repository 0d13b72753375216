"""One severity scale, P0 (critical) to P3 (low), reached from the scales runbooks use.

Reference runbooks classify incidents as P0-P3, P1-P4 or SEV-0-SEV-3, or with words.
An environment names its scale once (``severity_scale``) and every item's severity is
normalised to the P0-P3 scale opsgate gates on (gate policies speak it: ``block: [P0, P1]``
means the two most critical levels, whatever an environment calls them). What people read
and select — the terminal, ``opsgate list``, the report's ``severity_label``, ``-m P1`` —
uses the environment's own labels: on a P1-P4 scale the most critical level is ``P1``.

>>> normalise("critical")
'P0'
>>> normalise("SEV-2")
'P2'
>>> normalise("P4", scale="P1-P4")
'P3'
"""

from __future__ import annotations

import re

LEVELS = ("P0", "P1", "P2", "P3")
WORDS = {"critical": "P0", "high": "P1", "medium": "P2", "low": "P3"}
SCALES = ("P0-P3", "P1-P4", "SEV0-SEV3")


def normalise(value: object, scale: str = "P0-P3") -> str:
    """Return the P0-P3 level for ``value`` read on ``scale``; ValueError names what is accepted.

    >>> normalise("p1")
    'P1'
    >>> normalise(2)
    'P2'
    """
    text = str(value).strip()
    lowered = text.lower()
    if lowered in WORDS:
        return WORDS[lowered]
    match = re.fullmatch(r"(p|sev-?)?([0-9])", lowered)
    if match:
        prefix, number = match.group(1) or "p", int(match.group(2))
        if scale == "P1-P4" and prefix == "p":
            number -= 1
        if 0 <= number <= 3:
            return LEVELS[number]
    accepted = {"P0-P3": "P0..P3", "P1-P4": "P1..P4", "SEV0-SEV3": "SEV-0..SEV-3"}[scale]
    raise ValueError(f"expected a severity ({accepted} or critical/high/medium/low), seen {text!r}")


def label(level: str, scale: str = "P0-P3") -> str:
    """The environment's own name for a P0-P3 ``level``.

    >>> label("P0", "P1-P4"), label("P2", "SEV0-SEV3"), label("P3")
    ('P1', 'SEV-2', 'P3')
    """
    if level not in LEVELS:
        return level
    number = LEVELS.index(level)
    return {"P1-P4": f"P{number + 1}", "SEV0-SEV3": f"SEV-{number}"}.get(scale, level)


def marker(level: str, scale: str = "P0-P3") -> str:
    """The pytest marker for ``level`` on ``scale`` (markers are identifiers: ``SEV2``, not ``SEV-2``).

    >>> marker("P0", "P1-P4"), marker("P1", "SEV0-SEV3")
    ('P1', 'SEV1')
    """
    return label(level, scale).replace("-", "")


#: every marker a severity can have, on any scale
MARKERS = ("P0", "P1", "P2", "P3", "P4", "SEV0", "SEV1", "SEV2", "SEV3")


def rank(level: str) -> int:
    """Sort key: P0 first.

    >>> sorted(["P2", "P0"], key=rank)
    ['P0', 'P2']
    """
    return LEVELS.index(level)
