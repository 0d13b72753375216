"""Properties the gate keeps whatever it is given (hypothesis):

- no truncation of a valid report yields PASS;
- no corruption of a valid report (any byte changed, inserted or removed) yields PASS;
- no report in which zero checks executed yields PASS.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsgate.gate import evaluate, from_document, load_policy
from opsgate.gate.reports import parse_report
from opsgate.report import seal
from tests.support import reports as r

POLICY = load_policy(None)
VALID = seal(json.dumps(r.document([r.check("api-health", severity="P0"), r.check("db-port", kind="tcp"),
                                     r.check("disk", kind="host", severity="P2")]), indent=1)).encode()
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def verdict_of(data: bytes) -> str:
    return evaluate([parse_report(data, "report.json")], POLICY).verdict


def test_the_untouched_report_passes():
    assert verdict_of(VALID) == "PASS"  # so the properties below are about the damage, not the report


@SETTINGS
@given(st.integers(min_value=0, max_value=len(VALID) - 1))
def test_no_truncation_passes(cut):
    assert verdict_of(VALID[:cut]) == "ERROR"


@SETTINGS
@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.integers(min_value=0, max_value=255))
def test_no_changed_byte_passes(index, value):
    if VALID[index] == value:
        return
    damaged = VALID[:index] + bytes([value]) + VALID[index + 1:]
    assert verdict_of(damaged) != "PASS"


@SETTINGS
@given(st.integers(min_value=0, max_value=len(VALID)), st.binary(min_size=1, max_size=8))
def test_no_inserted_bytes_pass(index, extra):
    damaged = VALID[:index] + extra + VALID[index:]
    if damaged == VALID:
        return
    assert verdict_of(damaged) != "PASS"


@SETTINGS
@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.integers(min_value=1, max_value=16))
def test_no_removed_bytes_pass(index, length):
    damaged = VALID[:index] + VALID[index + length:]
    assert verdict_of(damaged) != "PASS"


not_executed = st.lists(st.tuples(st.sampled_from(["blocked", "skipped"]), st.sampled_from(["P0", "P1", "P2", "P3"])),
                        max_size=20)


@SETTINGS
@given(not_executed)
def test_zero_executed_checks_never_pass(checks):
    tests = [r.check(f"c{i}", status, severity, blocked_by=["c0"] if status == "blocked" else ())
             for i, (status, severity) in enumerate(checks)]
    document = r.document(tests)
    assert evaluate([from_document(document, "report.json")], POLICY).verdict == "ERROR"
    assert verdict_of(seal(json.dumps(document, indent=1)).encode()) == "ERROR"
