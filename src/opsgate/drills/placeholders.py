"""The drill's own placeholders: ``{{port}}``, ``{{scratch}}``, ``{{copy}}``, ``{{restored}}``,
``{{restored:NAME}}`` and ``{{url}}``, filled when the drill runs (the free port and the
scratch place are only known then).

They are written with double braces so that they never clash with the environment file's
``${VAR}`` (filled when the file is loaded) nor with the braces of a JSON body.

>>> fill({"url": "http://127.0.0.1:{{port}}/health", "port": "{{port}}"}, {"port": "8123"})
{'url': 'http://127.0.0.1:8123/health', 'port': '8123'}
>>> fill("{{nope}}", {"port": "1"})
Traceback (most recent call last):
ValueError: unknown drill placeholder {{nope}}: expected one of {{port}}
"""

from __future__ import annotations

import re
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?::[A-Za-z0-9_.:/-]+)?)\s*\}\}")

#: what a plan or a load-time check fills in, where the run's values are not known yet
SAMPLE = {"port": "65535", "scratch": "/scratch", "copy": "/scratch/copy", "url": "http://127.0.0.1:65535",
          "restored": "/scratch/restored"}


def fill(value: Any, values: dict[str, str]) -> Any:
    """``value`` (text, or lists and mappings of it) with every placeholder replaced."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: _one(m.group(1), values), value)
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    return value


def names(value: Any) -> set[str]:
    """Every placeholder name ``value`` uses.

    >>> sorted(names({"a": ["{{port}}", "x {{restored:db}}"]}))
    ['port', 'restored:db']
    """
    if isinstance(value, str):
        return {m.group(1) for m in PLACEHOLDER.finditer(value)}
    if isinstance(value, list):
        return set().union(*(names(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(names(v) for v in value.values())) if value else set()
    return set()


def _one(name: str, values: dict[str, str]) -> str:
    if name in values:
        return values[name]
    if name.startswith("restored:") and "restored" in values and name not in values:
        known = sorted(k for k in values if k.startswith("restored:"))
        raise ValueError(f"unknown drill placeholder {{{{{name}}}}}: this drill restores "
                         f"{', '.join('{{' + k + '}}' for k in known) or 'no named backup'}")
    raise ValueError(f"unknown drill placeholder {{{{{name}}}}}: expected one of "
                     f"{', '.join('{{' + k + '}}' for k in values)}")
