"""Incident triage: collect what the runbooks' triage and investigation scripts collect, for one
environment, into ``reports/incidents/<id>/``.

For each item of the environment, through its kind's own probe (:data:`opsgate.kinds.REGISTRY`,
one attempt of :func:`opsgate.runner.attempt`, no retry or window):

- ``http``: the response now - status, latency and the JSON document (the health JSON), bounded;
- ``log``: the last N lines (``--log-lines``, 100) and the error lines in the last 10 minutes
  (``error|exception|critical|fatal`` and the item's own patterns), counted;
- ``process``: the processes the item matches, scoped as the check scopes them;
- ``host``: CPU, memory, load and disks (each host item, or this machine's ``/`` if none);
- ``container``: state, health, restarts, what the engine reports, error lines of the last 10 minutes;
- ``postgres`` / ``redis``: role, connections, replication (without the item's own query).

Other kinds (commands, backups, drills ...) are not run: triage observes, it never acts.
Every collection runs with at most ``timeout`` seconds (its item's timeout if lower), all of
them in parallel (bounded), so a hanging target costs its timeout only; a collection not
back by then is recorded as such. Everything written passes :func:`opsgate.redact.sink`.

Written: one JSON per item (``<kind>-<name>.json``), ``summary.md`` (what was collected and
what fails now) and ``review.md``, the post-incident review skeleton (:mod:`opsgate.review`).

>>> safe_id("2026-12-01 api down!")
'2026-12-01_api_down_'
>>> due(["P0", "P1"], [{"metadata": {"opsgate": {"status": "fail", "severity": "P2", "name": "x"}}}])
[]
"""

from __future__ import annotations

import json
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import severity as sev
from .redact import REDACTOR, sink

COLLECTED_KINDS = ("http", "log", "process", "host", "container", "postgres", "redis")
TIMEOUT_S = 10.0  # default bound of one collection
LOG_LINES = 100  # a log's tail
MAX_LOG_LINES = 10_000  # the longest tail asked for (each line is kept, up to 400 characters)
ERROR_MINUTES = 10  # error lines counted over this window, as the runbooks' triage does
ERROR_REGEX = r"error|exception|critical|fatal"
MAX_DOCUMENT = 256 * 1024  # characters of a response document kept (as JSON text)
WORKERS = 8  # collections at once
GRACE_S = 5.0  # beyond its timeout, how long a collection is waited for
_ID = re.compile(r"[^A-Za-z0-9_.-]")


class TriageError(Exception):
    """The triage cannot be done (its folder exists, a bad id)."""


@dataclass
class Collection:
    """What one item's collection found."""

    name: str
    kind: str
    severity: str
    what: str  # what was collected, in the runbooks' words
    status: str = "error"  # the item's check now: pass / warn / fail / error
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    duration_s: float = 0.0
    file: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"item": self.name, "kind": self.kind, "severity": self.severity, "collected": self.what,
                "status_now": self.status, "message": self.message,
                "collected_at": datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="seconds"),
                "duration_s": round(self.duration_s, 3), **self.data}


@dataclass
class Incident:
    """A triage's folder and what went into it."""

    id: str
    folder: Path
    environment: str
    started: float
    finished: float
    collections: list[Collection]
    daily: dict[str, Any] | None = None  # the environment's latest daily report, as read
    daily_problem: str | None = None

    @property
    def failing(self) -> list[Collection]:
        return [c for c in self.collections if c.status in ("fail", "error", "warn")]


def safe_id(text: str) -> str:
    """An incident id as one path component: anything but letters, digits and ``_.-`` becomes ``_``."""
    out = _ID.sub("_", text.strip())[:100]
    if not out or set(out) <= {"."}:
        raise TriageError(f"expected an incident id of letters, digits, '_', '.' or '-', seen {text!r}")
    return out


def due(on_failure: list[str], tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The failed (or erred) checks of a run's report tests whose severity is in ``on_failure``
    (each test's ``metadata.opsgate``): when any, the run collects a triage."""
    wanted = set(on_failure)
    out = []
    for test in tests or ():
        meta = ((test.get("metadata") or {}).get("opsgate") or {}) if isinstance(test, dict) else {}
        if isinstance(meta, dict) and meta.get("status") in ("fail", "error") and meta.get("severity") in wanted:
            out.append(meta)
    return out


def _bounded(item: Any, deadline: float, **changes: Any) -> Any:
    """The item as triage runs it: one attempt within what is left until ``deadline`` (its own
    timeout if lower), no retry or window. Validated again, so a derived item is as sound as
    one from a file."""
    data = item.model_dump(by_alias=True)  # validated again by alias (an http item's json:)
    left = max(0.5, math.ceil((deadline - time.monotonic()) * 10) / 10)  # 2s, not 1.99996s, in messages
    data.update(retry=None, window=None, timeout=min(item.timeout, left), **changes)
    return type(item).model_validate(data)


def _attempt(item: Any, ctx: Any) -> tuple[str, str, Any]:
    from .runner import attempt

    done = attempt(item, ctx)
    return str(done.status), done.message, done


def _document(observation: Any) -> Any:
    from .results import NO_DOCUMENT

    document = observation.document
    if document is NO_DOCUMENT:
        return None
    text = json.dumps(document, default=str)
    if len(text) <= MAX_DOCUMENT:
        return document
    return {"truncated": f"the document is {len(text)} characters; its first {MAX_DOCUMENT} are kept as text",
            "text": REDACTOR.excerpt(text, MAX_DOCUMENT)}


def _evidence(done: Any) -> dict[str, Any]:
    from .runner import bound_evidence

    return bound_evidence(done.evidence())


def _http(item: Any, ctx: Any, deadline: float) -> tuple[str, str, dict[str, Any]]:
    conditions = {} if item.expect or item.warn else {"warn": ["type(@) != 'opsgate-triage'"]}  # parse the JSON
    status, message, done = _attempt(_bounded(item, deadline, max_body_bytes=min(item.max_body_bytes, 1 << 20),
                                              **conditions), ctx)
    return status, message, {"response": _document(done.observation), **_evidence(done)}


def _log(item: Any, ctx: Any, deadline: float, log_lines: int) -> tuple[str, str, dict[str, Any]]:
    tail_item = _bounded(item, deadline, last_lines=log_lines, last_minutes=None, require=[],
                         patterns=[{"regex": "", "max": log_lines * 1000}], max_evidence_lines=log_lines,
                         timestamp_format=None, timestamp_regex=None)
    _, _, tail = _attempt(tail_item, ctx)
    own = [{"regex": p.regex, "ignore_case": p.ignore_case, "max": 0} for p in item.patterns if p.regex != ERROR_REGEX]
    errors_item = _bounded(item, deadline, last_lines=None, last_minutes=ERROR_MINUTES, require=[],
                           patterns=[{"regex": ERROR_REGEX, "ignore_case": True, "max": 0}, *own],
                           max_evidence_lines=20)
    _, _, errors = _attempt(errors_item, ctx)
    window = f"last {ERROR_MINUTES} min"
    if errors.observation.error and "no timestamp" in errors.observation.error:
        # lines without a readable time: count in the tail instead, as the runbooks' grep | tail does
        window = f"last {log_lines} lines ({errors.observation.error})"
        _, _, errors = _attempt(_bounded(errors_item, deadline, last_lines=log_lines, last_minutes=None,
                                         timestamp_format=None, timestamp_regex=None), ctx)
    status, message, now = _attempt(_bounded(item, deadline), ctx)
    lines = (tail.observation.details.get("lines") or {}).get("", [])
    data = {
        "files": tail.observation.values.get("files", []),
        "tail": {"last_lines": log_lines, "lines": lines, "error": tail.observation.error},
        f"errors_last_{ERROR_MINUTES}_min": {
            "window": window, "counts": errors.observation.values.get("matches", {}),
            "since": errors.observation.values.get("since"), "lines_read": errors.observation.values.get("lines_read"),
            "first_lines": errors.observation.details.get("lines", {}), "error": errors.observation.error},
        "check_now": _evidence(now),
    }
    return status, message, data


def _container(item: Any, ctx: Any, deadline: float) -> tuple[str, str, dict[str, Any]]:
    changes: dict[str, Any] = {}
    if item.container and not any(p.regex == ERROR_REGEX for p in item.log_patterns):
        # error lines counted, never limited (the status now stays the item's own); a compose
        # project's logs are read per container only; the item's own log window is kept if it has one
        changes = {"log_minutes": item.log_minutes if item.log_patterns else ERROR_MINUTES, "log_patterns": [
            *(p.model_dump() for p in item.log_patterns),
            {"regex": ERROR_REGEX, "ignore_case": True, "max": 1 << 62}]}
    status, message, done = _attempt(_bounded(item, deadline, **changes), ctx)
    return status, message, _evidence(done)


def _database(item: Any, ctx: Any, deadline: float) -> tuple[str, str, dict[str, Any]]:
    changes = {"expect": [], "warn": []}
    if item.kind == "postgres":
        changes["query"] = None  # the item's own query may be costly: status, connections, replication only
    status, message, done = _attempt(_bounded(item, deadline, **changes), ctx)
    return status, message, _evidence(done)


def _plain(item: Any, ctx: Any, deadline: float) -> tuple[str, str, dict[str, Any]]:
    status, message, done = _attempt(_bounded(item, deadline), ctx)
    return status, message, _evidence(done)


WHAT = {"http": "response (health JSON), status and latency",
        "log": f"log tail and error lines of the last {ERROR_MINUTES} minutes",
        "process": "process list, scoped as the check scopes it",
        "host": "host resources: CPU, memory, load, disks",
        "container": f"container status, health, restarts, stats, error lines of the last {ERROR_MINUTES} minutes",
        "postgres": "database status: role, connections, replication",
        "redis": "cache status: role, clients, replication, persistence"}


def _collect(item: Any, ctx: Any, timeout: float, log_lines: int) -> Collection:
    found = Collection(item.name, item.kind, item.severity, WHAT[item.kind], started=time.time())
    deadline = time.monotonic() + timeout  # the whole collection of this item, whatever it reads
    try:
        if item.kind == "http":
            found.status, found.message, found.data = _http(item, ctx, deadline)
        elif item.kind == "log":
            found.status, found.message, found.data = _log(item, ctx, deadline, log_lines)
        elif item.kind == "container":
            found.status, found.message, found.data = _container(item, ctx, deadline)
        elif item.kind in ("postgres", "redis"):
            found.status, found.message, found.data = _database(item, ctx, deadline)
        else:
            found.status, found.message, found.data = _plain(item, ctx, deadline)
    except Exception as exc:  # one item's trouble never stops the others' collection
        found.status, found.message = "error", f"collection failed: {type(exc).__name__}: {exc}"
    if found.status in ("fail", "error", "warn") and item.remedy:
        found.data["remedy"] = item.remedy  # the runbook's next step, beside what fails now
    found.duration_s = time.time() - found.started
    return found


def _items(env: Any) -> list[Any]:
    items = [i for kind in COLLECTED_KINDS for i in env.items(kind)]
    if not env.items("host"):  # the runbooks' free/df/top: this machine's resources, even unconfigured
        from .probes.host import HostCheck

        items.append(HostCheck(name="this-host", severity="P3", disks=[{"path": "/"}], cpu_sample=0.5))
    return items


def collect(env: Any, base_dir: Path, timeout: float = TIMEOUT_S, log_lines: int = LOG_LINES) -> list[Collection]:
    """Every item's collection, in parallel; each within ``timeout`` (one that is not back by
    then, plus a grace, is recorded as not finished and not waited for)."""
    from .probes import ProbeContext

    ctx = ProbeContext(base_dir, environment=env)
    items = _items(env)
    pool = ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(items))), thread_name_prefix="opsgate-triage")
    try:
        futures = {pool.submit(_collect, item, ctx, timeout, log_lines): item for item in items}
        # every collection runs at most its timeout; they run WORKERS at a time
        rounds = -(-len(items) // WORKERS)
        wait(futures, timeout=rounds * (timeout + GRACE_S) + GRACE_S)
        out = []
        for future, item in futures.items():
            if future.done():
                out.append(future.result())
            else:
                future.cancel()
                out.append(Collection(item.name, item.kind, item.severity, WHAT[item.kind], "error",
                                      f"not collected within {timeout + GRACE_S:g}s", started=time.time()))
        return out
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        ctx.shared.close()


def _file_name(found: Collection, taken: set[str]) -> str:
    base = _ID.sub("_", f"{found.kind}-{found.name}")
    name, n = f"{base}.json", 1
    while name in taken:
        n += 1
        name = f"{base}-{n}.json"
    taken.add(name)
    return name


def latest_daily(reports_root: Path, environment: str, limit: int = 64 << 20) -> tuple[dict | None, str | None]:
    """``reports/<environment>/daily-latest.json``, parsed (None and why when it cannot be used)."""
    from .gate.reports import read_report
    from .report import report_folder

    path = report_folder(reports_root, environment) / "daily-latest.json"
    if not path.is_file():
        return None, f"{path}: no daily report"
    checked = read_report(path, limit=limit)  # bounded, verified: a marker or corrupt file says why
    if checked.problems:
        return None, "; ".join(checked.problems)[:500]
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as exc:
        return None, f"{path}: {exc}"[:300]


def run(loaded: Any, reports_root: Path, incident_id: str | None = None, timeout: float = TIMEOUT_S,
        log_lines: int = LOG_LINES, run_report: dict[str, Any] | None = None) -> Incident:
    """Collect, write ``<reports_root>/incidents/<id>/`` and return what was written. The
    review's timeline is ``run_report`` (the report of the run that called the triage: daily,
    incident ...), else the environment's latest daily report.
    TriageError when the folder exists already (an incident's evidence is never overwritten)."""
    from .review import write_review

    env = loaded.env
    started = time.time()
    stamp = datetime.fromtimestamp(started, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    ident = safe_id(incident_id) if incident_id else safe_id(f"{env.name}-{stamp}")
    root = reports_root / "incidents"
    folder = root / ident
    root.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()
    except FileExistsError:
        if incident_id:
            raise TriageError(f"{folder} exists: an incident's evidence is never overwritten; choose another --id") from None
        folder = root / f"{ident}-{int(started * 1000) % 1000:03d}"
        folder.mkdir()
    collections = collect(env, loaded.base_dir, timeout, log_lines)
    daily, problem = (run_report, None) if run_report is not None else latest_daily(reports_root, env.name)
    incident = Incident(ident if folder.name == ident else folder.name, folder, env.name, started, time.time(),
                        collections, daily, problem)
    taken: set[str] = set()
    for found in collections:
        found.file = _file_name(found, taken)
        (folder / found.file).write_text(json.dumps(sink(found.to_json()), indent=2, default=str) + "\n",
                                         encoding="utf-8")
    (folder / "summary.md").write_text(sink(summary_markdown(incident, env.severity_scale)), encoding="utf-8")
    write_review(incident, env.severity_scale)
    return incident


def summary_markdown(incident: Incident, scale: str = "P0-P3") -> str:
    """What was collected, failing first."""
    when = datetime.fromtimestamp(incident.started, timezone.utc).isoformat(timespec="seconds")
    out = [f"# Incident triage `{incident.id}`", "",
           f"Environment `{incident.environment}`, collected {when} in "
           f"{incident.finished - incident.started:.1f}s; secrets redacted.", ""]
    ordered = sorted(incident.collections, key=lambda c: (c.status not in ("fail", "error", "warn"),
                                                          sev.rank(c.severity), c.kind, c.name))
    out += ["| Severity | Item | Now | Collected | File | Message |", "|---|---|---|---|---|---|"]
    for c in ordered:
        message = " ".join(c.message.split()).replace("|", "\\|")
        out.append(f"| {sev.label(c.severity, scale)} | {c.kind} `{c.name}` | {c.status.upper()} | {c.what} | "
                   f"[{c.file}]({c.file}) | {REDACTOR.excerpt(message, 300)} |")
    out += ["", "The post-incident review skeleton, with the timeline of what failed and when: [review.md](review.md)."]
    if incident.daily_problem:
        out += ["", f"Latest daily report not used: {incident.daily_problem}"]
    return "\n".join(out) + "\n"


def after_run(loaded: Any, report: dict[str, Any], reports_root: Path) -> str | None:
    """At the end of a run whose environment sets ``triage: {on_failure: [...]}``: collect a
    triage when a check of those severities failed; the line the summary prints (None: not due).
    Never raises: a triage that cannot be collected says why, and the run's verdict stands."""
    settings = loaded.env.triage
    failing = due(settings.on_failure, report.get("tests") or []) if settings is not None else []
    if not failing:
        return None
    try:
        # the timeline is this run's own report: an incident run's failures, not the last daily's
        incident = run(loaded, reports_root, timeout=settings.timeout, run_report=report)
    except Exception as exc:
        return REDACTOR.excerpt(f"incident triage could not be collected: {type(exc).__name__}: {exc}", 300)
    names = ", ".join(f"{m.get('severity')} {m.get('name')}" for m in failing[:4]) + (" ..." if len(failing) > 4 else "")
    return f"{describe(incident)} [collected after: {names}]"


def add_triage_parser(sub: Any) -> None:
    """``opsgate triage --env ENV [--id ID]``: the subcommand, wired by :mod:`opsgate.cli`."""
    import argparse

    text = "collect an incident triage (health JSONs, log tails, error counts, processes, resources, containers, " \
           "databases) into reports/incidents/<id>/ with a post-incident review skeleton"
    parser = sub.add_parser("triage", help=text, description=text[0].upper() + text[1:] + ".",
                            epilog="example:\n  opsgate triage --env production --id 2026-12-01-api-down",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=None, help="environment file or name (default: $OPSGATE_ENV)")
    parser.add_argument("--id", dest="incident_id", default=None,
                        help="the incident's id, its folder's name (default: <environment>-<UTC time>)")
    parser.add_argument("--reports-dir", default=None, help="reports root (default: ./reports)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S,
                        help=f"seconds each item's collection may take (default {TIMEOUT_S:g})")
    parser.add_argument("--log-lines", type=int, default=LOG_LINES, help=f"lines of each log's tail (default {LOG_LINES})")
    parser.set_defaults(func=main)


def main(args: Any) -> int:
    """Run ``opsgate triage``: 0 when collected (whatever it found), 2 when it cannot be done."""
    import os
    import sys

    from . import envfile

    name = args.env or os.environ.get("OPSGATE_ENV")
    if not name:
        print("opsgate triage: which environment? give --env NAME_OR_PATH (or set OPSGATE_ENV)", file=sys.stderr)
        return 2
    if not args.timeout > 0 or not 1 <= args.log_lines <= MAX_LOG_LINES:
        print(f"opsgate triage: --timeout must be above 0 and --log-lines from 1 to {MAX_LOG_LINES}", file=sys.stderr)
        return 2
    try:
        loaded = envfile.load(name, [Path.cwd()])
    except envfile.EnvFileError as exc:
        print(f"opsgate triage: the environment cannot be used; nothing was collected:\n{exc}", file=sys.stderr)
        return 2
    try:
        incident = run(loaded, Path(args.reports_dir or Path.cwd() / "reports"), args.incident_id, args.timeout,
                       args.log_lines)
    except (TriageError, OSError) as exc:
        print(f"opsgate triage: {exc}", file=sys.stderr)
        return 2
    print(sink(describe(incident)))
    return 0


def describe(incident: Incident) -> str:
    """One line naming the incident folder and what fails now (the summary prints it too)."""
    failing = ", ".join(f"{c.severity} {c.name}" for c in incident.failing[:6]) + (
        " ..." if len(incident.failing) > 6 else "")
    return (f"incident triage: {incident.folder}/ ({len(incident.collections)} items in "
            f"{incident.finished - incident.started:.1f}s; summary.md, review.md)"
            + (f"; failing or warning now: {failing}" if failing else ""))
