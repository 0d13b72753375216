"""Hostile HTTP targets, each a whole ``pytest checks/daily`` process as an operator runs it:

(a) 1,000 endpoints (200 with --quick) that accept the connection and never answer,
    timeout 2 s, ``concurrency: 1000``: the whole process's wall time against a trivial
    run's (one file check: interpreter, plugin, report) measured here too, and the run's
    peak RSS (``os.wait4`` on that very process). Goals: whole <= start-up + 2.5 s,
    RSS <= 200 MB, every check failed naming the headers it never got. Beside it, the
    same run against a refused port (every check fails at once): the difference is what
    waiting costs, so it shows whether the 1,000 probes waited together (goal: <= 2.5 s);
    the rest is pytest's and the plugin's cost per failed check, which no probe can cut.
(b) 20 header-trickling targets listed before 20 healthy ones (5 + 5 with --quick),
    concurrency 10, timeout 2 s: every healthy check passes within its timeout, both as
    the report's ``duration_s`` and as the time from the run's first check to its end
    (queueing behind the stuck ones included).

The machine may be shared with other test runs: wall times are noisy, RSS is not.
``BENCH_SRC`` (default: this tree's src) says which opsgate the pytest runs import. As in
``bench_http.py``, hypothesis's pytest plugin (a test extra, not a user's) is left out.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.hostile_http import HostileHttp  # noqa: E402
from tests.support.project import make_project  # noqa: E402


class Silent:
    """One listener that accepts every connection and never answers (backlog 4096)."""

    def __enter__(self) -> "Silent":
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def __exit__(self, *exc) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def _pytest(project: Path) -> tuple[float, float, dict]:
    """Run ``pytest checks/daily`` in ``project``: (wall seconds, peak RSS MB, report)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "PYTEST_"))}
    environ["PYTHONPATH"] = os.environ.get("BENCH_SRC", str(REPO / "src"))
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "checks/daily", "--env", "env.yaml", "-q",
                                 "-p", "no:cacheprovider", "-p", "no:hypothesispytest"], cwd=project, env=environ, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        latest = next((project / "reports").glob("*/daily-latest.json"), project / "reports" / "daily-latest.json")
        if not latest.exists():
            out.seek(0)
            raise RuntimeError(f"no report (exit {proc.returncode}): {out.read()[-1500:].decode(errors='replace')}")
    return took, usage.ru_maxrss / 1024, json.loads(latest.read_text())


def _results(report: dict) -> dict[str, dict]:
    return {t["nodeid"].rsplit("[", 1)[-1].rstrip("]"): t["metadata"]["opsgate"] for t in report["tests"]}


def _startup(tmp: Path) -> float:
    project = make_project(tmp / "startup", "name: trivial\nfile:\n  - {name: hostname, path: /etc/hostname}\n")
    _pytest(project)  # warm the caches once
    return _pytest(project)[0]


def _many(tmp: Path, name: str, count: int, port: int) -> tuple[float, float, list[dict]]:
    lines = "".join(f"  - {{name: {name}-{i}, url: 'http://127.0.0.1:{port}/hang/{i}', timeout: 2s}}\n"
                    for i in range(count))
    project = make_project(tmp / name, f"name: {name}\nconcurrency: 1000\nhttp:\n{lines}")
    took, rss, report = _pytest(project)
    return took, rss, list(_results(report).values())


def _never_answering(tmp: Path, count: int, startup: float) -> list[dict]:
    with Silent() as silent:
        took, rss, results = _many(tmp, "silent", count, silent.port)
    named = sum(r["status"] == "fail" and "no response headers within 2s" in r["message"] for r in results)
    ok = named == count
    # the same run where every check fails at once: what pytest and opsgate spend per failed
    # check (collection, reports, the terminal's failure list), with no waiting at all
    span = max(r["started_at"] + r["duration_s"] for r in results) - min(r["started_at"] for r in results)
    refused_took, _, refused = _many(tmp, "refused", count, _free_port())
    # every one fails without waiting for an answer; with 1,000 probes started at once on two
    # cores a few connects are cut at the deadline while still queued for the interpreter
    instant = sum(r["status"] == "fail" for r in refused) == count
    return [
        {"case": f"{count} checks refused at once (same run, no waiting)", "measured": f"{refused_took:.2f} s",
         "goal": "-", "ok": instant},
        {"case": f"{count} never-answering endpoints, timeout 2s: whole run", "ok": ok and took <= startup + 2.5,
         "measured": f"{took:.2f} s (start-up {startup:.2f} s, +{took - startup:.2f} s)", "goal": "<= start-up + 2.5 s"},
        {"case": f"{count} never-answering endpoints: waiting added", "ok": ok and instant and took <= refused_took + 2.5,
         "measured": f"+{took - refused_took:.2f} s over the refused run", "goal": "<= 2 s timeout + 0.5 s"},
        {"case": f"{count} never-answering endpoints: first probe start to last probe end", "ok": ok and span <= 2.5,
         "measured": f"{span:.2f} s", "goal": "<= 2 s timeout + 0.5 s"},
        {"case": f"{count} never-answering endpoints: peak RSS", "measured": f"{rss:.0f} MB", "goal": "<= 200 MB",
         "ok": ok and rss <= 200},
        {"case": f"{count} never-answering endpoints: failed naming the headers", "measured": f"{named}/{count}",
         "goal": f"{count}/{count}", "ok": ok},
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stuck_and_healthy(tmp: Path, each: int) -> list[dict]:
    with HostileHttp() as hostile:
        stuck = "".join(f"  - {{name: stuck-{i}, url: '{hostile.url(f'/trickle-headers?n={i}')}', timeout: 2s}}\n"
                        for i in range(each))
        healthy = "".join(f"  - {{name: healthy-{i}, url: '{hostile.url(f'/health?n={i}')}', timeout: 2s, "
                          f"expect: [\"status == 'healthy'\"]}}\n" for i in range(each))
        project = make_project(tmp / "stuck", f"name: stuck\nconcurrency: 10\nhttp:\n{stuck}{healthy}")
        took, _, report = _pytest(project)
    results = _results(report)
    first = min(r["started_at"] for r in results.values())
    good = [r for name, r in results.items() if name.startswith("healthy")]
    passed = sum(r["status"] == "pass" for r in good)
    worst = max(r["duration_s"] for r in good)
    latest = max(r["started_at"] + r["duration_s"] - first for r in good)
    return [
        {"case": f"{each} trickling + {each} healthy, concurrency 10: healthy passed", "measured": f"{passed}/{each}",
         "goal": f"{each}/{each}", "ok": passed == each},
        {"case": "worst healthy check's duration_s", "measured": f"{worst:.3f} s", "goal": "<= its timeout 2 s",
         "ok": passed == each and worst <= 2},
        {"case": "last healthy check done, from the run's first check", "measured": f"{latest:.2f} s (run {took:.1f} s)",
         "goal": "<= its timeout 2 s", "ok": passed == each and latest <= 2},
    ]


def run(quick: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        startup = _startup(tmp)
        rows = [{"case": "trivial pytest run (start-up reference)", "measured": f"{startup:.2f} s", "goal": "-", "ok": True}]
        rows += _never_answering(tmp, 200 if quick else 1000, startup)
        rows += _stuck_and_healthy(tmp, 5 if quick else 20)
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
