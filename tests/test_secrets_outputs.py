"""Planted secrets, echoed back by the targets in every form, never reach any output.

One environment plants a secret in every secret-capable field and variable: a secret header,
a ``{value, secret: true}`` header, a URL password (sent as Basic credentials), a DSN
password, a ``SIGNING_KEY``-style variable in an ordinary header, a variable listed under
``secrets:``, a secret command ``env``. The targets echo them back: an HTTP server reflects
every request header into its body (as is, JSON-escaped, URL-encoded, base64 of
``user:value``, repr) and into a 500 error; a command prints its environment in those forms
to stdout and stderr; a log holds them in ERROR lines. Then the run (with ``--gate``) and
``opsgate gate`` (JUnit, Markdown, Prometheus, GitHub step summary, Nagios) are grepped for
every secret, each encoded form and every 6-character fragment: 0 hits. Values that are not
secret (a URL, a number) stay visible.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, quote_plus

import pytest

from tests.gate_helpers import run_gate
from tests.support.http_target import free_port
from tests.support.project import REPO, latest_report, make_project, run_pytest

SECRETS = {  # variable -> value: quotes, backslash, non-ASCII, slash, plus, space all need escaping somewhere
    "API_TOKEN": 'Tk9"q\\Lm/Ür+7 zWx4',
    "TRACE_ID": "Tr8/Qv\\Yp\"Kd+Üb 2N",
    "HTTP_PASSWORD": "Hp5+Wj/Ue\"Rx\\Ös 6C",
    "PG_PASS": "Pq3#Vz/Nk+Ya\\Jm 8H",
    "SIGNING_KEY": "Sg4=Bf/Lt+Xo\"Ü\\c 9D",
    "UPSTREAM_ID": "Up6*Gh/Mw+Ec\\Äi 1F",
    "DB_PASSWORD": "Db7~Kr/Ps+Ze\"Öl\\ 3A",
    "ECHO_PASSWORD": "Ep2/Fw+Hs\"Ïq\\ 5K",  # set percent-encoded, as a URL needs it
}
ENCODED = {"ECHO_PASSWORD"}
PLAIN_URL_VAR, PLAIN_NUMBER = "AUTH_SERVICE_URL", "4711"  # AUTH is not a secret word for variables


def forms(secret: str) -> set[str]:
    """The forms a leak could take, computed here independently of opsgate.redact."""
    out = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
           json.dumps(secret)[1:-1].replace("/", "\\/"), json.dumps(json.dumps(secret))[1:-1],
           repr(secret)[1:-1], repr(repr(secret))[1:-1], ascii(secret)[1:-1],
           quote(secret, safe=""), quote_plus(secret),
           re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(secret, safe=""))}
    for user in ("", "u", "ab", "ops", "user"):  # every base64 alignment, the part only the secret decides
        encoded = base64.b64encode(f"{user}:{secret}".encode()).decode()
        start = -(-8 * (len(user) + 1) // 6)
        out.add(encoded[start:start + 8])
    out |= {secret[i:i + 6] for i in range(len(secret) - 5)}
    return out


def reflect(value: str) -> dict:
    return {"raw": value, "url": quote(value, safe=""), "plus": quote_plus(value),
            "b64": base64.b64encode(f"user:{value}".encode()).decode(), "repr": repr(value)}


class _Echo(BaseHTTPRequestHandler):
    """Reflects the request's headers in many encodings; /error does it with a 500."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        headers = {k: reflect(v) for k, v in self.headers.items()}
        body = json.dumps({"status": "degraded", "headers": headers}).encode()
        if self.path.startswith("/error"):
            body = f"error: request rejected, headers were {dict(self.headers)!r}".encode("utf-8")
        self.send_response(500 if self.path.startswith("/error") else 200)
        self.send_header("Content-Type", "application/json" if body.startswith(b"{") else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


PRINT_ENV = """import json, os, sys, base64, urllib.parse
names = sys.argv[1:]
for name in names:
    v = os.environ.get(name, "")
    print(name, v, json.dumps(v), urllib.parse.quote(v), base64.b64encode(("ops:" + v).encode()).decode(), repr(v))
    print("stderr", name, repr(v), json.dumps(v, ensure_ascii=False), file=sys.stderr)
print("lines=" + os.environ.get("AUTH_LOG_LINES", "?"))
sys.exit(3)
"""


def test_planted_secrets_reach_no_output(tmp_path, echo):
    script = tmp_path / "print_env.py"
    script.write_text(PRINT_ENV)
    log = tmp_path / "app.log"
    log.write_text("".join(f"2026-01-01 00:00:0{i} ERROR {name} was {json.dumps(value)} ({quote(value)}) "
                           f"{'x' * 4090}{value} cut\n" for i, (name, value) in enumerate(SECRETS.items())))
    plain_url = f"http://{echo}"
    env_text = f"""name: planted
secrets: [UPSTREAM_ID]
http:
  - name: echo-headers
    severity: P0
    url: "${{{PLAIN_URL_VAR}}}/echo"
    headers:
      Authorization: "Bearer ${{API_TOKEN}}"
      X-Trace: {{value: "${{TRACE_ID}}", secret: true}}
      X-Signature: "${{SIGNING_KEY}}"
      X-Upstream: "${{UPSTREAM_ID}}"
      X-Plain: "${{AUTH_LOG_LINES}}"
    expect: ["status == 'healthy'"]
  - name: echo-error
    url: "http://ops:${{HTTP_PASSWORD}}@{echo}/error"
    headers:
      X-Signature: "${{SIGNING_KEY}}"
  - name: echo-url-password
    url: "http://ops:${{ECHO_PASSWORD}}@{echo}/echo"
    expect: ["status == 'healthy'"]
  - name: echo-basic
    url: "http://{echo}/echo"
    headers: {{Authorization: "Basic {base64.b64encode(('ops:' + SECRETS['HTTP_PASSWORD']).encode()).decode()}"}}
    expect: ["status == 'healthy'"]
postgres:
  - name: db
    dsn: "postgresql://app:${{PG_PASS}}@127.0.0.1:{free_port()}/app"
    timeout: 3
log:
  - name: app-log
    path: {log}
    patterns: [{{regex: ERROR}}]
command:
  - name: print-env
    argv: ["{sys.executable}", "{script}", {", ".join(SECRETS)}]
    env:
      DB_PASSWORD: "${{DB_PASSWORD}}"
      AUTH_LOG_LINES: "${{AUTH_LOG_LINES}}"
  - name: shell-echo
    shell: "echo token=${{API_TOKEN}} signed ${{SIGNING_KEY}} >&2; exit 4"
"""
    project = make_project(tmp_path, env_text)
    summary = tmp_path / "step-summary.md"
    environ = {**{k: quote(v, safe="") if k in ENCODED else v for k, v in SECRETS.items()}, PLAIN_URL_VAR: plain_url, "AUTH_LOG_LINES": PLAIN_NUMBER, "GITHUB_STEP_SUMMARY": str(summary)}
    run = run_pytest(project, "--gate", "daily", "-rA", "-v", env=environ)
    assert run.returncode != 0 and run.report_text, run.output
    report = latest_report(project)
    outputs = {"terminal": run.output, "report": run.report_text}
    gate = run_gate(report, "--policy", REPO / "config" / "gates.yaml", "--gate", "daily",
                    "--junit", tmp_path / "junit.xml", "--markdown", tmp_path / "gate.md",
                    "--prometheus", tmp_path / "gate.prom", env={"GITHUB_STEP_SUMMARY": str(summary)})
    nagios = run_gate(report, "--policy", REPO / "config" / "gates.yaml", "--gate", "daily", "--nagios")
    outputs.update({"gate terminal": gate.output, "nagios": nagios.output})
    for name in ("junit.xml", "gate.md", "gate.prom", "step-summary.md"):
        assert (tmp_path / name).exists(), (name, gate.output)
        outputs[name] = (tmp_path / name).read_text()

    leaks = [(where, variable, form) for variable, secret in SECRETS.items() for form in forms(secret)
             for where, text in outputs.items() if form in text]
    assert not leaks, leaks[:20]
    # every check failed and says why: the secrets were there to be leaked
    checks = {t["nodeid"].rsplit("[", 1)[-1][:-1]: t["metadata"]["opsgate"] for t in json.loads(outputs["report"])["tests"]}
    assert len(checks) == 8 and {c["status"] for c in checks.values()} <= {"fail", "error"}, {n: c["status"] for n, c in checks.items()}
    # not secret, so still visible: the URL from AUTH_SERVICE_URL and the number from AUTH_LOG_LINES
    assert f"{plain_url}/echo" in outputs["report"] and "***/echo" not in outputs["report"]
    assert f"lines={PLAIN_NUMBER}" in outputs["report"]

