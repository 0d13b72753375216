"""Runbook traceability: an environment's ``runbook:`` section lists every operational step of
the system's runbook(s), each either encoded by checks of the environment or classified not
automatable (a person decides, speaks, or acts on something no probe can reach).

The schema is here; the checks that need the whole environment (encoded names exist, exactly
one of ``encoded`` and ``not_automatable``, ``why`` for ``how: command|handwritten``) are
:func:`problems`, called when the file loads; :func:`rows`, :func:`render_text` and
:func:`render_markdown` make ``opsgate list --runbook``'s table.

>>> book = Runbook.model_validate({"steps": [
...     {"section": "Daily", "step": "curl /health", "encoded": "health"},
...     {"section": "Comms", "step": "tell #incidents", "not_automatable": "a person speaks"}]})
>>> book.steps[0].names, book.steps[1].names
(['health'], [])
>>> summary(book)
'2 steps: 1 encoded (1 native), 1 not automatable'
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import Field

from .schema import Strict

HOWS = ("native", "command", "handwritten")
_HOW_WORDS = {"native": "native", "command": "command", "handwritten": "hand-written"}


class RunbookStep(Strict):
    """One step of a runbook, in its own words, and what encodes it."""

    section: str = Field(min_length=1, description="the runbook's own heading")
    step: str = Field(min_length=1, description="the step, in the runbook's words (short)")
    source: str | None = Field(None, description="the runbook file or title (optional with one source)")
    encoded: str | list[str] | None = Field(None, description="the check id(s) encoding the step: item names")
    how: Literal["native", "command", "handwritten"] | None = Field(
        None, description="native (default): a check kind; command or handwritten: no kind fits (say why)")
    why: str | None = Field(None, description="why no native kind fits (required with how: command|handwritten)")
    not_automatable: str | None = Field(None, description="instead of encoded: why no check can do it")

    @property
    def names(self) -> list[str]:
        """The check ids encoding the step, as a list (none when not automatable)."""
        if self.encoded is None:
            return []
        return [self.encoded] if isinstance(self.encoded, str) else list(self.encoded)

    @property
    def method(self) -> str:
        """native, command or handwritten for an encoded step; '' when not automatable."""
        return (self.how or "native") if self.encoded is not None else ""


class Runbook(Strict):
    """Every operational step of the runbook(s) the environment encodes, classified."""

    sources: list[str] = Field([], description="the runbook files this environment encodes (paths or titles)")
    steps: list[RunbookStep] = Field([], description="every step, in runbook order")


Problem_ = tuple[tuple[Any, ...], str]  # (key path inside the file, message)


def problems(book: Runbook, items: dict[str, Any]) -> list[Problem_]:
    """What is wrong with a runbook section, given the environment's items by name: each as
    (key path, message) for the loader to place in the file.

    >>> book = Runbook.model_validate({"steps": [{"section": "S", "step": "a", "encoded": ["x", "y"]},
    ...     {"section": "S", "step": "b"}, {"section": "S", "step": "c", "encoded": "x", "how": "command"}]})
    >>> for at, message in problems(book, {"x": None}):
    ...     print(at, message)
    ('runbook', 'steps', 0, 'encoded', 1) expected the name of an item of this environment, seen 'y'
    ('runbook', 'steps', 1) expected exactly one of encoded (check ids) and not_automatable (why), seen neither
    ('runbook', 'steps', 2, 'how') expected why (no native kind fits because ...) with how: command, seen none
    """
    found: list[Problem_] = []
    for index, step in enumerate(book.steps):
        at = ("runbook", "steps", index)
        if (step.encoded is None) == (step.not_automatable is None):
            seen = "both" if step.encoded is not None else "neither"
            found.append((at, f"expected exactly one of encoded (check ids) and not_automatable (why), seen {seen}"))
        if step.encoded is not None:
            if isinstance(step.encoded, list):
                if not step.encoded:
                    found.append((at + ("encoded",), "expected at least one check id, seen an empty list"))
                for n, name in enumerate(step.encoded):
                    if name not in items:
                        found.append((at + ("encoded", n),
                                      f"expected the name of an item of this environment, seen {name!r}"))
            elif step.encoded not in items:
                found.append((at + ("encoded",), f"expected the name of an item of this environment, seen {step.encoded!r}"))
        if step.how in ("command", "handwritten") and not (step.why or "").strip():
            found.append((at + ("how",), f"expected why (no native kind fits because ...) with how: {step.how}, seen none"))
        if step.encoded is None and step.how is not None:
            found.append((at + ("how",), f"expected how only on an encoded step, seen how: {step.how} "
                                         "with not_automatable"))
        if step.source is not None and book.sources and step.source not in book.sources:
            found.append((at + ("source",), f"expected one of the sources ({', '.join(book.sources)}), "
                                            f"seen {step.source!r}"))
    return found


def summary(book: Runbook) -> str:
    """The count line: ``31 steps: 24 encoded (20 native, 3 command, 1 hand-written), 7 not automatable``."""
    methods = Counter(step.method for step in book.steps)
    encoded = sum(methods[h] for h in HOWS)
    parts = ", ".join(f"{methods[h]} {_HOW_WORDS[h]}" for h in HOWS if methods[h])
    line = f"{len(book.steps)} steps: {encoded} encoded" + (f" ({parts})" if parts else "")
    return line + f", {methods['']} not automatable"


def rows(book: Runbook, items: dict[str, Any], label: Any = str) -> list[tuple[str, str, str, str]]:
    """One row per step: section, step, how, and the check ids (each with its kind, cadence
    and severity, ``label`` turning a severity into the scale's word) or "not automatable: why".

    >>> class Item:
    ...     kind, cadence, severity = "http", ["daily"], "P0"
    >>> book = Runbook.model_validate({"steps": [{"section": "S", "step": "curl", "encoded": "api", "source": "r.md"}]})
    >>> rows(book, {"api": Item()})
    [('S', 'curl', 'native', 'api (http, daily, P0)')]
    """
    out = []
    for step in book.steps:
        if step.encoded is None:
            what = f"not automatable: {step.not_automatable}"
        else:
            what = "; ".join(_described(name, items.get(name), label) for name in step.names)
            if step.why:
                what += f" — why {step.method}: {step.why}"
        out.append((step.section, step.step, _HOW_WORDS.get(step.method, "-") if step.method else "-", what))
    return out


def _described(name: str, item: Any, label: Any) -> str:
    if item is None:
        return f"{name} (missing)"
    return f"{name} ({item.kind}, {','.join(item.cadence)}, {label(item.severity)})"


def render_text(book: Runbook, items: dict[str, Any], label: Any = str) -> str:
    """The table in columns, then the count line."""
    table = [("SECTION", "STEP", "HOW", "CHECKS")] + rows(book, items, label)
    widths = [min(max(len(row[i]) for row in table), 48) for i in range(3)]
    lines = ["  ".join(_cut(cell, width).ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3]
             for row in table]
    return "\n".join(lines + ["", summary(book)]) + "\n"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def render_markdown(book: Runbook, items: dict[str, Any], label: Any = str, title: str = "") -> str:
    """The same table as Markdown, grouped by source when there are several, with the count line.

    >>> book = Runbook.model_validate({"steps": [{"section": "S", "step": "a|b", "not_automatable": "people"}]})
    >>> print(render_markdown(book, {}, title="demo"))  # doctest: +NORMALIZE_WHITESPACE
    # Runbook trace: demo
    <BLANKLINE>
    1 steps: 0 encoded, 1 not automatable
    <BLANKLINE>
    | Section | Step | How | Checks |
    |---|---|---|---|
    | S | a\\|b | - | not automatable: people |
    <BLANKLINE>
    """
    out = [f"# Runbook trace: {title}" if title else "# Runbook trace", ""]
    if book.sources:
        out += ["Sources: " + ", ".join(f"`{s}`" for s in book.sources), ""]
    out += [summary(book), ""]
    groups: dict[str | None, list[tuple[RunbookStep, tuple[str, str, str, str]]]] = {}
    default = book.sources[0] if len(book.sources) == 1 else None
    for step, row in zip(book.steps, rows(book, items, label)):
        groups.setdefault(step.source or default, []).append((step, row))
    for source, members in groups.items():
        if len(groups) > 1:
            out += [f"## {source or 'other'}", ""]
        out += ["| Section | Step | How | Checks |", "|---|---|---|---|"]
        out += ["| " + " | ".join(_cell(c) for c in row) + " |" for _, row in members]
        out.append("")
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
