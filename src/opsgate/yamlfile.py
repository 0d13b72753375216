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

from .redact import REDACTOR, is_secret_name

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


def problem_from(err: dict, data: Any, lines: dict[Path_, int], shown: str, root: type[pydantic.BaseModel],
                 hidden: frozenset[Path_] = frozenset()) -> Problem:
    """One pydantic error as a Problem. The value seen is never echoed when it is at, inside
    or around a path in ``hidden`` (values that came from ``${VAR}``), or under a key whose
    name looks secret.

    >>> class M(pydantic.BaseModel):
    ...     model_config = pydantic.ConfigDict(extra="forbid")
    ...     token: int = 0
    ...     port: int = 0
    >>> def first(data, hidden=frozenset()):
    ...     try:
    ...         M.model_validate(data)
    ...     except pydantic.ValidationError as e:
    ...         return str(problem_from(e.errors()[0], data, {}, "env.yaml", M, hidden))
    >>> print(first({"port": "x1"}))
    env.yaml: port: expected a valid integer, unable to parse string as an integer, seen 'x1'
    >>> print(first({"token": "s3cr3t"}))
    env.yaml: token: expected a valid integer, unable to parse string as an integer, seen a value that is not shown (secret key name)
    >>> print(first({"port": "x1"}, frozenset({("port",)})))
    env.yaml: port: expected a valid integer, unable to parse string as an integer, seen a value from ${...} (not shown)
    """
    loc = _model_loc(err["loc"])
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
            message += f", seen {_seen(err.get('input'), loc, hidden)}"
    return Problem(shown, line_of(lines, loc), key, message)


def _model_loc(loc: Any) -> Path_:
    """The error's location as a key path: pydantic's union-member and validator tags dropped."""
    return tuple(part for part in loc if not (isinstance(part, str) and ("[" in part or part in ("str", "SecretValue"))))


def _seen(value: Any, loc: Path_, hidden: frozenset[Path_]) -> str:
    """The value seen, as a message may show it: never a substituted or secret-named one."""
    if any(loc[:len(h)] == h or h[:len(loc)] == loc for h in hidden):
        return "a value from ${...} (not shown)"
    if any(isinstance(part, str) and is_secret_name(part) for part in loc) or _holds_secret(value):
        return "a value that is not shown (secret key name)"
    return REDACTOR.excerpt(repr(value), 120, keep="head")


def _holds_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value.get("secret")) or any(is_secret_name(str(k)) or _holds_secret(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_secret(v) for v in value)
    return False


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
