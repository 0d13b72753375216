"""``dns`` checks against a real DNS server on a free loopback port (tests/support/dns_server.py).

Runbook steps protected here: "the upstream host resolves" (Chatbot), "the internal API
name points at the right address", "resolution is fast enough".
"""

from __future__ import annotations

import pytest

from opsgate.probes import ProbeContext
from opsgate.probes.dns import DnsCheck
from opsgate.runner import run_check
from tests.support.dns_server import DnsServer

RECORDS = {
    "api.internal": {"A": ["10.0.0.5", "10.0.0.6"], "AAAA": ["2001:db8::5"]},
    "www.internal": {"CNAME": ["api.internal."]},
    "hung.internal": {"A": ["10.0.0.9"]},
    "slow.internal": {"A": ["10.0.0.7"]},
}


@pytest.fixture(scope="module")
def server():
    with DnsServer(RECORDS, silent={"hung.internal"}, delay={"slow.internal": 0.4}) as running:
        yield running


def check(tmp_path, **fields):
    fields.setdefault("name", "dns-api")
    return run_check(DnsCheck(**fields), ProbeContext(tmp_path))


def test_name_resolves_to_the_exact_answers(tmp_path, server):
    result = check(tmp_path, host="api.internal", server=server.address, answers=["10.0.0.6", "10.0.0.5"],
                   max_latency_ms=5000)
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["answers"] == ["10.0.0.5", "10.0.0.6"]


def test_aaaa_and_cname_and_includes(tmp_path, server):
    result = check(tmp_path, host="api.internal", record="AAAA", server=server.address, answers=["2001:DB8:0::5"])
    assert result.status == "pass", result.message
    result = check(tmp_path, host="WWW.internal", record="CNAME", server=server.address, answers=["api.internal"])
    assert result.status == "pass", result.message
    result = check(tmp_path, host="api.internal", server=server.address, includes=["10.0.0.5"])
    assert result.status == "pass", result.message


@pytest.mark.negative("dns")
def test_wrong_answer_fails_naming_what_was_returned(tmp_path, server):
    result = check(tmp_path, host="api.internal", server=server.address, answers=["10.0.0.5"])
    assert result.status == "fail"
    assert "dns api.internal A answers" in result.message and "10.0.0.6" in result.message
    result = check(tmp_path, host="api.internal", server=server.address, includes=["10.0.0.99"])
    assert result.status == "fail"
    assert "answers include 10.0.0.99" in result.message


@pytest.mark.negative("dns")
def test_nxdomain_fails_naming_the_server(tmp_path, server):
    result = check(tmp_path, host="missing.internal", server=server.address)
    assert result.status == "fail"
    assert f"dns missing.internal: NXDOMAIN from {server.address}" in result.message


@pytest.mark.negative("dns")
def test_no_record_of_the_type_fails(tmp_path, server):
    result = check(tmp_path, host="www.internal", record="AAAA", server=server.address)
    assert result.status == "fail"
    assert f"no AAAA record in the answer from {server.address}" in result.message


@pytest.mark.negative("dns")
@pytest.mark.timeout(20)
def test_a_server_that_never_answers_times_out_by_name(tmp_path, server):
    result = check(tmp_path, host="hung.internal", server=server.address, timeout=1)
    assert result.status == "fail"
    assert f"no answer from {server.address} within 1s (timed out)" in result.message
    assert "hung.internal" in server.queries


@pytest.mark.negative("dns")
def test_a_slow_answer_over_the_latency_limit_fails(tmp_path, server):
    result = check(tmp_path, host="slow.internal", server=server.address, answers=["10.0.0.7"], max_latency_ms=100)
    assert result.status == "fail"
    assert "dns slow.internal: latency_ms <= 100" in result.message
    assert result.evidence["observed"]["latency_ms"] >= 100


def test_slow_answer_within_the_warn_level_warns(tmp_path, server):
    result = check(tmp_path, host="slow.internal", server=server.address, warn_latency_ms=100)
    assert result.status == "warn", result.message


def test_system_resolver_reads_etc_hosts(tmp_path):
    result = check(tmp_path, host="localhost", includes=["127.0.0.1"])
    assert result.status == "pass", result.message


@pytest.mark.negative("dns")
def test_system_resolver_name_that_does_not_resolve(tmp_path):
    # .invalid never resolves (RFC 6761); with no network the resolver fails fast or times out
    result = check(tmp_path, host="nothing.invalid", timeout=3)
    assert result.status == "fail"
    assert "dns nothing.invalid:" in result.message


def test_a_server_that_is_not_an_address_is_refused_at_load():
    with pytest.raises(ValueError, match="expected a DNS server's IP address"):
        DnsCheck(name="x", host="a", server="dns.internal:53")
