"""No secret (header token, URL password, secret-looking variable) appears in any output of a failing run."""

from __future__ import annotations

from tests.support.http_target import HttpTarget

TOKEN = "tok-9f8e7d6c5b4a-SECRET"
PASSWORD = "pw-Zq81-SECRET"
DB_PASSWORD = "db-hunter2-SECRET"


def test_secrets_stay_out_of_terminal_and_reports(run_suite, write_env, tmp_path):
    log = tmp_path / "app.log"
    log.write_text(f"2026-01-01 00:00:00 ERROR login failed for postgresql://app:{DB_PASSWORD}@db/app\n"
                   f"2026-01-01 00:00:01 ERROR retry with Authorization: Bearer {TOKEN}\n")
    with HttpTarget() as target:
        host = target.url.split("//", 1)[1]
        path = write_env(f"""name: secretive
http:
  - name: echo-with-token
    url: {target.url}/echo
    headers:
      Authorization: "Bearer ${{API_TOKEN}}"
      X-Trace: {{value: "${{TRACE_ID}}", secret: true}}
    expect: ["headers.authorization == 'nope'"]
  - name: url-password
    url: "http://ops:${{HTTP_PASSWORD}}@{host}/status/500"
log:
  - name: app-log
    path: {log}
    patterns: [{{regex: ERROR}}]
command:
  - name: leaky-command
    shell: "echo connecting with $DB_PASSWORD; exit 3"
    env: {{DB_PASSWORD: "${{DB_PASSWORD}}"}}
""")
        run = run_suite("--env", str(path), "-v", "-rA",
                        env={"API_TOKEN": TOKEN, "HTTP_PASSWORD": PASSWORD, "TRACE_ID": "trace-abc-123",
                             "DB_PASSWORD": DB_PASSWORD})
    assert run.returncode == 1, run.output
    assert run.output.count("FAIL") >= 4  # every check failed, each with its evidence
    reports = [p.read_text() for p in run.reports.iterdir()]
    assert reports
    for secret in (TOKEN, PASSWORD, DB_PASSWORD, "trace-abc-123"):
        assert secret not in run.output, secret
        for text in reports:
            assert secret not in text, secret
    assert "***" in run.output and all("***" in text for text in reports)
    # redaction hides values, not the explanation: check names and conditions stay readable
    assert "test_http[url-password]: HTTP status == 200: observed 500" in run.output
    assert "headers.authorization == 'nope'" in run.output
