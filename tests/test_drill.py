"""The quarterly DR drill (issue 12): restore into scratch, install, start, wait until healthy,
verify, tear down; RTO and RPO measured against their targets; nothing left behind.

The "install" is a real directory with a small real HTTP service (``app.py``) that serves
the rows of its data file; the drill copies it, starts the copy on a free port and probes it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from opsgate.drills.plan import describe
from opsgate.drills.record import write_records
from opsgate.probes import ProbeContext
from opsgate.probes.drill import DrillCheck
from opsgate.runner import run_check
from tests.support.project import run_pytest, start_pytest

APP = textwrap.dedent('''
    import json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    port = int(sys.argv[sys.argv.index("--port") + 1])
    rows = open("data.txt").read().split()
    if "--crash" in sys.argv:
        sys.exit("app: cannot open database: data.txt is corrupt")
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self):
            body = json.dumps({"status": "healthy", "rows": len(rows)}).encode()
            self.send_response(200); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    HTTPServer(("127.0.0.1", port), H).serve_forever()
''')


@pytest.fixture
def install(tmp_path: Path) -> Path:
    """The live install directory a drill copies: the app and its data (3 rows)."""
    folder = tmp_path / "live-app"
    folder.mkdir()
    (folder / "app.py").write_text(APP)
    (folder / "data.txt").write_text("a\nb\nc\n")
    (folder / "test_app.sh").write_text("test \"$(wc -l < data.txt)\" -eq 3\n")
    return folder


@pytest.fixture
def scratch_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Scratch places go here, so the test can prove none is left behind."""
    root = tmp_path / "scratch"
    root.mkdir()
    monkeypatch.setenv("OPSGATE_SCRATCH_DIR", str(root))
    return root


def drill(install: Path, **overrides) -> DrillCheck:
    spec = {
        "name": "app-dr", "severity": "P1",
        "restore": [{"copy": str(install)}],
        "install": [{"shell": "test -f app.py && test -f data.txt"}],
        "start": {"argv": [sys.executable, "app.py", "--port", "{{port}}"]},
        "healthy": [{"http": {"url": "{{url}}/health", "expect": ["status == 'healthy'"]}}],
        "verify": [{"command": {"argv": ["sh", "test_app.sh"]}},
                   {"http": {"url": "{{url}}/health", "expect": ["rows == `3`"]}}],
        "timeout": 60,
    }
    spec.update(overrides)
    return DrillCheck.model_validate(spec)


def app_processes(install: Path) -> list[psutil.Process]:
    """Processes of this test's app (scoped by the scratch place in their working directory)."""
    out = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        if proc.info["cmdline"] and "app.py" in " ".join(proc.info["cmdline"]) and "opsgate-scratch-" in (proc.info["cwd"] or ""):
            out.append(proc)
    return out


def assert_nothing_left(scratch_root: Path, result) -> None:
    assert list(scratch_root.iterdir()) == []
    record = result.evidence["observed"]
    assert record["teardown"]["ran"] and record["teardown"]["problems"] == []
    port = record["port"]
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"
    assert not [p for p in app_processes(Path()) if str(scratch_root) in (p.info["cwd"] or "")]


def test_a_healthy_drill_passes_with_rto_and_rpo_measured(install, scratch_root):
    result = run_check(drill(install), ProbeContext(install.parent))
    record = result.evidence["observed"]
    assert result.status == "pass", result.message
    assert [s["phase"] for s in record["steps"]] == ["restore", "install", "start", "healthy", "verify", "verify",
                                                    "teardown"]
    assert all(s["status"] == "pass" for s in record["steps"])
    assert 0 < record["rto_s"] < 60 and record["rpo_s"] == 0.0
    assert record["rto_target_s"] == 3600 and record["rpo_target_s"] == 3600
    assert "copied 3 files" in record["steps"][0]["message"]
    assert_nothing_left(scratch_root, result)


@pytest.mark.negative("drill")
def test_a_service_that_fails_to_start_names_the_step_and_teardown_ran(install, scratch_root):
    broken = drill(install, start={"argv": [sys.executable, "app.py", "--port", "{{port}}", "--crash"]})
    result = run_check(broken, ProbeContext(install.parent))
    assert result.status == "fail"
    assert "(healthy: http app-dr.healthy.1) failed: the started service exited with code 1" in result.message
    assert "data.txt is corrupt" in result.message
    assert "teardown ran" in result.message
    assert_nothing_left(scratch_root, result)


@pytest.mark.negative("drill")
def test_a_drill_over_its_rto_target_fails_with_measured_against_target(install, scratch_root):
    result = run_check(drill(install, rto="1ms"), ProbeContext(install.parent))
    assert result.status == "fail"
    assert "RTO (seconds, restore start to verified) <= target 0.001: observed" in result.message
    assert_nothing_left(scratch_root, result)


@pytest.mark.negative("drill")
def test_a_failing_verify_step_fails_the_drill(install, scratch_root):
    (install / "data.txt").write_text("a\nb\n")  # the copy has 2 rows: the app's own test fails
    result = run_check(drill(install), ProbeContext(install.parent))
    assert result.status == "fail"
    assert "step 5 (verify: command app-dr.verify.1) failed: exit code == 0: observed 1" in result.message
    assert_nothing_left(scratch_root, result)


@pytest.mark.negative("drill")
def test_a_port_the_live_service_holds_is_refused_before_anything_runs(install, scratch_root):
    with socket.socket() as live:
        live.bind(("127.0.0.1", 0))
        live.listen()
        port = live.getsockname()[1]
        result = run_check(drill(install, port=port), ProbeContext(install.parent))
    assert result.status == "fail"
    assert f"refused before it started: port {port} is already in use" in result.message
    assert [s["phase"] for s in result.evidence["observed"]["steps"]] == ["teardown"]  # nothing else ran
    assert list(scratch_root.iterdir()) == []


def test_a_healthy_check_pointing_at_the_live_service_is_refused_when_loaded(install):
    with pytest.raises(ValueError, match=r"healthy\[0\]\.http\.url: 'http://127.0.0.1:8000/health' does not point "
                                         r"at the restored instance"):
        drill(install, healthy=[{"http": {"url": "http://127.0.0.1:8000/health"}}])


@pytest.mark.negative("drill")
def test_what_answers_on_the_scratch_port_must_be_the_started_service(install, scratch_root):
    """The start command only launches another process outside its process group (as a
    foreign service would hold the port): healthy answers, but not from what the drill
    started, so the drill fails; teardown reports the port it could not free."""
    escaped = drill(install, start={"shell": f"setsid {sys.executable} app.py --port {{{{port}}}} & exec sleep 30"},
                    verify=[])
    try:
        result = run_check(escaped, ProbeContext(install.parent))
        assert result.status == "fail"
        assert "not by the service the drill started" in result.message
        assert "what answered is not the restored copy" in result.message
    finally:
        for proc in app_processes(install):
            proc.kill()


def test_plan_mode_says_every_step_and_touches_nothing(install, scratch_root):
    before = set(psutil.pids())
    lines = describe(drill(install))
    assert lines[0].startswith("drill app-dr (P1): RTO target 1h00m00s, RPO target 1h00m00s")
    text = "\n".join(lines)
    for expected in (f"restore: copy {install}", "install: test -f app.py", "start: ", "healthy: http app-dr.healthy.1",
                     "verify: command app-dr.verify.1", "teardown: stop the started process group"):
        assert expected in text
    assert list(scratch_root.iterdir()) == []
    assert not [p for p in set(psutil.pids()) - before if psutil.pid_exists(p) and "app.py" in " ".join(
        psutil.Process(p).cmdline())]


def test_the_record_is_readable_without_opsgate(install, scratch_root, tmp_path):
    result = run_check(drill(install), ProbeContext(install.parent))
    document = {"opsgate": {"environment": "prod", "version": "x"},
                "tests": [{"metadata": {"opsgate": {"kind": "drill", **result.to_json()}}}]}
    report = tmp_path / "quarterly-x.json"
    report.write_text('{"a": 1,\n "opsgate_digest": "sha256:abc123"\n}')
    paths = write_records(document, report, tmp_path / "reports")
    assert sorted(p.suffix for p in paths) == [".html", ".md"]
    text = paths[0].read_text()
    assert "# DR drill `app-dr`: PASSED" in text
    assert "| RTO | 1h00m00s |" in text and "| met |" in text
    assert "sha256:abc123" in text
    assert "By: " in text and "| 1 | restore | copy " in text
    assert "<table>" in paths[1].read_text()


@pytest.mark.negative("drill")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_drill_interrupted_mid_step_leaves_nothing_behind(install, tmp_path, sig):
    """A real ``pytest checks/quarterly`` run signalled while the drill's service runs and an
    install step waits: no scratch folder, no process, no port is left."""
    marker = f"{600 + os.getpid() % 1000 + sig / 100:.2f}"  # a sleep only this test (in this process) runs
    project = tmp_path / "proj"
    (project / "checks" / "quarterly").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "env.yaml").write_text(textwrap.dedent(f"""
        name: interrupted
        drill:
          - name: app-dr
            restore: [{{copy: {install}}}]
            start: {{argv: ["{sys.executable}", app.py, --port, "{{{{port}}}}"]}}
            healthy: [{{http: {{url: "{{{{url}}}}/health"}}}}]
            verify: [{{command: {{argv: [sleep, "{marker}"], timeout: 5m}}}}]
            timeout: 5m
    """))
    scratch = tmp_path / "scratch"
    run = start_pytest(project, env={"OPSGATE_SCRATCH_DIR": str(scratch)}, suite="checks/quarterly")
    try:
        deadline = time.monotonic() + 60
        while not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]:
            assert run.poll() is None and time.monotonic() < deadline, run.stdout.read() if run.poll() is not None else "no sleep"
            time.sleep(0.1)
        port = next(int(p.info["cmdline"][-1]) for p in app_processes(install) if str(scratch) in p.info["cwd"])
        run.send_signal(sig)
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert list(scratch.iterdir()) == []
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"


def test_the_readme_examples_of_backups_and_drills_load():
    """The README's weekly/quarterly section shows items that validate as written."""
    import re

    import yaml

    from opsgate.model import Environment

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Weekly backup verification"):readme.index("## Collection")]
    document = {"name": "readme"}
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        document.update(yaml.safe_load(block.replace("${DB_PASSWORD}", "pw-0123456789").replace(
            "${PG_ADMIN_PASSWORD}", "pw-9876543210")))
    document["backup"][0]["name"] = "chat-db"  # the drill restores the backup item shown above it
    env = Environment.model_validate(document)
    assert [i.kind for i in env.items()] == ["backup", "drill"]


@pytest.mark.negative("drill")
def test_a_drill_naming_a_backup_item_that_does_not_exist_is_a_load_error(tmp_path):
    from opsgate import envfile

    path = tmp_path / "env.yaml"
    path.write_text(textwrap.dedent("""
        name: typo
        backup:
          - {name: app-db, source: files, path: "backups/*.tar.gz"}
        drill:
          - name: dr
            restore: [{backup: app-dbb}]
            verify: [{command: {argv: ["true"]}}]
    """))
    with pytest.raises(envfile.EnvFileError) as caught:
        envfile.load(str(path), [tmp_path])
    assert "env.yaml:7: drill[0].restore[0].backup (dr): expected the name of a backup item (there: app-db), " \
           "seen 'app-dbb'" in str(caught.value)


def test_a_running_drill_shows_its_step_and_time_against_its_rto(install, tmp_path):
    """The progress line (a pipe: a plain line each interval) names the drill's current step."""
    project = tmp_path / "proj"
    (project / "checks" / "quarterly").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "env.yaml").write_text(textwrap.dedent(f"""
        name: slow
        drill:
          - name: app-dr
            severity: P2
            restore: [{{copy: {install}}}]
            install: [{{argv: [sleep, "2"]}}]
            verify: [{{command: {{argv: ["true"]}}}}]
    """))
    run = run_pytest(project, suite="checks/quarterly",
                     env={"OPSGATE_PROGRESS_DELAY": "0.3", "OPSGATE_PROGRESS_INTERVAL": "0.3",
                          "OPSGATE_SCRATCH_DIR": str(tmp_path / "scratch")})
    assert run.returncode == 0, run.output
    assert re.search(r"app-dr: install: sleep 2 \([0-9.]+s of RTO 4h00m00s\)", run.output), run.output


@pytest.mark.negative("drill")
def test_a_drill_that_checks_nothing_it_restored_is_a_load_error(install):
    """Restored and started, never looked at: a pass would rest on reading nothing."""
    with pytest.raises(ValueError, match="expected at least one healthy or verify check"):
        drill(install, healthy=[], verify=[])
