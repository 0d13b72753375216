"""Throwaway PostgreSQL, Redis and Prometheus servers (and a /metrics target) the tests start
themselves, on random loopback ports.

PostgreSQL refuses to run as root, so ``initdb`` and ``pg_ctl`` run as the ``postgres``
user in a folder it owns (see ../shared/SERVICES.md). Password auth (scram) is on for TCP,
so a wrong password is a real failure; the fixtures administer the server over its Unix
socket (trust).

>>> import tempfile, pathlib
>>> with PostgresServer() as pg:
...     pg.sql("SELECT 1 AS one")
[(1,)]
>>> with RedisServer(pathlib.Path(tempfile.mkdtemp())) as r:
...     r.client().ping()
True
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import redis
import requests

from tests.support.http_target import StaticTarget, free_port

APP_PASSWORD = "s3cret-Pg-pass"


def _pg_bin(name: str) -> str:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(f"{folder}/{name}"):
            return f"{folder}/{name}"
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: PostgreSQL server binaries are missing (ci/install-services.sh installs them)")
    return found


def _as_postgres(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    user = pwd.getpwnam("postgres")
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 60)
    if os.getuid() == 0:
        kwargs["user"], kwargs["group"] = user.pw_uid, user.pw_gid
    proc = subprocess.run(argv, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed ({proc.returncode}): {proc.stdout[-800:]}{proc.stderr[-800:]}")
    return proc


class PostgresServer:
    """A PostgreSQL cluster: role ``app`` (password APP_PASSWORD) owns database ``app`` with an
    ``orders`` table of 3 rows. ``replica_of`` makes it a streaming replica (pg_basebackup -R)."""

    def __init__(self, max_connections: int = 20, replica_of: "PostgresServer | None" = None):
        # pytest's temp folders are 0700 root: the postgres user needs its own, traversable one
        self.root = Path(tempfile.mkdtemp(prefix="opsgate-pg-"))
        os.chmod(self.root, 0o755)
        pg = pwd.getpwnam("postgres")
        os.chown(self.root, pg.pw_uid, pg.pw_gid)
        self.data = self.root / "data"
        self.port = free_port()
        self.max_connections = max_connections
        self.replica_of = replica_of
        self.running = False

    def __enter__(self) -> "PostgresServer":
        if self.replica_of is None:
            pwfile = self.root / "pw"
            pwfile.write_text("postgres-admin\n")
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
            _as_postgres([_pg_bin("initdb"), "--no-sync", "-U", "postgres", "--auth-local=trust",
                          "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-D", str(self.data)])
        else:
            primary = self.replica_of
            _as_postgres([_pg_bin("pg_basebackup"), "-h", str(primary.root), "-p", str(primary.port), "-U", "postgres",
                          "-D", str(self.data), "-R", "-X", "stream", "--no-sync", "-c", "fast"])
        self.start()
        if self.replica_of is None:
            self.sql(f"CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'", "postgres")
            self.sql("CREATE DATABASE app OWNER app", "postgres")
            self.sql("CREATE TABLE orders (id int PRIMARY KEY, total numeric); INSERT INTO orders VALUES (1, 9.5), (2, 20), (3, 7.25);"
                     "ALTER TABLE orders OWNER TO app; GRANT pg_monitor TO app", "app")
        return self

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c max_connections={self.max_connections} -c superuser_reserved_connections=2")
        _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "start"])
        self.running = True

    def stop(self) -> None:
        if self.running:
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
            self.running = False

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, password: str = APP_PASSWORD, user: str = "app", db: str = "app") -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{db}"

    def connect(self, db: str = "app", user: str = "postgres", **kwargs) -> psycopg.Connection:
        """A connection over the Unix socket (trust): for setting up broken states."""
        return psycopg.connect(host=str(self.root), port=self.port, dbname=db, user=user, autocommit=True, **kwargs)

    def sql(self, statement: str, db: str = "app") -> list[tuple]:
        with self.connect(db) as conn, conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else []


class RedisServer:
    """A redis-server on a random port with persistence off unless ``args`` turn it on."""

    def __init__(self, root: Path, password: str | None = None, args: tuple[str, ...] = ()):
        self.dir = root / f"redis-{free_port()}"
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.password = password
        self.args = args

    def __enter__(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server not found (ci/install-services.sh installs it)")
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
                "--appendonly", "no", "--daemonize", "yes", "--pidfile", str(self.dir / "r.pid"),
                "--logfile", str(self.dir / "r.log"), *self.args]
        if self.password:
            argv += ["--requirepass", self.password]
        subprocess.run(argv, check=True, timeout=30)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM through the pidfile; redis removes the pidfile as its last step. (Waiting for
        the PID to vanish would wait on init, which reaps the daemonized process late.)"""
        pidfile = self.dir / "r.pid"
        if not pidfile.exists():
            return
        try:
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    def url(self, password: str | None = None) -> str:
        password = self.password if password is None else password
        return f"redis://{':' + password + '@' if password else ''}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=5)


class MetricsTarget(StaticTarget):
    """A loopback /metrics exposition; ``url`` is the /metrics URL.

    >>> import requests
    >>> with MetricsTarget("up 1\\n") as t:
    ...     requests.get(t.url, timeout=5).text
    'up 1\\n'
    """

    def __init__(self, body: str):
        super().__init__({"/metrics": body})
        self.url = f"{self.base}/metrics"


PROMETHEUS_RULES = """groups:
  - name: opsgate-tests
    rules:
      - alert: DiskAlmostFull
        expr: vector(1)
        labels: {severity: critical}
      - alert: CertificateRenewalDue
        expr: vector(1)
        labels: {severity: warning}
      - alert: NeverFires
        expr: vector(0) > 0
        labels: {severity: critical}
"""


class PrometheusServer:
    """Debian's prometheus on a random port, scraping itself (job prometheus), ``api_port``
    (job api) and a port nothing listens on (job batch: down); two rules fire, one does not."""

    def __init__(self, root: Path, api_port: int):
        self.root = root / f"prometheus-{free_port()}"
        self.root.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.root / "rules.yml").write_text(PROMETHEUS_RULES)
        (self.root / "prometheus.yml").write_text(f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [rules.yml]
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ["127.0.0.1:{self.port}"]}}]
  - job_name: api
    static_configs: [{{targets: ["127.0.0.1:{api_port}"]}}]
  - job_name: batch
    static_configs: [{{targets: ["127.0.0.1:{free_port()}"]}}]
""")
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "PrometheusServer":
        binary = shutil.which("prometheus")
        if not binary:
            raise RuntimeError("prometheus not found (ci/install-services.sh installs it)")
        self.log = open(self.root / "log", "w")
        self.process = subprocess.Popen([binary, f"--config.file={self.root / 'prometheus.yml'}",
                                         f"--storage.tsdb.path={self.root / 'data'}",
                                         f"--web.listen-address=127.0.0.1:{self.port}"],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        # discovery hands targets to the scraper after ~5 s: wait until all three jobs have an
        # `up` series and both rules fire, so every test sees a settled server
        deadline = time.monotonic() + 60
        while True:
            try:
                up = requests.get(f"{self.url}/api/v1/query", params={"query": "up"}, timeout=2).json()["data"]["result"]
                alerts = requests.get(f"{self.url}/api/v1/alerts", timeout=2).json()["data"]["alerts"]
                if len(up) == 3 and len(alerts) == 2:
                    return self
            except (requests.RequestException, ValueError, KeyError):
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"prometheus did not settle: {(self.root / 'log').read_text()[-1500:]}")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


class SilentPostgres:
    """A stand-in for a wedged PostgreSQL (no real server can be made to hang on cue): it
    speaks the startup handshake (no auth, ReadyForQuery) and then reads queries without
    ever answering."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []

    def __enter__(self) -> "SilentPostgres":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    @staticmethod
    def _session(conn: socket.socket) -> None:
        try:
            while True:  # SSLRequest / GSSENCRequest are declined with "N"; the StartupMessage ends it
                length = struct.unpack("!I", conn.recv(4))[0]
                code = struct.unpack("!I", conn.recv(length - 4)[:4])[0]
                if code not in (80877103, 80877104):
                    break
                conn.sendall(b"N")
            reply = b"R" + struct.pack("!II", 8, 0)  # AuthenticationOk
            for key, value in ((b"server_version", b"15.0"), (b"client_encoding", b"UTF8"),
                               (b"standard_conforming_strings", b"on"), (b"integer_datetimes", b"on")):
                field = key + b"\0" + value + b"\0"
                reply += b"S" + struct.pack("!I", 4 + len(field)) + field
            reply += b"K" + struct.pack("!III", 12, 1, 1) + b"Z" + struct.pack("!I", 5) + b"I"
            conn.sendall(reply)
            while conn.recv(65536):
                pass  # the query arrives; no answer ever leaves
        except (OSError, struct.error):
            pass

    def __exit__(self, *exc) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()
