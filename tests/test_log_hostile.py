"""``log`` checks against hostile files (issue 8, "Logs"): long lines, big files, files
without a newline, every timestamp format, windows where no time can be read.

All files are real files under tmp_path. "Reads only the tail" is shown with the probe's
own ``bytes_read`` counter, not with wall time; memory with a child process's peak RSS.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from opsgate.model import LogCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check

ERRORS = [{"regex": "ERROR"}]
MiB = 1 << 20


def check(tmp_path, **fields):
    fields.setdefault("name", "app-log")
    fields.setdefault("path", "app.log")
    fields.setdefault("patterns", ERRORS)
    return run_check(LogCheck(**fields), ProbeContext(tmp_path))


def observed(result) -> dict:
    return result.evidence["observed"]


def evidence(result, regex: str = "ERROR") -> list[str]:
    return result.evidence["details"]["lines"][regex]


def write_big(path, size: int, line: bytes = b"INFO 2020-01-01 00:00:00 request served in 12 ms\n", tail: bytes = b"") -> None:
    """``size`` bytes of ``line`` repeated, then ``tail``: written in 4 MiB blocks."""
    block = line * (4 * MiB // len(line))
    with open(path, "wb") as handle:
        written = 0
        while written < size:
            handle.write(block)
            written += len(block)
        handle.write(tail)


# --- a pattern matches anywhere in a line of any length ------------------------------------

def test_error_at_column_4200_fails_with_an_excerpt_around_it(tmp_path):
    """Old code searched the first 4,096 characters only: this ERROR passed."""
    (tmp_path / "app.log").write_text("INFO ok\n" + "x" * 4199 + "ERROR disk full password=hunter2 " + "y" * 5000 + "\n")
    result = check(tmp_path, last_lines=10)
    assert result.status == "fail", result.message
    [line] = evidence(result)
    assert line.startswith("app.log:2 col 4200: …")
    assert "ERROR disk full password=*** yyy" in line and line.endswith("…")
    assert len(line) < 500 and "hunter2" not in repr(result.to_json())


def test_match_straddling_a_window_edge_in_a_3_mib_line_is_found(tmp_path):
    """Lines over 1 MiB are searched in overlapping windows: a match across the first
    window's end (1 MiB) is found, once, and ``^``/``$`` keep meaning the line's ends."""
    line = bytearray(b"z" * (3 * MiB))
    line[MiB - 3:MiB + 2] = b"ERROR"
    (tmp_path / "app.log").write_bytes(b"INFO start\n" + bytes(line) + b" END\nINFO after\n")
    result = check(tmp_path, patterns=[{"regex": "ERROR"}, {"regex": "z{3}ERROR"}, {"regex": "^ERROR"},
                                       {"regex": "z{10}$"}, {"regex": "END$"}])
    assert observed(result)["matches"] == {"ERROR": 1, "z{3}ERROR": 1, "^ERROR": 0, "z{10}$": 0, "END$": 1}
    assert observed(result)["lines_read"] == 3
    assert evidence(result)[0].startswith(f"app.log:2 col {MiB - 2}: …")


def test_error_deep_in_a_long_line_without_newline_is_found(tmp_path):
    (tmp_path / "app.log").write_bytes(b"a" * (5 * MiB) + b" CRITICAL token=abc123 " + b"b" * 100)
    result = check(tmp_path, last_lines=1, patterns=[{"regex": "CRITICAL"}])
    assert result.status == "fail"
    assert observed(result)["lines_read"] == 1
    [line] = evidence(result, "CRITICAL")
    assert "CRITICAL token=***" in line and "abc123" not in line and len(line) < 500


def test_no_newline_file_is_read_in_bounded_memory(tmp_path):
    """Old code held the whole line (a 1 GB file took 4.3 GB of RSS). A 256 MB file without a
    newline, read whole, by last_lines and by last_minutes, in a child: peak RSS < 120 MB."""
    write_big(tmp_path / "app.log", 256 * MiB, line=b"x" * 4096, tail=b" ERROR at the end")
    script = textwrap.dedent(f"""
        import resource, sys
        from opsgate.model import LogCheck
        from opsgate.probes import ProbeContext
        from opsgate.runner import run_check
        ctx = ProbeContext({str(tmp_path)!r})
        for extra in ({{}}, {{"last_lines": 100}}, {{"last_minutes": 10}}):
            r = run_check(LogCheck(name="a", path="app.log", patterns=[{{"regex": "ERROR"}}], timeout=60, **extra), ctx)
            print(extra, r.status, r.message[-150:])
        print("rss_mb", int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("{} fail") and "ERROR at the end" in lines[0]
    assert lines[1].startswith("{'last_lines': 100} fail")
    assert "no timestamp could be read" in lines[2]  # one line, no time in it: not a pass
    assert float(lines[-1].split()[1]) < 120, out.stdout


def test_reading_stops_at_the_deadline_inside_a_line(tmp_path):
    """Old code checked its deadline every 10,000 lines: one endless line never reached it."""
    write_big(tmp_path / "app.log", 200 * MiB, line=b"x" * 4096)
    started = time.monotonic()
    result = check(tmp_path, timeout=0.05)
    assert result.failed
    assert "app.log: reading took longer than the timeout (0.05s)" in result.message
    assert time.monotonic() - started < 15


# --- last_lines from the end, in time independent of the size -------------------------------

def test_last_lines_of_a_200_mb_log_reads_only_its_tail(tmp_path):
    """Old code read the whole file from the start (a 2 GB log timed out)."""
    tail = b"".join(b"INFO request %d\n" % i for i in range(60)) + b"ERROR upstream down\n" + b"INFO ok\n" * 39
    write_big(tmp_path / "app.log", 200 * MiB, line=b"ERROR long ago\n", tail=tail)
    result = check(tmp_path, last_lines=100)
    assert result.status == "fail"
    assert observed(result)["lines_read"] == 100 and observed(result)["matches"] == {"ERROR": 1}
    assert observed(result)["bytes_read"] < 4 * MiB
    size = (tmp_path / "app.log").stat().st_size
    assert evidence(result) == [f"app.log byte {size - 39 * 8 - 20}: ERROR upstream down"]
    assert check(tmp_path, last_lines=39).status == "pass"


def test_last_lines_continues_into_rotations_when_the_current_file_is_short(tmp_path):
    with gzip.open(tmp_path / "app.log.2.gz", "wt") as handle:
        handle.write("INFO a\nERROR in the gz\nINFO b\n")
    (tmp_path / "app.log.1").write_text("INFO c\n" * 5)
    (tmp_path / "app.log").write_text("INFO d\n" * 3)
    result = check(tmp_path, last_lines=10)
    assert result.status == "fail" and observed(result)["lines_read"] == 10
    assert evidence(result) == ["app.log.2.gz:2: ERROR in the gz"]
    assert check(tmp_path, last_lines=9).status == "pass"


def test_each_log_of_a_glob_gets_its_own_last_lines(tmp_path):
    """Old code took the last N lines of all workers together: the newest worker's lines
    hid an ERROR in every other worker."""
    (tmp_path / "worker-1.log").write_text("INFO ok\nERROR worker 1 crashed\n")
    (tmp_path / "worker-2.log").write_text("INFO ok\n" * 100)
    os.utime(tmp_path / "worker-1.log", (time.time() - 60, time.time() - 60))
    result = check(tmp_path, path="worker-*.log", last_lines=10)
    assert result.status == "fail", result.message
    assert evidence(result) == ["worker-1.log:2: ERROR worker 1 crashed"]
    assert observed(result)["lines_read"] == 12


def test_crlf_lines(tmp_path):
    (tmp_path / "app.log").write_bytes(b"INFO ok\r\nfailed: ERROR\r\n")
    result = check(tmp_path, last_lines=5, patterns=[{"regex": "ERROR$"}])
    assert result.status == "fail" and evidence(result, "ERROR$") == ["app.log:2: failed: ERROR"]


# --- reading nothing ------------------------------------------------------------------------

def test_empty_log_passes_with_lines_read_0_unless_the_user_expects_lines(tmp_path):
    """Decision: an empty log has no ERROR; the evidence says 0 lines were read, and a user who
    needs lines says so with a condition."""
    (tmp_path / "app.log").write_text("")
    result = check(tmp_path, last_lines=100)
    assert result.status == "pass" and observed(result)["lines_read"] == 0
    result = check(tmp_path, last_lines=100, expect=["lines_read > 0"])
    assert result.status == "fail" and "lines_read > 0" in result.message
    assert check(tmp_path, last_minutes=10).status == "pass"


def test_quiet_log_passes_with_no_line_in_the_window(tmp_path):
    old = (datetime.now() - timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S")
    (tmp_path / "app.log").write_text(f"{old} ERROR long ago\n{old} INFO quiet since\n")
    result = check(tmp_path, last_minutes=10)
    assert result.status == "pass" and observed(result)["lines_read"] == 0


def test_window_without_any_readable_time_is_a_failure_naming_the_fix(tmp_path):
    """Old code: syslog-like lines it could not read gave "0 lines read" and PASS."""
    now = datetime.now()
    (tmp_path / "app.log").write_text("".join(f"{now:%d.%m.%Y %H:%M:%S} ERROR disk full {i}\n" for i in range(3)))
    result = check(tmp_path, last_minutes=10)
    assert result.failed and result.status != "pass"
    assert "no timestamp could be read in the last 3 lines of app.log; set timestamp_format" in result.message
    result = check(tmp_path, last_minutes=10, timestamp_format="%d.%m.%Y %H:%M:%S")
    assert result.status == "fail" and observed(result)["matches"] == {"ERROR": 3}


def test_no_time_in_the_last_10000_lines_stops_the_walk(tmp_path):
    write_big(tmp_path / "app.log", 50 * MiB, line=b"no time here\n")
    result = check(tmp_path, last_minutes=10)
    assert "no timestamp could be read in the last 10000 lines of app.log" in result.message
    assert observed(result)["bytes_read"] < 4 * MiB


# --- last_minutes: formats, from the end ----------------------------------------------------

def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


FORMATS = {
    "iso T Z": lambda t: f"{_utc(t):%Y-%m-%dT%H:%M:%S}Z",
    "iso space comma local": lambda t: f"{t:%Y-%m-%d %H:%M:%S},123",
    "rfc3339 nanoseconds offset": lambda t: t.astimezone(timezone(timedelta(hours=-5))).strftime(
        "%Y-%m-%dT%H:%M:%S.123456789-05:00"),
    "rfc5424": lambda t: f"<165>1 {_utc(t):%Y-%m-%dT%H:%M:%S}.003Z host app 12 - -",
    "rfc3164": lambda t: f"{t:%b} {t.day:2d} {t:%H:%M:%S} host app[12]:",
    "rfc3164 with pri": lambda t: f"<34>{t:%b %d %H:%M:%S} host app:",
    "common log": lambda t: f'127.0.0.1 - - [{_utc(t):%d/%b/%Y:%H:%M:%S} +0000] "GET / HTTP/1.1" 500 -',
    "journald short-iso": lambda t: f"{t.astimezone(timezone(timedelta(hours=2))):%Y-%m-%dT%H:%M:%S+0200} host app[1]:",
    "epoch": lambda t: f"{int(t.timestamp())}",
    "epoch fraction": lambda t: f"{t.timestamp():.3f}",
    "json ts": lambda t: f'{{"level":"x","ts":{t.timestamp():.3f},"msg":',
    "json time ms": lambda t: f'{{"time":{int(t.timestamp() * 1000)},"msg":',
    "json timestamp iso": lambda t: f'{{"timestamp":"{_utc(t):%Y-%m-%dT%H:%M:%S.%fZ}","msg":',
}


@pytest.mark.parametrize("form", FORMATS)
def test_each_timestamp_format_puts_lines_inside_or_outside_the_window(tmp_path, form):
    """An ERROR from 2 hours ago is outside ``last_minutes: 10``; one from 1 minute ago inside."""
    stamp, now = FORMATS[form], datetime.now().astimezone()
    old, new = now - timedelta(hours=2), now - timedelta(minutes=1)
    (tmp_path / "app.log").write_text(f"{stamp(old)} ERROR old\n{stamp(new)} INFO fine\n")
    result = check(tmp_path, last_minutes=10)
    assert result.status == "pass", result.message
    assert observed(result)["lines_read"] == 1
    (tmp_path / "app.log").write_text(f"{stamp(old)} INFO fine\n{stamp(new)} ERROR new\n")
    result = check(tmp_path, last_minutes=10)
    assert result.status == "fail", result.message
    assert observed(result)["matches"] == {"ERROR": 1} and "ERROR new" in result.message


@pytest.mark.parametrize("fields, line", [
    ({"timestamp_format": "%d.%m.%Y %H:%M:%S"}, "{t:%d.%m.%Y %H:%M:%S} {level}"),
    ({"timestamp_format": "%Y%m%d-%H%M%S", "timestamp_regex": r"at=(\S+)"}, "{level} 42 at={t:%Y%m%d-%H%M%S}"),
    ({"timestamp_format": "%b %d %H:%M:%S"}, "{t:%b %d %H:%M:%S} {level}"),  # no year: inferred
])
def test_user_timestamp_format(tmp_path, fields, line):
    now = datetime.now()
    lines = [line.format(t=now - timedelta(hours=2), level="ERROR old"), line.format(t=now, level="INFO new")]
    (tmp_path / "app.log").write_text("\n".join(lines) + "\n")
    assert check(tmp_path, last_minutes=10, **fields).status == "pass"
    lines = [line.format(t=now - timedelta(hours=2), level="INFO old"), line.format(t=now, level="ERROR new")]
    (tmp_path / "app.log").write_text("\n".join(lines) + "\n")
    result = check(tmp_path, last_minutes=10, **fields)
    assert result.status == "fail" and observed(result)["matches"] == {"ERROR": 1}


def test_syslog_year_is_the_most_recent_not_more_than_a_day_ahead():
    from opsgate.probes.log import Clock  # new with issue 8

    now = datetime(2027, 1, 1, 0, 30).timestamp()
    clock = Clock(now)
    assert clock.read("Dec 31 23:59:00 h a:") == datetime(2026, 12, 31, 23, 59).timestamp()
    assert clock.read("Jan  1 00:10:00 h a:") == datetime(2027, 1, 1, 0, 10).timestamp()
    assert clock.read("Jan  1 23:00:00 h a:") == datetime(2027, 1, 1, 23, 0).timestamp()  # < a day ahead
    assert clock.read("Jan  2 12:00:00 h a:") == datetime(2026, 1, 2, 12, 0).timestamp()  # > a day: last year
    assert Clock(datetime(2026, 12, 31, 23, 0).timestamp()).read("Jan  1 00:30:00 h a:") == \
        datetime(2027, 1, 1, 0, 30).timestamp()


def test_timestamp_fields_are_validated():
    base = {"name": "a", "path": "app.log", "patterns": ERRORS}
    with pytest.raises(ValidationError, match="timestamp_regex needs timestamp_format"):
        LogCheck(**base, last_minutes=5, timestamp_regex="(x)")
    with pytest.raises(ValidationError, match="only with last_minutes"):
        LogCheck(**base, last_lines=5, timestamp_format="%H:%M %d")
    with pytest.raises(ValidationError, match="%Q is not a directive"):
        LogCheck(**base, last_minutes=5, timestamp_format="%Q %H %d")
    with pytest.raises(ValidationError, match="needs an hour"):
        LogCheck(**base, last_minutes=5, timestamp_format="%Y-%m-%d")


def test_last_minutes_of_a_200_mb_log_reads_only_its_tail(tmp_path):
    """The window is found walking back from the end: old lines far up are never read."""
    now = datetime.now()
    recent = "".join(f"{now - timedelta(seconds=60 - i):%Y-%m-%d %H:%M:%S} {'ERROR' if i == 30 else 'INFO'} r{i}\n"
                     for i in range(60)).encode()
    write_big(tmp_path / "app.log", 200 * MiB, line=b"2020-01-01 00:00:00 ERROR long ago\n", tail=recent)
    result = check(tmp_path, last_minutes=10)
    assert result.status == "fail", result.message
    assert observed(result)["lines_read"] == 60 and observed(result)["matches"] == {"ERROR": 1}
    assert observed(result)["bytes_read"] < 4 * MiB


def test_last_minutes_tolerates_small_disorder_and_keeps_tracebacks(tmp_path):
    now = datetime.now()

    def at(minutes):
        return f"{now - timedelta(minutes=minutes):%Y-%m-%d %H:%M:%S}"

    (tmp_path / "app.log").write_text("\n".join([
        f"{at(30)} ERROR old", "Traceback: ERROR in old traceback",
        f"{at(9)} ERROR slightly out of order",  # written after a line older than itself
        f"{at(11)} INFO a late writer", "  ERROR continuing the late line",
        f"{at(1)} INFO newest"]) + "\n")
    result = check(tmp_path, last_minutes=10)
    assert observed(result)["matches"] == {"ERROR": 1}
    assert evidence(result) == [f"app.log:3: {at(9)} ERROR slightly out of order"]
    assert observed(result)["lines_read"] == 2


def test_last_minutes_reaches_into_rotations_only_when_the_window_does(tmp_path):
    now = datetime.now()

    def at(minutes, text):
        return f"{now - timedelta(minutes=minutes):%Y-%m-%d %H:%M:%S} {text}\n"

    with gzip.open(tmp_path / "app.log.2.gz", "wt") as handle:
        handle.write(at(40, "ERROR before the window") + at(8, "ERROR in the gz"))
    (tmp_path / "app.log.1").write_text(at(6, "INFO a") + "ERROR continuation of a\n")
    (tmp_path / "app.log").write_text("  ERROR continuation still of a\n" + at(2, "INFO b"))
    result = check(tmp_path, last_minutes=10)
    assert observed(result)["matches"] == {"ERROR": 3}, result.evidence
    assert evidence(result) == ["app.log.2.gz:2: " + at(8, "ERROR in the gz").strip(),
                                "app.log.1:2: ERROR continuation of a", "app.log:1:   ERROR continuation still of a"]
    assert check(tmp_path, last_minutes=5).status == "pass"


def test_last_lines_and_last_minutes_together_take_the_smaller_window(tmp_path):
    now = datetime.now()
    (tmp_path / "app.log").write_text("".join(
        f"{now - timedelta(minutes=m):%Y-%m-%d %H:%M:%S} {'ERROR' if m == 4 else 'INFO'} m{m}\n"
        for m in (20, 5, 4, 3, 2, 1)))
    assert check(tmp_path, last_minutes=10, last_lines=3).status == "pass"
    assert check(tmp_path, last_minutes=10, last_lines=4).status == "fail"
    assert check(tmp_path, last_minutes=4.5, last_lines=100).status == "fail"
    assert observed(check(tmp_path, last_minutes=3.5, last_lines=100))["lines_read"] == 3


def test_corrupt_or_truncated_gz_rotation_is_a_failure_naming_the_file(tmp_path):
    """Old code said "CRC check failed 0x39b53f42 != 0xce9e5da4", naming no file."""
    data = bytearray(gzip.compress(b"".join(b"INFO line %d with some text\n" % i for i in range(20000))))
    data[len(data) // 2:len(data) // 2 + 64] = b"\xff" * 64
    (tmp_path / "app.log.1.gz").write_bytes(bytes(data))
    (tmp_path / "app.log").write_text("INFO ok\n")
    result = check(tmp_path, last_lines=1000)
    assert result.failed and "probe crashed" not in result.message
    assert f"{tmp_path / 'app.log.1.gz'}: cannot read" in result.message
    (tmp_path / "app.log.1.gz").write_bytes(gzip.compress(b"INFO a\n" * 1000)[:-40])
    result = check(tmp_path, last_lines=1000)
    assert result.failed and "app.log.1.gz: cannot read" in result.message


def test_timestamp_format_that_reads_nothing_says_so(tmp_path):
    now = datetime.now()
    (tmp_path / "app.log").write_text(f"{now:%Y-%m-%d %H:%M:%S} ERROR x\n" * 4)
    result = check(tmp_path, last_minutes=10, timestamp_format="%d.%m.%Y %H:%M:%S")
    assert result.failed
    assert ("no timestamp in the form of timestamp_format '%d.%m.%Y %H:%M:%S' could be read in the last 4 lines "
            "of app.log; check timestamp_format and timestamp_regex") in result.message


def test_quiet_log_does_not_read_its_older_rotations(tmp_path):
    """The current file's oldest timed lines are before the window: older rotations are too."""
    with gzip.open(tmp_path / "app.log.1.gz", "wb", compresslevel=1) as handle:
        handle.write(b"2020-01-01 00:00:00 ERROR long ago\n" * 1_000_000)
    old = (datetime.now() - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    (tmp_path / "app.log").write_text(f"{old} INFO quiet\n" * 3)
    result = check(tmp_path, last_minutes=10)
    assert result.status == "pass" and observed(result)["lines_read"] == 0
    assert observed(result)["bytes_read"] < 1000


def test_windows_find_exactly_what_a_whole_line_search_finds(tmp_path_factory):
    """Property, with the window sizes shrunk (line cap 64, overlap 24, edge 4, blocks of 16
    bytes) so that random lines cross many windows: every pattern whose matches are short
    (<= overlap - 2 * edge) counts the same lines as ``re.search`` over whole lines, ``^`` and
    ``$`` included."""
    from hypothesis import given, settings, strategies as st

    from opsgate.probes import log as probe

    patterns = ["ERROR", "^ERROR", "ERROR$", r"\bERROR\b", "RO", "^x", "y$"]
    token = st.sampled_from(["x", "y", " ", "ERROR", "ERR", "OR"])
    line = st.one_of(st.lists(token, max_size=10), st.lists(token, min_size=40, max_size=120)).map("".join)
    directory = tmp_path_factory.mktemp("windows")

    @settings(max_examples=300, deadline=None)
    @given(st.lists(line, min_size=1, max_size=6), st.booleans())
    def prop(lines, final_newline):
        (directory / "app.log").write_text("\n".join(lines) + ("\n" if final_newline else ""))
        result = check(directory, patterns=[{"regex": p} for p in patterns])
        expected = {p: sum(bool(re.search(p, text)) for text in lines) for p in patterns}
        assert observed(result)["matches"] == expected, (lines, result.evidence)

    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"LINE_CAP": 64, "OVERLAP": 24, "EDGE": 4, "BLOCK": 16}.items():
            mp.setattr(probe, name, value)
        prop()


@pytest.mark.negative("log")
def test_a_fifo_where_the_log_should_be_fails_at_once_instead_of_hanging(tmp_path):
    """Opening a FIFO for reading waits for a writer forever, in a thread no timeout stops: a
    FIFO is not a log file (and the target refuses to open anything but a regular file)."""
    os.mkfifo(tmp_path / "app.log")
    started = time.monotonic()
    result = check(tmp_path, path="app.log", patterns=[{"regex": "ERROR"}], last_lines=10, timeout=30)
    assert time.monotonic() - started < 25  # far below the check's own timeout: it never waited
    assert result.status == "fail"
    assert "no log file matches" in result.message, result.message
