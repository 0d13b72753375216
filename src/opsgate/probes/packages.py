"""``packages``: a Python environment holds the packages it needs, at the versions it needs,
consistently, without known vulnerabilities.

Three parts, each run with the environment's own interpreter (``python:``, by default the
one opsgate runs in) through the target, within what is left of the item's timeout:

- ``requirements``: lines like ``requests>=2.31`` checked with ``packaging`` against
  ``python -m pip list --format json`` (names compared normalised, a pre-release counts
  when it is inside the range). Extras are accepted and not followed (``requests[socks]``
  checks requests); environment markers are refused at load (whose environment?).
- ``pip_check``: ``python -m pip check`` reports no broken or missing requirement.
- ``vulnerabilities``: ``pip-audit`` (``python -m pip_audit`` in that environment, else a
  ``pip-audit`` on PATH pointed at it through ``PIPAPI_PYTHON_LOCATION``) finds none.
  ``required``: pip-audit absent fails. ``if_installed`` (default): absent is recorded as
  ``not installed`` with a note saying the part was not checked, and the check does not
  fail for it; it never counts as "no vulnerabilities". ``off``: not run. pip-audit asks a
  vulnerability service over the network: where that cannot be reached it fails, naming
  pip-audit's own words.

>>> item = PackagesCheck(name="env", requirements=["requests>=2.31"], vulnerabilities="off")
>>> [c.label for c in limits(item)]
['requests>=2.31 is installed at a matching version', 'pip check is clean']
"""

from __future__ import annotations

import sys
import time
from typing import ClassVar, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import Field, field_validator

from ..capture import Capture
from ..conditions import Condition
from ..jsondoc import TooDeep, loads_bounded
from ..kinds import Kind
from ..redact import REDACTOR
from ..results import Observation
from ..schema import CheckItem
from ..targets import Command

_OUTPUT_LIMIT = 16 << 20  # bytes of a command's stdout parsed at most (pip list of thousands of packages fits)
_SHOWN = 10  # problems named in a message


class PackagesCheck(CheckItem):
    """Installed Python packages: required versions present, pip check clean, no known vulnerabilities."""

    kind: ClassVar[str] = "packages"
    python: str | None = Field(None, description="the environment's interpreter (default: the one opsgate runs in)")
    requirements: list[str] = Field([], description="requirement lines, e.g. requests>=2.31")
    pip_check: bool = Field(True, description="python -m pip check must report no problem")
    vulnerabilities: Literal["required", "if_installed", "off"] = Field(
        "if_installed", description="pip-audit must find none: required (absent fails), if_installed (absent is "
                                    "noted, not checked) or off")

    @field_validator("requirements")
    @classmethod
    def _requirements(cls, lines: list[str]) -> list[str]:
        for line in lines:
            parse_requirement(line)
        return lines


def parse_requirement(line: str) -> Requirement:
    """A requirement line as ``packaging`` reads it; ValueError naming the line otherwise.

    >>> str(parse_requirement("Requests >= 2.31").specifier)
    '>=2.31'
    >>> parse_requirement("requests; python_version < '3.8'")
    Traceback (most recent call last):
    ...
    ValueError: expected a requirement without an environment marker, seen "requests; python_version < '3.8'"
    """
    try:
        requirement = Requirement(line)
    except InvalidRequirement as exc:
        raise ValueError(f"expected a requirement line like requests>=2.31, seen {line!r}: {exc}") from None
    if requirement.marker is not None:
        raise ValueError(f"expected a requirement without an environment marker, seen {line!r}")
    if requirement.url:
        raise ValueError(f"expected a requirement by name and version, not a URL, seen {line!r}")
    return requirement


def unmet(line: str, installed: dict[str, str]) -> str | None:
    """Why ``line`` is not met by ``installed`` (normalised name -> version), None when it is.

    >>> unmet("requests>=2.31", {"requests": "2.20.0"})
    'requests 2.20.0 is installed, not >=2.31'
    >>> unmet("No_Such.pkg", {}), unmet("pydantic>=2", {"pydantic": "2.7.1"})
    ('no-such-pkg is not installed', None)
    """
    requirement = parse_requirement(line)
    name = canonicalize_name(requirement.name)
    version = installed.get(name)
    if version is None:
        return f"{name} is not installed"
    if not requirement.specifier:
        return None
    try:
        ok = requirement.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return f"{name} {version} is installed, a version that cannot be compared with {requirement.specifier}"
    return None if ok else f"{name} {version} is installed, not {requirement.specifier}"


class _Failed(Exception):
    """One part could not be observed; the message says why."""


def _last_lines(text: str, count: int = 2) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(line[:200] for line in lines[-count:]) or "no output"


def _run(ctx, argv: list[str], deadline: float, env: dict[str, str] | None = None) -> tuple[int, Capture, Capture]:
    shown = " ".join(["python", *argv[1:4]] if argv[1:2] == ["-m"] else argv[:1])  # the message names the interpreter
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Failed(f"no time left of the timeout to run `{shown}`")
    out, err = Capture(_OUTPUT_LIMIT), Capture()
    try:
        ran = ctx.target.run(Command(argv=argv, env=env), out, err, left)
    except OSError as exc:
        raise _Failed(f"cannot run `{shown}`: {exc.strerror or exc}") from None
    if ran.ending == "timeout":
        raise _Failed(f"`{shown}` did not finish within the timeout (killed)")
    if ran.ending == "truncated":
        raise _Failed(f"`{shown}`: {ran.note}")
    return ran.exit_code, out, err


def _json(out: Capture, what: str):
    if not out.whole:
        raise _Failed(f"{what} printed {out.size} bytes, more than the {out.limit} parsed")
    try:
        return loads_bounded(out.text(), 50)
    except (TooDeep, ValueError) as exc:
        raise _Failed(f"{what} did not print JSON ({str(exc)[:120]})") from None


def _installed(python: str, ctx, deadline: float) -> dict[str, str]:
    code, out, err = _run(ctx, [python, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
                          deadline)
    if code != 0:
        raise _Failed(f"`pip list` exited {code}: {_last_lines(err.text() or out.text())}")
    listed = _json(out, "`pip list --format json`")
    try:
        return {canonicalize_name(entry["name"]): str(entry["version"]) for entry in listed}
    except (TypeError, KeyError):
        raise _Failed("`pip list --format json` printed JSON that is not a list of name/version objects") from None


def _pip_check(python: str, ctx, deadline: float) -> list[str]:
    code, out, err = _run(ctx, [python, "-m", "pip", "check", "--disable-pip-version-check"], deadline)
    lines = [line.strip() for line in out.text().splitlines() if line.strip()]
    if code == 0:
        return []
    if not lines or "No module named pip" in err.text():
        raise _Failed(f"`pip check` exited {code}: {_last_lines(err.text() or out.text())}")
    return lines[:200]


def _audit(python: str, ctx, deadline: float) -> tuple[str, list[str], str | None]:
    """pip-audit's verdict: ("clean"|"vulnerable"|"not installed", findings, note)."""
    flags = ["--format", "json", "--progress-spinner", "off"]
    env = {"PIPAPI_PYTHON_LOCATION": python}  # pip-audit reads the packages of this interpreter
    code, out, err = _run(ctx, [python, "-m", "pip_audit", *flags], deadline, env)
    if code != 0 and "No module named pip_audit" in err.text():
        try:
            code, out, err = _run(ctx, ["pip-audit", *flags], deadline, env)
        except _Failed as exc:
            if "No such file" in str(exc) or "not found" in str(exc):
                return "not installed", [], (f"vulnerabilities not checked: pip-audit is not installed (neither "
                                             f"`{python} -m pip_audit` nor pip-audit on PATH)")
            raise
    if code not in (0, 1):
        raise _Failed(f"pip-audit exited {code}: {_last_lines(err.text() or out.text())}")
    document = _json(out, "pip-audit --format json") if out.data.strip() else None
    if document is None:
        raise _Failed(f"pip-audit exited {code} with no report: {_last_lines(err.text())}")
    dependencies = document.get("dependencies") if isinstance(document, dict) else document
    # a report that lists no package audited nothing (every environment has pip at least):
    # "{}" or no dependencies passed as clean
    if not isinstance(dependencies, list) or not dependencies:
        raise _Failed(f"pip-audit exited {code} with a report that lists no audited package "
                      f"({REDACTOR.excerpt(out.text(), 120)!r})")
    findings = []
    try:
        for dependency in dependencies:
            for vuln in dependency.get("vulns", []):
                fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
                findings.append(f"{dependency['name']} {dependency.get('version', '?')}: {vuln.get('id', '?')} "
                                f"(fixed in {fixes})")
    except (TypeError, AttributeError, KeyError):
        raise _Failed("pip-audit printed JSON in a shape not understood (expected dependencies with vulns)") from None
    if code == 1 and not findings:
        raise _Failed(f"pip-audit exited 1 without naming a vulnerability: {_last_lines(err.text())}")
    return ("vulnerable" if findings else "clean"), findings, None


def _shown(items: list[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return "; ".join(items[:_SHOWN]) + more


def observe(item: PackagesCheck, ctx) -> Observation:
    deadline = time.monotonic() + item.timeout
    # a path is taken relative to base_dir; a bare name (python3) is looked up on the target's PATH
    python = str(ctx.path(item.python)) if item.python and "/" in item.python else (item.python or sys.executable)
    values: dict = {"python": python}
    details: dict = {}
    explain: list[str] = []
    try:
        if item.requirements:
            installed = _installed(python, ctx, deadline)
            problems = {line: unmet(line, installed) for line in item.requirements}
            values["requirements"] = {line: problem is None for line, problem in problems.items()}
            values["installed"] = {line: installed.get(canonicalize_name(parse_requirement(line).name))
                                   for line in item.requirements}
            unmet_lines = [p for p in problems.values() if p]
            if unmet_lines:
                explain.append(_shown(unmet_lines))
        if item.pip_check:
            broken = _pip_check(python, ctx, deadline)
            values["pip_check_problems"] = broken
            if broken:
                explain.append(f"pip check: {_shown(broken)}")
        if item.vulnerabilities != "off":
            status, findings, note = _audit(python, ctx, deadline)
            values["audit"] = status
            values["vulnerabilities"] = findings
            if note:
                details["note"] = note
            if findings:
                explain.append(f"pip-audit: {_shown(findings)}")
    except _Failed as exc:
        return Observation(values, error=f"packages {python}: {exc}", details=details)
    return Observation(values, details=details, explain="; ".join(explain) or None)


def limits(item: PackagesCheck) -> list[Condition]:
    out = [Condition.compare(("requirements", line), "==", True, label=f"{line} is installed at a matching version")
           for line in item.requirements]
    if item.pip_check:
        out.append(Condition.compare("pip_check_problems", "==", 0, length=True, label="pip check is clean"))
    if item.vulnerabilities == "required":
        out.append(Condition.compare("audit", "==", "clean", label="pip-audit finds no known vulnerability"))
    elif item.vulnerabilities == "if_installed":
        out.append(Condition.compare("audit", "in", ["clean", "not installed"],
                                     label="pip-audit, where installed, finds no known vulnerability"))
    return out


KIND = Kind(name="packages", schema=PackagesCheck, observe=observe, limits=limits,
            summary="a Python environment: required package versions installed, pip check clean, no known "
                    "vulnerabilities (pip-audit)",
            host_level=True)
