"""YAML files a user writes (environments, gate policies): every key's line, and problems
that name file, line, key, what was expected and what was seen.

>>> data, lines = parse("name: demo\\nhttp:\\n  - name: api\\n", "env.yaml")
>>> lines[("http", 0, "name")], dotted(("http", 0, "name"))
(3, 'http[0].name')
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import types
import typing
from dataclasses import dataclass
from typing import Any

import pydantic
import yaml

from .redact import REDACTOR, is_secret_name

Path_ = tuple[Any, ...]


# Limits on what a file may ask of the loader. Anchors and aliases make a small file stand
# for a huge tree (486 bytes of "billion laughs" for 10^9 nodes), and everything after
# parsing (substitution, validation) walks the expanded tree, so the tree is measured
# while it is composed, before any Python object is built.
MAX_BYTES = 8 * 1024 * 1024
MAX_NODES = 100_000  # nodes, counting each alias as the whole subtree it stands for
MAX_DEPTH = 100  # nesting levels, through aliases too
_STANDARD = "tag:yaml.org,2002:"
# the characters the YAML spec does not allow in a stream (tab, CR and LF are fine)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a YAML file (an environment or a gate policy)."""

    file: str
    line: int | None
    key: str
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        where += f":{self.column}" if self.line and self.column else ""
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ProblemsError(Exception):
    """The file cannot be used; ``problems`` lists every reason, sorted by file and line,
    one per place (several messages about one key are joined).

    >>> print(ProblemsError([Problem("b.yaml", 2, "x", "m2"), Problem("a.yaml", 9, "", "m3"), Problem("b.yaml", 1, "y", "m1")]))
    a.yaml:9: m3
    b.yaml:1: y: m1
    b.yaml:2: x: m2
    """

    def __init__(self, problems: list[Problem]):
        self.problems = _one_per_place(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _one_per_place(problems: list[Problem]) -> list[Problem]:
    merged: dict[tuple, Problem] = {}
    for p in problems:
        place = (p.file, p.line, p.column, p.key)
        if place not in merged:
            merged[place] = p
        elif p.message not in merged[place].message.split("; "):
            merged[place] = Problem(p.file, p.line, p.key, f"{merged[place].message}; {p.message}", p.column)
    return sorted(merged.values(), key=lambda p: (p.file, p.line or 0, p.column or 0, p.key))


def read(path: Any, shown: str, error: type[ProblemsError] = ProblemsError) -> bytes:
    """A YAML file's bytes, read in bounded time and memory: a FIFO, a device (``/dev/zero``)
    or a file over ``MAX_BYTES`` is a problem, not a hang.

    >>> try:
    ...     read("/dev/zero", "env.yaml")
    ... except ProblemsError as e:
    ...     print(e)
    env.yaml: cannot read: not a regular file
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except OSError as exc:
        raise error([Problem(shown, None, "", f"cannot read: {exc.strerror}")]) from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error([Problem(shown, None, "", "cannot read: not a regular file")])
        try:
            data = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            raise error([Problem(shown, None, "", f"cannot read: {exc.strerror}")]) from None
    if len(data) > MAX_BYTES:
        raise error([Problem(shown, None, "", f"file too large (over {MAX_BYTES // (1024 * 1024)} MiB); refused")])
    return data


def decode(source: str | bytes, shown: str, error: type[ProblemsError] = ProblemsError) -> str:
    """The file's text: UTF-8 (a BOM is allowed), without characters YAML forbids.

    >>> try:
    ...     decode("name: caf\\xe9\\n".encode("latin-1"), "env.yaml")
    ... except ProblemsError as e:
    ...     print(e)
    env.yaml:1:10: not UTF-8 (byte 0xE9 at offset 9); save the file as UTF-8
    """
    if isinstance(source, bytes):
        try:
            text = source.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line_start = source.rfind(b"\n", 0, exc.start) + 1
            raise error([Problem(shown, source.count(b"\n", 0, exc.start) + 1, "",
                                 f"not UTF-8 (byte 0x{source[exc.start]:02X} at offset {exc.start}); save the file as UTF-8",
                                 exc.start - line_start + 1)]) from None
    else:
        text = source
    bad = _CONTROL.search(text)
    if bad:
        line_start = text.rfind("\n", 0, bad.start()) + 1
        what = "a NUL byte" if bad.group() == "\0" else f"the control character U+{ord(bad.group()):04X}"
        raise error([Problem(shown, text.count("\n", 0, bad.start()) + 1, "",
                             f"invalid YAML: {what} is not allowed in a YAML file", bad.start() - line_start + 1)])
    return text


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # libyaml when present
    """The safe loader; a value its tag cannot hold (``!!float x``, ``2001-13-45``) is a
    YAMLError at the value's line rather than a ValueError from deep inside PyYAML."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # ValueError, KeyError, OverflowError...: whatever the tag's constructor raised
            value = REDACTOR.excerpt(repr(node.value), 60) if isinstance(node, yaml.ScalarNode) else "this value"
            raise yaml.constructor.ConstructorError(
                None, None, f"{value} is not a valid {_short(node.tag)} ({type(exc).__name__}: "
                f"{REDACTOR.excerpt(str(exc), 80)})", node.start_mark) from None


def _short(tag: str) -> str:
    return "!!" + tag[len(_STANDARD):] if tag.startswith(_STANDARD) else tag


class _Refused(Exception):
    def __init__(self, mark: Any, message: str, key: str = ""):
        super().__init__(message)
        self.mark, self.message, self.key = mark, message, key


def _compose(loader: Any) -> yaml.Node | None:
    """The document's node graph, built from parser events without recursion, measuring as
    it goes: expanded size and depth (an alias counts as what it stands for), tags known to
    the safe loader, no NUL in a scalar, no alias to an enclosing node."""
    loader.get_event()  # stream start
    if loader.check_event(yaml.StreamEndEvent):
        return None
    loader.get_event()  # document start
    anchors: dict[str, yaml.Node] = {}
    measured: dict[int, tuple[int, int]] = {}  # id(anchored node) -> (expanded size, expanded depth), once complete
    stack: list[list] = []  # open collections: [node, size, depth, pending mapping key, anchored]
    too_big = None  # where the size limit was first passed: composing goes on a little, to say by how much
    aliases = events = 0
    get_event, tags = loader.get_event, {}  # tags: a plain scalar's first node (its resolved tag), by (value, implicit)
    while True:
        event = get_event()
        events += 1
        what = _EVENTS.get(type(event)) or _event_kind(event)
        if what is _SCALAR:
            if "\0" in event.value:
                raise _Refused(event.start_mark, "expected no NUL character (\\0), seen one; no name, path or text "
                               "may hold it", _where(stack))
            key = (event.value, event.implicit) if event.tag is None or event.tag == "!" else None
            known = tags.get(key) if key is not None else None
            if known is None:
                node = _node(loader, event)
                if key is not None:
                    tags[key] = node
            else:  # the same plain text again (a key name, a repeated value): the tag _node gave it
                # before, and the same string (5,000 checks with one condition keep one copy of its text)
                node = yaml.ScalarNode(known.tag, known.value, event.start_mark, None, style=event.style)
            size, depth = 1, 0
            if event.anchor is not None:
                anchors[event.anchor] = node
                measured[id(node)] = (1, 0)
        elif what is _START:
            node = _node(loader, event)
            if event.anchor is not None:
                anchors[event.anchor] = node
            stack.append([node, 1, 1, None, event.anchor is not None])
            if len(stack) > MAX_DEPTH:
                raise _Refused(event.start_mark, f"nested more than {MAX_DEPTH} levels deep; refused")
            continue
        elif what is _END:
            node, size, depth, _, anchored = stack.pop()
            if anchored:
                measured[id(node)] = (size, depth)
        elif what is _ALIAS:
            aliases += 1
            node = anchors.get(event.anchor)
            if node is None:
                raise _Refused(event.start_mark, f"invalid YAML: alias *{event.anchor} names no anchor defined before it")
            if id(node) not in measured:
                raise _Refused(event.start_mark, f"invalid YAML: alias *{event.anchor} is inside the value it names "
                               "(a recursive structure)")
            size, depth = measured[id(node)]
        else:
            raise _Refused(event.start_mark, f"invalid YAML: unexpected {type(event).__name__}")
        if not stack:
            break
        frame = stack[-1]
        if frame[3] is None and type(frame[0]) is yaml.MappingNode:
            frame[3] = node
        elif frame[3] is None:
            frame[0].value.append(node)
        else:
            frame[0].value.append((frame[3], node))
            frame[3] = None
        frame[1] += size
        if depth >= frame[2]:
            frame[2] = depth + 1
            if frame[2] + len(stack) - 1 > MAX_DEPTH:  # only an alias can get here: plain nesting stopped above
                raise _Refused(event.start_mark, f"nested more than {MAX_DEPTH} levels deep through aliases; refused")
        if frame[1] > MAX_NODES and too_big is None:
            too_big = event.start_mark
        if too_big is not None and events > 2 * MAX_NODES:  # a big file, not a small bomb: stop counting
            raise _too_many(too_big, f"more than {sum(f[1] for f in stack):,}", aliases)
    if too_big is not None:
        raise _too_many(too_big, f"{size:,}", aliases)
    loader.get_event()  # document end
    if not loader.check_event(yaml.StreamEndEvent):
        raise _Refused(loader.peek_event().start_mark, "expected a single YAML document, seen a second one here")
    return node


# what _compose does with each parser event, by its class
_SCALAR, _START, _END, _ALIAS = "scalar", "start", "end", "alias"
_EVENTS: dict[type, str] = {}


def _event_kind(event: Any) -> str | None:
    """The handling of an event class not seen yet (remembered); None: not one _compose takes."""
    for classes, what in (((yaml.ScalarEvent,), _SCALAR), ((yaml.SequenceStartEvent, yaml.MappingStartEvent), _START),
                          ((yaml.SequenceEndEvent, yaml.MappingEndEvent), _END), ((yaml.AliasEvent,), _ALIAS)):
        if isinstance(event, classes):
            _EVENTS[type(event)] = what
            return what
    return None


def _node(loader: Any, event: Any) -> yaml.Node:
    """The node an event starts, its tag resolved as PyYAML's composer would, refused when
    the safe loader has no constructor for it or a scalar holds NUL."""
    kind = (yaml.ScalarNode if isinstance(event, yaml.ScalarEvent)
            else yaml.SequenceNode if isinstance(event, yaml.SequenceStartEvent) else yaml.MappingNode)
    tag = event.tag
    if tag is None or tag == "!":
        tag = loader.resolve(kind, getattr(event, "value", None), event.implicit)
    if tag not in loader.yaml_constructors and tag != _STANDARD + "merge":  # merge: the << key
        raise _Refused(event.start_mark, f"unknown tag {_short(tag)}; opsgate reads plain YAML "
                       "(standard tags such as !!str and !!int only)")
    if kind is not yaml.ScalarNode:
        return kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
    return yaml.ScalarNode(tag, event.value, event.start_mark, None, style=event.style)


def _where(stack: list[list]) -> str:
    """The key path of the value about to be added to the open collections, for a message."""
    at: list[Any] = []
    for node, _, _, pending, _ in stack:
        if isinstance(node, yaml.SequenceNode):
            at.append(len(node.value))
        elif pending is not None:
            at.append(pending.value if isinstance(pending, yaml.ScalarNode) else "?")
    return dotted(tuple(at))


def _too_many(mark: Any, size: str, aliases: int) -> _Refused:
    if aliases:
        return _Refused(mark, f"too many aliases/nodes ({size} expanded nodes, limit {MAX_NODES:,}); "
                              "YAML anchors expanding this much are refused")
    return _Refused(mark, f"too many nodes ({size}, limit {MAX_NODES:,}); a file this large is refused")


def _walk(loader: Any, node: yaml.Node, at: Path_, lines: dict[Path_, int], problems: list[Problem], shown: str) -> None:
    """Record the line of every key (as the value it will be: ``1:`` is the number 1) and list
    entry; a key set twice in one mapping is a problem. Depth and size are bounded by ``_compose``."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a mapping or list as a key: the constructor refuses it, at its line
            merge = key_node.tag == _STANDARD + "merge"
            key = "<<" if merge else loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen and not merge:
                problems.append(Problem(shown, line, dotted(at + (key,)),
                                        f"duplicate key (first set on line {seen[key]}); the earlier value would be lost"))
            seen[key] = line
            lines[at + (key,)] = line
            _walk(loader, value_node, at + (key,), lines, problems, shown)
    elif isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            lines[at + (index,)] = child.start_mark.line + 1
            _walk(loader, child, at + (index,), lines, problems, shown)


def parse(source: str | bytes, shown: str, error: type[ProblemsError] = ProblemsError) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML (text, or bytes that must be UTF-8) and remember the line of every key and
    list entry; duplicate keys are problems; so are alias bombs, deep nesting, unknown tags,
    NUL characters and values a tag cannot hold, each at its line.

    >>> try:
    ...     parse("a: &a [x, x]\\nb: &b [*a, *a]\\nc: !!float x\\n", "env.yaml")
    ... except ProblemsError as e:
    ...     print(e)
    env.yaml:3:4: invalid YAML: 'x' is not a valid !!float (ValueError: could not convert string to float: 'x')
    """
    text = decode(source, shown, error)
    loader = _Loader(text)
    lines: dict[Path_, int] = {}
    problems: list[Problem] = []
    try:
        node = _compose(loader)
        if node is not None:
            lines[()] = node.start_mark.line + 1  # where a missing top-level key is reported
            _walk(loader, node, (), lines, problems, shown)  # before constructing: merge keys rewrite the nodes
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        raise error([Problem(shown, exc.mark.line + 1, exc.key, exc.message, exc.mark.column + 1)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        reason = f"{reason} ({context})" if context and mark else reason
        line = mark.line + 1 if mark else text.count("\n", 0, exc.position) + 1 if hasattr(exc, "position") else None
        raise error([Problem(shown, line, "", f"invalid YAML: {reason}", mark.column + 1 if mark else None)]) from None
    except (ValueError, TypeError, KeyError, OverflowError) as exc:  # the last resort: no PyYAML path should get here
        raise error([Problem(shown, None, "", f"invalid YAML: {type(exc).__name__}: {REDACTOR.excerpt(str(exc), 200)}")]) from None
    finally:
        loader.dispose()
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
    kind, message = err["type"], err["msg"]
    loc, _ = _key_path(err["loc"], data, kind)
    key = dotted(loc) + _item_name(data, loc)
    if kind == "extra_forbidden":
        allowed = allowed_keys(root, loc[:-1])
        message = f"unknown key {loc[-1]!r}"
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        elif allowed:
            message += f"; expected one of: {', '.join(allowed)}"
    elif kind == "missing":
        message = f"expected key {loc[-1]!r}, seen it missing"
    else:
        message = re.sub(r"^(Value error|Assertion failed), ", "", message)
        message = re.sub(r"^Keys should be strings", "expected a key that is text (quote it)", message)
        message = re.sub(r"^(Input|String|Value) should (be|have|match)", lambda m: "expected" + ("" if m.group(2) == "be" else " to " + m.group(2)), message)
        message = " ".join(message.split())
        seen = _seen(err.get("input"), loc, hidden)
        if "seen" not in message:
            message += f", seen {seen}"
        elif "not shown" in seen:  # a validator's own "seen <value>" must not show it either
            message = message[:message.rindex("seen")] + f"seen {seen}"
    return Problem(shown, line_of(lines, loc), key, REDACTOR.text(message))


def problems_from(errors: list[dict], data: Any, lines: dict[Path_, int], shown: str, root: type[pydantic.BaseModel],
                  hidden: frozenset[Path_] = frozenset()) -> list[Problem]:
    """Every pydantic error as a Problem, one per mistake: a value that fits none of a
    union's types is one problem ("expected a string or a mapping {value, secret}"), and a
    value shaped like one of them is judged by that one alone.

    >>> class M(pydantic.BaseModel):
    ...     status: int | list[int] = 200
    >>> def problems(data):
    ...     try:
    ...         M.model_validate(data)
    ...     except pydantic.ValidationError as e:
    ...         return [str(p) for p in problems_from(e.errors(), data, {}, "env.yaml", M)]
    >>> problems({"status": "abc"}), problems({"status": [200, "x"]})
    (["env.yaml: status: expected an integer or a list, seen 'abc'"], ["env.yaml: status[1]: expected a valid integer, unable to parse string as an integer, seen 'x'"])
    """
    plain: list[dict] = []
    unions: dict[Path_, dict[str, list[dict]]] = {}
    for err in errors:
        _, tags = _key_path(err["loc"], data, err["type"])
        if tags:
            at, tag = tags[0]
            unions.setdefault(at, {}).setdefault(tag, []).append(err)
        else:
            plain.append(err)
    problems = [problem_from(err, data, lines, shown, root, hidden) for err in plain]
    for at, branches in unions.items():
        # a branch whose errors are not all "wrong type here" is the one the value was written for
        shaped = [err for errs in branches.values() if not all(_wrong_type(e, data, at) for e in errs) for err in errs]
        if shaped:
            problems += [problem_from(err, data, lines, shown, root, hidden) for err in shaped]
            continue
        value = next(iter(branches.values()))[0].get("input")
        expected = " or ".join(dict.fromkeys(_describe(tag, root) for tag in branches))
        problems.append(Problem(shown, line_of(lines, at), dotted(at) + _item_name(data, at),
                                f"expected {expected}, seen {_seen(value, at, hidden)}"))
    return problems


def _key_path(loc: Any, data: Any, kind: str) -> tuple[Path_, list[tuple[Path_, str]]]:
    """The error's location as a key path in ``data``, and the union-member tags pydantic put
    in it (``str``, ``SecretValue``, ``list[int]``) with the path where each was met."""
    path: list[Any] = []
    tags: list[tuple[Path_, str]] = []
    value = data
    for index, part in enumerate(loc):
        if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(part, str) and not (index == len(loc) - 1 and kind in ("missing", "extra_forbidden")):
            tags.append((tuple(path), part))
            continue
        else:
            value = None
        path.append(part)
    return tuple(path), tags


def _wrong_type(err: dict, data: Any, at: Path_) -> bool:
    return _key_path(err["loc"], data, err["type"])[0] == at and err["type"].endswith(("_type", "_parsing"))


_KINDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false", "none": "null"}


def _describe(tag: str, root: type[pydantic.BaseModel]) -> str:
    """A union member as a reader knows it: ``a mapping {value, secret}`` for a model."""
    model = models_in(root).get(tag)
    if model is not None:
        return f"a mapping {{{', '.join(model.model_fields)}}}"
    base = tag.split("[", 1)[0].lower()
    return _KINDS.get(base) or {"list": "a list", "dict": "a mapping", "literal": "one of " + tag[8:-1]}.get(base, tag)


def models_in(root: Any, found: dict | None = None) -> dict[str, type[pydantic.BaseModel]]:
    """Every model reachable from ``root``, by class name.

    >>> from opsgate.model import HttpCheck
    >>> sorted(models_in(HttpCheck))
    ['HttpCheck', 'Retry', 'SecretValue', 'Window']
    """
    found = {} if found is None else found
    if isinstance(root, type) and issubclass(root, pydantic.BaseModel):
        if root.__name__ in found:
            return found
        found[root.__name__] = root
        for field in root.model_fields.values():
            models_in(field.annotation, found)
    else:
        for arg in typing.get_args(root):
            models_in(arg, found)
    return found


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
    """The keys the model at ``loc`` accepts, for 'did you mean' hints; [] when ``loc`` is
    not a model (a free mapping such as ``headers``).

    >>> from opsgate.model import Environment
    >>> allowed_keys(Environment, ("http", 0, "headers", "X-Token"))
    ['secret', 'value']
    """
    annotation: Any = root
    for part in loc:
        annotation = _inside(annotation, part)
        if annotation is None:
            return []
    models = [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, pydantic.BaseModel)]
    return sorted(f.alias or n for n, f in models[0].model_fields.items()) if models else []  # as files write them


def _inside(annotation: Any, part: Any) -> Any:
    """The type of ``part`` (a field, a list index or a mapping key) within ``annotation``."""
    for member in _members(annotation):
        origin = typing.get_origin(member)
        if isinstance(part, int) and origin in (list, tuple, set, frozenset):
            return (typing.get_args(member) or (Any,))[0]
        if origin is dict:
            return (typing.get_args(member) or (Any, Any))[-1]
        if isinstance(member, type) and issubclass(member, pydantic.BaseModel) and part in member.model_fields:
            return member.model_fields[part].annotation
    return None


def _members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def line_of(lines: dict[Path_, int], at: Path_) -> int | None:
    """The line of ``at``, else of the closest enclosing key or entry (the document's first line).

    >>> line_of({(): 1, ("http",): 2, ("http", 0): 3}, ("http", 0, "url")), line_of({(): 1}, ("name",))
    (3, 1)
    """
    for end in range(len(at), -1, -1):
        if at[:end] in lines:
            return lines[at[:end]]
    return None


def dotted(at: Path_) -> str:
    """A key path as a reader writes it.

    >>> dotted(("http", 0, "headers", "X-Token"))
    'http[0].headers.X-Token'
    """
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
