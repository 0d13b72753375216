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


# --- lines that must be present, and rates ----------------------------------------------------

STARTED = [{"regex": "InnerWorldModel initialised"}]


def test_required_line_present_passes(tmp_path):
    """Runbook (Aura): the log shows "InnerWorldModel initialised" after a start."""
    write(tmp_path / "aura.log", [f"{stamp(timedelta(minutes=5))} INFO InnerWorldModel initialised"]
          + [f"{stamp(timedelta(minutes=1))} INFO tick"])
    result = check(tmp_path, path="aura.log", patterns=[], last_minutes=30, require=STARTED)
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["required"] == {"InnerWorldModel initialised": 1}
    assert result.evidence["details"]["required_lines"]["InnerWorldModel initialised"][0].startswith("aura.log:1: ")


@pytest.mark.negative("log")
def test_required_line_absent_fails_naming_pattern_and_window(tmp_path):
    write(tmp_path / "aura.log", [f"{stamp(timedelta(minutes=m))} INFO tick" for m in (3, 2, 1)])
    result = check(tmp_path, path="aura.log", last_minutes=30, require=STARTED)
    assert result.status == "fail"
    assert "required: lines matching /InnerWorldModel initialised/ in last 30 min >= 1: observed 0" in result.message
    assert "3 lines read in aura.log" in result.message


@pytest.mark.negative("log")
def test_required_line_only_before_its_window_fails(tmp_path):
    """Initialised two hours ago, then restarted without initialising: the old line does not count."""
    write(tmp_path / "aura.log", [f"{stamp(timedelta(hours=2))} INFO InnerWorldModel initialised",
                                  f"{stamp(timedelta(minutes=2))} INFO server restarted"])
    require = [{"regex": "InnerWorldModel initialised", "within_last_minutes": 30}]
    result = check(tmp_path, path="aura.log", last_lines=100, require=require)
    assert result.status == "fail"
    assert "/InnerWorldModel initialised/ in last 30 min >= 1: observed 0" in result.message
    # the check's own window (the last 100 lines) still reaches it for the counted patterns
    assert result.evidence["observed"]["lines_read"] == 2
    require = [{"regex": "InnerWorldModel initialised", "within_last_minutes": 180}]
    assert check(tmp_path, path="aura.log", last_lines=100, require=require).status == "pass"


@pytest.mark.negative("log")
def test_required_line_in_last_lines_and_min_count(tmp_path):
    write(tmp_path / "app.log", ["INFO worker ready"] + info_lines(50) + ["INFO worker ready"])
    require = [{"regex": "worker ready", "min": 2, "within_last_lines": 20}]
    result = check(tmp_path, require=require)
    assert result.status == "fail"
    assert "required: lines matching /worker ready/ in last 20 lines >= 2: observed 1" in result.message
    assert check(tmp_path, require=[{"regex": "worker ready", "min": 2}]).status == "pass"  # whole file


@pytest.mark.negative("log")
def test_required_line_of_a_missing_log_fails_even_when_missing_ok(tmp_path):
    """A line that must be present is absent when there is no log: never a pass."""
    result = check(tmp_path, path="aura.log", missing_ok=True, require=STARTED)
    assert result.status == "fail"
    assert "/InnerWorldModel initialised/" in result.message and "observed 0" in result.message


def errors_per_minute(per_minute: int, minutes: int) -> list[str]:
    return [f"{stamp(timedelta(minutes=m, seconds=s))} ERROR upstream timeout"
            for m in range(minutes, 0, -1) for s in range(0, 60, 60 // per_minute)]


@pytest.mark.negative("log")
def test_error_rate_over_max_per_minute_fails(tmp_path):
    """Runbook: errors per minute, not just whether there are any."""
    write(tmp_path / "app.log", errors_per_minute(6, 5))  # 30 errors within 10 minutes: 3 per minute
    patterns = [{"regex": "ERROR", "max_per_minute": 2}]
    result = check(tmp_path, last_minutes=10, patterns=patterns)
    assert result.status == "fail"
    assert result.evidence["observed"]["per_minute"] == {"ERROR": 3.0}
    assert "lines matching /ERROR/ per minute over the last 10 min <= 2: observed 3.0" in result.message
    # no count limit was asked for: 30 lines under the rate pass
    assert check(tmp_path, last_minutes=10, patterns=[{"regex": "ERROR", "max_per_minute": 5}]).status == "pass"


def test_error_rate_warns_between_levels(tmp_path):
    write(tmp_path / "app.log", errors_per_minute(3, 4))  # 12 in 10 minutes: 1.2 per minute
    patterns = [{"regex": "ERROR", "max_per_minute": 5, "warn_per_minute": 1}]
    result = check(tmp_path, last_minutes=10, patterns=patterns)
    assert result.status == "warn", result.message
    assert "per minute" in result.message and "observed 1.2" in result.message


def test_a_rate_needs_last_minutes():
    with pytest.raises(ValueError, match="max_per_minute/warn_per_minute of /ERROR/ need last_minutes"):
        LogCheck(name="x", path="a.log", last_lines=100, patterns=[{"regex": "ERROR", "max_per_minute": 1}])
    with pytest.raises(ValueError, match="expected patterns .* or require"):
        LogCheck(name="x", path="a.log", patterns=[])
