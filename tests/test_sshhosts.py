"""The test hosts themselves (tests/support/sshhosts.py): real sshd servers, each with its own
address, processes, files and users, reached through opsgate's testinfra target over ssh
with host-key checking on; and broken in the ways the fleet tests need (a wrong host key,
a hung sshd, an address gone).
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from opsgate.targets import Command
from opsgate.targets import testinfra as testinfra_target
from tests.support import sshhosts
from tests.support.sshhosts import fleet_fixture, start_hosts

pytest.importorskip("testinfra")
from opsgate.targets.testinfra import TestinfraTarget  # noqa: E402

ssh_fleet = fleet_fixture(3, names=["web1", "web2", "db1"])


class Keep:
    def __init__(self) -> None:
        self.data = b""

    def feed(self, data: bytes) -> None:
        self.data += data


def remote_run(target: TestinfraTarget, argv: list[str]) -> tuple[int | None, str]:
    out = Keep()
    ran = target.run(Command(argv=argv), out, Keep(), timeout=10)
    return ran.exit_code, out.data.decode()


def test_each_host_is_reached_over_ssh_and_sees_only_its_own_processes_files_and_users(ssh_fleet):
    ssh_fleet.require_isolation()
    marker = uuid.uuid4().hex
    for host in ssh_fleet:
        host.spawn(["sh", "-c", "sleep 300; exit 0", marker])  # the marker is $0: one such process per host
        host.write("app/whoami.txt", f"I am {host.name}\n")
    for host in ssh_fleet:
        target = TestinfraTarget.connect(host.url)
        mine = [p for p in target.processes(timeout=10) if marker in p.cmdline]
        assert len(mine) == 1, f"{host.name} sees {[p.command_line for p in mine]}"
        assert target.read_range(f"{ssh_fleet.srv}/app/whoami.txt", 0, 100, timeout=10) == f"I am {host.name}\n".encode()
        _code, address = remote_run(target, ["sh", "-c", "echo $SSH_CONNECTION"])
        assert address.split()[2] == host.address
        for other in ssh_fleet:
            code, line = remote_run(target, ["getent", "passwd", other.user])
            assert (code == 0) == (other is host), f"{host.name} knows {other.user}: {line!r}"
    assert len({h.address for h in ssh_fleet}) == 3


def test_a_process_started_in_a_host_runs_there_under_its_pid(ssh_fleet):
    host = ssh_fleet["web2"]
    pid = host.spawn(["sleep", "301"], cwd="/tmp")
    target = TestinfraTarget.connect(host.url)
    seen = {p.pid: p for p in target.processes(timeout=10, fields={"cwd", "exe"})}
    assert seen[pid].cmdline == ("sleep", "301") and seen[pid].cwd == "/tmp"
    host.kill(pid)


def test_a_wrong_host_key_is_refused_with_a_clear_message(ssh_fleet):
    host = ssh_fleet["web1"]
    target = TestinfraTarget.connect(ssh_fleet.wrong_key_url(host))
    with pytest.raises(OSError, match="Host key verification failed") as refused:
        target.stat("/etc/hostname", timeout=10)
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in str(refused.value)
    with pytest.raises(OSError, match="Host key verification failed"):  # a host not listed at all
        TestinfraTarget.connect(ssh_fleet.wrong_key_url(host, missing=True)).stat("/etc/hostname", timeout=10)
    # the right key still works: the refusal was the key, not the host
    assert TestinfraTarget.connect(host.url).stat("/etc/hostname", timeout=10).is_file


def test_a_hung_host_costs_its_timeout_then_answers_again(ssh_fleet, monkeypatch):
    monkeypatch.setattr(testinfra_target, "GRACE_S", 0.5)  # the transport's grace, shortened for the test
    host = ssh_fleet["db1"]
    target = TestinfraTarget.connect(host.url)
    assert target.stat("/etc/hostname", timeout=10).is_file  # the shared connection is open
    host.hang()
    try:
        with pytest.raises(TimeoutError, match="did not answer"):
            target.stat("/etc/hostname", timeout=1)
    finally:
        host.resume()
    assert target.stat("/etc/hostname", timeout=10).is_file


def test_an_unreachable_host_fails_at_once_naming_the_route(ssh_fleet):
    ssh_fleet.require_isolation()
    host = ssh_fleet["web2"]
    host.unreachable()
    try:
        with pytest.raises(OSError, match=f"{host.address}.*(No route to host|Network is unreachable)"):
            TestinfraTarget.connect(host.url).stat("/etc/hostname", timeout=10)
    finally:
        host.reachable()
    assert TestinfraTarget.connect(host.url).stat("/etc/hostname", timeout=10).is_file


def test_hosts_leave_nothing_behind(tmp_path):
    with start_hosts(2, tmp_path / "fleet") as fleet:
        hosts = list(fleet)
        pids = [h.init_pid for h in hosts if h.init_pid] + [pid for h in hosts for pid in h.sshd_pids()]
        hosts[0].spawn(["sleep", "302"])
        assert pids
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"process {pid} outlived its host"
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert all(h.veth not in links for h in hosts if h.veth)
    assert not fleet.control_dir.exists()


def test_loopback_fallback_still_checks_host_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(sshhosts, "_namespaces", ["namespaces refused for this test"])
    with start_hosts(2, tmp_path / "fleet") as fleet:
        assert not fleet.isolated and {h.address for h in fleet} == {"127.0.0.1"}
        first, second = fleet
        assert first.port != second.port
        assert TestinfraTarget.connect(first.url).stat(str(first.root / "bin"), timeout=10).mode
        with pytest.raises(OSError, match="Host key verification failed"):
            TestinfraTarget.connect(fleet.wrong_key_url(second)).stat("/etc/hostname", timeout=10)
        with pytest.raises(pytest.skip.Exception, match="not isolated here"):
            fleet.require_isolation()
