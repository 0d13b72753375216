"""The target seam: host-level probes read the machine through ``ctx.target``.

The same probe checks run against the local target and against a pytest-testinfra
host (its ``local://`` backend: a real backend running real shell commands, as ssh,
podman or kubectl would on another machine) and must give the same verdicts. The
testinfra adapter reaches files only through bounded commands: a log's last lines
are read without moving the whole file, which is asserted on the bytes it received.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import time

import pytest

from opsgate.model import CommandCheck, FileCheck, HostCheck, LogCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check
from opsgate.targets import Command, RangeFile, Target, get, local

from opsgate.targets.testinfra import OUTPUT_LIMIT, TestinfraTarget


def connect_testinfra(spec: str = "local://") -> TestinfraTarget:
    """A testinfra host as a target (pytest-testinfra is in the ``bench`` extra: skipped without it)."""
    pytest.importorskip("testinfra")
    return TestinfraTarget.connect(spec)


class Keep:
    """A sink that keeps what a command printed."""

    def __init__(self) -> None:
        self.data = b""

    def feed(self, data: bytes) -> None:
        self.data += data


@pytest.fixture(params=["local", "testinfra"])
def target(request) -> Target:
    return local() if request.param == "local" else connect_testinfra()


@pytest.fixture
def remote() -> TestinfraTarget:
    return connect_testinfra()


def run(item, tmp_path, target: Target):
    return run_check(item, ProbeContext(tmp_path, target=target))


# --- the registry and the default ---------------------------------------------------------------

def test_probes_read_the_local_target_by_default():
    assert ProbeContext().target is local()
    assert get() is local() and get("local") is local()


def test_a_testinfra_spec_gives_a_testinfra_target():
    pytest.importorskip("testinfra")
    target = get("testinfra:local://")
    assert isinstance(target, TestinfraTarget) and target.name == "testinfra:local"


def test_an_unknown_target_is_refused_naming_what_is_known():
    with pytest.raises(ValueError, match=r"unknown target 'ssh:web1': expected local or testinfra:<hostspec>"):
        get("ssh:web1")


# --- each operation, on both targets --------------------------------------------------------------

def test_stat_glob_and_read_range_agree(tmp_path, target):
    (tmp_path / "a b.log").write_bytes(b"0123456789" * 10)
    (tmp_path / "a b.log.1").write_bytes(b"old\n")
    (tmp_path / "dir.log").mkdir()
    st = target.stat(str(tmp_path / "a b.log"), timeout=10)
    assert (st.size, st.is_file) == (100, True)
    assert abs(st.mtime - os.stat(tmp_path / "a b.log").st_mtime) < 1e-6
    found = {os.path.basename(s.path): s.is_file for s in target.glob(str(tmp_path / "*.log*"), timeout=10)}
    assert found == {"a b.log": True, "a b.log.1": True, "dir.log": False}
    assert target.glob(str(tmp_path / "nothing-*.log"), timeout=10) == []
    assert target.read_range(str(tmp_path / "a b.log"), 95, 50, timeout=10) == b"56789"


def test_open_seeks_and_reads_like_a_file(tmp_path, target):
    (tmp_path / "f").write_bytes(bytes(range(256)) * 1000)
    with target.open(str(tmp_path / "f"), time.monotonic() + 10) as handle:
        assert handle.seek(0, io.SEEK_END) == 256_000
        handle.seek(1000)
        assert handle.read(3) == bytes([232, 233, 234])
        handle.seek(255_999)
        assert handle.read(10) == bytes([255]) and handle.read(10) == b""


def test_resources_and_disk_are_plausible_and_agree(tmp_path, target):
    now = target.resources(cpu_sample=0.2, timeout=10)
    assert 0 <= now.cpu_percent <= 100 and 0 < now.memory_percent <= 100 and now.load_per_core >= 0
    disk, mine = target.disk(str(tmp_path), timeout=10), local().disk(str(tmp_path), timeout=10)
    assert disk.inodes_percent == pytest.approx(mine.inodes_percent, abs=0.5)
    assert disk.used_percent == pytest.approx(mine.used_percent, abs=1.0)


def test_run_streams_exit_code_output_env_and_cwd(tmp_path, target):
    out, err = Keep(), Keep()
    ran = target.run(Command(shell='echo "$GREETING from $(pwd)"; echo oops >&2; exit 3',
                             env={"GREETING": "it's me"}, cwd=str(tmp_path)), out, err, timeout=10)
    assert (ran.ending, ran.exit_code) == ("exited", 3)
    assert out.data == f"it's me from {tmp_path}\n".encode() and err.data == b"oops\n"


# --- the same probe checks, the same verdicts -------------------------------------------------------

def test_file_age_and_size_verdicts_agree(tmp_path, target):
    dump = tmp_path / "backup.sql"
    dump.write_bytes(b"x" * 2048)
    fresh = run(FileCheck(name="dump", path="backup.sql", max_age="1d", min_size="1KB"), tmp_path, target)
    assert fresh.status == "pass", fresh.message
    assert fresh.evidence["observed"]["size_bytes"] == 2048
    stamp = time.time() - 3 * 86400
    os.utime(dump, (stamp, stamp))
    stale = run(FileCheck(name="dump", path="backup.sql", max_age="1d"), tmp_path, target)
    assert stale.status == "fail" and "age_s" in stale.message
    small = run(FileCheck(name="dump", path="backup.sql", min_size="1MB"), tmp_path, target)
    assert small.status == "fail" and "size_bytes" in small.message
    missing = run(FileCheck(name="dump", path="gone.sql"), tmp_path, target)
    assert missing.status == "fail" and f"{tmp_path / 'gone.sql'}: file does not exist" in missing.message
    absent = run(FileCheck(name="flag", path="MAINTENANCE", exists=False), tmp_path, target)
    assert absent.status == "pass", absent.message


def test_log_tail_of_a_50_mb_log_is_read_without_moving_the_file(tmp_path, target):
    line = b"INFO request served in 12 ms " + b"." * 70 + b"\n"
    with open(tmp_path / "app.log", "wb") as handle:
        handle.write(line * (50_000_000 // len(line)))
        handle.write(b"ERROR disk full\n")
    assert os.path.getsize(tmp_path / "app.log") > 50_000_000
    result = run(LogCheck(name="app", path="app.log", last_lines=100, patterns=[{"regex": "ERROR"}]),
                 tmp_path, target)
    assert result.status == "fail"
    assert result.evidence["observed"]["matches"] == {"ERROR": 1}
    assert result.evidence["details"]["lines"]["ERROR"] == ["app.log byte 50000000: ERROR disk full"]
    if isinstance(target, TestinfraTarget):
        assert target.transferred < 3 << 20, f"moved {target.transferred} bytes to read the tail"


def test_log_last_lines_span_a_gzip_rotation_alike(tmp_path, target):
    with gzip.open(tmp_path / "app.log.1.gz", "wt") as handle:
        handle.write("".join(f"INFO old {i}\n" for i in range(50_000)) + "ERROR before rotation\n")
    (tmp_path / "app.log").write_text("INFO new 1\nINFO new 2\n")
    old = time.time() - 3600
    os.utime(tmp_path / "app.log.1.gz", (old, old))
    result = run(LogCheck(name="app", path="app.log", last_lines=3, patterns=[{"regex": "ERROR"}]), tmp_path, target)
    assert result.status == "fail" and result.evidence["observed"]["matches"] == {"ERROR": 1}
    assert result.evidence["observed"]["lines_read"] == 3
    quiet = run(LogCheck(name="app", path="app.log", last_lines=2, patterns=[{"regex": "ERROR"}]), tmp_path, target)
    assert quiet.status == "pass", quiet.message


def test_log_last_minutes_verdicts_agree(tmp_path, target):
    now = time.time()
    stamp = lambda ago: time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now - ago))  # noqa: E731
    (tmp_path / "app.log").write_text(f"{stamp(3600)} ERROR long ago\n{stamp(30)} INFO fine\n")
    recent = run(LogCheck(name="app", path="app.log", last_minutes=10, patterns=[{"regex": "ERROR"}]),
                 tmp_path, target)
    assert recent.status == "pass", recent.message
    hour = run(LogCheck(name="app", path="app.log", last_minutes=120, patterns=[{"regex": "ERROR"}]),
               tmp_path, target)
    assert hour.status == "fail" and hour.evidence["observed"]["matches"] == {"ERROR": 1}


def test_host_resource_verdicts_agree(tmp_path, target):
    fine = run(HostCheck(name="h", cpu_sample=0.2, cpu_percent=100.1, memory_percent=100.1, load_per_core=10000,
                         disks=[{"path": str(tmp_path), "used_percent": 100.1, "inodes_percent": 100.1}]),
               tmp_path, target)
    assert fine.status == "pass", fine.message
    tiny = run(HostCheck(name="h", cpu_sample=0.2, memory_percent=0.001), tmp_path, target)
    assert tiny.status == "fail" and "memory_percent" in tiny.message
    gone = run(HostCheck(name="h", cpu_sample=0.1, disks=[{"path": "no-such-dir"}]), tmp_path, target)
    assert gone.status == "fail"
    assert f"{tmp_path / 'no-such-dir'}: cannot read disk usage: No such file or directory" in gone.message


def test_command_exit_code_and_output_verdicts_agree(tmp_path, target):
    ok = run(CommandCheck(name="t", shell="echo '9/9 passed'", stdout_regex="^9/9 passed$"), tmp_path, target)
    assert ok.status == "pass", ok.message
    bad = run(CommandCheck(name="t", argv=["sh", "-c", "echo FAILED >&2; exit 1"]), tmp_path, target)
    assert bad.status == "fail" and bad.evidence["observed"]["exit_code"] == 1
    assert bad.evidence["details"]["stderr_tail"] == "FAILED\n"
    absent = run(CommandCheck(name="t", argv=["no-such-program-opsgate"]), tmp_path, target)
    assert absent.status == "fail" and "cannot run 'no-such-program-opsgate'" in absent.message
    nowhere = run(CommandCheck(name="t", shell="true", cwd="no-such-dir"), tmp_path, target)
    assert nowhere.status == "fail" and "no-such-dir: No such file or directory" in nowhere.message


def test_a_command_over_its_timeout_is_ended_on_both(tmp_path, target):
    started = time.monotonic()
    result = run(CommandCheck(name="t", shell="sleep 30", timeout=1), tmp_path, target)
    assert time.monotonic() - started < 15
    assert result.status == "fail" and "did not finish within 1s (killed)" in result.message


# --- the testinfra adapter's failures ---------------------------------------------------------------

def test_testinfra_stat_of_a_missing_file_is_file_not_found(tmp_path, remote):
    with pytest.raises(FileNotFoundError):
        remote.stat(str(tmp_path / "missing"), timeout=10)
    with pytest.raises(NotADirectoryError):
        (tmp_path / "plain").write_text("x")
        remote.stat(str(tmp_path / "plain" / "below"), timeout=10)


def test_testinfra_read_range_of_a_missing_file_fails(tmp_path, remote):
    with pytest.raises(FileNotFoundError):
        remote.read_range(str(tmp_path / "missing"), 0, 10, timeout=10)
    with pytest.raises(FileNotFoundError):
        RangeFile(remote, str(tmp_path / "missing"), time.monotonic() + 10)


def test_testinfra_disk_of_a_missing_path_fails(tmp_path, remote):
    with pytest.raises(FileNotFoundError):
        remote.disk(str(tmp_path / "missing"), timeout=10)


def test_testinfra_glob_in_a_missing_directory_finds_nothing(tmp_path, remote):
    assert remote.glob(str(tmp_path / "missing" / "*.log"), timeout=10) == []


def test_testinfra_run_of_a_failing_command_reports_its_exit_code(remote):
    out, err = Keep(), Keep()
    ran = remote.run(Command(argv=["false"]), out, err, timeout=10)
    assert (ran.ending, ran.exit_code) == ("exited", 1)
    with pytest.raises(FileNotFoundError):
        remote.run(Command(argv=["no-such-program-opsgate"]), out, err, timeout=10)


def test_testinfra_read_of_a_fifo_without_writer_honours_the_timeout(tmp_path, remote):
    """A read that would block forever (a named pipe nobody writes) ends at its timeout."""
    os.mkfifo(tmp_path / "pipe")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        remote.read_range(str(tmp_path / "pipe"), 0, 10, timeout=1)
    assert time.monotonic() - started < 10


def test_testinfra_run_over_its_timeout_is_ended_with_its_children(tmp_path, remote):
    marker = tmp_path / "still-running"
    started = time.monotonic()
    ran = remote.run(Command(shell=f"(sleep 3; touch {marker}) & sleep 30"), Keep(), Keep(), timeout=1)
    assert ran.ending == "timeout" and ran.exit_code is None and time.monotonic() - started < 10
    time.sleep(3.5)
    assert not marker.exists(), "a child of the timed-out command lived on"


def test_output_beyond_what_the_adapter_transfers_is_never_a_pass(tmp_path, remote):
    """stdout_not_regex over output the adapter did not transfer cannot be known absent."""
    big = f"{sys.executable} -c \"import sys; sys.stdout.write('ok' * {OUTPUT_LIMIT}); print('ERROR')\""
    result = run(CommandCheck(name="t", shell=big, stdout_not_regex="ERROR", timeout=60), tmp_path, remote)
    assert result.status == "fail", result.message
    assert "its output conditions were not evaluated" in result.message
    only_code = run(CommandCheck(name="t", shell=big, timeout=60), tmp_path, remote)
    assert only_code.status == "pass", only_code.message
