"""``systemd`` checks.

systemd cannot run on this machine (no systemd as PID 1, no /run/systemd/system; the same
in CI's containers), so these tests use a stand-in: executables named ``systemctl`` and
``journalctl`` placed first in PATH that answer as the real ones do (``Key=Value`` lines
for ``systemctl show``, message lines for ``journalctl -o cat``), and record the arguments
they were called with. The probe runs them as real processes through the local target.
``SYSTEMD_RUNTIME`` is pointed at a folder the test makes (present) or does not (absent).
The no-systemd case is also run against this machine as it is, where systemd is absent.

Runbook steps protected here: "the service's systemd unit failed" (Chatbot), "restarts
in a loop", "errors in the unit's journal in the last 10 minutes".
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from opsgate.probes import ProbeContext, systemd
from opsgate.probes.systemd import SystemdCheck
from opsgate.runner import run_check

SHOW = {
    "active": "LoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nNRestarts=0\n",
    "failed": "LoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\nNRestarts=0\n",
    "restarting": "LoadState=loaded\nActiveState=activating\nSubState=auto-restart\nResult=exit-code\nNRestarts=7\n",
    "flapping": "LoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nNRestarts=4\n",
    "missing": "LoadState=not-found\nActiveState=inactive\nSubState=dead\nResult=success\nNRestarts=0\n",
    "partial": "LoadState=loaded\nActiveState=active\n",
}
JOURNAL = ("app started\nERROR database unreachable\nrequest ok\nERROR database unreachable\n"
           "Traceback (most recent call last):\nrequest ok\n")


class FakeSystemd:
    """``bin/systemctl`` prints ``show-<unit>`` (or sleeps when ``hang`` exists); ``bin/journalctl``
    prints ``journal-<unit>``; both append their argv to ``calls``."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.runtime = root / "run-systemd-system"
        self.runtime.mkdir()
        self.calls = root / "calls"
        for name, body in {
            "systemctl": 'unit="$2"\n[ -e "$here/hang" ] && exec sleep 30\n'
                         '[ -e "$here/not-booted" ] && { echo "System has not been booted with systemd as init '
                         'system (PID 1). Can\'t operate." >&2; exit 1; }\n'
                         'cat "$here/show-$unit"',
            "journalctl": 'cat "$here/journal-$2"; [ -e "$here/journal-stderr" ] && cat "$here/journal-stderr" >&2; '
                          'exit 0',
        }.items():
            script = self.bin / name
            script.write_text(f'#!/bin/sh\nhere="$(dirname "$0")"\necho "{name} $*" >> "{self.calls}"\n{body}\n')
            script.chmod(0o755)

    def unit(self, unit: str, state: str, journal: str = "") -> None:
        (self.bin / f"show-{unit}").write_text(SHOW[state])
        (self.bin / f"journal-{unit}").write_text(journal)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    stand_in = FakeSystemd(tmp_path)
    monkeypatch.setenv("PATH", f"{stand_in.bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(systemd, "SYSTEMD_RUNTIME", str(stand_in.runtime))
    return stand_in


def check(tmp_path, **fields):
    fields.setdefault("name", "unit")
    return run_check(SystemdCheck(**fields), ProbeContext(tmp_path))


def test_active_unit_passes(tmp_path, fake):
    fake.unit("api.service", "active")
    result = check(tmp_path, unit="api", max_restarts=3)
    assert result.status == "pass", result.message
    observed = result.evidence["observed"]
    assert observed["active_state"] == "active" and observed["restarts"] == 0
    assert "systemctl show api.service -p LoadState,ActiveState,SubState,Result,NRestarts" in fake.calls.read_text()


@pytest.mark.negative("systemd")
def test_failed_unit_fails_naming_its_state(tmp_path, fake):
    fake.unit("api.service", "failed")
    result = check(tmp_path, unit="api.service")
    assert result.status == "fail"
    assert "unit api.service is active: observed \"failed\"" in result.message
    assert "unit api.service is not failed" in result.message
    assert "Result=exit-code" in result.message


@pytest.mark.negative("systemd")
def test_restarting_unit_fails_on_restarts(tmp_path, fake):
    fake.unit("api.service", "restarting")
    result = check(tmp_path, unit="api", max_restarts=3)
    assert result.status == "fail"
    assert "unit api.service: restarts <= 3: observed 7" in result.message
    assert "SubState=auto-restart" in result.message


def test_restarts_over_the_warn_level_warn(tmp_path, fake):
    fake.unit("api.service", "flapping")
    result = check(tmp_path, unit="api", max_restarts=10, warn_restarts=2)
    assert result.status == "warn", result.message
    assert "restarts <= 2: observed 4" in result.message


@pytest.mark.negative("systemd")
def test_unknown_unit_fails_as_not_loaded(tmp_path, fake):
    fake.unit("ghost.service", "missing")
    result = check(tmp_path, unit="ghost", active=False)
    assert result.status == "fail"
    assert "unit ghost.service is loaded: observed \"not-found\"" in result.message


@pytest.mark.negative("systemd")
def test_a_property_missing_from_systemctl_never_passes(tmp_path, fake):
    fake.unit("api.service", "partial")
    result = check(tmp_path, unit="api", missing_ok=True)
    assert result.status == "fail"
    assert "did not report SubState, Result, NRestarts" in result.message


def test_journal_pattern_counts(tmp_path, fake):
    fake.unit("api.service", "active", JOURNAL)
    result = check(tmp_path, unit="api", journal_window="10m",
                   journal=[{"regex": "ERROR", "max": 5}, {"regex": "traceback", "ignore_case": True, "max": 1}])
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["journal"] == {"ERROR": 2, "traceback": 1}
    assert result.evidence["observed"]["journal_lines"] == 6
    assert "journalctl -u api.service --since=-600s -o cat --no-pager -n 10000" in fake.calls.read_text()


@pytest.mark.negative("systemd")
def test_journal_errors_over_the_limit_fail(tmp_path, fake):
    fake.unit("api.service", "active", JOURNAL)
    result = check(tmp_path, unit="api", journal=[{"regex": "ERROR", "max": 0}, {"regex": "request ok", "warn_max": 1}])
    assert result.status == "fail"
    assert "journal of api.service, last 600s: lines matching /ERROR/ <= 0: observed 2" in result.message


def test_an_empty_journal_window_counts_nothing(tmp_path, fake):
    fake.unit("api.service", "active", "-- No entries --\n")
    result = check(tmp_path, unit="api", journal=[{"regex": ".", "max": 0}])
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["journal_lines"] == 0


@pytest.mark.negative("systemd")
def test_a_journal_the_user_may_not_read_never_passes(tmp_path, fake):
    """journalctl run by a user outside systemd-journal shows nothing and exits 0."""
    fake.unit("api.service", "active", "-- No entries --\n")
    (fake.bin / "journal-stderr").write_text(
        "Hint: You are currently not seeing messages from other users and the system.\n"
        "      Users in groups 'adm', 'systemd-journal' can see all messages.\n")
    result = check(tmp_path, unit="api", journal=[{"regex": "ERROR", "max": 0}])
    assert result.status == "fail"
    assert "`journalctl -u api.service` could not read the journal" in result.message


@pytest.mark.negative("systemd")
@pytest.mark.timeout(20)
def test_a_hanging_systemctl_is_cut_at_the_timeout(tmp_path, fake):
    (fake.bin / "hang").touch()
    started = time.monotonic()
    result = check(tmp_path, unit="api", timeout=1)
    assert result.status == "fail"
    assert "`systemctl show` did not finish within 1s (killed)" in result.message
    assert time.monotonic() - started < 10


@pytest.mark.negative("systemd")
def test_no_systemd_is_skipped_saying_so(tmp_path, fake, monkeypatch):
    """Never a pass: the result is skipped with the reason (the gate lists it)."""
    monkeypatch.setattr(systemd, "SYSTEMD_RUNTIME", str(tmp_path / "nothing-here"))
    result = check(tmp_path, unit="api")
    assert result.status == "skipped"
    assert "not applicable here: systemd api.service: systemd is absent on this machine" in result.message
    assert "calls" not in os.listdir(tmp_path), "systemctl must not be asked where systemd is absent"


def test_no_systemd_with_missing_ok_passes_with_a_note(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(systemd, "SYSTEMD_RUNTIME", str(tmp_path / "nothing-here"))
    result = check(tmp_path, unit="api", max_restarts=1, journal=[{"regex": "ERROR"}], missing_ok=True)
    assert result.status == "pass", result.message
    assert "not checked; passed because missing_ok: true" in result.evidence["details"]["note"]
    assert result.evidence["observed"]["systemd"] == "absent"


@pytest.mark.negative("systemd")
def test_systemctl_saying_not_booted_with_systemd_is_absent(tmp_path, fake):
    (fake.bin / "not-booted").touch()
    result = check(tmp_path, unit="api")
    assert result.status == "skipped"
    assert "systemd is absent on this machine (systemctl says the system was not booted with systemd)" in result.message


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="this machine runs systemd")
def test_this_machine_without_systemd(tmp_path):
    result = check(tmp_path, unit="ssh")
    assert result.status == "skipped"
    assert "systemd is absent on this machine (no /run/systemd/system)" in result.message


def test_unit_names_are_checked_at_load():
    with pytest.raises(ValueError, match="expected a systemd unit name"):
        SystemdCheck(name="x", unit="--all")
    with pytest.raises(ValueError, match="expected a systemd unit name"):
        SystemdCheck(name="x", unit="app; reboot")


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="this machine runs systemd")
def test_a_run_on_a_machine_without_systemd_reports_the_check_skipped_and_blocks_its_dependents(tmp_path):
    """pytest shows it skipped with the reason; the report says skipped; the check that depends
    on the unit is blocked by it; a gate requiring the unit is an ERROR, never a PASS."""
    from tests.support.project import make_project, run_pytest

    project = make_project(tmp_path, "name: host\nsystemd:\n  - {name: api-unit, unit: api, severity: P0}\n"
                                     "file:\n  - {name: api-config, path: /etc/hostname, depends_on: [api-unit]}\n")
    (project / "gates.yaml").write_text("gates:\n  release:\n    require: [{id: api-unit}]\n")
    run = run_pytest(project, "-rs")
    statuses = {t["metadata"]["opsgate"]["name"]: t["metadata"]["opsgate"]["status"] for t in run.report()["tests"]}
    assert statuses == {"api-unit": "skipped", "api-config": "blocked"}, run.output
    assert "not applicable here: systemd api.service: systemd is absent on this machine" in run.output
    gated = run_pytest(project, "--gate", "release", "--policy", str(project / "gates.yaml"))
    assert gated.returncode == 2, gated.output
    assert "required check" in gated.output and "did not run: skipped" in gated.output
