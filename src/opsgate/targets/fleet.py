"""The run's hosts: one target per host (one pytest-testinfra host, so one connection), made
when its first check runs, closed when the run ends.

Host keys are checked, always, unless ``insecure_no_host_key_check`` says otherwise (warned):

- ``ssh://`` and ``safe-ssh://``: OpenSSH with ``BatchMode=yes`` (never a prompt),
  ``StrictHostKeyChecking=yes`` against ``known_hosts`` (or ssh's own), ``ConnectTimeout``,
  keep-alives that end a connection that stopped answering, and one master connection per
  host (``ControlMaster``/``ControlPersist``, its socket in a private folder of this run) that
  every check on that host shares; closing the run ends it (``ssh -O exit``). Once the master
  is up, operations go to its control socket directly (:mod:`opsgate.targets.sshmux`), not
  through one ``ssh`` client process each. No agent or X11 forwarding, whatever ssh's config says.
- ``paramiko://``: unknown and changed host keys are refused (paramiko's RejectPolicy, with
  ``known_hosts`` loaded), not testinfra's default of accepting them with a warning.
- ``podman://``, ``docker://``, ``kubectl://``, ``local://`` ...: testinfra's backend as it is.

Each host's target bounds its remote operations in flight (``per_host_concurrency``) while
hosts are checked in parallel.

>>> from opsgate.hosts import HostEntry, HostOptions
>>> fleet = Fleet({"here": HostEntry(url="local://")}, HostOptions())
>>> fleet.target("here") is fleet.target("here"), fleet.describe("here")["transport"]
(True, 'local')
>>> fleet.target("here").ping(timeout=10); fleet.close()
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from ..hosts import HostEntry, HostOptions
from . import Target, sshmux

#: seconds an idle master connection stays open (the run closes it at its end anyway)
CONTROL_PERSIST_S = 120
#: keep-alive probes: a connection that stopped answering ends after about 3 x 5 s
ALIVE_INTERVAL_S, ALIVE_COUNT = 5, 3
#: seconds the run's end waits for its hosts' connections to close (each close is bounded itself)
CLOSE_WAIT_S = 10


class Fleet:
    """The hosts of one run and their targets."""

    def __init__(self, hosts: dict[str, HostEntry], options: HostOptions | None, base_dir: Path | None = None) -> None:
        self.hosts = hosts
        self.options = options or HostOptions()
        self.base_dir = base_dir or Path.cwd()
        self._targets: dict[str, Target] = {}
        self._lock = threading.Lock()
        self._control_dir: str | None = None
        self._routes: dict = {}  # host name -> its opsgate.via.Route (checks with via:)

    def target(self, name: str) -> Target:
        """The target of host ``name``, made on first use (KeyError for an unknown host)."""
        target = self._targets.get(name)
        if target is not None:
            return target
        entry = self.hosts[name]
        with self._lock:
            if name not in self._targets:
                self._targets[name] = self._make(name, entry)
            return self._targets[name]

    def route(self, name: str):
        """The ``via:`` route through host ``name`` (:class:`opsgate.via.Route`: forwards over its
        connection), made on first use; ViaError when the host cannot forward (not ssh)."""
        from ..via import Route

        target = self.target(name)
        with self._lock:
            if name not in self._routes:
                self._routes[name] = Route(name, target, diagnose_timeout=self.options.connect_timeout)
            return self._routes[name]

    def describe(self, name: str) -> dict[str, str]:
        """How messages name the host's connection: transport, address (no credentials),
        known_hosts and the identity used."""
        entry = self.hosts[name]
        transport = entry.transport
        parts = urlsplit(entry.url.replace(f"{transport}://", "ssh://", 1))
        try:
            port = parts.port
        except ValueError:
            port = None
        address = (parts.hostname or "") + (f":{port}" if port else "")
        if self.options.insecure_no_host_key_check:
            known = "no known_hosts: host keys are not checked"
        else:
            known = self._path(self.options.known_hosts) or "~/.ssh/known_hosts"
        identity = self._identity(entry)
        return {"transport": transport, "address": address or name, "known_hosts": known,
                "identity": f"identity file {identity}" if identity else "the ssh agent's keys"}

    def close(self) -> None:
        """End every host's connection and remove the run's control sockets."""
        with self._lock:
            targets, self._targets = self._targets, {}
            routes, self._routes = self._routes, {}
        for route in routes.values():
            route.close()
        # all hosts at once: each close asks its master to end (a bounded ssh -O exit), which
        # one after the other adds up with many hosts at the end of every run
        closing = [threading.Thread(target=_close_quietly, args=(target,), daemon=True, name="opsgate close")
                   for target in targets.values()]
        for thread in closing:
            thread.start()
        deadline = time.monotonic() + CLOSE_WAIT_S
        for thread in closing:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._control_dir:
            shutil.rmtree(self._control_dir, ignore_errors=True)
            self._control_dir = None

    # --- building targets ---------------------------------------------------------------------

    def _path(self, value: str | None) -> str | None:
        if not value:
            return None
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else self.base_dir / path)

    def _identity(self, entry: HostEntry) -> str | None:
        return self._path(entry.identity_file or self.options.identity_file)

    def _make(self, name: str, entry: HostEntry) -> Target:
        from testinfra.backend import get_backend  # an optional dependency: only remote hosts need it
        from testinfra.host import Host

        from .testinfra import TestinfraTarget

        transport = entry.transport
        kwargs: dict = {}
        if transport in ("ssh", "safe-ssh"):
            kwargs = self._ssh_arguments(entry)
        backend = _paramiko_backend(entry, self) if transport == "paramiko" else get_backend(entry.url, **kwargs)
        backend._encoding = "utf-8"  # testinfra would otherwise ask the host's python first (one more round trip)
        if transport in ("ssh", "safe-ssh"):
            _run_local_bounded(backend, shell=False)
            _run_through_the_master(backend)
        elif transport != "paramiko":  # paramiko reads its own channel
            _run_local_bounded(backend)
        host = Host(backend)
        backend.set_host(host)
        target = TestinfraTarget(host, self.options.per_host_concurrency, name=f"{name} ({transport})",
                                 give_up_on_hang=True)
        if transport in ("ssh", "safe-ssh"):
            target.close = lambda: _ssh_exit(backend, kwargs["ssh_extra_args"])  # type: ignore[method-assign]
        elif transport == "paramiko":
            target.close = lambda: backend.__dict__.get("_checked_client") and backend.client.close()  # type: ignore[method-assign]
        return target

    def _ssh_arguments(self, entry: HostEntry) -> dict:
        if self._control_dir is None:  # short: a socket path is limited to ~100 bytes
            self._control_dir = tempfile.mkdtemp(prefix="opsgate-ssh-")
        options = self.options
        # never lend the checked host this machine's agent or display (a user's ssh config may
        # say otherwise); sessions through the master (sshmux) never ask for them either
        args = ["-o BatchMode=yes", "-o LogLevel=ERROR", "-o ForwardAgent=no", "-o ForwardX11=no", f"-o ConnectTimeout={max(1, round(options.connect_timeout))}",
                f"-o ServerAliveInterval={ALIVE_INTERVAL_S}", f"-o ServerAliveCountMax={ALIVE_COUNT}",
                "-o ControlMaster=auto", f"-o ControlPersist={CONTROL_PERSIST_S}s",
                f"-o ControlPath={shlex.quote(os.path.join(self._control_dir, '%C'))}"]
        if options.insecure_no_host_key_check:
            args += ["-o StrictHostKeyChecking=no", "-o UserKnownHostsFile=/dev/null"]
        else:
            args += ["-o StrictHostKeyChecking=yes"]
            if options.known_hosts:
                args += [f"-o UserKnownHostsFile={shlex.quote(self._path(options.known_hosts))}",
                         "-o GlobalKnownHostsFile=/dev/null"]
        identity = self._identity(entry)
        if identity:
            args += ["-o IdentitiesOnly=yes"]
        return {"ssh_extra_args": " ".join(args), "ssh_identity_file": identity,
                "timeout": max(1, round(options.connect_timeout)), "controlpersist": CONTROL_PERSIST_S}


def _close_quietly(target: Target) -> None:
    try:
        target.close()
    except Exception:  # closing a broken connection may fail; it is dropped anyway
        pass


def _run_local_bounded(backend, shell: bool = True) -> None:
    """testinfra's ``run_local`` (how its ssh, podman, docker, kubectl, local ... backends start
    their commands here) with the output read bounded: ``sshmux.STREAM_LIMIT`` per stream, past
    which the command is killed and the operation fails (a host or container ignoring its
    commands' own bounds does not fill this memory; testinfra reads to the end).

    ``shell=False`` (ssh): testinfra hands the ``ssh ...`` line it built to ``/bin/sh``, one
    process more per remote operation (~1 ms of CPU each, hundreds per run); the same line's
    words, split as the shell splits them (opsgate's options and testinfra's quoted arguments
    hold no expansions), go to ``ssh`` directly instead.

    >>> from testinfra.backend import get_backend
    >>> backend = get_backend("ssh://web1", ssh_extra_args="-o BatchMode=yes")
    >>> _run_local_bounded(backend, shell=False)
    >>> backend.run_local("echo %s %s", "it's", "$HOME").stdout
    "it's $HOME\\n"
    """
    def run_local(command: str, *args: str):
        line = backend.quote(command, *args)
        argv = line if shell else shlex.split(line)
        # a shell's children (podman exec ...) go with it: its own process group, killed whole;
        # ssh alone is killed by itself (its ControlPersist master must outlive it)
        process = subprocess.Popen(argv, shell=shell, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=shell)
        try:
            stdout, stderr = sshmux.collect(process.stdout.fileno(), process.stderr.fileno())
        except BaseException:
            if shell:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            raise
        finally:
            process.stdout.close()
            process.stderr.close()
            process.wait()
        return backend.result(process.returncode, backend.encode(line), stdout, stderr)

    backend.run_local = run_local


def _run_through_the_master(backend) -> None:
    """Once a host's master connection is up, its remote operations go to the master's control
    socket directly (:mod:`opsgate.targets.sshmux`) instead of through one ``ssh`` client process
    each; the first operation, and any the master cannot take, still start ``ssh`` (which makes
    the master). The control path and the environment ``ssh`` would send (``SendEnv``/``SetEnv``)
    are read once from ``ssh -G`` with the host's own options, so both ways send the same.

    >>> from testinfra.backend import get_backend
    >>> backend = get_backend("ssh://web1", ssh_extra_args="-o ControlPath=none")
    >>> _run_through_the_master(backend)
    >>> backend.run_ssh.__name__, _master_of(backend)
    ('run_ssh', None)
    """
    by_client = backend.run_ssh
    state: dict = {}
    lock = threading.Lock()

    def run_ssh(command: str):
        master = state.get("master")
        if master is None and state.get("tried_client"):
            with lock:
                if "master" not in state:
                    state["master"] = _master_of(backend) or False
            master = state["master"]
        if master:
            path, env = master
            try:
                rc, out, err = sshmux.run(path, command, env)
            except sshmux.Unavailable:
                pass  # the master is gone or refused: ssh makes a new one
            else:
                result = backend.result(rc, backend.encode(command), out, err)
                if rc == 255:  # as testinfra's run_ssh: ssh's own failure (or the command's 255)
                    raise RuntimeError(result)
                return result
        state["tried_client"] = True
        return by_client(command)

    backend.run_ssh = run_ssh


def _master_of(backend) -> tuple[str, list[str]] | None:
    """The control socket ``ssh`` uses for this host and the environment it would send with a
    command, from ``ssh -G`` (None: no master connection is configured, or ssh cannot say)."""
    cmd, args = backend._build_ssh_command("true")
    argv = shlex.split(backend.quote(" ".join(cmd), *args))
    if argv[0] != "ssh":  # sshpass: never for opsgate's hosts (passwords are refused at load)
        return None
    try:
        shown = subprocess.run([*argv[:-2], "-G", argv[-2]], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    path, send, set_ = None, [], []
    for line in shown.stdout.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(" ")
        if key == "controlpath" and value and value != "none":
            path = value
        elif key == "sendenv":
            send.append(value)
        elif key == "setenv":
            set_ += value.split()
    if shown.returncode != 0 or path is None:
        return None
    env = [f"{k}={v}" for k, v in os.environ.items() if any(fnmatch.fnmatchcase(k, p) for p in send)]
    return path, env + set_


def _ssh_exit(backend, extra_args: str) -> None:
    """Ask the host's master connection to end (bounded)."""
    spec = backend.host
    argv = ["ssh", *shlex.split(extra_args), "-O", "exit"]
    if spec.user:
        argv += ["-o", f"User={spec.user}"]
    if spec.port:
        argv += ["-o", f"Port={spec.port}"]
    subprocess.run([*argv, spec.name], capture_output=True, timeout=5, check=False)


def _paramiko_backend(entry: HostEntry, fleet: Fleet):
    """testinfra's paramiko backend with host keys checked: ``known_hosts`` loaded and unknown
    keys refused (testinfra's own accepts them with a warning)."""
    try:
        import paramiko
    except ImportError:
        raise ImportError("paramiko:// needs paramiko (pip install paramiko), or use ssh://") from None
    from testinfra.backend import parse_hostspec
    from testinfra.backend.paramiko import ParamikoBackend

    options = fleet.options
    known = fleet._path(options.known_hosts)

    class CheckedParamikoBackend(ParamikoBackend):
        @property
        def client(self):  # type: ignore[override]
            if "_checked_client" not in self.__dict__:
                client = paramiko.SSHClient()
                if options.insecure_no_host_key_check:
                    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
                else:
                    client.load_system_host_keys(known) if known else client.load_system_host_keys()
                    client.set_missing_host_key_policy(paramiko.RejectPolicy())
                client.connect(hostname=self.host.name, port=int(self.host.port or 22), username=self.host.user,
                               password=self.host.password, key_filename=self.ssh_identity_file, timeout=self.timeout,
                               banner_timeout=self.timeout, auth_timeout=self.timeout)
                self.__dict__["_checked_client"] = client
            return self.__dict__["_checked_client"]

    host, kwargs = parse_hostspec(entry.url)
    kwargs.pop("connection", None)
    kwargs.setdefault("ssh_identity_file", fleet._identity(entry))
    kwargs.setdefault("timeout", max(1, round(options.connect_timeout)))
    return CheckedParamikoBackend(host, **kwargs)
