"""Remote operations through the host's ssh master connection, without an ssh client each (issue 14).

Real sshd hosts (tests/support/sshhosts.py). After the first operation on a host (the ssh
client, which makes the master connection), operations go to the master's control socket
(opsgate.targets.sshmux): the same exit status, the same bytes on stdout and stderr, stdin
empty. A master that is gone is replaced through the ssh client; one that dies during a
command makes that command fail, never pass. Stand-in masters (plain Unix sockets speaking
the control protocol wrongly) stand for masters of other versions and broken ones: a real
OpenSSH master cannot be made to misbehave that way.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import struct
import subprocess
import threading

import pytest

pytest.importorskip("testinfra")

from opsgate.hosts import HostEntry, HostOptions  # noqa: E402
from opsgate.targets import sshmux  # noqa: E402
from opsgate.targets.fleet import Fleet  # noqa: E402
from tests.support.sshhosts import fleet_fixture  # noqa: E402

ssh_fleet = fleet_fixture(2, names=["web1", "web2"])


@pytest.fixture
def fleet(ssh_fleet, tmp_path):
    fleet = Fleet({h.name: HostEntry(url=f"ssh://{h.hostspec}") for h in ssh_fleet.hosts},
                  HostOptions(known_hosts=str(ssh_fleet.known_hosts), identity_file=str(ssh_fleet.identity_file)),
                  base_dir=tmp_path)
    yield fleet
    fleet.close()


def ssh_clients_started(target) -> list[str]:
    """Count the ssh client processes the target's backend starts from now on."""
    backend = target.host.backend
    started: list[str] = []
    by_client = backend.run_local

    def counting(command, *args):
        started.append(command)
        return by_client(command, *args)

    backend.run_local = counting
    return started


def master_pid(target) -> int:
    backend = target.host.backend
    cmd, args = backend._build_ssh_command("true")
    argv = shlex.split(backend.quote(" ".join(cmd), *args))
    shown = subprocess.run([*argv[:-2], "-O", "check", argv[-2]], capture_output=True, text=True, timeout=10)
    return int(re.search(r"pid=(\d+)", shown.stderr).group(1))


def test_after_the_first_operation_a_host_needs_no_ssh_client_per_operation(fleet):
    web1 = fleet.target("web1")
    started = ssh_clients_started(web1)
    web1.ping(10)  # the ssh client: it makes the master connection
    for _ in range(10):
        web1.ping(10)
    assert len(started) == 1, started


def test_through_the_master_exit_status_stdout_and_stderr_are_the_commands_own(fleet):
    web1 = fleet.target("web1")
    web1.ping(10)
    rc, out, err = web1._tool(["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
    assert (rc, out, err) == (3, b"out\n", b"err\n")
    # stdin is empty (a command reading it ends at once), argv arrives literally
    assert web1._tool(["cat"], 10) == (0, b"", b"")
    assert web1._tool(["printf", "%s|", "$HOME", "*", "a b"], 10)[1] == b"$HOME|*|a b|"


def test_megabytes_on_stdout_and_stderr_at_once_come_back_whole(fleet):
    web1 = fleet.target("web1")
    web1.ping(10)
    rc, out, err = web1._tool(["sh", "-c", "head -c 3000000 /dev/zero & head -c 2000000 /dev/zero >&2; wait"], 20)
    assert rc == 0 and len(out) == 3_000_000 and len(err) == 2_000_000


def test_a_master_that_is_gone_is_replaced_through_the_ssh_client(fleet):
    web2 = fleet.target("web2")
    web2.ping(10)
    started = ssh_clients_started(web2)
    os.kill(master_pid(web2), 9)  # the master connection ends; its socket file stays behind
    web2.ping(10)
    assert len(started) == 1  # the client made a new master ...
    web2.ping(10)
    assert len(started) == 1  # ... which the next operation used


def test_a_master_that_dies_during_a_command_fails_it(fleet):
    web1 = fleet.target("web1")
    web1.ping(10)
    pid = master_pid(web1)
    threading.Timer(0.5, os.kill, (pid, 9)).start()
    with pytest.raises(OSError, match="without an exit status"):
        web1._tool(["sh", "-c", "sleep 3; echo late"], 10)


def test_a_host_that_floods_every_command_fails_bounded_both_ways(ssh_fleet, tmp_path):
    """A host ignoring the bounds its commands carry (its login shell answers everything with
    200 MB) fails the operation once a stream passes sshmux.STREAM_LIMIT: through the ssh client
    (the first operation) and through the master alike, never holding 200 MB here."""
    ssh_fleet.require_isolation()
    web2 = ssh_fleet["web2"]
    shell = web2.write("bin/flood", "#!/bin/sh\nexec head -c 200000000 /dev/zero\n", mode=0o755)
    with open(web2.passwd, "a") as handle:  # uid 0: it can read the fleet's authorized_keys
        handle.write(f"flood:x:0:0::/root:{shell}\n")
    fleet = Fleet({"web2": HostEntry(url=f"ssh://{web2.hostspec.replace('root@', 'flood@', 1)}")},
                  HostOptions(known_hosts=str(ssh_fleet.known_hosts), identity_file=str(ssh_fleet.identity_file)),
                  base_dir=tmp_path)
    try:
        target = fleet.target("web2")
        started = ssh_clients_started(target)
        for way in ("the ssh client", "the master"):
            with pytest.raises(OSError, match=f"more than {sshmux.STREAM_LIMIT} bytes on stdout"):
                target.ping(30)
            assert len(started) == 1, way
    finally:
        fleet.close()


def test_a_flooding_host_through_another_transport_fails_bounded_too(tmp_path, monkeypatch):
    """Every testinfra transport started here (podman, docker, kubectl, local ...) is read with the
    same bound. A local:// host whose ``timeout`` (which every remote operation runs) answers with
    200 MB stands for a host or container that ignores its commands' bounds."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "timeout").write_text("#!/bin/sh\nexec head -c 200000000 /dev/zero\n")
    (tools / "timeout").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    fleet = Fleet({"box": HostEntry(url="local://")}, HostOptions(), base_dir=tmp_path)
    try:
        with pytest.raises(OSError, match=f"more than {sshmux.STREAM_LIMIT} bytes on stdout"):
            fleet.target("box").ping(30)
    finally:
        fleet.close()


# --- stand-in masters: Unix sockets that speak the control protocol wrongly ------------------

def stand_in_master(path, hello, answer=b""):
    """Accept one control connection on ``path``: read the client's hello, send ``hello``; then
    read its session request and its three descriptors, and send ``answer``."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            conn.sendall(hello)
            if answer:
                (length,) = struct.unpack(">I", conn.recv(4))
                while length > 0:
                    length -= len(conn.recv(length))
                for _ in range(3):
                    for fd in socket.recv_fds(conn, 1, 1)[1]:
                        os.close(fd)
                conn.sendall(answer)
            conn.recv(4096)  # until the client gives up
        server.close()

    threading.Thread(target=serve, daemon=True).start()


def packet(*words: int, tail: bytes = b"") -> bytes:
    body = b"".join(struct.pack(">I", w) for w in words) + tail
    return struct.pack(">I", len(body)) + body


def test_a_master_of_another_protocol_version_is_not_used(tmp_path):
    stand_in_master(tmp_path / "m", packet(sshmux.MUX_MSG_HELLO, 3))
    with pytest.raises(sshmux.Unavailable, match="another control protocol"):
        sshmux.run(str(tmp_path / "m"), "true")


def test_a_master_that_refuses_the_session_is_not_used(tmp_path):
    refusal = packet(sshmux.MUX_S_FAILURE, 0, tail=struct.pack(">I", 6) + b"nope!!")
    stand_in_master(tmp_path / "m", packet(sshmux.MUX_MSG_HELLO, 4), refusal)
    with pytest.raises(sshmux.Unavailable, match="refused the session: nope!!"):
        sshmux.run(str(tmp_path / "m"), "true")


def test_a_master_announcing_a_huge_message_is_an_error_not_a_wait(tmp_path):
    stand_in_master(tmp_path / "m", struct.pack(">I", 1 << 30) + b"\0" * 8)
    with pytest.raises(OSError, match="control message of"):
        sshmux.run(str(tmp_path / "m"), "true")


def test_a_socket_nobody_listens_on_is_unavailable(tmp_path):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "m"))
    stale.close()  # the file stays, nobody accepts: a master that died
    with pytest.raises(sshmux.Unavailable, match="no ssh master"):
        sshmux.run(str(tmp_path / "m"), "true")
