"""A module imported on first use: heavy client libraries (psycopg, redis) stay out of every
run that only loads the schema (``import opsgate.model`` builds the backup kind's Options).

>>> json = lazy("json")
>>> json.dumps([1])  # imported here
'[1]'
"""

from __future__ import annotations

from importlib import import_module
from typing import Any


class lazy:  # noqa: N801 (used like a module)
    """Stands for module ``name``; the first attribute read imports it."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"
