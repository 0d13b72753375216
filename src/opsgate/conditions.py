"""Readable assertions on an observation, written as JMESPath plus one comparison.

A condition is ``<JMESPath> <op> <literal>`` (``status == 'healthy'``,
``metrics.cpu_percent < 80``, ``length(models) > 0``) or a bare JMESPath expression
that must be truthy (``all(values(checks))``). Literals are numbers, quoted strings,
``true``, ``false`` and ``null``, so nobody has to learn JMESPath's backtick syntax
for the common case. Two functions are added to JMESPath: ``all(array)`` and
``any(array)``.

Every evaluation returns the observed value next to the limit, which is what the
evidence in the report shows (``metrics.cpu_percent=91.2, limit < 80``).

JMESPath is for the user's ``expect``/``warn`` text. A check kind's built-in limits are
built with :meth:`Condition.compare` from a key path (``("disks", "/", "used_percent")``),
read directly - no expression text is built to be parsed again.

>>> c = Condition.parse("metrics.cpu_percent < 80")
>>> r = c.evaluate({"metrics": {"cpu_percent": 91.2}})
>>> r.ok, r.observed, r.describe()
(False, 91.2, 'metrics.cpu_percent < 80: observed 91.2')
>>> Condition.parse("all(values(checks))").evaluate({"checks": {"a": True, "b": False}}).ok
False
"""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import jmespath
from jmespath import functions as jp_functions
from jmespath.exceptions import JMESPathError

from .redact import REDACTOR


class _OpsgateFunctions(jp_functions.Functions):
    @jp_functions.signature({"types": ["array"]})
    def _func_all(self, values):
        return all(values)

    @jp_functions.signature({"types": ["array"]})
    def _func_any(self, values):
        return any(values)


_OPTIONS = jmespath.Options(custom_functions=_OpsgateFunctions())
_LITERAL = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_COMPARISON = re.compile(rf"^(?P<lhs>.+?)\s*(?P<op>==|!=|<=|>=|<|>)\s*(?P<rhs>{_LITERAL})\s*$", re.DOTALL)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "in": lambda observed, allowed: observed in allowed,  # built-in limits only (exit codes, statuses)
}


def _literal(text: str) -> Any:
    if text.startswith("'"):
        return text[1:-1].replace("\\'", "'")
    return json.loads(text)


def _jmespath_truthy(value: Any) -> bool:
    return value not in (None, False, "", [], {})


def _same_kind(a: Any, b: Any) -> bool:
    """Comparable without surprises: bool only with bool, numbers with numbers, str with str."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return True
    return type(a) is type(b)


@dataclass(frozen=True)
class ConditionResult:
    """One condition held against one observation."""

    expression: str
    ok: bool
    observed: Any
    op: str | None = None
    limit: Any = None
    level: str = "fail"
    detail: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """A one-line human explanation, e.g. ``status == 'healthy': observed 'degraded'``."""
        seen = "missing (null)" if self.observed is None else json.dumps(self.observed, default=str)
        text = f"{self.expression}: observed {seen}"
        if self.detail:
            text += f" ({self.detail})"
        if self.context:
            text += "; " + ", ".join(f"{k} = {REDACTOR.excerpt(json.dumps(v, default=str), 200)}" for k, v in self.context.items())
        return text

    def to_json(self) -> dict[str, Any]:
        out = {"condition": self.expression, "ok": self.ok, "level": self.level, "observed": self.observed}
        if self.op:
            out.update(op=self.op, limit=self.limit)
        if self.detail:
            out["detail"] = self.detail
        if self.context:
            out["context"] = self.context
        return out


@dataclass(frozen=True)
class Condition:
    """A compiled condition; ``level`` is ``fail`` (must hold) or ``warn`` (should hold)."""

    expression: str
    level: str = "fail"
    lhs: Any = None
    op: str | None = None
    limit: Any = None
    label: str | None = None
    keys: tuple[str | int, ...] | None = None  # a built-in limit's key path (lhs is then unused)
    length: bool = False  # compare the number of elements at ``keys``
    default: Any = None  # what a missing value at ``keys`` counts as (None: missing is a failure)

    @classmethod
    def parse(cls, expression: str, level: str = "fail") -> "Condition":
        """Compile ``expression``; ValueError says what is wrong with it.

        >>> Condition.parse("status == 'healthy'").limit
        'healthy'
        """
        text = str(expression).strip()
        cached = _PARSED.get((text, level)) if cls is Condition else None
        if cached is not None:
            return cached
        condition = _parse(cls, text, level)
        # kept once per text and level: every check re-reads its conditions when it runs, and
        # thousands of checks often share a few. Only with an immutable limit: a list or dict
        # limit goes into evidence, which the report's sink redacts in place
        if cls is Condition and type(condition.limit) in _IMMUTABLE and len(_PARSED) < _PARSED_MAX:
            _PARSED[(text, level)] = condition
        return condition

    @classmethod
    def compare(cls, path: str | tuple[str | int, ...], op: str, limit: Any, level: str = "fail",
                label: str | None = None, *, length: bool = False, default: Any = None) -> "Condition":
        """A built-in limit: the value at ``path`` (a field name, or a tuple of keys into nested
        objects) compared with ``limit``; ``length`` compares how many elements it holds, and
        ``default`` is what a missing value counts as. The path is read as keys, never parsed,
        so any key works (a disk's path, a log pattern).

        >>> Condition.compare("elapsed_ms", "<=", 500).expression
        'elapsed_ms <= 500'
        >>> c = Condition.compare(("disks", "/", "used_percent"), "<", 95.0)
        >>> r = c.evaluate({"disks": {"/": {"used_percent": 97.5}}})
        >>> r.ok, r.describe()
        (False, 'disks."/".used_percent < 95.0: observed 97.5')
        >>> Condition.compare("firing_alerts", "==", 0, length=True).evaluate({"firing_alerts": ["Down"]}).describe()
        'length(firing_alerts) == 0: observed 1'
        >>> Condition.compare("aof_status", "==", "ok", default="ok").evaluate({}).ok
        True
        """
        keys = (path,) if isinstance(path, (str, int)) else tuple(path)
        text = ".".join(k if isinstance(k, str) and _IDENTIFIER.fullmatch(k) else json.dumps(k, ensure_ascii=False)
                        for k in keys)
        if length:
            text = f"length({text})"
        if default is not None:
            text = f"{text} || {_shown(default)}"
        return cls(f"{text} {op} {_shown(limit)}", level, None, op, limit, label, keys, length, default)

    def evaluate(self, document: Any) -> ConditionResult:
        """Hold the condition against ``document`` (parsed JSON or an observation's values)."""
        result = self._evaluate(document)
        if self.label:
            from dataclasses import replace

            result = replace(result, expression=self.label)
        return result

    def _evaluate(self, document: Any) -> ConditionResult:
        if self.keys is not None:
            observed = self._read(document)
        else:
            try:
                observed = self.lhs.search(document, options=_OPTIONS)
            except JMESPathError as exc:
                return ConditionResult(self.expression, False, None, self.op, self.limit, self.level,
                                       _why_not(self.lhs.parsed, document, exc))
        if self.op is None:
            return ConditionResult(
                self.expression, _jmespath_truthy(observed), observed, level=self.level,
                context=self._context(document) if not _jmespath_truthy(observed) else {},
            )
        if observed is None and self.limit is not None:
            return ConditionResult(self.expression, False, None, self.op, self.limit, self.level, "value is missing")
        if self.op != "in" and not _same_kind(observed, self.limit) and self.limit is not None:
            return ConditionResult(
                self.expression, self.op == "!=", observed, self.op, self.limit, self.level,
                f"{type(observed).__name__} compared with {type(self.limit).__name__}",
            )
        try:
            ok = _OPS[self.op](observed, self.limit)
        except TypeError as exc:
            return ConditionResult(self.expression, False, observed, self.op, self.limit, self.level, str(exc))
        return ConditionResult(self.expression, ok, observed, self.op, self.limit, self.level)

    def _read(self, document: Any) -> Any:
        """The value at the key path (None when any key is missing), its length if asked."""
        value = document
        for key in self.keys:
            if isinstance(value, dict):
                value = value.get(key)
            elif isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
                value = value[key]
            else:
                value = None
                break
        if self.length:
            value = len(value) if isinstance(value, (list, dict, str)) else None
        return self.default if value is None and self.default is not None else value

    def _context(self, document: Any) -> dict[str, Any]:
        """For ``f(g(x))`` also show ``x``: ``all(values(checks))`` is explained by ``checks``, and
        ``contains(headers."content-type", 'json')`` by the header (a function's first argument
        that reads the document)."""
        node = self.lhs.parsed
        while node.get("type") == "function_expression" and node.get("children"):
            reads = [c for c in node["children"] if c.get("type") != "literal"]
            if len(reads) != 1:
                break
            node = reads[0]
        if node is self.lhs.parsed or node.get("type") not in ("field", "subexpression", "index_expression"):
            return {}
        try:
            from jmespath.visitor import TreeInterpreter

            value = TreeInterpreter(_OPTIONS).visit(node, document)
        except JMESPathError:
            return {}
        return {_render(node): value}


def _parse(cls: type, text: str, level: str) -> Condition:
    match = _COMPARISON.match(text)
    try:
        if match:
            lhs = _compiled(match.group("lhs"))
            return cls(text, level, lhs, match.group("op"), _literal(match.group("rhs")))
        return cls(text, level, _compiled(text))
    except (JMESPathError, ValueError) as exc:
        raise ValueError(f"expected a JMESPath condition like \"status == 'healthy'\", seen {text!r}: {exc}") from None


_PARSED: dict[tuple[str, str], Condition] = {}
_PARSED_MAX = 4096
_IMMUTABLE = (str, int, float, bool, type(None))


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _shown(value: Any) -> str:
    """A literal as conditions write it: ``'text'``, ``95.0``, ``true``, ``[200, 204]``."""
    return repr(value) if isinstance(value, str) else json.dumps(value)


_MAX_NESTING = 50  # an expression nested deeper is a mistake, and would exhaust the recursive parser or evaluator


def _compiled(text: str) -> Any:
    """``jmespath.compile``, refusing expressions nested too deeply to parse or evaluate."""
    try:
        parsed = jmespath.compile(text)
    except RecursionError:
        raise ValueError(f"nested more than {_MAX_NESTING} levels deep") from None
    nodes, depth = [(parsed.parsed, 1)], 0
    while nodes:
        node, level = nodes.pop()
        depth = max(depth, level)
        nodes += [(child, level + 1) for child in node.get("children", []) if isinstance(child, dict)]
    if depth > _MAX_NESTING:
        raise ValueError(f"nested more than {_MAX_NESTING} levels deep")
    return parsed


_JSON_TYPES = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
               list: "an array", dict: "an object"}


def _why_not(tree: dict, document: Any, exc: JMESPathError) -> str:
    """A JMESPath error in the operator's words: which field was missing or of the wrong type,
    never the library's internals (``In function values(), invalid type for value: None``).

    >>> Condition.parse("all(values(checks))").evaluate({}).detail
    'checks is missing'
    >>> Condition.parse("length(models) > 0").evaluate({"models": 3}).detail
    'models is a number; length() needs a string, an array or an object'
    """
    name = getattr(exc, "function_name", None)
    if name is None:
        return f"cannot evaluate: {type(exc).__name__}"
    expected = [{"array-number": "an array of numbers", "array-string": "an array of strings"}.get(t, _article(t))
                for t in getattr(exc, "expected_types", ())]
    needs = f"{name}() needs {', '.join(expected[:-1]) + ' or ' + expected[-1] if len(expected) > 1 else ''.join(expected)}"
    culprit = _culprit(tree, document, name, getattr(exc, "current_value", None))
    if culprit is None:
        return f"cannot evaluate: an argument of {needs.replace(' needs ', ' is of the wrong type; it needs ')}"
    path, value = culprit
    if value is None:
        return f"{path} is missing"
    return f"{path} is {_JSON_TYPES.get(type(value), 'a ' + type(value).__name__)}; {needs}"


def _article(json_type: str) -> str:
    return f"an {json_type}" if json_type[:1] in "aeiou" else f"a {json_type}"


def _culprit(tree: dict, document: Any, function: str, bad: Any) -> tuple[str, Any] | None:
    """The argument of ``function`` in ``tree`` whose value is ``bad``: (its path, its value)."""
    from jmespath.visitor import TreeInterpreter

    stack = [tree]
    while stack:
        node = stack.pop()
        children = [c for c in node.get("children", []) if isinstance(c, dict)]
        if node.get("type") == "function_expression" and node.get("value") == function:
            for child in children:
                try:
                    value = TreeInterpreter(_OPTIONS).visit(child, document)
                except JMESPathError:
                    continue
                if value is bad or value == bad:
                    return (_render(child) if child["type"] in ("field", "subexpression") else "its argument"), value
        stack.extend(children)
    return None


def _render(node: dict) -> str:
    if node["type"] == "field":
        return node["value"]
    if node["type"] == "subexpression":
        return ".".join(_render(child) for child in node["children"])
    return "value"
