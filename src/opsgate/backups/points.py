"""Finding file-based recovery points and judging them before anything is opened (L0, L1),
and ``sha256sum``-format manifests (part of L2).

- a glob (relative to base_dir) lists the backups; the newest is the latest;
- a backup's time comes from its name (a strptime format such as ``app-%Y-%m-%d.tar.gz``'s
  ``%Y-%m-%d``) or from its mtime;
- L1: the newest is within the RPO, at least ``min_size`` bytes, and has not dropped more
  than ``max_drop_percent`` from the previous one (an empty dump that "succeeded" fails);
- retention: at least N kept, none older than a period;
- a manifest is ``sha256sum`` output (``HASH  NAME`` or ``HASH *NAME``), names relative to
  the manifest's folder; ``{backup}`` in the manifest's path stands for the backup's path
  (a sidecar ``app.tar.gz.sha256``).

>>> import tempfile, os
>>> d = Path(tempfile.mkdtemp(prefix="opsgate-scratch-doc-"))
>>> for day in ("2026-11-28", "2026-11-29"):
...     _ = (d / f"app-{day}.tar.gz").write_bytes(b"x" * 100)
>>> [Path(p.id).name for p in find("app-*.tar.gz", d, "%Y-%m-%d")]
['app-2026-11-28.tar.gz', 'app-2026-11-29.tar.gz']
>>> import shutil; shutil.rmtree(d)
"""

from __future__ import annotations

import glob as globmod
import hashlib
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .base import Outcome, RecoveryPoint, Scratch

CHUNK = 1024 * 1024  # read size for hashing: large reads keep sha256 near its native speed
MANIFEST_NAMES = ("SHA256SUMS", "SHA256SUMS.txt", "sha256sums.txt")

# strptime directive -> regex for the text it reads (for times in file names)
_DIRECTIVES = {
    "Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{1,2}", "d": r"\d{1,2}", "H": r"\d{1,2}", "M": r"\d{1,2}",
    "S": r"\d{1,2}", "j": r"\d{1,3}", "b": r"[A-Za-z]{3}", "B": r"[A-Za-z]+", "z": r"[+-]\d{2}:?\d{2}|Z",
    "s": r"\d{9,11}", "%": "%",
}


def name_regex(fmt: str) -> re.Pattern:
    """The regex that finds a time written in strptime format ``fmt`` inside a file name.

    >>> name_regex("%Y-%m-%dT%H%M").search("db-2026-11-29T0300.dump").group(0)
    '2026-11-29T0300'
    >>> name_regex("%Q")
    Traceback (most recent call last):
    ValueError: %Q is not a directive opsgate reads in a backup's name; known: %Y %y %m %d %H %M %S %j %b %B %z %s %%
    """
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%":
            directive = fmt[i + 1:i + 2]
            if directive not in _DIRECTIVES:
                raise ValueError(f"%{directive} is not a directive opsgate reads in a backup's name; known: "
                                 + " ".join("%" + d for d in _DIRECTIVES))
            # fixed widths where strftime writes them, so "20261129" splits into its fields
            width = {"Y": r"\d{4}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}", "M": r"\d{2}", "S": r"\d{2}"}
            out.append(width.get(directive, _DIRECTIVES[directive]))
            i += 2
            continue
        out.append(re.escape(fmt[i]))
        i += 1
    return re.compile("".join(out))


def time_from_name(name: str, fmt: str, utc: bool = False) -> float | None:
    """Epoch seconds of the time written in ``name`` (None when the name has none).
    Naive times are local unless ``utc``.

    >>> time_from_name("app-2026-11-29.tar.gz", "%Y-%m-%d", utc=True)
    1795910400.0
    >>> time_from_name("app-latest.tar.gz", "%Y-%m-%d") is None
    True
    """
    if fmt == "%s":
        match = re.search(r"\d{9,11}", name)
        return float(match.group(0)) if match else None
    for match in name_regex(fmt).finditer(name):
        try:
            stamp = datetime.strptime(match.group(0), fmt)
        except ValueError:
            continue
        if stamp.tzinfo is None and utc:
            stamp = stamp.replace(tzinfo=timezone.utc)
        return stamp.timestamp()
    return None


def find(pattern: str, base_dir: Path, name_time: str | None = None, utc: bool = False,
         exclude: tuple[Path, ...] = ()) -> list[RecoveryPoint]:
    """The backups ``pattern`` matches (files or folders), oldest first. A manifest in the
    same folder is not a backup. With ``name_time`` a backup's time is read from its name;
    a name without it is not a backup of this set (a stray file must not become "the newest").
    """
    full = str(Path(pattern).expanduser() if Path(pattern).expanduser().is_absolute() else base_dir / pattern)
    skip = {p.resolve() for p in exclude}
    found = []
    for name in globmod.glob(full):
        path = Path(name)
        if path.name in MANIFEST_NAMES or path.name.endswith((".sha256", ".partial", ".tmp")) \
                or path.resolve() in skip:
            continue
        try:
            st = path.stat()
        except OSError:
            continue  # removed while listing (a rotation): not a backup any more
        taken = st.st_mtime
        if name_time:
            named = time_from_name(path.name, name_time, utc)
            if named is None:
                continue
            taken = named
        size = tree_size(path) if path.is_dir() else st.st_size
        found.append(RecoveryPoint(str(path), taken, size, path))
    return sorted(found, key=lambda p: (p.taken_at, p.id))


def tree_size(path: Path) -> int:
    """Bytes in the regular files under ``path`` (links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(root, name)):
                total += st.st_size
    return total


def fixed_folder(pattern: str, base_dir: Path) -> Path:
    """The first fixed part of a glob: where ``opsgate backup`` writes a new one.

    >>> fixed_folder("backups/app-*.tar.gz", Path("/srv"))
    PosixPath('/srv/backups')
    >>> fixed_folder("/var/backups/*/db.sqlite", Path("/srv"))
    PosixPath('/var/backups')
    """
    parts = []
    for part in Path(pattern).expanduser().parts[:-1]:
        if globmod.has_magic(part):
            break
        parts.append(part)
    folder = Path(*parts) if parts else Path(".")
    return folder if folder.is_absolute() else base_dir / folder


def new_backup(destination: Path, pattern: str, live_name: str, scratch: Scratch) -> tuple[Path, Path]:
    """(final, partial) paths of a backup ``take`` is about to write: ``pattern`` is strftime
    in UTC with ``{live}`` for the live data's name; the partial file (not a backup: the glob
    skips ``.partial``) is removed with the scratch unless renamed to final. An existing
    backup is never overwritten.

    >>> with Scratch(timeout=5) as s:
    ...     final, partial = new_backup(s.dir, "{live}-2026.tar", "app", s)
    ...     final.name, partial.name
    ('app-2026.tar', 'app-2026.tar.partial')
    """
    name = time.strftime(pattern.replace("{live}", live_name), time.gmtime())
    final = destination / name
    if final.exists():
        raise FileExistsError(f"{final} exists already; a backup is never overwritten")
    partial = destination / (name + ".partial")
    destination.mkdir(parents=True, exist_ok=True)
    scratch.on_cleanup(lambda: partial.unlink(missing_ok=True), f"remove {partial}")
    return final, partial


@dataclass
class Plausibility:
    """L1 settings: RPO, sizes, drop, retention (None: not checked)."""

    rpo_s: float | None = None
    min_size: int = 1
    max_drop_percent: float | None = None
    keep_at_least: int | None = None
    keep_max_age_s: float | None = None


def short(point: RecoveryPoint) -> str:
    """How messages name a point: a file's name, a snapshot's id.

    >>> short(RecoveryPoint("/srv/backups/app-2026-11-29.tar.gz", 0, 1, Path("/srv/backups/app-2026-11-29.tar.gz")))
    'app-2026-11-29.tar.gz'
    """
    return point.path.name if point.path is not None else point.id


def plausible(points: list[RecoveryPoint], rules: Plausibility, now: float | None = None) -> Outcome:
    """L0 and L1 over the points (oldest first): the newest exists, is fresh and large enough,
    did not shrink too much, and retention holds. The outcome's level is 0 when nothing
    exists, else 1; its message names the first broken rule.

    >>> day = 86400.0
    >>> pts = [RecoveryPoint("a-1", 0.0, 1000), RecoveryPoint("a-2", day, 10)]
    >>> plausible(pts, Plausibility(rpo_s=2 * day, max_drop_percent=50), now=1.5 * day).message
    'L1 size: a-2 is 10 B, 99% less than the previous backup a-1 (1,000 B); at most 50% drop allowed'
    >>> plausible(pts, Plausibility(rpo_s=0.25 * day), now=1.5 * day).message
    'L1 fresh: the newest backup a-2 is 12h old, above the RPO of 6h'
    >>> plausible([], Plausibility()).level
    0
    """
    now = time.time() if now is None else now
    if not points:
        return Outcome(0, False, "L0 exists: no backup found")
    newest = points[-1]
    name = short(newest)
    age = now - newest.taken_at
    details = {"points": len(points), "newest": newest.id, "newest_age_s": round(age, 3),
               "newest_size": newest.size}
    problems = []
    if rules.rpo_s is not None and age > rules.rpo_s:
        problems.append(f"L1 fresh: the newest backup {name} is {human_age(age)} old, "
                        f"above the RPO of {human_age(rules.rpo_s)}")
    if newest.size >= 0 and newest.size < rules.min_size:
        problems.append(f"L1 size: {name} is {human_size(newest.size)}, below the minimum of "
                        f"{human_size(rules.min_size)}")
    if rules.max_drop_percent is not None and len(points) > 1 and newest.size >= 0:
        previous = points[-2]
        if previous.size > 0:
            drop = 100.0 * (previous.size - newest.size) / previous.size
            details["drop_percent"] = round(drop, 2)
            if drop > rules.max_drop_percent:
                problems.append(f"L1 size: {name} is {human_size(newest.size)}, {drop:.0f}% less than the "
                                f"previous backup {short(previous)} ({human_size(previous.size)}); at most "
                                f"{rules.max_drop_percent:g}% drop allowed")
    if rules.keep_at_least is not None and len(points) < rules.keep_at_least:
        problems.append(f"L1 retention: {len(points)} backup(s) kept, at least {rules.keep_at_least} expected")
    if rules.keep_max_age_s is not None:
        oldest = points[0]
        if now - oldest.taken_at > rules.keep_max_age_s:
            problems.append(f"L1 retention: {short(oldest)} is {human_age(now - oldest.taken_at)} old, older than "
                            f"the retention period of {human_age(rules.keep_max_age_s)}")
    if problems:
        return Outcome(1, False, "; ".join(problems), details=details)
    return Outcome(1, True, f"{len(points)} backup(s); newest {name}, {human_age(age)} old, "
                            f"{human_size(newest.size)}", items=len(points), unit="backups", details=details)


# ---- manifests --------------------------------------------------------------------------------

_LINE = re.compile(r"^(?:SHA256 \((?P<bsd_name>.+)\) = (?P<bsd_hash>[0-9a-fA-F]{64})"
                   r"|\\?(?P<hash>[0-9a-fA-F]{64}) [ *](?P<name>.+))$")


def read_manifest(path: Path) -> dict[Path, str]:
    """``sha256sum`` output -> {absolute path: hex digest}; names are relative to the
    manifest's folder (as ``sha256sum -c`` reads them there). Unreadable lines are errors.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp(prefix="opsgate-scratch-doc-"))
    >>> _ = (d / "SHA256SUMS").write_text("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  empty\\n")
    >>> [(p.name, h[:8]) for p, h in read_manifest(d / "SHA256SUMS").items()]
    [('empty', 'e3b0c442')]
    >>> import shutil; shutil.rmtree(d)
    """
    entries: dict[Path, str] = {}
    folder = path.parent
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line.startswith("#"):
                continue
            match = _LINE.match(line)
            if not match:
                raise ValueError(f"{path}:{number}: not a sha256sum line (expected 64 hex digits, two spaces, "
                                 f"a name)")
            name = match.group("name") or match.group("bsd_name")
            digest = (match.group("hash") or match.group("bsd_hash")).lower()
            target = Path(name)
            entries[Path(os.path.normpath(target if target.is_absolute() else folder / target))] = digest
    return entries


def manifest_path(setting: str, point: RecoveryPoint, base_dir: Path) -> Path:
    """Where a point's manifest is: ``{backup}`` stands for the backup's path.

    >>> manifest_path("{backup}.sha256", RecoveryPoint("/b/a.tar", 0, 1, Path("/b/a.tar")), Path("/"))
    PosixPath('/b/a.tar.sha256')
    """
    text = setting.replace("{backup}", str(point.path or point.id))
    path = Path(text).expanduser()
    return path if path.is_absolute() else base_dir / path


def sha256_file(path: Path, scratch: Scratch | None = None, chunk: int = CHUNK) -> tuple[str, int]:
    """(hex digest, bytes read) of a file, read end to end; checks the deadline per MiB.

    >>> import tempfile; f = tempfile.NamedTemporaryFile(prefix="opsgate-scratch-doc-")
    >>> sha256_file(Path(f.name))[0][:12]
    'e3b0c44298fc'
    """
    digest = hashlib.sha256()
    total = 0
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            if scratch is not None:
                scratch.remaining()
            n = handle.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
            total += n
    return digest.hexdigest(), total


def check_manifest(point: RecoveryPoint, manifest: Path, scratch: Scratch, workers: int = 4) -> Outcome:
    """L2's manifest part: every file of the point that the manifest lists is hashed end to
    end and compared; a point the manifest does not list fails (a manifest that says nothing
    about the newest backup verifies nothing).
    """
    started = time.monotonic()
    try:
        entries = read_manifest(manifest)
    except FileNotFoundError:
        return Outcome(2, False, f"L2 manifest: {manifest} does not exist")
    except (OSError, ValueError) as exc:
        return Outcome(2, False, f"L2 manifest: {exc}")
    root = Path(os.path.normpath(point.path or point.id))
    if root.is_dir():
        listed = sorted(p for p in entries if root in p.parents)
    else:
        listed = [root] if root in entries else []
    if not listed:
        return Outcome(2, False, f"L2 manifest: {manifest} has no line for {short(point)}")

    def one(path: Path) -> tuple[Path, str | None, int, str]:
        try:
            digest, read = sha256_file(path, scratch)
        except FileNotFoundError:
            return path, None, 0, "listed in the manifest but missing"
        except OSError as exc:
            return path, None, 0, f"unreadable: {exc.strerror or exc}"
        return path, digest, read, ""

    total = 0
    bad: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(listed)))) as pool:
        for path, digest, read, problem in pool.map(one, listed):
            total += read
            if problem:
                bad.append(f"{path}: {problem}")
            elif digest != entries[path]:
                bad.append(f"{path}: sha256 {digest[:16]}... but the manifest says {entries[path][:16]}...")
    duration = time.monotonic() - started
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return Outcome(2, False, f"L2 manifest: {bad[0]}{more}", items=len(listed) - len(bad),
                       items_total=len(listed), unit="files", bytes=total, duration_s=duration,
                       details={"manifest": str(manifest), "mismatches": bad[:20]})
    return Outcome(2, True, f"{len(listed)} of {len(listed)} manifest hashes match ({human_size(total)} read)",
                   items=len(listed), items_total=len(listed), unit="files", bytes=total, duration_s=duration,
                   details={"manifest": str(manifest)})


def manifest_line(path: Path, folder: Path, scratch: Scratch | None = None) -> str:
    """The ``sha256sum`` line for ``path`` as seen from ``folder`` (what ``take`` appends)."""
    digest, _ = sha256_file(path, scratch)
    return f"{digest}  {os.path.relpath(path, folder)}\n"


def human_size(n: int) -> str:
    """Bytes for a message: exact below 10 KiB, else in binary units.

    >>> human_size(52431872), human_size(1000), human_size(-1)
    ('50.0 MiB', '1,000 B', 'size unknown')
    """
    if n < 0:
        return "size unknown"
    if n < 10 * 1024:
        return f"{n:,} B"
    value, unit = float(n), "B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"


def human_age(seconds: float) -> str:
    """A duration for a message.

    >>> human_age(9 * 86400 + 7300), human_age(21600), human_age(42)
    ('9d 2h', '6h', '42s')
    """
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"
