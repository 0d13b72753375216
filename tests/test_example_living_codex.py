"""Living Codex's example environment (config/examples/living-codex.yaml) against its stand-in.

The stand-in (tests/support/standins/living_codex.py) is a real process on a free loopback port
answering the playbook's endpoints, backed by a real PostgreSQL (``$CONNECTION_STRING``), with its
``logs/server.log``; its install folder has a ``start-server.sh``. Healthy, the daily, weekly
(the database's dump verified to L4), quarterly (a DR drill from that dump) and incident (the
diagnosis again, then the post-fix watches) suites pass the gate; each playbook fault makes
exactly its check fail (or warn) at the playbook's severity while every other check passes or is
blocked by it. The watches sample for the playbook's 10 minutes, so they are incident only: the
daily suite holds no window.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import APP_PASSWORD, PostgresServer
from tests.support.standins.launcher import StandIn
from opsgate import severity
from tests.support.standins.proof import assert_all_pass, assert_only_broken, checks, example_project, run_suite
from tests.support.standins import living_codex

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "examples" / "living-codex.yaml"
ADMIN_PASSWORD = "postgres-admin"  # tests.support.servers' superuser password
SECRETS = (APP_PASSWORD, ADMIN_PASSWORD)
START_SERVER = '#!/bin/sh\n# the server reads its port from ASPNETCORE_URLS, as dotnet does\nexec "{python}" living_codex.py --dir . "$@"\n'


class Codex:
    """The stand-in, its database, its install folder and dumps, and the variables pointing the
    example at them."""

    def __init__(self, root: Path, pg: PostgresServer) -> None:
        self.install = root / "living-codex"
        self.install.mkdir()
        shutil.copy(living_codex.__file__, self.install / "living_codex.py")
        start = self.install / "start-server.sh"
        start.write_text(START_SERVER.format(python=sys.executable))
        start.chmod(0o755)
        self.backups = root / "backups"
        self.backups.mkdir()
        os.chmod(self.backups, 0o755)
        subprocess.run(["pg_dump", "-Fc", "-f", str(self.backups / "codex-20261130.dump"),
                        "-d", f"host=127.0.0.1 port={pg.port} user=app dbname=app"],
                       env=dict(os.environ, PGPASSWORD=APP_PASSWORD), check=True, timeout=60)
        self.server = StandIn(self.install / "living_codex.py", self.install, env={"CONNECTION_STRING": pg.dsn()})
        self.env = {
            "CODEX_URL": self.server.url, "CODEX_PORT": str(self.server.port), "CODEX_HOME": str(self.install),
            "CODEX_PROCESS": "living_codex[.]py", "CONNECTION_STRING": pg.dsn(),
            "CODEX_STARTUP": "2s", "CODEX_WINDOW": "1.5s", "CODEX_INTERVAL": "0.25s", "CODEX_WATCH_INTERVAL": "0.25s",
            "CODEX_BACKUPS": str(self.backups), "CODEX_INSTALL": str(self.install),
            "CODEX_SCRATCH_DSN": pg.dsn(user="postgres", password=ADMIN_PASSWORD, db="postgres"),
            "OPSGATE_SCRATCH_DIR": str(root / "scratch"),
        }

    def reset(self) -> None:
        """Healthy again: restarted if a test crashed it, fault cleared (a fresh log)."""
        if self.server.proc is None or self.server.proc.poll() is not None:
            self.server.start()
        self.server.fault("none")


@pytest.fixture(scope="module")
def codex(tmp_path_factory):
    root = tmp_path_factory.mktemp("codex")
    with PostgresServer() as pg:
        stand_in = Codex(root, pg)
        with stand_in.server:
            yield stand_in


@pytest.fixture
def healthy(codex):
    codex.reset()
    return codex


def run(codex: Codex, tmp_path: Path, cadence: str = "daily"):
    result = run_suite(example_project(tmp_path, EXAMPLE), codex.env, cadence)
    assert not any(secret in result.output + result.report_text for secret in SECRETS)
    return result


WATCHES = {"stable-after-fix", "memory-trend"}  # the playbook's post-fix watches (10-minute windows)


@pytest.mark.parametrize("cadence, count", [
    ("daily", 13), ("weekly", 1), ("quarterly", 1), ("incident", 15),
])
def test_healthy_codex_passes_every_suite(healthy, tmp_path, cadence, count):
    result = run(healthy, tmp_path, cadence)
    assert_all_pass(result, count)
    found = checks(result)
    # the watches are the incident suite's, never the daily one's (the daily run waits for no window)
    assert (WATCHES <= set(found)) == (cadence == "incident") and not (cadence == "daily" and WATCHES & set(found))
    if cadence == "incident":
        assert len(found["stable-after-fix"]["evidence"]["samples"]) >= 2, found["stable-after-fix"]
    if cadence == "weekly":
        assert found["codex-db"]["evidence"]["observed"]["level_reached"] == 4
    if cadence == "quarterly":
        assert found["codex-dr"]["evidence"]["observed"]["rto_target_s"] == 3600


# fault -> the one check it breaks, that check's status and the playbook's severity, a cause in its
# message; the suite it is found in (the daily run, or the incident run's post-fix watch)
FAULTS = [
    ("module-failed", "modules-loaded", "fail", "P3", "length(modules[?status != 'loaded']) == 0: observed 1"),
    ("async-incomplete", "async-init", "fail", "P2", "moduleLoading.asyncInitializationComplete == true: observed false"),
    ("heap-critical", "memory", "fail", "P1", "memoryUsage.heapSizeMB < 2000: observed 2100"),
    ("heap-warning", "memory", "warn", "P1", "memoryUsage.heapSizeMB < 1500: observed 1600"),
    ("slow", "request-latency", "fail", "P2", "1.4"),
    ("memory-leak", "memory-leaks", "fail", "P2", "length(memoryLeaks) == 0: observed 1"),
    ("log-errors", "server-log-errors", "fail", "P2", "NullReferenceException"),
    ("pipeline-down", "ai-pipeline", "fail", "P3", "metrics != null"),
    ("crash", "dotnet-running", "fail", "P1", "living_codex[.]py"),
]


@pytest.mark.parametrize("fault, failing, status, label, cause", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_playbook_fault_fails_exactly_its_check(healthy, tmp_path, fault, failing, status, label, cause):
    if fault == "crash":
        healthy.server.crash()
    else:
        healthy.server.fault(fault, after_s=0.5)
    result = run(healthy, tmp_path)
    # the daily gate: the playbook's P1/P2 block, P3 (and any warning) only warns
    verdict = "FAIL" if status == "fail" and label in ("P1", "P2") else "WARN"
    assert_only_broken(result, failing, status, severity.normalise(label, "P1-P4"), verdict, cause)
    assert checks(result)[failing]["severity_label"] == label


def test_healthy_at_first_but_failing_within_the_window_fails_the_incident_watch(healthy, tmp_path):
    """The playbook's "monitor for 10 minutes" after a fix: the server answers healthy, then
    degraded within the stability window. The incident suite's watch fails (P2) with the sample
    that broke; every diagnosis check passed."""
    healthy.server.fault("unstable", after_s=0.5)
    result = run(healthy, tmp_path, "incident")
    assert_only_broken(result, "stable-after-fix", "fail", severity.normalise("P2", "P1-P4"), "FAIL", "degraded")
    assert checks(result)["stable-after-fix"]["severity_label"] == "P2"
