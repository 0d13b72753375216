"""Processes identified, not guessed: a ``process`` check and a port-owner (``tcp``) check
scoped by pid_file, port, user, exe, cwd, container and systemd unit, each against a decoy
started here with the same command line -- the scoped check counts exactly the intended
process; the unscoped one counts the decoy too (why scoping matters).

Every process is started by the test with a unique marker in its command line, so other
tests and demos on the machine are never counted.

What runs for real here: a second user (``nobody``, via ``Popen(user=...)``), a copied
executable, other working directories, loopback listeners, a podman container (its
``/proc/<pid>/cgroup`` names ``libpod-<id>``), and a real cgroup named like a systemd unit
in the v1 ``name=systemd`` hierarchy (this machine runs no systemd, so a process is moved
into ``/sys/fs/cgroup/systemd/<unit>.service`` by hand -- exactly the path systemd would
create; what systemd itself does when starting a unit is not exercised).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from opsgate.model import ProcessCheck, TcpCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by nobody (the venv's interpreter lives under /root)
LISTENER = """
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


def process_check(tmp_path, **fields):
    fields.setdefault("name", "server")
    fields.setdefault("timeout", 5)
    return run_check(ProcessCheck(**fields), ProbeContext(tmp_path))


def tcp_check(tmp_path, **fields):
    fields.setdefault("name", "port")
    fields.setdefault("timeout", 5)
    return run_check(TcpCheck(**fields), ProbeContext(tmp_path))


def pids(result) -> list[int]:
    return sorted(p["pid"] for p in result.evidence["details"]["processes"])


def wait_exec(proc: subprocess.Popen, marker: str) -> None:
    """Until the child has exec'd (before that its command line is the parent's)."""
    deadline = time.monotonic() + 10
    while marker not in " ".join(psutil.Process(proc.pid).cmdline()):
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.01)


@pytest.fixture
def spawn():
    """Start real processes (optionally as ``nobody``, in a cwd, from another executable);
    every one is killed and reaped at teardown."""
    started: list[subprocess.Popen] = []

    def _spawn(argv: list[str], marker: str, nobody: bool = False, listen: bool = False, **kwargs) -> subprocess.Popen:
        if nobody:
            kwargs.update(user=65534, group=65534, extra_groups=[])
            kwargs.setdefault("cwd", "/")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if listen else subprocess.DEVNULL, text=True, **kwargs)
        started.append(proc)
        if listen:
            proc.port = int(proc.stdout.readline())
        wait_exec(proc, marker)
        return proc

    yield _spawn
    for proc in started:
        proc.kill()
    for proc in started:
        proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def sleeper():
    """``sleep 30.<random>``: a command line no other process on the machine has, and its regex."""
    seconds = f"30.{uuid.uuid4().int % 10**9:09d}"
    return seconds, r"^sleep " + re.escape(seconds) + "$"


# -- process: user ---------------------------------------------------------------------------

def test_user_scope_counts_only_that_users_process(tmp_path, spawn, sleeper):
    """Runbook: the server runs as its service user -- a root copy of the same command line is
    neither counted (max_count 1 holds) nor mistaken for it."""
    seconds, pattern = sleeper
    mine = spawn(["sleep", seconds], seconds)
    theirs = spawn(["sleep", seconds], seconds, nobody=True)

    unscoped = process_check(tmp_path, cmdline=pattern, max_count=1)
    assert unscoped.status == "fail" and unscoped.evidence["observed"]["count"] == 2  # the guess counts both

    for user in ("nobody", 65534, "65534"):
        result = process_check(tmp_path, cmdline=pattern, user=user, max_count=1)
        assert result.status == "pass", result.message
        assert pids(result) == [theirs.pid]
    result = process_check(tmp_path, cmdline=pattern, user="root", max_count=1)
    assert pids(result) == [mine.pid]
    row = result.evidence["details"]["processes"][0]
    assert row["user"] == "root" and row["exe"] == os.path.realpath(shutil.which("sleep")) and row["cwd"]
    scoping = result.evidence["details"]["scoping"]
    assert scoping["candidates"] == 2 and scoping["excluded"] == {"user=root": 1}
    assert scoping["summary"] == f"2 processes match cmdline /{pattern}/; 1 excluded by user=root"


def test_no_process_of_the_user_fails_naming_the_user(tmp_path, spawn, sleeper):
    seconds, pattern = sleeper
    spawn(["sleep", seconds], seconds)
    spawn(["sleep", seconds], seconds, nobody=True)
    result = process_check(tmp_path, cmdline=pattern, user="daemon")
    assert result.status == "fail"
    assert f"no process matches: cmdline /{pattern}/ matched 2, none owned by user 'daemon'" in result.message
    assert "2 excluded by user=daemon" in result.message


# -- process: exe and cwd --------------------------------------------------------------------

def test_exe_scope_tells_a_copied_binary_from_the_real_one(tmp_path, spawn, sleeper):
    """Same command line (``sleep N``), different executables: /bin/sleep and a copy."""
    seconds, pattern = sleeper
    copy = tmp_path / "bin" / "sleep"
    copy.parent.mkdir()
    shutil.copy(shutil.which("sleep"), copy)
    real = spawn(["sleep", seconds], seconds)
    copied = spawn(["sleep", seconds], seconds, executable=str(copy))
    assert process_check(tmp_path, cmdline=pattern).evidence["observed"]["count"] == 2

    result = process_check(tmp_path, cmdline=pattern, exe="bin/sleep", max_count=1)  # relative: base_dir
    assert result.status == "pass", result.message
    assert pids(result) == [copied.pid]
    result = process_check(tmp_path, cmdline=pattern, exe="/bin/sleep", max_count=1)  # a symlinked path resolves
    assert result.status == "pass", result.message
    assert pids(result) == [real.pid]
    assert result.evidence["details"]["scoping"]["excluded"] == {f"exe={os.path.realpath('/bin/sleep')}": 1}


def test_cwd_scope_counts_the_instance_in_that_directory(tmp_path, spawn, sleeper):
    """Two deployments of the same program, one per directory: each check sees its own."""
    seconds, pattern = sleeper
    (tmp_path / "blue").mkdir()
    (tmp_path / "green").mkdir()
    blue = spawn(["sleep", seconds], seconds, cwd=tmp_path / "blue")
    spawn(["sleep", seconds], seconds, cwd=tmp_path / "green")
    result = process_check(tmp_path, cmdline=pattern, cwd="blue", max_count=1)
    assert result.status == "pass", result.message
    assert pids(result) == [blue.pid]
    assert result.evidence["details"]["processes"][0]["cwd"] == str(tmp_path / "blue")

    result = process_check(tmp_path, cmdline=pattern, cwd="red")
    assert result.status == "fail"
    assert f"none with working directory {tmp_path / 'red'}" in result.message


def test_scopes_combine_and_each_exclusion_is_counted(tmp_path, spawn, sleeper):
    """3 candidates: one excluded by user, one by cwd, one kept."""
    seconds, pattern = sleeper
    (tmp_path / "app").mkdir()
    kept = spawn(["sleep", seconds], seconds, cwd=tmp_path / "app")
    spawn(["sleep", seconds], seconds, nobody=True)
    spawn(["sleep", seconds], seconds, cwd=tmp_path)
    result = process_check(tmp_path, cmdline=pattern, user="root", cwd="app", max_count=1)
    assert result.status == "pass", result.message
    assert pids(result) == [kept.pid]
    assert result.evidence["details"]["scoping"]["summary"] == (
        f"3 processes match cmdline /{pattern}/; 1 excluded by user=root, 1 by cwd={tmp_path / 'app'}")


# -- process: pid_file with scopes, port ----------------------------------------------------

def test_pid_file_process_of_the_wrong_user_fails_naming_the_user(tmp_path, spawn, sleeper):
    seconds, pattern = sleeper
    proc = spawn(["sleep", seconds], seconds)
    (tmp_path / "app.pid").write_text(f"{proc.pid}\n")
    result = process_check(tmp_path, pid_file="app.pid", user="nobody")
    assert result.status == "fail"
    assert "none owned by user 'nobody'" in result.message


def test_port_scope_counts_the_process_listening_there(tmp_path, spawn):
    """Runbook: server.py is the process on port 8000 -- a decoy with the same command line on
    another port is not it."""
    marker = f"server-py-{uuid.uuid4().hex[:12]}"
    server = spawn([sys.executable, "-c", LISTENER, marker], marker, listen=True)
    decoy = spawn([sys.executable, "-c", LISTENER, marker], marker, listen=True)
    pattern = re.escape(marker)
    assert process_check(tmp_path, cmdline=pattern).evidence["observed"]["count"] == 2

    result = process_check(tmp_path, cmdline=pattern, port=server.port, max_count=1)
    assert result.status == "pass", result.message
    assert pids(result) == [server.pid]
    assert result.evidence["details"]["scoping"]["excluded"] == {f"port={server.port}": 1}
    alone = process_check(tmp_path, port=decoy.port, max_count=1)  # the port alone names the process
    assert alone.status == "pass", alone.message
    assert pids(alone) == [decoy.pid]

    decoy.kill()
    decoy.wait(timeout=5)
    result = process_check(tmp_path, cmdline=pattern, port=decoy.port)
    assert result.status == "fail"
    assert f"none listening on port {decoy.port}" in result.message


# -- process: container and systemd unit -----------------------------------------------------

def test_container_scope_counts_the_process_in_that_container(tmp_path, spawn, sleeper):
    """A ``sleep N`` inside a podman container and the same command line on the host."""
    from opsgate.probes.process import cgroup_lines, container_ids  # new in issue 9
    from tests.support.podman import PodmanEngine

    seconds, pattern = sleeper
    host = spawn(["sleep", seconds], seconds)
    with PodmanEngine(tmp_path) as engine:
        container = engine.run(f"exec sleep {seconds}")
        container.reload()
        pid = container.attrs["State"]["Pid"]
        deadline = time.monotonic() + 10
        while psutil.Process(pid).cmdline() != ["sleep", seconds]:  # until sh has exec'd sleep
            assert time.monotonic() < deadline, psutil.Process(pid).cmdline()
            time.sleep(0.01)
        assert container.id in container_ids(cgroup_lines(pid))  # parsed from the real cgroup lines
        assert container_ids(cgroup_lines(host.pid)) == set()

        assert process_check(tmp_path, cmdline=pattern).evidence["observed"]["count"] == 2
        result = process_check(tmp_path, cmdline=pattern, container=container.id[:12], max_count=1)
        assert result.status == "pass", result.message
        assert pids(result) == [pid]

        other = uuid.uuid4().hex[:12]
        result = process_check(tmp_path, cmdline=pattern, container=other)
        assert result.status == "fail"
        assert f"none in container {other}" in result.message


def test_a_container_name_is_refused_at_load_time():
    with pytest.raises(ValueError, match="expected a container id .* names are not resolved"):
        ProcessCheck(name="x", cmdline="x", container="jarvis-backend")


@pytest.fixture
def unit_cgroup():
    """A real cgroup named like a systemd unit in the v1 ``name=systemd`` hierarchy."""
    root = Path("/sys/fs/cgroup/systemd")
    if not (root / "cgroup.procs").exists() or not os.access(root, os.W_OK):
        pytest.skip("no writable name=systemd cgroup hierarchy here (needs root and cgroup v1)")
    unit = f"opsgate-test-{uuid.uuid4().hex[:8]}.service"
    (root / unit).mkdir()
    yield unit, root / unit
    deadline = time.monotonic() + 10
    while (root / unit / "cgroup.procs").read_text().strip():  # the test's process is reaped first
        assert time.monotonic() < deadline, "processes left in the test cgroup"
        time.sleep(0.05)
    (root / unit).rmdir()


def test_systemd_unit_scope_counts_the_process_in_that_unit(tmp_path, spawn, sleeper, unit_cgroup):
    from opsgate.probes.process import cgroup_lines, systemd_units  # new in issue 9

    unit, path = unit_cgroup
    seconds, pattern = sleeper
    inside = spawn(["sleep", seconds], seconds)
    spawn(["sleep", seconds], seconds)
    (path / "cgroup.procs").write_text(str(inside.pid))
    assert unit in systemd_units(cgroup_lines(inside.pid))  # parsed from the real cgroup line
    try:
        result = process_check(tmp_path, cmdline=pattern, systemd_unit=unit.removesuffix(".service"), max_count=1)
        assert result.status == "pass", result.message
        assert pids(result) == [inside.pid]
    finally:
        inside.kill()
        inside.wait(timeout=5)


def test_a_process_outside_the_unit_fails_naming_the_unit(tmp_path, spawn, sleeper):
    """Runs anywhere: this machine's processes are in no systemd unit."""
    seconds, pattern = sleeper
    spawn(["sleep", seconds], seconds)
    result = process_check(tmp_path, cmdline=pattern, systemd_unit="aura-server")
    assert result.status == "fail"
    assert (f"no process matches: cmdline /{pattern}/ matched 1, none in systemd unit aura-server.service"
            in result.message)


# -- tcp: the port's owner, scoped ------------------------------------------------------------

def test_port_owner_scoped_by_pid_file(tmp_path, spawn):
    """A decoy with the same command line listening on another port does not satisfy the check
    of the server's port, whatever its pid_file says."""
    marker = f"server-py-{uuid.uuid4().hex[:12]}"
    server = spawn([sys.executable, "-c", LISTENER, marker], marker, listen=True)
    decoy = spawn([sys.executable, "-c", LISTENER, marker], marker, listen=True)
    (tmp_path / "server.pid").write_text(f"{server.pid}\n")
    (tmp_path / "decoy.pid").write_text(f"{decoy.pid}\n")

    result = tcp_check(tmp_path, port=server.port, listening_process=marker, listening={"pid_file": "server.pid"})
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["pid"] == server.pid

    result = tcp_check(tmp_path, port=server.port, listening_process=marker, listening={"pid_file": "decoy.pid"})
    assert result.status == "fail"  # the name matches: only the pid_file tells them apart
    assert f"port {server.port} is owned by" in result.message and f"pid {server.pid}" in result.message
    assert f"expected a process named by pid_file decoy.pid (PID {decoy.pid})" in result.message

    decoy.kill()
    decoy.wait(timeout=5)
    result = tcp_check(tmp_path, port=server.port, listening={"pid_file": "decoy.pid", "children": True})
    assert result.status == "fail"
    assert (f"expected a process named by pid_file decoy.pid (PID {decoy.pid} and its descendants, "
            "which is not running)") in result.message


def test_port_owner_of_an_unexpected_user_fails_naming_the_user(tmp_path, spawn):
    marker = f"server-py-{uuid.uuid4().hex[:12]}"
    as_root = spawn([SYSTEM_PYTHON, "-c", LISTENER, marker], marker, listen=True)
    as_nobody = spawn([SYSTEM_PYTHON, "-c", LISTENER, marker], marker, listen=True, nobody=True)

    result = tcp_check(tmp_path, port=as_nobody.port, listening={"user": "nobody", "exe": SYSTEM_PYTHON})
    assert result.status == "pass", result.message
    owner = result.evidence["details"]["owners"][0]
    assert owner["pid"] == as_nobody.pid and owner["user"] == "nobody"
    assert owner["exe"] == os.path.realpath(SYSTEM_PYTHON) and marker in owner["cmdline"]

    result = tcp_check(tmp_path, port=as_root.port, listening_process=marker, listening={"user": "nobody"})
    assert result.status == "fail"
    assert (f"port {as_root.port} is owned by python3 (pid {as_root.pid}, user root), "
            "expected a process owned by user 'nobody'") in result.message


def test_port_owner_scoped_by_exe(tmp_path, spawn):
    marker = f"server-py-{uuid.uuid4().hex[:12]}"
    server = spawn([SYSTEM_PYTHON, "-c", LISTENER, marker], marker, listen=True)
    assert tcp_check(tmp_path, port=server.port, listening={"exe": SYSTEM_PYTHON}).status == "pass"
    result = tcp_check(tmp_path, port=server.port, listening={"exe": "/bin/sleep"})
    assert result.status == "fail"
    assert f"expected a process running executable {os.path.realpath('/bin/sleep')}" in result.message


def test_every_owner_of_the_port_must_match(tmp_path, spawn):
    """Two processes sharing a port (SO_REUSEPORT): the kernel gives connections to either, so
    the check holds only if both are the expected one."""
    marker = f"server-py-{uuid.uuid4().hex[:12]}"
    shared = LISTENER.replace("s = socket.socket();", "s = socket.socket(); "
                              "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1);")
    first = spawn([sys.executable, "-c", shared, marker], marker, listen=True)
    port_code = shared.replace('("127.0.0.1", 0)', f'("127.0.0.1", {first.port})')
    second = spawn([sys.executable, "-c", port_code, marker], marker, listen=True)
    assert second.port == first.port
    (tmp_path / "server.pid").write_text(f"{first.pid}\n")
    result = tcp_check(tmp_path, port=first.port, listening={"pid_file": "server.pid"})
    assert result.status == "fail"
    assert f"pid {second.pid}" in result.message and "expected a process named by pid_file server.pid" in result.message
    assert sorted(o["pid"] for o in result.evidence["details"]["owners"]) == sorted([first.pid, second.pid])
