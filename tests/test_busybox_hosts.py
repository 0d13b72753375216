"""Hosts with a BusyBox userland (Alpine, minimal images, embedded boxes): the host-level kinds
read them through opsgate's testinfra target, or fail naming the cause - never a false pass.

The hosts are real podman containers of the test image (tests/support/podman.py: busybox-static
and nothing else - no GNU stat/find, no getconf, getent or ss, no /tmp, no /etc/passwd), reached
through testinfra's podman backend (``podman://<container>``). Two of them: ``good`` healthy,
``bad`` broken in one way per check (a missing file, a wrong setting, an ERROR line, a full disk,
a missing file for a command, no server, another program on the port).
"""

from __future__ import annotations

import re
import textwrap
import time

import pytest

from opsgate.targets import Command

pytest.importorskip("testinfra")
from opsgate.targets.testinfra import TestinfraTarget  # noqa: E402
from tests.support.project import make_project, run_pytest  # noqa: E402

PORT = 8089
ARGV = ["printf", "[%s]", "two words", "$HOME", "*", "$(id)", "a;b"]


class Collect:
    """A Sink keeping what it is fed."""

    def __init__(self) -> None:
        self.data = b""

    def feed(self, data: bytes) -> None:
        self.data += data


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from tests.support.podman import PodmanEngine

    try:
        engine = PodmanEngine(tmp_path_factory.mktemp("podman")).__enter__()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield engine
    engine.__exit__(None, None, None)


def sh(engine, box, script: str) -> str:
    """``script`` run in the container (as root), its output."""
    return engine.podman("exec", box.name, "sh", "-c", script).stdout


def listening(engine, box, port: int) -> None:
    """Wait until something in ``box`` listens on ``port`` (/proc/net/tcp: busybox has no ss)."""
    for _ in range(100):
        sockets = sh(engine, box, "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null")
        if re.search(rf":{port:04X} [0-9A-F]+:0000 0A", sockets):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} in {box.name}")


@pytest.fixture(scope="module")
def boxes(engine):
    """``good``: its files, a clean log (and a rotated one, gzipped), a 64 MB data disk, an
    /etc/passwd, httpd as user www on PORT; ``bad``: no backup, mode off, an ERROR line last, a
    full 256 KB data disk, no /etc/passwd, nc (not httpd) on PORT."""
    # root on a host reads other users' /proc links; in a container it needs CAP_SYS_PTRACE for that
    good = engine.run("exec sleep 3600", tmpfs={"/srv/data": "size=64m"}, cap_add=["SYS_PTRACE"])
    bad = engine.run("exec sleep 3600", tmpfs={"/srv/data": "size=256k"})
    for box, mode, last in ((good, "on", "INFO all good"), (bad, "off", "ERROR disk full")):
        sh(engine, box, f"""mkdir -p /srv/log /srv/www /srv/spool/sub
            echo '{{"mode": "{mode}"}}' >/srv/app.json
            i=0; while [ $i -lt 500 ]; do echo "INFO request $i served"; i=$((i+1)); done >/srv/log/app.log
            echo '{last}' >>/srv/log/app.log
            echo a >/srv/spool/one.job; echo bb >'/srv/spool/two words.job'; printf x >'/srv/spool/new
line.job'""")
    sh(engine, good, "head -c 2048 /dev/zero >/srv/backup.sql; echo yes >/srv/ready; "
                     "i=0; while [ $i -lt 50 ]; do echo line $i; i=$((i+1)); done | gzip >/srv/log/app.log.1.gz; "
                     "printf 'root:x:0:0::/:/bin/sh\\nwww:x:33:33::/:/bin/false\\n' >/etc/passwd; "
                     "httpd -u www -p 8089 -h /srv/www")
    sh(engine, bad, "dd if=/dev/zero of=/srv/data/fill bs=1024 count=1024 2>/dev/null; "
                    "(nc -ll -p 8089 -e true </dev/null >/dev/null 2>&1 &)")
    for box in (good, bad):
        listening(engine, box, PORT)
    return {"good": good, "bad": bad}


def target(engine, box) -> TestinfraTarget:
    import os

    os.environ["CONTAINERS_CONF"] = engine.env["CONTAINERS_CONF"]  # testinfra's podman backend runs podman
    return TestinfraTarget.connect(f"podman://{box.name}")


# --- the target, operation by operation -------------------------------------------------------------

@pytest.mark.negative("file")
def test_files_are_read_with_busybox_stat(engine, boxes):
    box = target(engine, boxes["good"])
    found = box.stat("/srv/app.json", timeout=20, read_ahead=4096)
    assert box.flavour(20) == "busybox"  # learnt by that first operation (its GNU try ran nothing)
    assert found.is_file and found.size == len(b'{"mode": "on"}\n') and found.data == b'{"mode": "on"}\n'
    # busybox's stat has no %.9Y: the fraction comes from %y (nanoseconds on this busybox)
    there = sh(engine, boxes["good"], "stat -c '%Y %y' /srv/app.json").split()
    assert found.mtime == pytest.approx(int(there[0]) + float("0." + there[2].split(".")[1]), abs=1e-6)
    with pytest.raises(FileNotFoundError):
        box.stat("/srv/backup-missing.sql", timeout=20)
    jobs = box.glob("/srv/spool/*.job", timeout=20)
    assert sorted((f.path, f.size) for f in jobs) == [("/srv/spool/new\nline.job", 1), ("/srv/spool/one.job", 2),
                                                     ("/srv/spool/two words.job", 3)]
    assert box.glob("/srv/spool/*.none", timeout=20) == []
    files, count, more = box.list_dir("/srv/spool", limit=10, timeout=20)
    assert count == 4 and not more and len(files) == 3  # the subdirectory is counted, not a file
    files, count, more = box.list_dir("/srv/spool", limit=2, timeout=20)
    assert count == 2 and more
    with pytest.raises(NotADirectoryError):
        box.list_dir("/srv/app.json", limit=10, timeout=20)
    # busybox has no head -z: a listing is bounded in bytes, enough for limit + 1 entries of any path
    sh(engine, boxes["good"], "mkdir -p /srv/many && cd /srv/many && i=0; "
                              "while [ $i -lt 3000 ]; do : >file-$i.job; i=$((i+1)); done")
    before = box.transferred
    files, count, more = box.list_dir("/srv/many", limit=10, timeout=20)
    assert (len(files), count, more) == (10, 10, True) and box.transferred - before < 50_000
    log_size = box.stat("/srv/log/app.log", timeout=20).size
    assert box.read_range("/srv/log/app.log", log_size - 14, 14, timeout=20) == b"INFO all good\n"
    assert box.count_newlines("/srv/log/app.log", 0, log_size, timeout=20) == 501
    assert box.gz_line_count("/srv/log/app.log.1.gz", timeout=20) == 50
    rotated, skipped = box.open_gz_after("/srv/log/app.log.1.gz", 47, time.monotonic() + 20)
    assert (rotated.read(), skipped) == (b"line 47\nline 48\nline 49\n", 47)


@pytest.mark.negative("host")
def test_resources_and_disks_are_read_with_busybox(engine, boxes):
    good, bad = target(engine, boxes["good"]), target(engine, boxes["bad"])
    res = good.resources(0.2, timeout=20, disks=["/srv/data", "/srv/nowhere"])
    assert 0 <= res.cpu_percent <= 100 and 0 < res.memory_percent <= 100 and res.load_per_core >= 0
    assert res.disks["/srv/data"].used_percent < 50
    assert isinstance(res.disks["/srv/nowhere"], FileNotFoundError)
    assert bad.disk("/srv/data", timeout=20).used_percent == 100.0
    with pytest.raises(FileNotFoundError):
        bad.disk("/srv/nowhere", timeout=20)


@pytest.mark.negative("command")
def test_a_command_runs_without_tmp_and_gets_its_argv_literally(engine, boxes):
    box = target(engine, boxes["good"])
    out, err = Collect(), Collect()
    ran = box.run(Command(argv=ARGV), out, err, timeout=20)  # the image has no /tmp: its files go to /dev/shm
    assert ran.ending == "exited" and ran.exit_code == 0 and out.data == b"[two words][$HOME][*][$(id)][a;b]"
    ran = box.run(Command(argv=["sh", "-c", "echo oops >&2; exit 3"]), out, err, timeout=20)
    assert (ran.ending, ran.exit_code, err.data) == ("exited", 3, b"oops\n")
    assert box.run(Command(argv=["sleep", "30"]), out, err, timeout=1).ending == "timeout"
    with pytest.raises(FileNotFoundError):
        box.run(Command(argv=["no-such-program"]), out, err, timeout=20)


@pytest.mark.negative("process")
@pytest.mark.negative("tcp")
def test_processes_and_listeners_are_read_from_proc_with_busybox(engine, boxes):
    good, bad = target(engine, boxes["good"]), target(engine, boxes["bad"])
    servers = good.processes(timeout=20, fields={"user", "exe", "cwd", "memory"},
                             select=lambda p: p.name == "httpd")
    assert len(servers) == 1, servers
    httpd = servers[0]
    assert httpd.cmdline == ("httpd", "-u", "www", "-p", "8089", "-h", "/srv/www")
    assert (httpd.exe, httpd.cwd) == ("/bin/busybox", "/srv/www")  # busybox's find has no -printf: readlink
    assert (httpd.uid, httpd.user) == (33, "www")  # no getent: the name from /etc/passwd
    assert httpd.rss > 0 and httpd.create_time > time.time() - 3600  # CLK_TCK and page size from auxv
    assert bad.processes(timeout=20, select=lambda p: p.name == "httpd") == []
    # bad's root has no CAP_SYS_PTRACE: a process of another user has its links said unreadable, not guessed
    engine.podman("exec", "-d", "--user", "65534", boxes["bad"].name, "sleep", "3599")
    for _ in range(50):  # podman exec -d returns once it is started, perhaps not yet exec'd
        found = bad.processes(timeout=20, fields={"exe", "user"}, select=lambda p: p.cmdline == ("sleep", "3599"))
        if found:
            break
        time.sleep(0.1)
    (other,) = found
    assert other.uid == 65534 and other.exe is None and other.unreadable == {"exe"}
    owners = good.listeners(PORT, timeout=20, fields={"user"})  # /proc/net/tcp and fd links: busybox has no ss
    assert owners.pids == {httpd.pid} and owners.unknown == 0 and owners.owners[httpd.pid].name == "httpd"
    other = bad.listeners(PORT, timeout=20, fields={"user"})
    assert [(p.name, p.user) for p in other.owners.values()] == [("nc", "0")]  # no /etc/passwd: the uid
    assert good.listeners(PORT + 1, timeout=20).pids == frozenset()


# --- a run of the daily suite -------------------------------------------------------------------------

def test_the_daily_suite_checks_busybox_hosts(engine, boxes, tmp_path):
    ips = {name: box.attrs["NetworkSettings"]["IPAddress"] for name, box in boxes.items()}
    project = make_project(tmp_path, textwrap.dedent(f"""\
        name: boxes
        hosts:
          good: {{url: "podman://{boxes['good'].name}"}}
          bad: {{url: "podman://{boxes['bad'].name}"}}
        file:
          - {{name: backup, hosts: all, path: /srv/backup.sql, min_size: 1KB, max_age: 1d}}
          - name: conf
            hosts: all
            path: /srv/app.json
            content: {{format: json, expect: ["mode == 'on'"]}}
        log:
          - {{name: app, hosts: all, path: /srv/log/app.log, last_lines: 100, patterns: [{{regex: ERROR}}]}}
        host:
          - name: res
            hosts: all
            cpu_sample: 0.2
            cpu_percent: 100.1
            memory_percent: 100.1
            disks: [{{path: /srv/data, used_percent: 99}}]
        command:
          - name: args
            hosts: all
            argv: {ARGV!r}
            stdout_regex: '^\\[two words\\]\\[\\$HOME\\]\\[\\*\\]\\[\\$\\(id\\)\\]\\[a;b\\]$'
          - {{name: ready, hosts: all, argv: [test, -e, /srv/ready]}}
        process:
          - {{name: server, hosts: all, cmdline: '^httpd -u www -p {PORT}', user: www}}
        tcp:
          - {{name: port-good, hosts: good, host: {ips['good']}, port: {PORT}, listening_process: '^httpd$',
             listening: {{user: www}}}}
          - {{name: port-bad, hosts: bad, host: {ips['bad']}, port: {PORT}, listening_process: '^httpd$',
             listening: {{user: www}}}}
        """))
    run = run_pytest(project, "-q", env={"CONTAINERS_CONF": engine.env["CONTAINERS_CONF"]})
    status = run.status()
    for host in ("good", "bad"):
        assert status[f"test_reachable[reachable@{host}]"] == "pass", run.output
    for check in ("backup", "conf", "app", "res", "args", "ready", "server"):
        assert status[f"test_{kind(check)}[{check}@good]"] == "pass", (check, messages(run))
    assert status["test_tcp[port-good@good]"] == "pass", messages(run)
    assert status["test_command[args@bad]"] == "pass", messages(run)
    failed = messages(run, "bad")
    assert set(failed) == {"backup@bad", "conf@bad", "app@bad", "res@bad", "ready@bad", "server@bad",
                           "port-bad@bad"}, failed
    assert "/srv/backup.sql: file does not exist" in failed["backup@bad"]
    assert "mode == 'on'" in failed["conf@bad"]
    assert "ERROR disk full" in str(run_result(run, "app@bad")["evidence"]), failed["app@bad"]
    assert "used_percent" in failed["res@bad"] and "/srv/data" in failed["res@bad"]
    assert "exit code == 0: observed 1" in failed["ready@bad"]
    assert "no process matches" in failed["server@bad"]
    assert f"port {PORT} is owned by nc (pid " in failed["port-bad@bad"]


KINDS = {"backup": "file", "conf": "file", "app": "log", "res": "host", "args": "command", "ready": "command",
         "server": "process"}


def kind(check: str) -> str:
    return KINDS[check]


def run_result(run, name: str) -> dict:
    return next(t["metadata"]["opsgate"] for t in run.report()["tests"] if t["nodeid"].endswith(f"[{name}]"))


def messages(run, host: str | None = None) -> dict[str, str]:
    """check@host -> message of the failed checks (of ``host`` only when given)."""
    found = {}
    for test in run.report()["tests"]:
        result = test["metadata"]["opsgate"]
        name = test["nodeid"].rsplit("[", 1)[-1].rstrip("]")
        if result["status"] != "pass" and (host is None or name.endswith(f"@{host}")):
            found[name] = result.get("message", "")
    return found
