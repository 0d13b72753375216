"""Counts as L4 states them: how far a restored count may be from live's: an absolute number (``10``) or a percent of
live's (``"0.5%"``). Live keeps changing after a backup is taken, so an exact match is rarely
the right test; the tolerance is stated in every L4 message.

>>> t = Tolerance.parse("0.5%")
>>> t.allows(995, 1000), t.allows(994, 1000), str(t)
(True, False, '0.5%')
>>> Tolerance.parse(10).allows(3, 12), str(Tolerance.parse("0"))
(True, '0')
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


@dataclass(frozen=True)
class Tolerance:
    """``amount`` items, or ``amount`` percent of live's count when ``percent``."""

    amount: float
    percent: bool = False

    @classmethod
    def parse(cls, value: Any) -> "Tolerance":
        """``0``, ``10``, ``"10"``, ``"0.5%"``; anything else is a ValueError naming it.

        >>> Tolerance.parse("-1")
        Traceback (most recent call last):
        ValueError: expected a tolerance like 0, 10 or 0.5%, seen '-1'
        """
        if isinstance(value, Tolerance):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 and math.isfinite(value):
            return cls(float(value))
        match = _TEXT.match(value) if isinstance(value, str) else None
        if not match:
            raise ValueError(f"expected a tolerance like 0, 10 or 0.5%, seen {value!r}")
        return cls(float(match.group(1)), bool(match.group(2)))

    def allowed(self, live: int) -> float:
        """The largest difference allowed from ``live``.

        >>> Tolerance.parse("1%").allowed(250)
        2.5
        """
        return live * self.amount / 100 if self.percent else self.amount

    def allows(self, restored: int, live: int) -> bool:
        """True when ``restored`` is within the tolerance of ``live`` (either way).

        >>> Tolerance.parse(0).allows(3, 3), Tolerance.parse(0).allows(2, 3)
        (True, False)
        """
        return abs(restored - live) <= self.allowed(live)

    def of(self, noun: str) -> str:
        """How a message states it: ``0.5%``, ``10 rows``, ``1 key``.

        >>> Tolerance.parse("0.5%").of("row"), Tolerance.parse(10).of("row"), Tolerance.parse(1).of("key")
        ('0.5%', '10 rows', '1 key')
        """
        return str(self) if self.percent else f"{self.amount:g} {noun}{'' if self.amount == 1 else 's'}"

    def __str__(self) -> str:
        return f"{self.amount:g}%" if self.percent else f"{self.amount:g}"


# an Options field: written 0, 10 or "0.5%" in the environment file, a Tolerance in code
TOLERANCE = Annotated[
    Tolerance,
    BeforeValidator(Tolerance.parse),
    PlainSerializer(str),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": r"^\d+(\.\d+)?%?$"}],
                    "description": "an absolute count (10) or a percent of live's (0.5%)"}),
]


def counted(number: int, noun: str) -> str:
    """``1 table``, ``1,000,000 rows``: a count and its noun, plural when it is not one.

    >>> counted(1, "table"), counted(1000000, "row"), counted(0, "key")
    ('1 table', '1,000,000 rows', '0 keys')
    """
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
