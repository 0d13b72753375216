"""``file``: a file exists (or must not), is fresh enough, within size bounds, not world-writable.

>>> from opsgate.probes import ProbeContext
>>> obs = observe(FileCheck(name="h", path="/etc/hostname", max_age="100000d"), ProbeContext())
>>> obs.values["exists"], obs.error
(True, None)
"""

from __future__ import annotations

import errno
import stat
from dataclasses import replace
import time
from typing import ClassVar

from ..conditions import Condition
from ..kinds import Kind
from ..results import Observation
from ..schema import CheckItem, Duration, Size


class FileCheck(CheckItem):
    """A file: exists (or not), maximum age, size bounds, not world-writable."""

    kind: ClassVar[str] = "file"
    path: str
    exists: bool = True
    max_age: Duration | None = None
    warn_age: Duration | None = None
    min_size: Size | None = None
    max_size: Size | None = None
    allow_world_writable: bool = False


#: what Path.exists() takes for "no such file" (a dangling link, a file where a directory should be, a loop)
_ABSENT = {errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP}


def observe(item: FileCheck, ctx) -> Observation:
    path = ctx.path(item.path)
    values = {"path": str(path), "exists": True}
    try:
        st = ctx.target.stat(str(path), item.timeout)
    except TimeoutError as exc:
        return Observation(values, error=f"{path}: cannot stat: {exc}")
    except OSError as exc:
        if exc.errno in _ABSENT:
            values["exists"] = False
            if item.exists:
                return Observation(values, error=f"{path}: file does not exist")
            return Observation(values)
        return Observation(values, error=f"{path}: cannot stat: {exc.strerror or exc}")
    values.update(
        size_bytes=st.size,
        age_s=round(time.time() - st.mtime, 3),
        mode=oct(stat.S_IMODE(st.mode)),
        world_writable=bool(st.mode & stat.S_IWOTH),
    )
    return Observation(values)


def limits(item: FileCheck) -> list[Condition]:
    """Each limit names the file, so one line says which one broke it.

    >>> [c.label for c in limits(FileCheck(name="b", path="/var/backups/last.ok", max_age="1d"))]
    ['/var/backups/last.ok exists', '/var/backups/last.ok: age_s <= 86400.0', '/var/backups/last.ok is not world-writable']
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
    return out


KIND = Kind(name="file", schema=FileCheck, observe=observe, limits=limits,
            summary="a file: exists (or not), maximum age, size bounds, not world-writable",
            host_level=True)
