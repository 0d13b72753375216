"""``redis`` backups: an RDB file, or an append-only directory (Redis 7's ``appendonlydir``
with its ``*.manifest``).

- L2: ``redis-check-rdb`` (``redis-check-aof`` on the manifest for an AOF directory); its
  exit status AND its verdict line must both say the file is good.
- L3: a scratch ``redis-server`` on a free port (or ``scratch_port``), bound to 127.0.0.1,
  started from a COPY of the backup in scratch (``--dir``, ``--dbfilename``, ``--save ''``,
  ``--appendonly no``), in its own process group, ended in cleanup. A random password for it
  travels in a 0600 config file, never in argv. Accepted: PING answers, ``INFO persistence``
  says ``loading:0`` and DBSIZE is read.
- L4: the key count within ``key_tolerance`` of the live server's DBSIZE (``live_url``), and
  ``sample_keys`` keys drawn with a recorded seed present in both with the same type (equal
  values for strings and hashes with ``compare_values``). A sampled key with a TTL that live
  no longer has is counted as expired, not missing.
- take: BGSAVE on live, wait until it finished (``rdb_bgsave_in_progress:0`` and one more
  save than before), then copy the RDB (found by CONFIG GET dir/dbfilename, or ``rdb_path``
  when CONFIG is disabled) into the destination.

A scratch port equal to the live server's is refused before anything runs.

In an environment file::

    backup:
      - name: cache
        source: redis
        path: /var/backups/redis/dump-*.rdb   # or an appendonlydir folder
        rpo: 2h
        level: 4
        redis:
          live_url: "redis://:${REDIS_PASSWORD}@127.0.0.1:6379/0"
          key_tolerance: 1%                   # the cache moves on after the save
          sample_keys: 200

>>> refusal(Options(live_url="redis://:pw@127.0.0.1:6379/0", scratch_port=6379))
'refused: the scratch redis-server port 6379 is the live server (127.0.0.1:6379/0); choose another scratch_port or leave it out'
"""

from __future__ import annotations

import os
import random
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field

from ..lazy import lazy
from ..schema import Strict
from ..redact import REDACTOR
from .base import Outcome, RecoveryPoint, Scratch, describe_failure, run_bounded
from .scratch_server import free_port, landing, log_tail, start_server
from .tolerance import TOLERANCE, Tolerance, counted

STOP_GRACE_S = 5.0
SCAN_LIMIT = 200_000  # keys the sample is drawn from (beyond that, SCAN order - per server - decides which)
MAX_VALUE_BYTES = 1 << 20  # compare_values skips bigger strings and hashes
_LOCAL = {"localhost", "127.0.0.1", "::1"}
redis = lazy("redis")  # imported when a Redis backup is verified, not with the schema


def _no_retry() -> Any:
    """One timeout is the answer: redis-py's default retries would triple it."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


class Options(Strict):
    """The ``redis:`` settings of a backup item."""

    live_url: str | None = Field(None, repr=False, pattern=r"^rediss?://", description="the live server: L4 compares with it, take saves it")
    scratch_port: int | None = Field(None, ge=1, le=65535, description="the scratch redis-server's port (default a free one)")
    key_tolerance: TOLERANCE = Tolerance(0)
    sample_keys: int = Field(100, ge=0, le=100_000, description="keys drawn from the restore and looked up in live")
    seed: int | None = Field(None, description="the sample's seed (default random; recorded in the evidence)")
    compare_values: bool = Field(False, description="sampled strings and hashes must hold the same value in live")
    rdb_path: str | None = Field(None, description="take: live's RDB file, when CONFIG GET is disabled")
    name: str = Field("dump-%Y%m%dT%H%M%SZ.rdb", description="name of an RDB `opsgate backup` takes: strftime in UTC")
    allow_empty: bool = Field(False, description="an RDB without keys passes L2; by default reading no key is a failure")

    path_fields: ClassVar[tuple[str, ...]] = ("rdb_path",)  # resolved against base_dir by the kind


@dataclass(frozen=True)
class LiveRedis:
    """Where the live server is, its password apart (and out of repr)."""

    host: str
    port: int
    db: int
    url: str = field(repr=False)

    @classmethod
    def parse(cls, url: str) -> "LiveRedis":
        parts = urlsplit(url)
        if parts.password:
            REDACTOR.add(parts.password)
        path = parts.path.strip("/")
        return cls(parts.hostname or "localhost", parts.port or 6379, int(path) if path.isdigit() else 0, url)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}/{self.db}"

    @property
    def local(self) -> bool:
        return self.host.lower() in _LOCAL or self.host.startswith("127.")

    def client(self, timeout: float) -> redis.Redis:
        timeout = max(0.5, min(timeout, 30))
        return redis.Redis.from_url(self.url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                    retry=_no_retry(), client_name="opsgate-backup")


@dataclass(frozen=True)
class RestoredRedis:
    """The scratch redis-server L3 started (its random password out of repr)."""

    port: int
    db: int
    password: str = field(repr=False)
    pid: int = 0

    @property
    def label(self) -> str:
        return f"scratch redis-server 127.0.0.1:{self.port}/{self.db}"

    def client(self, timeout: float) -> redis.Redis:
        timeout = max(0.5, min(timeout, 30))
        return redis.Redis(host="127.0.0.1", port=self.port, db=self.db, password=self.password,
                           socket_timeout=timeout, socket_connect_timeout=timeout, retry=_no_retry())


def _point_path(point: RecoveryPoint) -> Path:
    return Path(point.path or point.id)


def _layout(path: Path) -> tuple[str, Path]:
    """("rdb", file) or ("aof", manifest)."""
    if path.is_dir():
        manifests = sorted(path.glob("*.manifest"))
        if not manifests:
            raise ValueError(f"{path} is a folder without an AOF manifest (*.manifest)")
        return "aof", manifests[0]
    if path.name.endswith(".manifest"):
        return "aof", path
    with open(path, "rb") as handle:
        head = handle.read(5)
    if not head:
        raise ValueError(f"{path.name} is empty (0 bytes)")
    if head != b"REDIS":
        if head.startswith(b"*"):
            raise ValueError(f"{path.name} is a single-file AOF (Redis before 7): not supported; verify an RDB "
                             f"or a Redis 7 appendonlydir")
        raise ValueError(f"{path.name} is not an RDB file (it does not start with REDIS)")
    return "rdb", path


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: install redis-server (it brings {name})")
    return found


# ---------------------------------------------------------------- L2

def integrity(point: RecoveryPoint, options: Options, scratch: Scratch) -> Outcome:
    """L2: redis-check-rdb on the RDB (redis-check-aof on an AOF directory's manifest)."""
    started = time.monotonic()
    try:
        kind, path = _layout(_point_path(point))
        outcome = _check_rdb(path, scratch) if kind == "rdb" else _check_aof(path, scratch)
        if outcome.ok and kind == "rdb" and outcome.items == 0 and not options.allow_empty:
            outcome = Outcome(2, False, f"{outcome.message}: the RDB holds no keys (saved from an empty or flushed "
                                        f"server?); set allow_empty if that is expected",
                              bytes=outcome.bytes, details=outcome.details)
    except (OSError, ValueError, TimeoutError) as exc:
        outcome = Outcome(2, False, REDACTOR.text(str(exc)))
    outcome.duration_s = time.monotonic() - started
    return outcome


def _check_rdb(path: Path, scratch: Scratch) -> Outcome:
    size = path.stat().st_size
    done = run_bounded([_tool("redis-check-rdb"), str(path)], scratch)
    output = done.stdout + done.stderr
    keys = re.search(r"(\d+) keys read", output)
    read = int(keys.group(1)) if keys else 0
    if done.returncode != 0 or "RDB looks OK" not in output:
        error = re.search(r"RDB ERROR DETECTED ---\s*\n(.*)", output)
        where = error.group(1).strip() if error else describe_failure(done)
        return Outcome(2, False, f"redis-check-rdb found {path.name} damaged: {REDACTOR.excerpt(where, 200)} "
                                 f"(after {read:,} keys)", items=read, unit="keys", details={"layout": "rdb"})
    checksum = "checksum OK" if "Checksum OK" in output else "no checksum in the file"
    return Outcome(2, True, f"redis-check-rdb read {size:,} of {size:,} bytes: {counted(read, 'key')}, {checksum}",
                   items=read, items_total=read, unit="keys", bytes=size, details={"layout": "rdb"})


def _check_aof(manifest: Path, scratch: Scratch) -> Outcome:
    folder = manifest.parent
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    done = run_bounded([_tool("redis-check-aof"), str(manifest)], scratch)
    output = done.stdout + done.stderr
    files = len(re.findall(r"^file ", manifest.read_text(errors="replace"), re.MULTILINE))
    if done.returncode != 0 or "are valid" not in output:
        return Outcome(2, False, f"redis-check-aof found {folder.name} damaged: {describe_failure(done)}",
                       items_total=files, unit="files", details={"layout": "aof"})
    return Outcome(2, True, f"redis-check-aof: all {files} files of {folder.name} ({size:,} bytes) and its manifest "
                            f"are valid", items=files, items_total=files, unit="files", bytes=size,
                   details={"layout": "aof"})


# ---------------------------------------------------------------- L3

def refusal(options: Options) -> str | None:
    """Why the scratch server would collide with the live one (or None)."""
    if options.live_url and options.scratch_port is not None:
        live = LiveRedis.parse(options.live_url)
        if live.local and live.port == options.scratch_port:
            return (f"refused: the scratch redis-server port {options.scratch_port} is the live server ({live.label}); "
                    f"choose another scratch_port or leave it out")
    return None


def restore(point: RecoveryPoint, options: Options, scratch: Scratch) -> tuple[Outcome, Any]:
    """L3: a scratch redis-server loads a copy of the backup."""
    refused = refusal(options)
    if refused:
        return Outcome(3, False, refused), None
    started = time.monotonic()
    try:
        kind, path = _layout(_point_path(point))
        return _restore(kind, path, options, scratch, started)
    except (OSError, ValueError, TimeoutError, redis.RedisError) as exc:
        return Outcome(3, False, REDACTOR.text(f"{type(exc).__name__}: {exc}" if isinstance(exc, redis.RedisError) else str(exc)),
                       duration_s=time.monotonic() - started), None


def _restore(kind: str, path: Path, options: Options, scratch: Scratch, started: float) -> tuple[Outcome, Any]:
    db = LiveRedis.parse(options.live_url).db if options.live_url else 0
    place = scratch.dir / "redis"
    place.mkdir(mode=0o700)
    settings = ["--dir", str(place), "--save", "", "--daemonize", "no", "--protected-mode", "yes", "--pidfile", ""]
    if kind == "rdb":
        _copy(path, place / "dump.rdb", scratch)
        settings += ["--dbfilename", "dump.rdb", "--appendonly", "no"]
        size = path.stat().st_size
    else:
        folder = place / "appendonlydir"
        folder.mkdir()
        size = 0
        for item in sorted(path.parent.iterdir()):
            if item.is_file():
                _copy(item, folder / item.name, scratch)
                size += item.stat().st_size
        settings += ["--appendonly", "yes", "--appenddirname", "appendonlydir",
                     "--appendfilename", path.name[: -len(".manifest")], "--dbfilename", "dump.rdb"]
    password = secrets.token_urlsafe(24)
    REDACTOR.add(password)
    secret = place / "secret.conf"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:  # the password stays out of argv (and ps)
        handle.write(f"requirepass {password}\n")
    for _attempt in range(3):  # a free port can be taken before redis binds it: try another
        port = options.scratch_port or free_port()
        log = place / f"redis-{port}.log"
        argv = [_tool("redis-server"), str(secret), "--port", str(port), "--bind", "127.0.0.1",
                "--logfile", str(log), *settings]
        server = start_server(argv, scratch, what=f"scratch redis-server on port {port}", grace=STOP_GRACE_S)
        restored = RestoredRedis(port, db, password, server.pid)
        problem, keys, keyspace = _wait_loaded(server, restored, log, scratch)
        if not (problem and "Address already in use" in problem and not options.scratch_port):
            break
    duration = time.monotonic() - started
    # the backup's size is evidence here, not bytes verified again (L2 counted them)
    details = {"layout": kind, "port": port, "db": db, "backup_bytes": size, "restore_s": round(duration, 3),
               "keyspace": keyspace}
    if problem:
        return Outcome(3, False, problem, duration_s=duration, details=details), None
    return Outcome(3, True, f"a scratch redis-server (127.0.0.1:{port}) loaded a copy of the {kind.upper()} in "
                            f"{duration:.2f}s: PING answered, loading:0, DBSIZE {keys:,} in db {db}",
                   items=keys, items_total=keys, unit="keys", duration_s=duration, details=details), restored


def _copy(source: Path, target: Path, scratch: Scratch) -> None:
    """Copy in chunks, read-only on the source, stopping at the deadline."""
    with open(source, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(4 << 20):
            writer.write(chunk)
            scratch.remaining()


def _wait_loaded(server: subprocess.Popen, restored: RestoredRedis, log: Path,
                 scratch: Scratch) -> tuple[str | None, int, dict]:
    """(None, DBSIZE, keyspace) once loaded; else (why not, 0, {}). Only our server counts:
    whatever else answers on its port (it lost the port race) is not taken for it."""
    client = None
    while True:
        if server.poll() is not None:
            return f"the scratch redis-server exited while loading (exit {server.returncode}): {log_tail(log)}", 0, {}
        try:
            remaining = scratch.remaining()
        except TimeoutError as exc:
            return f"{exc}: the scratch redis-server was still loading ({log_tail(log)})", 0, {}
        try:
            client = client or restored.client(min(remaining, 2))  # a loading redis answers LOADING at once
            if client.ping() and int(client.info("persistence").get("loading", 1)) == 0:
                answering = int(client.info("server").get("process_id", -1))
                if answering != server.pid:
                    return (f"port {restored.port} is answered by another process (pid {answering}), not the "
                            f"scratch redis-server (pid {server.pid})"), 0, {}
                keys = int(client.dbsize())
                keyspace = {name: value.get("keys", 0) for name, value in client.info("keyspace").items()}
                client.close()
                return None, keys, keyspace
        except redis.BusyLoadingError:
            pass
        except (redis.ConnectionError, redis.TimeoutError):
            client = None  # not listening yet, or someone else holds the port: the server's exit will tell
        time.sleep(0.02)


# ---------------------------------------------------------------- L4

def compare(restored: Any, options: Options, scratch: Scratch) -> Outcome:
    """L4: key count within ``key_tolerance`` of live's DBSIZE; a seeded sample of keys in
    both with the same type (and value, with ``compare_values``)."""
    started = time.monotonic()
    if not isinstance(restored, RestoredRedis):
        return Outcome(4, False, "nothing restored to compare")
    if not options.live_url:
        return Outcome(4, False, "no live_url to compare the restore with")
    live = LiveRedis.parse(options.live_url)
    try:
        outcome = _compare(restored, live, options, scratch)
    except (redis.RedisError, OSError, TimeoutError) as exc:
        outcome = Outcome(4, False, REDACTOR.text(f"comparing with live redis {live.label}: {type(exc).__name__}: {exc}"))
    outcome.duration_s = time.monotonic() - started
    return outcome


def _compare(restored: RestoredRedis, live: LiveRedis, options: Options, scratch: Scratch) -> Outcome:
    ours, theirs = restored.client(scratch.remaining()), live.client(scratch.remaining())
    try:
        ours_keys, live_keys = int(ours.dbsize()), int(theirs.dbsize())
        seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2 ** 31)
        sample, scanned = _sample(ours, options.sample_keys, seed, scratch)
        problems, expired, values_compared = _check_sample(ours, theirs, sample, options.compare_values)
    finally:
        ours.close()
        theirs.close()
    tolerance = options.key_tolerance
    details = {"restored": restored.label, "live": live.label, "keys_restored": ours_keys, "keys_live": live_keys,
               "tolerance": str(tolerance), "seed": seed, "sampled": len(sample), "scanned_for_sample": scanned,
               "expired_in_live": expired, "values_compared": values_compared, "sample_problems": problems[:20]}
    failures = []
    if not tolerance.allows(ours_keys, live_keys):
        failures.append(f"key count {ours_keys:,} restored vs {live_keys:,} live ({ours_keys - live_keys:+,}), "
                        f"beyond the tolerance ({tolerance.of('key')})")
    if problems:
        failures.append(f"{len(problems)} of {len(sample)} sampled keys (seed {seed}) differ: " + "; ".join(problems[:3]))
    summary = f"{counted(ours_keys, 'key')} restored vs {live_keys:,} live"
    if failures:
        return Outcome(4, False, f"{summary}: " + "; ".join(failures), items=len(sample) - len(problems),
                       items_total=len(sample), unit="keys", details=details)
    checked = f"{counted(len(sample) - expired, 'sampled key')} (seed {seed}) in both with the same type"
    if options.compare_values:
        checked += f" ({values_compared} values equal)"
    if expired:
        checked += f"; {expired} sampled keys with a TTL have expired in live"
    return Outcome(4, True, f"{summary}, within {tolerance.of('key')} of live; {checked}", items=len(sample),
                   items_total=len(sample), unit="keys", details=details)


def _sample(client: redis.Redis, size: int, seed: int, scratch: Scratch) -> tuple[list[bytes], int]:
    """``size`` keys drawn with ``seed`` from the sorted keys SCAN returns (at most SCAN_LIMIT
    of them: up to that many keys, the same seed draws the same sample again)."""
    if size == 0:
        return [], 0
    keys: set[bytes] = set()
    cursor = 0
    while True:
        scratch.remaining()
        cursor, found = client.scan(cursor, count=1000)
        keys.update(found)
        if cursor == 0 or len(keys) >= SCAN_LIMIT:
            break
    ordered = sorted(keys)
    return sorted(random.Random(seed).sample(ordered, min(size, len(ordered)))), len(ordered)


def _check_sample(ours: redis.Redis, theirs: redis.Redis, keys: list[bytes],
                  compare_values: bool) -> tuple[list[str], int, int]:
    """(problems, sampled keys expired in live, values compared)."""
    if not keys:
        return [], 0, 0
    mine = ours.pipeline(transaction=False)
    for key in keys:
        mine.type(key)
        mine.pttl(key)
    found = mine.execute()
    live = theirs.pipeline(transaction=False)
    for key in keys:
        live.type(key)
    live_types = live.execute()
    problems, expired, compared = [], 0, 0
    for index, key in enumerate(keys):
        kind, ttl, live_kind = found[2 * index], found[2 * index + 1], live_types[index]
        shown = _key(key)
        if live_kind in (b"none", "none"):
            if ttl is not None and int(ttl) >= 0:
                expired += 1
            else:
                problems.append(f"{shown} missing in live")
        elif live_kind != kind:
            problems.append(f"{shown} is a {_text(kind)} restored, a {_text(live_kind)} live")
        elif compare_values and _text(kind) in ("string", "hash"):
            same = _same_value(ours, theirs, key, _text(kind))
            if same is False:
                problems.append(f"{shown} holds another value live")
            compared += same is not None
    return problems, expired, compared


def _same_value(ours: redis.Redis, theirs: redis.Redis, key: bytes, kind: str) -> bool | None:
    """Equal values; None when too big to compare."""
    if kind == "string":
        if max(ours.strlen(key), theirs.strlen(key)) > MAX_VALUE_BYTES:
            return None
        return ours.get(key) == theirs.get(key)
    if max(ours.hlen(key), theirs.hlen(key)) > 10_000:
        return None
    return ours.hgetall(key) == theirs.hgetall(key)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _key(key: bytes) -> str:
    return REDACTOR.excerpt(repr(key.decode("utf-8", errors="replace")), 60)


# ---------------------------------------------------------------- take

def take(options: Options, destination: Path, scratch: Scratch) -> Path:
    """BGSAVE on live, wait for it to finish, copy the RDB into ``destination`` (under a
    temporary name, renamed once whole)."""
    if not options.live_url:
        raise ValueError("no live_url: nothing to save")
    live = LiveRedis.parse(options.live_url)
    client = live.client(scratch.remaining())
    try:
        source = _rdb_path(client, live, options)
        before = client.info("persistence")
        _bgsave(client, live, scratch)
        _wait_saved(client, live, before, scratch)
    finally:
        client.close()
    final, partial = landing(destination, time.strftime(options.name, time.gmtime()), scratch)
    _copy(source, partial, scratch)  # redis renames a finished RDB into place: the open file stays whole
    with open(partial, "rb") as handle:
        if handle.read(5) != b"REDIS":
            raise RuntimeError(f"{source} is not an RDB file after BGSAVE on {live.label}")
    os.replace(partial, final)
    return final


def _rdb_path(client: redis.Redis, live: LiveRedis, options: Options) -> Path:
    if options.rdb_path:
        return Path(options.rdb_path)
    try:
        folder = client.config_get("dir").get("dir")
        name = client.config_get("dbfilename").get("dbfilename")
    except redis.ResponseError as exc:
        raise RuntimeError(f"CONFIG is disabled on redis {live.label} ({REDACTOR.excerpt(str(exc), 80)}): "
                           f"set rdb_path to the file it saves to") from None
    if not live.local:
        raise RuntimeError(f"redis {live.label} saves to {folder}/{name} on its own machine: opsgate copies an RDB "
                           f"only from this one (set rdb_path when that folder is mounted here)")
    return Path(folder) / name


def _bgsave(client: redis.Redis, live: LiveRedis, scratch: Scratch) -> None:
    while True:
        try:
            client.bgsave()
            return
        except redis.ResponseError as exc:
            if "in progress" not in str(exc):
                raise RuntimeError(f"BGSAVE refused by redis {live.label}: {REDACTOR.excerpt(str(exc), 120)}") from None
        scratch.remaining()  # another save runs: ours starts after it
        time.sleep(0.05)


def _wait_saved(client: redis.Redis, live: LiveRedis, before: dict, scratch: Scratch) -> None:
    """Until the save we started finished: none in progress and one more save than before
    (rdb_saves, Redis 7; else a newer rdb_last_save_time)."""
    while True:
        scratch.remaining()
        info = client.info("persistence")
        if int(info.get("rdb_bgsave_in_progress", 1)) == 0:
            if "rdb_saves" in info and "rdb_saves" in before:
                done = int(info["rdb_saves"]) > int(before["rdb_saves"])
            else:
                done = int(info.get("rdb_last_save_time", 0)) > int(before.get("rdb_last_save_time", 0))
            if done or info.get("rdb_last_bgsave_status") != "ok":
                if info.get("rdb_last_bgsave_status") != "ok":
                    raise RuntimeError(f"BGSAVE failed on redis {live.label} (rdb_last_bgsave_status: "
                                       f"{info.get('rdb_last_bgsave_status')})")
                return
        time.sleep(0.05)
