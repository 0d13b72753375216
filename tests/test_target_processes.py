"""Processes and listening sockets through the target seam: the same ``process`` and port-owner
(``tcp``) checks run against the local target (psutil) and against a pytest-testinfra host
(its ``local://`` backend, which reads ``/proc`` and ``ss`` with shell commands as it would on
another machine) and must give the same verdicts on the same real processes.

Every process is started here with a unique marker in its command line; decoys share it and
differ in exactly one scope (working directory, user, pid file, port), so a check that
counted or chose a decoy would fail.
"""

from __future__ import annotations

import os
import re
import sys
import time

import pytest

from opsgate.model import ProcessCheck, TcpCheck
from opsgate.probes import ProbeContext
from opsgate.redact import REDACTOR
from opsgate.runner import run_check
from opsgate.targets import NotRegularFile, Target, local
from tests.support.http_target import free_port
from tests.test_process_scoping import LISTENER, sleeper, spawn  # noqa: F401  (fixtures)
from tests.test_targets import connect_testinfra


@pytest.fixture(params=["local", "testinfra"])
def target(request) -> Target:
    return local() if request.param == "local" else connect_testinfra()


def check(item, tmp_path, target: Target):
    return run_check(item, ProbeContext(tmp_path, target=target))


def pids(result) -> list[int]:
    return sorted(p["pid"] for p in result.evidence["details"]["processes"])


def marked_listener(spawn, marker: str, **kwargs):
    return spawn([sys.executable, "-c", LISTENER, marker], marker, listen=True, **kwargs)


# --- the same checks, the same verdicts ------------------------------------------------------------

def test_process_check_counts_only_the_scoped_process_on_both(tmp_path, target, spawn, sleeper):
    """One server in blue/ as root, and decoys with the same command line: one in green/, one as
    nobody, one named by another pid file. Each scope picks exactly its own process."""
    seconds, pattern = sleeper
    for name in ("blue", "green"):
        (tmp_path / name).mkdir()
    server = spawn(["sleep", seconds], seconds, cwd=tmp_path / "blue")
    in_green = spawn(["sleep", seconds], seconds, cwd=tmp_path / "green")
    as_nobody = spawn(["sleep", seconds], seconds, nobody=True)
    (tmp_path / "server.pid").write_text(f"{server.pid}\n")
    (tmp_path / "green.pid").write_text(f"{in_green.pid}\n")

    unscoped = check(ProcessCheck(name="s", cmdline=pattern, max_count=1, timeout=10), tmp_path, target)
    assert unscoped.status == "fail" and unscoped.evidence["observed"]["count"] == 3  # the guess counts all

    scoped = check(ProcessCheck(name="s", cmdline=pattern, cwd="blue", user="root", max_count=1, timeout=10),
                   tmp_path, target)
    assert scoped.status == "pass", scoped.message
    assert pids(scoped) == [server.pid]
    row = scoped.evidence["details"]["processes"][0]
    assert (row["user"], row["cwd"], row["exe"]) == ("root", str(tmp_path / "blue"), os.path.realpath("/bin/sleep"))
    assert row["rss_mb"] > 0
    assert scoped.evidence["details"]["scoping"]["excluded"] == {"user=root": 1, f"cwd={tmp_path / 'blue'}": 1}

    by_file = check(ProcessCheck(name="s", pid_file="server.pid", cmdline=pattern, max_count=1, timeout=10),
                    tmp_path, target)
    assert by_file.status == "pass", by_file.message
    assert pids(by_file) == [server.pid]
    theirs = check(ProcessCheck(name="s", cmdline=pattern, user="nobody", max_count=1, timeout=10), tmp_path, target)
    assert theirs.status == "pass", theirs.message
    assert pids(theirs) == [as_nobody.pid]

    wrong = check(ProcessCheck(name="s", pid_file="green.pid", cwd="blue", timeout=10), tmp_path, target)
    assert wrong.status == "fail"
    assert f"none with working directory {tmp_path / 'blue'}" in wrong.message


def test_port_owner_check_tells_the_server_from_its_decoy_on_both(tmp_path, target, spawn):
    marker = f"server-py-{os.urandom(6).hex()}"
    server = marked_listener(spawn, marker)
    decoy = marked_listener(spawn, marker)
    (tmp_path / "server.pid").write_text(f"{server.pid}\n")
    (tmp_path / "decoy.pid").write_text(f"{decoy.pid}\n")

    def tcp(**fields):
        return check(TcpCheck(name="p", port=server.port, listening_process=marker, timeout=10, **fields),
                     tmp_path, target)

    ok = tcp(listening={"pid_file": "server.pid", "user": "root", "exe": sys.executable})
    assert ok.status == "pass", ok.message
    assert ok.evidence["observed"]["pid"] == server.pid
    owner = ok.evidence["details"]["owners"][0]
    # the evidence shows the owner's command line as a bounded excerpt (its first 200 characters):
    # exactly the server's, whatever the length of the checkout's path before its marker
    shown = REDACTOR.excerpt(" ".join([sys.executable, "-c", LISTENER, marker]), 200)
    assert owner["user"] == "root" and owner["exe"] == os.path.realpath(sys.executable) and owner["cmdline"] == shown

    mistaken = tcp(listening={"pid_file": "decoy.pid"})
    assert mistaken.status == "fail"  # the name matches: only the pid file tells them apart
    assert (f"port {server.port} is owned by python" in mistaken.message and f"pid {server.pid}" in mistaken.message
            and f"expected a process named by pid_file decoy.pid (PID {decoy.pid})" in mistaken.message)

    alone = check(ProcessCheck(name="s", port=decoy.port, max_count=1, timeout=10), tmp_path, target)
    assert alone.status == "pass", alone.message
    assert pids(alone) == [decoy.pid]


def test_a_busy_process_is_over_its_cpu_limit_on_both(tmp_path, target, spawn):
    marker = f"busy-{os.urandom(6).hex()}"
    spawn([sys.executable, "-c", "while True: pass", marker], marker)
    # a limit of 1 %: a busy loop gets far more than that even on a machine loaded with other runs
    result = check(ProcessCheck(name="b", cmdline=re.escape(marker), cpu_percent={"critical": 1}, cpu_sample=1.0,
                                timeout=10), tmp_path, target)
    assert result.status == "fail" and "max_cpu_percent < 1" in result.message
    assert result.evidence["observed"]["max_cpu_percent"] > 1


# --- each operation, broken in its own way ---------------------------------------------------------

def test_a_pid_file_naming_a_dead_pid_fails_on_both(tmp_path, target, spawn, sleeper):
    seconds, _ = sleeper
    gone = spawn(["sleep", seconds], seconds)
    gone.kill()
    gone.wait(timeout=5)
    (tmp_path / "app.pid").write_text(f"{gone.pid}\n")
    result = check(ProcessCheck(name="s", pid_file="app.pid", children=True, timeout=10), tmp_path, target)
    assert result.status == "fail"
    assert f"pid_file app.pid names PID {gone.pid}, which is not running" in result.message
    assert target.descendants(gone.pid, timeout=10) == []
    assert target.processes(10, fields={"user", "exe"}, pids=[gone.pid]) == []


def test_a_zombie_is_gone_on_both(tmp_path, target, spawn, sleeper):
    """A process that exited and was not reaped yet (a zombie) no longer runs."""
    seconds, pattern = sleeper
    zombie = spawn(["sleep", seconds], seconds)
    zombie.kill()  # not waited for: it stays a zombie until the fixture reaps it
    deadline = time.monotonic() + 10
    while open(f"/proc/{zombie.pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not become a zombie"
        time.sleep(0.01)
    (tmp_path / "app.pid").write_text(f"{zombie.pid}\n")
    result = check(ProcessCheck(name="s", pid_file="app.pid", timeout=10), tmp_path, target)
    assert result.status == "fail" and f"names PID {zombie.pid}, which is not running" in result.message
    assert zombie.pid not in {p.pid for p in target.processes(10)}


def test_a_pid_file_that_is_missing_or_a_fifo_is_refused_without_hanging(tmp_path, target):
    os.mkfifo(tmp_path / "app.pid")
    with pytest.raises(NotRegularFile):
        target.read_pid_file(str(tmp_path / "app.pid"), timeout=10)
    with pytest.raises(FileNotFoundError):
        target.read_pid_file(str(tmp_path / "missing.pid"), timeout=10)
    fifo = check(ProcessCheck(name="s", pid_file="app.pid", timeout=10), tmp_path, target)
    assert fifo.status == "fail" and f"pid_file {tmp_path / 'app.pid'}: not a regular file" in fifo.message
    missing = check(ProcessCheck(name="s", pid_file="missing.pid", timeout=10), tmp_path, target)
    assert missing.status == "fail"
    assert f"pid_file {tmp_path / 'missing.pid'}: cannot read: No such file or directory" in missing.message


def test_a_port_nobody_listens_on_has_no_owner_on_both(tmp_path, target):
    port = free_port()
    listening = target.listeners(port, timeout=10)
    assert (listening.pids, listening.unknown) == (frozenset(), 0)
    result = check(TcpCheck(name="p", port=port, connect=False, listening_process="python", timeout=10), tmp_path, target)
    assert result.status == "fail" and f"no local process listens on port {port}" in result.message
    scoped = check(ProcessCheck(name="s", port=port, timeout=10), tmp_path, target)
    assert scoped.status == "fail" and "observed 0" in scoped.message


def test_a_process_that_exits_between_listing_and_reading_is_gone(tmp_path, target, spawn, sleeper):
    """``select`` runs after the listing and before the fields are read: the process it ends
    there is left out, not reported with empty fields."""
    seconds, pattern = sleeper
    staying = spawn(["sleep", seconds], seconds)
    leaving = spawn(["sleep", seconds], seconds)

    def named_and_end_one(info) -> bool:
        if info.pid == leaving.pid:
            leaving.kill()
            leaving.wait(timeout=5)
        return bool(re.search(pattern, info.command_line))

    found = target.processes(10, fields={"user", "exe", "cwd", "memory", "cgroup"}, select=named_and_end_one)
    assert [p.pid for p in found] == [staying.pid]
    assert found[0].exe == os.path.realpath("/bin/sleep") and found[0].rss > 0 and found[0].cgroup
    listed = {p.pid: p for p in target.processes(10, pids=[staying.pid])}
    staying.kill()
    staying.wait(timeout=5)
    assert target.cpu_percent(list(listed.values()), 0.1, timeout=10) == {}  # ended: no CPU figure


def test_the_listing_does_not_count_its_own_processes(target):
    """This test starts no process: any child of this one seen is the listing's own (the
    testinfra host's shell, timeout, sh, xargs, grep), which must not count."""
    listed = target.processes(10)
    assert [p.command_line for p in listed if p.ppid == os.getpid()] == []
    assert len(listed) > 1 and all(p.status not in ("zombie", "dead") for p in listed)


# --- a remote side that hangs ------------------------------------------------------------------------

@pytest.fixture
def hanging_tool(tmp_path, monkeypatch):
    """Put a program of this name first in PATH for the testinfra ``local://`` host: it hangs."""
    bin_dir = tmp_path / "hanging-bin"
    bin_dir.mkdir()

    def _install(name: str) -> None:
        (bin_dir / name).write_text("#!/bin/sh\nexec sleep 60\n")
        (bin_dir / name).chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    return _install


def test_a_hanging_socket_listing_is_cut_at_the_deadline(tmp_path, hanging_tool):
    remote = connect_testinfra()
    hanging_tool("ss")
    started = time.monotonic()
    result = check(TcpCheck(name="p", port=free_port(), connect=False, listening_process="x", timeout=1), tmp_path,
                   remote)
    assert time.monotonic() - started < 10
    assert result.status == "fail"
    assert "cannot list the listening sockets of port" in result.message
    assert "listing listening sockets did not finish within 1s" in result.message


def test_a_hanging_process_listing_is_cut_at_the_deadline(tmp_path, hanging_tool, sleeper):
    remote = connect_testinfra()
    hanging_tool("getconf")
    _, pattern = sleeper
    started = time.monotonic()
    result = check(ProcessCheck(name="s", cmdline=pattern, timeout=1), tmp_path, remote)
    assert time.monotonic() - started < 10
    assert result.status == "fail"
    assert "cannot read the processes of testinfra:local" in result.message
    assert "listing processes did not finish within" in result.message
