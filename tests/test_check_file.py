"""``file`` checks: critical files present, fresh, plausibly sized, not world-writable.

Runbook steps protected here: "critical files present", "the nightly dump is less
than a day old and not empty", "config is not writable by everyone", "the
maintenance flag is gone".
"""

from __future__ import annotations

import json
import os
import time

import pytest

from opsgate.model import FileCheck
from opsgate.probes import ProbeContext
from opsgate.runner import run_check


def check(tmp_path, **fields):
    fields.setdefault("name", "dump")
    return run_check(FileCheck(**fields), ProbeContext(tmp_path))


def make(tmp_path, name="backup.sql", size=2048, age_s=0.0, mode=0o640):
    path = tmp_path / name
    path.write_bytes(b"x" * size)
    path.chmod(mode)
    if age_s:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
    return path


def test_fresh_file_passes(tmp_path):
    """Runbook: last night's dump exists, is under a day old and not empty."""
    make(tmp_path)
    result = check(tmp_path, path="backup.sql", max_age="1d", min_size="1KB", max_size="1MB")
    assert result.status == "pass", result.message
    observed = result.evidence["observed"]
    assert observed["exists"] is True and observed["size_bytes"] == 2048 and observed["age_s"] < 60


@pytest.mark.negative("file")
def test_missing_file_fails_naming_does_not_exist(tmp_path):
    result = check(tmp_path, path="backup.sql")
    assert result.status == "fail"
    assert "does not exist" in result.message
    assert str(tmp_path / "backup.sql") in result.message


def test_absent_file_passes_when_absence_is_expected(tmp_path):
    """Runbook: the maintenance flag has been removed."""
    result = check(tmp_path, path="MAINTENANCE", exists=False)
    assert result.status == "pass", result.message


def test_present_file_fails_when_absence_is_expected(tmp_path):
    make(tmp_path, "MAINTENANCE", size=0)
    result = check(tmp_path, path="MAINTENANCE", exists=False)
    assert result.status == "fail"
    assert "MAINTENANCE is absent: observed true" in result.message


def test_stale_file_fails_naming_age(tmp_path):
    """Runbook: the dump is less than an hour old -- a two-day-old one means the job stopped."""
    make(tmp_path, age_s=2 * 86400)
    result = check(tmp_path, path="backup.sql", max_age="1h")
    assert result.status == "fail"
    assert "age_s <= 3600" in result.message
    assert result.evidence["observed"]["age_s"] >= 2 * 86400 - 5


def test_file_past_warn_age_only_warns(tmp_path):
    make(tmp_path, age_s=2 * 3600)
    result = check(tmp_path, path="backup.sql", max_age="1d", warn_age="1h")
    assert result.status == "warn"
    assert "age_s <= 3600" in result.message


def test_too_small_file_fails(tmp_path):
    """An empty dump is not a backup."""
    make(tmp_path, size=0)
    result = check(tmp_path, path="backup.sql", min_size="1KB")
    assert result.status == "fail"
    assert "size_bytes >= 1000" in result.message and "observed 0" in result.message


def test_too_large_file_fails(tmp_path):
    make(tmp_path, size=5000)
    result = check(tmp_path, path="backup.sql", max_size=4096)
    assert result.status == "fail"
    assert "size_bytes <= 4096" in result.message and "observed 5000" in result.message


def test_world_writable_file_fails(tmp_path):
    """Runbook: config files are not writable by everyone."""
    path = make(tmp_path, "config.yaml")
    os.chmod(path, 0o666)
    result = check(tmp_path, path="config.yaml")
    assert result.status == "fail"
    assert "world-writable" in result.message
    assert result.evidence["observed"]["mode"] == "0o666"


def test_group_writable_file_is_not_world_writable(tmp_path):
    make(tmp_path, "config.yaml", mode=0o664)
    result = check(tmp_path, path="config.yaml")
    assert result.status == "pass", result.message


def test_world_writable_file_allowed_when_configured(tmp_path):
    path = make(tmp_path, "shared.sock")
    os.chmod(path, 0o666)
    assert check(tmp_path, path="shared.sock", allow_world_writable=True).status == "pass"


def test_a_stale_file_is_named_in_the_message(tmp_path):
    """Operator's side: one line says which file is stale, not just `age_s <= 3600: observed 7200`."""
    make(tmp_path, "db.dump", size=10, age_s=7200)
    result = check(tmp_path, path="db.dump", max_age="1h")
    assert result.message.startswith("db.dump: age_s <= 3600.0: observed 72"), result.message


# --- content: regexes and key conditions ------------------------------------------------------

def test_config_flag_set_passes(tmp_path):
    """Runbook: debug is off in production (a config flag set)."""
    (tmp_path / "app.ini").write_text("[server]\nport = 8000\ndebug = false\n")
    result = check(tmp_path, path="app.ini", content={"format": "ini", "expect": ["server.debug == 'false'"]})
    assert result.status == "pass", result.message
    assert result.evidence["observed"]["content"] == {"server.debug == 'false'": "false"}


@pytest.mark.negative("file")
def test_config_flag_wrong_fails_naming_file_key_and_value(tmp_path):
    (tmp_path / "app.ini").write_text("[server]\nport = 8000\ndebug = true\n")
    result = check(tmp_path, path="app.ini", content={"format": "ini", "expect": ["server.debug == 'false'"]})
    assert result.status == "fail"
    assert "app.ini (ini): server.debug == 'false': observed \"true\"" in result.message


@pytest.mark.negative("file")
def test_config_key_missing_fails(tmp_path):
    (tmp_path / "app.ini").write_text("[server]\nport = 8000\n")
    result = check(tmp_path, path="app.ini", content={"format": "ini", "expect": ["server.debug == 'false'"]})
    assert result.status == "fail"
    assert "server.debug == 'false': observed missing (null)" in result.message


@pytest.mark.parametrize("name, text, fmt", [
    ("config.json", '{"learning": {"enabled": true}, "workers": 4}', "json"),
    ("config.yaml", "learning:\n  enabled: true\nworkers: 4\n", "yaml"),
])
def test_json_and_yaml_keys(tmp_path, name, text, fmt):
    """Runbook (Aura): autonomous learning is enabled in config."""
    (tmp_path / name).write_text(text)
    content = {"format": fmt, "expect": ["learning.enabled == true"], "warn": ["workers >= 8"]}
    result = check(tmp_path, path=name, content=content)
    assert result.status == "warn", result.message
    assert f"{name} ({fmt}): workers >= 8: observed 4" in result.message
    (tmp_path / name).write_text(text.replace("true", "false"))
    assert check(tmp_path, path=name, content=content).status == "fail"


def test_env_file_and_its_secrets_stay_out_of_outputs(tmp_path):
    from opsgate.redact import sink

    (tmp_path / ".env").write_text("# prod\nexport DEBUG=false\nOPENROUTER_API_KEY='sk-or-v1-0123456789abcdef'\n")
    content = {"format": "env", "expect": ["DEBUG == 'false'", "OPENROUTER_API_KEY != ''"]}
    result = check(tmp_path, path=".env", content=content)
    assert result.status == "pass", result.message
    assert "sk-or-v1-0123456789abcdef" not in json.dumps(sink(result.to_json()))


@pytest.mark.negative("file")
def test_unparsable_content_fails_naming_format(tmp_path):
    (tmp_path / "config.json").write_text('{"learning": ')
    result = check(tmp_path, path="config.json", content={"format": "json", "expect": ["learning.enabled"]})
    assert result.status == "fail"
    assert "config.json: not a valid json file" in result.message


@pytest.mark.negative("file")
def test_not_contains_fails_naming_the_line(tmp_path):
    (tmp_path / "settings.py").write_text("import os\nDEBUG = True\nSECRET_KEY = os.environ['K']\n")
    result = check(tmp_path, path="settings.py", not_contains=[r"^DEBUG\s*=\s*True"])
    assert result.status == "fail"
    assert r"settings.py does not contain /^DEBUG\s*=\s*True/: observed true" in result.message
    assert "line 2: DEBUG = True" in result.message


@pytest.mark.negative("file")
def test_contains_absent_fails(tmp_path):
    (tmp_path / "nginx.conf").write_text("server { listen 80; }\n")
    result = check(tmp_path, path="nginx.conf", contains=[r"ssl_protocols\s+TLSv1\.[23]"])
    assert result.status == "fail"
    assert "nginx.conf contains /ssl_protocols" in result.message and "observed false" in result.message
    (tmp_path / "nginx.conf").write_text("server { listen 443 ssl; ssl_protocols TLSv1.3; }\n")
    assert check(tmp_path, path="nginx.conf", contains=[r"ssl_protocols\s+TLSv1\.[23]"]).status == "pass"


@pytest.mark.negative("file")
def test_content_larger_than_max_read_is_not_judged_on_a_part(tmp_path):
    (tmp_path / "big.log").write_text("x\n" * 2000 + "DEBUG = True\n")
    result = check(tmp_path, path="big.log", not_contains=["DEBUG = True"], max_read="1KB")
    assert result.status == "fail"
    assert "more than max_read (1000)" in result.message


def test_content_read_through_a_testinfra_target(tmp_path):
    from test_targets import connect_testinfra

    (tmp_path / "app.ini").write_text("[server]\ndebug = true\n")
    item = FileCheck(name="cfg", path="app.ini", content={"format": "ini", "expect": ["server.debug == 'false'"]})
    result = run_check(item, ProbeContext(tmp_path, target=connect_testinfra()))
    assert result.status == "fail" and 'observed "true"' in result.message


# --- directories: count, total size, ages -----------------------------------------------------

def logs_dir(tmp_path, ages_days=(1, 5, 20), size=100):
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    for days in ages_days:
        make(logs, f"aura-{days}d.log", size=size, age_s=days * 86400)
    return logs


def test_logs_pruned_passes(tmp_path):
    """Runbook (Aura): logs older than 30 days are pruned."""
    logs_dir(tmp_path)
    make(tmp_path / "logs", "keep.txt", age_s=90 * 86400)  # not a log: not matched
    result = check(tmp_path, path="logs", directory={"match": "*.log", "oldest_max_age": "30d",
                                                     "max_files": 10, "max_total_size": "1KB"})
    assert result.status == "pass", result.message
    observed = result.evidence["observed"]
    assert observed["files"] == 3 and observed["total_size_bytes"] == 300 and observed["entries_read"] == 4


@pytest.mark.negative("file")
def test_log_older_than_30_days_fails_naming_it(tmp_path):
    logs_dir(tmp_path, ages_days=(1, 45))
    result = check(tmp_path, path="logs", directory={"match": "*.log", "oldest_max_age": "30d"})
    assert result.status == "fail"
    assert "oldest of logs/*.log: age_s <= 2592000 (30d): observed 38880" in result.message
    assert result.evidence["observed"]["oldest"].endswith("aura-45d.log")


@pytest.mark.negative("file")
def test_too_many_and_too_large_fail(tmp_path):
    logs_dir(tmp_path, ages_days=range(1, 8), size=1000)
    result = check(tmp_path, path="logs", directory={"max_files": 5, "max_total_size": "5KB"})
    assert result.status == "fail"
    assert "files logs/* <= 5: observed 7" in result.message
    assert "total size of logs/* <= 5000 bytes: observed 7000" in result.message


def test_empty_directory_passes_pruning_and_fails_freshness(tmp_path):
    (tmp_path / "logs").mkdir()
    assert check(tmp_path, path="logs", directory={"oldest_max_age": "30d"}).status == "pass"
    result = check(tmp_path, path="logs", directory={"newest_max_age": "1d"})
    assert result.status == "fail" and "newest of logs/*: age_s <= 86400 (1d): observed missing" in result.message
    assert "no file in " in result.message and "matches '*' (0 entries read)" in result.message


def test_recursive_counts_subdirectories(tmp_path):
    logs = logs_dir(tmp_path, ages_days=(1,))
    (logs / "old").mkdir()
    make(logs / "old", "aura-2025.log", age_s=400 * 86400)
    spec = {"match": "*.log", "oldest_max_age": "30d"}
    assert check(tmp_path, path="logs", directory=spec).status == "pass"
    assert check(tmp_path, path="logs", directory={**spec, "recursive": True}).status == "fail"


@pytest.mark.negative("file")
def test_a_huge_directory_is_read_up_to_max_entries_and_says_so(tmp_path):
    """A directory with more entries than max_entries: not listed whole, not passed on a part."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(1500):
        (logs / f"{i}.log").touch()
    result = check(tmp_path, path="logs", directory={"max_files": 5000, "max_entries": 1000})
    assert result.status == "fail"
    assert "holds more than max_entries (1000) entries; read the first 1000 only" in result.message
    assert result.evidence["observed"]["entries_read"] == 1000


@pytest.mark.negative("file")
def test_directory_that_is_a_file_fails(tmp_path):
    make(tmp_path, "logs")
    result = check(tmp_path, path="logs", directory={"max_files": 5})
    assert result.status == "fail" and "logs: not a directory" in result.message


def test_a_condition_the_document_cannot_answer_says_why(tmp_path):
    (tmp_path / "models.json").write_text('{"models": 3}')
    result = check(tmp_path, path="models.json", content={"format": "json", "expect": ["length(models) > 0"]})
    assert result.status == "fail"
    assert "models is a number; length() needs a string, an array or an object" in result.message


@pytest.mark.negative("file")
def test_directory_read_through_a_testinfra_target(tmp_path):
    from test_targets import connect_testinfra

    logs_dir(tmp_path, ages_days=(1, 45))
    target = connect_testinfra()
    item = FileCheck(name="logs", path="logs", directory={"match": "*.log", "oldest_max_age": "30d"})
    result = run_check(item, ProbeContext(tmp_path, target=target))
    assert result.status == "fail" and "oldest of logs/*.log: age_s <= 2592000 (30d)" in result.message
    capped = FileCheck(name="logs", path="logs", directory={"max_entries": 1})
    result = run_check(capped, ProbeContext(tmp_path, target=target))
    assert result.status == "fail" and "more than max_entries (1) entries; read the first 1 only" in result.message


@pytest.mark.negative("file")
def test_content_conditions_on_a_fifo_fail_at_once_instead_of_hanging(tmp_path):
    os.mkfifo(tmp_path / "app.ini")
    result = check(tmp_path, path="app.ini", contains=["debug"], timeout=30)
    assert result.status == "fail"
    assert "not a regular file" in result.message or "not a file" in result.message, result.message
