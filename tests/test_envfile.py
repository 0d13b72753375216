"""Bad environment files stop the run before any check, naming file, line, key, expected and seen."""

from __future__ import annotations

import json

import pytest

from opsgate import envfile
from opsgate.cli import main as cli

GOOD = """\
name: web
http:
  - name: api-health
    url: http://127.0.0.1:8000/health
    severity: critical
    timeout: 2s
"""


def problems(path, environ=None) -> list[str]:
    with pytest.raises(envfile.EnvFileError) as caught:
        envfile.load(path, environ=environ or {})
    return [str(p) for p in caught.value.problems]


def test_good_file_loads_and_normalises_severity(write_env):
    loaded = envfile.load(write_env(GOOD), environ={})
    item = loaded.env.http[0]
    assert (item.severity, item.timeout, item.kind) == ("P0", 2.0, "http")


def test_invalid_yaml_names_file_and_line(write_env):
    path = write_env("name: web\nhttp:\n  - name: a\n    url: [http://x\n")
    (message,) = problems(path)
    assert str(path) in message and ":5:" in message and "invalid YAML" in message


def test_unknown_key_names_line_key_and_suggestion(write_env):
    path = write_env(GOOD + "    timout: 3\n")
    (message,) = problems(path)
    assert f"{path}:7: http[0].timout (api-health): unknown key 'timout'; did you mean 'timeout'?" == message


def test_wrong_type_names_expected_and_seen(write_env):
    path = write_env(GOOD.replace("timeout: 2s", "timeout: soon"))
    (message,) = problems(path)
    assert ":6:" in message and "http[0].timeout" in message
    assert "expected a duration" in message and "seen 'soon'" in message


def test_bad_severity_lists_what_is_accepted(write_env):
    (message,) = problems(write_env(GOOD.replace("critical", "P7")))
    assert ":5:" in message and "severity" in message and "P0..P3" in message and "'P7'" in message


def test_missing_variable_names_the_variable(write_env):
    path = write_env(GOOD.replace("http://127.0.0.1:8000", "${API_URL}"))
    (message,) = problems(path)
    assert ":4:" in message and "http[0].url" in message and "API_URL" in message and "unset" in message


def test_variable_default_and_value_are_used(write_env):
    path = write_env(GOOD.replace("http://127.0.0.1:8000", "${API_URL:-http://127.0.0.1:9}"))
    assert envfile.load(path, environ={}).env.http[0].url == "http://127.0.0.1:9/health"
    assert envfile.load(path, environ={"API_URL": "http://h:1"}).env.http[0].url == "http://h:1/health"


def test_every_problem_is_reported_at_once(write_env):
    text = GOOD + "    timout: 3\ntcp:\n  - name: db\n    port: 70000\n"
    found = problems(write_env(text))
    assert len(found) == 2 and "port" in found[1] and "65535" in found[1] and "seen 70000" in found[1]


def test_duplicate_key_is_an_error_not_a_silent_overwrite(write_env):
    (message,) = problems(write_env(GOOD + "    url: http://other/\n"))
    assert "duplicate key" in message and "line 4" in message


def test_duplicate_names_and_unknown_dependency(write_env):
    text = GOOD + "  - name: api-health\n    url: http://x/\n    depends_on: [database]\n"
    found = problems(write_env(text))
    assert any("unique name" in p and "'api-health'" in p for p in found)
    assert any("depends_on" in p and "'database'" in p for p in found)


def test_dependency_cycle_is_named(write_env):
    text = ("name: web\ntcp:\n  - {name: a, port: 1, depends_on: [b]}\n  - {name: b, port: 2, depends_on: [a]}\n")
    (message,) = problems(write_env(text))
    assert "cycle" in message and "a -> b -> a" in message


def test_invalid_condition_is_caught_at_load(write_env):
    (message,) = problems(write_env(GOOD + "    expect: ['status == ']\n"))
    assert ":7:" in message and "JMESPath condition" in message


def test_secret_value_never_appears_in_an_error(write_env):
    text = GOOD + "    headers:\n      Authorization: ${API_TOKEN}\n    max_redirects: ${API_TOKEN}\n"
    found = problems(write_env(text), environ={"API_TOKEN": "tok-SECRET-123"})
    assert found and all("tok-SECRET-123" not in p for p in found)


def test_missing_file_and_unknown_name(tmp_path):
    assert "not found" in problems(tmp_path / "nope.yaml")[0]
    assert "no environment file" in problems("no-such-env")[0]


def test_validate_command_exit_codes(write_env, capsys):
    assert cli(["validate", str(write_env(GOOD))]) == 0
    assert cli(["validate", str(write_env(GOOD + "    timout: 3\n", "bad.yaml"))]) == 1
    assert "unknown key 'timout'" in capsys.readouterr().err


def test_schema_command_prints_a_json_schema(capsys):
    assert cli(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False and "http" in schema["properties"]
    assert "HttpCheck" in schema["$defs"]


def test_severity_scales_map_to_one_scale(write_env):
    text = "name: x\nseverity_scale: P1-P4\ntcp:\n  - {name: a, port: 1, severity: P4}\n  - {name: b, port: 2, severity: P1}\n"
    loaded = envfile.load(write_env(text), environ={})
    assert [i.severity for i in loaded.env.tcp] == ["P3", "P0"]
