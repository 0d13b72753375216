"""Real containers for the tests: podman's Docker-compatible API on a private socket.

As ../shared/SERVICES.md describes: runc instead of crun with lowered ulimits (through a
``CONTAINERS_CONF`` file), an image built locally from busybox (no registry is reachable),
health checks triggered with ``podman healthcheck run`` (no systemd timers), and the
``conmon`` processes each ``exec`` leaves behind ended in teardown.

>>> import tempfile, pathlib
>>> with PodmanEngine(pathlib.Path(tempfile.mkdtemp())) as engine:
...     engine.run("echo hello; sleep 30").status
'running'
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import docker
import psutil

IMAGE = "localhost/opsgate-busybox:1"
APPLETS = ("sh", "echo", "cat", "sleep", "true", "false", "ls", "date", "wget", "nc")


class PodmanEngine:
    """``podman system service`` on ``root/podman.sock``; ``run()`` starts labelled containers
    that teardown removes."""

    def __init__(self, root: Path):
        self.root = root
        self.label = f"opsgate-test-{uuid.uuid4().hex[:8]}"
        conf = root / "containers.conf"
        conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
                        '[engine]\nruntime = "runc"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.url = f"unix://{root / 'podman.sock'}"
        self.service: subprocess.Popen | None = None
        self.started = time.time()

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=120, check=check)

    def __enter__(self) -> "PodmanEngine":
        if not shutil.which("podman"):
            raise RuntimeError("podman not found (ci/install-services.sh installs podman, runc and busybox-static)")
        if self.podman("image", "exists", IMAGE, check=False).returncode != 0:
            self._build_image()
        self.service = subprocess.Popen(["podman", "system", "service", "--time=0", self.url], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=open(self.root / "service.log", "w"))
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client = docker.DockerClient(base_url=self.url, timeout=60)  # asks the API version
                self.client.ping()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.service.kill()
                    raise RuntimeError(f"podman service did not start: {(self.root / 'service.log').read_text()[-800:]}")
                time.sleep(0.1)

    def _build_image(self) -> None:
        busybox = shutil.which("busybox") or "/bin/busybox"
        rootfs = self.root / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy(busybox, rootfs / "bin" / "busybox")
        for applet in APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        tar = self.root / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
        self.podman("import", "--change", 'CMD ["/bin/sh"]', str(tar), IMAGE)

    def run(self, script: str, name: str | None = None, labels: dict | None = None, **kwargs):
        """Start ``sh -c script`` in a container (detached) and return it."""
        name = name or f"ct-{uuid.uuid4().hex[:8]}"
        container = self.client.containers.run(IMAGE, ["sh", "-c", script], name=name, detach=True,
                                               labels={self.label: "1", **(labels or {})}, **kwargs)
        container.reload()
        return container

    def healthcheck(self, name: str, times: int = 1) -> None:
        """Run the container's health check now (podman has no timer without systemd)."""
        for _ in range(times):
            self.podman("healthcheck", "run", name, check=False)

    def _remove(self, container) -> None:
        """Remove one container; a container that stops just as the removal kills it makes podman
        answer 500 ("container state improper: stopped"): asked again once it has stopped, and
        the other containers are removed whatever happens to this one (a busy one left running
        would burn a core for the rest of the test run)."""
        for _ in range(3):
            try:
                container.remove(force=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError:
                time.sleep(0.5)
        self.podman("rm", "-f", container.id, check=False)

    def __exit__(self, *exc) -> None:
        try:
            for container in self.client.containers.list(all=True, filters={"label": self.label}):
                self._remove(container)
        finally:
            if self.service:
                self.service.terminate()
                self.service.wait(10)
            for proc in psutil.process_iter(["name", "create_time"]):
                if proc.info["name"] == "conmon" and proc.info["create_time"] >= self.started - 1:
                    try:
                        proc.kill()
                    except psutil.Error:
                        pass
