"""Bad environment files and gate policies: each gives ``file:line: ...`` and the documented
exit code, in bounded time and memory, through every entry point that reads them:
``opsgate validate FILE`` (exit 1: invalid), ``pytest checks/daily --env FILE`` (exit 4:
usage error, no check run) and ``opsgate gate REPORT --policy FILE`` (exit 2: ERROR)."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opsgate import envfile
from opsgate.gate import PolicyError, load_policy
from tests.support.project import REPO, make_project, start_pytest

# The classic billion laughs: 9 anchors of 9 aliases each, about 500 bytes, 10^9 nodes.
BOMB = 'lol: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"l{i}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
ENV_OK = "name: bad\nfile:\n  - name: f\n    path: /etc/hostname\n"
POLICY_OK = "gates:\n  ship:\n    block: [P0]\n"

# class -> (environment file, gate policy, what the message must say); each is a mistake on line 3
BAD: dict[str, tuple[bytes, bytes, str]] = {
    "alias-bomb": (ENV_OK.encode() + BOMB.encode(), POLICY_OK.encode() + BOMB.encode(),
                   r":\d+:\d+: too many aliases/nodes \([\d,]+ expanded nodes, limit 100,000\)"),
    "deep-flow": (b"name: bad\nx: 1\nfile: " + b"[" * 100_000, b"gates: {}\nx: 1\nwaivers: " + b"[" * 100_000,
                  r":3:\d+: invalid YAML: .*nest"),
    "deep-block": (b"name: bad\nfile:\n" + b"- " * 10_000 + b"x\n", b"gates: {}\nwaivers:\n" + b"- " * 10_000 + b"x\n",
                   r":3:\d+: nested more than 100 levels deep"),
    "deep-mappings": (b"name: bad\nx: 1\nfile: " + b"{a: " * 10_000 + b"1" + b"}" * 10_000 + b"\n",
                      b"gates: {}\nx: 1\nwaivers: " + b"{a: " * 10_000 + b"1" + b"}" * 10_000 + b"\n",
                      r":3:\d+: (nested more than 100 levels deep|invalid YAML: .*nest)"),
    "latin-1": ("name: bad\nfile:\n  - name: caf\xe9\n    path: /etc/hostname\n".encode("latin-1"),
                "gates:\n  ship:\n    description: caf\xe9\n".encode("latin-1"),
                r":3:\d+: not UTF-8 \(byte 0xE9 at offset \d+\)"),
    "float-tag": (b"name: bad\nfile:\n  - {name: f, path: /etc/hostname, max_size: !!float x}\n",
                  b"gates:\n  ship:\n    max_age: !!float x\n", r":3:\d+: invalid YAML: 'x' is not a valid !!float"),
    "timestamp-tag": (b"name: bad\nfile:\n  - {name: f, path: /etc/hostname, description: !!timestamp 2001-13-45}\n",
                      b"gates: {}\nwaivers:\n  - {check: x, justification: long enough text, expires: 2001-13-45}\n",
                      r":3:\d+: invalid YAML: '2001-13-45' is not a valid !!timestamp"),
    "python-tag": (b"name: bad\nfile:\n  - !!python/object/apply:os.system [touch /tmp/opsgate-pwned]\n",
                   b"gates:\n  a: {}\n  ship: !!python/object/apply:os.system [touch /tmp/opsgate-pwned]\n",
                   r":3:\d+: unknown tag !!python/object/apply:os.system"),
    "unknown-tag": (b"name: bad\nfile:\n  - !foo {name: f, path: /etc/hostname}\n", b"gates:\n  a: {}\n  ship: !foo {}\n",
                    r":3:\d+: unknown tag !foo"),
    "nul-in-path": (b'name: bad\nfile:\n  - {name: f, path: "/etc/host\\0name"}\n',
                    b'gates: {}\nwaivers:\n  - {check: "a\\0b", justification: long enough text, expires: 2030-01-01}\n',
                    r":3:\d+: (file\[0\]\.path|waivers\[0\]\.check): expected no NUL character"),
    "recursive-alias": (b"name: bad\nx: 1\nfile: &f [*f]\n", b"gates: {}\nx: 1\nwaivers: &w [*w]\n",
                        r":3:\d+: invalid YAML: alias \*\w is inside the value it names"),
}


def _limit_memory(pid: int) -> None:
    """The old code took 4 GB on the bomb: a child that tries fails with MemoryError instead of
    starving a shared machine."""
    try:
        resource.prlimit(pid, resource.RLIMIT_AS, (2 << 30, 2 << 30))
    except (OSError, ValueError):
        pass


def _finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str, float]:
    started = time.monotonic()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"still running after {timeout:.0f}s")
    return proc.returncode, (out or "") + (err or ""), time.monotonic() - started


def _opsgate(*args: str, cwd: Path) -> tuple[int, str, float]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPSGATE_")}
    proc = subprocess.Popen([sys.executable, "-m", "opsgate.cli", *args], cwd=cwd, env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _limit_memory(proc.pid)
    return _finish(proc)


def _clean(output: str, shown: str, pattern: str, elapsed: float) -> None:
    assert "Traceback" not in output, output[-3000:]
    assert re.search(re.escape(shown) + pattern, output), output[-3000:]
    assert elapsed < 15, f"took {elapsed:.1f}s"


@pytest.mark.parametrize("case", list(BAD))
def test_validate_refuses_bad_environment_with_file_and_line(tmp_path, case):
    env = tmp_path / "env.yaml"
    env.write_bytes(BAD[case][0])
    code, output, elapsed = _opsgate("validate", str(env), cwd=tmp_path)
    assert code == 1, output[-3000:]  # cli.py: validate exits 0 ok, 1 invalid
    _clean(output, str(env), BAD[case][2], elapsed)


@pytest.mark.parametrize("case", list(BAD))
def test_gate_refuses_bad_policy_with_file_and_line(tmp_path, case):
    policy = tmp_path / "gates.yaml"
    policy.write_bytes(BAD[case][1])
    code, output, elapsed = _opsgate("gate", str(tmp_path / "no-report.json"), "--policy", str(policy), cwd=tmp_path)
    assert code == 2, output[-3000:]  # ERROR
    _clean(output, str(policy), BAD[case][2], elapsed)


@pytest.mark.parametrize("case", ["alias-bomb", "deep-block", "latin-1", "timestamp-tag", "python-tag", "nul-in-path"])
def test_pytest_start_up_refuses_bad_environment(tmp_path, case):
    project = make_project(tmp_path, "")
    (project / "env.yaml").write_bytes(BAD[case][0])
    proc = start_pytest(project)
    _limit_memory(proc.pid)
    code, output, elapsed = _finish(proc)
    assert code == 4, output[-3000:]  # pytest's usage error: no check was run
    assert "no check was run" in output
    _clean(output, "env.yaml", BAD[case][2], elapsed)
    assert not list((project / "reports").glob("**/daily-latest.json"))


@pytest.mark.parametrize("case", ["alias-bomb", "latin-1", "nul-in-path"])
def test_pytest_gate_refuses_bad_policy_before_any_check(tmp_path, case):
    project = make_project(tmp_path, ENV_OK)
    (project / "gates.yaml").write_bytes(BAD[case][1])
    proc = start_pytest(project, "--gate", "default", "--policy", "gates.yaml")
    _limit_memory(proc.pid)
    code, output, elapsed = _finish(proc)
    assert code == 2, output[-3000:]  # the gate's ERROR, as `opsgate gate` gives for the same policy
    assert "no check was run" in output
    _clean(output, "gates.yaml", BAD[case][2], elapsed)


def test_python_tags_never_run_code(tmp_path):
    marker = tmp_path / "pwned"
    env = tmp_path / "env.yaml"
    env.write_text(f"name: bad\nfile:\n  - !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(envfile.EnvFileError):
        envfile.load(env)
    assert not marker.exists()


def _problems(tmp_path: Path, text: str) -> list[str]:
    env = tmp_path / "env.yaml"
    env.write_text(text)
    with pytest.raises(envfile.EnvFileError) as caught:
        envfile.load(env, environ={})
    return [str(p).replace(str(env), "env.yaml") for p in caught.value.problems]


def test_a_union_mistake_is_one_message(tmp_path):
    # str | SecretValue: pydantic says "expected string" and "expected mapping"; the reader needs one
    problems = _problems(tmp_path, "name: bad\nhttp:\n  - name: api\n    url: http://127.0.0.1:1/\n    headers:\n"
                                   "      X-Trace: 3\n")
    assert problems == ["env.yaml:6: http[0].headers.X-Trace (api): expected a string or a mapping {value, secret}, seen 3"]


def test_a_value_shaped_for_one_union_member_is_judged_by_it_alone(tmp_path):
    problems = _problems(tmp_path, "name: bad\nhttp:\n  - name: api\n    url: http://127.0.0.1:1/\n    headers:\n"
                                   "      X-Trace: {value: 3}\n    status: [200, x]\n")
    assert len(problems) == 2, problems
    assert problems[0].startswith("env.yaml:6: http[0].headers.X-Trace.value (api): expected a valid string"), problems
    assert problems[1].startswith("env.yaml:7: http[0].status[1] (api): expected a valid integer"), problems


def test_problems_are_sorted_by_line(tmp_path):
    problems = _problems(tmp_path, "name: bad\nhttp:\n  - name: api\n    url: http://127.0.0.1:1/\n    timeout: zz\n"
                                   "    status: x\n    headers: {X-Trace: 3}\n    retry: {timeout: 1, bogus: 2}\n"
                                   "    method: FETCH\n")
    lines = [int(p.split(":")[1]) for p in problems]
    assert len(problems) == 5, problems
    assert lines == sorted(lines), problems


def test_yaml_syntax_errors_give_line_and_column(tmp_path):
    problems = _problems(tmp_path, "name: bad\nhttp:\n  - name: [api\n    url: http://127.0.0.1:1/\n")
    assert len(problems) == 1 and re.match(r"env\.yaml:4:\d+: invalid YAML: ", problems[0]), problems


def test_unknown_key_in_a_nested_model_names_the_keys_it_takes(tmp_path):
    # headers is a free mapping; its values are {value, secret}: old code found no model there
    problems = _problems(tmp_path, "name: bad\nhttp:\n  - name: api\n    url: http://127.0.0.1:1/\n    headers:\n"
                                   "      X-Trace: {value: v, zzz: 1}\n      X-Other: {value: v, secrte: true}\n")
    assert problems == ["env.yaml:6: http[0].headers.X-Trace.zzz (api): unknown key 'zzz'; expected one of: secret, value",
                        "env.yaml:7: http[0].headers.X-Other.secrte (api): unknown key 'secrte'; did you mean 'secret'?"]
    assert not any(p.rstrip().endswith("expected one of:") for p in problems)


def test_a_secret_header_value_is_not_echoed(tmp_path):
    problems = _problems(tmp_path, "name: bad\nhttp:\n  - name: api\n    url: http://127.0.0.1:1/\n    headers:\n"
                                   "      Authorization: [Bearer-hunter2-planted]\n")
    assert len(problems) == 1 and "not shown" in problems[0], problems
    assert "hunter2" not in problems[0]


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_device_or_fifo_is_refused_not_read_forever(tmp_path, special):
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "env.yaml"
        os.mkfifo(path)
    code, output, elapsed = _opsgate("validate", str(path), cwd=tmp_path)
    assert code == 1 and "not a regular file" in output, output[-3000:]
    code, output, elapsed = _opsgate("gate", str(tmp_path / "no-report.json"), "--policy", str(path), cwd=tmp_path)
    assert code == 2 and "not a regular file" in output, output[-3000:]


def test_an_oversized_file_is_refused(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_bytes(b"name: big\n" + b"# padding\n" * 1_000_000)
    with pytest.raises(envfile.EnvFileError, match="file too large"):
        envfile.load(env)


def test_the_shipped_files_still_load(tmp_path):
    assert load_policy(REPO / "config" / "gates.yaml").gates["deploy"].block == ["P0", "P1"]
    env = tmp_path / "env.yaml"
    env.write_text("name: anchors\ndefaults: &d {severity: P1}\nfile:\n  - {name: a, path: /etc/hostname}\n"
                   "  - &b {name: b, path: /etc/hostname, tags: [x, y]}\n  - {<<: *b, name: c}\n")
    assert [i.name for i in envfile.load(env).env.items()] == ["a", "b", "c"]


def test_a_substituted_value_is_not_echoed_even_by_a_validator_message(tmp_path):
    # the duration validator writes its own "seen 'value'": a value from ${VAR} must not appear
    env = tmp_path / "env.yaml"
    env.write_text("name: bad\nfile:\n  - name: f\n    path: /etc/hostname\n    timeout: ${FILE_TIMEOUT}\n")
    with pytest.raises(envfile.EnvFileError) as caught:
        envfile.load(env, environ={"FILE_TIMEOUT": "planted-9f3c"})
    assert "planted-9f3c" not in str(caught.value), str(caught.value)
    assert re.search(r"env\.yaml:5: file\[0\]\.timeout \(f\): expected a duration.*not shown", str(caught.value))


@pytest.mark.parametrize("line, pattern", [
    ("max_size: .inf", r"file\[0\]\.max_size \(f\): expected a finite size"),
    ("max_size: " + "9" * 400 + "TB", r"file\[0\]\.max_size \(f\): expected a finite size"),
    ("timeout: " + "9" * 400, r"file\[0\]\.timeout \(f\): expected a finite duration"),
    ("timeout: .nan", r"file\[0\]\.timeout \(f\): expected a finite duration"),
    ("description: x\n    min_size: 1\n    max_age: .inf", r"file\[0\]\.max_age \(f\): expected a finite duration"),
])
def test_non_finite_and_huge_numbers_are_clean_errors(tmp_path, line, pattern):
    # before: OverflowError tracebacks (sizes) or an infinite/NaN duration accepted as a timeout
    env = tmp_path / "env.yaml"
    env.write_text(f"name: bad\nfile:\n  - name: f\n    path: /etc/hostname\n    {line}\n")
    code, output, elapsed = _opsgate("validate", str(env), cwd=tmp_path)
    assert code == 1, output[-3000:]
    _clean(output, str(env), r":\d+: " + pattern, elapsed)


def test_a_nan_limit_is_refused(tmp_path):
    problems = _problems(tmp_path, "name: bad\nhttp:\n  - name: api\n    url: http://127.0.0.1:1/\n"
                                   "    max_latency_ms: .nan\n")
    assert problems == ["env.yaml:5: http[0].max_latency_ms (api): expected a finite number, seen nan"]


@pytest.mark.parametrize("expression", ["(" * 3000 + "a" + ")" * 3000, "[" * 3000, "not_null(" * 60 + "a" + ")" * 60])
def test_a_deeply_nested_condition_is_a_clean_error(tmp_path, expression):
    # before: the JMESPath parser's RecursionError as a traceback
    env = tmp_path / "env.yaml"
    env.write_text(f"name: bad\nhttp:\n  - name: a\n    url: http://127.0.0.1:1/\n    expect: ['{expression}']\n")
    code, output, elapsed = _opsgate("validate", str(env), cwd=tmp_path)
    assert code == 1, output[-3000:]
    _clean(output, str(env), r":5: http\[0\]\.expect \(a\): expected a JMESPath condition", elapsed)


@pytest.mark.parametrize("pattern", ["(" * 5000 + ")" * 5000, "a{99999999999}"])
def test_a_regex_nested_too_deeply_or_repeated_too_often_is_a_clean_error(tmp_path, pattern):
    # before: RecursionError / OverflowError tracebacks from re.compile
    env = tmp_path / "env.yaml"
    env.write_text(f"name: bad\nhttp:\n  - name: a\n    url: http://127.0.0.1:1/\n    body_regex: '{pattern}'\n")
    code, output, elapsed = _opsgate("validate", str(env), cwd=tmp_path)
    assert code == 1, output[-3000:]
    _clean(output, str(env), r":5: http\[0\]\.body_regex \(a\): expected a regular expression", elapsed)
    assert len(output) < 2000, output


def test_a_long_dependency_chain_is_checked_without_recursion(tmp_path):
    # before: the cycle search recursed once per link, a RecursionError traceback at ~1,000
    items = "".join(f"  - {{name: f{i}, path: /etc/hostname, depends_on: [f{i + 1}]}}\n" for i in range(2999))
    env = tmp_path / "env.yaml"
    env.write_text(f"name: chain\nfile:\n{items}  - {{name: f2999, path: /etc/hostname, depends_on: [f0]}}\n")
    code, output, elapsed = _opsgate("validate", str(env), cwd=tmp_path)
    assert code == 1, output[-3000:]
    _clean(output, str(env), r":3: file\[0\]\.depends_on: expected no dependency cycle, seen f0 -> f1 -> .* -> f2999 -> f0 \(3000 checks\)", elapsed)
    assert len(output) < 2000, output[:3000]
