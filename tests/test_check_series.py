"""``series`` checks over real JSON-lines metrics files and a real Prometheus (Debian's, started
on a free loopback port by tests/support/servers.py).

Runbook steps protected here: the Aura weekly "average CPU over the last 100 samples"
(critical over 80 %), "peak memory > 85 % warning", and a memory leak seen as a steady
slope.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from opsgate.probes import ProbeContext
from opsgate.probes.series import BLOCK, SeriesCheck
from opsgate.runner import run_check
from tests.support.http_target import HangingTarget, free_port
from tests.support.servers import PrometheusServer

def now() -> datetime:
    """The time a test writes its samples: taken when it runs, not when the module was
    imported (a worker may import it minutes before, and the window is counted from now)."""
    return datetime.now(timezone.utc)


def write(tmp_path, lines, name="metrics.jsonl"):
    path = tmp_path / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def samples(values, field="cpu_percent", every=timedelta(minutes=1)):
    """One line per value, the newest stamped now, ``every`` apart."""
    start = now() - every * (len(values) - 1)
    return [{"ts": (start + every * i).isoformat(), field: v} for i, v in enumerate(values)]


def check(tmp_path, **fields):
    fields.setdefault("name", "cpu-weekly")
    fields.setdefault("path", "metrics.jsonl")
    return run_check(SeriesCheck(**fields), ProbeContext(tmp_path))


def test_average_within_the_limit_passes(tmp_path):
    write(tmp_path, samples([40.0, 60.0] * 50))
    result = check(tmp_path, field="cpu_percent", last_samples=100, average={"warn": 70, "critical": 80})
    assert result.status == "pass", result.message
    observed = result.evidence["observed"]
    assert observed["samples"] == 100 and observed["average"] == 50.0 and observed["bad_samples"] == 0


@pytest.mark.negative("series")
def test_average_of_the_last_100_samples_over_80_fails(tmp_path):
    """Older samples (50 %) are outside the window: only the last 100 (83.2 %) count."""
    write(tmp_path, samples([50.0] * 200 + [83.2] * 100))
    result = check(tmp_path, field="cpu_percent", last_samples=100, average={"warn": 70, "critical": 80})
    assert result.status == "fail"
    assert "series cpu_percent: average of the last 100 samples <= 80: observed 83.2" in result.message


def test_peak_over_the_warn_level_warns(tmp_path):
    write(tmp_path, samples([60.0] * 50 + [88.5] + [60.0] * 49, field="memory_percent"))
    result = check(tmp_path, field="memory_percent", last_samples=100, peak={"warn": 85})
    assert result.status == "warn", result.message
    assert "series memory_percent: peak of the last 100 samples <= 85: observed 88.5" in result.message


@pytest.mark.negative("series")
def test_a_growing_memory_slope_fails(tmp_path):
    """A leak: +100 MB an hour over two hours, nested field, epoch-second times."""
    start = now().timestamp() - 7200
    write(tmp_path, [{"ts": start + 60 * i, "memory": {"rss_mb": 500 + 100 * i / 60}} for i in range(121)])
    result = check(tmp_path, field="memory.rss_mb", time_field="ts", last_minutes=180,
                   slope_per_hour={"critical": 50}, min_samples=10)
    assert result.status == "fail"
    assert "series memory.rss_mb: slope per hour of the last 180 minutes <= 50: observed 100" in result.message


def test_a_flat_memory_series_passes_the_slope_limit(tmp_path):
    write(tmp_path, samples([512.0, 514.0, 511.0, 513.0] * 30, field="rss_mb"))
    result = check(tmp_path, field="rss_mb", time_field="ts", last_samples=120, slope_per_hour={"critical": 50},
                   percentiles={"p95": {"critical": 514}})
    assert result.status == "pass", result.message
    assert abs(result.evidence["observed"]["slope_per_hour"]) < 5
    assert result.evidence["observed"]["percentiles"]["p95"] == 514.0


@pytest.mark.negative("series")
def test_too_few_samples_fails_naming_how_many(tmp_path):
    path = write(tmp_path, samples([10.0] * 30))
    result = check(tmp_path, field="cpu_percent", last_samples=100, average={"critical": 80})
    assert result.status == "fail"
    assert f"series cpu_percent: only 30 good samples in the last 100 samples of {path}, 100 needed" in result.message


@pytest.mark.negative("series")
def test_a_malformed_line_is_counted_and_named(tmp_path):
    lines = samples([10.0] * 50)
    lines.insert(45, '{"ts": "2026-12-01T00:00:00", "cpu_percent": 9')
    path = write(tmp_path, lines)
    offset = path.read_bytes().index(b'{"ts": "2026-12-01T00:00:00", "cpu_percent": 9\n')
    result = check(tmp_path, field="cpu_percent", last_samples=40, average={"critical": 80})
    assert result.status == "fail"
    assert "series cpu_percent: bad samples in the last 40 samples <= 0: observed 1" in result.message
    assert f"1 bad sample: line at byte {offset}: not JSON" in result.message


@pytest.mark.negative("series")
@pytest.mark.parametrize("bad, why", [
    (None, "cpu_percent is null"),
    ("high", "cpu_percent is the text 'high', not a number"),
    (True, "cpu_percent is a boolean (true), not a number"),
    ({"v": 1}, "cpu_percent is a JSON dict, not a number"),
])
def test_non_numeric_values_never_pass_silently(tmp_path, bad, why):
    lines = samples([10.0] * 20)
    lines[-3]["cpu_percent"] = bad
    write(tmp_path, lines)
    result = check(tmp_path, field="cpu_percent", last_samples=10, average={"critical": 80})
    assert result.status == "fail"
    assert "bad samples in the last 10 samples <= 0: observed 1" in result.message and why in result.message


@pytest.mark.negative("series")
def test_a_file_of_nulls_fails_as_too_few_samples_naming_them(tmp_path):
    lines = samples([None] * 20)
    lines.append({"ts": now().isoformat()})  # the field missing altogether
    write(tmp_path, lines)
    result = check(tmp_path, field="cpu_percent", last_samples=10, max_bad=100, peak={"critical": 80})
    assert result.status == "fail"
    assert "only 0 good samples" in result.message and "21 bad samples" in result.message
    assert "cpu_percent is missing" in result.message and "cpu_percent is null" in result.message


def test_tolerated_bad_samples_are_still_counted(tmp_path):
    lines = samples([10.0] * 20)
    lines[5]["cpu_percent"] = None
    write(tmp_path, lines)
    result = check(tmp_path, field="cpu_percent", last_samples=19, max_bad=1, average={"critical": 80})
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["bad_samples"] == 1


def test_last_minutes_takes_only_the_window(tmp_path):
    """Two hours of samples a minute apart: the last 30 minutes hold 31 of them, all at 90."""
    write(tmp_path, samples([20.0] * 90 + [90.0] * 31))
    result = check(tmp_path, field="cpu_percent", time_field="ts", last_minutes=30.5, min={"critical": 85})
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["samples"] == 31


@pytest.mark.negative("series")
def test_a_minimum_under_its_lower_bound_fails(tmp_path):
    write(tmp_path, samples([40.0] * 9 + [3.0], field="free_gb"))
    result = check(tmp_path, field="free_gb", last_samples=10, min={"critical": 5})
    assert result.status == "fail"
    assert "series free_gb: minimum of the last 10 samples >= 5: observed 3" in result.message


def test_a_big_file_is_read_from_its_end_only(tmp_path):
    write(tmp_path, samples([1.0] * 200_000))
    result = check(tmp_path, field="cpu_percent", last_samples=100, average={"critical": 80})
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["bytes_read"] <= BLOCK


@pytest.mark.negative("series")
def test_a_missing_file_fails_naming_it(tmp_path):
    result = check(tmp_path, field="cpu_percent", last_samples=10)
    assert result.status == "fail"
    assert f"series cpu_percent: {tmp_path / 'metrics.jsonl'} does not exist" in result.message


@pytest.mark.negative("series")
@pytest.mark.timeout(20)
def test_a_fifo_or_a_folder_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "metrics.jsonl")
    result = check(tmp_path, field="cpu_percent", last_samples=10, timeout=2)
    assert result.status == "fail"
    assert f"{tmp_path / 'metrics.jsonl'} is not a regular file" in result.message
    result = check(tmp_path, path=".", field="cpu_percent", last_samples=10, timeout=2)
    assert result.status == "fail" and "is not a regular file" in result.message


def test_inconsistent_items_are_refused_at_load():
    with pytest.raises(ValueError, match="exactly one of last_samples or last_minutes"):
        SeriesCheck(name="x", path="m", field="v")
    with pytest.raises(ValueError, match="expected time_field with last_minutes or slope_per_hour"):
        SeriesCheck(name="x", path="m", field="v", last_samples=5, slope_per_hour=10)
    with pytest.raises(ValueError, match="percentile name like p95"):
        SeriesCheck(name="x", path="m", field="v", last_samples=5, percentiles={"95th": 1})


# --- Prometheus range queries ---------------------------------------------------------------

@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    with PrometheusServer(tmp_path_factory.mktemp("prom"), free_port()) as server:
        # settled means every job has one sample: wait (bounded) until the range holds a few
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = time.time()
            answer = requests.get(f"{server.url}/api/v1/query_range", timeout=2, params={
                "query": 'up{job="prometheus"}', "start": now - 60, "end": now, "step": 1}).json()
            if sum(len(r["values"]) for r in answer["data"]["result"]) >= 4:
                break
            time.sleep(0.5)
        yield server


def prom_check(tmp_path, server, query, **fields):
    fields.setdefault("last_minutes", 2)
    fields.setdefault("min_samples", 2)
    return run_check(SeriesCheck(name="prom", path=None, prometheus={"url": server.url, "query": query, "step": "1s"},
                                 **fields), ProbeContext(tmp_path))


def test_prometheus_range_passes(tmp_path, prometheus):
    result = prom_check(tmp_path, prometheus, 'up{job="prometheus"}', average={"critical": 1}, min={"critical": 1})
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["samples"] >= 2 and result.evidence["observed"]["peak"] == 1.0


@pytest.mark.negative("series")
def test_prometheus_range_over_the_limit_fails(tmp_path, prometheus):
    result = prom_check(tmp_path, prometheus, 'up{job="prometheus"}', peak={"critical": 0.5})
    assert result.status == "fail"
    assert 'series up{job="prometheus"}: peak of the last 2 minutes <= 0.5: observed 1' in result.message


@pytest.mark.negative("series")
def test_prometheus_query_with_many_series_fails_naming_how_many(tmp_path, prometheus):
    result = prom_check(tmp_path, prometheus, "up", peak={"critical": 2})
    assert result.status == "fail"
    assert "series up: the query returned 3 series, expected exactly one (aggregate it" in result.message


@pytest.mark.negative("series")
def test_prometheus_query_with_no_data_fails(tmp_path, prometheus):
    result = prom_check(tmp_path, prometheus, 'up{job="no-such-job"}', peak={"critical": 2})
    assert result.status == "fail"
    assert "returned 0 series, expected exactly one (no data in the window)" in result.message


@pytest.mark.negative("series")
def test_prometheus_unreachable_fails(tmp_path):
    result = run_check(SeriesCheck(name="p", prometheus={"url": f"http://127.0.0.1:{free_port()}", "query": "up"},
                                   last_samples=10, timeout=2), ProbeContext(tmp_path))
    assert result.status == "fail"
    assert "connection refused" in result.message


@pytest.mark.negative("series")
@pytest.mark.timeout(20)
def test_a_prometheus_that_never_answers_is_cut_at_the_timeout(tmp_path):
    with HangingTarget() as hanging:
        started = time.monotonic()
        result = run_check(SeriesCheck(name="p", prometheus={"url": hanging.url, "query": "up"}, last_samples=10,
                                       timeout=1), ProbeContext(tmp_path))
    assert result.status == "fail"
    assert "series up: GET" in result.message and "/api/v1/query_range" in result.message
    assert time.monotonic() - started < 10


@pytest.mark.negative("series")
def test_prometheus_credentials_never_reach_the_message(tmp_path):
    port = free_port()
    result = run_check(SeriesCheck(name="p", prometheus={"url": f"http://ops:hunter2@127.0.0.1:{port}", "query": "up"},
                                   last_samples=10, timeout=2), ProbeContext(tmp_path))
    assert result.status == "fail"
    assert result.evidence["observed"]["source"] == f"prometheus 127.0.0.1:{port}"
    assert "hunter2" not in result.message and "hunter2" not in json.dumps(result.evidence["observed"])
