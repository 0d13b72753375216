"""The ``redis`` backup source against real redis-server processes the tests start: an RDB
(and an AOF directory) verified to L2 (redis-check-rdb / redis-check-aof), L3 (a scratch
redis-server loads a copy) and L4 (key count and a seeded key sample vs live); ``take`` is
BGSAVE and copy.

Runbook steps protected here: "redis BGSAVE" (the emergency backup) and the weekly "verify
the backups", where checksums alone pass an RDB that was corrupt before they were made.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from opsgate.backups import redis as source
from opsgate.backups.base import RecoveryPoint, Scratch
from tests.support.servers import RedisServer

PASSWORD = "r3dis-Backup-Secret"
KEYS = 2_000


@pytest.fixture
def live(tmp_path):
    with RedisServer(tmp_path, password=PASSWORD) as server:
        client = server.client()
        pipe = client.pipeline(transaction=False)
        for i in range(KEYS):
            pipe.set(f"user:{i}", f"value-{i}")
        pipe.hset("config", mapping={"mode": "live", "version": "7"})
        pipe.rpush("queue", "a", "b")
        pipe.execute()
        yield server


def snapshot(server: RedisServer, folder: Path) -> Path:
    """The live server's RDB, through the source's own take (BGSAVE and copy)."""
    with Scratch(timeout=60) as scratch:
        return source.take(options(server), folder, scratch)


def options(server: RedisServer, **fields) -> source.Options:
    fields.setdefault("live_url", server.url())
    fields.setdefault("seed", 11)
    return source.Options(**fields)


def point(path: Path) -> RecoveryPoint:
    return RecoveryPoint(str(path), path.stat().st_mtime, path.stat().st_size if path.is_file() else -1, path)


def fingerprint(path: Path) -> list:
    """Every file's name, bytes' hash, mode and mtime: a backup is never modified."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(p), hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode, p.stat().st_mtime_ns) for p in files]


def verify(path: Path, opts: source.Options) -> list:
    """L2, L3 and L4 in order, each only after the one below passed; the scratch server's
    pid is kept to prove it is gone afterwards."""
    before = fingerprint(path)
    outcomes = []
    with Scratch(timeout=60, label="item") as item, \
            Scratch(timeout=60, label="point", parent=item.dir) as scratch:  # nested, as the kind runs it
        outcomes.append(source.integrity(point(path), opts, scratch))
        if outcomes[-1].ok:
            outcome, restored = source.restore(point(path), opts, scratch)
            outcomes.append(outcome)
            if restored is not None:
                verify.pids.append(restored.pid)
                outcomes.append(source.compare(restored, opts, scratch))
    assert fingerprint(path) == before, "the backup was modified"
    for pid in verify.pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, \
            "the scratch redis-server was left running"
    return outcomes


verify.pids = []


@pytest.fixture(autouse=True)
def no_scratch_server_left():
    """After each test no process runs in one of this process's scratch folders (every
    scratch server starts there), whatever the verification's outcome was."""
    yield
    mine = f"opsgate-scratch-{os.getpid()}-"
    left = []
    for proc in psutil.process_iter(["pid", "name", "cwd"]):
        if mine in (proc.info["cwd"] or ""):
            left.append((proc.info["pid"], proc.info["name"]))
    assert left == [], f"scratch processes left running: {left}"


def _no_secret(outcomes) -> None:
    assert PASSWORD not in json.dumps([(o.message, o.details) for o in outcomes], default=str)


def test_healthy_rdb_passes_l4_with_the_counts(live, tmp_path):
    rdb = snapshot(live, tmp_path / "backups")
    outcomes = verify(rdb, options(live, compare_values=True))
    assert [o.ok for o in outcomes] == [True, True, True], [o.message for o in outcomes]
    l2, l3, l4 = outcomes
    assert l2.message == f"redis-check-rdb read {rdb.stat().st_size:,} of {rdb.stat().st_size:,} bytes: {KEYS + 2:,} keys, checksum OK"
    assert f"DBSIZE {KEYS + 2:,} in db 0" in l3.message and "loading:0" in l3.message
    assert l4.message == (f"{KEYS + 2:,} keys restored vs {KEYS + 2:,} live, within 0 keys of live; 100 sampled keys (seed 11) "
                          f"in both with the same type (99 values equal)")
    assert l4.details["seed"] == 11 and l4.details["sampled"] == 100
    _no_secret(outcomes)


def test_rdb_corrupted_before_its_manifest_fails_l2_though_the_checksums_match(live, tmp_path):
    rdb = snapshot(live, tmp_path / "backups")
    data = bytearray(rdb.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = b"\xff" * 8  # damaged on the way to the backup store ...
    rdb.write_bytes(bytes(data))
    manifest = rdb.parent / "SHA256SUMS"  # ... and only then summed
    manifest.write_text(f"{hashlib.sha256(bytes(data)).hexdigest()}  {rdb.name}\n")
    assert subprocess.run(["sha256sum", "-c", manifest.name], cwd=rdb.parent, capture_output=True).returncode == 0
    outcome = verify(rdb, options(live))[0]
    assert not outcome.ok and outcome.message.startswith(f"redis-check-rdb found {rdb.name} damaged: ")


def test_truncated_rdb_fails_l2_and_the_scratch_server_refuses_it_too(live, tmp_path):
    rdb = snapshot(live, tmp_path / "backups")
    rdb.write_bytes(rdb.read_bytes()[: rdb.stat().st_size // 2])
    l2 = verify(rdb, options(live))[0]
    assert not l2.ok and "Unexpected EOF" in l2.message
    with Scratch(timeout=30) as scratch:  # L3 alone, as a drill would run it
        l3, restored = source.restore(point(rdb), options(live), scratch)
    assert not l3.ok and restored is None and "exited while loading" in l3.message


def test_key_count_too_far_from_live_fails_l4(live, tmp_path):
    rdb = snapshot(live, tmp_path / "backups")
    live.client().delete(*[f"user:{i}" for i in range(500)])
    outcomes = verify(rdb, options(live, key_tolerance="10%", sample_keys=0))
    assert [o.ok for o in outcomes] == [True, True, False]
    assert (f"key count {KEYS + 2:,} restored vs {KEYS - 498:,} live (+500), beyond the tolerance (10%)"
            in outcomes[2].message)
    assert verify(rdb, options(live, key_tolerance=500, sample_keys=0))[2].ok


def test_sampled_key_missing_or_retyped_in_live_fails_l4(live, tmp_path):
    rdb = snapshot(live, tmp_path / "backups")
    client = live.client()
    client.delete(*[f"user:{i}" for i in range(0, KEYS, 2)])  # half the keys gone from live
    client.delete("queue")
    client.set("queue", "now a string")
    outcome = verify(rdb, options(live, key_tolerance="100%", sample_keys=KEYS + 2))[2]
    assert not outcome.ok and "missing in live" in outcome.message
    assert "'queue' is a list restored, a string live" in json.dumps(outcome.details["sample_problems"])


def test_scratch_port_equal_to_live_is_refused(live, tmp_path):
    rdb = snapshot(live, tmp_path / "backups")
    with Scratch(timeout=30) as scratch:
        outcome, restored = source.restore(point(rdb), options(live, scratch_port=live.port), scratch)
    assert not outcome.ok and restored is None
    assert outcome.message.startswith(f"refused: the scratch redis-server port {live.port} is the live server "
                                      f"(127.0.0.1:{live.port}/0)")
    assert live.client().dbsize() == KEYS + 2


def test_aof_directory_verifies_and_a_cut_one_fails(tmp_path):
    with RedisServer(tmp_path, args=("--appendonly", "yes")) as server:
        client = server.client()
        for i in range(300):
            client.set(f"k{i}", i)
        aof = server.dir / "appendonlydir"
        copy = tmp_path / "aof-backup"
        subprocess.run(["cp", "-a", str(aof), str(copy)], check=True)
        outcomes = verify(copy, options(server))
        assert [o.ok for o in outcomes] == [True, True, True], [o.message for o in outcomes]
        assert "and its manifest are valid" in outcomes[0].message
        incr = next(copy.glob("*.incr.aof"))
        incr.write_bytes(incr.read_bytes()[:-7])
        outcome = verify(copy, options(server))[0]
        assert not outcome.ok and "redis-check-aof found aof-backup damaged" in outcome.message


def test_take_says_when_config_is_disabled(tmp_path):
    with RedisServer(tmp_path, args=("--rename-command", "CONFIG", "")) as server:
        with Scratch(timeout=30) as scratch, pytest.raises(RuntimeError, match="CONFIG is disabled on redis .*set rdb_path"):
            source.take(options(server), tmp_path / "backups", scratch)
        with Scratch(timeout=30) as scratch:
            taken = source.take(options(server, rdb_path=str(server.dir / "dump.rdb")), tmp_path / "backups", scratch)
        assert taken.read_bytes()[:5] == b"REDIS"
        assert [p.name for p in taken.parent.iterdir()] == [taken.name]


def test_take_waits_for_a_newer_save(live, tmp_path):
    before = live.client().info("persistence")["rdb_saves"]
    first = snapshot(live, tmp_path / "one")
    live.client().set("late", "1")
    time.sleep(0.01)
    second = snapshot(live, tmp_path / "two")
    assert live.client().info("persistence")["rdb_saves"] == before + 2
    assert first.read_bytes() != second.read_bytes() and b"late" in second.read_bytes()


def test_weekly_suite_takes_and_verifies_an_rdb_to_l4(live, run_suite, write_env, tmp_path):
    """End to end: `pytest checks/weekly --env FILE` takes an RDB (BGSAVE and copy) and
    verifies it to L4 with the counts in the evidence."""
    env = write_env(f"""\
name: redis-backups
backup:
  - name: cache
    source: redis
    path: backups/dump-*.rdb
    rpo: 1h
    level: 4
    take_first: true
    redis:
      live_url: "redis://:${{REDIS_PASSWORD}}@127.0.0.1:{live.port}/0"
      sample_keys: 50
      seed: 3
""")
    run = run_suite("--env", str(env), paths=("checks/weekly",), timeout=300, env={"REDIS_PASSWORD": PASSWORD})
    assert run.returncode == 0, run.output
    report = json.loads((run.reports / "weekly-latest.json").read_text())
    (test,) = report["tests"]
    observed = test["metadata"]["opsgate"]["evidence"]["observed"]
    assert observed["checked"] == (f"L4 reached (asked L4): {KEYS + 2:,} keys restored vs {KEYS + 2:,} live, within 0 keys "
                                   f"of live; 50 sampled keys (seed 3) in both with the same type")
    assert observed["levels"]["L2"]["message"].endswith("keys, checksum OK")
    assert PASSWORD not in run.output + json.dumps(report)


CHILD = """
import sys, time
from pathlib import Path
from opsgate.backups import redis
from opsgate.backups.base import RecoveryPoint, Scratch
rdb = Path(sys.argv[1])
with Scratch(timeout=120, label="interrupted") as scratch:
    outcome, restored = redis.restore(RecoveryPoint(str(rdb), 0, 1, rdb), redis.Options(), scratch)
    print(restored.pid, scratch.dir, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_interrupted_verification_leaves_no_scratch_redis_server(live, tmp_path, signal_name):
    import signal
    import sys

    rdb = snapshot(live, tmp_path / "backups")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(rdb)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parents[1])
    try:
        pid, folder = child.stdout.readline().split()
        assert psutil.pid_exists(int(pid)) and psutil.Process(int(pid)).name() == "redis-server"
        child.send_signal(getattr(signal, signal_name))
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    assert not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
    assert not Path(folder).exists()


def test_scratch_port_taken_by_someone_else_is_named(live, tmp_path):
    """A fixed scratch_port another process holds: L3 fails naming the bind error (a free
    port chosen by opsgate would be retried with another)."""
    import socket

    rdb = snapshot(live, tmp_path / "backups")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        outcomes = verify(rdb, options(live, scratch_port=taken))
    assert [o.ok for o in outcomes] == [True, False]
    assert "exited while loading" in outcomes[1].message and "Address already in use" in outcomes[1].message


def test_rdb_without_keys_fails_l2_unless_allowed(tmp_path):
    with RedisServer(tmp_path) as empty:
        rdb = snapshot(empty, tmp_path / "backups")
        outcome = verify(rdb, options(empty))[0]
        assert not outcome.ok and "the RDB holds no keys" in outcome.message
        assert [o.ok for o in verify(rdb, options(empty, allow_empty=True))] == [True, True, True]
