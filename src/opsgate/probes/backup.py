"""``backup``: a backup set verified up to the level its environment asks for, with the
recovery point's age (RPO) and the restore's duration (RTO) as evidence.

Levels: L0 a backup exists; L1 the newest is fresh (within ``rpo``) and of plausible size
(``min_size``, at most ``max_drop_percent`` smaller than the previous one) and retention
holds; L2 integrity (``manifest`` hashes, every byte read, the source's own check); L3
restored into a scratch place and accepted by the engine; L4 the restored data compared with
the live source. Besides the newest, ``older_points`` older recovery points chosen at random
are verified too (up to L3: old data is not expected to equal live), so rot in old backups
is found. A failure names the level and the cause::

    L2 integrity: app-2026-11-29.tar.gz: gzip stream corrupt at byte 5,242,880 of 10,485,760: ...

Sources (``source:``) and their options (``files:``, ``sqlite:``, ``restic:``, ``postgres:``,
``redis:``) live in :mod:`opsgate.backups`. Everything a verification creates (extracted
trees, copies, scratch databases, processes) is removed when it ends, however it ends.

>>> import tempfile, tarfile
>>> from opsgate.probes import ProbeContext
>>> d = Path(tempfile.mkdtemp(prefix="opsgate-scratch-doc-"))
>>> (d / "live").mkdir(); _ = (d / "live" / "a.txt").write_text("hi")
>>> item = BackupCheck(name="app", source="files", path="backups/*.tar.gz", level=4, take_first=True,
...                    rpo="1d", files={"live": "live"})
>>> obs = observe(item, ProbeContext(base_dir=d))
>>> obs.error, obs.values["level_reached"], obs.values["checked"]
(None, 4, 'L4 reached (asked L4): checked 1 of 1 files (2 B) against the live tree: counts, sizes and sha256 equal')
>>> import shutil; shutil.rmtree(d)
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from .. import backups
from ..backups import points as pointsmod
from ..backups.base import Outcome, RecoveryPoint, Scratch, install_signal_handlers
from ..conditions import Condition
from ..kinds import Kind
from ..schema import Cadences, CheckItem, Duration, Size, Strict
from ..redact import REDACTOR
from ..results import Observation

SOURCES = ("files", "postgres", "redis", "sqlite", "restic")
LEVEL_NAMES = {0: "exists", 1: "fresh", 2: "integrity", 3: "restore", 4: "compare"}
CLEANUP_S = 30.0  # of the item's timeout, kept for removing what the verification created
_SCHEME = re.compile(r"^[a-z][a-z0-9+]*:(?!\\)")  # sftp:..., s3:..., rest:http://...: not a local path

install_signal_handlers()  # imported on the main thread at collection: SIGTERM cleans up scratch places


def _options_type(source: str) -> Any:
    """The source module's Options, or a plain mapping when the module cannot be imported
    (its tools missing); the mapping is validated against Options when the item is loaded."""
    try:
        return backups.source(source).Options
    except Exception:  # a missing source must not stop the other sources' schemas
        return dict[str, Any]


class Retention(Strict):
    """How many backups are kept and for how long: at least ``keep_at_least``, none older
    than ``max_age`` (old ones must be pruned)."""

    keep_at_least: int | None = Field(None, ge=1)
    max_age: Duration | None = None


class BackupCheck(CheckItem):
    """A backup set: where it is, how fresh and large it must be, and the level it is
    verified to (0-4)."""

    kind: ClassVar[str] = "backup"
    cadence: Cadences = Field(["weekly"], description="checks/<cadence> runs it (default weekly)")
    timeout: Duration = Field(1800.0, description="limit for the whole verification (restores take time)")
    source: Literal["files", "postgres", "redis", "sqlite", "restic"]
    path: str | None = Field(None, description="glob of the backups (relative to base_dir); the newest is the "
                                               "latest (not used by restic: its snapshots are listed)")
    name_time: str | None = Field(None, description="strptime format of the time in a backup's name, e.g. "
                                                    "%Y-%m-%d (default: the file's mtime)")
    name_time_utc: bool = Field(False, description="the time in the name is UTC (default: local time)")
    rpo: Duration | None = Field(None, description="maximum age of the newest backup")
    min_size: Size = Field(1, description="smallest plausible backup (a zero-byte dump fails by default)")
    max_drop_percent: float | None = Field(None, ge=0, le=100, description="largest shrink from the previous "
                                                                           "backup, percent")
    manifest: str | None = Field(None, description="sha256sum file (relative to base_dir); {backup} stands for "
                                                   "the backup's path, e.g. {backup}.sha256")
    retention: Retention | None = None
    level: int = Field(3, ge=0, le=4, description="highest level verified: 0 exists, 1 fresh, 2 integrity, "
                                                  "3 restored into scratch, 4 compared with live")
    older_points: int = Field(1, ge=0, description="older recovery points, chosen at random, verified too "
                                                   "(up to level 3)")
    take_first: bool = Field(False, description="take a fresh backup (as `opsgate backup`) before verifying")
    files: _options_type("files") | None = None  # type: ignore[valid-type]
    sqlite: _options_type("sqlite") | None = None  # type: ignore[valid-type]
    restic: _options_type("restic") | None = None  # type: ignore[valid-type]
    postgres: _options_type("postgres") | None = None  # type: ignore[valid-type]
    redis: _options_type("redis") | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _one_source(self) -> "BackupCheck":
        others = [s for s in SOURCES if s != self.source and getattr(self, s) is not None]
        if others:
            raise ValueError(f"{others[0]}: settings given, but this item's source is {self.source}")
        try:
            module = backups.source(self.source)
        except ImportError as exc:
            raise ValueError(f"the {self.source} backup source is not available here: {exc}") from None
        given = getattr(self, self.source)
        if given is None or isinstance(given, dict):
            setattr(self, self.source, module.Options.model_validate(given or {}))
        if self.path is None and not hasattr(module, "points"):
            raise ValueError(f"path (a glob of the {self.source} backups) is required")
        options = getattr(self, self.source)
        if (self.level >= 4 or self.take_first) and "live" in type(options).model_fields and not options.live:
            need = "level 4 compares with the live data" if self.level >= 4 else "take_first backs up the live data"
            raise ValueError(f"{need}: set {self.source}.live")
        return self

    def options(self) -> Any:
        """This item's source settings."""
        return getattr(self, self.source)


def _resolved(item: BackupCheck, ctx) -> Any:
    """The source options with their path fields made absolute against base_dir."""
    options = item.options()
    fields = getattr(type(options), "path_fields", ())
    update = {f: str(ctx.path(getattr(options, f))) for f in fields
              if getattr(options, f, None) and not _SCHEME.match(getattr(options, f))}
    return options.model_copy(update=update) if update else options


def _label(outcome: Outcome) -> str:
    """The outcome's message, starting with its level ("L2 integrity: ...")."""
    text = outcome.message
    if text.startswith(f"L{outcome.level}"):
        return text
    return f"L{outcome.level} {LEVEL_NAMES.get(outcome.level, '')}: {text}"


def _outcome_json(outcome: Outcome) -> dict[str, Any]:
    out = asdict(outcome)
    out["duration_s"] = round(out["duration_s"], 3)
    if not out["details"]:
        del out["details"]
    return out


def verify_point(module, point: RecoveryPoint, options: Any, up_to: int, item: BackupCheck, ctx,
                 parent: Scratch) -> list[Outcome]:
    """L2..``up_to`` of one recovery point, in its own scratch place (removed before the next
    point's restore, so two restores never need the disk at once). Stops at the first failure;
    what its cleanup could not remove is a failure too."""
    with Scratch(timeout=parent.remaining(), label=f"{item.name}-point", parent=parent.dir) as scratch:
        outcomes = _levels(module, point, options, up_to, item, ctx, scratch)
        problems = scratch.close()
    if problems:
        outcomes.append(Outcome(outcomes[-1].level if outcomes else 2, False, "cleanup: " + "; ".join(problems)))
    return outcomes


def _levels(module, point: RecoveryPoint, options: Any, up_to: int, item: BackupCheck, ctx,
            scratch: Scratch) -> list[Outcome]:
    outcomes: list[Outcome] = []
    if up_to >= 2:
        if item.manifest and point.path is not None:
            manifest = pointsmod.manifest_path(item.manifest, point, ctx.base_dir)
            outcomes.append(pointsmod.check_manifest(point, manifest, scratch))
            if not outcomes[-1].ok:
                return outcomes
        outcomes.append(module.integrity(point, options, scratch))
        if not outcomes[-1].ok:
            return outcomes
    if up_to >= 3:
        outcome, restored = module.restore(point, options, scratch)
        outcomes.append(outcome)
        if outcome.ok and up_to >= 4:
            outcomes.append(module.compare(restored, options, scratch))
    return outcomes


def _merge(outcomes: list[Outcome]) -> dict[int, Outcome]:
    """One outcome per level: the manifest and the source's own check are both L2 (they read
    the same bytes: the larger count is kept, not the sum)."""
    merged: dict[int, Outcome] = {}
    for o in outcomes:
        if o.level in merged:
            first = merged[o.level]
            merged[o.level] = Outcome(o.level, first.ok and o.ok, o.message if not o.ok else
                                      f"{first.message}; {o.message}", o.items, o.items_total, o.unit,
                                      max(first.bytes, o.bytes), first.duration_s + o.duration_s,
                                      {**first.details, **o.details})
        else:
            merged[o.level] = o
    return merged


def observe(item: BackupCheck, ctx) -> Observation:
    module = backups.source(item.source)
    options = _resolved(item, ctx)
    values: dict[str, Any] = {"source": item.source, "level_asked": item.level, "level_reached": -1}
    with Scratch(timeout=max(1.0, item.timeout - min(CLEANUP_S, item.timeout / 10)), label=item.name) as scratch:
        try:
            error = _verify(item, ctx, module, options, scratch, values)
        except TimeoutError as exc:
            error = f"{_next_level(values)}: {exc}"
        except Exception as exc:  # a source that cannot go on (a tool missing, a folder unreadable): its cause
            error = f"{_next_level(values)}: {type(exc).__name__}: {exc}"
        problems = scratch.close()
    if problems:
        values["cleanup_problems"] = problems
        error = (error + "; " if error else "") + "cleanup: " + "; ".join(problems)
    values = REDACTOR.data(values)
    return Observation(values, error=REDACTOR.text(error) if error else None)


def _next_level(values: dict[str, Any]) -> str:
    """The level being verified when something stopped it: "L3 restore"."""
    level = min(values["level_reached"] + 1, 4)
    return f"L{level} {LEVEL_NAMES[level]}"


def _verify(item: BackupCheck, ctx, module, options, scratch: Scratch, values: dict[str, Any]) -> str | None:
    """Fill ``values`` with the evidence; return the failure's message (None when it passed)."""
    if item.take_first:
        try:
            values["taken"] = str(take_backup(item, ctx, scratch, options))
        except TimeoutError:
            raise
        except Exception as exc:
            return f"take_first: no backup could be taken: {type(exc).__name__}: {exc}"
    try:
        found = find_points(item, ctx, module, options, scratch)
    except (OSError, ValueError) as exc:
        return f"L0 exists: cannot list the backups: {exc}"
    values["points"] = len(found)
    rules = pointsmod.Plausibility(
        rpo_s=item.rpo, min_size=item.min_size, max_drop_percent=item.max_drop_percent,
        keep_at_least=item.retention.keep_at_least if item.retention else None,
        keep_max_age_s=item.retention.max_age if item.retention else None)
    plausible = pointsmod.plausible(found, rules if item.level >= 1 else pointsmod.Plausibility(min_size=0))
    if not found:
        where = item.path or getattr(options, "repository", "")
        unnamed = ""
        if item.path and item.name_time:
            matched = len(pointsmod.find(item.path, ctx.base_dir))
            if matched:  # files are there, but none is named with a time: say so, it is the fix
                unnamed = f"; {matched} file(s) match the glob but none has a {item.name_time} time in its name"
        return f"L0 exists: no backup found ({where}){unnamed}"
    newest = found[-1]
    values.update(level_reached=0, recovery_point=newest.id, recovery_point_age_s=round(time.time() - newest.taken_at, 3),
                  recovery_point_size=newest.size, rpo_s=item.rpo)
    levels: dict[str, Any] = {"L0": {"ok": True, "message": f"{len(found)} backup(s) found"}}
    values["levels"] = levels
    if item.level >= 1:
        levels["L1"] = _outcome_json(plausible)
        if not plausible.ok:
            return plausible.message
        values["level_reached"] = 1
    outcomes = _merge(verify_point(module, newest, options, item.level, item, ctx, scratch))
    for level in sorted(outcomes):
        outcome = outcomes[level]
        levels[f"L{level}"] = _outcome_json(outcome)
        if not outcome.ok:
            _evidence(values, outcomes)
            return _label(outcome)
        values["level_reached"] = level
    _evidence(values, outcomes)
    error = _older(item, ctx, module, options, scratch, found, values)
    top = outcomes[max(outcomes)] if outcomes else plausible
    values["checked"] = f"L{values['level_reached']} reached (asked L{item.level}): {top.message}"
    return error


def _evidence(values: dict[str, Any], outcomes: dict[int, Outcome]) -> None:
    if 3 in outcomes:
        values["rto_s"] = round(outcomes[3].duration_s, 3)
    # the most any level verified (the backup read end to end, the data restored, the data
    # compared): levels read the same data again, so a sum would count it twice
    values["bytes_verified"] = max((o.bytes for o in outcomes.values()), default=0)
    top = outcomes[max(outcomes)] if outcomes else None
    if top is not None:
        values.update(items_verified=top.items, items_total=top.items_total, items_unit=top.unit)


def _older(item: BackupCheck, ctx, module, options, scratch: Scratch, found: list[RecoveryPoint],
           values: dict[str, Any]) -> str | None:
    """Verify ``older_points`` random older points up to L3; the first failure's message."""
    candidates = found[:-1]
    if not candidates or item.older_points == 0 or item.level < 2:
        return None
    chosen = sorted(random.SystemRandom().sample(candidates, min(item.older_points, len(candidates))),
                    key=lambda p: p.taken_at)
    records, error = [], None
    for point in chosen:
        outcomes = _merge(verify_point(module, point, options, min(item.level, 3), item, ctx, scratch))
        failed = next((o for o in outcomes.values() if not o.ok), None)
        reached = max((lvl for lvl, o in outcomes.items() if o.ok and (failed is None or lvl < failed.level)),
                      default=1)
        record = {"recovery_point": point.id, "age_s": round(time.time() - point.taken_at, 3),
                  "level_reached": reached, "ok": failed is None,
                  "message": _label(failed) if failed else "; ".join(o.message for o in outcomes.values())}
        if 3 in outcomes:
            record["rto_s"] = round(outcomes[3].duration_s, 3)
        records.append(record)
        if failed and error is None:
            error = f"older recovery point {point.id}: {_label(failed)}"
    values["older"] = records
    return error


def take_backup(item: BackupCheck, ctx, scratch: Scratch, options: Any = None) -> Path:
    """Take a fresh backup into the item's folder (the glob's first fixed part) and add its
    manifest line; returns the new backup's path (what ``opsgate backup`` runs)."""
    module = backups.source(item.source)
    options = options if options is not None else _resolved(item, ctx)
    if item.path:
        destination = pointsmod.fixed_folder(item.path, ctx.base_dir)
        destination.mkdir(parents=True, exist_ok=True)
    else:  # a repository-based source writes into its repository (maybe remote: nothing made here)
        destination = Path(getattr(options, "repository", "") or ".")
    new = Path(module.take(options, destination, scratch))
    if item.manifest and new.is_file():
        point = RecoveryPoint(str(new), time.time(), new.stat().st_size, new)
        manifest = pointsmod.manifest_path(item.manifest, point, ctx.base_dir)
        line = pointsmod.manifest_line(new, manifest.parent, scratch)
        with open(manifest, "a", encoding="utf-8") as handle:
            handle.write(line)
    return new


def limits(item: BackupCheck) -> list[Condition]:
    """The level asked must be reached.

    >>> [c.label for c in limits(BackupCheck(name="db", source="files", path="b/*.tar", level=2))]
    ['db: level 2 (integrity) reached']
    """
    return [Condition.compare("level_reached", ">=", item.level,
                              label=f"{item.name}: level {item.level} ({LEVEL_NAMES[item.level]}) reached")]


def resolved_options(item: BackupCheck, ctx) -> Any:
    """The item's source options, path fields made absolute against base_dir (for a drill's restore)."""
    return _resolved(item, ctx)


def find_points(item: BackupCheck, ctx, module, options: Any, scratch: Scratch) -> list[RecoveryPoint]:
    """The item's recovery points, oldest first: the source's own listing (restic snapshots)
    or the item's glob (its manifest file left out)."""
    if hasattr(module, "points"):
        return module.points(options, scratch)
    exclude = ()
    if item.manifest and "{backup}" not in item.manifest:
        exclude = (ctx.path(item.manifest),)
    return pointsmod.find(item.path, ctx.base_dir, item.name_time, item.name_time_utc, exclude)


KIND = Kind(name="backup", schema=BackupCheck, observe=observe, limits=limits,
            summary="a backup set verified up to a level: exists, fresh within the RPO, read end to end, restored "
                    "into scratch, compared with live (files, postgres, redis, sqlite, restic)",
            host_level=False)
