"""Benchmark: opsgate's HTTP checks against plain pytest, pytest-xdist and testinfra.

Part 1 - N HTTP checks (200; 20 with --quick) against loopback endpoints that each answer
after 100 ms, run four ways, each timed as a whole process (start to exit):

  A  opsgate            python -m pytest checks/daily --env ENV.yaml --no-report, in a temp project
                        whose checks/daily is empty (the cadence folder collects the configured checks)
  B  plain pytest       one parametrized test doing requests.get(url, timeout=5), serial
  C  pytest-xdist -n 8  the same file as B
  D  testinfra          host.run("curl ...") per URL, serial (skipped with --quick or without curl)

Part 2 - M endpoints (50; 10 with --quick) that accept the connection and never answer,
timeout 2 s: the opsgate whole process must exit 1 with every check failed on a read timeout.

Run from the repository root:  .venv/bin/python bench/bench_http.py [--quick] [--json FILE]

Nothing is written inside the repository: environment files, generated test files, bytecode
(PYTHONPYCACHEPREFIX) and reports (--no-report) all stay in a temporary directory that is
removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
SUBPROCESS_TIMEOUT = 120.0
DELAY_S = 0.100
XDIST_WORKERS = 8
OPSGATE_CONCURRENCY = 50


# --------------------------------------------------------------------------- servers

class _SlowHandler(BaseHTTPRequestHandler):
    """Every path: wait 100 ms, then 200 {"status": "healthy"} (HTTP/1.0, connection closed)."""

    body = json.dumps({"status": "healthy"}).encode()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        time.sleep(DELAY_S)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


class SlowServer:
    """ThreadingHTTPServer on 127.0.0.1:<ephemeral> in a daemon thread."""

    def __init__(self) -> None:
        self.httpd = _Server(("127.0.0.1", 0), _SlowHandler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/ep/{i}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class HangingServer:
    """A listening socket (backlog 512) whose accept thread holds every connection, never replying."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            self.held.append(conn)

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/hang/{i}"

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)
        for conn in self.held:
            conn.close()
        self.sock.close()


# --------------------------------------------------------------------------- generated inputs

def write_env(path: Path, name: str, prefix: str, urls: list[str], timeout: float) -> Path:
    lines = [f"name: {name}", f"concurrency: {OPSGATE_CONCURRENCY}", "http:"]
    for i, url in enumerate(urls):
        lines += [f"  - name: {prefix}-{i}",
                  f"    url: {url}",
                  "    expect: [\"status == 'healthy'\"]",
                  f"    timeout: {timeout:g}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_plain_test(path: Path, urls: list[str]) -> Path:
    path.write_text(
        "import pytest\n"
        "import requests\n\n"
        f"URLS = {urls!r}\n\n\n"
        "@pytest.mark.parametrize('url', URLS)\n"
        "def test_endpoint(url):\n"
        "    response = requests.get(url, timeout=5)\n"
        "    assert response.status_code == 200\n"
        "    assert response.json() == {'status': 'healthy'}\n"
    )
    return path


def write_testinfra_test(path: Path, urls: list[str]) -> Path:
    path.write_text(
        "import pytest\n\n"
        f"URLS = {urls!r}\n\n\n"
        "@pytest.mark.parametrize('url', URLS)\n"
        "def test_endpoint(host, url):\n"
        "    cmd = host.run(\"curl -s -o /dev/null -w '%{http_code}' --max-time 5 \" + url)\n"
        "    assert cmd.stdout.strip() == '200', (cmd.rc, cmd.stdout, cmd.stderr)\n"
    )
    return path


# --------------------------------------------------------------------------- running and timing

@dataclass
class Run:
    variant: str
    label: str
    argv: list[str] = field(default_factory=list)
    cwd: str = ""
    seconds: float | None = None  # median over --repeat runs
    all_seconds: list[float] = field(default_factory=list)
    returncode: int | None = None
    passed: int = 0
    failed: int = 0
    errors: int = 0
    status: str = "not run"  # ok | failed | skipped | timeout
    reason: str = ""
    read_timeouts: int = 0
    tail: str = ""


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPSGATE_", "PYTEST_")) and k not in ("PYTHONDONTWRITEBYTECODE",)}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")  # never write __pycache__ into the repo
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_COLOR"] = "1"
    return env


def _counts(output: str) -> dict[str, int]:
    """pytest's closing line: '200 passed in 1.23s', '3 failed, 197 passed in ...'."""
    last = ""
    for line in output.splitlines():
        if re.search(r"\b(passed|failed|error|errors|no tests ran|skipped|deselected)\b.* in [\d.]+s", line):
            last = line
    found = {k: 0 for k in ("passed", "failed", "errors")}
    for n, word in re.findall(r"(\d+) (passed|failed|errors?)\b", last):
        found["errors" if word.startswith("error") else word] += int(n)
    return found


def timed(run: Run, env: dict[str, str]) -> Run:
    """Run argv as a whole process in its own session; wall time from start to exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(run.argv, cwd=run.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and its xdist workers: our own process group
        out, _ = proc.communicate()
        run.seconds = time.perf_counter() - start
        run.status, run.reason = "timeout", f"killed after {SUBPROCESS_TIMEOUT:g}s"
        run.tail = "\n".join(out.splitlines()[-15:])
        return run
    run.seconds = time.perf_counter() - start
    run.returncode = proc.returncode
    c = _counts(out)
    run.passed, run.failed, run.errors = c["passed"], c["failed"], c["errors"]
    # distinct test ids on lines naming a read timeout (opsgate's summary block prints one per check;
    # pytest's own short summary is cut to the terminal width)
    run.read_timeouts = len({m.group(1) for line in out.splitlines() if "read timed out" in line
                             for m in [re.search(r"(test_\w+\[[^\]]+\])", line)] if m})
    run.tail = "\n".join(out.splitlines()[-15:])
    return run


def expect_all_pass(run: Run, n: int) -> bool:
    if run.status == "timeout":
        return False
    if run.returncode == 0 and run.passed == n and run.failed == 0 and run.errors == 0:
        run.status = "ok"
        return True
    run.status = "failed"
    run.reason = (f"exit {run.returncode}, {run.passed} passed, {run.failed} failed, {run.errors} errors "
                  f"(expected exit 0 and {n} passed)")
    return False


def expect_all_read_timeouts(run: Run, n: int) -> bool:
    if run.status == "timeout":
        return False
    if run.returncode == 1 and run.failed == n and run.passed == 0 and run.read_timeouts == n:
        run.status = "ok"
        return True
    run.status = "failed"
    run.reason = (f"exit {run.returncode}, {run.failed} failed, {run.passed} passed, "
                  f"{run.read_timeouts} read-timeout messages (expected exit 1 and {n} of each)")
    return False


def measure(run: Run, env: dict[str, str], repeat: int, check) -> Run:
    """Time the run `repeat` times; report the median. Any failing repetition fails the variant."""
    for _ in range(repeat):
        timed(run, env)
        run.all_seconds.append(round(run.seconds, 3))
        if not check(run):
            return run  # keep the failing repetition's figures and output
    run.seconds = statistics.median(run.all_seconds)
    return run


# --------------------------------------------------------------------------- variants

# Every variant runs in this venv, which also holds the project's own test extras. None of
# them uses hypothesis, whose pytest plugin imports all of hypothesis at the terminal summary
# (~0.2 s per process): it is switched off for every variant alike.
COMMON_FLAGS = ["-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"]


def opsgate_argv(env_file: Path) -> list[str]:
    """Run in ``env_file``'s folder (see :func:`opsgate_project`), as bench_scale.py does."""
    return [PY, "-m", "pytest", "checks/daily", "--env", str(env_file), "--no-report", *COMMON_FLAGS]


def opsgate_project(work: Path) -> str:
    """``work`` as an opsgate project: its own pytest.ini (the repository's configuration does
    not apply) and an empty ``checks/daily``, which collects the configured checks itself."""
    (work / "checks" / "daily").mkdir(parents=True, exist_ok=True)
    if not (work / "pytest.ini").exists():
        (work / "pytest.ini").write_text("[pytest]\n")
    return str(work)


def plain_argv(test_file: Path, tmp: Path, extra: list[str] = ()) -> list[str]:
    # rootdir and an empty ini in the temp dir: the repository's pyproject/conftest do not apply;
    # no --env and no checks/<cadence> path, so the (installed) opsgate plugin stays inert.
    return [PY, "-m", "pytest", str(test_file), *COMMON_FLAGS,
            "--rootdir", str(tmp), "-c", str(tmp / "pytest.ini"), *extra]


def part1(server: SlowServer, n: int, tmp: Path, env: dict[str, str], with_testinfra: bool, repeat: int) -> list[Run]:
    urls = [server.url(i) for i in range(n)]
    work = tmp / "part1"
    work.mkdir()
    (work / "pytest.ini").write_text("[pytest]\n")
    env_file = write_env(work / "bench-env.yaml", "bench-http", "ep", urls, 5)
    plain = write_plain_test(work / "test_plain_http.py", urls)
    infra = write_testinfra_test(work / "test_testinfra_http.py", urls)

    runs = [
        Run("A", "opsgate", opsgate_argv(env_file), opsgate_project(work)),
        Run("B", "plain pytest, serial", plain_argv(plain, work), str(work)),
        Run("C", f"pytest-xdist -n {XDIST_WORKERS}", plain_argv(plain, work, ["-n", str(XDIST_WORKERS)]), str(work)),
        Run("D", "testinfra host.run(curl), serial", plain_argv(infra, work), str(work)),
    ]
    curl = shutil.which("curl")
    for run in runs:
        if run.variant == "D" and not with_testinfra:
            run.status, run.reason = "skipped", "--quick"
            continue
        if run.variant == "D" and curl is None:
            run.status, run.reason = "skipped", "curl not found on PATH"
            continue
        print(f"  running {run.variant} {run.label} ...", flush=True)
        measure(run, env, repeat, lambda r: expect_all_pass(r, n))
    return runs


def part2(n: int, tmp: Path, env: dict[str, str], repeat: int) -> Run:
    hanging = HangingServer()
    try:
        work = tmp / "part2"
        work.mkdir()
        env_file = write_env(work / "bench-hang.yaml", "bench-hang", "hang", [hanging.url(i) for i in range(n)], 2)
        run = Run("E", "opsgate, hanging endpoints", opsgate_argv(env_file), opsgate_project(work))
        print(f"  running opsgate against {n} hanging endpoints ...", flush=True)
        return measure(run, env, repeat, lambda r: expect_all_read_timeouts(r, n))
    finally:
        hanging.close()


def warm_up(server: SlowServer, tmp: Path, env: dict[str, str]) -> None:
    """Untimed: each variant once over 2 endpoints, so bytecode (in the temp prefix) and file caches are warm."""
    work = tmp / "warmup"
    work.mkdir()
    (work / "pytest.ini").write_text("[pytest]\n")
    urls = [server.url(i) for i in range(2)]
    env_file = write_env(work / "warm.yaml", "warm", "ep", urls, 5)
    plain = write_plain_test(work / "test_warm_plain.py", urls)
    infra = write_testinfra_test(work / "test_warm_infra.py", urls)
    for argv, cwd in ((opsgate_argv(env_file), opsgate_project(work)), (plain_argv(plain, work, ["-n", "2"]), work),
                      (plain_argv(infra, work), work)):
        try:
            subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=SUBPROCESS_TIMEOUT, start_new_session=True)
        except subprocess.TimeoutExpired:
            pass


# --------------------------------------------------------------------------- report

def _fmt(run: Run, ref: Run | None) -> str:
    if run.status == "skipped":
        return f"skipped ({run.reason})"
    if run.status != "ok":
        return f"FAILED ({run.status}: {run.reason})"
    text = f"{run.seconds:6.2f} s"
    if ref is not None and ref.status == "ok" and run is not ref:
        text += f" = {run.seconds / ref.seconds:5.1f}x opsgate"
    if len(run.all_seconds) > 1:
        text += "   (runs: " + ", ".join(f"{t:.2f}" for t in run.all_seconds) + ")"
    return text


def _mark(ok: bool | None) -> str:
    return "n/a " if ok is None else ("MET " if ok else "MISS")


def report(runs: list[Run], hang: Run, n: int, m: int, quick: bool, repeat: int) -> dict:
    by = {r.variant: r for r in runs}
    a, b, c = by["A"], by["B"], by["C"]
    print()
    print(f"Part 1: {n} HTTP checks, each endpoint answers after {DELAY_S * 1000:.0f} ms "
          f"(serial floor {n * DELAY_S:.1f} s; opsgate concurrency {OPSGATE_CONCURRENCY} -> floor "
          f"{-(-n // OPSGATE_CONCURRENCY) * DELAY_S:.1f} s)")
    print(f"  {'variant':<38} {'whole process':<40}")
    for r in runs:
        print(f"  {r.variant} {r.label:<36} {_fmt(r, a)}")
    ok = lambda r: r.status == "ok"  # noqa: E731
    g_abs = (a.seconds <= 2.0) if ok(a) else False
    g_serial = (b.seconds / a.seconds >= 10.0) if ok(a) and ok(b) else None
    g_xdist = (a.seconds < c.seconds) if ok(a) and ok(c) else None
    if not ok(a):
        g_serial = g_xdist = False
    print()
    print("  goals" + (" (defined for 200 checks; --quick is a smoke run, only indicative)" if quick else "") + ":")
    print(f"    [{_mark(g_abs)}] opsgate whole process <= 2 s" + (f"   ({a.seconds:.2f} s)" if ok(a) else ""))
    print(f"    [{_mark(g_serial)}] opsgate >= 10x faster than plain serial pytest"
          + (f"   ({b.seconds / a.seconds:.1f}x)" if ok(a) and ok(b) else ""))
    print(f"    [{_mark(g_xdist)}] opsgate faster than pytest-xdist -n {XDIST_WORKERS}"
          + (f"   ({a.seconds:.2f} s vs {c.seconds:.2f} s)" if ok(a) and ok(c) else ""))

    print()
    print(f"Part 2: {m} endpoints that accept and never answer, timeout 2 s")
    g_hang = hang.status == "ok" and hang.seconds <= 5.0
    if hang.status == "ok":
        print(f"  opsgate whole process {hang.seconds:6.2f} s, exit {hang.returncode}, "
              f"{hang.failed}/{m} failed with 'read timed out'"
              + (("   (runs: " + ", ".join(f"{t:.2f}" for t in hang.all_seconds) + ")") if len(hang.all_seconds) > 1 else ""))
    else:
        print(f"  opsgate {_fmt(hang, None)}" + (f" after {hang.seconds:.2f} s" if hang.seconds else ""))
    print(f"    [{_mark(g_hang)}] exit 1, all {m} failed on a read timeout, whole run <= 5 s")

    for r in [*runs, hang]:
        if r.status in ("failed", "timeout") and r.tail:
            print(f"\n--- output tail of {r.variant} {r.label} ---\n{r.tail}")

    return {
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_end": os.getloadavg()},
        "quick": quick,
        "repeat": repeat,
        "part1": {"checks": n, "delay_ms": DELAY_S * 1000,
                  "variants": [{k: v for k, v in asdict(r).items() if k not in ("tail", "argv", "cwd")}
                               | {"ratio_vs_opsgate": (r.seconds / a.seconds) if ok(r) and ok(a) else None}
                               for r in runs],
                  "goals": {"opsgate_le_2s": g_abs, "ge_10x_serial": g_serial, "faster_than_xdist": g_xdist}},
        "part2": {"endpoints": m, "timeout_s": 2,
                  "run": {k: v for k, v in asdict(hang).items() if k not in ("tail", "argv", "cwd")},
                  "goals": {"exit1_all_read_timeout_le_5s": g_hang}},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 endpoints and 10 hanging; skip testinfra")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run every variant N times and report the median (default 1)")
    args = parser.parse_args()
    n, m = (20, 10) if args.quick else (200, 50)

    print(f"opsgate HTTP benchmark{' (--quick)' if args.quick else ''}")
    print(f"nproc {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), Python {platform.python_version()} "
          f"({PY}), {platform.system()} {platform.release()}")
    print("load average %.2f %.2f %.2f (other work on the machine skews wall times)" % os.getloadavg()
          + (f"; median of {args.repeat} runs per variant" if args.repeat > 1 else ""))

    tmp = Path(tempfile.mkdtemp(prefix="opsgate-bench-"))
    server = SlowServer()
    try:
        env = base_env(tmp)
        print("warm-up (untimed) ...", flush=True)
        warm_up(server, tmp, env)
        print(f"Part 1 ({n} endpoints on 127.0.0.1:{server.port}):", flush=True)
        runs = part1(server, n, tmp, env, with_testinfra=not args.quick, repeat=max(1, args.repeat))
        print(f"Part 2 ({m} hanging endpoints):", flush=True)
        hang = part2(m, tmp, env, repeat=max(1, args.repeat))
        figures = report(runs, hang, n, m, args.quick, max(1, args.repeat))
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"\nfigures written to {args.json}")
    failed = [r for r in [*runs, hang] if r.status in ("failed", "timeout")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
