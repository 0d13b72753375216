"""The drill record: what an auditor reads without opsgate.

For every ``drill`` result of a written report, a Markdown and an HTML file under
``<reports>/drills/<environment>/<drill>-<UTC time>.{md,html}``: the environment, when and by
whom (user, host), the recovery points used, a timeline of the steps with durations, the
targets against the measured values, each step's evidence, the verdict, and the seal of the
JSON report it belongs to. Each file ends with the SHA-256 of everything above that line,
so an edit shows. Records are never pruned with the daily reports.

>>> rec = {"drill": "dr", "severity": "P1", "started_at": 0.0, "finished_at": 60.0, "user": "ops", "host": "h",
...        "rto_s": 42.0, "rpo_s": 0.0, "rto_target_s": 3600.0, "rpo_target_s": 3600.0, "port": 8123,
...        "scratch": "/tmp/s", "recovery_points": [], "failure": None, "teardown": {"ran": True, "problems": []},
...        "steps": [{"phase": "start", "name": "python -m app", "started_at": 1.0, "duration_s": 0.5,
...                   "status": "pass", "message": "started pid 7", "evidence": {}}]}
>>> text = markdown(rec, {"environment": "prod", "status": "pass", "report": "r.json", "seal": "sha256:ab"})
>>> "| RTO | 1h00m00s | 42.0s | met |" in text, text.splitlines()[-1].startswith("sha256 of this record")
(True, True)
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..redact import REDACTOR
from .run import _clock

_DIGEST = re.compile(rb'"opsgate_digest":\s*"([^"]+)"\s*}\s*$')


def write_records(document: dict[str, Any], report_path: Path | None, reports_root: Path) -> list[Path]:
    """Write the record of every drill in ``document`` (a report as written); the paths made."""
    meta = document.get("opsgate") or {}
    environment = str(meta.get("environment") or "unknown")
    seal = _seal_of(report_path)
    written = []
    for test in document.get("tests") or ():
        check = ((test.get("metadata") or {}).get("opsgate")) or {}
        if check.get("kind") != "drill":
            continue
        record = ((check.get("evidence") or {}).get("observed")) or {}
        if not record.get("drill"):
            continue
        about = {"environment": environment, "environment_file": meta.get("environment_file"),
                 "status": check.get("status"), "message": check.get("message"), "report": str(report_path or ""),
                 "seal": seal, "version": meta.get("version")}
        folder = reports_root / "drills" / _safe(environment)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{_safe(record['drill'])}-{_stamp(record.get('started_at') or 0)}"
        for suffix, render in ((".md", markdown), (".html", html_page)):
            path = folder / (stem + suffix)
            path.write_text(render(record, about), encoding="utf-8")
            written.append(path)
    return written


def markdown(record: dict[str, Any], about: dict[str, Any]) -> str:
    """The record as Markdown, ending with its own digest line."""
    verdict = _verdict(record, about)
    lines = [
        f"# DR drill `{record['drill']}`: {verdict}",
        "",
        f"- Environment: {about.get('environment')}" + (f" ({about['environment_file']})"
                                                        if about.get("environment_file") else ""),
        f"- When: {_iso(record.get('started_at'))} to {_iso(record.get('finished_at'))} (UTC)",
        f"- By: {record.get('user')} on {record.get('host')}",
        f"- Severity: {record.get('severity')}",
        f"- Scratch: {record.get('scratch')}" + (f", port {record['port']}" if record.get("port") else ""),
        "",
        "## Targets",
        "",
        "| Objective | Target | Measured | Result |",
        "|---|---|---|---|",
    ]
    for label, key in (("RTO", "rto"), ("RPO", "rpo")):
        lines.append(f"| {label} | {_clock(record[f'{key}_target_s'])} | {_measured(record.get(f'{key}_s'))} | "
                     f"{_met(record.get(f'{key}_s'), record[f'{key}_target_s'])} |")
    lines += ["", "## Recovery points", ""]
    points = record.get("recovery_points") or []
    lines += [f"- {p.get('restore')}: {p.get('id')}, taken {_iso(p.get('taken_at'))}, age {_clock(p.get('age_s') or 0)}"
              for p in points] or ["- none restored (the drill stopped before its restore)"]
    lines += ["", "## Timeline", "", "| # | Phase | Step | Start | Duration | Outcome | Detail |",
              "|---|---|---|---|---|---|---|"]
    t0 = record.get("started_at") or 0
    for number, step in enumerate(record.get("steps") or (), 1):
        lines.append(f"| {number} | {step.get('phase')} | {_cell(step.get('name'))} | +{_clock(step.get('started_at', t0) - t0)} "
                     f"| {_clock(step.get('duration_s') or 0)} | {step.get('status')} | {_cell(step.get('message'))} |")
    teardown = record.get("teardown") or {}
    lines += ["", "## Teardown", "",
              f"- Ran: {'yes' if teardown.get('ran') else 'NO'}",
              f"- Left behind: {'; '.join(teardown.get('problems') or []) or 'nothing'}"]
    lines += ["", "## Verdict", "", f"**{verdict}**" + (f": {about['message']}" if about.get("message") else ""), "",
              "## Evidence", ""]
    for number, step in enumerate(record.get("steps") or (), 1):
        if step.get("evidence"):
            lines += [f"Step {number} ({step.get('phase')}: {step.get('name')}):", "", "```json",
                      json.dumps(step["evidence"], indent=1, default=str, sort_keys=True)[:20000], "```", ""]
    lines += ["## Report", "", f"- JSON report: {about.get('report') or 'not written'}",
              f"- Its seal: `{about.get('seal') or 'none'}`", f"- opsgate {about.get('version') or ''}".rstrip(), ""]
    body = REDACTOR.text("\n".join(lines))
    return body + f"\nsha256 of this record above this line: {hashlib.sha256(body.encode()).hexdigest()}\n"


def html_page(record: dict[str, Any], about: dict[str, Any]) -> str:
    """The same record as one self-contained HTML page (no script, no external file)."""
    text = markdown(record, about)
    body, _, digest_line = text.rstrip("\n").rpartition("\n")
    out, table = [], []

    def flush_table() -> None:
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
            head, rest = cells[0], cells[1:]
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rest)
                       + "</table>")
            table.clear()

    in_code = False
    code: list[str] = []
    for line in body.splitlines():
        if line.startswith("```"):
            if in_code:
                out.append("<pre>" + html.escape("\n".join(code)) + "</pre>")
                code.clear()
            in_code = not in_code
            continue
        if in_code:
            code.append(line)
            continue
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:].replace('`', ''))}</h1>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:].replace('`', ''))}</li>")
        elif line.strip():
            out.append(f"<p>{html.escape(line.replace('**', '').replace('`', ''))}</p>")
    flush_table()
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:.2em .5em;text-align:left}pre{background:#f4f4f4;padding:.5em;"
             "overflow:auto}")
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>DR drill {html.escape(record['drill'])}"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>")
    return page + f"\n<!-- {html.escape(digest_line)} (of the Markdown record) -->\n"


def _verdict(record: dict[str, Any], about: dict[str, Any]) -> str:
    status = str(about.get("status") or ("fail" if record.get("failure") else "pass"))
    return {"pass": "PASSED", "warn": "PASSED (with warnings)", "fail": "FAILED", "error": "ERROR",
            "blocked": "NOT RUN (blocked)"}.get(status, status.upper())


def _measured(value: Any) -> str:
    return "not measured" if value is None else _clock(float(value))


def _met(value: Any, target: float) -> str:
    if value is None:
        return "not measured"
    return "met" if float(value) <= target else "MISSED"


def _cell(text: Any) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")[:300]


def _iso(epoch: Any) -> str:
    try:
        return datetime.fromtimestamp(float(epoch), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "unknown"


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(float(epoch), timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "drill"


def _seal_of(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 400))
            match = _DIGEST.search(f.read())
    except OSError:
        return None
    return match.group(1).decode() if match else None
