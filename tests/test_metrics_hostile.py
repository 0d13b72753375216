"""``metrics`` checks against broken or hostile expositions served on a free loopback port:
NaN and infinite samples, duplicate series, odd label values, enormous lines and
expositions.

What must never happen: a PASS with a sample that is no number (NaN is below nothing), a
check that outlives its timeout parsing lines it does not need, memory that follows the
number of samples, or a long value that makes a message or the evidence take hours.
"""

from __future__ import annotations

import threading

import pytest

from opsgate.model import MetricsCheck
from opsgate.probes import ProbeContext
from opsgate.probes.metrics import MAX_SAMPLES
from opsgate.runner import run_check
from tests.support.servers import MetricsTarget

GRACE_S = 5


def check(body: str, timeout: float = 2, **fields):
    """The check's result against ``body``; run on a thread so that a hang fails the test."""
    box = {}
    with MetricsTarget(body) as target:
        worker = threading.Thread(target=lambda: box.update(result=run_check(
            MetricsCheck(name="m", url=target.url, timeout=timeout, **fields), ProbeContext())), daemon=True)
        worker.start()
        worker.join(timeout + GRACE_S)
    assert "result" in box, f"the check was still running {GRACE_S}s past its {timeout:g}s timeout"
    return box["result"]


@pytest.mark.negative("metrics")
def test_a_nan_sample_among_numbers_fails_naming_it():
    """The NaN one was left out of max, and the others passed for it."""
    result = check('queue_depth{q="a"} 3\nqueue_depth{q="b"} NaN\n', metric="queue_depth", max_value=10)
    assert result.status == "fail"
    assert result.message.startswith('every sample of queue_depth is a number (not NaN): observed 1 -- '
                                     'queue_depth{q="b"}=nan')


def test_nan_without_limits_is_evidence_only():
    result = check("queue_depth NaN\n", metric="queue_depth")
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["nan_samples"] == 1


@pytest.mark.parametrize("body, limit", [("queue_depth +Inf\n", {"max_value": 10}), ("queue_depth -Inf\n", {"min_value": 1})])
def test_infinite_samples_break_their_limit(body, limit):
    result = check(body, metric="queue_depth", **limit)
    assert result.status == "fail"
    assert "Infinity" in result.message


def test_duplicate_series_are_each_held():
    result = check("queue_depth 3\nqueue_depth 50\n", metric="queue_depth", max_value=10)
    assert result.status == "fail"
    assert result.message.startswith("max < 10.0: observed 50")


def test_odd_label_values_match_exactly():
    body = 'queue_depth{q="a\\"b\\\\c\\nd é"} 3\nqueue_depth{q="other"} 99\n'
    result = check(body, metric="queue_depth", labels={"q": 'a"b\\c\nd é'}, max_value=10)
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["samples"] == 1


def test_a_page_that_is_no_exposition_is_named():
    result = check("<html><body>login</body></html>\n", metric="up")
    assert result.status == "fail"
    assert "not a Prometheus exposition (invalid metric name:<html>" in result.message


def test_an_unterminated_megabyte_label_fails_in_time():
    result = check('queue_depth{q="' + "x" * (1 << 20), metric="queue_depth")
    assert result.status == "fail"
    assert "not a Prometheus exposition (could not convert string to float" in result.message
    assert len(result.message) < 1000


def test_a_megabyte_label_value_with_a_url_in_it_is_kept_in_time():
    """The evidence's redaction of such a value was quadratic (a URL pattern tried every letter
    of the run as a scheme's start): hours for a megabyte."""
    body = 'queue_depth{source="http://exporter/' + "a" * (1 << 20) + '"} 3\n'
    result = check(body, metric="queue_depth", max_value=10)
    assert result.status == "pass", result.message


def test_one_metric_in_a_huge_exposition_is_read_within_the_timeout():
    """Every family was parsed, 8 s for 600 000 samples, past a 1 s timeout."""
    body = "".join(f'other_metric{{i="{i}"}} 1\n' for i in range(600_000)) + "queue_depth 3\n"
    result = check(body, timeout=1, metric="queue_depth", max_value=10)
    assert result.status == "pass", result.message


def test_too_many_matching_samples_fail_instead_of_being_held():
    body = "".join(f'queue_depth{{i="{i}"}} 1\n' for i in range(MAX_SAMPLES + 10))
    result = check(body, timeout=20, metric="queue_depth", max_value=10)
    assert result.status == "fail"
    assert f"more than {MAX_SAMPLES} samples of queue_depth match (narrow it with labels:)" in result.message
