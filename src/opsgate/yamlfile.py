"""YAML files a user writes (environments, gate policies): every key's line, and problems
that name file, line, key, what was expected and what was seen.

>>> data, lines = parse("name: demo\\nhttp:\\n  - name: api\\n", "env.yaml")
>>> lines[("http", 0, "name")], dotted(("http", 0, "name"))
(3, 'http[0].name')
"""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass
from typing import Any

import pydantic
import yaml

from .redact import REDACTOR

Path_ = tuple[Any, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an environment file."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ProblemsError(Exception):
    """The file cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def parse(text: str, shown: str, error: type[ProblemsError] = ProblemsError) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML and remember the line of every key and list entry; duplicate keys are problems."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)  # libyaml when present: same nodes, faster
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        raise error([Problem(shown, mark.line + 1 if mark else None, "", f"invalid YAML: {reason}")]) from None
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}
    problems: list[Problem] = []

    def walk(n: yaml.Node, at: Path_) -> None:
        if isinstance(n, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in n.value:
                key = key_node.value
                line = key_node.start_mark.line + 1
                if key in seen and key != "<<":
                    problems.append(Problem(shown, line, dotted(at + (key,)),
                                            f"duplicate key (first set on line {seen[key]}); the earlier value would be lost"))
                seen[key] = line
                lines[at + (key,)] = line
                walk(value_node, at + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for index, child in enumerate(n.value):
                lines[at + (index,)] = child.start_mark.line + 1
                walk(child, at + (index,))

    if node is not None:
        walk(node, ())
    if problems:
        raise error(problems)
    return data, lines


def problem_from(err: dict, data: Any, lines: dict[Path_, int], shown: str, root: type[pydantic.BaseModel]) -> Problem:
    loc = tuple(err["loc"])
    loc = tuple(part for part in loc if not (isinstance(part, str) and ("[" in part or part in ("str", "SecretValue"))))
    key = dotted(loc) + _item_name(data, loc)
    kind, message = err["type"], err["msg"]
    if kind == "extra_forbidden":
        allowed = allowed_keys(root, loc[:-1])
        message = f"unknown key {loc[-1]!r}"
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        message += f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(allowed)}"
    elif kind == "missing":
        message = f"expected key {loc[-1]!r}, seen it missing"
    else:
        message = re.sub(r"^(Value error|Assertion failed), ", "", message)
        message = re.sub(r"^(Input|String|Value) should (be|have|match)", lambda m: "expected" + ("" if m.group(2) == "be" else " to " + m.group(2)), message)
        message = " ".join(message.split())
        if "seen" not in message:
            message += f", seen {REDACTOR.text(repr(err.get('input')))[:120]}"
    return Problem(shown, line_of(lines, loc), key, message)


def _item_name(data: Any, loc: Path_) -> str:
    if len(loc) >= 2 and isinstance(data, dict) and isinstance(loc[1], int):
        items = data.get(loc[0])
        if isinstance(items, list) and loc[1] < len(items) and isinstance(items[loc[1]], dict):
            name = items[loc[1]].get("name")
            if name:
                return f" ({name})"
    return ""


def allowed_keys(root: type[pydantic.BaseModel], loc: Path_) -> list[str]:
    """The keys the model at ``loc`` accepts, for 'did you mean' hints."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _model_in(field.annotation)
    return sorted(getattr(model, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def line_of(lines: dict[Path_, int], at: Path_) -> int | None:
    for end in range(len(at), 0, -1):
        if at[:end] in lines:
            return lines[at[:end]]
    return None


def dotted(at: Path_) -> str:
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
