"""JSON a target sent (an HTTP body, a command's stdout), parsed with a bound on nesting.

A document nested deeper than ``max_depth`` is refused: the conditions, the report's
serialiser and other readers recurse, and a hostile target can send 100,000 ``[``.

>>> loads_bounded("[[1]]", 2)
[[1]]
>>> loads_bounded("[[[1]]]", 2)
Traceback (most recent call last):
opsgate.jsondoc.TooDeep: nested more than 2 levels
>>> loads_bounded("[" * 100000, 128)
Traceback (most recent call last):
opsgate.jsondoc.TooDeep: nested more than 128 levels
"""

from __future__ import annotations

import json
from typing import Any


class TooDeep(ValueError):
    """The document nests containers more than the allowed levels."""


def loads_bounded(text: str, max_depth: int) -> Any:
    """``json.loads(text)``, raising TooDeep past ``max_depth`` levels (the parser's own
    RecursionError included) and ValueError for text that is not JSON."""
    try:
        document = json.loads(text)
    except RecursionError:
        raise TooDeep(f"nested more than {max_depth} levels") from None
    if text.count("[") + text.count("{") <= max_depth:
        return document  # cannot be deeper than its brackets: no walk needed
    stack = [(document, 1)] if isinstance(document, (dict, list)) else []
    while stack:  # a loop, not recursion: the document may be deep
        value, depth = stack.pop()
        if depth > max_depth:
            raise TooDeep(f"nested more than {max_depth} levels")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return document
