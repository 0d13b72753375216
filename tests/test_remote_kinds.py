"""The host-level kinds read a remote machine: each check runs through opsgate's testinfra
target over ssh against real sshd hosts (tests/support/sshhosts.py), each with its own
processes, files, /run and users. Every kind is broken on the far side of one host only,
and that host's result fails naming the cause while the others pass: the reading happened
there, not here.

- systemd: stand-in ``systemctl``/``journalctl`` in each host's own PATH (``<srv>/bin``), and
  ``/run/systemd/system`` present on the hosts "booted with systemd" only (a private /run);
- packages: a venv at the same path on two hosts, a too-old library on one;
- log: a 40 MB log per host, its last lines read remotely (bytes received are bounded);
- file: the same path fresh on one host, stale on another, missing on the third;
- host: a full filesystem (a tiny tmpfs mounted inside one host only);
- process and tcp (its port's owner): a server in one host's own directory, run as that
  host's own user (a user the other hosts do not have); elsewhere run as root from /tmp;
- command: the same argv remotely as locally, with no shell on the way (spaces, ``$HOME``,
  ``*`` and ``$(...)`` arrive literally).
"""

from __future__ import annotations

import os
import time

import pytest

from opsgate.probes import ProbeContext
from opsgate.probes.command import CommandCheck
from opsgate.probes.file import FileCheck
from opsgate.probes.host import HostCheck
from opsgate.probes.log import COUNT_PREFIX, LogCheck
from opsgate.probes.packages import PackagesCheck
from opsgate.probes.process import ProcessCheck
from opsgate.probes.systemd import SystemdCheck
from opsgate.probes.tcp import TcpCheck
from opsgate.runner import run_check
from opsgate.targets import local
from tests.support.sshhosts import fleet_fixture
from tests.test_check_packages import make_venv

pytest.importorskip("testinfra")
from opsgate.targets.testinfra import TestinfraTarget  # noqa: E402

ssh_fleet = fleet_fixture(3, names=["web1", "web2", "db1"])


@pytest.fixture(scope="module")
def fleet(ssh_fleet):
    ssh_fleet.require_isolation()
    return ssh_fleet


def remote(host, item, tmp_path):
    """``item`` checked on ``host`` through a fresh ssh target (its own byte count)."""
    target = TestinfraTarget.connect(host.url)
    return run_check(item, ProbeContext(tmp_path, target=target)), target


# --- systemd ----------------------------------------------------------------------------------------

SHOW = {"active": "LoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nNRestarts=0\n",
        "failed": "LoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\nNRestarts=2\n"}


def fake_systemd(host, state: str, journal: str, booted: bool) -> None:
    """Stand-ins answering for ``api.service`` in the host's own PATH; they log their calls."""
    calls = f"{host.srv}/systemd/calls"
    host.write("bin/systemctl", f'#!/bin/sh\necho "systemctl $*" >>{calls}\ncat {host.srv}/systemd/show-"$2"\n',
               mode=0o755)
    host.write("bin/journalctl", f'#!/bin/sh\necho "journalctl $*" >>{calls}\ncat {host.srv}/systemd/journal-"$2"\n',
               mode=0o755)
    host.write("systemd/show-api.service", SHOW[state])
    host.write("systemd/journal-api.service", journal)
    if booted:
        host.write("/run/systemd/system/.opsgate-test", "")


@pytest.mark.negative("systemd")
def test_systemd_units_are_read_on_each_host(fleet, tmp_path):
    web1, web2, db1 = fleet
    fake_systemd(web1, "active", "request ok\n", booted=True)
    fake_systemd(web2, "failed", "ERROR database unreachable\nrequest ok\n", booted=True)
    fake_systemd(db1, "active", "", booted=False)
    item = SystemdCheck(name="api", unit="api", journal=[{"regex": "ERROR"}])

    healthy, _ = remote(web1, item, tmp_path)
    assert healthy.status == "pass", healthy.message
    assert "systemctl show api.service -p" in (web1.root / "systemd/calls").read_text()

    broken, _ = remote(web2, item, tmp_path)
    assert broken.status == "fail"
    assert "unit api.service is active: observed \"failed\"" in broken.message
    assert "Result=exit-code" in broken.message
    assert "journalctl -u api.service" in (web2.root / "systemd/calls").read_text()

    no_systemd, _ = remote(db1, item, tmp_path)
    assert no_systemd.status == "skipped"
    assert "systemd api.service: systemd is absent on this machine" in no_systemd.message
    assert not (db1.root / "systemd/calls").exists(), "systemctl ran where there is no systemd"


# --- packages ---------------------------------------------------------------------------------------

@pytest.mark.negative("packages")
def test_packages_are_read_from_the_hosts_own_venv(fleet, tmp_path):
    web1, web2, _db1 = fleet
    make_venv(web1.root / "venv", {"appcore": ("2.4.0", ["helperlib>=1.0"]), "helperlib": ("1.6.0", [])})
    make_venv(web2.root / "venv", {"appcore": ("2.4.0", ["helperlib>=1.0"]), "helperlib": ("1.2.0", [])})
    item = PackagesCheck(name="env", python=f"{fleet.srv}/venv/bin/python", timeout=60, vulnerabilities="off",
                         requirements=["appcore>=2.4,<3", "helperlib>=1.5"])

    healthy, _ = remote(web1, item, tmp_path)
    assert healthy.status == "pass", healthy.message
    assert healthy.evidence["observed"]["installed"] == {"appcore>=2.4,<3": "2.4.0", "helperlib>=1.5": "1.6.0"}

    stale, _ = remote(web2, item, tmp_path)
    assert stale.status == "fail"
    assert "helperlib 1.2.0 is installed, not >=1.5" in stale.message
    assert "appcore" not in stale.message


# --- log ----------------------------------------------------------------------------------------------

@pytest.mark.negative("log")
def test_a_big_logs_last_lines_are_read_remotely_without_moving_it(fleet, tmp_path):
    web1, web2, _db1 = fleet
    line = b"INFO request served in 12 ms " + b"." * 70 + b"\n"
    # over COUNT_PREFIX: the probe then gives byte offsets instead of reading the prefix to number lines
    lines = (COUNT_PREFIX + (8 << 20)) // len(line)
    for host, last in ((web1, b"ERROR disk full\n"), (web2, b"INFO all good\n")):
        (host.root / "log").mkdir(exist_ok=True)
        with open(host.root / "log" / "app.log", "wb") as handle:
            for _ in range(lines // 10_000):
                handle.write(line * 10_000)
            handle.write(last)
    size = (web1.root / "log" / "app.log").stat().st_size
    item = LogCheck(name="app", path=f"{fleet.srv}/log/app.log", last_lines=100, patterns=[{"regex": "ERROR"}])

    broken, target = remote(web1, item, tmp_path)
    assert broken.status == "fail"
    assert broken.evidence["observed"]["matches"] == {"ERROR": 1}
    assert broken.evidence["details"]["lines"]["ERROR"] == [f"app.log byte {size - 16}: ERROR disk full"]
    assert target.transferred < 3 << 20, f"received {target.transferred} bytes to read a {size} byte log's tail"

    clean, target = remote(web2, item, tmp_path)
    assert clean.status == "pass", clean.message
    assert target.transferred < 3 << 20


# --- file ---------------------------------------------------------------------------------------------

@pytest.mark.negative("file")
def test_the_same_path_is_checked_on_each_host(fleet, tmp_path):
    web1, web2, db1 = fleet
    for host in (web1, web2):
        host.write("backup.sql", "x" * 2048)
    stamp = time.time() - 3 * 86400
    os.utime(web2.root / "backup.sql", (stamp, stamp))
    (db1.root / "backup.sql").unlink(missing_ok=True)
    item = FileCheck(name="dump", path=f"{fleet.srv}/backup.sql", max_age="1d", min_size="1KB")

    fresh, _ = remote(web1, item, tmp_path)
    assert fresh.status == "pass", fresh.message
    assert fresh.evidence["observed"]["size_bytes"] == 2048

    stale, _ = remote(web2, item, tmp_path)
    assert stale.status == "fail" and "age_s" in stale.message

    missing, _ = remote(db1, item, tmp_path)
    assert missing.status == "fail"
    assert f"{fleet.srv}/backup.sql: file does not exist" in missing.message


# --- host resources -----------------------------------------------------------------------------------

@pytest.mark.negative("host")
def test_a_full_disk_on_one_host_fails_there_only(fleet, tmp_path):
    web1, web2, _db1 = fleet
    for host in (web1, web2):
        (host.root / "data").mkdir(exist_ok=True)
    # a 256 KiB filesystem inside web2 only (its mounts are private), filled up
    web2.run(["mount", "-t", "tmpfs", "-o", "size=256k", "opsgate-full", f"{fleet.srv}/data"])
    web2.run(["sh", "-c", f"head -c 1M /dev/zero >{fleet.srv}/data/fill"], check=False)
    item = HostCheck(name="res", cpu_sample=0.2, cpu_percent=100.1, memory_percent=100.1,
                     disks=[{"path": f"{fleet.srv}/data", "used_percent": 99}])

    healthy, _ = remote(web1, item, tmp_path)
    assert healthy.status == "pass", healthy.message
    observed = healthy.evidence["observed"]
    assert 0 <= observed["cpu_percent"] <= 100 and 0 < observed["memory_percent"] <= 100
    here = local().disk(str(web1.root / "data"), timeout=10)  # web1's data is on this machine's disk
    assert observed["disks"][f"{fleet.srv}/data"]["used_percent"] == pytest.approx(here.used_percent, abs=1.0)

    full, _ = remote(web2, item, tmp_path)
    assert full.status == "fail"
    assert "used_percent" in full.message and f"{fleet.srv}/data" in full.message
    assert full.evidence["observed"]["disks"][f"{fleet.srv}/data"]["used_percent"] == 100.0


# --- process and port owner ---------------------------------------------------------------------

@pytest.mark.negative("process")
@pytest.mark.negative("tcp")
def test_processes_and_port_owners_are_read_in_each_hosts_own_process_table(fleet, tmp_path):
    web1, web2, db1 = fleet
    server = ["/usr/bin/python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"]
    web1.write("app/index.html", "web1\n")
    web1.spawn(["setpriv", f"--reuid={web1.uid}", f"--regid={web1.uid}", "--clear-groups", *server],
               cwd=f"{fleet.srv}/app")
    web2.spawn(server, cwd="/tmp")  # the same program, the wrong place and owner
    for host in (web1, web2):
        host.run(["sh", "-c", "for i in $(seq 200); do ss -Hltn 'sport = :8080' | grep -q . && exit 0; "
                              "sleep 0.05; done; exit 1"])
    process = ProcessCheck(name="server", cmdline=r"http\.server 8080", cwd=f"{fleet.srv}/app", cpu_sample=0.1)

    running, _ = remote(web1, process, tmp_path)
    assert running.status == "pass", running.message
    elsewhere, _ = remote(web2, process, tmp_path)
    assert elsewhere.status == "fail"
    assert f"none with working directory {fleet.srv}/app (1 excluded by cwd=" in elsewhere.message
    absent, _ = remote(db1, process, tmp_path)
    assert absent.status == "fail" and "no process matches" in absent.message

    def owner_check(host):
        return TcpCheck(name="port", host=host.address, port=8080, listening_process=r"http\.server",
                        listening={"user": web1.user})

    owned, _ = remote(web1, owner_check(web1), tmp_path)
    assert owned.status == "pass", owned.message
    wrong_owner, _ = remote(web2, owner_check(web2), tmp_path)
    assert wrong_owner.status == "fail"
    assert "port 8080 is owned by python3 (pid " in wrong_owner.message
    assert f"user root), expected a process owned by user '{web1.user}'" in wrong_owner.message
    nothing, _ = remote(db1, owner_check(db1), tmp_path)
    assert nothing.status == "fail" and "connection refused" in nothing.message


# --- command ------------------------------------------------------------------------------------------

def test_a_command_gets_the_same_argv_remotely_as_locally_with_no_shell(ssh_fleet, tmp_path):
    argv = ["printf", "[%s]", "two words", "$HOME", "*", "$(id)", "a;b"]
    expected = "[two words][$HOME][*][$(id)][a;b]"
    item = CommandCheck(name="args", argv=argv, stdout_regex=r"^\[two words\]\[\$HOME\]\[\*\]\[\$\(id\)\]\[a;b\]$")
    there, _ = remote(ssh_fleet[0], item, tmp_path)
    here = run_check(item, ProbeContext(tmp_path, target=local()))
    assert there.status == "pass", there.message
    assert here.status == "pass", here.message
    assert there.evidence["details"]["stdout_tail"] == here.evidence["details"]["stdout_tail"] == expected


@pytest.mark.negative("command")
def test_a_command_failing_on_one_host_fails_there_naming_its_exit_code(fleet, tmp_path):
    web1, web2, _db1 = fleet
    web1.write("ready", "yes\n")
    (web2.root / "ready").unlink(missing_ok=True)
    item = CommandCheck(name="ready", argv=["test", "-e", f"{fleet.srv}/ready"])

    ok, _ = remote(web1, item, tmp_path)
    assert ok.status == "pass", ok.message
    not_ready, _ = remote(web2, item, tmp_path)
    assert not_ready.status == "fail"
    assert "exit code == 0: observed 1" in not_ready.message
