"""Load an environment file: YAML with line numbers, ``${VAR}`` substitution, validation.

Every problem is reported at once, each naming file, line, key, what was expected and
what was seen; nothing is half-loaded. Secrets that pass through (secret-looking
variables, secret headers, URL passwords) are registered with the redactor.

>>> import pathlib, tempfile
>>> p = pathlib.Path(tempfile.mkdtemp()) / "env.yaml"
>>> _ = p.write_text("name: demo\\nhttp:\\n  - name: api\\n    url: http://127.0.0.1:1/health\\n    timout: 3\\n")
>>> try:
...     load(p)
... except EnvFileError as e:
...     print(str(e.problems[0]).rsplit("/", 1)[-1])
env.yaml:5: http[0].timout (api): unknown key 'timout'; did you mean 'timeout'?
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydantic

from .model import KINDS, Environment
from .redact import REDACTOR, is_secret_name
from .yamlfile import Path_, Problem, ProblemsError, dotted, line_of, parse, problems_from, read

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class EnvFileError(ProblemsError):
    """The environment file cannot be used; ``problems`` lists every reason."""


@dataclass
class LoadedEnvironment:
    """A validated environment and where it came from."""

    env: Environment
    path: Path
    base_dir: Path
    embedded: bool

    @property
    def source(self) -> str:
        """Where it came from, for reports: ``embedded:default.yaml`` or the file's path."""
        return f"embedded:{self.path.name}" if self.embedded else str(self.path)


def resolve(name_or_path: str | os.PathLike | None, search: list[Path] | None = None) -> tuple[Path, bool]:
    """Find an environment by path or by name (``config/NAME.yaml``, ``config/examples/NAME.yaml``,
    then the environments shipped with opsgate). Returns (path, embedded).

    >>> resolve(None)[1]
    True
    """
    if name_or_path in (None, "", "default"):
        return _embedded("default"), True
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.exists():
            raise EnvFileError([Problem(str(candidate), None, "", "environment file not found")])
        return candidate, False
    for folder in search or [Path.cwd()]:
        for sub in ("config", "config/examples"):
            for ext in (".yaml", ".yml"):
                found = folder / sub / f"{name_or_path}{ext}"
                if found.exists():
                    return found, False
    shipped = _embedded(str(name_or_path))
    if shipped.exists():
        return shipped, True
    raise EnvFileError([Problem(str(name_or_path), None, "", "no environment file by that path or name "
                                "(looked for config/NAME.yaml, config/examples/NAME.yaml and the shipped ones)")])


def _embedded(name: str) -> Path:
    return Path(str(resources.files("opsgate") / "environments" / f"{name}.yaml"))


def load(name_or_path: str | os.PathLike | None = None, search: list[Path] | None = None,
         environ: typing.Mapping[str, str] | None = None) -> LoadedEnvironment:
    """Read, substitute and validate an environment; raise EnvFileError listing every problem."""
    path, embedded = resolve(name_or_path, search)
    shown = path.name if embedded else str(path)
    data, lines = parse(read(path, shown, EnvFileError), shown, EnvFileError)  # bounded; bytes checked as UTF-8
    if not isinstance(data, dict):
        raise EnvFileError([Problem(shown, 1, "", f"expected a mapping of keys (name, http, ...), seen {type(data).__name__}")])
    problems: list[Problem] = []
    data = _substitute(data, (), lines, shown, os.environ if environ is None else environ, problems)
    _apply_defaults(data)
    if problems:
        raise EnvFileError(problems)
    context = {"severity_scale": data.get("severity_scale", "P0-P3")}
    try:
        env = Environment.model_validate(data, context=context)
    except pydantic.ValidationError as exc:
        raise EnvFileError(problems_from(exc.errors(include_url=False), data, lines, shown, Environment)) from None
    problems = _cross_check(env, lines, shown)
    if problems:
        raise EnvFileError(problems)
    _register_secrets(env)
    base = Path(env.base_dir) if env.base_dir else path.parent
    if not base.is_absolute():
        base = (path.parent / base).resolve()
    return LoadedEnvironment(env, path, base, embedded)


def _substitute(value: Any, at: Path_, lines: dict[Path_, int], shown: str,
                environ: typing.Mapping[str, str], problems: list[Problem]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``."""
    if isinstance(value, dict):
        return {k: _substitute(v, at + (k,), lines, shown, environ, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, at + (i,), lines, shown, environ, problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in environ:
            result = environ[name]
        elif default is not None:
            result = default
        else:
            problems.append(Problem(shown, line_of(lines, at), dotted(at),
                                    f"expected environment variable {name} to be set, seen it unset "
                                    f"(export it, or write ${{{name}:-default}})"))
            return ""
        if is_secret_name(name) or (at and is_secret_name(str(at[-1]))):
            REDACTOR.add(result)
        return result

    return _VAR.sub(replace, value)


def _apply_defaults(data: dict) -> None:
    defaults = data.get("defaults")
    if not isinstance(defaults, dict):
        return
    for kind in KINDS:
        items = data.get(kind)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict):
                    for key in ("severity", "timeout"):
                        if defaults.get(key) is not None:
                            item.setdefault(key, defaults[key])


def _cross_check(env: Environment, lines: dict[Path_, int], shown: str) -> list[Problem]:
    """Names are unique; depends_on names exist and form no cycle."""
    problems: list[Problem] = []
    where: dict[str, Path_] = {}
    for kind in KINDS:
        for index, item in enumerate(getattr(env, kind)):
            at = (kind, index, "name")
            if item.name in where:
                problems.append(Problem(shown, line_of(lines, at), dotted(at),
                                        f"expected a unique name, seen {item.name!r} again (first at line {line_of(lines, where[item.name])})"))
            where.setdefault(item.name, at)
    graph = {i.name: i.depends_on for i in env.items()}
    for kind in KINDS:
        for index, item in enumerate(getattr(env, kind)):
            for d_index, dep in enumerate(item.depends_on):
                if dep not in graph:
                    at = (kind, index, "depends_on", d_index)
                    problems.append(Problem(shown, line_of(lines, at), dotted(at) + f" ({item.name})",
                                            f"expected the name of another item, seen {dep!r}"))
    cycle = _find_cycle(graph)
    if cycle:
        first = where[cycle[0]]
        problems.append(Problem(shown, line_of(lines, first[:2] + ("depends_on",)), dotted(first[:2] + ("depends_on",)),
                                f"expected no dependency cycle, seen {' -> '.join(cycle)}"))
    return problems


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep in graph and dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _register_secrets(env: Environment) -> None:
    """Header values marked secret or named like secrets, the password of any URL or DSN
    (http, postgres, redis, prometheus, metrics, a container engine), secret command env."""
    for item in env.http:
        for name, value in item.headers.items():
            secret = getattr(value, "secret", False) or is_secret_name(name)
            if secret:
                text = value.value if hasattr(value, "value") else value
                REDACTOR.add(text)
                REDACTOR.add(text.split(" ", 1)[-1])  # the token of "Bearer <token>"
    for item in env.items():
        for field in ("url", "dsn", "engine"):
            address = getattr(item, field, None)
            password = urlsplit(address).password if isinstance(address, str) else None
            if password:
                REDACTOR.add(password)
    for item in env.command:
        for name, value in item.env.items():
            if getattr(value, "secret", False) or is_secret_name(name):
                REDACTOR.add(value.value if hasattr(value, "value") else value)
