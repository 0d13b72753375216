"""``file``: a file exists (or must not), is fresh enough, within size bounds, not world-writable;
what it says (regexes, keys of a JSON, YAML, INI or env file); a directory's file count, total
size and the age of its oldest and newest files.

Everything is read through ``ctx.target``, bounded: content up to ``max_read`` bytes (a larger
file fails, naming it, rather than be judged on a part), a directory up to ``max_entries``
entries (a directory holding more fails saying how many were read, rather than hang or pass
on a part).

>>> from opsgate.probes import ProbeContext
>>> obs = observe(FileCheck(name="h", path="/etc/hostname", max_age="100000d"), ProbeContext())
>>> obs.values["exists"], obs.error
(True, None)
"""

from __future__ import annotations

import configparser
import errno
import fnmatch
import json
import re
import shlex
import stat
from dataclasses import replace
import time
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from .. import yamlfile
from ..conditions import Condition
from ..kinds import Kind
from ..redact import REDACTOR, is_secret_variable
from ..results import Observation
from ..schema import CheckItem, Duration, Regex, Size, Strict
from ..targets import READ_AHEAD


# a condition's text, compiled when the file is loaded so a typo is a load error
ConditionText = Annotated[str, AfterValidator(lambda text: Condition.parse(text) and text)]


class Content(Strict):
    """Conditions on a file's keys, read as ``format``: JSON and YAML as they are, INI as
    ``{section: {key: 'value'}}``, env (``KEY=value`` lines, ``export`` and quotes allowed) as
    ``{KEY: 'value'}``. INI and env values are text: ``server.debug == 'false'``."""

    format: Literal["json", "yaml", "ini", "env"]
    expect: list[ConditionText] = Field([], description="conditions on the parsed file that must hold, e.g. "
                                                        "\"server.debug == 'false'\"")
    warn: list[ConditionText] = Field([], description="conditions on the parsed file that should hold")


class Directory(Strict):
    """``path`` is a directory: its regular files matching ``match`` (by name), counted, summed
    and aged. "Logs older than 30 days pruned" is ``{match: "*.log", oldest_max_age: 30d}``."""

    match: str = Field("*", description="shell pattern on the file name (e.g. *.log)")
    recursive: bool = Field(False, description="also the files of its subdirectories (links not followed)")
    max_files: int | None = Field(None, ge=0, description="most matching files")
    min_files: int | None = Field(None, ge=0, description="fewest matching files")
    max_total_size: Size | None = Field(None, description="most bytes in all matching files")
    oldest_max_age: Duration | None = Field(None, description="no matching file older than this (pruned); an "
                                                              "empty directory passes")
    newest_max_age: Duration | None = Field(None, description="the newest matching file is younger than this "
                                                              "(something was written); an empty directory fails")
    max_entries: int = Field(100_000, ge=1, description="entries read at most (of any type or name); a directory "
                                                        "holding more fails saying so")


class FileCheck(CheckItem):
    """A file: exists (or not), maximum age, size bounds, not world-writable; its content
    (``contains``/``not_contains`` regexes, ``content`` key conditions); or a directory
    (``directory``): count, total size, oldest and newest file age."""

    kind: ClassVar[str] = "file"
    path: str
    exists: bool = True
    max_age: Duration | None = None
    warn_age: Duration | None = None
    min_size: Size | None = None
    max_size: Size | None = None
    allow_world_writable: bool = False
    contains: list[Regex] = Field([], description="regexes the file must match (multiline: ^ and $ are lines)")
    not_contains: list[Regex] = Field([], description="regexes the file must not match, e.g. ^DEBUG\\s*=\\s*true")
    content: Content | None = Field(None, description="the file parsed (json, yaml, ini, env) and held to conditions")
    max_read: Size = Field(1 << 20, description="most bytes read for contains/not_contains/content; a larger file "
                                                "fails")
    directory: Directory | None = Field(None, description="path is a directory: file count, total size, ages")

    @model_validator(mode="after")
    def _directory_or_content(self) -> "FileCheck":
        if self.directory and (self.contains or self.not_contains or self.content):
            raise ValueError("directory and contains/not_contains/content are exclusive (a directory has no "
                             "content; check a file of it in an item of its own)")
        return self

    def reads_content(self) -> bool:
        return bool(self.contains or self.not_contains or self.content)


#: what Path.exists() takes for "no such file" (a dangling link, a file where a directory should be, a loop)
_ABSENT = {errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP}


def observe(item: FileCheck, ctx) -> Observation:
    deadline = time.monotonic() + item.timeout
    path = ctx.path(item.path)
    values = {"path": str(path), "exists": True}
    listing = None
    try:
        if item.directory and item.exists:  # its entries in the same operation where the target can
            st, listing = ctx.target.stat_and_list(str(path), item.directory.max_entries, item.timeout,
                                                   item.directory.recursive)
        else:  # content wanted: a remote target sends a small file's bytes with its stat (one round trip)
            st = ctx.target.stat(str(path), item.timeout, read_ahead=min(READ_AHEAD, item.max_read) if
                                 item.reads_content() else 0)
    except TimeoutError as exc:
        return Observation(values, error=f"{path}: cannot stat: {exc}")
    except OSError as exc:
        if exc.errno in _ABSENT:
            values["exists"] = False
            if item.exists:
                return Observation(values, error=f"{path}: {'directory' if item.directory else 'file'} does not "
                                                 "exist")
            return Observation(values)
        return Observation(values, error=f"{path}: cannot stat: {exc.strerror or exc}")
    values.update(
        size_bytes=st.size,
        age_s=round(time.time() - st.mtime, 3),
        mode=oct(stat.S_IMODE(st.mode)),
        world_writable=bool(st.mode & stat.S_IWOTH),
    )
    if not item.exists:
        return Observation(values)
    left = max(0.001, deadline - time.monotonic())
    if item.directory:
        return _directory(item.directory, str(path), listing, values)
    if item.reads_content():
        return _content(item, str(path), st, ctx.target, left, values)
    return Observation(values)


# --- content --------------------------------------------------------------------------------

def _content(item: FileCheck, path: str, st, target, timeout: float, values: dict) -> Observation:
    if not st.is_file:
        return Observation(values, error=f"{path}: not a regular file, so its content cannot be read")
    if st.size > item.max_read:
        return Observation(values, error=f"{path}: {st.size} bytes, more than max_read ({item.max_read}); its "
                                         "content is not judged on a part (raise max_read)")
    try:
        # all of it came with the stat (same moment, same size), or it is read now
        data = st.whole()
        if data is None:
            data = target.read_range(path, 0, item.max_read + 1, timeout)
    except (OSError, TimeoutError) as exc:
        return Observation(values, error=f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}")
    if len(data) > item.max_read:  # grown since the stat
        return Observation(values, error=f"{path}: more than max_read ({item.max_read}) bytes; raise max_read")
    text = data.decode("utf-8", "replace")
    found, explain = {}, []
    for regex in item.contains + item.not_contains:
        match = re.search(regex, text, re.MULTILINE)
        found[regex] = match is not None
        if match and regex in item.not_contains:
            line_no = text.count("\n", 0, match.start()) + 1
            line = text[text.rfind("\n", 0, match.start()) + 1:].split("\n", 1)[0]
            explain.append(f"line {line_no}: {REDACTOR.excerpt(REDACTOR.text(line), 200)}")
    if found:
        values["found"] = found
    if item.content:
        try:
            document = parse(text, item.content.format)
        except ValueError as exc:
            return Observation(values, error=f"{path}: not a valid {item.content.format} file: {exc}")
        values["content"], problems = _observed(item.content, document)
        explain += [f"{text}: {why}" for text, why in problems.items()]
    return Observation(values, explain="; ".join(explain) or None)


def parse(text: str, fmt: str) -> Any:
    """The file's text as a document; ValueError when it is not of that format.

    >>> parse("[server]\\ndebug = false\\n", "ini")
    {'server': {'debug': 'false'}}
    >>> parse("# comment\\nexport API_URL=http://x\\nDEBUG='true'\\n", "env")
    {'API_URL': 'http://x', 'DEBUG': 'true'}
    """
    try:
        if fmt == "json":
            return json.loads(text)
        if fmt == "yaml":  # opsgate's own bounded loader: alias bombs, nesting, duplicate keys refused
            return yamlfile.parse(text, "file")[0]
        if fmt == "ini":
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_string(text)
            document = {name: dict(parser[name]) for name in parser.sections()}
            if parser.defaults():
                document["DEFAULT"] = dict(parser.defaults())
            return document
        return _env(text)
    except (json.JSONDecodeError, yamlfile.ProblemsError, configparser.Error, RecursionError) as exc:
        raise ValueError(" ".join(str(exc).split())[:300]) from None


def _env(text: str) -> dict[str, str]:
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", key.strip()):
            raise ValueError(f"line {number}: expected KEY=value")
        value = value.strip()
        if value[:1] in ("'", '"'):
            try:
                parts = shlex.split(value, comments=True)
            except ValueError as exc:
                raise ValueError(f"line {number}: {exc}") from None
            value = parts[0] if parts else ""
        else:
            value = re.sub(r"\s+#.*$", "", value)
        out[key.strip()] = value
    return out


def _observed(content: Content, document: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Each condition's observed value (its left side) in the document, and why one could not
    be read (``x is a number; length() needs ...``); only these reach the evidence, never the
    file. A value read under a secret-looking key (``API_KEY``) is registered as a secret, so
    every output masks it."""
    out, problems = {}, {}
    for text in content.expect + content.warn:
        held = Condition.parse(text).evaluate(document)
        observed = held.observed
        if observed is None and held.detail and held.detail != "value is missing":
            problems[text] = held.detail
        names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"'[^']*'|\"[^\"]*\"", "", text))
        if isinstance(observed, str) and any(is_secret_variable(n) for n in names):
            REDACTOR.add(observed)
        out[text] = observed
    return out, problems


# --- directories ----------------------------------------------------------------------------

def _directory(spec: Directory, path: str, listing, values: dict) -> Observation:
    """Judge ``listing`` (``Target.stat_and_list``'s: None when ``path`` is no directory, or
    the OSError listing it raised)."""
    if listing is None or isinstance(listing, NotADirectoryError):
        return Observation(values, error=f"{path}: not a directory")
    if isinstance(listing, OSError):  # TimeoutError too
        return Observation(values, error=f"{path}: cannot list: {getattr(listing, 'strerror', None) or listing}")
    files, read, more = listing
    now = time.time()
    matching = [f for f in files if fnmatch.fnmatchcase(f.path.rsplit("/", 1)[-1], spec.match)]
    oldest = min(matching, key=lambda f: f.mtime, default=None)
    newest = max(matching, key=lambda f: f.mtime, default=None)
    values.update(entries_read=read, files=len(matching), total_size_bytes=sum(f.size for f in matching),
                  oldest_age_s=round(now - oldest.mtime, 3) if oldest else None,
                  newest_age_s=round(now - newest.mtime, 3) if newest else None)
    if oldest:
        values.update(oldest=oldest.path, newest=newest.path)
    if more:
        return Observation(values, error=f"{path}: holds more than max_entries ({spec.max_entries}) entries; read "
                                         f"the first {read} only, so its file count, size and ages are not known "
                                         "(raise max_entries, or prune it)")
    return Observation(values, explain=None if matching else f"no file in {path} matches {spec.match!r} "
                                                             f"({read} entries read)")


# --- limits ---------------------------------------------------------------------------------

def limits(item: FileCheck) -> list[Condition]:
    """Each limit names the file, so one line says which one broke it.

    >>> [c.label for c in limits(FileCheck(name="b", path="/var/backups/last.ok", max_age="1d"))]
    ['/var/backups/last.ok exists', '/var/backups/last.ok: age_s <= 86400.0', '/var/backups/last.ok is not world-writable']
    >>> [c.label for c in limits(FileCheck(name="c", path="app.ini", allow_world_writable=True,
    ...                                    content={"format": "ini", "expect": ["server.debug == 'false'"]}))]
    ['app.ini exists', "app.ini (ini): server.debug == 'false'"]
    """
    named = lambda c: replace(c, label=f"{item.path}: {c.expression}")  # noqa: E731
    out = [Condition.compare("exists", "==", item.exists,
                             label=f"{item.path} exists" if item.exists else f"{item.path} is absent")]
    if not item.exists:
        return out
    if item.max_age is not None:
        out.append(named(Condition.compare("age_s", "<=", item.max_age)))
    if item.warn_age is not None:
        out.append(named(Condition.compare("age_s", "<=", item.warn_age, "warn")))
    if item.min_size is not None:
        out.append(named(Condition.compare("size_bytes", ">=", item.min_size)))
    if item.max_size is not None:
        out.append(named(Condition.compare("size_bytes", "<=", item.max_size)))
    if not item.allow_world_writable:
        out.append(Condition.compare("world_writable", "==", False, label=f"{item.path} is not world-writable"))
    out += [Condition.compare(("found", r), "==", True, label=f"{item.path} contains /{r}/") for r in item.contains]
    out += [Condition.compare(("found", r), "==", False, label=f"{item.path} does not contain /{r}/")
            for r in item.not_contains]
    if item.content:
        for level, texts in (("fail", item.content.expect), ("warn", item.content.warn)):
            for text in texts:
                parsed = Condition.parse(text, level)
                # held against the value observe read at the condition's left side
                out.append(Condition(parsed.expression, level, None, parsed.op, parsed.limit,
                                     f"{item.path} ({item.content.format}): {text}", ("content", text)))
    if item.directory:
        out += _directory_limits(item.path, item.directory)
    return out


def _directory_limits(path: str, spec: Directory) -> list[Condition]:
    files = f"{path}/{spec.match}" + (" (recursive)" if spec.recursive else "")
    out = []
    if spec.max_files is not None:
        out.append(Condition.compare("files", "<=", spec.max_files, label=f"files {files} <= {spec.max_files}"))
    if spec.min_files is not None:
        out.append(Condition.compare("files", ">=", spec.min_files, label=f"files {files} >= {spec.min_files}"))
    if spec.max_total_size is not None:
        out.append(Condition.compare("total_size_bytes", "<=", spec.max_total_size,
                                     label=f"total size of {files} <= {spec.max_total_size} bytes"))
    if spec.oldest_max_age is not None:  # no file: none is too old
        out.append(Condition.compare("oldest_age_s", "<=", spec.oldest_max_age, default=0,
                                     label=f"oldest of {files}: age_s <= {_seconds(spec.oldest_max_age)}"))
    if spec.newest_max_age is not None:
        out.append(Condition.compare("newest_age_s", "<=", spec.newest_max_age,
                                     label=f"newest of {files}: age_s <= {_seconds(spec.newest_max_age)}"))
    return out


def _seconds(value: float) -> str:
    """``2592000 (30d)``: a limit in seconds as messages show it.

    >>> _seconds(2592000.0), _seconds(90.5)
    ('2592000 (30d)', '90.5')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value:.0f} ({value / size:.0f}{unit})"
    return f"{value:g}"


KIND = Kind(name="file", schema=FileCheck, observe=observe, limits=limits,
            summary="a file: exists (or not), maximum age, size bounds, not world-writable, content (regexes; json, "
                    "yaml, ini, env keys); a directory's file count, total size and ages",
            host_level=True)
