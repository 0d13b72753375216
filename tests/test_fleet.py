"""Many hosts (issue 14): an environment's ``hosts:``, one test per (check, host), reachability as
the one root cause of an unreachable host, the host in results and reports.

Hosts here are real: ``local://`` testinfra hosts (commands through a shell on this machine),
podman containers (``podman://``), ssh to a port nothing listens on (refused), and real sshd
servers, each in its own network namespace (tests/support/sshhosts.py).
"""

from __future__ import annotations

import importlib.util
import shutil
import textwrap
import uuid
from pathlib import Path

import pytest

from opsgate import envfile
from opsgate.hosts import HostEntry, HostOptions
from opsgate.model import FileCheck
from opsgate.probes import ProbeContext
from opsgate.probes.reachable import ReachableCheck
from opsgate.runner import run_check
from opsgate.targets.fleet import Fleet
from tests.support.http_target import free_port
from tests.support.project import make_project, run_pytest
from tests.support.sshhosts import fleet_fixture


def load_text(tmp_path: Path, text: str, **kwargs) -> envfile.LoadedEnvironment:
    path = tmp_path / "env.yaml"
    path.write_text(textwrap.dedent(text))
    return envfile.load(path, **kwargs)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(envfile.EnvFileError) as caught:
        load_text(tmp_path, text)
    return [str(p).replace(f"{tmp_path}/", "") for p in caught.value.problems]


LOCAL_HOSTS = """
name: shop
hosts:
  web1: {url: "local://", groups: [web]}
  web2: {url: "local://", groups: [web]}
  db1: "local://"
"""


# --- the environment file --------------------------------------------------------------------


def test_a_check_with_hosts_is_one_check_per_host_with_its_reachable_prerequisite(tmp_path):
    loaded = load_text(tmp_path, LOCAL_HOSTS + textwrap.dedent("""\
        process:
          - name: server
            hosts: web
            severity: P0
            process_name: python3
        file:
          - name: conf
            hosts: web1
            path: /etc/hostname
            depends_on: [server, here]
            cadence: [daily, weekly]
          - name: here
            path: /etc/hostname
          - name: dbconf
            hosts: db1
            path: /etc/hostname
        """))
    items = {i.name: i for i in loaded.env.items()}
    assert list(items) == ["reachable@web1", "server@web1", "reachable@web2", "server@web2", "conf@web1", "here",
                           "reachable@db1", "dbconf@db1"]
    assert items["server@web1"].on_host == "web1" and items["here"].on_host is None
    # depends_on: reachability first, then the same host's copy where the prerequisite runs there
    assert items["conf@web1"].depends_on == ["reachable@web1", "server@web1", "here"]
    # the reachable check: the highest severity of its host's checks, every cadence they run in
    assert items["reachable@web1"].severity == "P0" and items["reachable@db1"].severity == "P2"
    assert items["reachable@web1"].cadence == ["daily", "weekly"] and items["reachable@web2"].cadence == ["daily"]
    assert [i.name for i in loaded.env.items(cadence="weekly")] == ["reachable@web1", "conf@web1"]
    assert [i.name for i in loaded.env.configured()] == ["server", "conf", "here", "dbconf"]


def test_unknown_host_or_group_is_a_load_error_naming_the_known_ones(tmp_path):
    found = problems(tmp_path, LOCAL_HOSTS + "file:\n  - name: conf\n    hosts: [web, wbe2]\n    path: /etc/hostname\n")
    assert found == ["env.yaml:9: file[0].hosts[1] (conf): expected a host, a group or all (hosts web1, web2, db1; "
                     "groups web; all), seen 'wbe2'; did you mean 'web2'?"]


def test_hosts_without_a_hosts_section_is_a_load_error(tmp_path):
    found = problems(tmp_path, "name: x\nfile:\n  - name: conf\n    hosts: web1\n    path: /etc/hostname\n")
    assert len(found) == 1 and "file[0].hosts (conf)" in found[0] and "no hosts (the environment has no hosts: " \
        "section)" in found[0] and "seen 'web1'" in found[0]


def test_hosts_on_a_kind_that_connects_from_here_is_a_load_error(tmp_path):
    found = problems(tmp_path, LOCAL_HOSTS + "http:\n  - name: api\n    url: http://127.0.0.1:1/\n    hosts: web\n")
    assert len(found) == 1
    assert found[0].startswith("env.yaml:10: http[0].hosts (api): expected no hosts: on a http check")


def test_a_tcp_check_on_hosts_must_not_connect_to_this_machine(tmp_path):
    found = problems(tmp_path, LOCAL_HOSTS + "tcp:\n  - name: port\n    port: 80\n    hosts: all\n")
    assert len(found) == 1 and "expected connect: false" in found[0] and "127.0.0.1, this machine" in found[0]
    ok = load_text(tmp_path, LOCAL_HOSTS + "tcp:\n  - name: port\n    port: 80\n    connect: false\n    hosts: all\n")
    assert [i.name for i in ok.env.items("tcp")] == ["port@web1", "port@web2", "port@db1"]


def test_depends_on_a_check_of_other_hosts_is_a_load_error(tmp_path):
    found = problems(tmp_path, LOCAL_HOSTS + textwrap.dedent("""\
        file:
          - name: a
            hosts: web1
            path: /etc/hostname
          - name: b
            hosts: db1
            path: /etc/hostname
            depends_on: [a]
          - name: c
            path: /etc/hostname
            depends_on: [a]
        """))
    assert any("file[1].depends_on[0] (b): expected 'a' to run on every host this check runs on" in p
               and "not on db1" in p for p in found), found
    assert any("file[2].depends_on[0] (c): expected a check that runs here, seen 'a'" in p for p in found), found


def test_bad_host_entries_are_load_errors(tmp_path):
    found = problems(tmp_path, """
        name: x
        hosts:
          web1: {url: "telnet://old-box"}
          all: "local://"
          "bad name": "local://"
        host_options: {per_host_concurrency: 0, identity_fil: /k}
        """.replace("\n        ", "\n"))
    text = "\n".join(found)
    assert "hosts.web1.url" in text and "expected a pytest-testinfra host spec" in text and "telnet://old-box" in text
    assert "per_host_concurrency" in text and "identity_fil" in text
    assert "bad name" in text


def test_a_password_written_in_a_host_url_is_a_load_error(tmp_path):
    found = problems(tmp_path, 'name: x\nhosts:\n  web1: "paramiko://deploy:hunter2-literal@10.0.0.1"\n')
    assert len(found) == 1 and "expected the password from the environment" in found[0]
    assert "hunter2-literal" not in found[0]


def test_a_password_from_a_variable_is_a_secret(tmp_path):
    from opsgate.redact import REDACTOR

    load_text(tmp_path, 'name: x\nhosts:\n  web1: "paramiko://deploy:${WEB_PW}@10.0.0.1"\n',
              environ={"WEB_PW": "s3cret-fleet-pw"})
    assert REDACTOR.text("login with s3cret-fleet-pw") == "login with ***"


def test_a_password_in_an_ssh_url_is_refused(tmp_path):
    """testinfra's ssh backend runs ``sshpass -p PASSWORD ssh ...``: readable in any user's ps."""
    path = tmp_path / "env.yaml"
    path.write_text('name: x\nhosts:\n  web1: "ssh://deploy:${WEB_PW}@10.0.0.1"\n')
    with pytest.raises(envfile.EnvFileError) as caught:
        envfile.load(path, environ={"WEB_PW": "s3cret-fleet-pw"})
    assert "expected no password in an ssh:// url" in str(caught.value)
    assert "s3cret-fleet-pw" not in str(caught.value)


def test_turning_host_key_checking_off_is_warned(tmp_path):
    with pytest.warns(UserWarning, match="host keys are NOT checked"):
        loaded = load_text(tmp_path, 'name: x\nhosts:\n  web1: "ssh://root@10.0.0.1"\n'
                                     'host_options: {insecure_no_host_key_check: true}\n')
    from opsgate.hosts import hosts_block

    assert hosts_block(loaded.env) == {"web1": {"groups": [], "transport": "ssh", "host_key_checked": False}}


def test_an_inventory_without_ansible_says_to_install_ansible_core(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("sys.executable", str(tmp_path / "venv" / "bin" / "python"))  # no ansible beside it
    (tmp_path / "inventory.ini").write_text("[web]\nweb1\n")
    found = problems(tmp_path, "name: x\ninventory: {file: inventory.ini, pattern: web}\n")
    assert len(found) == 1 and "inventory.file" in found[0] and "pip install ansible-core" in found[0]


def test_an_inventory_with_ansible_outside_path_says_to_activate_the_virtualenv(tmp_path, monkeypatch):
    """ansible-core installed in opsgate's virtualenv, run as .venv/bin/pytest without activating it:
    testinfra's ansible backend would not find ansible, so the load error says what to do."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "ansible-inventory").write_text("#!/bin/sh\nexit 1\n")
    (venv_bin / "ansible-inventory").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("sys.executable", str(venv_bin / "python"))
    (tmp_path / "inventory.ini").write_text("[web]\nweb1\n")
    found = problems(tmp_path, "name: x\ninventory: {file: inventory.ini, pattern: web}\n")
    assert len(found) == 1 and "seen it only in " in found[0] and "venv/bin" in found[0], found
    assert "activate the virtualenv" in found[0]


# --- targets ---------------------------------------------------------------------------------


def test_one_target_per_host_and_the_context_for_a_host(tmp_path):
    fleet = Fleet({"a": HostEntry(url="local://"), "b": HostEntry(url="local://")}, HostOptions(), tmp_path)
    ctx = ProbeContext(tmp_path, fleet=fleet)
    try:
        a, b = ctx.for_host("a"), ctx.for_host("b")
        assert a.target is ctx.for_host("a").target and a.target is not b.target
        assert a.shared is ctx.shared and a.base_dir == tmp_path and (a.host, b.host) == ("a", "b")
        item = FileCheck(name="hostname", path="/etc/hostname").model_copy(update={"name": "hostname@b"})
        item._on_host = "b"
        result = run_check(item, ctx)
        assert result.status == "pass", result.message
    finally:
        fleet.close()


def test_per_host_concurrency_bounds_the_operations_in_flight_on_a_host(tmp_path):
    """per_host_concurrency: 1 - while one operation runs on the host, another waits for the slot
    (and gives up at its own timeout, saying why); another host is not held up."""
    import threading

    fleet = Fleet({"a": HostEntry(url="local://"), "b": HostEntry(url="local://")},
                  HostOptions(per_host_concurrency=1), tmp_path)
    a = fleet.target("a")
    busy = threading.Thread(target=lambda: a._sh("sleep 3", [], 10), daemon=True)
    try:
        busy.start()
        while a._slots._value:  # the sleep holds a's only slot
            busy.join(0.01)
        with pytest.raises(TimeoutError, match="no free connection slot within 0.5s"):
            a.ping(timeout=0.5)
        fleet.target("b").ping(timeout=5)
    finally:
        busy.join(10)
        fleet.close()


@pytest.mark.negative("reachable")
def test_a_host_refusing_connections_fails_reachable_with_the_cause(tmp_path):
    port = free_port()
    fleet = Fleet({"web9": HostEntry(url=f"ssh://nobody@127.0.0.1:{port}")}, HostOptions(connect_timeout=5), tmp_path)
    ctx = ProbeContext(tmp_path, fleet=fleet)
    item = ReachableCheck.model_construct(name="reachable@web9", timeout=5.0)
    item._on_host = "web9"
    try:
        result = run_check(item, ctx)
    finally:
        fleet.close()
    assert result.status == "fail"
    assert result.message == f"web9: connection refused by 127.0.0.1:{port} (no ssh server listens there)"
    assert "connect_s" in result.evidence["observed"]


# --- runs ------------------------------------------------------------------------------------


def test_a_run_over_local_hosts_ids_hosts_in_results_and_the_report(tmp_path):
    project = make_project(tmp_path, LOCAL_HOSTS + textwrap.dedent("""\
        file:
          - name: hostname
            hosts: all
            path: /etc/hostname
          - name: missing
            hosts: web2
            path: /nonexistent/opsgate-fleet
        """))
    run = run_pytest(project, "-q")
    status = run.status()
    assert status == {"test_reachable[reachable@web1]": "pass", "test_file[hostname@web1]": "pass",
                      "test_reachable[reachable@web2]": "pass", "test_file[hostname@web2]": "pass",
                      "test_reachable[reachable@db1]": "pass", "test_file[hostname@db1]": "pass",
                      "test_file[missing@web2]": "fail"}, run.output
    report = run.report()
    hosts = {t["nodeid"].rsplit("::", 1)[-1]: t["metadata"]["opsgate"]["host"] for t in report["tests"]}
    assert hosts["test_file[missing@web2]"] == "web2" and hosts["test_reachable[reachable@db1]"] == "db1"
    assert report["opsgate"]["hosts"] == {"web1": {"groups": ["web"], "transport": "local"},
                                          "web2": {"groups": ["web"], "transport": "local"},
                                          "db1": {"groups": [], "transport": "local"}}
    # -k selects by host name
    only = run_pytest(project, "-q", "-k", "web1", "--collect-only")
    ids = sorted(line.rsplit("::", 1)[-1] for line in only.output.splitlines() if "::" in line)
    assert ids == ["test_file[hostname@web1]", "test_reachable[reachable@web1]"], only.output


# --- real sshd hosts -------------------------------------------------------------------------
# Each host is an sshd in its own network, mount and PID namespaces: a process listing on db1
# shows db1's processes only, and a file written to one host's fleet.srv is seen there only.

ssh_fleet = fleet_fixture(3, names=["web1", "web2", "db1"])


def fleet_env(fleet, *, known_hosts: str | None = None, extra_hosts: str = "", checks: str = "") -> str:
    """An environment naming the three sshd hosts, checked with opsgate's own ssh options
    (known_hosts and identity file from host_options, not the test fleet's ssh_config)."""
    groups = {"web1": "web", "web2": "web", "db1": "db"}
    lines = [f"  {h.name}: {{url: \"ssh://{h.hostspec}\", groups: [{groups[h.name]}]}}" for h in fleet]
    return "\n".join([
        "name: shop", "hosts:", *lines, extra_hosts.rstrip(),
        "host_options:", f"  known_hosts: {known_hosts or fleet.known_hosts}",
        f"  identity_file: {fleet.identity_file}", "  connect_timeout: 5s", "", checks]) + "\n"


def fleet_checks(fleet, token: str) -> str:
    """A server process, its config file, a command and the host's resources, on every host."""
    return textwrap.dedent(f"""\
        process:
          - name: server
            hosts: all
            severity: P0
            cmdline: '^sleep 3000\\.{token}$'
        file:
          - name: config
            hosts: all
            path: {fleet.srv}/app/config.yml
            contains: ["port: 8080"]
        command:
          - name: whoami
            hosts: web
            argv: [id, -un]
            stdout_regex: '^root$'
        host:
          - name: resources
            hosts: [db, web1, web2]
            severity: P1
            disks: [{{path: /}}]
        """)


def address(host) -> str:
    """How opsgate names a host's address: ``10.a.b.2``, or ``127.0.0.1:PORT`` without namespaces."""
    return host.hostspec.split("@", 1)[1]


@pytest.fixture
def token():
    return f"{uuid.uuid4().int % 10**9:09d}"


@pytest.fixture
def servers(ssh_fleet, token):
    """Start the server (a uniquely named sleep) and its config on the hosts asked for."""
    started: list[tuple] = []

    def start(*names: str) -> None:
        for host in ssh_fleet:
            host.write("app/config.yml", "port: 8080\n")
            if host.name in names:
                started.append((host, host.spawn(["sleep", f"3000.{token}"])))

    yield start
    for host, pid in started:
        host.kill(pid)


def test_the_same_environment_passes_on_three_hosts(tmp_path, ssh_fleet, servers, token):
    ssh_fleet.require_isolation()
    servers("web1", "web2", "db1")
    project = make_project(tmp_path, fleet_env(ssh_fleet, checks=fleet_checks(ssh_fleet, token)))
    run = run_pytest(project, "-q")
    assert run.returncode == 0, run.output
    status = run.status()
    expected = {f"test_{kind}[{name}@{host}]" for kind, name, hosts in (
        ("reachable", "reachable", ("web1", "web2", "db1")), ("process", "server", ("web1", "web2", "db1")),
        ("file", "config", ("web1", "web2", "db1")), ("command", "whoami", ("web1", "web2")),
        ("host", "resources", ("web1", "web2", "db1"))) for host in hosts}
    assert status == dict.fromkeys(expected, "pass"), run.output
    report = run.report()
    assert report["opsgate"]["hosts"] == {
        "web1": {"groups": ["web"], "transport": "ssh", "host_key_checked": True},
        "web2": {"groups": ["web"], "transport": "ssh", "host_key_checked": True},
        "db1": {"groups": ["db"], "transport": "ssh", "host_key_checked": True}}
    by_id = {t["nodeid"].rsplit("::", 1)[-1]: t["metadata"]["opsgate"] for t in report["tests"]}
    assert by_id["test_process[server@db1]"]["host"] == "db1"
    assert by_id["test_process[server@db1]"]["depends_on"] == ["reachable@db1"]
    assert by_id["test_reachable[reachable@web1]"]["severity"] == "P0"  # the highest of web1's checks
    assert by_id["test_reachable[reachable@web1]"]["evidence"]["observed"]["connect_s"] > 0
    # the server seen on each host is that host's own process
    pids = {h: by_id[f"test_process[server@{h}]"]["evidence"]["details"]["processes"][0]["pid"] for h in ("web1", "db1")}
    assert all(pid for pid in pids.values())


def test_a_process_missing_on_one_host_fails_exactly_that_pair(tmp_path, ssh_fleet, servers, token):
    ssh_fleet.require_isolation()
    servers("web1", "web2")  # not on db1
    project = make_project(tmp_path, fleet_env(ssh_fleet, checks=fleet_checks(ssh_fleet, token)))
    run = run_pytest(project, "-q")
    status = run.status()
    failed = {test for test, outcome in status.items() if outcome != "pass"}
    assert failed == {"test_process[server@db1]"}, run.output
    message = next(t["metadata"]["opsgate"]["message"] for t in run.report()["tests"] if "server@db1" in t["nodeid"])
    assert message.startswith(f"processes matching /^sleep 3000\\.{token}$/: count >= 1: observed 0"), message
    assert "server@db1" in run.output


def run_broken(project: Path, breaks, repairs):
    """``pytest checks/daily`` while a host is broken (``breaks``), repaired afterwards whatever happens."""
    breaks()
    try:
        return run_pytest(project, "-q")
    finally:
        repairs()


def test_an_unreachable_host_is_one_root_cause_blocking_its_checks(tmp_path, ssh_fleet, servers, token):
    ssh_fleet.require_isolation()  # breaks hosts / reads fleet.srv: needs the namespaced hosts
    servers("web1", "web2", "db1")
    project = make_project(tmp_path, fleet_env(ssh_fleet, checks=fleet_checks(ssh_fleet, token)))
    web2 = ssh_fleet["web2"]
    run = run_broken(project, web2.unreachable, web2.reachable)
    status = run.status()
    assert status["test_reachable[reachable@web2]"] == "fail", run.output
    on_web2 = {t for t in status if t.endswith("@web2]") and "reachable" not in t}
    assert on_web2 == {"test_process[server@web2]", "test_file[config@web2]", "test_command[whoami@web2]",
                       "test_host[resources@web2]"}
    assert all(status[t] == "blocked" for t in on_web2), status
    assert all(s == "pass" for t, s in status.items() if not t.endswith("@web2]")), run.output
    by_id = {t["nodeid"].rsplit("::", 1)[-1]: t["metadata"]["opsgate"] for t in run.report()["tests"]}
    assert by_id["test_process[server@web2]"]["blocked_by"] == ["reachable@web2"]
    message = by_id["test_reachable[reachable@web2]"]["message"]
    assert message.startswith(f"web2: no route to {address(web2)}") or "no answer from" in message, message
    assert run.report()["opsgate"]["counts"]["fail"] == 1, run.report()["opsgate"]["counts"]


def test_a_hanging_host_costs_its_timeout_and_blocks_its_checks(tmp_path, ssh_fleet, servers, token):
    ssh_fleet.require_isolation()  # breaks hosts / reads fleet.srv: needs the namespaced hosts
    servers("web1", "web2", "db1")
    env = fleet_env(ssh_fleet, checks=fleet_checks(ssh_fleet, token)).replace("connect_timeout: 5s", "connect_timeout: 2s")
    project = make_project(tmp_path, env)
    db1 = ssh_fleet["db1"]
    run = run_broken(project, db1.hang, db1.resume)
    status = run.status()
    assert status["test_reachable[reachable@db1]"] == "fail", run.output
    assert {t: s for t, s in status.items() if t.endswith("@db1]") and "reachable" not in t} == {
        "test_process[server@db1]": "blocked", "test_file[config@db1]": "blocked", "test_host[resources@db1]": "blocked"}
    assert all(s == "pass" for t, s in status.items() if not t.endswith("@db1]")), run.output
    assert f"db1: no answer from {address(db1)} within 2s" in run.output


def test_a_wrong_host_key_is_refused_with_a_clear_message(tmp_path, ssh_fleet, servers, token):
    ssh_fleet.require_isolation()  # breaks hosts / reads fleet.srv: needs the namespaced hosts
    servers("web1", "web2", "db1")
    wrong = ssh_fleet.wrong_known_hosts()
    project = make_project(tmp_path, fleet_env(ssh_fleet, known_hosts=str(wrong), checks=fleet_checks(ssh_fleet, token)))
    run = run_pytest(project, "-q")
    status = run.status()
    for host in ssh_fleet:
        assert status[f"test_reachable[reachable@{host.name}]"] == "fail", run.output
        assert f"{host.name}: host key verification failed for {address(host)}" in run.output
        assert status[f"test_process[server@{host.name}]"] == "blocked"
    assert str(wrong) in run.output  # which known_hosts refused it
    # nothing ran on a host whose key was refused: not even the reachable check's command
    assert run.returncode != 0


def test_no_credential_appears_in_any_output(tmp_path, ssh_fleet, servers, token):
    """A host's password comes only from ${VAR} and is a secret; the private key is a path."""
    ssh_fleet.require_isolation()  # breaks hosts / reads fleet.srv: needs the namespaced hosts
    servers("web1", "web2", "db1")
    password = "fleet-pw-" + token
    db1 = ssh_fleet["db1"]
    extra = f'  vault: "paramiko://root:${{VAULT_PW}}@{db1.hostspec.split("@", 1)[1]}"'
    checks = fleet_checks(ssh_fleet, token) + textwrap.dedent("""\
        log:
          - name: auth
            hosts: vault
            path: /var/log/none-such.log
            patterns: [{regex: ERROR}]
        """)
    project = make_project(tmp_path, fleet_env(ssh_fleet, extra_hosts=extra, checks=checks))
    run = run_pytest(project, "-q", "-rA", env={"VAULT_PW": password})
    key = Path(ssh_fleet.identity_file).read_text()
    secret_lines = [line for line in key.splitlines() if line and "PRIVATE KEY" not in line]
    outputs = [run.output, run.report_text] + [p.read_text() for p in (project / "reports").rglob("*.json")]
    for text in outputs:
        assert password not in text
        assert not any(line in text for line in secret_lines)
    assert run.status()["test_process[server@web1]"] == "pass", run.output
    assert run.report()["opsgate"]["hosts"]["vault"] == {"groups": [], "transport": "paramiko", "host_key_checked": True}
    by_id = {t["nodeid"].rsplit("::", 1)[-1]: t["metadata"]["opsgate"] for t in run.report()["tests"]}
    if importlib.util.find_spec("paramiko") is None:
        assert by_id["test_reachable[reachable@vault]"]["message"] == \
            "vault: cannot make its connection: paramiko:// needs paramiko (pip install paramiko), or use ssh://"
        assert by_id["test_log[auth@vault]"]["status"] == "blocked"
    else:  # paramiko logs in with the identity file (the host takes the key); the log is missing there
        assert by_id["test_reachable[reachable@vault]"]["status"] == "pass"
        assert by_id["test_log[auth@vault]"]["status"] == "fail"
        assert "/var/log/none-such.log" in by_id["test_log[auth@vault]"]["message"]


def test_the_readme_example_of_many_hosts_loads(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Many hosts", 1)[1].split("\n## ", 1)[0]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    loaded = load_text(tmp_path, example)
    names = [i.name for i in loaded.env.items()]
    assert names == ["reachable@web1", "server@web1", "reachable@web2", "server@web2", "app-errors@web1",
                     "app-errors@web2", "config@web1", "config@web2", "reachable@db1", "config@db1", "reachable@box",
                     "config@box"]
    assert loaded.env.items()[names.index("app-errors@web2")].depends_on == ["reachable@web2", "server@web2"]


def test_opsgate_list_shows_each_check_per_host(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "env.yaml"
    path.write_text(LOCAL_HOSTS + "file:\n  - name: conf\n    hosts: web\n    path: /etc/hostname\n")
    out = subprocess.run([sys.executable, "-m", "opsgate.cli", "list", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [line.split()[0] for line in out.stdout.splitlines()[1:]]
    assert rows == ["test_reachable[reachable@web1]", "test_file[conf@web1]", "test_reachable[reachable@web2]",
                    "test_file[conf@web2]"]


def test_a_check_named_reachable_on_hosts_is_a_load_error(tmp_path):
    found = problems(tmp_path, LOCAL_HOSTS + "file:\n  - name: reachable\n    hosts: web\n    path: /etc/hostname\n")
    assert len(found) == 1 and "file[0].name (reachable): expected another name" in found[0]


def test_a_host_that_stops_answering_mid_run_costs_one_timeout(tmp_path, ssh_fleet):
    """After one operation outlived its deadline on a hung host, the next ones fail at once
    saying so, instead of each waiting out its own timeout."""
    ssh_fleet.require_isolation()  # breaks hosts / reads fleet.srv: needs the namespaced hosts
    web1 = ssh_fleet["web1"]
    hosts = {"web1": HostEntry(url=f"ssh://{web1.hostspec}")}
    fleet = Fleet(hosts, HostOptions(known_hosts=str(ssh_fleet.known_hosts), identity_file=str(ssh_fleet.identity_file),
                                     connect_timeout=3), tmp_path)
    target = fleet.target("web1")
    try:
        target.ping(timeout=5)
        web1.hang()
        try:
            with pytest.raises(TimeoutError, match="did not answer"):
                target.stat("/etc/hostname", timeout=1)
            with pytest.raises(TimeoutError, match="did not answer .*; not asked again in this run"):
                target.stat("/etc/hostname", timeout=30)
        finally:
            web1.resume()
    finally:
        fleet.close()
        web1.disconnect()


def test_hosts_all_without_any_host_is_a_load_error_not_a_check_run_nowhere(tmp_path):
    found = problems(tmp_path, "name: x\nfile:\n  - name: conf\n    hosts: all\n    path: /etc/hostname\n")
    assert len(found) == 1 and "expected hosts: to name at least one host" in found[0], found


def test_podman_containers_are_hosts_too(tmp_path):
    """testinfra's podman backend: a running container answers; a container that does not exist
    fails its reachable check naming it, and blocks its checks. (The host-level kinds on such a
    busybox container, checked and broken: tests/test_busybox_hosts.py.)"""
    from tests.support.podman import PodmanEngine

    (tmp_path / "podman").mkdir()
    try:
        engine = PodmanEngine(tmp_path / "podman").__enter__()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        box = engine.run("exec sleep 3000")
        gone = f"opsgate-gone-{uuid.uuid4().hex[:8]}"
        project = make_project(tmp_path, textwrap.dedent(f"""\
            name: pods
            hosts:
              box: "podman://{box.name}"
              gone: "podman://{gone}"
            command:
              - {{name: version, hosts: gone, argv: [cat, /etc/os-release]}}
            reachable:
              - {{name: up, hosts: box}}
            """))
        run = run_pytest(project, "-q", env={"CONTAINERS_CONF": engine.env["CONTAINERS_CONF"]})
    finally:
        engine.__exit__(None, None, None)
    assert run.status() == {"test_reachable[reachable@box]": "pass", "test_reachable[up@box]": "pass",
                            "test_reachable[reachable@gone]": "fail", "test_command[version@gone]": "blocked"}, \
        run.output
    message = next(t["metadata"]["opsgate"]["message"] for t in run.report()["tests"] if "reachable@gone" in t["nodeid"])
    assert message.startswith(f"gone: cannot run a command on {gone} (podman): ") and "no container" in message, message
    assert run.report()["opsgate"]["hosts"]["box"] == {"groups": [], "transport": "podman"}


def test_a_key_the_host_does_not_accept_fails_reachable_as_authentication(tmp_path, ssh_fleet):
    import subprocess

    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    web1 = ssh_fleet["web1"]
    fleet = Fleet({"web1": HostEntry(url=f"ssh://{web1.hostspec}")},
                  HostOptions(known_hosts=str(ssh_fleet.known_hosts), identity_file=str(key), connect_timeout=5), tmp_path)
    item = ReachableCheck.model_construct(name="reachable@web1", timeout=5.0)
    item._on_host = "web1"
    try:
        result = run_check(item, ProbeContext(tmp_path, fleet=fleet))
    finally:
        fleet.close()
    assert result.status == "fail"
    assert result.message == f"web1: authentication failed for {address(web1)} (identity file {key})", result.message
    assert key.read_text().splitlines()[1] not in result.message


def test_a_host_password_variable_unset_while_linting_is_no_error(tmp_path):
    loaded = load_text(tmp_path, 'name: x\nhosts:\n  web1: "paramiko://deploy:${WEB_PW}@10.0.0.1"\n', environ={},
                       allow_unset=True)
    assert loaded.unset == ("WEB_PW",)


def test_an_ansible_inventory_gives_the_hosts_and_groups(tmp_path, ssh_fleet):
    """Needs ansible-core (ansible-inventory, and ansible for testinfra's backend); skipped without."""
    import shutil

    if not shutil.which("ansible-inventory") or importlib.util.find_spec("ansible") is None:
        pytest.skip("ansible-core is not installed")
    web1, db1 = ssh_fleet["web1"], ssh_fleet["db1"]
    (tmp_path / "inventory.ini").write_text("\n".join([
        "[web]", f"web1 ansible_host={web1.address} ansible_port={web1.port}",
        "[db]", f"db1 ansible_host={db1.address} ansible_port={db1.port}",
        "[other]", "elsewhere ansible_host=192.0.2.1",
        "[all:vars]", "ansible_user=root", f"ansible_ssh_private_key_file={ssh_fleet.identity_file}",
        f"ansible_ssh_common_args='-o UserKnownHostsFile={ssh_fleet.known_hosts} -o StrictHostKeyChecking=yes'"]) + "\n")
    project = make_project(tmp_path, textwrap.dedent("""\
        name: inv
        inventory: {file: ../inventory.ini, pattern: "web:db"}
        file:
          - {name: conf, hosts: all, path: /etc/hostname}
        command:
          - {name: who, hosts: web, argv: [id, -un], stdout_regex: '^root$'}
        """))
    run = run_pytest(project, "-q")
    assert run.status() == dict.fromkeys(["test_reachable[reachable@db1]", "test_file[conf@db1]",
                                          "test_reachable[reachable@web1]", "test_file[conf@web1]",
                                          "test_command[who@web1]"], "pass"), run.output
    assert run.report()["opsgate"]["hosts"] == {"db1": {"groups": ["db"], "transport": "ansible"},
                                                "web1": {"groups": ["web"], "transport": "ansible"}}


def test_paths_on_a_remote_host_are_the_hosts_own(tmp_path, ssh_fleet):
    """A relative path or ~ on a remote host would name this machine's folder or home: the
    check fails saying the path must be absolute, never reading a local file in its place; a
    command with no cwd runs in the host's own default folder, not this project's."""
    ssh_fleet.require_isolation()
    local_copy = tmp_path / "proj" / "app" / "config.yml"  # exists here, on this machine only
    checks = textwrap.dedent("""\
        file:
          - name: relative-config
            hosts: web1
            path: app/config.yml
        command:
          - name: where
            hosts: web1
            argv: [pwd]
            stdout_regex: '^/root$'
        """)
    project = make_project(tmp_path, fleet_env(ssh_fleet, checks=checks))
    local_copy.parent.mkdir(parents=True)
    local_copy.write_text("port: 8080\n")
    run = run_pytest(project, "-q")
    status = run.status()
    assert status["test_command[where@web1]"] == "pass", run.output
    assert status["test_file[relative-config@web1]"] == "fail", run.output
    message = next(t["metadata"]["opsgate"]["message"] for t in run.report()["tests"] if "relative-config@web1" in t["nodeid"])
    assert "path 'app/config.yml' is not absolute: on host web1 a path must be absolute" in message


@pytest.mark.negative("reachable")
def test_a_host_whose_login_runs_nothing_is_not_reachable(tmp_path, ssh_fleet):
    """A host that says nothing - its account's shell is /bin/true, so every command 'succeeds'
    with exit code 0 and runs nothing - is not reachable: the ping's token never comes back."""
    ssh_fleet.require_isolation()
    web2 = ssh_fleet["web2"]
    with open(web2.passwd, "a") as handle:  # written in place: the bind mount holds the inode
        handle.write("silent:x:0:0::/root:/bin/true\n")  # uid 0: it can read the fleet's authorized_keys
    spec = web2.hostspec.replace("root@", "silent@", 1)
    fleet = Fleet({"web2": HostEntry(url=f"ssh://{spec}")},
                  HostOptions(known_hosts=str(ssh_fleet.known_hosts), identity_file=str(ssh_fleet.identity_file),
                              connect_timeout=5), tmp_path)
    try:
        result = run_check(ReachableCheck(name="reachable", timeout=10),
                           ProbeContext(tmp_path, fleet=fleet).for_host("web2"))
    finally:
        fleet.close()
    assert result.status == "fail", result.message
    assert "did not get the token back" in result.message


def paramiko_env(fleet, token: str, known_hosts: str | None = None) -> str:
    """The same environment with every host reached through paramiko instead of OpenSSH."""
    return fleet_env(fleet, known_hosts=known_hosts, checks=fleet_checks(fleet, token)).replace(
        'url: "ssh://', 'url: "paramiko://')


def test_paramiko_hosts_pass_the_same_checks_with_their_keys_checked(tmp_path, ssh_fleet, servers, token):
    pytest.importorskip("paramiko")
    ssh_fleet.require_isolation()
    servers("web1", "web2")  # not on db1: the same pair fails as over ssh
    project = make_project(tmp_path, paramiko_env(ssh_fleet, token))
    run = run_pytest(project, "-q")
    status = run.status()
    assert {t for t, s in status.items() if s != "pass"} == {"test_process[server@db1]"}, run.output
    assert len(status) == 14
    assert run.report()["opsgate"]["hosts"]["web1"] == {"groups": ["web"], "transport": "paramiko",
                                                         "host_key_checked": True}


@pytest.mark.parametrize("missing", [False, True], ids=["changed-key", "unknown-host"])
def test_paramiko_refuses_a_wrong_or_unknown_host_key(tmp_path, ssh_fleet, servers, token, missing):
    pytest.importorskip("paramiko")
    ssh_fleet.require_isolation()
    servers("web1", "web2", "db1")
    if missing:
        known = tmp_path / "known_hosts"
        known.write_text("")
    else:
        known = ssh_fleet.wrong_known_hosts()
    project = make_project(tmp_path, paramiko_env(ssh_fleet, token, known_hosts=str(known)))
    run = run_pytest(project, "-q")
    status = run.status()
    by_id = {t["nodeid"].rsplit("::", 1)[-1]: t["metadata"]["opsgate"] for t in run.report()["tests"]}
    for host in ssh_fleet:
        assert status[f"test_reachable[reachable@{host.name}]"] == "fail", run.output
        assert status[f"test_process[server@{host.name}]"] == "blocked"
        message = by_id[f"test_reachable[reachable@{host.name}]"]["message"]
        assert message.startswith(f"{host.name}: host key verification failed for {address(host)}"), message
    assert run.returncode != 0


def test_checks_on_a_host_run_as_the_sudo_user_its_spec_names(tmp_path, ssh_fleet):
    """``?sudo=true&sudo_user=...`` (testinfra's own spec) runs every operation through sudo, on
    the ssh client and the master's sessions alike: a root-only file read as root passes, the
    same check as the host's app user fails with permission denied (never passes unread)."""
    if not shutil.which("sudo"):
        pytest.skip("sudo is not installed (ci/install-services.sh installs it)")
    ssh_fleet.require_isolation()
    web1 = ssh_fleet["web1"]
    secret = web1.write("app/root-only.conf", "port: 8080\n", mode=0o600)
    checks = textwrap.dedent(f"""\
        file:
          - {{name: conf, hosts: all, path: {secret}, contains: ["port: 8080"]}}
        command:
          - {{name: who, hosts: all, argv: [id, -un], stdout_regex: '^{web1.user}$'}}
        """)

    def env(url: str) -> str:
        return "\n".join(["name: sudo", "hosts:", f'  web1: "{url}"', "host_options:",
                          f"  known_hosts: {ssh_fleet.known_hosts}", f"  identity_file: {ssh_fleet.identity_file}",
                          "", checks])

    as_app = run_pytest(make_project(tmp_path / "app", env(f"ssh://{web1.hostspec}?sudo=true&sudo_user={web1.user}")),
                        "-q")
    status = as_app.status()
    assert status["test_command[who@web1]"] == "pass", as_app.output
    assert status["test_file[conf@web1]"] == "fail", as_app.output
    message = next(t["metadata"]["opsgate"]["message"] for t in as_app.report()["tests"] if "conf@web1" in t["nodeid"])
    assert "permission denied" in message.lower(), message

    as_root = run_pytest(make_project(tmp_path / "root", env(f"ssh://{web1.hostspec}")), "-q")
    assert as_root.status()["test_file[conf@web1]"] == "pass", as_root.output
    assert as_root.status()["test_command[who@web1]"] == "fail"  # root is not the app user
