"""``log`` checks over real files: pattern counts in the last N lines or T minutes.

Runbook steps protected here: "no ERROR/CRITICAL in the last 100 lines of
logs/aura.log", "error count in the last 10 minutes", with rotated files
(``app.log.1``, ``app.log.2.gz``) read as part of the same log.
"""

from __future__ import annotations

import gzip
import os
import time
from datetime import datetime, timedelta

import pytest

from opsgate.model import LogCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check

ERRORS = [{"regex": "ERROR|CRITICAL"}]


def check(tmp_path, **fields):
    fields.setdefault("name", "app-log")
    fields.setdefault("path", "app.log")
    fields.setdefault("patterns", ERRORS)
    return run_check(LogCheck(**fields), ProbeContext(tmp_path))


def info_lines(n: int, start: int = 0) -> list[str]:
    return [f"INFO request {i} served in 12 ms" for i in range(start, start + n)]


def write(path, lines, age_s: float = 0.0) -> None:
    """Write a log file whose mtime is ``age_s`` seconds in the past (rotated files are older)."""
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))


def stamp(ago: timedelta) -> str:
    """A local-time timestamp as loggers write them: ``2024-05-01 13:02:11,120``."""
    return (datetime.now() - ago).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]


def test_clean_log_passes(tmp_path):
    """Runbook: no ERROR or CRITICAL in the last 100 lines."""
    write(tmp_path / "app.log", info_lines(500))
    result = check(tmp_path, last_lines=100)
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["lines_read"] == 100
    assert result.evidence["observed"]["matches"] == {"ERROR|CRITICAL": 0}


@pytest.mark.negative("log")
def test_error_in_last_lines_fails_and_shows_the_line(tmp_path):
    """Runbook: no ERROR in the last 100 lines -- the failing line is the evidence."""
    write(tmp_path / "app.log", info_lines(150) + ["ERROR database connection lost"] + info_lines(10, 150))
    result = check(tmp_path, last_lines=100)
    assert result.status == "fail"
    assert "ERROR|CRITICAL" in result.message and "last 100 lines" in result.message
    assert "observed 1" in result.message
    assert "ERROR database connection lost" in result.message
    assert result.evidence["details"]["lines"]["ERROR|CRITICAL"] == ["app.log:151: ERROR database connection lost"]


def test_error_older_than_last_lines_is_ignored(tmp_path):
    """Runbook: only the last 100 lines count -- yesterday's ERROR far up the file does not."""
    write(tmp_path / "app.log", ["ERROR old incident, resolved"] + info_lines(100))
    assert check(tmp_path, last_lines=100).status == "pass"
    assert check(tmp_path, last_lines=101).status == "fail"


def test_error_only_in_rotated_file_is_found(tmp_path):
    """Runbook: the last N lines span a rotation -- app.log.1 is part of the log."""
    write(tmp_path / "app.log.1", info_lines(20) + ["CRITICAL out of memory"] + info_lines(5), age_s=600)
    write(tmp_path / "app.log", info_lines(30))
    result = check(tmp_path, last_lines=1000)
    assert result.status == "fail"
    assert result.evidence["details"]["lines"]["ERROR|CRITICAL"] == ["app.log.1:21: CRITICAL out of memory"]
    assert check(tmp_path, last_lines=1000, rotated=False).status == "pass"
    # 30 lines of app.log and the 5 after the CRITICAL line in app.log.1: just out of reach
    assert check(tmp_path, last_lines=35).status == "pass"
    assert check(tmp_path, last_lines=36).status == "fail"


def test_error_only_in_gzipped_rotated_file_is_found(tmp_path):
    write(tmp_path / "app.log.2.gz", info_lines(3) + ["ERROR disk full"], age_s=7200)
    write(tmp_path / "app.log.1", info_lines(10), age_s=600)
    write(tmp_path / "app.log", info_lines(10))
    result = check(tmp_path, last_lines=1000)
    assert result.status == "fail"
    assert result.evidence["details"]["lines"]["ERROR|CRITICAL"] == ["app.log.2.gz:4: ERROR disk full"]
    assert result.evidence["observed"]["lines_read"] == 24


def test_rotation_numbers_order_files_even_when_mtimes_do_not(tmp_path):
    """Logs copied to a scratch dir (or compressed late) get fresh mtimes: app.log.2.gz is
    still older than app.log.1, so its ERROR is outside the last 20 lines."""
    write(tmp_path / "app.log.2.gz", ["ERROR from two rotations ago"], age_s=0)
    write(tmp_path / "app.log.1", info_lines(10), age_s=30)
    write(tmp_path / "app.log", info_lines(10, 10), age_s=60)
    result = check(tmp_path, last_lines=20)
    assert result.status == "pass", result.message
    assert [os.path.basename(f) for f in result.evidence["observed"]["files"]] == ["app.log.2.gz", "app.log.1", "app.log"]
    assert check(tmp_path, last_lines=21).status == "fail"


def test_last_minutes_ignores_old_errors_and_counts_new_ones(tmp_path):
    """Runbook: error count in the last 10 minutes -- an ERROR from 2 hours ago is history."""
    old = [f"{stamp(timedelta(hours=2))} ERROR upstream timeout",
           "    continuation of the old traceback mentioning ERROR"]
    recent = [f"{stamp(timedelta(minutes=1))} INFO recovered"]
    write(tmp_path / "app.log", old + recent)
    result = check(tmp_path, last_minutes=10)
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["lines_read"] == 1

    write(tmp_path / "app.log", old + recent + [f"{stamp(timedelta(0))} ERROR upstream timeout again"])
    result = check(tmp_path, last_minutes=10)
    assert result.status == "fail"
    assert "last 10 min" in result.message
    assert "upstream timeout again" in result.message
    assert result.evidence["observed"]["matches"]["ERROR|CRITICAL"] == 1


def test_last_minutes_counts_unstamped_lines_with_the_line_before(tmp_path):
    """A traceback's lines carry no timestamp: they belong to the stamped line above them."""
    def traceback(ago):
        return [f"{stamp(ago)} ERROR request failed", "Traceback (most recent call last):",
                '  File "server.py", line 12, in handle', "ValueError: bad input"]

    write(tmp_path / "app.log", traceback(timedelta(hours=2)) + traceback(timedelta(seconds=10)))
    result = check(tmp_path, last_minutes=10, patterns=[{"regex": "^Traceback"}, {"regex": "ValueError"}])
    assert result.status == "fail"
    assert result.evidence["observed"]["matches"] == {"^Traceback": 1, "ValueError": 1}
    assert result.evidence["details"]["lines"]["ValueError"] == ["app.log:8: ValueError: bad input"]


def test_last_minutes_reads_utc_iso_stamps(tmp_path):
    from datetime import timezone

    def utc(ago):
        return (datetime.now(timezone.utc) - ago).strftime("%Y-%m-%dT%H:%M:%SZ")

    write(tmp_path / "app.log", [f"{utc(timedelta(hours=3))} ERROR old", f"{utc(timedelta(seconds=5))} ERROR new"])
    result = check(tmp_path, last_minutes=10)
    assert result.status == "fail"
    assert result.evidence["observed"]["matches"]["ERROR|CRITICAL"] == 1
    assert "ERROR new" in result.message and "ERROR old" not in result.message


def test_secrets_in_matching_lines_are_redacted(tmp_path):
    """Evidence never carries a secret, even when the log line does."""
    write(tmp_path / "app.log", info_lines(3) + ["ERROR login failed for admin password=hunter2"])
    result = check(tmp_path, last_lines=100)
    assert result.status == "fail"
    evidence_lines = result.evidence["details"]["lines"]["ERROR|CRITICAL"]
    assert evidence_lines == ["app.log:4: ERROR login failed for admin password=***"]
    assert "hunter2" not in result.message and "password=***" in result.message
    assert "hunter2" not in repr(result.to_json())


def test_missing_log_fails_naming_no_log_file_matches(tmp_path):
    """A log that is not there is a failure: a check that read nothing must not pass."""
    result = check(tmp_path, path="logs/aura.log", last_lines=100)
    assert result.status == "fail"
    assert "no log file matches" in result.message
    assert str(tmp_path / "logs" / "aura.log") in result.message


def test_missing_log_passes_only_when_missing_ok(tmp_path):
    result = check(tmp_path, path="logs/aura.log", missing_ok=True)
    assert result.status == "pass", result.message


def test_glob_reads_every_matching_file(tmp_path):
    write(tmp_path / "worker-1.log", info_lines(5), age_s=60)
    write(tmp_path / "worker-2.log", info_lines(5) + ["ERROR worker 2 crashed"])
    result = check(tmp_path, path="worker-*.log")
    assert result.status == "fail"
    assert result.evidence["details"]["lines"]["ERROR|CRITICAL"] == ["worker-2.log:6: ERROR worker 2 crashed"]


def test_warn_max_gives_warn_between_levels(tmp_path):
    """Runbook: a few retries are normal, many are a warning, a flood is a failure."""
    write(tmp_path / "app.log", info_lines(10) + ["WARN retrying upstream"] * 3)
    patterns = [{"regex": "retrying", "max": 5, "warn_max": 1}]
    result = check(tmp_path, patterns=patterns)
    assert result.status == "warn"
    assert "retrying" in result.message and "<= 1" in result.message and "observed 3" in result.message
    write(tmp_path / "app.log", info_lines(10) + ["WARN retrying upstream"] * 6)
    assert check(tmp_path, patterns=patterns).status == "fail"
    write(tmp_path / "app.log", info_lines(10) + ["WARN retrying upstream"])
    assert check(tmp_path, patterns=patterns).status == "pass"


def test_word_boundary_regex(tmp_path):
    """``\\bERROR\\b``: "ERRORS=0" in a summary line is not an error."""
    write(tmp_path / "app.log", ["INFO summary ERRORS=0 WARNINGS=2"])
    assert check(tmp_path, patterns=[{"regex": r"\bERROR\b"}]).status == "pass"
    write(tmp_path / "app.log", ["INFO summary ERRORS=0", "ERROR disk full"])
    result = check(tmp_path, patterns=[{"regex": r"\bERROR\b"}])
    assert result.status == "fail"
    assert r"lines matching /\bERROR\b/" in result.message


def test_ignore_case(tmp_path):
    write(tmp_path / "app.log", ["error: lower-case but still an error"])
    assert check(tmp_path, patterns=[{"regex": "ERROR"}]).status == "pass"
    assert check(tmp_path, patterns=[{"regex": "ERROR", "ignore_case": True}]).status == "fail"
