"""Fuzzed environment files and gate policies: mutations of config/examples/ and
config/gates.yaml (lines deleted, duplicated, swapped, re-indented; scalars replaced with
other types, huge numbers, NUL, anchors and aliases, tags; non-UTF-8 bytes; a cut at any
byte). Each load is valid or a clean EnvFileError/PolicyError whose every problem names the
file (and, for what is inside the file, the line); never another exception, never a hang."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsgate import envfile
from opsgate.gate import PolicyError, load_policy
from opsgate.yamlfile import ProblemsError

CONFIG = Path(__file__).resolve().parents[1] / "config"
EXAMPLES = {p.name: p.read_bytes() for p in sorted((CONFIG / "examples").glob("*.yaml"))}
POLICY = (CONFIG / "gates.yaml").read_bytes()
ENVIRON = {"AURA_HOME": "/tmp", "AURA_HOST": "127.0.0.1", "CHATBOT_HOME": "/tmp", "CODEX_URL": "http://127.0.0.1:1",
           "CODEX_INTERVAL": "1s", "CODEX_STARTUP": "2s", "CODEX_WINDOW": "3s", "JARVIS_HOST": "127.0.0.1",
           "JARVIS_PG_PASSWORD": "pg-fuzz", "JARVIS_REDIS_PASSWORD": "redis-fuzz", "UPSTREAM_API_TOKEN": "token-fuzz",
           "UPSTREAM_HOST": "127.0.0.1"}
FUZZ = settings(max_examples=150, deadline=timedelta(seconds=10), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SCALARS = [b"0", b"-1", b"1e999", b"-1e999", b".nan", b"9" * 5000, b"99999999999999999999", b"null", b"~", b"true",
           b"[]", b"{}", b"''", b'"a\\0b"', b'"\\x01"', b"*a", b"&a x", b"&a [1, *a]", b"!!float x", b"!!int 1.5",
           b"!!timestamp 2001-13-45", b"2026-02-30", b"!!binary '%%%'", b"!!python/object:os.system", b"!foo x",
           b"!!set {a, b}", b"{<<: 3}", b"? [1]\n: 2", b"'${UNSET_FUZZ_VAR}'", b"$${X}", b"1s5", b"-5s", b"P9",
           b"[P0, P0]", b"'['", b"'(?P<'", b"|\n  block", b"\xe9\xff", b"\xc3"]


@st.composite
def mutated(draw, source: bytes) -> bytes:
    lines = source.split(b"\n")
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "scalar", "key", "bytes", "text"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            stripped = lines[i].lstrip(b" ")
            lines[i] = b" " * draw(st.integers(0, 12)) + stripped
        elif op in ("scalar", "key"):
            head, sep, tail = lines[i].partition(b": ")
            new = draw(st.sampled_from(SCALARS))
            if op == "scalar" and sep:
                lines[i] = head + sep + new
            elif op == "key" and sep:
                lines[i] = head[: len(head) - len(head.lstrip(b" -"))] + new + sep + tail
            else:
                lines[i] = lines[i] + b" " + new
        elif op == "bytes":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.binary(min_size=1, max_size=4)) + lines[i][at:]
        else:
            lines[i] = draw(st.text(max_size=40)).encode("utf-8", "surrogatepass")
    out = b"\n".join(lines)
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]  # cut at any byte
    return out


def _check_clean(error: ProblemsError, shown: str) -> None:
    assert error.problems, "an error without a problem"
    for problem in error.problems:
        assert problem.file == shown, str(problem)
        assert problem.message, str(problem)
        assert str(problem).startswith(shown), str(problem)
    assert [p.line or 0 for p in error.problems] == sorted(p.line or 0 for p in error.problems), str(error)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(data=st.data())
def test_fuzzed_environment_files_load_or_fail_cleanly(folder, data):
    name = data.draw(st.sampled_from(sorted(EXAMPLES)))
    path = folder / name
    path.write_bytes(data.draw(mutated(EXAMPLES[name])))
    started = time.monotonic()
    try:
        envfile.load(path, environ=ENVIRON)
    except envfile.EnvFileError as exc:
        _check_clean(exc, str(path))
    assert time.monotonic() - started < 10


@FUZZ
@given(text=mutated(POLICY))
def test_fuzzed_gate_policies_load_or_fail_cleanly(folder, text):
    path = folder / "gates.yaml"
    path.write_bytes(text)
    started = time.monotonic()
    try:
        policy = load_policy(path)
        for name in policy.gates:
            policy.gate(name)
    except PolicyError as exc:
        _check_clean(exc, str(path))
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_unmutated_examples_load(folder, name):
    """The fuzzer's starting points are valid: a mutation, not the original, makes an error."""
    path = folder / name
    path.write_bytes(EXAMPLES[name])
    assert envfile.load(path, environ=ENVIRON).env.items()
