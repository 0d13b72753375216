"""``files`` backups: a directory tree, or a tar archive (gzip, zstd or plain).

- L2 reads every byte end to end: a tree's files, or the archive's whole compressed stream
  through the tar reader (gzip's CRC and length are checked at the end of each member, so a
  flipped byte anywhere fails even where deflate still decodes);
- L3 extracts into the scratch directory, refusing members with absolute paths or ``..``
  and leaving out links that would lead outside it (a tree is copied);
- L4 compares the restored tree with the live one: file counts, sizes and sha256 of all
  files or of a stated random sample (the seed is recorded), within a tolerance.

>>> import tarfile, tempfile
>>> from opsgate.backups.base import RecoveryPoint, Scratch
>>> live = Path(tempfile.mkdtemp(prefix="opsgate-scratch-doc-"))
>>> _ = (live / "a.txt").write_text("hello")
>>> with Scratch(timeout=30) as s:
...     backup = take(Options(live=str(live)), s.dir, s)
...     point = RecoveryPoint(str(backup), 0, backup.stat().st_size, backup)
...     l2 = integrity(point, Options(live=str(live)), s)
...     l3, restored = restore(point, Options(live=str(live)), s)
...     l4 = compare(restored, Options(live=str(live)), s)
>>> l2.ok, l3.ok, l4.message
(True, True, 'checked 1 of 1 files (5 B) against the live tree: counts, sizes and sha256 equal')
>>> import shutil; shutil.rmtree(live)
"""

from __future__ import annotations

import fnmatch
import io
import os
import random
import shutil
import stat
import subprocess
import tarfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ..schema import Strict
from .base import Outcome, RecoveryPoint, Scratch
from .points import CHUNK, human_size, new_backup, sha256_file


class Options(Strict):
    """``files:`` settings of a backup item."""

    path_fields: ClassVar[tuple[str, ...]] = ("live",)  # resolved against base_dir by the kind

    live: str | None = Field(None, description="the live directory the backups are of (L4 compares with it; "
                                               "`opsgate backup` archives it)")
    format: Literal["auto", "tree", "tar", "tar.gz", "tar.zst"] = Field(
        "auto", description="auto: from the name (.tar.gz/.tgz, .tar.zst, .tar; a folder is a tree)")
    archive_root: str | None = Field(None, description="the folder inside the archive that holds the live tree's "
                                                       "contents (default: the archive's top, or its one top "
                                                       "folder when named like the live one)")
    sample: int | None = Field(None, ge=1, description="L4 hashes a random sample of this many files (default: all)")
    seed: int | None = Field(None, description="the sample's random seed (default: a new one, recorded)")
    exclude: list[str] = Field([], description="globs of relative paths L4 leaves out (caches, pid files)")
    max_differences_percent: float = Field(0.0, ge=0, le=100, description="files allowed to differ from live, "
                                                                          "percent of those compared")
    name: str = Field("{live}-%Y%m%dT%H%M%SZ.tar.gz", description="name of a backup `opsgate backup` takes: "
                      "strftime in UTC; {live} is the live folder's name; .tar.gz, .tar.zst or .tar")


class ArchiveCorrupt(Exception):
    """The archive's bytes are not a valid stream (the message says where)."""


class Refused(Exception):
    """An archive member would be written outside the scratch directory."""


# ---- reading archives end to end ------------------------------------------------------------

def archive_format(path: Path, options: Options) -> str:
    """What a backup is: tree, tar, tar.gz or tar.zst.

    >>> archive_format(Path("app-2026-11-29.tgz"), Options())
    'tar.gz'
    """
    if options.format != "auto":
        return options.format
    if path.is_dir():
        return "tree"
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".gz")):
        return "tar.gz"
    if name.endswith((".tar.zst", ".tzst", ".zst")):
        return "tar.zst"
    return "tar"


class _Counted(io.RawIOBase):
    """The raw file, counting the bytes read and checking the deadline."""

    def __init__(self, path: Path, scratch: Scratch) -> None:
        self.handle = open(path, "rb", buffering=0)
        self.scratch = scratch
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.scratch.remaining()
        n = self.handle.readinto(buffer)
        self.pos += n or 0
        return n or 0

    def close(self) -> None:
        self.handle.close()
        super().close()


class _Gunzip(io.RawIOBase):
    """gzip decoding that says at which compressed byte a stream broke (multi-member aware)."""

    def __init__(self, raw: _Counted, size: int) -> None:
        self.raw = raw
        self.size = size
        self.d = zlib.decompressobj(31)
        self.pending = b""
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending and not self.done:
            self._fill()
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def _fill(self) -> None:
        data = self.d.unconsumed_tail or self.raw.read(CHUNK)
        if not data:
            if not self.d.eof:
                raise ArchiveCorrupt(f"gzip stream ends early at byte {self.raw.pos:,} of {self.size:,} "
                                     "(truncated: no end-of-stream marker and checksum)")
            self.done = True
            return
        try:
            self.pending = self.d.decompress(data, CHUNK)
        except zlib.error as exc:
            where = self.raw.pos - len(self.d.unconsumed_tail)
            if "check" in str(exc) or "length" in str(exc):  # decoded, but not what was written
                raise ArchiveCorrupt(f"gzip stream corrupt: its CRC-32/length does not match the data (bytes "
                                     f"changed before byte {where:,} of {self.size:,}, found at the stream's "
                                     "end)") from None
            raise ArchiveCorrupt(f"gzip stream corrupt at byte {where:,} of {self.size:,}: {exc}") from None
        if self.d.eof:
            rest = self.d.unused_data
            if rest.strip(b"\0"):  # another gzip member follows (concatenated gzip)
                self.d = zlib.decompressobj(31)
                self.pending += self._more(rest)
            elif not self.pending:
                tail = self.raw.read(CHUNK)
                if tail.strip(b"\0"):
                    self.d = zlib.decompressobj(31)
                    self.pending = self._more(tail)
                elif not tail:
                    self.done = True

    def _more(self, data: bytes) -> bytes:
        try:
            return self.d.decompress(data, CHUNK)
        except zlib.error as exc:
            raise ArchiveCorrupt(f"gzip stream corrupt at byte {self.raw.pos:,} of {self.size:,}: {exc}") from None


class _Unzstd(io.RawIOBase):
    """zstd decoding through the ``zstd`` binary, its process group ended by the scratch."""

    def __init__(self, path: Path, scratch: Scratch) -> None:
        if not shutil.which("zstd"):
            raise ArchiveCorrupt("cannot read a .zst archive: the zstd program is not installed")
        self.scratch = scratch
        self.err = open(scratch.dir / f"zstd-{time.monotonic_ns()}.err", "w+b")
        self.proc = subprocess.Popen(["zstd", "-dc", "--no-progress", str(path)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.err, start_new_session=True)
        scratch.track(self.proc)
        # a read from a zstd that hangs (a stalled mount) would block past the deadline: end it there
        self.watchdog = threading.Timer(max(0.0, scratch.deadline - time.monotonic()), self.proc.kill)
        self.watchdog.daemon = True
        self.watchdog.start()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.scratch.remaining()
        n = self.proc.stdout.readinto(buffer)
        if not n:
            self.scratch.remaining()  # ended by the watchdog or an interrupt: a timeout, not corruption
            try:
                code = self.proc.wait(timeout=max(0.1, self.scratch.remaining()))
            finally:
                self.scratch.untrack(self.proc)
            if code != 0:
                self.err.seek(0)
                text = self.err.read()[-300:].decode("utf-8", "replace").strip().replace("\n", " | ")
                raise ArchiveCorrupt(f"zstd stream corrupt: zstd exited {code}: {text}")
        return n or 0

    def close(self) -> None:
        self.watchdog.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.scratch.untrack(self.proc)
        self.proc.stdout.close()
        self.err.close()
        super().close()


def _open_stream(path: Path, fmt: str, scratch: Scratch) -> tuple[io.BufferedReader, _Counted | None, list]:
    """A buffered reader of the tar bytes; the counter of compressed bytes (None for zstd)."""
    closers: list = []
    if fmt == "tar.zst":
        unz = _Unzstd(path, scratch)
        closers.append(unz)
        return io.BufferedReader(unz, CHUNK), None, closers
    raw = _Counted(path, scratch)
    closers.append(raw)
    if fmt == "tar.gz":
        return io.BufferedReader(_Gunzip(raw, path.stat().st_size), CHUNK), raw, closers
    return io.BufferedReader(raw, CHUNK), raw, closers


def _tar_errors(exc: BaseException, name: str) -> str:
    if isinstance(exc, ArchiveCorrupt):
        return f"{name}: {exc}"
    if isinstance(exc, tarfile.ReadError) and "unexpected end of data" in str(exc):
        return f"{name}: truncated: the tar stream ends inside a member (unexpected end of data)"
    if isinstance(exc, tarfile.ReadError):
        return f"{name}: not a readable tar archive ({exc})"
    if isinstance(exc, (tarfile.TarError, EOFError)):
        return f"{name}: tar stream broken ({exc or type(exc).__name__})"
    return f"{name}: {type(exc).__name__}: {exc}"


def _walk_tar(point: RecoveryPoint, fmt: str, scratch: Scratch, visit=None) -> tuple[int, int, int]:
    """Read a tar archive end to end; ``visit(tar, member)`` is called per member. Returns
    (members, unpacked bytes, compressed bytes read)."""
    path = point.path or Path(point.id)
    stream, counter, closers = _open_stream(path, fmt, scratch)
    members = unpacked = 0
    try:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    members += 1
                    unpacked += member.size if member.isfile() else 0
                    if visit is not None:
                        visit(tar, member)
        except (tarfile.ReadError, tarfile.HeaderError, EOFError) as exc:
            if fmt in ("tar.gz", "tar.zst"):
                # a damaged tar header inside a compressed stream: the compression's own checksum
                # (read to the end) names the real cause - the archive's bytes changed
                _drain(stream)
            raise exc
        _drain(stream)  # the zero blocks and trailer after the end-of-archive marker
    finally:
        for closer in reversed(closers):
            closer.close()
    return members, unpacked, counter.pos if counter is not None else path.stat().st_size


def _drain(stream: io.BufferedReader) -> None:
    while stream.read(CHUNK):
        pass


# ---- the source's functions -----------------------------------------------------------------

def integrity(point: RecoveryPoint, options: Options, scratch: Scratch) -> Outcome:
    """L2: every byte read; a tar archive decoded through to its end-of-archive marker."""
    started = time.monotonic()
    path = point.path or Path(point.id)
    fmt = archive_format(path, options)
    name = path.name
    if fmt == "tree":
        files = total = 0
        problems = []
        for file in _files(path):
            try:
                _, read = sha256_file(file, scratch)
            except OSError as exc:
                problems.append(f"{file}: unreadable: {exc.strerror or exc}")
                continue
            files += 1
            total += read
        if problems:
            return Outcome(2, False, f"L2 integrity: {problems[0]}", items=files, unit="files", bytes=total,
                           duration_s=time.monotonic() - started)
        return Outcome(2, True, f"read {files:,} files ({human_size(total)}) of the tree end to end", items=files,
                       items_total=files, unit="files", bytes=total, duration_s=time.monotonic() - started)
    size = path.stat().st_size
    try:
        members, unpacked, read = _walk_tar(point, fmt, scratch)
    except TimeoutError:
        raise
    except Exception as exc:  # any decode failure is this backup's L2 failure, with its cause
        return Outcome(2, False, f"L2 integrity: {_tar_errors(exc, name)}", duration_s=time.monotonic() - started)
    if members == 0:
        return Outcome(2, False, f"L2 integrity: {name}: the archive holds no members", bytes=read,
                       duration_s=time.monotonic() - started)
    return Outcome(2, True, f"read {read:,} of {size:,} bytes ({fmt}); {members:,} tar members, "
                            f"{human_size(unpacked)} unpacked", items=members, items_total=members, unit="members",
                   bytes=read, duration_s=time.monotonic() - started, details={"format": fmt, "unpacked": unpacked})


def restore(point: RecoveryPoint, options: Options, scratch: Scratch) -> tuple[Outcome, Path | None]:
    """L3: extract (or copy) into ``scratch.dir/restore``; returns the restored live-tree root."""
    started = time.monotonic()
    path = point.path or Path(point.id)
    fmt = archive_format(path, options)
    live = Path(options.live).resolve() if options.live else None
    target = scratch.dir / "restore"
    if live is not None and (live == target.resolve() or live in scratch.dir.resolve().parents):
        return Outcome(3, False, f"L3 restore refused: the scratch directory {scratch.dir} is inside the live tree "
                                 f"{live} (set OPSGATE_SCRATCH_DIR elsewhere)"), None
    target.mkdir()  # removed with the scratch directory
    if fmt == "tree":
        try:
            shutil.copytree(path, target, symlinks=True, dirs_exist_ok=True, ignore=_special,
                            copy_function=_copier(scratch))
        except (OSError, shutil.Error) as exc:
            return Outcome(3, False, f"L3 restore: copying {path} failed: {exc}"), None
        count = sum(1 for _ in _files(target))
        return Outcome(3, True, f"copied the tree to scratch: {count:,} files", items=count, items_total=count,
                       unit="files", duration_s=time.monotonic() - started), _root(target, options, live)
    counts = {"files": 0, "bytes": 0, "skipped": 0, "outside_links": 0}

    def extract(tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        scratch.remaining()  # stop before writing once the scratch place is closed (an interrupt)
        if _unsafe(member, target):  # a link leading outside (/etc/localtime): not created
            counts["outside_links"] += 1
            return
        if member.isdev() or member.isfifo():
            counts["skipped"] += 1
            return
        tar.extract(member, target, set_attrs=True, filter="data")
        if member.isfile():
            counts["files"] += 1
            counts["bytes"] += member.size

    try:
        members, _, _ = _walk_tar(point, fmt, scratch, extract)
    except TimeoutError:
        raise
    except Refused as exc:
        return Outcome(3, False, f"L3 restore refused: {path.name}: {exc}; nothing is written outside the scratch "
                                 "directory", duration_s=time.monotonic() - started), None
    except tarfile.FilterError as exc:
        return Outcome(3, False, f"L3 restore refused: {path.name}: {exc}", duration_s=time.monotonic() - started), None
    except Exception as exc:
        return Outcome(3, False, f"L3 restore: {_tar_errors(exc, path.name)}",
                       duration_s=time.monotonic() - started), None
    skipped = f"; {counts['skipped']} device/fifo members not created" if counts["skipped"] else ""
    if counts["outside_links"]:
        skipped += f"; {counts['outside_links']} links leading outside the restored tree not created"
    return Outcome(3, True, f"extracted {members:,} members ({counts['files']:,} files, "
                            f"{human_size(counts['bytes'])}) to scratch{skipped}", items=counts["files"],
                   items_total=counts["files"], unit="files", bytes=counts["bytes"],
                   duration_s=time.monotonic() - started), _root(target, options, live)


def _special(folder: str, names: list[str]) -> list[str]:
    """Names copytree must not open: FIFOs, sockets, devices (opening a FIFO blocks forever)."""
    out = []
    for name in names:
        mode = os.lstat(os.path.join(folder, name)).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            out.append(name)
    return out


def _copier(scratch: Scratch):
    def copy(src: str, dst: str) -> str:
        scratch.remaining()
        return shutil.copy2(src, dst)
    return copy


def _unsafe(member: tarfile.TarInfo, target: Path) -> bool:
    """Refuse (raise) a member whose name would be written outside ``target``; True for a link
    that would lead outside it (left out: a tree's absolute links are normal, following one
    during the restore is not)."""
    name = member.name
    if name.startswith("/") or os.path.isabs(name):
        raise Refused(f"member {name!r} has an absolute path")
    if ".." in Path(name).parts:
        raise Refused(f"member {name!r} has '..' in its path")
    if member.issym() or member.islnk():
        link = member.linkname
        base = (target / name).parent if member.issym() else target
        resolved = os.path.normpath(os.path.join(base, link))
        return os.path.isabs(link) or not (resolved == str(target) or resolved.startswith(str(target) + os.sep))
    return False


def _root(target: Path, options: Options, live: Path | None) -> Path:
    """The restored folder that matches the live tree."""
    if options.archive_root:
        return target / options.archive_root.strip("/")
    entries = list(target.iterdir())
    if live is not None and len(entries) == 1 and entries[0].is_dir() and entries[0].name == live.name:
        return entries[0]
    return target


def _files(root: Path):
    """Regular files under root (links not followed), sorted for a stable order."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                yield path


def _listing(root: Path, exclude: list[str]) -> dict[str, int]:
    """{relative path: size} of the regular files under root, minus excluded globs."""
    out = {}
    for path in _files(root):
        rel = path.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(rel, pattern) for pattern in exclude):
            continue
        out[rel] = path.lstat().st_size
    return out


def compare(restored: Path, options: Options, scratch: Scratch) -> Outcome:
    """L4: the restored tree against the live one (see :func:`compare_trees`)."""
    if not options.live:
        return Outcome(4, False, "L4 compare: no live tree to compare with (set files.live)")
    return compare_trees(restored, Path(options.live), options, scratch)


def compare_trees(restored: Path, live: Path, options, scratch: Scratch) -> Outcome:
    """Counts of all files; sizes and sha256 of all or of a random sample; differences within
    ``options.max_differences_percent`` of the files compared. ``options`` needs ``sample``,
    ``seed``, ``exclude`` and ``max_differences_percent``."""
    started = time.monotonic()
    if not live.is_dir():
        return Outcome(4, False, f"L4 compare: the live tree {live} is not a readable folder")
    theirs = _listing(live, options.exclude)
    ours = _listing(restored, options.exclude)
    names = sorted(theirs)
    missing = [n for n in names if n not in ours]
    extra = sorted(n for n in ours if n not in theirs)
    both = [n for n in names if n in ours]
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2 ** 31)
    sampled = options.sample is not None and options.sample < len(both)
    chosen = sorted(random.Random(seed).sample(both, options.sample)) if sampled else both

    def differs(rel: str) -> tuple[str, str, int]:
        a, b = restored / rel, live / rel
        if ours[rel] != theirs[rel]:
            return rel, f"size {ours[rel]:,} B in the backup, {theirs[rel]:,} B live", 0
        try:
            da, read_a = sha256_file(a, scratch)
            db, read_b = sha256_file(b, scratch)
        except OSError as exc:
            return rel, f"unreadable: {exc.strerror or exc}", 0
        return rel, "" if da == db else "same size, different sha256", read_a + read_b

    bad = [f"{n}: missing in the backup" for n in missing] + [f"{n}: not in the live tree" for n in extra]
    compared_bytes = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        for rel, problem, read in pool.map(differs, chosen):
            compared_bytes += read
            if problem:
                bad.append(f"{rel}: {problem}")
    checked = len(chosen) + len(missing) + len(extra)
    details = {"live_files": len(theirs), "restored_files": len(ours), "compared": len(chosen),
               "missing": missing[:20], "extra": extra[:20], "differences": bad[:20],
               "tolerance_percent": options.max_differences_percent}
    if sampled:
        details["sample"] = {"size": len(chosen), "seed": seed}
    what = (f"counts of all {len(theirs):,} files; sizes and sha256 of a random sample of {len(chosen):,} "
            f"(seed {seed})" if sampled else f"checked {len(chosen):,} of {len(theirs):,} files "
            f"({human_size(sum(theirs[n] for n in chosen))})")
    duration = time.monotonic() - started
    allowed = options.max_differences_percent / 100.0 * max(checked, 1)
    if len(bad) > allowed or (not theirs and not ours):
        if not theirs and not ours:
            return Outcome(4, False, f"L4 compare: no files in the live tree {live} nor in the backup",
                           duration_s=duration, details=details)
        return Outcome(4, False, f"L4 compare: {len(bad):,} of {checked:,} files differ from the live tree "
                                 f"(tolerance {options.max_differences_percent:g}%): " + "; ".join(bad[:3])
                       + (f"; and {len(bad) - 3} more" if len(bad) > 3 else ""), items=checked - len(bad),
                       items_total=len(theirs), unit="files", bytes=compared_bytes // 2, duration_s=duration,
                       details=details)
    within = f"; {len(bad)} differ, within {options.max_differences_percent:g}%" if bad else ""
    return Outcome(4, True, f"{what} against the live tree: counts, sizes and sha256 equal{within}",
                   items=len(chosen), items_total=len(theirs), unit="files", bytes=compared_bytes // 2,
                   duration_s=duration, details=details)


def take(options: Options, destination: Path, scratch: Scratch) -> Path:
    """A tar of the live tree into ``destination`` (written under a .partial name, then
    renamed, so a half-written archive never looks like a backup)."""
    if not options.live:
        raise ValueError("files.live is not set: nothing to back up")
    live = Path(options.live)
    if not live.is_dir():
        raise FileNotFoundError(f"the live tree {live} is not a folder")
    final, partial = new_backup(destination, options.name, live.name, scratch)
    name = final.name
    if name.endswith((".zst", ".tzst")):
        with open(partial, "xb") as out:
            proc = subprocess.Popen(["zstd", "-q", "-c", "-"], stdin=subprocess.PIPE, stdout=out,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            scratch.track(proc)
            try:
                with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
                    tar.add(live, arcname=live.name, filter=_deadline(scratch))
                proc.stdin.close()
                if proc.wait(timeout=scratch.remaining()) != 0:
                    raise OSError(f"zstd exited {proc.returncode} while compressing")
            finally:
                scratch.untrack(proc)
    else:
        mode = "x:gz" if name.endswith((".gz", ".tgz")) else "x"
        with tarfile.open(partial, mode) as tar:
            tar.add(live, arcname=live.name, filter=_deadline(scratch))
    os.replace(partial, final)
    return final


def _deadline(scratch: Scratch):
    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        scratch.remaining()
        return None if info.isdev() or info.isfifo() else info
    return keep
