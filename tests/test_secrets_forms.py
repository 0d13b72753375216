"""Secrets: which values are secret (and which are not), every form they are masked in, and
``${VAR}`` in ``shell:`` reaching the shell as data, never as code."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import warnings
from urllib.parse import quote, quote_plus, unquote, urlsplit

import pytest

from opsgate import envfile
from opsgate.probes import ProbeContext
from opsgate.redact import REDACTOR, Redactor
from opsgate.runner import run_check

HOSTILE = "x; touch {m1}; id $(touch {m2}) `touch {m3}` * \"q\" 'r' \\ $HOME"


def load(write_env, text: str, environ: dict):
    return envfile.load(write_env(text), environ=environ).env


def _argv_writer(out) -> str:
    return f"{sys.executable} -c 'import json,sys; open(sys.argv[1], \"w\").write(json.dumps(sys.argv[2:]))' {out}"


def test_shell_variable_is_data_never_code(write_env, tmp_path):
    markers = {f"m{i}": tmp_path / f"pwned-{i}" for i in (1, 2, 3)}
    value = HOSTILE.format(**markers)
    out = tmp_path / "argv.json"
    env = load(write_env, f"name: t\ncommand:\n  - name: ping\n    shell: {json.dumps(_argv_writer(out) + ' ${TARGET_HOST}')}\n",
               {"TARGET_HOST": value})
    result = run_check(env.command[0], ProbeContext(base_dir=tmp_path))
    assert result.status == "pass", result.message
    assert not any(m.exists() for m in markers.values()), "the value ran as code"
    assert json.loads(out.read_text()) == [value]  # one argument, intact: no splitting, no globbing


def test_shell_variable_inside_quotes_and_with_a_default(write_env, tmp_path):
    marker = tmp_path / "pwned"
    value = f"a'b\"c; touch {marker}"
    out = tmp_path / "argv.json"
    line = _argv_writer(out) + " \"in double ${V} quotes\" 'in single ${V} quotes' ${UNSET:-d;touch " + str(marker) + "} $${HOME}"
    env = load(write_env, f"name: t\ncommand:\n  - name: c\n    shell: {json.dumps(line)}\n", {"V": value, "HOME": "/home/x"})
    result = run_check(env.command[0], ProbeContext(base_dir=tmp_path))
    assert result.status == "pass", result.message
    assert not marker.exists()
    assert json.loads(out.read_text()) == [f"in double {value} quotes", f"in single {value} quotes",
                                           f"d;touch {marker}", os.environ.get("HOME", "")]


def test_shell_variable_does_not_clobber_the_commands_own_env(write_env, tmp_path):
    out = tmp_path / "argv.json"
    line = _argv_writer(out) + ' "$TARGET" ${TARGET}'
    env = load(write_env, f"name: t\ncommand:\n  - name: c\n    shell: {json.dumps(line)}\n    env: {{TARGET: own}}\n",
               {"TARGET": "from-opsgate; id"})
    assert run_check(env.command[0], ProbeContext(base_dir=tmp_path)).status == "pass"
    assert json.loads(out.read_text()) == ["own", "from-opsgate; id"]


def test_shell_variable_still_checked_and_registered_at_load(write_env):
    path = write_env("name: t\ncommand:\n  - name: c\n    shell: 'echo ${NOT_SET_ANYWHERE_X}'\n")
    with pytest.raises(envfile.EnvFileError) as caught:
        envfile.load(path, environ={})
    assert "NOT_SET_ANYWHERE_X" in str(caught.value) and "unset" in str(caught.value)
    load(write_env, "name: t\ncommand:\n  - name: c\n    shell: 'curl -H \"X: ${DEPLOY_TOKEN}\" x'\n", {"DEPLOY_TOKEN": "dpl-7Hq2-zz91"})
    assert REDACTOR.text("sent dpl-7Hq2-zz91") == "sent ***"


def test_secret_variable_names_are_predictable(write_env):
    environ = {"SIGNING_KEY": "sgk-Aa81-Qm2Lx", "GH_TOKEN": "ghp-Rr73-Kd0Wz", "DB_PASSWD": "dbp-Mm55-Tt8Qq",
               "AWS_SECRET_ACCESS_KEY": "aws-Zx19-Pp4Nn", "SVC_CREDENTIAL": "crd-Yy23-Hh6Ll", "PRIVATE_PEM": "pem-Oo41-Bb3Jj",
               "AUTH_SERVICE_URL": "http://127.0.0.1:1", "AUTH_LOG_LINES": "1379", "SESSION_NAME": "sess-Ab12-visible"}
    headers = "\n".join(f"      X-{i}: \"${{{name}}}\"" for i, name in enumerate(environ) if name != "AUTH_SERVICE_URL")
    load(write_env, f"name: t\nhttp:\n  - name: a\n    url: ${{AUTH_SERVICE_URL}}/health\n    headers:\n{headers}\n", environ)
    for name in ("SIGNING_KEY", "GH_TOKEN", "DB_PASSWD", "AWS_SECRET_ACCESS_KEY", "SVC_CREDENTIAL", "PRIVATE_PEM"):
        assert REDACTOR.text(f"value {environ[name]}.") == "value ***.", name
    # over-masking hides evidence: AUTH, SESSION or URL in a name do not make a value secret
    assert REDACTOR.text("GET http://127.0.0.1:1/health") == "GET http://127.0.0.1:1/health"
    assert REDACTOR.text("read 1379 lines; sess-Ab12-visible") == "read 1379 lines; sess-Ab12-visible"


def test_url_values_register_only_their_password(write_env):
    environ = {"DATABASE_URL": "postgresql://app:dsnpw-81Kq@db-host-77/x", "SECRET_CACHE_URL": "redis://:rdpw-62Lm@cache-host-55:6379/0",
               "WEBHOOK_TOKEN_URL": "https://hooks.example/T0/whk-39Zp"}
    load(write_env, "name: t\npostgres:\n  - {name: db, dsn: '${DATABASE_URL}'}\nredis:\n  - {name: r, url: '${SECRET_CACHE_URL}'}\n"
         "http:\n  - {name: h, url: 'http://127.0.0.1:1/', headers: {X-Hook: '${WEBHOOK_TOKEN_URL}'}}\n", environ)
    assert REDACTOR.text("postgresql://app:dsnpw-81Kq@db-host-77/x") == "postgresql://app:***@db-host-77/x"
    assert REDACTOR.text("login dsnpw-81Kq at db-host-77; rdpw-62Lm at cache-host-55") == "login *** at db-host-77; *** at cache-host-55"
    # a secret-named URL without a password is a credential itself (a webhook): masked whole
    assert REDACTOR.text("posted to https://hooks.example/T0/whk-39Zp") == "posted to ***"


def test_password_substituted_into_an_address_is_encoded_and_secret(write_env):
    raw = "pg/pw#9 q?@Ü\"x"  # breaks an address unless percent-encoded; the name does not look secret
    env = load(write_env, "name: t\npostgres:\n  - {name: db, dsn: 'postgresql://app:${PG_PASS}@127.0.0.1:1/app'}\n", {"PG_PASS": raw})
    parts = urlsplit(env.postgres[0].dsn)
    assert unquote(parts.password) == raw and parts.hostname == "127.0.0.1" and parts.port == 1
    assert REDACTOR.text(f"auth failed for {raw}") == "auth failed for ***"


def test_user_substituted_into_an_address_is_not_a_secret(write_env):
    env = load(write_env, "name: t\npostgres:\n  - {name: db, dsn: 'postgresql://${PG_USER_X}:${PG_PW_X}@127.0.0.1:1/app'}\n",
               {"PG_USER_X": "usr-vis-31", "PG_PW_X": "pwd-hid/42"})
    assert urlsplit(env.postgres[0].dsn).username == "usr-vis-31"
    assert REDACTOR.text("usr-vis-31 with pwd-hid/42") == "usr-vis-31 with ***"


def test_secrets_list_adds_variables(write_env):
    environ = {"UPSTREAM_ID": "ups-44Gh-Vv7c", "OTHER_ID": "oth-31Kk-visible"}
    load(write_env, "name: t\nsecrets: [UPSTREAM_ID]\nhttp:\n  - name: h\n    url: http://127.0.0.1:1/\n"
         "    headers: {X-A: '${UPSTREAM_ID}', X-B: '${OTHER_ID}'}\n", environ)
    assert REDACTOR.text("ups-44Gh-Vv7c oth-31Kk-visible") == "*** oth-31Kk-visible"
    with pytest.raises(envfile.EnvFileError) as caught:
        envfile.load(write_env("name: t\nsecrets: ['not a name']\n", "bad.yaml"), environ={})
    assert "secrets[0]" in str(caught.value)


def test_secret_too_short_to_mask_is_not_registered_and_warned(write_env):
    with pytest.warns(UserWarning, match=r"env.yaml:3: http\[0\].headers.X-T: \$\{API_TOKEN\}: a secret shorter than 4 characters"):
        load(write_env, "name: t\nhttp:\n  - {name: h, url: 'http://127.0.0.1:1/', headers: {X-T: '${API_TOKEN}'}}\n", {"API_TOKEN": "z9q"})
    assert REDACTOR.text("xyz z9q") == "xyz z9q"


def test_validation_errors_never_echo_a_substituted_value(write_env):
    text = ("name: t\nhttp:\n  - name: h\n    url: http://127.0.0.1:1/\n    headers:\n"
            "      X-Sig: {value: '${SIGNING_KEY}', secret: maybe}\n      X-Other: {value: '${PLAIN_ID}', secret: 3}\n"
            "    max_redirects: ${SIGNING_KEY}\n")
    with pytest.raises(envfile.EnvFileError) as caught:
        envfile.load(write_env(text), environ={"SIGNING_KEY": "sig-Qw19-Ee5Rt", "PLAIN_ID": "pln-Zz27-Uu3Ii"})
    message = str(caught.value)
    assert "max_redirects" in message and "X-Sig" in message, message
    for value in ("sig-Qw19-Ee5Rt", "pln-Zz27-Uu3Ii", "Qw19", "Zz27"):
        assert value not in message, message


SECRET = 'Sx7"k\\Ümn/q+r w&=Zt'


@pytest.mark.parametrize("form", [
    pytest.param(json.dumps(SECRET)[1:-1], id="json-ascii"),
    pytest.param(json.dumps(SECRET, ensure_ascii=False)[1:-1], id="json"),
    pytest.param(json.dumps(SECRET)[1:-1].replace("/", "\\/"), id="json-slash"),
    pytest.param(json.dumps(SECRET)[1:-1].replace("\\u00dc", "\\u00DC"), id="json-upper-hex"),
    pytest.param(json.dumps(json.dumps(SECRET))[1:-1], id="json-in-json"),
    pytest.param(json.dumps(SECRET)[1:-1].replace("&", "\\u0026"), id="json-html-safe"),
    pytest.param(quote(SECRET, safe=""), id="url"),
    pytest.param(quote(SECRET), id="url-path"),
    pytest.param(quote_plus(SECRET), id="url-plus"),
    pytest.param(re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(SECRET, safe="")), id="url-lower-hex"),
    pytest.param(repr(SECRET)[1:-1], id="repr"),
    pytest.param(repr({"k": SECRET}), id="repr-dict"),
    pytest.param(ascii(SECRET)[1:-1], id="ascii"),
    pytest.param(repr(SECRET.encode()), id="repr-bytes"),
] + [pytest.param(base64.b64encode(f"{user}:{SECRET}".encode()).decode(), id=f"base64-{len(user)}")
     for user in ("", "u", "ab", "ops")]
  + [pytest.param(base64.urlsafe_b64encode(f"ops:{SECRET}".encode()).decode(), id="base64-urlsafe")])
def test_every_encoded_form_is_masked(form):
    redactor = Redactor()
    redactor.add(SECRET)
    masked = redactor.text(f"seen: {form} (end)")
    assert "***" in masked
    decoded = {masked, unquote(masked), unquote(masked.replace("+", " "))}
    for chunk in masked.replace("***", "\0").split("\0"):
        if len(chunk) >= 8:
            try:
                decoded.add(base64.b64decode(chunk + "==", validate=False).decode("utf-8", "replace"))
            except ValueError:
                pass
    leftovers = [SECRET[i:i + 6] for i in range(len(SECRET) - 5) if any(SECRET[i:i + 6] in d for d in decoded)]
    assert not leftovers, (masked, leftovers)


def test_a_cut_before_redaction_leaves_no_fragment():
    redactor = Redactor()
    secret = "frag-Secret-9Kq2Lm"
    redactor.add(secret)
    text = "error: the upstream service rejected the request; it said: token " + secret + " is not valid for this" + " ." * 40
    for cut in range(len(text)):
        for piece in (text[:cut], text[cut:], text[:cut] + "…", "..." + text[cut:]):
            masked = redactor.text(piece)
            assert not any(secret[i:i + 6] in masked for i in range(len(secret) - 5)), (piece, masked)
    assert redactor.excerpt(text, 72) == "error: the upstream service rejected the request; it said: token *** is "


def test_short_whole_values_are_not_taken_for_fragments():
    redactor = Redactor()
    redactor.add("s3cret-Pg-pass")  # a password ending in a word a report is full of
    assert [redactor.text(v) for v in ("pass", "passed", "g-pass", "pass: 3 checks")] == ["pass", "passed", "g-pass", "pass: 3 checks"]
    assert redactor.text("s3cret-Pg-pass") == "***" and redactor.text("signed s3cret-P") == "signed ***"


def test_short_values_and_non_secrets_are_left_alone():
    redactor = Redactor()
    assert redactor.add("100") is False and redactor.add("") is False
    assert redactor.text("read 100 lines in 100 ms") == "read 100 lines in 100 ms"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert redactor.add("ok-4444") is True
    assert redactor.text("status 200, 4444 bytes, ok") == "status 200, 4444 bytes, ok"
