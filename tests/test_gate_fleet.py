"""A gate over a fleet (issue 14): ``fleet:`` rules on the share of a group's hosts that pass.

Reports are built as the plugin writes them (tests/support/reports.py) with the host of every
result and the run's ``opsgate.hosts`` map, or as a machine checking itself writes them (no
hosts map: its checks are on the report's host); the gate is run as a user runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.gate_helpers import run_gate, write_policy
from tests.support import reports as r
from tests.support.http_target import free_port
from tests.support.project import latest_report, make_project, run_pytest
from tests.support.sshhosts import fleet_fixture

WEB = ("web1", "web2", "web3")

POLICY = """
gates:
  loose:
    block: [P0, P1]
    warn: [P2, P3]
    fleet:
      - {severity: [P0], group: web, at_least: 60%}
  strict:
    block: [P0, P1]
    warn: [P2, P3]
    fleet:
      - {severity: [P0], group: web, at_least: 100%}
  by-name:
    block: [P0, P1]
    fleet:
      - {severity: [P0], group: web, at_least: 60%}
      - {severity: [P0], group: db, at_least: 100%}
    groups: {web: ["web*"], db: ["db?"]}
  by-name-strict:
    block: [P0, P1]
    fleet:
      - {severity: [P0], group: web, at_least: 100%}
    groups: {web: ["web*"]}
  by-name-loose:
    block: [P0, P1]
    fleet:
      - {severity: [P0], group: web, at_least: 60%}
    groups: {web: ["web*"]}
  three-web:
    block: [P0, P1]
    fleet:
      - {severity: [P0], group: web, at_least: 60%, min_hosts: 3}
    groups: {web: ["web*"]}
  no-db:
    block: [P0, P1]
    fleet:
      - {severity: [P0], group: db, at_least: 100%}
  budget:
    block: [P0, P1]
    tolerate: {P0: 1}
    fleet:
      - {severity: [P0], group: web, at_least: 60%}
"""


def on(host: str | None, entry: dict) -> dict:
    """A report entry of a check run on ``host`` (what CheckResult.to_json writes)."""
    entry["metadata"]["opsgate"]["host"] = host
    return entry


def fleet_run(tmp_path, down: tuple[str, ...] = (), hosts=WEB, groups=("web",), name="fleet.json"):
    """One run from a controlling machine ``ctl`` over ``hosts``: per host a reachable check and a
    P0 process check depending on it, plus an http check run from ``ctl`` itself (no host).
    A host in ``down`` is unreachable: its reachable check fails, its process check is blocked."""
    tests = [on(None, r.check("api", "pass", "P0"))]
    for host in hosts:
        broken = host in down
        tests.append(on(host, r.check(f"reachable@{host}", "fail" if broken else "pass", "P0", "reachable",
                                      message=f"{host}: connection refused by 10.77.0.{hosts.index(host)}:22"
                                      if broken else "")))
        tests.append(on(host, r.check(f"server@{host}", "blocked" if broken else "pass", "P0", "process",
                                      blocked_by=[f"reachable@{host}"] if broken else ())))
    doc = r.document(tests, "shop", "ctl")
    doc["opsgate"]["hosts"] = {h: {"groups": list(groups), "transport": "ssh"} for h in hosts}
    return r.write(tmp_path, doc, name)


def self_check(tmp_path, machine: str, status: str = "pass"):
    """A machine checking itself on a timer: its report's host is its hostname, no hosts map."""
    doc = r.document([r.check("api", status, "P0", message="status == 'healthy': observed \"down\"" if status != "pass" else ""),
                      r.check("disk", "pass", "P2", "host")], "shop", machine)
    return r.write(tmp_path, doc, f"{machine}.json")


def test_a_rule_holding_at_2_of_3_hosts_tolerates_the_third_and_a_stricter_one_fails_naming_it(tmp_path):
    policy = write_policy(tmp_path, POLICY)
    report = fleet_run(tmp_path, down=("web3",))
    run = run_gate(report, "--policy", policy, "--gate", "loose")
    assert run.returncode == 0, run.output
    assert "FLEET  rule 1 (P0 on group web, at least 60%): 2 of 3 hosts pass (66.7%): holds" in run.stdout
    assert "TOLERATED" in run.stdout or "tolerated by fleet rule 1" in run.stdout
    assert "verdict: WARN (exit 0)" in run.stdout

    run = run_gate(report, "--policy", policy, "--gate", "strict")
    assert run.returncode == 1, run.output
    assert "FLEET  rule 1 (P0 on group web, at least 100%): 2 of 3 hosts pass (66.7%): broken" in run.stdout
    # the broken host with its one root cause: the blocked process check is counted there
    assert "web3: reachable@web3 (fail: web3: connection refused by 10.77.0.2:22)" in run.stdout
    assert "broken: web3)" in run.stdout
    assert "[shop@ctl on web3]" in run.stdout
    assert "web1:" not in run.stdout and "web2:" not in run.stdout
    assert "verdict: FAIL (exit 1)" in run.stdout


def test_negative_every_host_passing_passes_the_strict_rule_and_two_down_break_the_loose_one(tmp_path):
    policy = write_policy(tmp_path, POLICY)
    run = run_gate(fleet_run(tmp_path), "--policy", policy, "--gate", "strict")
    assert run.returncode == 0, run.output
    assert "3 of 3 hosts pass (100%): holds" in run.stdout and "verdict: PASS (exit 0)" in run.stdout

    run = run_gate(fleet_run(tmp_path, down=("web1", "web3")), "--policy", policy, "--gate", "loose")
    assert run.returncode == 1, run.output
    assert "1 of 3 hosts pass (33.3%): broken" in run.stdout
    assert "web1: reachable@web1" in run.stdout and "web3: reachable@web3" in run.stdout


def test_a_failure_off_the_rule_still_blocks_and_a_rule_does_not_spend_the_gates_tolerance(tmp_path):
    policy = write_policy(tmp_path, POLICY)
    # api runs on the controlling machine, in no group: the fleet rule does not tolerate it
    doc = r.document([on(None, r.check("api", "fail", "P0")),
                      *[on(h, r.check(f"server@{h}", "fail" if h == "web3" else "pass", "P0", "process")) for h in WEB]],
                     "shop", "ctl")
    doc["opsgate"]["hosts"] = {h: {"groups": ["web"], "transport": "ssh"} for h in WEB}
    run = run_gate(r.write(tmp_path, doc), "--policy", policy, "--gate", "loose")
    assert run.returncode == 1, run.output
    assert "P0  FAIL  test_http[api] [shop@ctl]" in run.stdout
    assert "TOLERATED  test_process[server@web3] [shop@ctl on web3]" in run.stdout

    # budget: tolerate {P0: 1} is left for api, since the fleet rule judges server@web3
    run = run_gate(tmp_path / "daily-latest.json", "--policy", policy, "--gate", "budget")
    assert run.returncode == 0, run.output
    assert "P0 failure 1 of 1 tolerated" in run.stdout


def test_merged_self_check_reports_of_three_machines_are_judged_by_name_pattern_groups(tmp_path):
    policy = write_policy(tmp_path, POLICY)
    reports = [self_check(tmp_path, "web1"), self_check(tmp_path, "web2"), self_check(tmp_path, "web3", "fail"),
               self_check(tmp_path, "db1")]
    run = run_gate(*reports, "--policy", policy, "--gate", "by-name")
    assert run.returncode == 0, run.output
    assert "rule 1 (P0 on group web, at least 60%): 2 of 3 hosts pass (66.7%): holds" in run.stdout
    assert "rule 2 (P0 on group db, at least 100%): 1 of 1 host pass (100%): holds" in run.stdout
    assert "web3: api (fail: status == 'healthy': observed \"down\")" in run.stdout

    run = run_gate(*reports, "--policy", policy, "--gate", "by-name-strict")
    assert run.returncode == 1, run.output
    assert "rule 1 (P0 on group web, at least 100%): 2 of 3 hosts pass (66.7%): broken" in run.stdout
    assert "web3: api (fail:" in run.stdout
    assert "P0  FAIL  test_http[api] [shop@web3]" in run.stdout


def test_negative_a_machine_outside_the_pattern_is_not_counted_and_its_failure_is_judged_as_usual(tmp_path):
    policy = write_policy(tmp_path, POLICY)
    reports = [self_check(tmp_path, "web1"), self_check(tmp_path, "web2"), self_check(tmp_path, "db1", "fail")]
    run = run_gate(*reports, "--policy", policy, "--gate", "by-name-strict")
    assert run.returncode == 1, run.output
    assert "2 of 2 hosts pass (100%): holds" in run.stdout  # db1 is not in web
    assert "P0  FAIL  test_http[api] [shop@db1]" in run.stdout  # and blocks as any P0 failure does


def test_a_group_with_no_host_is_error(tmp_path):
    policy = write_policy(tmp_path, POLICY)
    report = fleet_run(tmp_path)
    run = run_gate(report, "--policy", policy, "--gate", "no-db")
    assert run.returncode == 2, run.output
    assert ("fleet rule 1 (P0 on group db, at least 100%): group 'db' has no host in these reports; nothing to judge "
            "(groups seen: web; hosts seen: web1, web2, web3)") in run.stdout
    assert "verdict: ERROR (exit 2)" in run.stdout

    # negative: the same gate over a run that has db hosts judges them
    run = run_gate(fleet_run(tmp_path, hosts=("db1", "db2"), groups=("db",), name="db.json"),
                   "--policy", policy, "--gate", "no-db")
    assert run.returncode == 0, run.output
    assert "2 of 2 hosts pass (100%): holds" in run.stdout


def test_a_group_with_fewer_hosts_than_min_hosts_is_error_a_missing_report_is_no_pass(tmp_path):
    policy = write_policy(tmp_path, POLICY)
    reports = [self_check(tmp_path, "web1"), self_check(tmp_path, "web2")]  # web3's report is missing
    run = run_gate(*reports, "--policy", policy, "--gate", "three-web")
    assert run.returncode == 2, run.output
    assert ("fleet rule 1 (P0 on group web, at least 60%): group 'web' has 2 hosts in these reports (web1, web2); "
            "the rule expects at least 3 (min_hosts): a report is missing?") in run.stdout
    # negative: with web3's report the same gate judges the three
    run = run_gate(*reports, self_check(tmp_path, "web3"), "--policy", policy, "--gate", "three-web")
    assert run.returncode == 0, run.output
    assert "3 of 3 hosts pass (100%): holds" in run.stdout


def test_hosts_on_which_no_check_of_the_severity_ran_break_the_rule_or_leave_nothing_to_judge(tmp_path):
    policy = write_policy(tmp_path, POLICY)
    doc = r.document([on("web1", r.check("server@web1", "pass", "P0", "process")),
                      on("web2", r.check("disk@web2", "pass", "P2", "host"))], "shop", "ctl")
    doc["opsgate"]["hosts"] = {h: {"groups": ["web"], "transport": "ssh"} for h in ("web1", "web2")}
    run = run_gate(r.write(tmp_path, doc), "--policy", policy, "--gate", "strict")
    assert run.returncode == 1, run.output
    assert "web2: no P0 check ran on it" in run.stdout  # never a pass on nothing

    doc = r.document([on(h, r.check(f"disk@{h}", "pass", "P2", "host")) for h in ("web1", "web2")], "shop", "ctl")
    doc["opsgate"]["hosts"] = {h: {"groups": ["web"], "transport": "ssh"} for h in ("web1", "web2")}
    run = run_gate(r.write(tmp_path, doc, "p2.json"), "--policy", policy, "--gate", "strict")
    assert run.returncode == 2, run.output
    assert "no P0 check ran on any host of group 'web' (web1, web2); nothing to judge" in run.stdout


def servers_failing_on(tmp_path, *failing: str, name: str = "report.json"):
    """A report of the server check on web1..web3, failing on the hosts named."""
    doc = r.document([on(h, r.check(f"server@{h}", "fail" if h in failing else "pass", "P0", "process")) for h in WEB],
                     "shop", "ctl")
    doc["opsgate"]["hosts"] = {h: {"groups": ["web"], "transport": "ssh"} for h in WEB}
    return r.write(tmp_path, doc, name)


def test_a_waived_failure_does_not_break_its_host(tmp_path):
    policy = write_policy(tmp_path, POLICY + """
waivers:
  - check: "server@web3"
    justification: "web3 is being rebuilt, OPS-501"
    expires: 2999-01-01
""")
    run = run_gate(servers_failing_on(tmp_path, "web3"), "--policy", policy, "--gate", "strict")
    assert run.returncode == 0, run.output
    assert "3 of 3 hosts pass (100%): holds" in run.stdout and "WAIVED  test_process[server@web3]" in run.stdout


def test_a_waiver_for_one_host_names_it_and_covers_no_other(tmp_path):
    """``host: web3`` waives the check there only: the same failure on web1 still breaks the rule."""
    policy = write_policy(tmp_path, POLICY + """
waivers:
  - check: server
    host: web3
    justification: "web3 is being rebuilt, OPS-501"
    expires: 2999-01-01
""")
    run = run_gate(servers_failing_on(tmp_path, "web3"), "--policy", policy, "--gate", "strict")
    assert run.returncode == 0, run.output
    assert "WAIVED  test_process[server@web3]" in run.stdout

    run = run_gate(servers_failing_on(tmp_path, "web1", "web3", name="two.json"), "--policy", policy, "--gate", "strict")
    assert run.returncode == 1, run.output
    assert "web1" in run.stdout and "WAIVED  test_process[server@web3]" in run.stdout


def test_bad_fleet_policy_input_names_file_line_key_expected_and_seen(tmp_path):
    report = fleet_run(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates:\n  g:\n    fleet:\n"
                   "      - {severity: [P0], group: web, at_least: 0.99}\n"
                   "      - {severity: [P7], group: web, at_least: 150%}\n"
                   "      - {group: '', at_least: 50%, hosts: 3}\n"
                   "    groups: {web: [], all: ['x*']}\n")
    run = run_gate(report, "--policy", bad, "--gate", "g")
    assert run.returncode == 2, run.output
    err = run.stderr
    assert f"{bad}:4: gates.g.fleet[0].at_least: expected a percentage from 0% to 100% such as 99%, seen 0.99" in err
    assert f"{bad}:5: gates.g.fleet[1].severity[0]: expected a severity (P0..P3 or critical/high/medium/low), seen 'P7'" in err
    assert f"{bad}:5: gates.g.fleet[1].at_least: expected a percentage from 0% to 100% such as 99%, seen '150%'" in err
    assert f"{bad}:6: gates.g.fleet[2].severity: expected key 'severity', seen it missing" in err
    assert f"{bad}:6: gates.g.fleet[2].hosts: unknown key 'hosts'; did you mean 'min_hosts'?" in err
    assert f"{bad}:6: gates.g.fleet[2].group: expected to have at least 1 character, seen ''" in err
    assert f"{bad}:7: gates.g.groups.web: expected at least one host-name pattern, e.g. [\"web*\"], seen []" in err
    assert f"{bad}:7: gates.g.groups.all: expected a group name other than 'all' (it means every host) and not empty, " \
           "seen 'all'" in err

    # negative: the valid rules of the same shapes load and decide
    good = write_policy(tmp_path, "gates:\n  g:\n    fleet:\n      - {severity: P0, group: web, at_least: 99.5%}\n"
                                  "    groups: {web: ['web*']}\n")
    run = run_gate(report, "--policy", good, "--gate", "g")
    assert run.returncode == 0, run.output


def test_a_malformed_hosts_map_in_a_report_is_error(tmp_path):
    policy = write_policy(tmp_path, POLICY)
    doc = r.document([on("web1", r.check("server@web1", "pass", "P0", "process"))], "shop", "ctl")
    doc["opsgate"]["hosts"] = ["web1"]
    run = run_gate(r.write(tmp_path, doc), "--policy", policy, "--gate", "strict")
    assert run.returncode == 2, run.output
    assert "opsgate.hosts is a list, expected an object of host name -> {groups, transport}" in run.stdout


def _samples(path):
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_prometheus_labels_every_check_series_with_its_host(tmp_path):
    policy = write_policy(tmp_path, POLICY)
    out = tmp_path / "gate.prom"
    run = run_gate(fleet_run(tmp_path, down=("web3",)), "--policy", policy, "--gate", "strict", "--prometheus", out)
    assert run.returncode == 1, run.output
    samples = _samples(out)
    ok = {(s.labels["host"], s.labels["check"]): s.value for s in samples["opsgate_check_ok"]}
    assert ok == {("ctl", "api"): 1.0, **{(h, f"{c}@{h}"): (0.0 if h == "web3" else 1.0)
                                           for h in WEB for c in ("reachable", "server")}}
    for name in ("opsgate_check_status", "opsgate_check_duration_seconds", "opsgate_check_observed"):
        assert all(s.labels.get("host") for s in samples[name]), name
    assert {s.labels["host"] for s in samples["opsgate_check_duration_seconds"]} == {"ctl", *WEB}
    rule = samples["opsgate_gate_fleet_rule_ok"]
    assert [(s.labels["group"], s.labels["severity"], s.value) for s in rule] == [("web", "P0", 0.0)]
    hosts = {s.labels["state"]: s.value for s in samples["opsgate_gate_fleet_hosts"]}
    assert hosts == {"passing": 2.0, "broken": 1.0}


def test_negative_prometheus_host_of_self_check_reports_is_the_machine_and_no_fleet_series_without_rules(tmp_path):
    out = tmp_path / "gate.prom"
    reports = [self_check(tmp_path, "web1"), self_check(tmp_path, "web2", "fail")]
    run = run_gate(*reports, "--prometheus", out)
    assert run.returncode == 1, run.output
    samples = _samples(out)
    ok = {(s.labels["host"], s.labels["check"]): s.value for s in samples["opsgate_check_ok"]}
    assert ok == {("web1", "api"): 1.0, ("web1", "disk"): 1.0, ("web2", "api"): 0.0, ("web2", "disk"): 1.0}
    assert "opsgate_gate_fleet_rule_ok" not in samples


def test_markdown_junit_and_nagios_show_the_host(tmp_path):
    policy = write_policy(tmp_path, POLICY)
    md, junit = tmp_path / "gate.md", tmp_path / "gate.xml"
    report = fleet_run(tmp_path, down=("web3",))
    run = run_gate(report, "--policy", policy, "--gate", "strict", "--markdown", md, "--junit", junit)
    assert run.returncode == 1, run.output
    text = md.read_text()
    assert "### Fleet rules" in text
    assert "| P0 on group web, at least 100% | 2 of 3 | broken | web3: reachable@web3 (fail: web3: connection refused" in text
    assert "| Severity | Check | Source | Host | Blocks | Evidence |" in text
    assert "| P0 | `test_reachable[reachable@web3]` | shop@ctl | web3 | 1 |" in text

    root = ET.parse(junit).getroot()
    hosts = {c.get("name"): p.get("value") for c in root.iter("testcase")
             for p in c.iter("property") if p.get("name") == "host"}
    assert hosts["test_reachable[reachable@web3]"] == "web3" and "test_http[api]" not in hosts
    fleet = [s for s in root.iter("testsuite") if s.get("name") == "fleet"][0]
    failure = fleet.find("testcase/failure")
    assert failure is not None and "web3: reachable@web3" in failure.text

    run = run_gate(*[self_check(tmp_path, m, "fail" if m == "web2" else "pass") for m in ("web1", "web2")],
                   "--nagios")
    assert run.returncode == 2, run.output
    assert "[P0 api@web2]" in run.stdout  # two machines: the check is named with its host

    # negative: one machine, no fleet: the Markdown has no Host column, Nagios names the check alone
    run = run_gate(self_check(tmp_path, "web2", "fail"), "--markdown", md, "--nagios")
    assert "[P0 api]" in run.stdout
    assert "| Host |" not in md.read_text() and "### Fleet rules" not in md.read_text()


# --- real runs --------------------------------------------------------------------------------


def _fleet_project(tmp_path):
    """An environment over three hosts of group web: two local:// hosts and one whose ssh port
    refuses connections (nothing listens there): a real run, an unreachable host."""
    port = free_port()
    return make_project(tmp_path, textwrap.dedent(f"""\
        name: shop
        hosts:
          web1: {{url: "local://", groups: [web]}}
          web2: {{url: "local://", groups: [web]}}
          web3: {{url: "ssh://nobody@127.0.0.1:{port}", groups: [web]}}
        host_options: {{connect_timeout: 5s}}
        file:
          - name: hostname
            hosts: web
            severity: P0
            path: /etc/hostname
        """)), port


def test_a_real_run_over_three_hosts_one_unreachable_is_judged_by_the_fleet_rules(tmp_path):
    policy = write_policy(tmp_path, POLICY)
    project, port = _fleet_project(tmp_path)
    run = run_pytest(project, "-q")
    report = latest_report(project)
    assert run.status() == {"test_reachable[reachable@web1]": "pass", "test_file[hostname@web1]": "pass",
                            "test_reachable[reachable@web2]": "pass", "test_file[hostname@web2]": "pass",
                            "test_reachable[reachable@web3]": "fail", "test_file[hostname@web3]": "blocked"}, run.output

    loose = run_gate(report, "--policy", policy, "--gate", "loose")
    assert loose.returncode == 0, loose.output
    assert "2 of 3 hosts pass (66.7%): holds" in loose.stdout and "verdict: WARN (exit 0)" in loose.stdout

    strict = run_gate(report, "--policy", policy, "--gate", "strict")
    assert strict.returncode == 1, strict.output
    assert "2 of 3 hosts pass (66.7%): broken" in strict.stdout
    assert f"web3: reachable@web3 (fail: web3: connection refused by 127.0.0.1:{port}" in strict.stdout
    assert "web1:" not in strict.stdout and "web2:" not in strict.stdout

    # the gate at the end of the run (the in-memory record) decides the same
    again = run_pytest(project, "-q", "--policy", str(policy), "--gate", "strict")
    assert again.returncode == 1, again.output
    assert "2 of 3 hosts pass (66.7%): broken" in again.output


def _self_check(project, machine: str, conf: str) -> dict:
    """Run the project's suite as machine ``machine`` (its own hostname, in a UTS namespace)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "PYTEST_"))}
    environ["APP_CONF"] = conf
    proc = subprocess.run(["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', machine,
                           sys.executable, "-m", "pytest", "checks/daily", "--env", "env.yaml", "-q", "-p", "no:cacheprovider"],
                          cwd=project, env=environ, capture_output=True, text=True, timeout=180)
    return proc


def test_real_self_check_runs_of_three_machines_merged_are_judged_by_name_pattern_groups(tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode:
        pytest.skip("no UTS namespace here (unshare --uts): cannot give each run its own hostname")
    policy = write_policy(tmp_path, POLICY)
    conf = tmp_path / "app.conf"
    conf.write_text("ok\n")
    project = make_project(tmp_path, 'name: shop\nfile:\n  - name: app-conf\n    severity: P0\n    path: "${APP_CONF}"\n')
    reports = []
    for machine in ("web1", "web2", "web3"):
        proc = _self_check(project, machine, str(conf) if machine != "web3" else str(tmp_path / "missing.conf"))
        assert proc.returncode == (1 if machine == "web3" else 0), proc.stdout + proc.stderr
        reports.append(tmp_path / f"{machine}.json")
        shutil.copy(latest_report(project), reports[-1])
    assert json.loads(reports[2].read_text())["opsgate"]["host"] == "web3"

    run = run_gate(*reports, "--policy", policy, "--gate", "by-name-loose")
    assert run.returncode == 0, run.output
    assert "rule 1 (P0 on group web, at least 60%): 2 of 3 hosts pass (66.7%): holds" in run.stdout
    assert "web3: app-conf (fail:" in run.stdout
    # a gate that also judges group db, which has no machine here: ERROR, nothing to judge
    run = run_gate(*reports, "--policy", policy, "--gate", "by-name")
    assert run.returncode == 2, run.output
    assert "group 'db' has no host in these reports; nothing to judge (groups seen: web; hosts seen: web1, web2, web3)" \
        in run.stdout

    strict = run_gate(*reports, "--policy", policy, "--gate", "by-name-strict")
    assert strict.returncode == 1, strict.output
    assert "2 of 3 hosts pass (66.7%): broken" in strict.stdout and "web3: app-conf (fail:" in strict.stdout


ssh_fleet = fleet_fixture(3, names=list(WEB))


def test_a_real_run_over_three_sshd_hosts_one_missing_its_config_is_judged_per_host(tmp_path, ssh_fleet):
    """Real sshd hosts, each in its own namespaces: the config file exists on web1 and web2
    only, so config@web3 fails on web3 itself (not an unreachable host)."""
    ssh_fleet.require_isolation()
    for host in ssh_fleet:
        if host.name != "web3":
            host.write("app/config.yml", "port: 8080\n")
    lines = [f"  {h.name}: {{url: \"ssh://{h.hostspec}\", groups: [web]}}" for h in ssh_fleet]
    project = make_project(tmp_path, "\n".join([
        "name: shop", "hosts:", *lines, "host_options:", f"  known_hosts: {ssh_fleet.known_hosts}",
        f"  identity_file: {ssh_fleet.identity_file}", "  connect_timeout: 5s",
        "file:", "  - name: config", "    hosts: web", "    severity: P0", f"    path: {ssh_fleet.srv}/app/config.yml",
        ""]))
    run = run_pytest(project, "-q")
    assert {k: v for k, v in run.status().items() if k.startswith("test_file")} == {
        "test_file[config@web1]": "pass", "test_file[config@web2]": "pass", "test_file[config@web3]": "fail"}, run.output
    report = latest_report(project)
    policy = write_policy(tmp_path, POLICY)
    out = tmp_path / "gate.prom"

    loose = run_gate(report, "--policy", policy, "--gate", "loose", "--prometheus", out)
    assert loose.returncode == 0, loose.output
    assert "2 of 3 hosts pass (66.7%): holds" in loose.stdout
    assert "TOLERATED  test_file[config@web3] [shop@" in loose.stdout
    ok = {(s.labels["host"], s.labels["check"]): s.value for s in _samples(out)["opsgate_check_ok"]}
    assert ok[("web3", "config@web3")] == 0.0 and ok[("web1", "config@web1")] == 1.0
    assert ok[("web3", "reachable@web3")] == 1.0

    strict = run_gate(report, "--policy", policy, "--gate", "strict")
    assert strict.returncode == 1, strict.output
    assert "2 of 3 hosts pass (66.7%): broken" in strict.stdout
    assert "web3: config@web3 (fail: " in strict.stdout and f"{ssh_fleet.srv}/app/config.yml" in strict.stdout
    assert "web1:" not in strict.stdout and "web2:" not in strict.stdout


# --- a property: the verdict is the rule's arithmetic, whatever the hosts' statuses ------------

STATUSES = ("pass", "warn", "fail", "error", "blocked", "skipped")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3), min_size=1, max_size=6),
       st.integers(min_value=0, max_value=100))
def test_the_verdict_is_the_share_of_hosts_whose_every_p0_check_passed(hosts, at_least):
    from opsgate.gate import evaluate, from_document, load_policy

    tests = [on(f"web{h}", r.check(f"c{i}@web{h}", status, "P0", "process"))
             for h, statuses in enumerate(hosts) for i, status in enumerate(statuses)]
    doc = r.document(tests, "shop", "ctl")
    doc["opsgate"]["hosts"] = {f"web{h}": {"groups": ["web"], "transport": "ssh"} for h in range(len(hosts))}
    path = _policy_file(at_least)
    result = evaluate([from_document(doc, "r.json")], load_policy(path), "g")
    judged = [[s for s in statuses if s != "skipped"] for statuses in hosts]
    passing = sum(1 for statuses in judged if statuses and all(s in ("pass", "warn") for s in statuses))
    holds = passing * 100 >= at_least * len(hosts)
    executed = any(s in ("pass", "warn", "fail", "error") for statuses in hosts for s in statuses)
    if not executed or not any(judged):
        assert result.verdict == "ERROR"  # zero checks ran, or no P0 check on any host: nothing to judge
    elif not holds:
        assert result.verdict == "FAIL" and sorted(result.fleet[0].broken) == sorted(
            f"web{h}" for h, statuses in enumerate(judged) if not statuses or any(s not in ("pass", "warn") for s in statuses))
    elif passing < len(hosts):
        assert result.verdict == "WARN", result.headline()  # tolerated, never a plain PASS
    else:
        assert result.verdict in ("PASS", "WARN") and result.fleet[0].holds
        assert result.verdict == ("WARN" if any("warn" in s for s in hosts) else "PASS")


_POLICIES: dict[int, object] = {}


def _policy_file(at_least: int):
    import tempfile
    from pathlib import Path

    if at_least not in _POLICIES:
        folder = Path(tempfile.mkdtemp(prefix="opsgate-fleet-policy-"))
        _POLICIES[at_least] = write_policy(folder, "gates:\n  g:\n    block: [P0]\n    fleet:\n"
                                                   f"      - {{severity: [P0], group: web, at_least: {at_least}%}}\n")
    return _POLICIES[at_least]
