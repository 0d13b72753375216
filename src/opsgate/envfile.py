"""Load an environment file: YAML with line numbers, ``${VAR}`` substitution, validation.

Every problem is reported at once, each naming file, line, key, what was expected and
what was seen (never a value that came from ``${VAR}``); nothing is half-loaded. Secrets
that pass through are registered with the redactor (which values are secret: see
:mod:`opsgate.redact`).

Substituted values are data. In ``command[].shell`` a ``${VAR}`` is not spliced into the
command text: it becomes a quoted reference to a shell variable (``"${VAR}"``) whose value
the command receives in its environment, so ``;``, ``$(...)``, quotes or spaces in the value
never run and never split. In the ``user:password@`` part of a ``url``, ``dsn`` or ``engine``
the value is percent-encoded where it would break the address, and a value substituted
there as the password is secret whatever the variable's name.

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

import base64
import functools
import os
import re
import types
import typing
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, unquote_plus, urlsplit

import pydantic

from . import runbook
from .hosts import InventoryError, fleet_problems, inventory_hosts
from .kinds import REGISTRY
from .model import SecretValue, environment_for
from .redact import MIN_SECRET, REDACTOR, is_secret_name, is_secret_parameter, is_secret_variable
from .yamlfile import Path_, Problem, ProblemsError, dotted, line_of, parse, problems_from, read

if TYPE_CHECKING:
    from .model import Environment

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
    # with ``allow_unset``: the unset variables, and per item (kind, index) those its values use.
    # Such an environment holds placeholders: it can be listed and linted, never run.
    unset: tuple[str, ...] = ()
    unset_in: dict[tuple[str, int], list[str]] = field(default_factory=dict)

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
         environ: typing.Mapping[str, str] | None = None, allow_unset: bool = False) -> LoadedEnvironment:
    """Read, substitute and validate an environment; raise EnvFileError listing every problem.

    ``allow_unset`` (for ``opsgate validate`` and ``list``, which lint what they cannot run):
    an unset ``${VAR}`` becomes a placeholder, ``<unset:VAR>`` (or a number, or an address
    with the field's scheme, where the field needs one), never a secret; the result's
    ``unset`` names the variables. A run must load without it.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "env.yaml"
    >>> _ = p.write_text("name: demo\\nhttp:\\n  - name: api\\n    url: ${API_URL}\\n    timeout: ${T}\\n")
    >>> loaded = load(p, environ={}, allow_unset=True)
    >>> loaded.unset, loaded.env.http[0].url, loaded.unset_in
    (('API_URL', 'T'), 'http://<unset:API_URL>', {('http', 0): ['API_URL', 'T']})
    """
    path, embedded = resolve(name_or_path, search)
    shown = path.name if embedded else str(path)
    data, lines = parse(read(path, shown, EnvFileError), shown, EnvFileError)  # bounded; bytes checked as UTF-8
    if not isinstance(data, dict):
        raise EnvFileError([Problem(shown, 1, "", f"expected a mapping of keys (name, http, ...), seen {type(data).__name__}")])
    environ = os.environ if environ is None else environ
    listed = data.get("secrets")
    secret_names = {n for n in listed if isinstance(n, str)} if isinstance(listed, list) else set()
    _register_inherited(environ, secret_names)
    substitution = _Substitution(environ, secret_names, lines, shown, allow_unset)
    data = substitution.walk(data)
    substitution.give_shells_their_variables(data)
    substitution.problems += _apply_defaults(data, lines, shown)
    if substitution.problems:
        raise EnvFileError(substitution.problems)
    placeholders = {_unsectioned(at): names for at, names in substitution.placeholders.items()}
    context = {"severity_scale": data.get("severity_scale", "P0-P3")}
    schema = environment_for(data)  # only the kinds the file has sections of are imported and built
    for attempt in range(3):  # placeholders that a field rejects get a form it accepts, twice at most
        try:
            env = schema.model_validate(data, context=context)
            break
        except pydantic.ValidationError as exc:
            errors = exc.errors(include_url=False)
            if attempt == 2 or not _refit_placeholders(data, errors, placeholders, attempt):
                problems = problems_from(errors, data, lines, shown, schema, frozenset(substitution.hidden))
                raise EnvFileError(problems + _unset_notes(errors, placeholders, lines, shown)) from None
    base = Path(env.base_dir) if env.base_dir else path.parent
    if not base.is_absolute():
        base = (path.parent / base).resolve()
    problems = _host_sources(env, lines, shown, base, frozenset(substitution.hidden)) + _cross_check(env, lines, shown)
    if problems:
        raise EnvFileError(problems)
    unset_in: dict[tuple[str, int], list[str]] = {}
    for at, names in placeholders.items():
        if len(at) > 1 and isinstance(at[1], int):
            unset_in.setdefault((str(at[0]), at[1]), [])
            unset_in[(str(at[0]), at[1])] += [n for n in names if n not in unset_in[(str(at[0]), at[1])]]
    registered = _register_secrets(env, lines, shown, skip=_has_placeholder if placeholders else None)
    for where in dict.fromkeys(substitution.too_short + registered):
        warnings.warn(f"{where}: a secret shorter than {MIN_SECRET} characters is not masked in output "
                      "(masking it would hide every occurrence of those characters)", stacklevel=2)
    _share_field_names(env.configured())
    return LoadedEnvironment(env, path, base, embedded, tuple(substitution.unset), unset_in)


def _share_field_names(items: list[Any]) -> None:
    """Items of one kind that set the same fields share one set of those names (pydantic keeps
    a set per item, ~220 bytes each, for ``model_fields_set``). Nothing assigns a field of a
    loaded item (which would add its name to the shared set); ``model_copy`` copies the set.

    >>> from opsgate.model import TcpCheck
    >>> a, b = TcpCheck(name="a", port=1), TcpCheck(name="b", port=2)
    >>> _share_field_names([a, b]); a.model_fields_set is b.model_fields_set, sorted(b.model_fields_set)
    (True, ['name', 'port'])
    """
    shared: dict[tuple[type, frozenset[str]], set[str]] = {}
    for item in items:
        names = item.__pydantic_fields_set__
        same = shared.setdefault((type(item), frozenset(names)), names)
        if same is not names:
            object.__setattr__(item, "__pydantic_fields_set__", same)


def _placeholder(name: str) -> str:
    return f"<unset:{name}>"


_PLACEHOLDER = re.compile(r"<unset:[A-Za-z_][A-Za-z0-9_]*>")


def _has_placeholder(value: str) -> bool:
    return bool(_PLACEHOLDER.search(value))


def _unsectioned(at: Path_) -> Path_:
    """(kind, "checks", 3, ...) as validation sees it, (kind, 3, ...)."""
    return (at[0], *at[2:]) if len(at) > 2 and at[1] == "checks" and isinstance(at[2], int) else at


def _get(data: Any, at: Path_) -> Any:
    for key in at:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _refit_placeholders(data: dict, errors: list[dict], placeholders: dict[Path_, list[str]], attempt: int) -> bool:
    """Give each placeholder a field rejected another form: an address with the scheme the
    field's pattern asks for, then a number (``${PORT}``, ``${N}s``). False: nothing to change."""
    changed = False
    for error in errors:
        loc = tuple(error["loc"])
        at = next((loc[:n] for n in range(len(loc), 0, -1) if loc[:n] in placeholders), None)
        parent = _get(data, at[:-1]) if at else None
        value = parent[at[-1]] if isinstance(parent, (dict, list)) else None
        if not isinstance(value, str) or not _has_placeholder(value):
            continue
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        if attempt == 0 and "://" in pattern and "://" not in value:  # ${URL}: http://<unset:URL>
            scheme = re.sub(r"\([^)]*\)\?|.\?", "", pattern.lstrip("^")).split("://")[0]
            parent[at[-1]] = f"{scheme}://{value}"
        else:
            numeric = _PLACEHOLDER.sub("1", value)
            parent[at[-1]] = int(numeric) if numeric == "1" else numeric
        changed = True
    return changed


def _unset_notes(errors: list[dict], placeholders: dict[Path_, list[str]], lines: dict[Path_, int], shown: str) -> list[Problem]:
    """A problem a placeholder may cause says so: set the variable to check that value."""
    notes = []
    for error in errors:
        loc = tuple(error["loc"])
        at = next((loc[:n] for n in range(len(loc), 0, -1) if loc[:n] in placeholders), None)
        if at:
            names = ", ".join(placeholders[at])
            notes.append(Problem(shown, line_of(lines, at), dotted(at),
                                 f"uses unset {names}: the placeholder does not fit here; set it to check this value"))
    return notes


class _Substitution:
    """``${VAR}`` and ``${VAR:-default}`` replaced in every string (``$$`` is a literal ``$``),
    remembering what a later step needs: the key paths that received a value (validation
    errors never echo those), and for each ``command[].shell`` the variables it refers to,
    which reach the shell through the command's environment instead of its text."""

    def __init__(self, environ: typing.Mapping[str, str], secret_names: set[str], lines: dict[Path_, int], shown: str,
                 allow_unset: bool = False):
        self.environ, self.secret_names, self.lines, self.shown = environ, secret_names, lines, shown
        self.allow_unset = allow_unset
        self.unset: dict[str, None] = {}  # unset variables, in order of first use
        self.placeholders: dict[Path_, list[str]] = {}  # key path -> unset variables its value uses
        self.problems: list[Problem] = []
        self.hidden: set[Path_] = set()
        self.shell_env: dict[int, dict[str, str]] = {}  # command index -> variables for its shell
        self.too_short: list[str] = []  # secrets that cannot be masked, where they are used

    def walk(self, value: Any, at: Path_ = ()) -> Any:
        if isinstance(value, dict):
            return {k: self.walk(v, at + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v, at + (i,)) for i, v in enumerate(value)]
        if not isinstance(value, str) or "$" not in value:
            if isinstance(value, str) and "?" in value and "://" in value:
                _register_query_credentials(value)  # before validation: a load error masks them already
            return value
        if len(at) == 3 and at[0] == "command" and at[2] == "shell" and isinstance(at[1], int):
            return shell_references(value, lambda m: self._shell_variable(m, at))
        userinfo = password = range(0)
        if at and "://" in value and at[-1] in _address_fields():  # scheme://user:password@host
            start = value.index("://") + 3
            end = value.find("@", start)
            if end > start:
                userinfo = range(start, end + 1)
                colon = value.find(":", start, end)  # no ':' here: the variable holds user:password
                password = range(colon + 1 if colon >= 0 else start, end + 1)
        result = _VAR.sub(lambda m: self._value(m, at, m.start() in userinfo and m.end() in userinfo,
                                                m.start() in password and m.end() in password), value)
        if "?" in result and "://" in result:
            _register_query_credentials(result)
        return result

    def _value(self, match: re.Match, at: Path_, in_userinfo: bool = False, in_password: bool = False) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in self.environ:
            result = self.environ[name]
        elif default is not None:
            result = default
        elif self.allow_unset:  # linting, not running: a placeholder, never a secret
            self.unset.setdefault(name)
            names = self.placeholders.setdefault(at, [])
            names += [name] if name not in names else []
            return _placeholder(name)
        else:
            self.problems.append(Problem(self.shown, line_of(self.lines, at), dotted(at),
                                         f"expected environment variable {name} to be set, seen it unset "
                                         f"(export it, or write ${{{name}:-default}})"))
            return ""
        self.hidden.add(at)
        if is_secret_variable(name) or name in self.secret_names or in_password:
            if not register_secret(result, whole=in_password):
                self.too_short.append(f"{self.shown}:{line_of(self.lines, at)}: {dotted(at)}: ${{{name}}}")
        if in_userinfo:
            # the value is the user or password, whatever it holds: a / ? # @, a quote or a
            # space would break the address (and error messages would quote the pieces). What
            # RFC 3986 allows there stays as it is, % too (a value may come percent-encoded).
            result = quote(result, safe="!$&'()*+,;=:%")
        return result

    def _shell_variable(self, match: re.Match, at: Path_) -> str:
        """The shell variable that will hold this reference's value (its own name unless the
        shell owns that name or the command's ``env`` gives it another value)."""
        value = self._value(match, at)
        name = match.group(1)
        taken = self.shell_env.setdefault(at[1], {})
        alias = name if name not in _SHELL_OWNED else f"OPSGATE_VAR_{name}"
        while taken.get(alias, value) != value:
            alias = f"OPSGATE_VAR_{alias}"
        taken[alias] = value
        return alias

    def give_shells_their_variables(self, data: dict) -> None:
        """Add each shell's variables to its command's ``env`` (renamed on a clash)."""
        commands = data.get("command")
        for index, variables in self.shell_env.items():
            item = commands[index] if isinstance(commands, list) and index < len(commands) else None
            if not isinstance(item, dict) or not isinstance(item.get("shell"), str):
                continue
            env = item.setdefault("env", {})
            if not isinstance(env, dict):
                continue  # validation reports the bad env
            for alias, value in variables.items():
                while alias in env and _plain(env[alias]) != value:
                    old = f"${{{alias}}}"
                    alias = f"OPSGATE_VAR_{alias}"
                    item["shell"] = item["shell"].replace(old, f"${{{alias}}}")
                env.setdefault(alias, value)
                self.hidden.add(("command", index, "env", alias))


@functools.cache
def _address_fields() -> frozenset[str]:
    """Fields a kind declares secret (``Kind.secret_fields``) that hold one address (``url``,
    ``dsn``, ``engine``): the password in it is secret, and a value substituted there is
    percent-encoded where it would break the address. Every kind's module is imported to
    know them: only a file substituting a variable into an address pays for it.

    >>> sorted(_address_fields())
    ['dsn', 'engine', 'url']
    """
    def text(annotation: Any) -> bool:  # str, or str | None
        return annotation is str or (typing.get_origin(annotation) in (typing.Union, types.UnionType)
                                     and str in typing.get_args(annotation))

    return frozenset(field for kind in REGISTRY.values() for field in kind.secret_fields
                     if text(kind.schema.model_fields[field].annotation))



def _plain(value: Any) -> Any:
    return value.get("value") if isinstance(value, dict) else value


# names a shell sets or reads itself: a value for one of these goes under another name
_SHELL_OWNED = frozenset({"IFS", "PS1", "PS2", "PS4", "PPID", "PWD", "OLDPWD", "OPTIND", "OPTARG", "LINENO",
                          "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "CDPATH", "HOME", "PATH", "SHELL"})


def shell_references(text: str, variable: typing.Callable[[re.Match], str]) -> str:
    """Rewrite every ``${VAR}`` / ``${VAR:-default}`` of a shell line into a quoted reference
    to a shell variable (named by ``variable(match)``), so the shell expands the value as
    data: no command substitution, no ``;``, no word splitting or globbing. Quoting follows
    the line's own: ``"${V}"`` outside quotes, ``${V}`` inside double quotes, and inside
    single quotes the quote is closed around it. ``$$`` is a literal ``$``.

    >>> line = 'ping -c1 ${HOST} && echo "at ${HOST}" ' + "'or ${HOST}' $$PATH"
    >>> print(shell_references(line, lambda m: m.group(1)))
    ping -c1 "${HOST}" && echo "at ${HOST}" 'or '"${HOST}"'' $PATH
    """
    out: list[str] = []
    stack: list[str] = []  # open contexts: '"', '`', '(' (inside $(...))
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        top = stack[-1] if stack else ""
        match = _VAR.match(text, i) if char == "$" else None
        if match:
            i = match.end()
            if match.group(0) == "$$":
                out.append("$")
                if text.startswith("(", i):  # $$( is the shell's $(
                    stack.append("(")
                    out.append("(")
                    i += 1
                continue
            name = variable(match)
            quoted = top == '"' or (top == "`" and '"' in stack)  # "`...`": inner quotes are unportable
            out.append(f"${{{name}}}" if quoted else f'"${{{name}}}"')
            continue
        if char == "\\":
            step = 1 if text.startswith("$", i + 1) else 2  # \$ does not hide ${VAR} from opsgate
            out.append(text[i:i + step])
            i += step
            continue
        if char == "#" and top != '"' and (i == 0 or text[i - 1] in " \t\n;&|("):  # a comment, to the line's end
            close = text.find("\n", i)
            close = n if close < 0 else close
            out.append(_VAR.sub(lambda m: "$" if m.group(0) == "$$" else f"${{{variable(m)}}}", text[i:close]))
            i = close
            continue
        if char == "'" and top != '"':
            close = text.find("'", i + 1)
            close = n if close < 0 else close
            inner = _VAR.sub(lambda m: "$" if m.group(0) == "$$" else f"'\"${{{variable(m)}}}\"'", text[i + 1:close])
            out.append("'" + inner + ("'" if close < n else ""))
            i = close + 1
            continue
        if char == '"':
            if top == '"':
                stack.pop()
            else:
                stack.append('"')
        elif char == "`":
            if top == "`":
                stack.pop()
            else:
                stack.append("`")
        elif char == "$" and text.startswith("$(", i):
            stack.append("(")
            out.append("$(")
            i += 2
            continue
        elif char == "(" and top == "(":
            stack.append("(")
        elif char == ")" and top == "(":
            stack.pop()
        out.append(char)
        i += 1
    return "".join(out)


def register_secret(value: str, whole: bool = False) -> bool:
    """Register a secret with the redactor. A value that is a URL with a password registers
    that password (raw and percent-decoded) and not the whole address, unless ``whole``
    (the user marked the very value secret). False when a part was too short to be masked
    without masking noise (the loader warns about it).

    >>> register_secret("postgresql://app:pw-1234@db/x"), register_secret("abc")
    (True, False)
    >>> REDACTOR.text("postgresql://app:pw-1234@db/x failed; pw-1234 rejected")
    'postgresql://app:***@db/x failed; *** rejected'
    """
    if not value:
        return True
    parts = [form for secret in _address_secrets(value) for form in _decoded(secret)] if "://" in value else []
    if whole or not parts:
        parts.insert(0, value)
    return all([REDACTOR.add(part) for part in parts])


_SECTION_KEYS = ("cadence", "checks")


def _apply_defaults(data: dict, lines: dict[Path_, int] | None = None, shown: str = "") -> list[Problem]:
    """Fill what an item leaves unset: its kind section's ``cadence``, then ``defaults``.

    A kind section is a list of items, or a mapping ``{cadence: weekly, checks: [...]}``
    whose cadence every item without its own gets; it is turned into the list here (and
    its items' line numbers moved with it, so later errors still point at them).

    >>> data = {"defaults": {"cadence": "daily"}, "file": {"cadence": ["weekly", "monthly"], "checks": [{"name": "a"}]},
    ...         "tcp": [{"name": "b"}]}
    >>> _apply_defaults(data), data["file"], data["tcp"]
    ([], [{'name': 'a', 'cadence': ['weekly', 'monthly']}], [{'name': 'b', 'cadence': 'daily'}])
    """
    problems: list[Problem] = []
    lines = {} if lines is None else lines
    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    for kind in REGISTRY:
        items = data.get(kind)
        section_cadence = None
        if isinstance(items, dict):
            unknown = [k for k in items if k not in _SECTION_KEYS]
            if unknown or not isinstance(items.get("checks", []), list):
                at = (kind, unknown[0]) if unknown else (kind, "checks")
                seen = f"unknown key {unknown[0]!r}" if unknown else f"checks: {type(items['checks']).__name__}"
                problems.append(Problem(shown, line_of(lines, at) or line_of(lines, (kind,)), dotted(at),
                                        f"expected a list of {kind} checks, or a mapping with cadence and checks "
                                        f"(a list), seen {seen}"))
                continue
            section_cadence = items.get("cadence")
            for path, line in list(lines.items()):  # (kind, "checks", 3, "url") -> (kind, 3, "url")
                if path[:2] == (kind, "checks") and len(path) > 2:
                    lines.setdefault((kind, *path[2:]), line)
            items = data[kind] = list(items.get("checks") or [])
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict):
                    if section_cadence is not None:
                        item.setdefault("cadence", section_cadence)
                    for key in ("severity", "timeout", "cadence"):
                        if defaults.get(key) is not None:
                            item.setdefault(key, defaults[key])
    return problems


def _cross_check(env: Environment, lines: dict[Path_, int], shown: str) -> list[Problem]:
    """Names are unique; depends_on names, and the items an item names (a drill's backup), exist;
    depends_on forms no cycle; the runbook section's steps are traced (:func:`opsgate.runbook.problems`)."""
    problems: list[Problem] = []
    where: dict[str, Path_] = {}
    for kind in REGISTRY:
        for index, item in enumerate(getattr(env, kind)):
            at = (kind, index, "name")
            if item.name in where:
                problems.append(Problem(shown, line_of(lines, at), dotted(at),
                                        f"expected a unique name, seen {item.name!r} again (first at line {line_of(lines, where[item.name])})"))
            where.setdefault(item.name, at)
    graph = {i.name: i.depends_on for i in env.configured()}
    problems += fleet_problems(env, lines, shown)
    for kind in REGISTRY:
        for index, item in enumerate(getattr(env, kind)):
            for d_index, dep in enumerate(item.depends_on):
                if dep not in graph:
                    at = (kind, index, "depends_on", d_index)
                    problems.append(Problem(shown, line_of(lines, at), dotted(at) + f" ({item.name})",
                                            f"expected the name of another item, seen {dep!r}"))
    by_kind = {kind: {i.name for i in getattr(env, kind)} for kind in REGISTRY}
    for kind in REGISTRY:
        for index, item in enumerate(getattr(env, kind)):
            for place, wanted, name in item.references():
                if name not in by_kind.get(wanted, ()):
                    at = (kind, index, *place)
                    known = ", ".join(sorted(by_kind.get(wanted, ()))) or "none"
                    problems.append(Problem(shown, line_of(lines, at) or line_of(lines, (kind, index)),
                                            dotted(at) + f" ({item.name})",
                                            f"expected the name of a {wanted} item (there: {known}), seen {name!r}"))
    if env.runbook is not None:  # every step traced to items that exist, or classified
        for at, message in runbook.problems(env.runbook, {i.name: i for i in env.configured()}):
            problems.append(Problem(shown, line_of(lines, at), dotted(at), message))
    cycle = _find_cycle(graph)
    if cycle:
        first = where[cycle[0]]
        long = len(cycle) > 12  # a chain of thousands is shown by its ends
        seen = " -> ".join(cycle[:6] + ["..."] + cycle[-4:] if long else cycle) + (f" ({len(cycle) - 1} checks)" if long else "")
        problems.append(Problem(shown, line_of(lines, first[:2] + ("depends_on",)), dotted(first[:2] + ("depends_on",)),
                                f"expected no dependency cycle, seen {seen}"))
    return problems


def _host_sources(env: Environment, lines: dict[Path_, int], shown: str, base: Path,
                  hidden: frozenset[Path_]) -> list[Problem]:
    """The hosts of an ``inventory:`` added to ``hosts``; a host's password only through ``${VAR}``
    (registered as a secret); ``insecure_no_host_key_check`` warned."""
    problems: list[Problem] = []
    if env.inventory is not None:
        try:
            found = inventory_hosts(env.inventory, base)
        except InventoryError as exc:
            at = ("inventory", "file")
            return [Problem(shown, line_of(lines, at) or line_of(lines, ("inventory",)), dotted(at), str(exc))]
        for name, entry in found.items():
            if name in env.hosts:
                at = ("hosts", name)
                problems.append(Problem(shown, line_of(lines, at), dotted(at), f"expected a host name the inventory "
                                        f"{env.inventory.file} does not list too, seen {name!r} in both"))
            else:
                env.hosts[name] = entry
    for name, entry in env.hosts.items():
        password = _password(entry.url)
        if not password or _has_placeholder(password):  # unset while linting: no secret, not written in the file
            continue
        at = ("hosts", name, "url")
        if at not in hidden and ("hosts", name) not in hidden:
            problems.append(Problem(shown, line_of(lines, at) or line_of(lines, at[:2]), dotted(at),
                                    "expected the password from the environment (paramiko://user:${PASSWORD}@host) "
                                    "or an identity file or agent, seen a password written in the file"))
        elif entry.transport in ("ssh", "safe-ssh"):  # testinfra hands it to sshpass -p: any local user's ps shows it
            problems.append(Problem(shown, line_of(lines, at) or line_of(lines, at[:2]), dotted(at),
                                    f"expected no password in an {entry.transport}:// url (testinfra would pass it to "
                                    "sshpass on a command line every user of this machine can read); use an identity "
                                    "file or agent, or paramiko:// for a password"))
        register_secret(password, whole=True)
        register_secret(unquote(password), whole=True)
    if env.host_options is not None and env.host_options.insecure_no_host_key_check:
        at = ("host_options", "insecure_no_host_key_check")
        warnings.warn(f"{shown}:{line_of(lines, at)}: {dotted(at)}: true - host keys are NOT checked: anyone on the "
                      "path to a host can pose as it and receive its commands", stacklevel=3)
    return problems


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A dependency cycle as its names, first repeated last; without recursion, so a chain of
    any length is fine."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in graph:
        if start in state:
            continue
        state[start] = 1
        path, todo = [start], [iter(graph[start])]
        while todo:
            dep = next(todo[-1], None)
            if dep is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            elif dep in graph and dep not in state:
                state[dep] = 1
                path.append(dep)
                todo.append(iter(graph[dep]))
    return None


def _register_inherited(environ: typing.Mapping[str, str], listed: set[str]) -> None:
    """Secret-named and listed variables of opsgate's own environment: every command check
    inherits them, so a command that prints its environment must not show them."""
    for name, value in environ.items():
        if (is_secret_variable(name) or name in listed) and isinstance(value, str):
            register_secret(value)  # not opsgate's variable: no warning when too short


def _register_secrets(env: Environment, lines: dict[Path_, int], shown: str,
                      skip: typing.Callable[[str], bool] | None = None) -> list[str]:
    """Header values marked secret or named like secrets (and the token after a scheme, the
    password inside Basic credentials), the password of any URL or DSN (http, postgres,
    redis, prometheus, metrics, a container engine), secret command env. Returns where a
    secret too short to mask is used."""
    too_short: list[str] = []

    def register(value: str, at: Path_, whole: bool = False) -> None:
        if skip and skip(value):
            return  # a placeholder (allow_unset) is no secret's value
        if not register_secret(value, whole):
            too_short.append(f"{shown}:{line_of(lines, at)}: {dotted(at)}")

    for kind_name in REGISTRY:
        for index, item in enumerate(getattr(env, kind_name)):
            for field in REGISTRY[kind_name].secret_fields:  # what its kind module declares secret
                value, at = getattr(item, field), (kind_name, index, field)
                if isinstance(value, str):  # an address: the password in it, the credentials in its query
                    for secret in _address_secrets(value):
                        for form in _decoded(secret):
                            register(form, at, whole=True)
                elif isinstance(value, dict):
                    for name, entry in value.items():
                        _register_entry(name, entry, at + (name,), field == "env", env.secrets, register, skip)
    return too_short


def _register_entry(name: str, entry: Any, at: Path_, variable: bool, listed: list[str],
                    register: typing.Callable[..., None], skip: typing.Callable[[str], bool] | None) -> None:
    """One entry of a secret mapping field: a command's ``env`` (names read as variable names:
    secret-named or listed in ``secrets``) or a request's ``headers`` (names read as header
    names, and the token after a scheme - ``Bearer <token>``, the password inside ``Basic``
    credentials - is secret too); any entry written ``{value: ..., secret: true}``."""
    marked = getattr(entry, "secret", False)
    text = entry.value if isinstance(entry, SecretValue) else entry
    if variable:
        if marked or is_secret_variable(name) or name in listed:
            register(text, at, whole=marked)
        return
    if marked or is_secret_name(name):
        register(text, at, whole=True)
        scheme, _, token = text.partition(" ")
        if token and re.fullmatch(r"[A-Za-z][\w-]*", scheme) and not (skip and skip(token)):  # "Bearer <token>", "Basic <base64>"
            REDACTOR.add(token.strip())
            if scheme.lower() == "basic":
                REDACTOR.add(_basic_password(token))


def _password(address: str) -> str | None:
    try:
        return urlsplit(address).password
    except ValueError:  # not a URL after all
        return None


def _query_credentials(address: str) -> list[str]:
    """The values of an address's credential query parameters, as written (not decoded).

    >>> _query_credentials("postgresql://app@db/shop?sslmode=require&password=hunter2xyz&sslpassword=k%26y-9")
    ['hunter2xyz', 'k%26y-9']
    """
    try:
        query = urlsplit(address).query
    except ValueError:  # not a URL after all
        return []
    found = []
    for pair in re.split(r"[&;]", query):
        name, eq, value = pair.partition("=")
        if eq and value and is_secret_parameter(unquote_plus(name)):
            found.append(value)
    return found


def _address_secrets(address: str) -> list[str]:
    """The credentials an address carries: the password of its user, and the values of the
    credential parameters of its query string (``?password=``, ``?sslpassword=``, ``?token=``).

    >>> _address_secrets("redis://:rpw-1234@cache:6379/0?password=qpw-5678&db=0")
    ['rpw-1234', 'qpw-5678']
    """
    password = _password(address)
    return ([password] if password else []) + _query_credentials(address)


def _decoded(secret: str) -> list[str]:
    """A secret as written in an address and as the client reads it (percent- and plus-decoded)."""
    return list(dict.fromkeys((secret, unquote(secret), unquote_plus(secret))))


def _register_query_credentials(address: str) -> None:
    """Register the credentials of an address's query string (no placeholder is one)."""
    for secret in _query_credentials(address):
        if not _has_placeholder(secret):
            for form in _decoded(secret):
                REDACTOR.add(form)


def _basic_password(token: str) -> str:
    try:
        return base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")[2]
    except (ValueError, UnicodeDecodeError):
        return ""
