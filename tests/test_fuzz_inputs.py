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
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsgate import envfile
from opsgate.gate import PolicyError, load_policy
from opsgate.gate.policy import Gate, Policy, Waiver
from opsgate.model import KINDS, Environment
from opsgate.yamlfile import ProblemsError, models_in

CONFIG = Path(__file__).resolve().parents[1] / "config"
EXAMPLES = {p.name: p.read_bytes() for p in sorted((CONFIG / "examples").glob("*.yaml"))}
POLICY = (CONFIG / "gates.yaml").read_bytes()
ENVIRON = {"AURA_HOME": "/tmp", "AURA_HOST": "127.0.0.1", "CHATBOT_HOME": "/tmp", "CODEX_URL": "http://127.0.0.1:1",
           "CODEX_INTERVAL": "1s", "CODEX_STARTUP": "2s", "CODEX_WINDOW": "3s", "JARVIS_HOST": "127.0.0.1",
           "JARVIS_PG_PASSWORD": "pg-fuzz", "JARVIS_REDIS_PASSWORD": "redis-fuzz", "UPSTREAM_API_TOKEN": "token-fuzz", "OPENROUTER_API_KEY": "token-fuzz",
           "UPSTREAM_HOST": "127.0.0.1"}
FUZZ = settings(max_examples=150, deadline=timedelta(seconds=10), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SCALARS = [b"0", b"-1", b"1e999", b"-1e999", b".nan", b"9" * 5000, b"99999999999999999999", b"null", b"~", b"true",
           b"[]", b"{}", b"''", b'"a\\0b"', b'"\\x01"', b"*a", b"&a x", b"&a [1, *a]", b"!!float x", b"!!int 1.5",
           b"!!timestamp 2001-13-45", b"2026-02-30", b"!!binary '%%%'", b"!!python/object:os.system", b"!foo x",
           b"!!set {a, b}", b"{<<: 3}", b"? [1]\n: 2", b"'${UNSET_FUZZ_VAR}'", b"$${X}", b"1s5", b"-5s", b"P9",
           b"[P0, P0]", b"'['", b"'(?P<'", b"|\n  block", b"\xe9\xff", b"\xc3", b".inf", b"-.inf", b".NaN",
           b"1.0e+999", b"9" * 400 + b"s", b"9" * 400 + b"TB", b"1e999", b"0.0000001", b"2026-12-01"]


# every key the files may hold, so a mutation can set any field to any of the values above
FIELDS = sorted({name.encode() for model in (*models_in(Environment).values(), *models_in(Policy).values())
                 for name in model.model_fields})


@st.composite
def mutated(draw, source: bytes) -> bytes:
    lines = source.split(b"\n")
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "scalar", "key", "field", "bytes", "text"]))
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
        elif op == "field":  # a known key, at this line's indentation, with any value
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip(b" -"))].replace(b"-", b" ")
            lines.insert(i + 1, indent + draw(st.sampled_from(FIELDS)) + b": " + draw(st.sampled_from(SCALARS)))
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


def _load_policy_cleanly(path: Path) -> None:
    """Load a policy and every gate in it: it is valid, or a clean PolicyError naming the file."""
    try:
        policy = load_policy(path)
        for name in policy.gates:
            policy.gate(name)
    except PolicyError as exc:
        _check_clean(exc, str(path))


@FUZZ
@given(text=mutated(POLICY))
def test_fuzzed_gate_policies_load_or_fail_cleanly(folder, text):
    path = folder / "gates.yaml"
    path.write_bytes(text)
    started = time.monotonic()
    _load_policy_cleanly(path)
    assert time.monotonic() - started < 10


# values of every shape and edge, for any field of any model
VALUES = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 2**63, 10**400, float("inf"), float("-inf"), float("nan"), 1e308, 0.5,
                     "", "x", "10s", "-5s", "1h30m", "9" * 400 + "s", "9" * 400 + "TB", "10MB", "P0", "P9", "GET", "[",
                     "(?P<", "*", "a" * 5000, "http://127.0.0.1:1/", "2026-12-01"]),
    st.integers(), st.floats(), st.text(max_size=20),
    st.lists(st.one_of(st.integers(), st.text(max_size=5), st.floats()), max_size=3),
    st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
)


@st.composite
def item_of(draw, model) -> dict:
    """A mapping with some of ``model``'s keys (name first, so items are told apart) set to
    values of any shape."""
    keys = draw(st.lists(st.sampled_from(sorted(model.model_fields)), max_size=6, unique=True))
    return {"name": draw(st.sampled_from(["a", "b"])), **{key: draw(VALUES) for key in keys}}


@FUZZ
@given(data=st.data())
def test_generated_items_load_or_fail_cleanly(folder, data):
    """Schema-aware: every kind's keys with values of every shape, so a field's own parser
    (durations, sizes, regexes, conditions) meets what a mutation rarely reaches."""
    kind = data.draw(st.sampled_from(sorted(KINDS)))
    document = {"name": "fuzz", kind: data.draw(st.lists(item_of(KINDS[kind]), min_size=1, max_size=2))}
    if data.draw(st.booleans()):
        document["defaults"] = data.draw(item_of(models_in(Environment)["Defaults"]))
        del document["defaults"]["name"]
    path = folder / "generated.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        envfile.load(path, environ=ENVIRON)
    except envfile.EnvFileError as exc:
        _check_clean(exc, str(path))


@FUZZ
@given(data=st.data())
def test_generated_policies_load_or_fail_cleanly(folder, data):
    gates = {name: data.draw(item_of(Gate)) for name in data.draw(st.lists(st.sampled_from(["ship", "daily"]), unique=True))}
    for gate in gates.values():
        del gate["name"]
    document = {"gates": gates, "waivers": data.draw(st.lists(item_of(Waiver), max_size=2))}
    path = folder / "generated-gates.yaml"
    path.write_text(yaml.safe_dump(document))
    _load_policy_cleanly(path)


EDGES = [None, True, -1, 2**63, 10**400, float("inf"), float("-inf"), float("nan"), "", "9" * 400 + "s",
         "9" * 400 + "TB", "1e999", "(?P<", "(" * 5000 + ")" * 5000, "a{99999999999}", "[" * 3000, "a\x01b",
         [None], {"k": None}, [[[]]], [{"regex": "(" * 5000 + ")" * 5000}]]


@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")  # re.compile on "[[[..."
def test_every_field_with_every_edge_value(folder):
    """Exhaustive where the fuzzer is thin: each key of each kind, of the defaults and of a
    gate and a waiver, set to each edge value: loads or is a clean error."""
    path = folder / "edges.yaml"
    documents = []
    for kind, model in sorted(KINDS.items()):
        for key in sorted(set(model.model_fields) - {"name"}):
            documents += [{"name": "edge", kind: [{"name": "a", key: value}]} for value in EDGES]
    for key in sorted(models_in(Environment)["Defaults"].model_fields):
        documents += [{"name": "edge", "defaults": {key: value}, "file": [{"name": "a", "path": "/x"}]} for value in EDGES]
    crashes = []
    for document in documents:
        path.write_text(yaml.safe_dump(document))
        try:
            envfile.load(path, environ=ENVIRON)
        except envfile.EnvFileError as exc:
            _check_clean(exc, str(path))
        except Exception as exc:  # noqa: BLE001 - every crash is collected, then reported at once
            crashes.append(f"{document}: {type(exc).__name__}: {exc}"[:300])
    for model, wrap in ((Gate, lambda item: {"gates": {"ship": item}}), (Waiver, lambda item: {"waivers": [item]})):
        for key in sorted(model.model_fields):
            for value in EDGES:
                path.write_text(yaml.safe_dump(wrap({key: value})))
                try:
                    load_policy(path)
                except PolicyError as exc:
                    _check_clean(exc, str(path))
                except Exception as exc:  # noqa: BLE001
                    crashes.append(f"{wrap({key: value})}: {type(exc).__name__}: {exc}"[:300])
    assert not crashes, "\n".join(crashes)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_unmutated_examples_load(folder, name):
    """The fuzzer's starting points are valid: a mutation, not the original, makes an error."""
    path = folder / name
    path.write_bytes(EXAMPLES[name])
    assert envfile.load(path, environ=ENVIRON).env.items()
