"""Credentials in the query string of a URL or DSN (``?password=``, ``?sslpassword=``, a redis
URL's ``?password=``, ``?token=``) are secrets: registered when the environment is loaded, written
in the file or from a variable, so their bare value is masked wherever it appears alone - a
report, a load error, a log line, a server's error echo - not only behind a ``password=`` pattern.
Query parameters that are no credential (``sslmode``, ``target_session_attrs``) stay visible."""

from __future__ import annotations

import json

import pytest

from opsgate import envfile
from opsgate.redact import REDACTOR
from tests.support.http_target import StaticTarget, free_port

INLINE_PW = "inl-Hq72-query"  # written in the file: ?password=
SSL_PW = "ssl-Vb39-query"  # ?sslpassword=${PG_SSL_PW}: a variable named like no secret
CACHE_PW = "rds-Kx51-query"  # inside ${CACHE_URL}, a redis URL: a variable named like no secret
TOKEN = "tok-Wm84-query"  # ?token=${ECHO_Q}, which the server echoes alone in its error
ENVIRON = {"PG_SSL_PW": SSL_PW, "ECHO_Q": TOKEN}
SECRETS = (INLINE_PW, SSL_PW, CACHE_PW, TOKEN)


def _environ(cache_port: int) -> dict[str, str]:
    return {**ENVIRON, "CACHE_URL": f"redis://127.0.0.1:{cache_port}/0?password={CACHE_PW}"}


def _postgres(port: int) -> str:
    return (f"postgres:\n  - name: db\n    dsn: 'postgresql://app@127.0.0.1:{port}/shop?sslmode=require"
            f"&target_session_attrs=read-write&password={INLINE_PW}&sslpassword=${{PG_SSL_PW}}'\n    timeout: 3\n")


def test_query_credentials_are_registered_at_load(write_env):
    envfile.load(write_env(f"name: t\n{_postgres(1)}redis:\n  - {{name: cache, url: '${{CACHE_URL}}'}}\n"),
                 environ=_environ(1))
    for secret in (INLINE_PW, SSL_PW, CACHE_PW):
        assert REDACTOR.text(f"rejected: {secret}") == "rejected: ***", secret
    # what is no credential stays readable: the other parameters, the address around the secret
    assert REDACTOR.text("sslmode require, target_session_attrs read-write") == "sslmode require, target_session_attrs read-write"
    assert (REDACTOR.text(f"redis://127.0.0.1:1/0?password={CACHE_PW}&db=0")
            == "redis://127.0.0.1:1/0?password=***&db=0")


def test_a_secret_named_variable_holding_a_dsn_registers_its_query_password_not_the_host(write_env):
    environ = {"ORDERS_SECRET_DSN": "postgresql://app@orders-host-93/shop?password=sec-Pz28-query&sslmode=prefer"}
    envfile.load(write_env("name: t\npostgres:\n  - {name: db, dsn: '${ORDERS_SECRET_DSN}'}\n"), environ=environ)
    assert REDACTOR.text("orders-host-93 said sec-Pz28-query is wrong") == "orders-host-93 said *** is wrong"


def test_a_load_error_never_shows_a_query_credential(write_env):
    """The same value pasted into a field that rejects it: the load error names the field and
    masks the value, whether the DSN wrote it or a variable brought it (registered as the file
    is read, before it is validated)."""
    text = (f"name: t\n{_postgres(1)}redis:\n  - name: cache\n    url: '${{CACHE_URL}}'\n"
            f"    timeout: '{CACHE_PW}'\nhttp:\n  - name: h\n    url: 'http://127.0.0.1:1/?token=${{ECHO_Q}}'\n"
            f"    max_redirects: '{INLINE_PW}'\n")
    with pytest.raises(envfile.EnvFileError) as caught:
        envfile.load(write_env(text, "broken.yaml"), environ=_environ(1))
    message = str(caught.value)
    assert "redis[0].timeout" in message and "http[0].max_redirects" in message, message
    for secret in SECRETS:
        assert secret not in message, message


def test_query_credentials_stay_out_of_a_runs_output_and_reports(run_suite, write_env, tmp_path):
    """A failing run: the log's lines, the database's and cache's errors and an API that echoes
    the rejected token alone in its answer; no output or report holds a query credential."""
    log = tmp_path / "app.log"
    log.write_text(f"2026-01-01 00:00:00 ERROR login rejected: {INLINE_PW}\n"
                   f"2026-01-01 00:00:01 ERROR ssl key passphrase {SSL_PW} does not decrypt\n"
                   f"2026-01-01 00:00:02 ERROR redis AUTH {CACHE_PW} failed\n")
    rejected = {"status": "error", "error": "invalid credential", "given": TOKEN}  # the server's error echo
    with StaticTarget({f"/v1/items?token={TOKEN}": rejected}) as api:
        path = write_env(f"""name: query-secrets
{_postgres(free_port())}redis:
  - name: cache
    url: '${{CACHE_URL}}'
    timeout: 3
http:
  - name: api
    url: '{api.base}/v1/items?token=${{ECHO_Q}}'
    expect: ["status == 'ok'"]
log:
  - name: app-log
    path: {log}
    patterns: [{{regex: ERROR}}]
""")
        run = run_suite("--env", str(path), "-v", "-rA", env=_environ(free_port()))
    assert run.returncode == 1, run.output
    reports = [p for p in run.reports.iterdir() if p.suffix == ".json"]
    assert reports, run.output
    texts = [p.read_text() for p in run.reports.iterdir() if p.is_file()]
    for secret in SECRETS:
        assert secret not in run.output, (secret, run.output)
        for text in texts:
            assert secret not in text, secret
    found = {t["metadata"]["opsgate"]["name"]: t["metadata"]["opsgate"] for t in json.loads(reports[0].read_text())["tests"]}
    assert {found[name]["status"] for name in ("db", "cache", "api", "app-log")} == {"fail"}, found
    # the checks saw the values (the log's lines, the server's echo) and show them masked
    assert "login rejected: ***" in json.dumps(found["app-log"]) and "redis AUTH *** failed" in json.dumps(found["app-log"])
    assert '"given": "***"' in found["api"]["message"], found["api"]  # the echo, in its failure message
