"""Benchmark (issue 9): opsgate's start-up cost, its cost per check at scale, and the
200-checks-at-100-ms case, each side by side with plain pytest in one run.

1. Start-up: a trivial pytest run (one passing test in a temp dir with its own pytest.ini),
   best of 5, with opsgate installed and with ``-p no:opsgate``, interleaved. Goal: the
   difference <= 20 ms. Beside it, ``python -X importtime`` of that trivial run and of an
   opsgate run of 10 checks: opsgate's modules (cumulative) and what they first import.
2. Scale: N configured ``http`` checks (5,000; 500 with --quick) against a local nginx
   answering at once, ``concurrency: 100``, run as
   ``python -m pytest checks/daily --env env.yaml --no-report`` in a temp project. Goals:
   whole process <= 5 s; peak memory per check <= 10 KB, i.e. (peak RSS at N - peak RSS at
   10 checks) / (N - 10), peak RSS being the child's own (``/usr/bin/time -v``, else its
   VmHWM polled from /proc). Beside it, plain serial pytest doing the same requests with
   ``requests`` (one parametrized test): CPU (user+sys, ``os.wait4``) per check of both,
   as the difference to their 10-check runs.
3. bench_http's case: 200 checks whose endpoint answers after 100 ms (a loopback
   ThreadingHTTPServer), ``concurrency: 200``, against (a trivial pytest run + 0.1 s)
   measured in the same run, best of 3 each. Goal: ratio <= 1.2. For reference the same at
   bench_http's ``concurrency: 50``, whose floor is trivial + 0.4 s.

    .venv/bin/python bench/bench_scale.py               # full (~2-3 min on 2 cores)
    .venv/bin/python bench/bench_scale.py --quick       # 500 checks in part 2 (~30 s)
    .venv/bin/python bench/bench_scale.py --json out.json --repeat 3
    .venv/bin/python bench/bench_scale.py --profile out.pstats   # + where the CPU goes

``--profile FILE`` also runs the N-check opsgate process once under cProfile, with a
per-thread CPU clock in every thread (the engine's probe threads included), writes the
merged stats to FILE and prints the top functions and the CPU per check by component.

``--baseline REV`` runs only parts 1 and 3, for opsgate as committed at REV (its src exported
to the temp dir) and as measured (this tree, or ``--commit``), interleaved over 5 rounds
(``BENCH_COMPARE_ROUNDS``), and prints them side by side: wall best and smallest CPU of the
trivial run (installed, and once with -p no:opsgate) and of the 200 x 100 ms run, each
source's goals, and its imports in a 10-check run::

    .venv/bin/python bench/bench_scale.py --baseline 2c5e2f6   # before/after in one run (~1 min)

Nothing is written in the repository: projects, bytecode (PYTHONPYCACHEPREFIX), nginx's
prefix and logs stay in a temp dir removed at the end. Every subprocess has a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import SlowServer, _counts, base_env  # noqa: E402  (the 100 ms server and the env, shared)

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
TIMEOUT_S = 300.0  # any one process; killed (its whole session) past it
COMMON_FLAGS = ["-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"]  # as in bench_http.py
SMALL_N = 10
CONCURRENCY = 100
STARTUP_ROUNDS = 5
SLOW_ROUNDS = 3
TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None

GOAL_STARTUP_MS = 20.0
GOAL_SCALE_S = 5.0
GOAL_KB_PER_CHECK = 10.0
GOAL_SLOW_RATIO = 1.2


# --------------------------------------------------------------------------- running one process

@dataclass
class Proc:
    label: str
    seconds: float | None = None
    cpu_s: float | None = None  # user + sys of the process (and its children), from os.wait4
    peak_kb: int | None = None  # the pytest process's own peak RSS
    returncode: int | None = None
    passed: int = 0
    failed: int = 0
    errors: int = 0
    ok: bool = False
    reason: str = ""
    tail: str = field(default="", repr=False)


def run(label: str, argv: list[str], cwd: Path, env: dict[str, str], expect_passed: int,
        memory: bool = False, tmp: Path | None = None, timeout: float = TIMEOUT_S) -> Proc:
    """Run ``argv`` as a whole process in its own session; wall time start to exit, CPU from
    ``os.wait4``, and with ``memory`` its own peak RSS. ok = exit 0 and ``expect_passed`` passed."""
    out = Proc(label)
    time_file = None
    if memory and TIME_BIN:
        # GNU time forks and execs the command: its "maximum resident set size" is pytest's own
        # (time's few MB are all the child can inherit), unlike our children's ru_maxrss
        time_file = Path(tempfile.mkstemp(prefix="time-", dir=tmp)[1])
        argv = [TIME_BIN, "-v", "-o", str(time_file), *argv]
    chunks: list[str] = []
    done = threading.Event()
    status: dict = {}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)

    def reap() -> None:  # a blocking wait4 here, so the wall time is not rounded to a poll
        _, st, usage = os.wait4(proc.pid, 0)
        status.update(end=time.perf_counter(), st=st, usage=usage)
        done.set()

    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    threading.Thread(target=reap, daemon=True).start()
    hwm = 0
    deadline = start + timeout
    while not done.wait(0.01 if memory and not TIME_BIN else 0.2):
        if memory and not TIME_BIN:
            hwm = max(hwm, _vm_hwm_kb(proc.pid))
        if time.perf_counter() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)  # our child's own session: it and anything it started
            done.wait(10)
            out.reason = f"killed after {timeout:g} s"
            break
    reader.join(10)
    text = "".join(chunks)
    out.tail = "\n".join(text.splitlines()[-15:])
    if "st" not in status:
        return out
    proc.returncode = os.waitstatus_to_exitcode(status["st"])  # reaped here, not by Popen
    out.seconds = status["end"] - start
    out.cpu_s = status["usage"].ru_utime + status["usage"].ru_stime
    out.returncode = proc.returncode
    if time_file is not None:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_file.read_text())
        out.peak_kb = int(m.group(1)) if m else None
        time_file.unlink()
    elif memory:
        out.peak_kb = hwm or None
    counts = _counts(text)
    out.passed, out.failed, out.errors = counts["passed"], counts["failed"], counts["errors"]
    out.ok = out.returncode == 0 and out.passed == expect_passed and not out.failed and not out.errors
    if not out.ok and not out.reason:
        out.reason = (f"exit {out.returncode}, {out.passed} passed, {out.failed} failed, {out.errors} errors "
                      f"(expected exit 0 and {expect_passed} passed)")
    return out


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def best(procs: list[Proc]) -> Proc | None:
    good = [p for p in procs if p.ok]
    return min(good, key=lambda p: p.seconds) if len(good) == len(procs) and good else None


# --------------------------------------------------------------------------- targets

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
{extra}  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ default_type application/json; return 200 '{{"status": "healthy"}}'; }}
  }}
}}
"""
# temp paths of modules a build may lack; nginx would otherwise create them under /var/lib/nginx
NGINX_OPTIONAL = ("proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path")

PY_SERVER = """\
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"status": "healthy"}'
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
class S(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class FastTarget:
    """nginx answering every path at once with 200 {"status": "healthy"}, in its own prefix
    in a temp dir on a free port (never a system nginx); a Python ThreadingHTTPServer in a
    separate process if nginx is missing or does not start (``note`` says so)."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "target"
        self.dir.mkdir()
        self.proc: subprocess.Popen | None = None
        self.kind, self.note = "nginx", ""
        nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
        if nginx is None:
            self.note = "nginx not found: a Python ThreadingHTTPServer answers instead (itself CPU-bound)"
        else:
            try:
                self._start_nginx(nginx)
                return
            except RuntimeError as exc:
                self.stop()
                self.note = f"nginx did not start ({exc}): a Python ThreadingHTTPServer answers instead"
        self.kind = "python"
        self._start([PY, "-c", PY_SERVER, str(self._port())])

    def _port(self) -> int:
        self.port = free_port()
        return self.port

    def _start_nginx(self, nginx: str) -> None:
        prefix = self.dir
        conf = prefix / "nginx.conf"
        extra = "".join(f"  {d} {prefix}/{d.split('_')[0]};\n" for d in NGINX_OPTIONAL)
        for attempt in (extra, ""):  # a build without some modules rejects their directives
            conf.write_text(NGINX_CONF.format(prefix=prefix, port=self._port(), extra=attempt))
            check = subprocess.run([nginx, "-t", "-q", "-e", str(prefix / "error.log"), "-p", str(prefix),
                                    "-c", str(conf)], capture_output=True, text=True, timeout=30)
            if check.returncode == 0:
                break
        else:
            raise RuntimeError(check.stderr.strip().splitlines()[-1] if check.stderr.strip() else "nginx -t failed")
        self._start([nginx, "-e", str(prefix / "error.log"), "-p", str(prefix), "-c", str(conf)])

    def _start(self, argv: list[str]) -> None:
        log = open(self.dir / "server.out", "w")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited {self.proc.returncode}: {(self.dir / 'server.out').read_text()[-300:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("not listening after 10 s")

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/ep/{i}"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the master and its workers
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


# --------------------------------------------------------------------------- generated projects

def opsgate_project(root: Path, name: str, urls: list[str], concurrency: int, timeout: float = 5) -> Path:
    """``proj/checks/daily`` (empty: the cadence folder collects the configured checks itself),
    ``proj/pytest.ini`` and ``proj/env.yaml`` with one ``http`` check per url."""
    project = root / name
    (project / "checks" / "daily").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    lines = [f"name: {name}", f"concurrency: {concurrency}", "http:"]
    for i, url in enumerate(urls):
        lines += [f"  - name: ep-{i}", f"    url: {url}", "    expect: [\"status == 'healthy'\"]",
                  f"    timeout: {timeout:g}"]
    (project / "env.yaml").write_text("\n".join(lines) + "\n")
    return project


def opsgate_argv(*extra: str) -> list[str]:
    return [PY, "-m", "pytest", "checks/daily", "--env", "env.yaml", "--no-report", *COMMON_FLAGS, *extra]


def plain_project(root: Path, name: str, urls: list[str]) -> Path:
    project = root / name
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_plain.py").write_text(
        "import pytest\nimport requests\n\n"
        f"URLS = {urls!r}\n\n\n"
        "@pytest.mark.parametrize('url', URLS)\n"
        "def test_endpoint(url):\n"
        "    response = requests.get(url, timeout=5)\n"
        "    assert response.status_code == 200\n"
        "    assert response.json() == {'status': 'healthy'}\n")
    return project


def plain_argv(project: Path, *extra: str) -> list[str]:
    # its own rootdir and ini: the repository's configuration does not apply; opsgate stays
    # installed but inert (no --env, no checks/<cadence> folder)
    return [PY, "-m", "pytest", str(project / "test_plain.py"), *COMMON_FLAGS,
            "--rootdir", str(project), "-c", str(project / "pytest.ini"), *extra]


def floor_project(root: Path, name: str, n: int, wait_s: float = 0.0) -> Path:
    """pytest alone, as cheap as a check can be: ``n`` parametrized tests that do nothing (after
    one shared wait of ``wait_s``, a session fixture): what any design that makes every check a
    pytest test item pays before doing anything."""
    project = root / name
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_floor.py").write_text(
        "import time\n\nimport pytest\n\n\n"
        "@pytest.fixture(scope='session')\ndef waited():\n"
        f"    time.sleep({wait_s!r})\n\n\n"
        f"@pytest.mark.parametrize('i', range({n}))\n"
        "def test_nothing(i, waited):\n    pass\n")
    return project


def floor_argv(project: Path, *extra: str) -> list[str]:
    return [PY, "-m", "pytest", "test_floor.py", *COMMON_FLAGS, "--rootdir", str(project),
            "-c", str(project / "pytest.ini"), "-p", "no:opsgate", *extra]


def trivial_project(root: Path) -> Path:
    project = root / "trivial"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_one.py").write_text("def test_one():\n    pass\n")
    return project


def trivial_argv(project: Path, *extra: str) -> list[str]:
    return [PY, "-m", "pytest", "test_one.py", *COMMON_FLAGS, "--rootdir", str(project),
            "-c", str(project / "pytest.ini"), *extra]


# --------------------------------------------------------------------------- part 1: start-up

def importtime(argv: list[str], cwd: Path, env: dict[str, str]) -> dict:
    """``-X importtime`` of a real pytest process, best of 3 (by opsgate's cumulative time):
    opsgate's modules, and the other modules they are the first to import."""
    best_rows: list[tuple[int, int, int, str]] | None = None
    best_total = None
    for _ in range(3):
        proc = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        rows = []
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if m:
                rows.append((int(m.group(1)), int(m.group(2)), len(m.group(3)), m.group(4)))
        parent = _parents(rows)
        total = sum(cum for i, (_, cum, _, name) in enumerate(rows)
                    if _ours(name) and (parent[i] is None or not _ours(rows[parent[i]][3])))
        if best_total is None or total < best_total:
            best_rows, best_total = rows, total
    rows, parent = best_rows or [], _parents(best_rows or [])
    mine = [(cum, name) for _, cum, _, name in rows if _ours(name)]
    pulled = [(cum, name) for i, (_, cum, _, name) in enumerate(rows)
              if not _ours(name) and parent[i] is not None and _ours(rows[parent[i]][3])]
    return {"opsgate_cumulative_ms": (best_total or 0) / 1000,
            "opsgate_self_ms": sum(s for s, _, _, name in rows if _ours(name)) / 1000,
            "opsgate_modules": [(name, cum / 1000) for cum, name in sorted(mine, reverse=True)[:8]],
            "pulled_in": [(name, cum / 1000) for cum, name in sorted(pulled, reverse=True)[:8]]}


def _ours(module: str) -> bool:
    return module.split(".")[0] == "opsgate"


def _parents(rows: list[tuple[int, int, int, str]]) -> dict[int, int | None]:
    """importtime prints a module after the modules it imports, one level deeper: a module's
    parent is the next line printed with a smaller indent."""
    parent: dict[int, int | None] = {}
    stack: list[int] = []
    for i in range(len(rows) - 1, -1, -1):
        while stack and rows[stack[-1]][2] >= rows[i][2]:
            stack.pop()
        parent[i] = stack[-1] if stack else None
        stack.append(i)
    return parent


def part_startup(tmp: Path, env: dict[str, str], target: "FastTarget") -> dict:
    project = trivial_project(tmp)
    with_og, without = [], []
    for _ in range(STARTUP_ROUNDS):  # interleaved: the machine's load hits both alike
        with_og.append(run("trivial, opsgate installed", trivial_argv(project), project, env, 1))
        without.append(run("trivial, -p no:opsgate", trivial_argv(project, "-p", "no:opsgate"), project, env, 1))
    b_with, b_without = best(with_og), best(without)
    small = opsgate_project(tmp, "imports", [target.url(i) for i in range(SMALL_N)], CONCURRENCY)
    diff_ms = (b_with.seconds - b_without.seconds) * 1000 if b_with and b_without else None
    return {"with": with_og, "without": without, "best_with": b_with, "best_without": b_without,
            "diff_ms": diff_ms,
            # what every pytest run imports of opsgate, and what an opsgate run imports
            "imports_trivial": importtime(trivial_argv(project), project, env),
            "imports_run": importtime(opsgate_argv(), small, env)}


# --------------------------------------------------------------------------- part 2: scale

def part_scale(tmp: Path, env: dict[str, str], n: int, repeat: int, target: FastTarget) -> dict:
    urls = [target.url(i) for i in range(n)]
    og_small = opsgate_project(tmp, "scale-small", urls[:SMALL_N], CONCURRENCY)
    og_big = opsgate_project(tmp, "scale-big", urls, CONCURRENCY)
    pl_small = plain_project(tmp, "plain-small", urls[:SMALL_N])
    pl_big = plain_project(tmp, "plain-big", urls)
    floor = floor_project(tmp, "floor-big", n)
    report_file = str(tmp / "floor-report.json")
    r: dict[str, list[Proc]] = {"og_small": [], "og_big": [], "pl_small": [], "pl_big": [], "fl_big": []}
    for i in range(repeat):
        print(f"  round {i + 1}/{repeat}: opsgate {SMALL_N} and {n}, plain pytest {SMALL_N} and {n}, "
              f"the floor ...", flush=True)
        r["og_small"].append(run(f"opsgate, {SMALL_N} checks", opsgate_argv(), og_small, env, SMALL_N, True, tmp))
        r["og_big"].append(run(f"opsgate, {n} checks", opsgate_argv(), og_big, env, n, True, tmp))
        r["pl_small"].append(run(f"plain pytest, {SMALL_N}", plain_argv(pl_small), pl_small, env, SMALL_N, True, tmp))
        r["pl_big"].append(run(f"plain pytest, {n}", plain_argv(pl_big), pl_big, env, n, True, tmp))
        r["fl_big"].append(run(f"floor: {n} empty + json", floor_argv(floor, "--json-report",
                                                                     f"--json-report-file={report_file}"),
                               floor, env, n, True, tmp))
    out: dict = {"n": n, "runs": r}
    for key, procs in r.items():
        good = [p for p in procs if p.ok]
        out[key] = best(procs)
        # peak memory and CPU: the smallest over the repetitions (least disturbed by the machine)
        out[key + "_peak_kb"] = min((p.peak_kb for p in good if p.peak_kb), default=None) if out[key] else None
        out[key + "_cpu_s"] = min((p.cpu_s for p in good), default=None) if out[key] else None
    span = n - SMALL_N
    for who in ("og", "pl"):
        big_kb, small_kb = out[f"{who}_big_peak_kb"], out[f"{who}_small_peak_kb"]
        out[f"{who}_kb_per_check"] = (big_kb - small_kb) / span if big_kb and small_kb else None
        big_cpu, small_cpu = out[f"{who}_big_cpu_s"], out[f"{who}_small_cpu_s"]
        out[f"{who}_cpu_ms_per_check"] = (big_cpu - small_cpu) / span * 1000 if big_cpu is not None and small_cpu is not None else None
    return out


# --------------------------------------------------------------------------- part 3: bench_http's case

def part_slow(tmp: Path, env: dict[str, str]) -> dict:
    server = SlowServer()
    try:
        urls = [server.url(i) for i in range(200)]
        trivial = tmp / "trivial"
        c200 = opsgate_project(tmp, "slow-c200", urls, 200)
        c50 = opsgate_project(tmp, "slow-c50", urls, 50)
        floor = floor_project(tmp, "floor-slow", 200, wait_s=0.1)
        r: dict[str, list[Proc]] = {"trivial": [], "floor": [], "c200": [], "c50": []}
        for _ in range(SLOW_ROUNDS):
            r["trivial"].append(run("trivial pytest", trivial_argv(trivial), trivial, env, 1))
            r["floor"].append(run("floor: 200 empty tests, one 100 ms wait", floor_argv(floor), floor, env, 200))
            r["c200"].append(run("opsgate 200 x 100 ms, concurrency 200", opsgate_argv(), c200, env, 200))
            r["c50"].append(run("opsgate 200 x 100 ms, concurrency 50", opsgate_argv(), c50, env, 200))
    finally:
        server.close()
    out = {"runs": r, **{k: best(v) for k, v in r.items()}}
    t = out["trivial"]
    out["ratio_c200"] = out["c200"].seconds / (t.seconds + 0.1) if t and out["c200"] else None
    out["ratio_c50"] = out["c50"].seconds / (t.seconds + 0.4) if t and out["c50"] else None
    out["ratio_floor"] = out["floor"].seconds / (t.seconds + 0.1) if t and out["floor"] else None
    return out


# --------------------------------------------------------------------------- --baseline: before and after

COMPARE_ROUNDS = int(os.environ.get("BENCH_COMPARE_ROUNDS", 5))


def part_compare(tmp: Path, envs: dict[str, dict[str, str]], target: FastTarget) -> dict:
    """Start-up (part 1) and the 200 x 100 ms case (part 3) for two sources of opsgate (label ->
    env whose PYTHONPATH selects it), interleaved round by round, so the machine's load hits
    both alike: per source, a trivial run with opsgate installed and the 200-check run; once
    per round, the trivial run with -p no:opsgate (which loads no opsgate at all)."""
    server = SlowServer()
    try:
        (tmp / "compare").mkdir()
        trivial = trivial_project(tmp / "compare")
        c200 = opsgate_project(tmp / "compare", "slow-c200", [server.url(i) for i in range(200)], 200)
        small = opsgate_project(tmp / "compare", "small", [target.url(i) for i in range(SMALL_N)], CONCURRENCY)
        for env in envs.values():  # bytecode of each source into the temp prefix, untimed
            run("warm", trivial_argv(trivial), trivial, env, 1)
            run("warm", opsgate_argv(), c200, env, 200)
        first = next(iter(envs.values()))
        r: dict = {"without": [], **{label: {"trivial": [], "c200": []} for label in envs}}
        for i in range(COMPARE_ROUNDS):
            print(f"  round {i + 1}/{COMPARE_ROUNDS} ...", flush=True)
            r["without"].append(run("trivial, -p no:opsgate", trivial_argv(trivial, "-p", "no:opsgate"), trivial,
                                    first, 1))
            for label, env in envs.items():
                r[label]["trivial"].append(run("trivial, opsgate installed", trivial_argv(trivial), trivial, env, 1))
                r[label]["c200"].append(run("opsgate 200 x 100 ms, concurrency 200", opsgate_argv(), c200, env, 200))
        imports = {label: importtime(opsgate_argv(), small, env) for label, env in envs.items()}
    finally:
        server.close()
    return {"runs": r, "imports": imports}


def report_compare(cmp: dict, labels: dict[str, str]) -> list[dict]:
    """Side by side: best of COMPARE_ROUNDS wall (and the smallest CPU) per source, and the goals."""
    r, rows = cmp["runs"], []
    without = best(r["without"])
    width = 34
    print(f"\nBefore and after, best of {COMPARE_ROUNDS} (interleaved; CPU = user+sys, the smallest)")
    print(f"   {'':44}" + "".join(f"{labels[k][:width]:<{width + 2}}" for k in labels))

    def cpu(procs: list[Proc]) -> float | None:
        return min((p.cpu_s for p in procs if p.ok), default=None)

    def line(name: str, cell) -> None:
        print(f"   {name:<44}" + "".join(f"{cell(k):<{width + 2}}" for k in labels))

    print(f"   {'trivial, -p no:opsgate (no opsgate at all)':<44}{_s(without)}   CPU {cpu(r['without']) or 0:.3f} s")
    line("trivial, opsgate installed", lambda k: f"{_s(best(r[k]['trivial']))}   CPU {cpu(r[k]['trivial']) or 0:.3f} s")
    line("200 x 100 ms, concurrency 200", lambda k: f"{_s(best(r[k]['c200']))}   CPU {cpu(r[k]['c200']) or 0:.3f} s")
    for k, label in labels.items():
        print(f"     runs, {label}: " + ", ".join(f"{p.seconds:.2f}" if p.ok else "FAILED" for p in r[k]["c200"]))
    line("opsgate's imports in a 10-check run", lambda k: f"{cmp['imports'][k]['opsgate_cumulative_ms']:.0f} ms "
         "cumulative (-X importtime)")
    print()
    for k, label in labels.items():
        t, c200 = best(r[k]["trivial"]), best(r[k]["c200"])
        startup = (t.seconds - without.seconds) * 1000 if t and without else None
        ratio = c200.seconds / (t.seconds + 0.1) if t and c200 else None
        rows.append({"source": label, "startup_diff_ms": startup, "ratio_c200": ratio,
                     "c200_s": c200.seconds if c200 else None, "trivial_s": t.seconds if t else None,
                     "c200_cpu_s": cpu(r[k]["c200"]), "trivial_cpu_s": cpu(r[k]["trivial"]),
                     "without_s": without.seconds if without else None,
                     "imports_ms": cmp["imports"][k]["opsgate_cumulative_ms"]})
        print(f"   {label}:")
        print(f"     [{_mark(startup is not None and startup <= GOAL_STARTUP_MS)}] start-up, installed minus "
              f"-p no:opsgate: " + (f"{startup:+.0f} ms" if startup is not None else "FAILED") + f"  (goal <= {GOAL_STARTUP_MS:g} ms)")
        print(f"     [{_mark(ratio is not None and ratio <= GOAL_SLOW_RATIO)}] 200 x 100 ms / (trivial + 0.1 s): "
              + (f"{ratio:.2f}x ({c200.seconds:.2f} s vs {t.seconds + 0.1:.2f} s)" if ratio else "FAILED")
              + f"  (goal <= {GOAL_SLOW_RATIO:g}x)")
    failures = [p for procs in (r["without"], *(x for k in labels for x in r[k].values())) for p in procs if not p.ok]
    for p in failures[:3]:
        print(f"\n--- {p.label}: {p.reason} ---\n{p.tail}")
    return rows


# --------------------------------------------------------------------------- profile

PROFILE_RUNNER = """\
import cProfile, pstats, sys, threading, time
profiles = []
_run = threading.Thread.run
def run(self):
    p = cProfile.Profile(time.thread_time)  # this thread's CPU, so waiting threads cost nothing
    profiles.append(p)
    p.enable()
    try:
        _run(self)
    finally:
        p.disable()
threading.Thread.run = run
main = cProfile.Profile(time.thread_time)
main.enable()
import pytest
code = pytest.main(sys.argv[2:])
main.disable()
class Done:  # a thread's finished calls only: its profiler is not disabled from here,
    def __init__(self, p):  # which would end its pending calls (a worker blocked on its
        p.snapshot_stats()  # queue) on this thread's clock
        self.stats = p.stats
    def create_stats(self):
        pass
stats = pstats.Stats(main)
for p in profiles:
    stats.add(Done(p))
stats.dump_stats(sys.argv[1])
sys.exit(int(code))
"""

COMPONENTS = (  # (label, test on the file path) - the first that matches counts
    ("opsgate", lambda f: "/opsgate/" in f),
    ("pytest-json-report", lambda f: "pytest_jsonreport" in f),
    ("pytest capture", lambda f: f.endswith("_pytest/capture.py")),
    ("pytest (other)", lambda f: "/_pytest/" in f or f.endswith("/pytest/__init__.py")),
    ("pluggy", lambda f: "/pluggy/" in f),
    ("requests/urllib3", lambda f: "/requests/" in f or "/urllib3/" in f or "/idna/" in f or "/charset_normalizer/" in f),
    ("pydantic", lambda f: "/pydantic" in f),
    ("yaml", lambda f: "/yaml/" in f),
    ("jmespath", lambda f: "/jmespath/" in f),
    ("stdlib / builtins", lambda f: True),
)


def profile(tmp: Path, env: dict[str, str], n: int, target: FastTarget, out_file: Path) -> dict:
    project = tmp / "scale-big"
    if not project.exists():
        opsgate_project(tmp, "scale-big", [target.url(i) for i in range(n)], CONCURRENCY)
    runner = tmp / "profile_runner.py"
    runner.write_text(PROFILE_RUNNER)
    argv = [PY, str(runner), str(out_file), *opsgate_argv()[3:]]
    proc = run(f"opsgate, {n} checks, under cProfile", argv, project, env, n, timeout=3 * TIMEOUT_S)  # ~5x slower
    if not proc.ok:
        return {"proc": proc}
    import pstats
    stats = pstats.Stats(str(out_file))
    per_component: dict[str, float] = {}
    rows = []
    for (file, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
        if file == "~" and callers:  # a builtin's time goes to whoever called it, by their share
            share = sum(v[2] for v in callers.values()) or 1.0
            for (cfile, _, _), v in callers.items():
                label = next(lbl for lbl, test in COMPONENTS if test(cfile))
                per_component[label] = per_component.get(label, 0.0) + tt * v[2] / share
        else:
            label = next(lbl for lbl, test in COMPONENTS if test(file))
            per_component[label] = per_component.get(label, 0.0) + tt
        rows.append((tt, ct, nc, f"{_short(file)}:{line}({func})"))
    total = sum(per_component.values())
    by_cum = sorted(rows, key=lambda r: -r[1])
    return {"proc": proc, "total_s": total, "components": sorted(per_component.items(), key=lambda kv: -kv[1]),
            "by_own": sorted(rows, reverse=True)[:25],
            "pytest_by_cumulative": [r for r in by_cum if "_pytest/" in r[3] or "pytest_jsonreport" in r[3]][:25],
            "opsgate_by_cumulative": [r for r in by_cum if r[3].startswith("opsgate/")][:25]}


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1] if marker != "/lib/python3" else "py3" + path.split(marker, 1)[1]
    return path


# --------------------------------------------------------------------------- report

def _mark(ok: bool | None) -> str:
    return "n/a " if ok is None else ("met " if ok else "MISSED")


def _s(p: Proc | None) -> str:
    return f"{p.seconds:6.3f} s" if p else "FAILED"


def report(su: dict, sc: dict, sl: dict, target: FastTarget, quick: bool, repeat: int) -> tuple[list[dict], bool]:
    rows: list[dict] = []

    def row(case: str, measured: str, goal: str, ok: bool | None) -> None:
        rows.append({"case": case, "measured": measured, "goal": goal, "ok": ok})

    print("\n1. Start-up: one trivial test, best of %d (interleaved)" % STARTUP_ROUNDS)
    for key in ("with", "without"):
        procs = su[key]
        print(f"   {procs[0].label:<28} best {_s(su['best_' + key])}   runs: "
              + ", ".join(f"{p.seconds:.3f}" if p.ok else "FAILED" for p in procs))
    d = su["diff_ms"]
    row("start-up: installed minus -p no:opsgate", f"{d:+.0f} ms" if d is not None else "FAILED",
        f"<= {GOAL_STARTUP_MS:g} ms", d is not None and d <= GOAL_STARTUP_MS)
    for key, what in (("imports_trivial", "the trivial run (every pytest run)"),
                      ("imports_run", f"an opsgate run of {SMALL_N} checks")):
        imp = su[key]
        print(f"   -X importtime of {what}, best of 3: opsgate's imports {imp['opsgate_cumulative_ms']:.0f} ms "
              f"cumulative, {imp['opsgate_self_ms']:.0f} ms in opsgate's own modules")
        print("     opsgate modules (cumulative ms): " + (", ".join(f"{n} {ms:.0f}" for n, ms in imp["opsgate_modules"]) or "-"))
        print("     first imported by them (ms):     " + (", ".join(f"{n} {ms:.0f}" for n, ms in imp["pulled_in"]) or "-"))

    n = sc["n"]
    print(f"\n2. Scale: {n} http checks against {target.kind} on 127.0.0.1:{target.port} answering at once, "
          f"concurrency {CONCURRENCY}" + (f"; best of {repeat}" if repeat > 1 else ""))
    if target.note:
        print(f"   NOTE: {target.note}")
    mem_how = "/usr/bin/time -v" if TIME_BIN else "VmHWM polled every 10 ms"
    print(f"   {'variant':<26} {'wall':>9} {'CPU':>8} {'peak RSS':>10}   ({mem_how})")
    for key in ("og_small", "og_big", "pl_small", "pl_big", "fl_big"):
        p = sc[key]
        if p is None:
            failed = next((q for q in sc["runs"][key] if not q.ok), None)
            print(f"   {sc['runs'][key][0].label:<26} FAILED: {failed.reason if failed else '?'}")
            continue
        print(f"   {p.label:<26} {p.seconds:7.2f} s {sc[key + '_cpu_s']:6.2f} s {sc[key + '_peak_kb'] or 0:7d} KB")
    og, pl = sc["og_big"], sc["pl_big"]
    row(f"scale: {n} checks, whole process", _s(og).strip() + (f" ({og.seconds / pl.seconds:.2f}x plain serial "
        f"{pl.seconds:.2f} s)" if og and pl else ""), f"<= {GOAL_SCALE_S:g} s" + (" at 5,000" if quick else ""),
        (og.seconds <= GOAL_SCALE_S) if og else False)
    fl = sc["fl_big"]
    row(f"  floor: pytest + json-report, {n} empty tests", _s(fl).strip() + " (any check as a test item pays this)",
        "(reference)", None)
    kb = sc["og_kb_per_check"]
    row("scale: peak memory per check", (f"{kb:.1f} KB" if kb is not None else "FAILED")
        + (f" (plain pytest {sc['pl_kb_per_check']:.1f} KB)" if sc["pl_kb_per_check"] is not None else ""),
        f"<= {GOAL_KB_PER_CHECK:g} KB", (kb <= GOAL_KB_PER_CHECK) if kb is not None else False)
    cpu_og, cpu_pl = sc["og_cpu_ms_per_check"], sc["pl_cpu_ms_per_check"]
    row("scale: CPU per check (user+sys)", (f"{cpu_og:.2f} ms" if cpu_og is not None else "FAILED")
        + (f" vs plain pytest {cpu_pl:.2f} ms" if cpu_pl is not None else ""), "(printed beside plain)", None)

    print("\n3. 200 checks answering after 100 ms, best of %d (interleaved)" % SLOW_ROUNDS)
    for key in ("trivial", "floor", "c200", "c50"):
        procs = sl["runs"][key]
        print(f"   {procs[0].label:<40} best {_s(sl[key])}   runs: "
              + ", ".join(f"{p.seconds:.3f}" if p.ok else "FAILED" for p in procs))
    t, r200, r50 = sl["trivial"], sl["ratio_c200"], sl["ratio_c50"]
    row("200 x 100 ms, concurrency 200 / (trivial + 0.1 s)",
        f"{r200:.2f}x ({sl['c200'].seconds:.2f} s vs {t.seconds + 0.1:.2f} s)" if r200 else "FAILED",
        f"<= {GOAL_SLOW_RATIO:g}x", (r200 <= GOAL_SLOW_RATIO) if r200 else False)
    rf = sl["ratio_floor"]
    row("  floor: pytest, 200 empty tests + one 100 ms wait",
        f"{rf:.2f}x ({sl['floor'].seconds:.2f} s vs {t.seconds + 0.1:.2f} s)" if rf else "FAILED",
        "(reference: no opsgate)", None)
    row("  the same at concurrency 50 / (trivial + 0.4 s)",
        f"{r50:.2f}x ({sl['c50'].seconds:.2f} s vs {t.seconds + 0.4:.2f} s)" if r50 else "FAILED", "(reference)", None)

    width = max(len(r["case"]) for r in rows)
    print(f"\n{'case':{width}}  {'measured':52} {'goal':18} met")
    for r in rows:
        print(f"{r['case']:{width}}  {r['measured']:52} {r['goal']:18} {_mark(r['ok'])}")

    failures = [p for part in (su["with"] + su["without"], *sc["runs"].values(), *sl["runs"].values())
                for p in part if not p.ok]
    for p in failures[:3]:
        print(f"\n--- {p.label}: {p.reason} ---\n{p.tail}")
    return rows, not failures


def print_profile(prof: dict, n: int, out_file: Path) -> None:
    p = prof["proc"]
    if not p.ok:
        print(f"\nprofile run FAILED: {p.reason}\n{p.tail}")
        return
    total = prof["total_s"]
    print(f"\nProfile of the {n}-check run (cProfile, per-thread CPU clocks, all threads; {p.seconds:.1f} s wall "
          f"under the profiler, {total:.2f} s CPU profiled = {total / n * 1000:.2f} ms per check, the process's CPU "
          f"{p.cpu_s:.2f} s); stats in {out_file}")
    print("   CPU by component (own time; a builtin's goes to its callers):")
    for label, tt in prof["components"]:
        print(f"     {label:<22} {tt:6.2f} s  {tt / n * 1e6:7.0f} us/check  {tt / total * 100:4.1f} %")
    print("   top functions by own time:            own s  cum s    calls")
    for tt, ct, nc, where in prof["by_own"]:
        print(f"     {where[:64]:<64} {tt:6.2f} {ct:6.2f} {nc:8d}")
    for key, what in (("pytest_by_cumulative", "pytest and pytest-json-report"), ("opsgate_by_cumulative", "opsgate")):
        print(f"   {what} functions by cumulative time:")
        for tt, ct, nc, where in prof[key]:
            print(f"     {where[:64]:<64} {tt:6.2f} {ct:6.2f} {nc:8d}")


def export_src(rev: str, tmp: Path) -> tuple[str, Path]:
    """``src`` of commit ``rev``, extracted under ``tmp``: the commit's short hash, and the
    path to put on PYTHONPATH."""
    commit = subprocess.run(["git", "rev-parse", "--short", "--verify", f"{rev}^{{commit}}"], cwd=REPO,
                            capture_output=True, text=True, timeout=10)
    if commit.returncode:
        raise SystemExit(f"no commit {rev!r}: {commit.stderr.strip()}")
    dest = tmp / "snapshot"
    dest.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", commit.stdout.strip(), "src"], cwd=REPO,
                             capture_output=True, timeout=60)
    if archive.returncode:
        raise SystemExit(f"git archive {rev} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=60)
    return commit.stdout.strip(), dest / "src"


def tree_state() -> str:
    """The commit measured, and whether opsgate's source differs from it (work in progress)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src/opsgate"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "an unknown commit"
    return f"{head or '?'}" + (f" + uncommitted changes in src/opsgate ({len(dirty.splitlines())} files)" if dirty else "")


def _plain(p: Proc | None) -> dict | None:
    return {k: v for k, v in asdict(p).items() if k != "tail"} if p else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"500 checks in part 2 instead of 5,000")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="part 2: best of N rounds (default 1)")
    parser.add_argument("--profile", metavar="FILE", help="also profile the N-check run; pstats written to FILE")
    parser.add_argument("--commit", metavar="REV", help="measure opsgate as committed at REV (its src exported "
                        "to the temp dir) instead of this working tree's src, e.g. while others edit it")
    parser.add_argument("--baseline", metavar="REV", help="only parts 1 and 3, side by side for opsgate as committed "
                        f"at REV (before) and as measured (after: this tree, or --commit), {COMPARE_ROUNDS} interleaved "
                        "rounds")
    args = parser.parse_args()
    n = 500 if args.quick else 5000
    repeat = max(1, args.repeat)

    print(f"opsgate scale benchmark (issue 9){' (--quick)' if args.quick else ''}")
    print(f"nproc {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), Python {platform.python_version()} "
          f"({PY}), {platform.system()} {platform.release()}")
    print("load average %.2f %.2f %.2f (other work on the machine skews wall times)" % os.getloadavg())
    tmp = Path(tempfile.mkdtemp(prefix="opsgate-bench-scale-"))
    target = None
    try:
        env = base_env(tmp)
        if args.commit:
            commit, src = export_src(args.commit, tmp)
            env["PYTHONPATH"] = str(src)  # ahead of the venv's editable path to this tree's src
            measured = f"commit {commit}"
            print(f"measuring opsgate as committed at {commit} (its src exported into the temp dir)")
        else:
            measured = f"this tree: {tree_state()}"
            print(f"measuring opsgate in {measured}")
        target = FastTarget(tmp)
        print(f"target: {target.kind} on 127.0.0.1:{target.port}" + (f" (NOTE: {target.note})" if target.note else ""))
        if args.baseline:
            (tmp / "before").mkdir()
            before_commit, before_src = export_src(args.baseline, tmp / "before")
            envs = {"before": {**env, "PYTHONPATH": str(before_src)}, "after": env}
            labels = {"before": f"before: {before_commit}", "after": "after: " + (measured if args.commit else "this tree")}
            print(f"comparing opsgate as committed at {before_commit} (before) with {measured} (after)", flush=True)
            rows = report_compare(part_compare(tmp, envs, target), labels)
            print("\nload average at the end %.2f %.2f %.2f" % os.getloadavg())
            if args.json:
                Path(args.json).write_text(json.dumps({"machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                                                                   "loadavg_at_end": os.getloadavg()},
                                                       "compare": rows}, indent=2) + "\n")
                print(f"figures written to {args.json}")
            ok = all(row["ratio_c200"] is not None and row["startup_diff_ms"] is not None for row in rows)
            return 0 if ok else 1
        print("warm-up (untimed: bytecode into the temp prefix, file caches) ...", flush=True)
        trivial = trivial_project(tmp)
        warm = opsgate_project(tmp, "warm", [target.url(i) for i in range(2)], CONCURRENCY)
        warm_plain = plain_project(tmp, "warm-plain", [target.url(0)])
        run("warm", trivial_argv(trivial), trivial, env, 1)
        run("warm", opsgate_argv(), warm, env, 2)
        run("warm", plain_argv(warm_plain), warm_plain, env, 1)
        shutil.rmtree(trivial)
        print("1. start-up ...", flush=True)
        su = part_startup(tmp, env, target)
        print(f"2. scale ({n} checks) ...", flush=True)
        sc = part_scale(tmp, env, n, repeat, target)
        print("3. 200 checks at 100 ms ...", flush=True)
        sl = part_slow(tmp, env)
        rows, all_ran = report(su, sc, sl, target, args.quick, repeat)
        prof = None
        if args.profile:
            print(f"\nprofiling the {n}-check run ...", flush=True)
            prof = profile(tmp, env, n, target, Path(args.profile).resolve())
            print_profile(prof, n, Path(args.profile))
        print("\nload average at the end %.2f %.2f %.2f" % os.getloadavg())
    finally:
        if target is not None:
            target.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        figures = {
            "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "loadavg_at_end": os.getloadavg()},
            "measured": measured,
            "quick": args.quick, "checks": n, "repeat": repeat, "target": target.kind, "target_note": target.note,
            "memory_from": "/usr/bin/time -v" if TIME_BIN else "VmHWM polled",
            "rows": rows,
            "startup": {"best_with_s": getattr(su["best_with"], "seconds", None),
                        "best_without_s": getattr(su["best_without"], "seconds", None),
                        "diff_ms": su["diff_ms"], "imports_trivial": su["imports_trivial"],
                        "imports_run": su["imports_run"]},
            "scale": {k: (_plain(v) if isinstance(v, Proc) or v is None and k in ("og_small", "og_big", "pl_small", "pl_big",
                                                                                   "fl_big") else v)
                      for k, v in sc.items() if k != "runs"},
            "slow": {"trivial": _plain(sl["trivial"]), "floor": _plain(sl["floor"]), "c200": _plain(sl["c200"]),
                     "c50": _plain(sl["c50"]), "ratio_c200": sl["ratio_c200"], "ratio_c50": sl["ratio_c50"],
                     "ratio_floor": sl["ratio_floor"]},
        }
        if prof and prof["proc"].ok:
            figures["profile"] = {"cpu_s": prof["total_s"], "components": prof["components"]}
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0 if all_ran else 1


if __name__ == "__main__":
    sys.exit(main())
