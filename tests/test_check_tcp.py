"""``tcp`` checks: a port accepts connections, and the right process owns it.

Runbook steps protected here: "port 8000 is listening", "port 8000 belongs to
server.py, not to a leftover process".
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import psutil
import pytest

from opsgate.model import TcpCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check
from tests.support.http_target import HangingTarget, HttpTarget, free_port


def check(tmp_path, **fields):
    fields.setdefault("name", "port")
    fields.setdefault("timeout", 2)
    return run_check(TcpCheck(**fields), ProbeContext(tmp_path))


@pytest.fixture
def own_listener():
    """A port this very test process listens on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def test_open_port_passes(tmp_path):
    """Runbook: port 8000 is listening."""
    with HttpTarget() as target:
        result = check(tmp_path, port=target.port, max_connect_ms=1000)
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["connect_ms"] >= 0


@pytest.mark.negative("tcp")
def test_closed_port_fails_naming_connection_refused(tmp_path):
    port = free_port()
    result = check(tmp_path, port=port)
    assert result.status == "fail"
    assert "connection refused" in result.message
    assert f"127.0.0.1:{port}" in result.message


def test_port_that_accepts_but_never_answers_still_passes_connect(tmp_path):
    """A TCP check is about accepting connections; an HTTP check covers answering."""
    with HangingTarget() as hanging:
        result = check(tmp_path, port=hanging.port, timeout=1)
    assert result.status == "pass", result.message


def test_port_owned_by_the_expected_process_passes(tmp_path, own_listener):
    """Runbook: port 8000 belongs to the server (here: this python/pytest process)."""
    result = check(tmp_path, port=own_listener, listening_process="python|pytest")
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["pid"] == os.getpid()


def test_port_owned_by_another_process_fails_naming_the_owner(tmp_path, own_listener):
    """Runbook: a leftover process squatting on the port is a failure that names it."""
    result = check(tmp_path, port=own_listener, listening_process=r"^dotnet$")
    assert result.status == "fail"
    assert f"pid {os.getpid()}" in result.message
    assert psutil.Process().name() in result.message
    assert "dotnet" in result.message


LISTENER = """
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


@pytest.fixture
def server_process():
    """Another process listening on a port, whose command line carries a unique marker."""
    marker = f"aura-server-{uuid.uuid4().hex[:12]}"
    proc = subprocess.Popen([sys.executable, "-c", LISTENER, marker], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield proc, port, marker
    finally:
        proc.kill()
        proc.wait(timeout=5)
        proc.stdout.close()


def test_port_owner_matched_by_command_line(tmp_path, server_process):
    """Runbook: port 8000 is owned by server.py -- the script shows in the command line only."""
    proc, port, marker = server_process
    result = check(tmp_path, port=port, listening_process=marker)
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["pid"] == proc.pid


def test_port_owned_by_another_process_names_its_pid(tmp_path, server_process):
    proc, port, _ = server_process
    result = check(tmp_path, port=port, listening_process=r"server\.py")
    assert result.status == "fail"
    assert f"pid {proc.pid}" in result.message
    assert "expected a process matching" in result.message


def test_nobody_listening_with_listening_process_fails(tmp_path):
    """With connect: false only the owner is checked -- and there is none."""
    port = free_port()
    result = check(tmp_path, port=port, connect=False, listening_process="python")
    assert result.status == "fail"
    assert f"no local process listens on port {port}" in result.message
