"""Real OpenSSH "hosts" on this machine, for testing opsgate against a fleet.

Each host is an ``sshd`` in its own network, mount and PID namespaces (``unshare --net
--mount --pid --fork --mount-proc``, propagation private):

- **network**: a veth pair to the root namespace, its own address (a random unused
  10.x.x.x/30 per host: the host is ``.2``, this side ``.1``), sshd on port 22;
- **processes**: PID 1 is its sshd; a process listing on one host shows only its own
  processes (``/proc`` is that namespace's);
- **files**: a per-host directory (``host.root``, on the real filesystem) is bind-mounted at
  ``fleet.srv``, a path that is the same on every host, so each host sees its own content
  there; ``/run`` is a private tmpfs (so ``/run/systemd/system`` can exist on one host only).
  The rest of the filesystem is this machine's, shared (``<base>/hosts/<name>`` included:
  a test means a host's files by ``fleet.srv``, never by another host's ``root``);
- **users**: its own ``/etc/passwd`` (a copy bind-mounted over it) with an extra user
  ``host.user`` (uid ``host.uid``); root's login shell there is ``/bin/sh``, so the remote
  shell reads no rc file of this machine's root. sshd sets ``PATH`` to
  ``<srv>/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin``: a host's own
  tools (a stand-in ``systemctl``) go in ``host.root / "bin"``.

The namespaces have no name: they end with the host's processes, and their veth pair with
them, so a crashed test leaves nothing behind (the host's ``unshare`` gets SIGKILL when the
thread that started it ends: start fleets from a long-lived thread, e.g. pytest's main one).
One client key (``fleet.identity_file``) is authorized on every host; ``fleet.known_hosts``
lists every host's generated ed25519 key by address; ``fleet.ssh_config`` checks host keys
(``StrictHostKeyChecking yes``, no other known_hosts file), never prompts (``BatchMode``) and
shares one connection per host (``ControlPath``; testinfra's ssh backend adds
``ControlMaster=auto``). ``host.url`` is a pytest-testinfra host spec using it.

Where namespaces cannot be made (no root, a container without CAP_SYS_ADMIN, or
``OPSGATE_SSHHOSTS_LOOPBACK=1``), every sshd listens on its own loopback port instead, with
**no isolation**: the hosts share this machine's processes, files and users, and a host's
own directory is seen at ``host.srv`` (= ``host.root``), not at a common path.
``fleet.isolated`` says which; ``fleet.require_isolation()`` skips a test that needs it.
paramiko's testinfra backend does not read ``UserKnownHostsFile`` and accepts unknown keys
with a warning: these hosts are meant for the ``ssh://`` backend.

Example (needs root and sshd)::

    with start_hosts(3, tmp_path) as fleet:
        web1, web2, web3 = fleet.hosts               # names host1.. unless names= is given
        web1.write("app/config.yml", "a: 1\\n")       # only web1 sees <fleet.srv>/app/config.yml
        pid = web2.spawn(["sleep", "300"])           # runs inside web2; pid as web2 sees it
        target = TestinfraTarget.connect(web1.url)   # ssh://root@10.a.b.2?ssh_config=...
        web3.hang()                                  # its sshd stopped: operations time out
        wrong = fleet.wrong_key_url(web1)            # the same host, a known_hosts with another key

or, in a test module, ``ssh_fleet = fleet_fixture(3)`` for a module-scoped fixture.
"""

from __future__ import annotations

import atexit
import ctypes
import ipaddress
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

SSHD = "/usr/sbin/sshd"
START_TIMEOUT_S = 20.0
_REMOTE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PR_SET_PDEATHSIG = 1

# the host's first process: private /run, its own files and users, then waits for its network
_INIT = r"""
set -e
mount -t tmpfs -o mode=755 opsgate-run /run
mkdir -p /run/sshd
mount --bind "$1" "$2"
mount --bind "$3" /etc/passwd
echo ready
read -r go
[ "$go" = go ]
ip -b - <<EOF
link set lo up
link set eth0 up
addr add $4/30 dev eth0
EOF
exec /usr/sbin/sshd -D -f "$5" -E "$6"
"""


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the thread that started it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _ssh_tools() -> str | None:
    """Why sshd hosts cannot run here, or None."""
    for tool in (SSHD, shutil.which("ssh"), shutil.which("ssh-keygen")):
        if not tool or not os.access(tool, os.X_OK):
            return "OpenSSH (sshd, ssh, ssh-keygen) is not installed: ci/install-services.sh installs it"
    return None


_namespaces: list[str | None] = []


def namespaces_unavailable() -> str | None:
    """Why hosts cannot have their own namespaces here (None when they can); asked once."""
    if not _namespaces:
        reason = None
        if os.environ.get("OPSGATE_SSHHOSTS_LOOPBACK") == "1":
            reason = "OPSGATE_SSHHOSTS_LOOPBACK=1"
        elif os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter") or not shutil.which("ip"):
            reason = "needs root, unshare, nsenter and ip"
        else:
            probe = subprocess.run(["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc", "true"],
                                   capture_output=True, text=True, timeout=10)
            if probe.returncode != 0:
                reason = f"unshare --net --mount --pid failed: {probe.stderr.strip()}"
        _namespaces.append(reason)
    return _namespaces[0]


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=10).stdout
    out += subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True,
                          timeout=10).stdout
    nets = []
    for word in out.split():
        if word[:1].isdigit() and ("/" in word or word.count(".") == 3):
            try:
                nets.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                pass
    return nets


def _free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """``count`` random /30s in 10.0.0.0/8 overlapping no address or route of this machine."""
    used, chosen = _used_networks(), []
    while len(chosen) < count:
        net = ipaddress.ip_network((random.randrange(0x0A000000, 0x0B000000) & ~3, 30))
        if not any(net.overlaps(other) for other in used + chosen):
            chosen.append(net)
    return chosen


def _ip_batch(lines: list[str], check: bool = True) -> None:
    """Run ``ip`` commands (one per line) in one process."""
    force = [] if check else ["-force"]  # -force: go on after a line that fails
    done = subprocess.run(["ip", *force, "-b", "-"], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip: {done.stderr.strip()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(paths: list[Path]) -> None:
    """ed25519 key pairs at ``paths`` (and ``.pub``), generated concurrently."""
    procs = [subprocess.Popen(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "opsgate-test", "-f", str(p)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for p in paths]
    for proc in procs:
        _out, err = proc.communicate(timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"ssh-keygen failed: {err.decode().strip()}")


def _pids_in(ns: str) -> list[int]:
    """Processes (root-namespace pids) whose PID namespace is ``ns``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it (root-namespace pids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


@dataclass
class SshHost:
    """One sshd host. ``root`` is its own directory on this machine's filesystem, seen by the
    host at ``srv``; ``init_pid`` is its PID 1 (sshd) as this machine numbers it."""

    name: str
    address: str
    port: int
    dir: Path
    fleet: "Fleet" = field(repr=False)
    user: str = ""
    uid: int = 0
    init_pid: int | None = None
    veth: str | None = None
    _unshare: subprocess.Popen | None = field(default=None, repr=False)
    _spawned: list = field(default_factory=list, repr=False)
    _cut: bool = field(default=False, repr=False)

    @property
    def root(self) -> Path:
        return self.dir / "srv"

    @property
    def srv(self) -> str:
        """Where this host sees ``root``: ``fleet.srv`` on every isolated host."""
        return self.fleet.srv if self.fleet.isolated else str(self.root)

    @property
    def passwd(self) -> Path:
        return self.dir / "passwd"

    @property
    def known_hosts(self) -> Path:
        return self.fleet.known_hosts

    @property
    def identity_file(self) -> Path:
        return self.fleet.identity_file

    @property
    def ssh_config(self) -> Path:
        return self.fleet.ssh_config

    @property
    def hostspec(self) -> str:
        """``root@address`` (``root@[address]:port`` off port 22), as ssh and testinfra take it."""
        return f"root@{self.address}" if self.port == 22 else f"root@{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return self.url_with(self.fleet.ssh_config)

    def url_with(self, ssh_config: Path, scheme: str = "ssh") -> str:
        """A testinfra host spec for this host using another ssh_config file."""
        return f"{scheme}://{self.hostspec}?ssh_config={ssh_config}"

    # --- inside the host ------------------------------------------------------------------------

    def _enter(self) -> list[str]:
        """The argv prefix that runs a command inside this host (nothing on a loopback host)."""
        if self.init_pid is None:
            return []
        return ["nsenter", "-t", str(self.init_pid), "-n", "-m", "-p", "--"]

    def run(self, argv: list[str], timeout: float = 30, input: str | bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run ``argv`` inside the host and wait (output captured as text unless ``input`` is bytes)."""
        proc = subprocess.run(self._enter() + list(argv), input=input, capture_output=True, timeout=timeout,
                              text=not isinstance(input, bytes), env=self._env(None))
        if check and proc.returncode != 0:
            raise RuntimeError(f"{self.name}: {argv} exited {proc.returncode}: {proc.stderr!r}")
        return proc

    def _env(self, env: dict | None) -> dict:
        base = {"PATH": f"{self.srv}/bin:{_REMOTE_PATH}", "HOME": "/root", "LANG": "C.UTF-8"}
        return {**base, **(env or {})}

    def spawn(self, argv: list[str], cwd: str | None = None, env: dict | None = None) -> int:
        """Start a long-running process inside the host; its pid as the host sees it (the number a
        remote process listing shows). stdout and stderr go to ``<dir>/spawned-<n>.log``; it ends
        with the host, or by ``kill(pid)``."""
        log = self.dir / f"spawned-{len(self._spawned)}.log"
        script = 'cd "$1" || exit 127; log=$2; shift 2; echo $$; exec "$@" >>"$log" 2>&1 </dev/null'
        with open(log, "wb") as err:
            proc = subprocess.Popen(self._enter() + ["sh", "-c", script, "sh", cwd or "/", str(log), *argv],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    env=self._env(env), start_new_session=True)
        with proc.stdout:
            line = proc.stdout.readline().strip()
        if not line.isdigit():
            proc.wait(timeout=10)
            raise RuntimeError(f"{self.name}: could not start {argv}: {_tail(log)}")
        self._spawned.append(proc)
        return int(line)

    def kill(self, pid: int, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the host's process ``pid`` (as the host numbers it)."""
        self.run(["kill", f"-{int(sig)}", str(pid)])

    def write(self, path: str, data: str | bytes, mode: int | None = None) -> str:
        """Write a file only this host sees; ``path`` is relative to ``srv`` or absolute under
        ``srv`` or ``/run``. Returns the path as the host sees it."""
        seen = path if path.startswith("/") else f"{self.srv}/{path}"
        payload = data.encode() if isinstance(data, str) else data
        if seen == self.srv or seen.startswith(self.srv + "/"):
            real = self.root / os.path.relpath(seen, self.srv)
            real.parent.mkdir(parents=True, exist_ok=True)
            real.write_bytes(payload)
            if mode is not None:
                real.chmod(mode)
        elif seen.startswith("/run/") and self.fleet.isolated:
            self.run(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat >"$1" && chmod "$2" "$1"', "sh", seen,
                      oct(mode if mode is not None else 0o644)[2:]], input=payload)
        else:
            raise ValueError(f"{path}: a host's own files are under {self.srv} (or /run): elsewhere is shared")
        return seen

    def add_user(self, name: str, uid: int) -> None:
        """Add a user to this host's /etc/passwd (written in place: the bind mount holds the inode)."""
        if not self.fleet.isolated:
            raise RuntimeError("loopback hosts share this machine's users")
        with open(self.passwd, "a") as handle:
            handle.write(f"{name}:x:{uid}:{uid}::/nonexistent:/usr/sbin/nologin\n")

    # --- breaking it ------------------------------------------------------------------------------

    def sshd_pids(self) -> list[int]:
        """This host's sshd processes (listener and per-connection), root-namespace pids."""
        if self.init_pid is not None:
            ns = os.readlink(f"/proc/{self.init_pid}/ns/pid")
            return [pid for pid in _pids_in(ns) if _comm(pid) == "sshd"]
        return [pid for pid in _descendants(self._unshare.pid) if _comm(pid) == "sshd"] if self._unshare else []

    def hang(self) -> None:
        """SIGSTOP every sshd process of the host: connections (new and open) stop answering."""
        for pid in self.sshd_pids():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.sshd_pids():
            os.kill(pid, signal.SIGCONT)

    def disconnect(self) -> None:
        """Close the shared ssh connection to this host (the next command connects anew)."""
        subprocess.run(["ssh", "-F", str(self.fleet.ssh_config), "-O", "exit", "-p", str(self.port),
                        f"root@{self.address}"], capture_output=True, timeout=10)

    def unreachable(self) -> None:
        """Replace the route to the host by an ``unreachable`` one: connecting fails at once ("No
        route to host"; without any route the machine's default route would take the packets).
        The shared connection is closed first. A loopback host's sshd is stopped instead
        (connections are refused). ``hang()`` is the host that times out."""
        self.disconnect()
        if self.veth:
            _ip_batch([f"addr del {self._near} dev {self.veth}", f"route add unreachable {self._net}"])
            self._cut = True
        elif self._unshare is not None:
            self.fleet._stop_host(self)

    def reachable(self) -> None:
        """Bring the address back after ``unreachable()`` (namespace hosts only)."""
        if not self.veth:
            raise RuntimeError("a stopped loopback host cannot come back")
        _ip_batch([f"route del unreachable {self._net}", f"addr add {self._near} dev {self.veth}"])
        self._cut = False

    @property
    def _net(self) -> str:
        return str(ipaddress.ip_network(self._near, strict=False))

    @property
    def _near(self) -> str:
        """This side's address of the host's link (the host's address is .2 of its /30)."""
        return f"{ipaddress.ip_address(self.address) - 1}/30"


class Fleet:
    """Hosts started by :func:`start_hosts`; ``srv`` is the common path where each host sees
    its own directory."""

    def __init__(self, base: Path, isolated: bool, why_not: str | None) -> None:
        self.base = base
        self.isolated = isolated
        self.why_not_isolated = why_not
        self.hosts: list[SshHost] = []
        self.srv = str(base / "srv")
        self.run_id = f"{os.getpid():x}{random.getrandbits(20):05x}"[-9:]
        # short whatever TMPDIR says: ssh's control socket paths must stay under 108 bytes
        self.control_dir = Path(tempfile.mkdtemp(prefix="ogssh-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.identity_file = base / "id_ed25519"
        self.known_hosts = base / "known_hosts"
        self.ssh_config = base / "ssh_config"
        self._wrong_key = base / "wrong_host_key"
        self._stopped = False

    def __iter__(self):
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, key: int | str) -> SshHost:
        if isinstance(key, str):
            return next(h for h in self.hosts if h.name == key)
        return self.hosts[key]

    def require_isolation(self) -> None:
        """Skip the calling test when the hosts share this machine (loopback fallback)."""
        if not self.isolated:
            import pytest

            pytest.skip(f"sshd hosts are not isolated here ({self.why_not_isolated}): loopback fallback")

    def write_ssh_config(self, path: Path, known_hosts: Path, control: bool = True) -> Path:
        """An ssh_config for these hosts trusting ``known_hosts`` only. ``control=False``: no shared
        connection (a test of other keys must not reuse a connection made with the right ones)."""
        path.write_text(
            "Host *\n"
            "  User root\n"
            f"  IdentityFile {self.identity_file}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {known_hosts}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n"
            "  CheckHostIP no\n"
            "  BatchMode yes\n"
            "  PasswordAuthentication no\n"
            "  ConnectTimeout 10\n"
            "  ServerAliveInterval 5\n"
            "  ServerAliveCountMax 3\n"
            "  LogLevel ERROR\n"
            + (f"  ControlMaster auto\n  ControlPath {self.control_dir}/%C\n  ControlPersist 60\n" if control
               else "  ControlPath none\n")
        )
        return path

    def wrong_known_hosts(self, missing: bool = False) -> Path:
        """A known_hosts listing every host with a key none of them has (``missing``: listing none)."""
        path = self.base / ("empty_known_hosts" if missing else "wrong_known_hosts")
        key = (self._wrong_key.with_suffix(".pub")).read_text().split()[:2]
        path.write_text("" if missing else "".join(f"{_known_name(h)} {key[0]} {key[1]}\n" for h in self.hosts))
        return path

    def wrong_key_url(self, host: SshHost, scheme: str = "ssh", missing: bool = False) -> str:
        """``host``'s url through an ssh_config whose known_hosts has the wrong key for it (``missing``:
        no key for it at all); without a shared connection."""
        known = self.wrong_known_hosts(missing)
        config = self.write_ssh_config(known.with_name(f"ssh_config.{known.name}"), known, control=False)
        return host.url_with(config, scheme)

    # --- stopping --------------------------------------------------------------------------------

    def _stop_host(self, host: SshHost) -> None:
        proc, host._unshare = host._unshare, None
        if proc is None:
            return
        if host.init_pid is not None:
            try:
                os.kill(host.init_pid, signal.SIGKILL)  # PID 1 of the namespace: every process in it ends
            except ProcessLookupError:
                pass
        else:
            for pid in _descendants(proc.pid):  # the listener and its connections
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:  # unshare returns once its child, the namespace's init, is reaped: after every process in it
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if host._cut:  # the unreachable route is this machine's: it must not outlive the host
            _ip_batch([f"route del unreachable {host._net}"], check=False)
        for spawned in host._spawned:
            try:
                spawned.kill()
                spawned.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass

    def stop(self) -> None:
        """Close the shared connections, end every host (its namespaces and veth go with it)."""
        if self._stopped:
            return
        self._stopped = True
        closing = [subprocess.Popen(["ssh", "-F", str(self.ssh_config), "-O", "exit", "-p", str(h.port),
                                     f"root@{h.address}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for h in self.hosts if self.ssh_config.exists()]
        for proc in closing:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        # the namespaces' own teardown removes the veth pairs too, but later (a kernel work queue)
        links = [f"link del {h.veth}" for h in self.hosts if h.veth and h._unshare is not None]
        if links:
            _ip_batch(links, check=False)
        for host in self.hosts:
            self._stop_host(host)
        shutil.rmtree(self.control_dir, ignore_errors=True)


def _known_name(host: SshHost) -> str:
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def _sshd_config(host: SshHost, fleet: Fleet, listen: str) -> Path:
    path = host.dir / "sshd_config"
    path.write_text(
        f"ListenAddress {listen}\n"
        f"HostKey {host.dir / 'ssh_host_ed25519_key'}\n"
        f"PidFile {'/run/sshd.pid' if fleet.isolated else host.dir / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {fleet.base / 'authorized_keys'}\n"
        "UsePAM no\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "StrictModes no\n"
        "UseDNS no\n"
        "PrintMotd no\n"
        "PrintLastLog no\n"
        "LogLevel VERBOSE\n"
        "MaxSessions 64\n"
        "MaxStartups 200\n"
        f"SetEnv PATH={host.srv}/bin:{_REMOTE_PATH}\n"
        "Subsystem sftp internal-sftp\n"
    )
    return path


def _passwd_copy(host: SshHost) -> None:
    """This machine's users, root with /bin/sh as its shell, plus the host's own user."""
    lines = []
    for line in Path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "root" and len(fields) == 7:
            fields[6] = "/bin/sh"
        lines.append(":".join(fields))
    lines.append(f"{host.user}:x:{host.uid}:{host.uid}::/nonexistent:/usr/sbin/nologin")
    host.passwd.write_text("\n".join(lines) + "\n")


def _wait_listening(hosts: list[SshHost], deadline: float) -> None:
    waiting = list(hosts)
    while waiting:
        host = waiting[0]
        if host._unshare is not None and host._unshare.poll() is not None:
            raise RuntimeError(f"{host.name}: sshd exited {host._unshare.returncode}: {_tail(host.dir / 'sshd.log')}"
                               f"{_tail(host.dir / 'init.err')}")
        try:
            socket.create_connection((host.address, host.port), timeout=0.5).close()
            waiting.pop(0)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host.name}: sshd not listening on {host.address}:{host.port} within "
                                   f"{START_TIMEOUT_S:g}s: {_tail(host.dir / 'sshd.log')}") from None
            time.sleep(0.005)


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-500:].strip()
    except OSError:
        return ""


def _start_namespaced(fleet: Fleet, deadline: float) -> None:
    hosts = fleet.hosts
    nets = _free_subnets(len(hosts))
    preexec = _die_with_parent if threading.current_thread() is threading.main_thread() else None
    for host, net in zip(hosts, nets):
        host.address = str(net.network_address + 2)
        host.veth = f"og{fleet.run_id}{hosts.index(host)}"[-15:]
        config = _sshd_config(host, fleet, "0.0.0.0:22")
        with open(host.dir / "init.err", "wb") as err:
            host._unshare = subprocess.Popen(
                ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
                 "--propagation", "private", "sh", "-c", _INIT, "opsgate-host", str(host.root), fleet.srv,
                 str(host.passwd), host.address, str(config), str(host.dir / "sshd.log")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, preexec_fn=preexec,
                env={"PATH": _REMOTE_PATH, "LANG": "C.UTF-8"})
    batch = []
    for host, net in zip(hosts, nets):
        proc = host._unshare
        ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0))
        if not ready or proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"{host.name}: its namespaces were not set up: {_tail(host.dir / 'init.err')}")
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as handle:
            host.init_pid = int(handle.read().split()[0])
        batch += [f"link add {host.veth} type veth peer name eth0 netns {host.init_pid}",
                  f"addr add {host._near} dev {host.veth}",
                  f"link set {host.veth} up"]
    _ip_batch(batch)
    for host in hosts:
        host._unshare.stdin.write(b"go\n")
        host._unshare.stdin.close()
        host._unshare.stdout.close()
    _wait_listening(hosts, deadline)


def _start_loopback(fleet: Fleet, deadline: float) -> None:
    preexec = _die_with_parent if threading.current_thread() is threading.main_thread() else None
    for host in fleet.hosts:
        host.address, host.port = "127.0.0.1", _free_port()
        config = _sshd_config(host, fleet, f"127.0.0.1:{host.port}")
        host._unshare = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(host.dir / "sshd.log")],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, preexec_fn=preexec)
    _wait_listening(fleet.hosts, deadline)


@contextmanager
def start_hosts(n: int, base: Path, names: list[str] | None = None) -> Iterator[Fleet]:
    """Start ``n`` sshd hosts (named ``names`` or host1..hostN) with their files under ``base``;
    stop them all on exit, even on failure (and at interpreter exit, whatever happens)."""
    why = _ssh_tools()
    if why:
        raise RuntimeError(why)
    names = list(names or [f"host{i + 1}" for i in range(n)])
    if len(names) != n or len(set(names)) != n:
        raise ValueError(f"{n} distinct names expected, got {names}")
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    why_not = namespaces_unavailable()
    fleet = Fleet(base, isolated=why_not is None, why_not=why_not)
    atexit.register(fleet.stop)
    try:
        Path(fleet.srv).mkdir(exist_ok=True)
        for i, name in enumerate(names):
            host = SshHost(name, "", 22, base / "hosts" / name, fleet, user=f"app-{name}", uid=3001 + i)
            host.root.mkdir(parents=True, exist_ok=True)
            (host.root / "bin").mkdir(exist_ok=True)
            _passwd_copy(host)
            fleet.hosts.append(host)
        _keygen([fleet.identity_file, fleet._wrong_key] + [h.dir / "ssh_host_ed25519_key" for h in fleet.hosts])
        shutil.copyfile(fleet.identity_file.with_suffix(".pub"), base / "authorized_keys")
        deadline = time.monotonic() + START_TIMEOUT_S
        if fleet.isolated:
            _start_namespaced(fleet, deadline)
        else:
            _start_loopback(fleet, deadline)
        fleet.known_hosts.write_text("".join(
            f"{_known_name(h)} {' '.join((h.dir / 'ssh_host_ed25519_key.pub').read_text().split()[:2])}\n"
            for h in fleet.hosts))
        fleet.write_ssh_config(fleet.ssh_config, fleet.known_hosts)
        yield fleet
    finally:
        fleet.stop()
        atexit.unregister(fleet.stop)


def fleet_fixture(n: int = 3, names: list[str] | None = None, scope: str = "module"):
    """A pytest fixture starting ``n`` hosts for the module (``ssh_fleet = fleet_fixture(3)`` in a
    test file); skips the tests where OpenSSH is missing."""
    import pytest

    @pytest.fixture(scope=scope)
    def fixture(tmp_path_factory):
        why = _ssh_tools()
        if why:
            pytest.skip(why)
        with start_hosts(n, tmp_path_factory.mktemp("fleet"), names) as fleet:
            yield fleet

    return fixture
