"""``opsgate init --discover``: a starter environment from what is running on this machine.

Discovery looks (loopback only, every network call bounded by a short timeout, the whole
run by a deadline) at listening TCP ports and their owning processes, HTTP endpoints that
answer with JSON, PostgreSQL, Redis, Prometheus, container engines and their containers,
log files the running processes hold open, and mounted disks. The file it writes is a
valid environment in which every check carries a comment saying what was seen.

It never writes a value it read from another process (command lines, environments and
file contents are not read at all); credentials are ``${VARIABLES}`` the operator sets.
What it does write of what it saw (process names, paths, container names) is reduced to
plain characters and passed through the redactor.

>>> finding = Finding("redis", "redis-p6379", {"url": "redis://127.0.0.1:6379/0"}, "port 6379 owned by redis-server (pid 7)")
>>> print(render([finding], name="demo"))  # doctest: +ELLIPSIS
# Written by `opsgate init --discover` ...
name: "demo"
...
redis:
  # port 6379 owned by redis-server (pid 7)
  - name: "redis-p6379"
    url: "redis://127.0.0.1:6379/0"
<BLANKLINE>
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from opsgate.redact import REDACTOR

LOOPBACK_OR_ANY = {"127.0.0.1", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1"}
HTTP_PATHS = ("/health", "/healthz", "/api/health", "/api/status", "/metrics")
HEALTHY_WORDS = {"ok", "healthy", "up", "pass", "green", "running"}
REAL_FILESYSTEMS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "reiserfs", "vfat", "exfat",
                    "ntfs", "ntfs3", "overlay", "bcachefs"}
SKIPPED_MOUNTS = ("/proc", "/sys", "/dev", "/run", "/snap", "/var/lib/docker", "/var/lib/containers", "/boot/efi")
ENGINE_SOCKETS = ("/var/run/docker.sock", "/run/podman/podman.sock")
# The runbook's defaults (README: CPU/memory/disk warn 80 %, critical 90 %; no ERROR in the last 100 lines)
PERCENT_LIMIT = {"warn": 80, "critical": 90}
LOG_PATTERN = "ERROR|CRITICAL"
BODY_LIMIT = 64 * 1024
KIND_ORDER = ("http", "tcp", "process", "postgres", "redis", "prometheus", "container", "log", "host")


@dataclass
class Finding:
    """One check to write: its kind, name, fields, and the comment saying what was seen."""

    kind: str
    name: str
    fields: dict
    seen: str


@dataclass
class Listener:
    port: int
    address: str
    pid: int | None
    process: str = "unknown"
    user: str | None = None
    exe: str | None = None


@dataclass
class Deadline:
    """The whole discovery's time budget; every probe gets at most what is left."""

    seconds: float
    start: float = field(default_factory=time.monotonic)

    def left(self, most: float) -> float:
        return max(0.0, min(most, self.seconds - (time.monotonic() - self.start)))


def plain(text: str, limit: int = 60) -> str:
    """Observed text reduced to characters safe in a YAML comment or name, redacted, bounded.

    >>> plain("postgres: checkpointer\\n# x")
    'postgres:_checkpointer_x'
    """
    text = REDACTOR.excerpt(str(text), 4 * limit, keep="head")
    text = re.sub(r"[^A-Za-z0-9._:/+@-]+", "_", text).strip("_")
    return text[:limit] or "unknown"


def listeners() -> list[Listener]:
    """TCP ports listening on loopback or every address, with their owning processes.

    >>> isinstance(listeners(), list)
    True
    """
    found: dict[int, Listener] = {}
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return []
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.ip not in LOOPBACK_OR_ANY:
            continue
        port = conn.laddr.port
        if port in found and found[port].pid:
            continue
        listener = Listener(port, conn.laddr.ip, conn.pid)
        if conn.pid:
            try:
                proc = psutil.Process(conn.pid)
                with proc.oneshot():
                    listener.process = plain(proc.name(), 40)
                    listener.user = plain(proc.username(), 32)
            except (psutil.Error, KeyError):
                pass
        found[port] = listener
    return [found[p] for p in sorted(found)]


def _host_for(listener: Listener) -> str:
    return "::1" if ":" in listener.address and listener.address != "::ffff:127.0.0.1" else "127.0.0.1"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def exchange(host: str, port: int, request: bytes, timeout: float, unix: str | None = None) -> bytes:
    """Send ``request``, read at most BODY_LIMIT bytes; the whole exchange ends after ``timeout``.

    >>> exchange("127.0.0.1", 1, b"", 0.5)
    b''
    """
    end = time.monotonic() + timeout
    data = b""
    try:
        if unix:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(unix)
        else:
            sock = socket.create_connection((host, port), timeout=timeout)
        with sock:
            sock.sendall(request)
            while len(data) < BODY_LIMIT:
                left = end - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
                chunk = sock.recv(BODY_LIMIT - len(data))
                if not chunk:
                    break
                data += chunk
    except OSError:
        pass
    return data


def http_get(host: str, port: int, path: str, timeout: float, unix: str | None = None) -> tuple[int, bytes]:
    """(status, body) of one bounded HTTP/1.0 GET; status 0 when nothing usable came back.

    >>> http_get("127.0.0.1", 1, "/health", 0.5)
    (0, b'')
    """
    request = f"GET {path} HTTP/1.0\r\nHost: {_url_host(host) if not unix else 'localhost'}\r\nAccept: */*\r\n\r\n"
    raw = exchange(host, port, request.encode(), timeout, unix)
    head, _, body = raw.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if not match:
        return 0, b""
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        body = _dechunk(body)
    return int(match.group(1)), body


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        try:
            n = int(size.split(b";")[0], 16)
        except ValueError:
            break
        if n == 0:
            break
        out, rest = out + rest[:n], rest[n + 2:]
    return out


def _json(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None


def _redis_needs_password(host: str, port: int, timeout: float) -> bool:
    return not exchange(host, port, b"PING\r\n", timeout).startswith(b"+PONG")


def _owner(listener: Listener) -> str:
    who = f"{listener.process} (pid {listener.pid})" if listener.pid else "an unknown process"
    return f"port {listener.port} on {listener.address} owned by {who}"


def _variable_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").upper()


def port_findings(listener: Listener, deadline: Deadline) -> list[Finding]:
    """The checks one listening port gets: its owner (process scoped by ``port:``), and what
    answers there (PostgreSQL, Redis, Prometheus, HTTP with JSON), else a TCP connect."""
    port, host, proc = listener.port, _host_for(listener), listener.process
    owner = _owner(listener)
    out = []
    if listener.pid:
        out.append(Finding("process", f"process-p{port}-{proc}"[:80], {
            "description": f"the process listening on port {port}",
            "port": port, "process_name": proc, "min_count": 1}, owner))
    if proc.startswith("postgres") or proc == "postmaster" or (port == 5432 and listener.pid is None):
        user, db = f"PG_P{port}_USER", f"PG_P{port}_DATABASE"
        out.append(Finding("postgres", f"postgres-p{port}", {
            "description": "Runbook: SELECT 1 answers; connections below 80/90 % of max_connections",
            "dsn": f"postgresql://${{{user}:-postgres}}:${{PG_P{port}_PASSWORD}}@{_url_host(host)}:{port}"
                   f"/${{{db}:-postgres}}",
            "connections_percent": dict(PERCENT_LIMIT)},
            f"{owner}: PostgreSQL by process name/port; set PG_P{port}_PASSWORD (and {user}, {db})"))
        return out
    if proc.startswith("redis") or port == 6379:
        if _redis_needs_password(host, port, deadline.left(1.0)):
            url, note = f"redis://:${{REDIS_P{port}_PASSWORD}}@{_url_host(host)}:{port}/0", \
                f"; PING asked for a password: set REDIS_P{port}_PASSWORD"
        else:
            url, note = f"redis://{_url_host(host)}:{port}/0", "; PING answered without a password"
        out.append(Finding("redis", f"redis-p{port}", {
            "description": "Runbook: redis-cli ping; last save ok", "url": url}, f"{owner}: Redis{note}"))
        return out
    status, body = http_get(host, port, "/api/v1/status/buildinfo", deadline.left(1.0))
    document = _json(body) if status == 200 else None
    if isinstance(document, dict) and document.get("status") == "success":
        out.append(Finding("prometheus", f"prometheus-p{port}", {
            "description": "Runbook: no firing alerts", "url": f"http://{_url_host(host)}:{port}",
            "no_firing_alerts": True}, f"{owner}: /api/v1/status/buildinfo answered (Prometheus)"))
        return out
    answered = False
    for path in HTTP_PATHS if status else ():  # not HTTP (or no answer in time): a TCP check
        if not deadline.left(1.0):
            break
        status, body = http_get(host, port, path, deadline.left(1.0))
        document = _json(body)
        is_metrics = path == "/metrics" and status == 200 and re.search(rb"(?m)^# (TYPE|HELP) ", body)
        if status != 200 or (document is None and not is_metrics):
            continue
        answered = True
        fields = {"description": f"Runbook: GET {path} answers 200 within 1 s", "url":
                  f"http://{_url_host(host)}:{port}{path}", "max_latency_ms": 1000}
        what = "Prometheus text" if document is None else "JSON"
        if isinstance(document, dict) and str(document.get("status", "")).lower() in HEALTHY_WORDS:
            fields["expect"] = [f"status == '{document['status']}'"]
            what += f" with status {document['status']!r}"
        out.append(Finding("http", f"http-p{port}-{path.strip('/').replace('/', '-')}", fields,
                           f"{owner}: GET {path} answered 200 with {what}"))
    if not answered:
        out.append(Finding("tcp", f"tcp-p{port}", {
            "description": f"Runbook: port {port} accepts connections", "host": host, "port": port,
            "max_connect_ms": 1000}, owner))
    return out


def log_findings(limit: int = 50, deadline: Deadline | None = None) -> list[Finding]:
    """Log files (``*.log``) that running processes hold open: no ERROR or CRITICAL in the
    last 100 lines.

    >>> all(f.kind == "log" for f in log_findings())
    True
    """
    seen: dict[str, str] = {}
    for proc in psutil.process_iter(["pid", "name"]):
        if len(seen) >= limit or (deadline and not deadline.left(1.0)):
            break  # what was found so far is written; the budget bounds the whole discovery
        if proc.pid == os.getpid():
            continue
        try:
            files = proc.open_files()
        except (psutil.Error, OSError):
            continue
        for f in files:
            if f.path.endswith(".log") and not f.path.startswith(("/proc/", "/sys/", "/dev/")) and f.path not in seen:
                seen[f.path] = f"{plain(proc.info['name'] or '', 40)} (pid {proc.pid})"
    out = []
    for path, who in seen.items():
        safe = plain(path, 200)
        if safe != path:  # a path we could not write faithfully is left out, not mangled
            continue
        out.append(Finding("log", f"log-{plain(Path(path).stem, 40)}", {
            "description": "Runbook: no ERROR or CRITICAL in the last 100 log lines", "path": path,
            "last_lines": 100, "patterns": [{"regex": LOG_PATTERN, "max": 0}]}, f"{path} held open by {who}"))
    return out


def host_finding() -> Finding:
    """This host's CPU, memory and the real mounted filesystems, at the runbook's 80/90 %.

    >>> host_finding().fields["memory_percent"]
    {'warn': 80, 'critical': 90}
    """
    disks, mounts = [], []
    for part in psutil.disk_partitions(all=False):
        mount = part.mountpoint
        if part.fstype not in REAL_FILESYSTEMS or mount.startswith(SKIPPED_MOUNTS) or mount in mounts:
            continue
        if plain(mount, 200) != mount:
            continue
        mounts.append(mount)
        disks.append({"path": mount, "used_percent": dict(PERCENT_LIMIT), "inodes_percent": dict(PERCENT_LIMIT)})
    if "/" not in mounts:
        disks.insert(0, {"path": "/", "used_percent": dict(PERCENT_LIMIT), "inodes_percent": dict(PERCENT_LIMIT)})
        mounts.insert(0, "/")
    return Finding("host", "host", {
        "description": "Runbook: CPU, memory and disks below 80 % (warn) / 90 % (critical)",
        "cpu_percent": dict(PERCENT_LIMIT), "memory_percent": dict(PERCENT_LIMIT), "disks": disks},
        f"{psutil.cpu_count()} CPUs; filesystems mounted at {', '.join(mounts)}")


def container_findings(deadline: Deadline, sockets: tuple[str, ...] | None = None) -> list[Finding]:
    """Container engines whose socket answers ``/_ping``, and their running containers.

    >>> container_findings(Deadline(1), sockets=("/nonexistent.sock",))
    []
    """
    candidates = list(sockets if sockets is not None else ENGINE_SOCKETS)
    if sockets is None and os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(os.path.join(os.environ["XDG_RUNTIME_DIR"], "podman", "podman.sock"))
    if sockets is None and os.environ.get("DOCKER_HOST", "").startswith("unix://"):
        candidates.insert(0, os.environ["DOCKER_HOST"][len("unix://"):])
    out, engines = [], set()
    for path in candidates:
        if not os.path.exists(path) or os.path.realpath(path) in engines:
            continue
        status, body = http_get("localhost", 0, "/_ping", deadline.left(1.0), unix=path)
        if status != 200 or body.strip() != b"OK":
            continue
        engines.add(os.path.realpath(path))
        status, body = http_get("localhost", 0, "/containers/json", deadline.left(2.0), unix=path)
        listed = _json(body) if status == 200 else None
        for item in listed if isinstance(listed, list) else []:
            names = item.get("Names") or [] if isinstance(item, dict) else []
            name = str(names[0]).lstrip("/") if names else ""
            if not name or plain(name) != name:
                continue
            out.append(Finding("container", f"container-{name}", {
                "description": "Runbook: the container is running", "engine": f"unix://{path}",
                "container": name, "running": True},
                f"container {name} ({plain(item.get('Image', ''), 60)}) {plain(item.get('State', ''), 20)} "
                f"on the engine at {path}"))
    return out


def discover(seconds: float = 10.0) -> list[Finding]:
    """Everything this machine shows, as findings; bounded by ``seconds`` overall (a port
    whose probes did not fit still gets its process and TCP checks).

    >>> any(f.kind == "host" for f in discover(3))
    True
    """
    deadline = Deadline(seconds)
    findings: list[Finding] = []
    with ThreadPoolExecutor(max_workers=16) as pool:  # one slow port must not starve the others
        for found in pool.map(lambda listener: port_findings(listener, deadline), listeners()):
            findings += found
    findings += container_findings(deadline)
    findings += log_findings(deadline=deadline)
    findings.append(host_finding())
    return _unique(findings)


def _unique(findings: list[Finding]) -> list[Finding]:
    taken: set[str] = set()
    for f in findings:
        name, n = re.sub(r"[^A-Za-z0-9_.:/-]", "_", f.name), 2
        base = name
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name)
        f.name = name
    return findings


def _yaml(value, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines += _yaml(item, indent + 2)
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return lines
    lines = []
    for item in value:
        if isinstance(item, dict):
            inner = _yaml(item, indent + 2)
            lines.append(f"{pad}- {inner[0].lstrip()}")
            lines += inner[1:]
        else:
            lines.append(f"{pad}- {_scalar(item)}")
    return lines


def _scalar(value) -> str:
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(value)  # JSON scalars are YAML flow scalars: quoting is always right


def render(findings: list[Finding], name: str) -> str:
    """The environment file's text: one section per kind, each check under its comment."""
    lines = ["# Written by `opsgate init --discover` from what was running on this machine.",
             "# A starter: review every check, set the ${VARIABLES} it names, remove what you do not need.",
             "# No credential was read or written; secrets are ${VARIABLES} without defaults.",
             f"name: {json.dumps(name)}",
             "defaults:", "  timeout: 5s", "  severity: P2", ""]
    for kind in KIND_ORDER:
        items = [f for f in findings if f.kind == kind]
        if not items:
            continue
        lines.append(f"{kind}:")
        for f in items:
            lines.append(f"  # {_comment(f.seen)}")
            lines += _yaml([{"name": f.name, **f.fields}], 2)
        lines.append("")
    return "\n".join(lines)


def _comment(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", " ", REDACTOR.excerpt(text, 400, keep="head"))


def init_main(args: argparse.Namespace) -> int:
    """The ``init`` subcommand: discover, write the file (never over an existing one unless --force)."""
    if not args.discover:
        print("opsgate init: only --discover is supported: opsgate init --discover [-o FILE]", file=sys.stderr)
        return 2
    out = Path(args.output)
    if out.exists() and not args.force:
        print(f"opsgate init: {out} exists; not overwritten (use --force)", file=sys.stderr)
        return 1
    name = args.name or plain(socket.gethostname(), 60)
    findings = discover(args.seconds)
    try:
        with open(out, "w" if args.force else "x", encoding="utf-8") as f:  # "x": never over a file made meanwhile
            f.write(render(findings, name))
    except OSError as exc:
        print(f"opsgate init: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    counts = {k: sum(f.kind == k for f in findings) for k in KIND_ORDER}
    print(f"wrote {out}: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    return 0


def add_init_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``opsgate init`` on the CLI's subparsers.

    >>> parser = argparse.ArgumentParser(); sub = parser.add_subparsers(dest="command")
    >>> args = parser.parse_args(["init", "--discover", "-o", "x.yaml"]) if add_init_parser(sub) else None
    >>> (args.discover, args.output, args.force)
    (True, 'x.yaml', False)
    """
    text = "write a starter environment file from what is running here"
    p = subparsers.add_parser("init", help=text, description=text[0].upper() + text[1:] + ".",
                              epilog="example:\n  opsgate init --discover -o config/production.yaml --name production\n"
                                     "  opsgate validate config/production.yaml   # then review it",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--discover", action="store_true", help="look at this machine (ports, services, logs, disks)")
    p.add_argument("-o", "--output", default="env.yaml", help="file to write (default env.yaml)")
    p.add_argument("--name", help="environment name (default: the host name)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--seconds", type=float, default=10.0, help="time budget for discovery (default 10)")
    p.set_defaults(func=init_main)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m opsgate.discover --discover -o FILE``: the same as ``opsgate init``."""
    parser = argparse.ArgumentParser(prog="opsgate")
    sub = parser.add_subparsers(dest="command", required=True)
    add_init_parser(sub)
    args = parser.parse_args(["init", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
