"""``via: web1`` (issue 14): an http check's request made through a host of the environment,
against real sshd hosts (tests/support/sshhosts.py), each in its own network namespace.

The servers here listen ONLY on a host's own loopback (127.0.0.1 inside web1's namespace):
reached with ``via: web1``, not reached from this machine without it, nor via web2 (whose
loopback has nothing there: the failure names web2's refusal). TLS through the route still
verifies the URL's name (SNI) against its CA, and measures the certificate's days there. Via an
unreachable host the check is blocked by ``reachable@host``; a bad ``via:`` is a load error
naming file, line, key, expected and seen; no credential reaches any output.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest

from opsgate.hosts import HostEntry, HostOptions
from opsgate.probes import ProbeContext
from opsgate.probes.http import HttpCheck
from opsgate.probes.metrics import MetricsCheck
from opsgate.probes.prometheus import PrometheusCheck
from opsgate.probes.redis import RedisCheck
from opsgate.runner import run_check
from opsgate.targets.fleet import Fleet
from tests.support.http_target import TlsCert, free_port
from tests.support.project import make_project, run_pytest
from tests.support.sshhosts import fleet_fixture
from tests.test_fleet import load_text, problems

pytest.importorskip("testinfra")

ssh_fleet = fleet_fixture(2, names=["web1", "web2"])

TLS_SERVER = """\
import http.server, ssl, sys
port, cert, key, root = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=root)
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


HOSTS = """\
name: shop
hosts:
  web1: {url: "ssh://root@10.0.0.1", groups: [web]}
  box: "podman://box"
"""


# --- the environment file ---------------------------------------------------------------------

def test_via_makes_the_check_depend_on_the_host_being_reachable(tmp_path):
    loaded = load_text(tmp_path, HOSTS + textwrap.dedent("""\
        http:
          - name: api
            url: http://127.0.0.1:8080/health
            via: web1
            severity: P0
            depends_on: [other]
          - name: other
            url: http://127.0.0.1:8081/health
        """))
    items = {i.name: i for i in loaded.env.items()}
    assert list(items) == ["reachable@web1", "api", "other"]
    assert items["api"].depends_on == ["reachable@web1", "other"]
    assert items["api"].on_host is None  # it runs here; only its connections are opened on web1
    assert items["reachable@web1"].severity == "P0" and items["reachable@web1"].on_host == "web1"


def test_opsgate_list_shows_the_via_hosts_reachable_check_first(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "env.yaml"
    path.write_text(HOSTS + HTTP.format("web1"))
    out = subprocess.run([sys.executable, "-m", "opsgate.cli", "list", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["test_reachable[reachable@web1]", "test_http[api]"], out.stdout
    assert rows[1][-1] == "reachable@web1"  # AFTER: what it waits for


HTTP = "http:\n  - name: api\n    url: http://127.0.0.1:1/\n    via: {}\n"


@pytest.mark.negative("http")
@pytest.mark.parametrize("env, expected", [
    (HOSTS + HTTP.format("wbe1"), "expected a host of hosts: (hosts web1, box), seen 'wbe1'; did you mean 'web1'?"),
    (HOSTS + HTTP.format("web"), "expected a host of hosts: (hosts web1, box), seen 'web' (a group: via: names one "
                                 "host); did you mean 'web1'?"),
    (HOSTS + HTTP.format("box"), "expected a host reached over ssh:// (the request goes through a forward over its "
                                 "ssh connection), seen 'box', a podman:// host"),
    (HOSTS + "tcp:\n  - name: api\n    port: 5432\n    via: web1\n",
     "expected no via: on a tcp check; via: (a request made through a host) is for http, metrics, prometheus, "
     "redis"),
    ("name: x\n" + HTTP.format("web1"), "expected a host of hosts: (no hosts (the environment has no hosts: "
                                        "section)), seen 'web1'"),
], ids=["unknown", "group", "not-ssh", "not-http", "no-hosts"])
def test_a_bad_via_is_a_load_error_naming_file_line_key_expected_and_seen(tmp_path, env, expected):
    line = env.count("\n") - 1  # via: is the last line
    kind = env.rsplit("\n", 5)[1].rstrip(":")
    assert problems(tmp_path, env) == [f"env.yaml:{line + 1}: {kind}[0].via (api): {expected}"]


# --- through real sshd hosts ------------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet(ssh_fleet):
    ssh_fleet.require_isolation()  # "only inside web1" needs web1's own network namespace
    return ssh_fleet


@pytest.fixture(scope="module")
def inside(fleet, tmp_path_factory):
    """An HTTP and an HTTPS server listening on web1's own loopback only, serving a token."""
    web1 = fleet["web1"]
    token = uuid.uuid4().hex
    web1.write("www/token.txt", token)
    web1.write("www/metrics", "# TYPE queue_depth gauge\nqueue_depth 3\n")
    web1.write("www/api/v1/alerts", json.dumps({"status": "success", "data": {"alerts": [
        {"state": "firing", "labels": {"alertname": "DiskFull", "severity": "critical"}}]}}))
    cert = TlsCert.self_signed(tmp_path_factory.mktemp("tls"))
    web1.write("tls/cert.pem", cert.cert_path.read_bytes())
    web1.write("tls/key.pem", cert.key_path.read_bytes())
    web1.write("tls/server.py", TLS_SERVER)
    port, tls_port = free_port(), free_port()  # free here too: without via nothing answers on them
    pids = [web1.spawn(["python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", f"{fleet.srv}/www",
                        str(port)]),
            web1.spawn(["python3", f"{fleet.srv}/tls/server.py", str(tls_port), f"{fleet.srv}/tls/cert.pem",
                        f"{fleet.srv}/tls/key.pem", f"{fleet.srv}/www"])]
    wait = ("import socket, sys, time\nfor _ in range(100):\n    try:\n        [socket.create_connection(('127.0.0.1', "
            "int(p)), 1).close() for p in sys.argv[1:]]; break\n    except OSError: time.sleep(0.1)\nelse: sys.exit(1)")
    web1.run(["python3", "-c", wait, str(port), str(tls_port)])
    yield {"token": token, "port": port, "tls_port": tls_port, "cert": cert}
    for pid in pids:
        web1.kill(pid)


def fleet_of(fleet) -> Fleet:
    """The sshd hosts as an environment's fleet: opsgate's own ssh options (host_options)."""
    hosts = {h.name: HostEntry(url=f"ssh://{h.hostspec}") for h in fleet}
    return Fleet(hosts, HostOptions(known_hosts=str(fleet.known_hosts), identity_file=str(fleet.identity_file),
                                    connect_timeout=5))


@pytest.fixture
def ctx(fleet, tmp_path):
    hosts = fleet_of(fleet)
    yield ProbeContext(tmp_path, fleet=hosts)
    hosts.close()


def test_a_server_only_inside_web1_is_reached_via_web1(ctx, inside):
    url = f"http://127.0.0.1:{inside['port']}/token.txt"
    item = HttpCheck(name="inside", url=url, via="web1", body_regex=inside["token"], timeout=15)
    result = run_check(item, ctx)
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["via"] == "web1"
    assert result.evidence["observed"]["status_code"] == 200
    again = run_check(item, ctx)  # the same forward, a kept-alive connection of the route's own pool
    assert again.status == "pass", again.message
    # the forward is a Unix socket in a folder only this user can enter (no loopback port any
    # local user could use), removed with the run's connections
    folder = Path(ctx.fleet.route("web1")._dir)
    assert folder.stat().st_mode & 0o077 == 0 and any(p.is_socket() for p in folder.iterdir())
    ctx.fleet.close()
    assert not folder.exists()


def test_a_route_survives_its_ssh_connection_ending(ctx, inside):
    url = f"http://127.0.0.1:{inside['port']}/token.txt"
    item = HttpCheck(name="inside", url=url, via="web1", body_regex=inside["token"], timeout=15)
    assert run_check(item, ctx).status == "pass"
    ctx.fleet.target("web1").close()  # ssh -O exit: the master ends, and its forwards with it
    again = run_check(item, ctx)  # a new master (the host's target reconnects) and the forward again
    assert again.status == "pass", again.message


@pytest.mark.negative("http")
def test_via_a_host_that_stopped_answering_fails_at_the_checks_deadline(ctx, fleet, inside):
    url = f"http://127.0.0.1:{inside['port']}/token.txt"
    assert run_check(HttpCheck(name="inside", url=url, via="web1", timeout=15), ctx).status == "pass"
    fleet["web1"].hang()  # its sshd stopped: the forward's channel gets no answer
    try:
        stalled = run_check(HttpCheck(name="inside", url=url, via="web1", timeout=2), ctx)
    finally:
        fleet["web1"].resume()
    assert stalled.status in ("fail", "error")
    assert stalled.message.startswith(f"GET {url} via web1: ") and "within 2s" in stalled.message, stalled.message


@pytest.mark.negative("http")
def test_without_via_or_via_another_host_it_is_not_reached(ctx, inside):
    url = f"http://127.0.0.1:{inside['port']}/token.txt"
    direct = run_check(HttpCheck(name="direct", url=url, body_regex=inside["token"], timeout=5), ctx)
    assert direct.status in ("fail", "error") and inside["token"] not in str(direct.evidence)
    assert "connection refused" in direct.message or "body matches" in direct.message, direct.message
    elsewhere = run_check(HttpCheck(name="elsewhere", url=url, via="web2", body_regex=inside["token"], timeout=10), ctx)
    assert elsewhere.status in ("fail", "error")
    assert f"GET {url} via web2: " in elsewhere.message
    assert f"web2 cannot connect to 127.0.0.1:{inside['port']}: Connection refused" in elsewhere.message, \
        elsewhere.message


def test_tls_through_the_host_verifies_the_urls_name(ctx, inside):
    url = f"https://localhost:{inside['tls_port']}/token.txt"
    trusted = run_check(HttpCheck(name="tls", url=url, via="web1", tls_verify=str(inside["cert"].cert_path),
                                  body_regex=inside["token"], cert_min_days=1, timeout=15), ctx)
    assert trusted.status == "pass", trusted.message
    assert 2 < trusted.evidence["observed"]["cert_days_left"] < 3.1


@pytest.mark.negative("http")
def test_tls_through_the_host_refuses_an_untrusted_certificate(ctx, inside):
    url = f"https://localhost:{inside['tls_port']}/token.txt"
    untrusted = run_check(HttpCheck(name="tls", url=url, via="web1", timeout=15), ctx)
    assert untrusted.status in ("fail", "error")
    assert "certificate verify failed" in untrusted.message, untrusted.message
    assert "expires in" in untrusted.message  # measured through the same route


@pytest.mark.negative("metrics")
def test_metrics_are_scraped_through_the_host(ctx, inside):
    url = f"http://127.0.0.1:{inside['port']}/metrics"
    inside_web1 = run_check(MetricsCheck(name="queue", url=url, metric="queue_depth", max_value=10, via="web1",
                                         timeout=15), ctx)
    assert inside_web1.status == "pass", inside_web1.message
    assert inside_web1.evidence["observed"]["via"] == "web1"
    behind_web2 = run_check(MetricsCheck(name="queue", url=url, metric="queue_depth", max_value=10, via="web2",
                                         timeout=10), ctx)
    assert behind_web2.status in ("fail", "error")
    assert behind_web2.message.startswith(f"GET {url} via web2: "), behind_web2.message
    assert f"web2 cannot connect to 127.0.0.1:{inside['port']}: Connection refused" in behind_web2.message


@pytest.mark.negative("prometheus")
def test_prometheus_is_asked_through_the_host(ctx, inside):
    url = f"http://127.0.0.1:{inside['port']}"
    firing = run_check(PrometheusCheck(name="alerts", url=url, no_firing_alerts=True, via="web1", timeout=15), ctx)
    assert firing.status == "fail"  # the alert only web1's Prometheus has
    assert firing.evidence["observed"]["firing_alerts"] == ["DiskFull"], firing.message
    allowed = run_check(PrometheusCheck(name="alerts", url=url, no_firing_alerts=True, allow_alerts=["DiskFull"],
                                        via="web1", timeout=15), ctx)
    assert allowed.status == "pass", allowed.message
    behind_web2 = run_check(PrometheusCheck(name="alerts", url=url, no_firing_alerts=True, via="web2", timeout=10),
                            ctx)
    assert behind_web2.status in ("fail", "error")
    assert f"web2 cannot connect to 127.0.0.1:{inside['port']}: Connection refused" in behind_web2.message, \
        behind_web2.message


@pytest.fixture(scope="module")
def redis_inside(fleet):
    """A Redis server listening on web1's own loopback only."""
    web1, port = fleet["web1"], free_port()
    pid = web1.spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                      "--dir", fleet.srv])
    web1.run(["sh", "-c", f"for i in $(seq 100); do redis-cli -p {port} ping && exit 0; sleep 0.1; done; exit 1"])
    yield port
    web1.kill(pid)


@pytest.mark.negative("redis")
def test_redis_is_checked_through_the_host(ctx, redis_inside):
    url = f"redis://127.0.0.1:{redis_inside}/0"
    inside_web1 = run_check(RedisCheck(name="cache", url=url, role="master", via="web1", timeout=15), ctx)
    assert inside_web1.status == "pass", inside_web1.message
    assert inside_web1.evidence["observed"]["via"] == "web1"
    direct = run_check(RedisCheck(name="cache", url=url, role="master", timeout=5), ctx)
    assert direct.status in ("fail", "error") and "connection refused" in direct.message, direct.message
    behind_web2 = run_check(RedisCheck(name="cache", url=url, via="web2", timeout=10), ctx)
    assert behind_web2.status in ("fail", "error")
    assert behind_web2.message.startswith(f"redis 127.0.0.1:{redis_inside}/0 via web2: "), behind_web2.message
    assert f"web2 cannot connect to 127.0.0.1:{redis_inside}: Connection refused" in behind_web2.message
    tls = run_check(RedisCheck(name="cache", url=url.replace("redis:", "rediss:"), via="web1", timeout=5), ctx)
    assert tls.status in ("fail", "error") and "rediss:// (TLS) cannot go through a host yet" in tls.message


def via_env(fleet, inside) -> str:
    """The two sshd hosts, an http check via web1 (a secret header) and one via web2."""
    hosts = [f"  {h.name}: \"ssh://{h.hostspec}\"" for h in fleet]
    url = f"http://127.0.0.1:{inside['port']}/token.txt"
    return "\n".join(["name: shop", "hosts:", *hosts]) + "\n" + textwrap.dedent(f"""\
        host_options:
          known_hosts: {fleet.known_hosts}
          identity_file: {fleet.identity_file}
          connect_timeout: 3s
        http:
          - name: inside
            url: {url}
            via: web1
            severity: P1
            headers: {{Authorization: "Bearer ${{API_TOKEN}}"}}
            body_regex: "{inside['token']}"
          - name: behind-web2
            url: {url}
            via: web2
            severity: P1
            timeout: 5s
        """)


@pytest.mark.negative("http")
def test_via_an_unreachable_host_is_blocked_by_its_reachable_check(tmp_path, fleet, inside):
    secret = f"via-secret-{uuid.uuid4().hex[:8]}"
    project = make_project(tmp_path, via_env(fleet, inside))
    web2 = fleet["web2"]
    web2.unreachable()
    try:
        run = run_pytest(project, "-q", "-rA", env={"API_TOKEN": secret})
    finally:
        web2.reachable()
    status = run.status()
    assert status == {"test_reachable[reachable@web1]": "pass", "test_http[inside]": "pass",
                      "test_reachable[reachable@web2]": "fail", "test_http[behind-web2]": "blocked"}, run.output
    by_id = {t["nodeid"].rsplit("::", 1)[-1]: t["metadata"]["opsgate"] for t in run.report()["tests"]}
    assert by_id["test_http[behind-web2]"]["blocked_by"] == ["reachable@web2"]
    assert by_id["test_http[inside]"]["evidence"]["observed"]["via"] == "web1"
    assert by_id["test_http[inside]"]["depends_on"] == ["reachable@web1"]
    # no credential in any output: the header's token, the private key
    key_lines = [line for line in Path(fleet.identity_file).read_text().splitlines() if line and "PRIVATE" not in line]
    for text in [run.output, run.report_text] + [p.read_text() for p in (project / "reports").rglob("*.json")]:
        assert secret not in text
        assert not any(line in text for line in key_lines)


def test_the_readme_example_of_via_loads(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Many hosts", 1)[1].split("\n## ", 1)[0]
    hosts, via = (block.split("```", 1)[0] for block in section.split("```yaml\n")[1:3])
    items = {i.name: i for i in load_text(tmp_path, hosts + via).env.items()}
    assert items["admin-api"].via == "web1" and items["admin-api"].depends_on == ["reachable@web1"]
