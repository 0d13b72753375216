"""``restic`` backups: a restic repository's snapshots.

- recovery points are ``restic snapshots --json`` (optionally of one host, tag or path);
- L2 ``restic check --read-data`` (or ``--read-data-subset``, stated in the message): the
  repository is checked once per verification, so an older snapshot of the same verification
  reuses that result and is itself read in full by its L3 restore;
- L3 ``restic restore --verify`` of the snapshot into scratch;
- L4 the restored tree against the live one, as :mod:`opsgate.backups.files` compares;
- ``take`` is ``restic backup`` of the live tree (tagged ``opsgate``).

Every restic command runs with ``--no-lock --no-cache`` except ``backup``: verification
writes nothing into the repository nor into ~/.cache. The password comes from the
environment variable named in ``password_env`` (default RESTIC_PASSWORD) or the file named
in ``password_file``; it is passed to restic in its environment and never printed. A check
passes only when restic exits 0 *and* says "no errors were found".
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from ..schema import Strict
from .base import Outcome, RecoveryPoint, Scratch, describe_failure, run_bounded
from .files import compare_trees
from .points import tree_size

# repository checks of the verifications running: {(repository, subset, verification): (monotonic, outcome)}
_CHECKED: dict[tuple[str, str | None, str], tuple[float, Outcome]] = {}
REUSE_CHECK_S = 600.0
# lines of restic's output that say what is wrong
_TELLING = re.compile(r"error|fatal|wrong|corrupt|invalid|fail|does not match|mismatch|damaged|missing|unable|"
                      r"cannot|no such", re.IGNORECASE)


class Options(Strict):
    """``restic:`` settings of a backup item."""

    path_fields: ClassVar[tuple[str, ...]] = ("repository", "live", "password_file")

    repository: str = Field(description="the repository (a local folder, or a restic URL such as sftp:...)")
    password_env: str = Field("RESTIC_PASSWORD", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                              description="name of the environment variable holding the password")
    password_file: str | None = Field(None, description="a file holding the password (instead of password_env)")
    host: str | None = Field(None, description="only snapshots of this host")
    tag: str | None = Field(None, description="only snapshots with this tag")
    snapshot_path: str | None = Field(None, description="only snapshots of this path; also the folder in the "
                                                        "snapshot that holds the live tree (default: live)")
    live: str | None = Field(None, description="the live tree the snapshots are of (L4; `opsgate backup`)")
    read_data_subset: str | None = Field(None, pattern=r"^(\d+(\.\d+)?%|\d+/\d+|\d+[KMGT]?)$",
                                         description="L2 reads this subset of the pack files (10%, 1/5, 500M) "
                                                     "instead of all of them")
    sample: int | None = Field(None, ge=1, description="L4 hashes a random sample of this many files")
    seed: int | None = None
    exclude: list[str] = []
    max_differences_percent: float = Field(0.0, ge=0, le=100)
    program: str = Field("restic", description="the restic binary")


def _env(options: Options) -> dict[str, str]:
    if options.password_file:
        return {"RESTIC_PASSWORD_FILE": options.password_file}
    value = os.environ.get(options.password_env)
    if value is None:
        raise ValueError(f"the restic password variable {options.password_env} is not set")
    # under a name that reads as secret, so run_bounded registers the value for redaction
    return {"RESTIC_PASSWORD": value}


def _restic(options: Options, scratch: Scratch, *args: str, lock: bool = False):
    argv = [options.program, "-r", options.repository, "--no-cache", *([] if lock else ["--no-lock"]), *args]
    return run_bounded(argv, scratch, env=_env(options), max_output=1024 * 1024)


def _when(text: str) -> float:
    """restic's RFC 3339 time with nanoseconds -> epoch seconds.

    >>> _when("2026-11-30T23:59:59.123456789+00:00")
    1796083199.123456
    """
    match = re.match(r"(.+?T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text.strip())
    if not match:
        raise ValueError(f"unreadable snapshot time {text!r}")
    frac = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + frac + zone).timestamp()


def points(options: Options, scratch: Scratch) -> list[RecoveryPoint]:
    """The repository's snapshots (filtered), oldest first; ValueError when restic cannot list them."""
    args = ["snapshots", "--json"]
    if options.host:
        args += ["--host", options.host]
    if options.tag:
        args += ["--tag", options.tag]
    path = options.snapshot_path or options.live
    if path:
        args += ["--path", path]
    done = _restic(options, scratch, *args)
    if done.returncode != 0:
        raise ValueError(f"cannot list the snapshots of {options.repository}: {describe_failure(done)}")
    try:
        snapshots = json.loads(done.stdout or "[]") or []
    except ValueError:
        raise ValueError(f"restic snapshots --json printed no JSON: {done.stdout[:200]!r}") from None
    found = [RecoveryPoint(s.get("short_id") or s["id"][:8], _when(s["time"]), -1, None) for s in snapshots]
    return sorted(found, key=lambda p: (p.taken_at, p.id))


def integrity(point: RecoveryPoint, options: Options, scratch: Scratch) -> Outcome:
    """L2: ``restic check --read-data`` (or the stated subset), once per verification."""
    # one verification: the points' scratch places share their parent (the kind's own scratch);
    # a result is never reused by another verification, which must see the repository as it is now
    key = (options.repository, options.read_data_subset, str(scratch.dir.parent))
    for old in [k for k, (when, _) in _CHECKED.items() if time.monotonic() - when > REUSE_CHECK_S]:
        _CHECKED.pop(old, None)
    recent = _CHECKED.get(key)
    if recent and time.monotonic() - recent[0] < REUSE_CHECK_S and recent[1].ok:
        reused = recent[1]
        return Outcome(2, True, f"{reused.message} (the repository check made {time.monotonic() - recent[0]:.0f}s "
                                "ago)", details=reused.details)
    started = time.monotonic()
    what = f"--read-data-subset={options.read_data_subset}" if options.read_data_subset else "--read-data"
    done = _restic(options, scratch, "check", what)
    duration = time.monotonic() - started
    text = done.stdout + done.stderr
    clean = done.returncode == 0 and "no errors were found" in text
    if not clean:
        lines = [ln.strip() for ln in text.splitlines()
                 if _TELLING.search(ln) and not ln.startswith("[")]  # "[0:00] 100.00%" is progress
        lines.sort(key=lambda ln: ln.startswith("Fatal"))  # the specific cause first, restic's summary last
        cause = " | ".join(ln[:200] for ln in lines[:3]) if lines else describe_failure(done)
        if done.returncode == 0:
            cause = f"restic exited 0 without saying 'no errors were found': {cause}"
        return Outcome(2, False, f"L2 integrity: restic check {what} of {options.repository}: {cause}",
                       duration_s=duration, details={"exit_code": done.returncode})
    packs = re.search(r"read all data|read group #\d+ of \d+ data packs|read (\d+) of (\d+) data packs?", text)
    scope = "all pack files read" if not options.read_data_subset else \
        f"a subset of the pack files read ({options.read_data_subset})"
    outcome = Outcome(2, True, f"restic check {what}: no errors ({scope})", duration_s=duration,
                      details={"restic_says": packs.group(0) if packs else "no errors were found"})
    _CHECKED[key] = (time.monotonic(), outcome)
    return outcome


def restore(point: RecoveryPoint, options: Options, scratch: Scratch) -> tuple[Outcome, Any]:
    """L3: ``restic restore --verify`` into scratch; returns the restored live-tree root."""
    started = time.monotonic()
    target = scratch.dir / "restore"
    live = Path(options.live).resolve() if options.live else None
    if live is not None and (live == target.resolve() or live in scratch.dir.resolve().parents):
        return Outcome(3, False, f"L3 restore refused: the scratch directory {scratch.dir} is inside the live tree "
                                 f"{live} (set OPSGATE_SCRATCH_DIR elsewhere)"), None
    inside = options.snapshot_path or options.live
    args = ["restore", point.id, "--target", str(target), "--verify"]
    if inside:
        args += ["--include", inside]
    done = _restic(options, scratch, *args)
    duration = time.monotonic() - started
    if done.returncode != 0 or re.search(r"^(Fatal|error|ignoring error)", done.stderr, re.MULTILINE):
        return Outcome(3, False, f"L3 restore: restic restore {point.id}: {describe_failure(done)}",
                       duration_s=duration), None
    root = target / inside.lstrip("/") if inside else target
    if not root.exists():
        return Outcome(3, False, f"L3 restore: snapshot {point.id} holds nothing under {inside}",
                       duration_s=duration), None
    files = sum(len(f) for _, _, f in os.walk(root))
    size = tree_size(root)
    return Outcome(3, True, f"restored snapshot {point.id} to scratch and verified it: {files:,} files",
                   items=files, items_total=files, unit="files", bytes=size, duration_s=duration), root


def compare(restored: Any, options: Options, scratch: Scratch) -> Outcome:
    """L4: the restored tree against the live one (counts, sizes, sha256)."""
    if not options.live:
        return Outcome(4, False, "L4 compare: no live tree to compare with (set restic.live)")
    return compare_trees(Path(restored), Path(options.live), options, scratch)


def take(options: Options, destination: Path, scratch: Scratch) -> Path:
    """``restic backup`` of the live tree into the repository; returns the repository's path
    (the snapshot id is in :data:`LAST_TAKEN`)."""
    if not options.live:
        raise ValueError("restic.live is not set: nothing to back up")
    args = ["backup", options.live, "--tag", "opsgate"]
    if options.host:
        args += ["--host", options.host]
    if options.tag:
        args += ["--tag", options.tag]
    done = _restic(options, scratch, *args, lock=True)
    if done.returncode != 0:
        raise OSError(f"restic backup failed: {describe_failure(done)}")
    match = re.search(r"snapshot ([0-9a-f]+) saved", done.stdout)
    LAST_TAKEN[str(Path(options.repository))] = match.group(1) if match else ""
    return Path(options.repository)


LAST_TAKEN: dict[str, str] = {}  # repository -> the snapshot id `take` made last
