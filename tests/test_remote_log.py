"""The log kind reads a remote log on the remote side: the last lines of a 20 MB log on a
real sshd host (tests/support/sshhosts.py) move well under 1 MB over ssh, yet the evidence
still names lines by their number in the file: the lines before the window are counted on
the host (``Target.count_newlines``: ``tail -c | head -c | wc -l`` there) and only the
number comes back. Before, numbering read those 20 MB over the wire. A window reaching into
the previous rotation (``app.log.1.gz``) is found and read there too: the host decompresses and
counts it (``Target.gz_line_count``) and sends only the lines after those skipped
(``Target.open_gz_after``), where it used to send the whole compressed file, twice.
"""

from __future__ import annotations

import gzip
import os

import pytest

from opsgate.probes import ProbeContext
from opsgate.probes.log import COUNT_PREFIX, LogCheck
from opsgate.runner import run_check
from opsgate.targets import local
from tests.support.sshhosts import fleet_fixture

pytest.importorskip("testinfra")
from opsgate.targets.testinfra import TestinfraTarget  # noqa: E402

ssh_fleet = fleet_fixture(2, names=["web1", "web2"])

LINE = b"INFO request served in 12 ms " + b"." * 70 + b"\n"  # 100 bytes
LINES = (20 << 20) // len(LINE)  # a 20 MB log, under COUNT_PREFIX: its lines are numbered
assert LINES * len(LINE) < COUNT_PREFIX


@pytest.fixture(scope="module")
def fleet(ssh_fleet):
    ssh_fleet.require_isolation()
    return ssh_fleet


def write_log(host, tail: list[bytes]) -> int:
    """A 20 MB log at <srv>/log/app.log on ``host`` ending with ``tail``; its number of lines."""
    (host.root / "log").mkdir(exist_ok=True)
    with open(host.root / "log" / "app.log", "wb") as handle:
        for _ in range(LINES // 10_000):
            handle.write(LINE * 10_000)
        handle.write(LINE * (LINES % 10_000))
        handle.writelines(tail)
    return LINES + len(tail)


def remote(host, item, tmp_path):
    """``item`` checked on ``host`` through a fresh ssh target (its own byte count)."""
    target = TestinfraTarget.connect(host.url)
    return run_check(item, ProbeContext(tmp_path, target=target)), target


@pytest.mark.negative("log")
def test_last_lines_of_a_20_mb_remote_log_move_the_window_not_the_file(fleet, tmp_path):
    web1, web2 = fleet
    total = write_log(web1, [LINE] * 40 + [b"ERROR disk full on /var\n"] + [LINE] * 9)
    write_log(web2, [LINE] * 50)
    item = LogCheck(name="app", path=f"{fleet.srv}/log/app.log", last_lines=100, patterns=[{"regex": "ERROR"}])

    broken, target = remote(web1, item, tmp_path)
    assert broken.status == "fail"
    error_line = total - 9  # numbered in the whole file, not in the window
    assert broken.evidence["details"]["lines"]["ERROR"] == [f"app.log:{error_line}: ERROR disk full on /var"]
    assert f"app.log:{error_line}" in broken.message
    assert broken.evidence["observed"]["lines_read"] == 100
    assert target.transferred < 256 << 10, f"received {target.transferred} bytes to read a 20 MB log's last 100 lines"

    clean, target = remote(web2, item, tmp_path)
    assert clean.status == "pass", clean.message
    assert clean.evidence["observed"]["matches"] == {"ERROR": 0}
    assert target.transferred < 256 << 10

    # the same file read locally gives the same line number (the count is the same count)
    here = run_check(item.model_copy(update={"path": str(web1.root / "log" / "app.log")}), ProbeContext(tmp_path))
    assert here.evidence["details"]["lines"]["ERROR"] == [f"app.log:{error_line}: ERROR disk full on /var"]


def test_count_newlines_on_the_host_matches_a_local_count(fleet, tmp_path):
    web1, _ = fleet
    web1.write("log/small.log", b"one\ntwo\n\nfour\nno newline at the end")
    path = f"{fleet.srv}/log/small.log"
    target = TestinfraTarget.connect(web1.url)
    for offset, length in ((0, 0), (0, 4), (0, 8), (3, 6), (0, 1000), (20, 5), (500, 10)):
        assert target.count_newlines(path, offset, length, timeout=20) == local().count_newlines(
            str(web1.root / "log" / "small.log"), offset, length, timeout=5), (offset, length)
    with pytest.raises(FileNotFoundError):
        target.count_newlines(f"{fleet.srv}/log/absent.log", 0, 10, timeout=20)
    assert target.transferred < 1000


def write_rotated(host, gz_tail: list[bytes], current: int) -> tuple[int, int]:
    """app.log with ``current`` lines and app.log.1.gz: ~10 MB of lines that barely compress,
    ending with ``gz_tail``. Returns the line counts of the .gz and its compressed size."""
    (host.root / "log").mkdir(exist_ok=True)
    lines = [os.urandom(40).hex().encode() + b"\n" for _ in range(120_000)] + gz_tail
    packed = gzip.compress(b"".join(lines), compresslevel=1)
    (host.root / "log" / "app.log.1.gz").write_bytes(packed)
    (host.root / "log" / "app.log").write_bytes(LINE * current)
    return len(lines), len(packed)


@pytest.mark.negative("log")
def test_a_window_reaching_into_a_remote_gz_rotation_moves_only_its_lines(fleet, tmp_path):
    web1, web2 = fleet
    gz_lines, packed = write_rotated(web1, [LINE] * 50 + [b"ERROR replica lost\n"] + [LINE] * 19, current=30)
    item = LogCheck(name="app", path=f"{fleet.srv}/log/app.log", last_lines=100, patterns=[{"regex": "ERROR"}])

    broken, target = remote(web1, item, tmp_path)
    assert broken.status == "fail"
    assert broken.evidence["details"]["lines"]["ERROR"] == [f"app.log.1.gz:{gz_lines - 19}: ERROR replica lost"]
    assert broken.evidence["observed"]["lines_read"] == 100
    assert target.transferred < 256 << 10, f"received {target.transferred} bytes; the .gz is {packed} bytes"
    here = run_check(item.model_copy(update={"path": str(web1.root / "log" / "app.log")}), ProbeContext(tmp_path))
    assert here.evidence["details"]["lines"] == broken.evidence["details"]["lines"]

    # a truncated rotation on web2: the host's gzip says so, and the check fails naming the file
    write_rotated(web2, [LINE] * 70, current=30)
    whole = (web2.root / "log" / "app.log.1.gz").read_bytes()
    (web2.root / "log" / "app.log.1.gz").write_bytes(whole[: len(whole) // 2])
    cut, _ = remote(web2, item, tmp_path)
    assert cut.status in ("fail", "error")
    assert "app.log.1.gz: cannot read" in cut.message and "unexpected end of file" in cut.message, cut.message


def stamped(at: float, text: str) -> bytes:
    import time as _time

    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.localtime(at)).encode() + b" " + text.encode() + b"\n"


@pytest.mark.negative("log")
def test_a_last_minutes_window_reaching_into_a_remote_gz_rotation_moves_only_its_lines(fleet, tmp_path):
    """The window's part of app.log.1.gz is found from its end (tails of growing size, skipped on
    the host), so a ~10 MB rotation sends kilobytes; an ERROR older than the window is not counted."""
    import time as _time

    web1, _ = fleet
    now = _time.time()
    old = [stamped(now - 7200 + i * 0.05, f"INFO {os.urandom(30).hex()}") for i in range(120_000)]
    old[1000] = stamped(now - 7000, "ERROR before the window")
    window = [stamped(now - 300 + i, "INFO served") for i in range(60)] + [stamped(now - 200, "ERROR replica lost")]
    packed = gzip.compress(b"".join(old + window), compresslevel=1)
    (web1.root / "log").mkdir(exist_ok=True)
    (web1.root / "log" / "app.log.1.gz").write_bytes(packed)
    (web1.root / "log" / "app.log").write_bytes(b"".join(stamped(now - 60 + i, "INFO ok") for i in range(30)))
    item = LogCheck(name="app", path=f"{fleet.srv}/log/app.log", last_minutes=10, patterns=[{"regex": "ERROR"}])

    broken, target = remote(web1, item, tmp_path)
    assert broken.status == "fail", broken.message
    [line] = broken.evidence["details"]["lines"]["ERROR"]
    assert line.startswith(f"app.log.1.gz:{len(old) + 61}: ") and line.endswith(" ERROR replica lost"), line
    assert broken.evidence["observed"]["matches"] == {"ERROR": 1}
    assert target.transferred < 256 << 10, f"received {target.transferred} bytes; the .gz is {len(packed)} bytes"
    print(f"last_minutes into a {len(packed)}-byte .gz: {target.transferred} bytes received")
    here = run_check(item.model_copy(update={"path": str(web1.root / "log" / "app.log")}), ProbeContext(tmp_path))
    assert here.evidence["details"]["lines"] == broken.evidence["details"]["lines"]
    assert here.evidence["observed"]["matches"] == broken.evidence["observed"]["matches"]
