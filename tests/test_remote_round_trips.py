"""Remote checks in few round trips (issue 14, bench_fleet): what a check needs comes in one operation.

A pytest-testinfra host (its ``local://`` backend: real shell commands, as over ssh) is wrapped
to count its remote operations. A small file's content comes with its stat, a log's tail with
its glob, disks with the host's resources, a port's owners with its listeners. What came along
serves only the check that asked: the next check reads the file again and sees a change.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from opsgate.model import FileCheck, HostCheck, LogCheck, TcpCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check
from opsgate.targets import READ_AHEAD

pytest.importorskip("testinfra")
from opsgate.targets.testinfra import TestinfraTarget  # noqa: E402


class Counting(TestinfraTarget):
    """A testinfra target that records each remote operation's command line."""

    __test__ = False

    def __init__(self, host) -> None:
        super().__init__(host)
        self.calls: list[str] = []

    def _bounded(self, command, timeout, what):
        self.calls.append(command)
        return super()._bounded(command, timeout, what)


@pytest.fixture
def remote() -> Counting:
    import testinfra

    return Counting(testinfra.get_host("local://"))


def check(item, tmp_path, remote: Counting):
    remote.calls.clear()
    return run_check(item, ProbeContext(tmp_path, target=remote))


def test_a_small_files_content_comes_with_its_stat_and_serves_only_that_check(tmp_path, remote):
    ini = tmp_path / "app.ini"
    ini.write_text("[server]\ndebug = false\n")
    item = FileCheck(name="ini", path=str(ini), content={"format": "ini", "expect": ["server.debug == 'false'"]})
    assert check(item, tmp_path, remote).status == "pass"
    assert len(remote.calls) == 1, remote.calls
    ini.write_text("[server]\ndebug = true\n")  # the next check must see it, not the bytes the first one read
    result = check(item, tmp_path, remote)
    assert result.status == "fail" and "server.debug == 'false'" in result.message, result.message
    assert len(remote.calls) == 1


def test_a_file_beyond_the_read_ahead_is_read_whole_not_judged_on_its_tail(tmp_path, remote):
    big = tmp_path / "big.conf"
    big.write_text("FEATURE=on\n" + "# filler line\n" * (3 * READ_AHEAD // 14))
    assert check(FileCheck(name="b", path=str(big), contains=["^FEATURE=on$"]), tmp_path, remote).status == "pass"
    assert len(remote.calls) == 2  # the stat (and the tail it brought), then the whole file
    result = check(FileCheck(name="b", path=str(big), not_contains=["^FEATURE=on$"]), tmp_path, remote)
    assert result.status == "fail" and "line 1" in result.message, result.message


def test_an_empty_file_and_a_fifo_come_back_from_a_read_ahead_stat(tmp_path, remote):
    (tmp_path / "empty").write_bytes(b"")
    assert remote.stat(str(tmp_path / "empty"), 10, read_ahead=READ_AHEAD).whole() == b""
    os.mkfifo(tmp_path / "pipe")  # nobody writes it: reading it would hang
    started = time.monotonic()
    st = remote.stat(str(tmp_path / "pipe"), 10, read_ahead=READ_AHEAD)
    assert st.data is None and not st.is_file and time.monotonic() - started < 8
    with pytest.raises(FileNotFoundError):
        remote.stat(str(tmp_path / "missing"), 10, read_ahead=READ_AHEAD)


def test_a_glob_matching_several_files_sends_no_bytes_along(tmp_path, remote):
    for name in ("a.log", "b.log"):
        (tmp_path / name).write_text("x\n")
    found = remote.glob(str(tmp_path / "*.log"), 10, read_ahead=READ_AHEAD)
    assert sorted(os.path.basename(s.path) for s in found) == ["a.log", "b.log"]
    assert all(s.data is None for s in found)
    only = remote.glob(str(tmp_path / "a.*"), 10, read_ahead=READ_AHEAD)
    assert [s.whole() for s in only] == [b"x\n"]


def log_lines(n: int, errors: tuple[int, ...]) -> str:
    lines = [f"2026-12-01T02:00:00 INFO request {i} served" for i in range(1, n + 1)]
    for number in errors:
        lines[number - 1] = f"2026-12-01T02:00:00 ERROR failure at line {number}"
    return "\n".join(lines) + "\n"


def test_a_small_logs_last_lines_come_with_its_glob(tmp_path, remote):
    log = tmp_path / "app.log"
    log.write_text(log_lines(1000, errors=(10,)))
    item = LogCheck(name="l", path=str(log), rotated=False, last_lines=100, patterns=[{"regex": "ERROR"}])
    assert check(item, tmp_path, remote).status == "pass"
    assert len(remote.calls) == 1, remote.calls
    log.write_text(log_lines(1000, errors=(10, 996)))  # a new error: the next check reads it
    result = check(item, tmp_path, remote)
    assert result.status == "fail" and "app.log:996" in result.message, result.message
    assert len(remote.calls) == 1


def test_a_large_logs_window_is_numbered_right_from_its_tail(tmp_path, remote):
    log = tmp_path / "big.log"
    log.write_text(log_lines(20_000, errors=(17, 19_950)))  # ~1 MB: its tail came along, not its head
    item = LogCheck(name="l", path=str(log), rotated=False, last_lines=100, patterns=[{"regex": "ERROR"}])
    result = check(item, tmp_path, remote)
    assert result.status == "fail" and "big.log:19950" in result.message, result.message
    assert "failure at line 17" not in result.message
    assert remote.transferred < 4 * READ_AHEAD  # the tail, not the file
    assert len(remote.calls) == 2  # the glob with the tail, the newlines before the window counted there


def test_disks_come_with_the_resources_and_a_missing_one_is_named(tmp_path, remote):
    ok = HostCheck(name="h", cpu_sample=0.01, disks=[{"path": "/", "used_percent": {"critical": 101}},
                                                    {"path": str(tmp_path)}])
    result = check(ok, tmp_path, remote)
    assert result.status == "pass", result.message
    assert len(remote.calls) == 1
    missing = HostCheck(name="h", cpu_sample=0.01, disks=[{"path": "/"}, {"path": str(tmp_path / "gone")}])
    result = check(missing, tmp_path, remote)
    assert result.status != "pass" and f"{tmp_path / 'gone'}: cannot read disk usage" in result.message, result.message
    assert "No such file" in result.message


def test_a_ports_owner_comes_with_its_listeners(tmp_path, remote):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        mine = TcpCheck(name="t", port=port, connect=False, listening_process="python|pytest")
        result = check(mine, tmp_path, remote)
        assert result.status == "pass", result.message
        assert len(remote.calls) == 1, remote.calls
        assert result.evidence["observed"]["pid"] == os.getpid()
        wrong = TcpCheck(name="t", port=port, connect=False, listening_process="^nginx$")
        result = check(wrong, tmp_path, remote)
        assert result.status == "fail" and f"(pid {os.getpid()}), expected a process matching '^nginx$'" in \
            result.message, result.message
    result = check(TcpCheck(name="t", port=port, connect=False, listening_process="python"), tmp_path, remote)
    assert result.status == "fail" and f"no local process listens on port {port}" in result.message


def test_a_cwd_scope_is_resolved_on_the_host_only_when_a_process_needs_it(tmp_path, remote):
    import subprocess

    from opsgate.model import ProcessCheck

    real, other = tmp_path / "release-7", tmp_path / "other"
    real.mkdir(), other.mkdir()
    (tmp_path / "current").symlink_to(real)
    marker = f"{time.time_ns() % 10**9 / 1000:.3f}"  # a sleep only this test starts
    procs = [subprocess.Popen(["sleep", f"{marker}1"], cwd=real), subprocess.Popen(["sleep", f"{marker}1"], cwd=other)]
    try:
        as_written = ProcessCheck(name="p", cmdline=f"^sleep {marker}1$", cwd=str(real), min_count=1, max_count=1)
        result = check(as_written, tmp_path, remote)
        assert result.status == "pass", result.message
        assert not any("readlink" in c for c in remote.calls)  # the server ran there: nothing to resolve
        assert result.evidence["details"]["scoping"]["excluded"] == {f"cwd={real}": 1}
        through_link = as_written.model_copy(update={"cwd": str(tmp_path / "current")})
        result = check(through_link, tmp_path, remote)
        assert result.status == "pass", result.message
        assert result.evidence["details"]["scoping"]["scopes"] == [f"cwd={real}"]
        elsewhere = as_written.model_copy(update={"cwd": str(tmp_path)})
        result = check(elsewhere, tmp_path, remote)
        assert result.status == "fail" and f"none with working directory {tmp_path}" in result.message, result.message
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_a_directorys_entries_come_with_its_stat(tmp_path, remote):
    spool = tmp_path / "spool"
    spool.mkdir()
    for i in range(12):
        (spool / f"job-{i:03d}.json").write_text("{}\n")
    (spool / "sub").mkdir()
    item = FileCheck(name="d", path=str(spool), directory={"max_files": 12, "max_entries": 100})
    result = check(item, tmp_path, remote)
    assert result.status == "pass" and result.evidence["observed"]["files"] == 12, result.message
    assert len(remote.calls) == 1, remote.calls
    (spool / "job-999.json").write_text("{}\n")  # the next check lists it again
    result = check(item, tmp_path, remote)
    assert result.status == "fail" and "files" in result.message and "13" in result.message, result.message
    few = FileCheck(name="d", path=str(spool), directory={"max_entries": 5})
    result = check(few, tmp_path, remote)
    assert result.status == "fail" and "holds more than max_entries (5)" in result.message, result.message
    result = check(FileCheck(name="d", path=str(spool / "job-001.json"), directory={}), tmp_path, remote)
    assert result.status == "fail" and result.message.endswith("job-001.json: not a directory"), result.message
    result = check(FileCheck(name="d", path=str(tmp_path / "gone"), directory={}), tmp_path, remote)
    assert result.status == "fail" and "directory does not exist" in result.message, result.message


def test_a_runs_end_closes_every_hosts_master_connection_at_once(tmp_path):
    from opsgate.hosts import HostEntry, HostOptions
    from opsgate.targets.fleet import Fleet
    from tests.support.sshhosts import start_hosts

    with start_hosts(3, tmp_path / "hosts") as hosts:
        fleet = Fleet({h.name: HostEntry(url=f"ssh://{h.hostspec}") for h in hosts},
                      HostOptions(known_hosts=str(hosts.known_hosts), identity_file=str(hosts.identity_file)))
        for h in hosts:
            fleet.target(h.name).ping(timeout=30)
        control = fleet._control_dir

        def masters() -> list[int]:
            found = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        if control.encode() in handle.read():
                            found.append(int(pid))
                except OSError:
                    continue
            return found

        assert len(masters()) == 3  # one shared connection per host
        fleet.close()
        deadline = time.monotonic() + 10
        while masters() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert masters() == [], "a host's master connection outlived the run"
