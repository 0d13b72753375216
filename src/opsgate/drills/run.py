"""Running one drill: its steps in order, each timed; teardown always.

restore -> install -> start -> healthy -> verify, then teardown whatever happened. The
first step that fails ends the drill; its message names the step and carries the step's
evidence, and says that teardown ran (and what it could not remove, if anything).

Scratch only: everything is made under one :class:`opsgate.backups.base.Scratch` (a
private directory, a deadline, cleanups that run on success, failure, timeout, SIGINT and
SIGTERM). Before anything is made, a drill is refused when its scratch would be the live
thing: a port something already listens on, a copy whose source holds the scratch place.
While the drill waits until healthy, the process answering on the scratch port must be
the one the drill started, so a live service on the same port can never pass it.
"""

from __future__ import annotations

import fnmatch
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..backups.base import Scratch
from ..redact import REDACTOR
from . import placeholders

START_LOG_TAIL = 2000  # characters of the started service's output kept as evidence
STOP_GRACE_S = 5.0  # SIGTERM to SIGKILL for the started service's process group


class StepFailed(Exception):
    """A step did not pass: its message is the cause."""


@dataclass
class Step:
    """One step of a drill as the record shows it."""

    phase: str  # restore, install, start, healthy, verify, teardown
    name: str
    started_at: float  # epoch seconds
    duration_s: float = 0.0
    status: str = "pass"  # pass, fail
    message: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class DrillRecord:
    """What a drill did and measured; ``to_json()`` is the check's evidence and the source of
    the auditor's record (:mod:`opsgate.drills.record`)."""

    drill: str
    severity: str
    started_at: float
    user: str
    host: str
    rto_target_s: float
    rpo_target_s: float
    finished_at: float = 0.0
    scratch: str = ""
    port: int | None = None
    recovery_points: list[dict[str, Any]] = field(default_factory=list)
    rto_s: float | None = None
    rpo_s: float | None = None
    steps: list[Step] = field(default_factory=list)
    failure: str | None = None
    teardown: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_drill(item: Any, ctx: Any) -> DrillRecord:
    """Run ``item`` (a :class:`opsgate.probes.drill.DrillCheck`); never raises for a failed step."""
    from ..runner import current_note

    note = current_note.get()
    record = DrillRecord(item.name, item.severity, time.time(), _user(), socket.gethostname(),
                         item.rto_target(), item.rpo_target())
    t0 = time.monotonic()
    scratch = Scratch(timeout=item.timeout, label=f"drill-{item.name}")
    record.scratch = str(scratch.dir)
    run = _Run(item, ctx, scratch, record, note, t0)
    try:
        run.all_steps()
    except StepFailed as exc:
        record.failure = str(exc)
    except TimeoutError as exc:
        record.failure = f"the drill ran out of time ({item.timeout:g}s): {exc}"
    except Exception as exc:  # a drill bug must not skip teardown nor pass
        record.failure = REDACTOR.text(f"the drill could not go on: {type(exc).__name__}: {exc}")
    finally:
        note(f"teardown ({_elapsed(t0)} of RTO {_clock(item.rto_target())})")
        run.teardown()
    record.finished_at = time.time()
    if record.failure:
        problems = record.teardown.get("problems") or []
        record.failure += ("; teardown ran" + (f" but left: {'; '.join(problems)}" if problems
                                               else ": scratch removed, processes ended"))
    return record


class _Run:
    """The state of one drill while it runs."""

    def __init__(self, item: Any, ctx: Any, scratch: Scratch, record: DrillRecord, note: Callable[[str], None],
                 t0: float) -> None:
        self.item, self.ctx, self.scratch, self.record, self.note, self.t0 = item, ctx, scratch, record, note, t0
        self.values: dict[str, str] = {"scratch": str(scratch.dir)}
        self.service: subprocess.Popen | None = None
        self.shared = None
        self.base_dir = Path(scratch.dir)

    # ------------------------------------------------------------------ the steps

    def all_steps(self) -> None:
        item = self.item
        port = self._port()
        self.record.port = port
        self.values.update(port=str(port), url=f"http://127.0.0.1:{port}")
        self._refuse_live()
        restore_started = time.monotonic()
        for restore in item.restore:
            what = f"copy {restore.directory}" if restore.directory else f"backup {restore.backup}"
            self._step("restore", what, lambda r=restore: self._restore(r))
        for index, command in enumerate(item.install):
            self._step("install", _shown(command), lambda c=command: self._install(c))
        if item.start is not None:
            self._step("start", _shown(item.start), self._start)
        for phase in ("healthy", "verify"):
            for index in range(len(getattr(item, phase))):
                check = item.step(phase, index, self.values)
                self._step(phase, f"{check.kind} {check.name}", lambda c=check, p=phase: self._check(p, c))
        self.record.rto_s = round(time.monotonic() - restore_started, 3)
        self.record.rpo_s = max((p["age_s"] for p in self.record.recovery_points), default=0.0)

    def _step(self, phase: str, name: str, action: Callable[[], dict[str, Any] | None]) -> None:
        self.note(f"{phase}: {name} ({_elapsed(self.t0)} of RTO {_clock(self.item.rto_target())})")
        step = Step(phase, REDACTOR.text(name), time.time())
        self.record.steps.append(step)
        began = time.monotonic()
        try:
            step.evidence = action() or {}
        except StepFailed as exc:
            step.status, step.message = "fail", REDACTOR.text(str(exc))
            raise StepFailed(f"step {len(self.record.steps)} ({phase}: {step.name}) failed: {step.message}") from None
        except TimeoutError as exc:
            step.status, step.message = "fail", REDACTOR.text(f"out of time: {exc}")
            raise StepFailed(f"step {len(self.record.steps)} ({phase}: {step.name}) failed: {step.message}") from None
        finally:
            step.duration_s = round(time.monotonic() - began, 3)
        step.message = step.evidence.pop("message", "") if isinstance(step.evidence, dict) else ""

    def _port(self) -> int:
        """The scratch instance's port: the configured one (refused when something listens on
        it: that may be the live service) or a free one."""
        if self.item.port is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]
        if _listening(self.item.port):
            raise StepFailed(f"refused before it started: port {self.item.port} is already in use (a live service "
                             "may hold it); a drill starts its copy on a port nothing listens on")
        return self.item.port

    def _refuse_live(self) -> None:
        """A copy whose source is, or holds, the scratch place would copy into itself."""
        for restore in self.item.restore:
            if restore.directory:
                source = self.ctx.path(restore.directory).resolve()
                scratch = Path(self.scratch.dir).resolve()
                if scratch == source or source in scratch.parents:
                    raise StepFailed(f"refused before it started: the copy's source {source} holds the scratch "
                                     f"place {scratch}")

    def _restore(self, restore: Any) -> dict[str, Any]:
        if restore.directory:
            return self._copy(restore)
        from .backups import restore_backup

        restored, point, evidence = restore_backup(restore.backup, self.ctx, self.scratch, restore.take_first)
        self.values[f"restored:{restore.backup}"] = restored
        self.values.setdefault("restored", restored)
        self.record.recovery_points.append({"restore": f"backup {restore.backup}", **point})
        return evidence

    def _copy(self, restore: Any) -> dict[str, Any]:
        source = self.ctx.path(restore.directory)
        if not source.is_dir():
            raise StepFailed(f"{source} is not a directory")
        target = Path(self.scratch.dir) / "copy"
        if "copy" in self.values:
            target = Path(self.scratch.dir) / f"copy-{len([k for k in self.values if k.startswith('copy')])}"
        patterns = list(restore.exclude)
        counted = {"files": 0, "bytes": 0}

        def ignore(folder: str, entries: list[str]) -> set[str]:
            self.scratch.remaining()  # a huge tree stops at the drill's deadline
            skipped = {e for e in entries if any(fnmatch.fnmatch(e, p) for p in patterns)}
            for entry in entries:
                if entry not in skipped:
                    try:
                        st = os.lstat(os.path.join(folder, entry))
                    except OSError:
                        continue
                    if not os.path.isdir(os.path.join(folder, entry)):
                        counted["files"] += 1
                        counted["bytes"] += st.st_size
            return skipped

        taken = time.time()
        try:
            shutil.copytree(source, target, symlinks=True, ignore=ignore)
        except shutil.Error as exc:
            raise StepFailed(f"could not copy {source}: {len(exc.args[0])} files failed, first: "
                             f"{exc.args[0][0][2] if exc.args and exc.args[0] else exc}") from None
        except OSError as exc:
            raise StepFailed(f"could not copy {source}: {exc.strerror or exc}") from None
        self.values.setdefault("copy", str(target))
        self.base_dir = target if self.base_dir == Path(self.scratch.dir) else self.base_dir
        self.record.recovery_points.append({"restore": f"copy {restore.directory}", "id": str(source),
                                            "taken_at": taken, "age_s": 0.0})
        return {"message": f"copied {counted['files']:,} files ({counted['bytes']:,} bytes) to {target}",
                "files": counted["files"], "bytes": counted["bytes"], "to": str(target)}

    def _environment(self, command: Any) -> dict[str, str]:
        env = dict(os.environ)
        env.update(OPSGATE_DRILL_PORT=self.values["port"], OPSGATE_DRILL_URL=self.values["url"],
                   OPSGATE_DRILL_SCRATCH=self.values["scratch"])
        if "copy" in self.values:
            env["OPSGATE_DRILL_COPY"] = self.values["copy"]
        if "restored" in self.values:
            env["OPSGATE_DRILL_RESTORED"] = self.values["restored"]
        env.update(placeholders.fill(command.env_values(), self.values))
        return env

    def _argv(self, command: Any) -> list[str]:
        if command.argv:
            return placeholders.fill(list(command.argv), self.values)
        return ["/bin/sh", "-c", placeholders.fill(command.shell, self.values)]

    def _cwd(self, command: Any) -> Path:
        base = Path(self.values.get("copy", self.values["scratch"]))
        if command.cwd:
            cwd = Path(placeholders.fill(command.cwd, self.values))
            return cwd if cwd.is_absolute() else base / cwd
        return base

    def _install(self, command: Any) -> dict[str, Any]:
        log = Path(self.scratch.dir) / f"install-{len(self.record.steps)}.log"
        timeout = min(command.timeout, self.scratch.remaining())
        began = time.monotonic()
        with log.open("wb") as out:
            try:
                proc = subprocess.Popen(self._argv(command), cwd=self._cwd(command), env=self._environment(command),
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            except OSError as exc:
                raise StepFailed(f"cannot run {self._argv(command)[0]}: {exc.strerror or exc}") from None
            self.scratch.track(proc)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop(proc)
                raise StepFailed(f"did not finish within {timeout:g}s; output ends: {_tail(log)!r}") from None
            finally:
                self.scratch.untrack(proc)
        if code != 0:
            raise StepFailed(f"exited with code {code}; output ends: {_tail(log)!r}")
        return {"message": f"exited 0 after {time.monotonic() - began:.1f}s",
                "exit_code": 0, "output_tail": _tail(log, 500)}

    def _start(self) -> dict[str, Any]:
        command = self.item.start
        log = Path(self.scratch.dir) / "start.log"
        self.start_log = log
        with log.open("wb") as out:
            try:
                self.service = subprocess.Popen(self._argv(command), cwd=self._cwd(command),
                                                env=self._environment(command), stdin=subprocess.DEVNULL,
                                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise StepFailed(f"cannot run {self._argv(command)[0]}: {exc.strerror or exc}") from None
        self.scratch.on_cleanup(lambda: _stop(self.service), f"stop the started service (pid {self.service.pid})")
        return {"message": f"started pid {self.service.pid} on port {self.values['port']}", "pid": self.service.pid}

    def _check(self, phase: str, check: Any) -> dict[str, Any]:
        from ..probes import ProbeContext, Shared
        from ..runner import run_check

        if self.shared is None:
            self.shared = Shared()
            # registered after the restores: it runs before their cleanups (a DROP DATABASE
            # waits for no connection of ours)
            self.scratch.on_cleanup(self.shared.close, "close the drill's connections")
        ctx = ProbeContext(self.base_dir, self.shared, self.ctx.target)
        if phase == "healthy":
            # retry until healthy here, not in the runner: between attempts the started
            # service is watched, so one that died fails now instead of at the deadline
            retry = check.retry
            deadline = time.monotonic() + (retry.timeout if retry else max(1.0, self.scratch.remaining() - 1.0))
            interval = retry.interval if retry else 0.5
            check = check.model_copy(update={"retry": None})
            attempts, pause = 0, min(0.05, interval)
            while True:
                attempts += 1
                self._service_alive()
                result = run_check(check, ctx)
                if result.status in ("pass", "warn") or time.monotonic() + pause > deadline:
                    break
                self.note(f"healthy: {check.kind} {check.name}, attempt {attempts + 1} "
                          f"({_elapsed(self.t0)} of RTO {_clock(self.item.rto_target())})")
                # a service just started is often up within a moment: ask soon, then every interval
                time.sleep(pause)
                pause = min(interval, pause * 2)
            self._service_alive()
            if result.status in ("fail", "error"):
                raise StepFailed(f"not healthy after {attempts} attempts; last: {result.message}")
            if self.service is not None:
                self._owner_is_ours()
        else:
            self._service_alive()
            result = run_check(check, ctx)
            attempts = result.attempts
            self._service_alive()
            if result.status in ("fail", "error"):
                raise StepFailed(result.message)
        return {"message": result.message or f"{check.kind} check passed", "status": result.status,
                "attempts": attempts, "evidence": result.evidence}

    def _service_alive(self) -> None:
        if self.service is not None and self.service.poll() is not None:
            raise StepFailed(self._service_died())

    def _service_died(self) -> str:
        code = self.service.returncode if self.service is not None else None
        return (f"the started service exited with code {code} before the drill ended; its output ends: "
                f"{_tail(self.start_log)!r}")

    def _owner_is_ours(self) -> None:
        """The process listening on the scratch port is the started one (or in its process
        group): otherwise whatever answered is not the restored service."""
        port = int(self.values["port"])
        owners = _listeners(port)
        if not owners:
            return  # it answers on another port, or it is not a TCP service: the checks said healthy
        mine = self.service.pid
        foreign = []
        for pid in owners:
            try:
                if os.getpgid(pid) != mine:
                    foreign.append(pid)
            except OSError:
                continue
        if foreign:
            raise StepFailed(f"port {port} is held by pid {foreign[0]}, not by the service the drill started "
                             f"(pid {mine}): what answered is not the restored copy")

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        step = Step("teardown", "stop the service, drop scratch databases, remove scratch", time.time())
        began = time.monotonic()
        problems = self.scratch.close()
        port = int(self.values["port"]) if "port" in self.values else None
        port_free = port is None or _wait_free(port, 5.0)
        if not port_free:
            problems.append(f"port {port} is still in use")
        left = Path(self.scratch.dir).exists()
        if left:
            problems.append(f"{self.scratch.dir} still exists")
        step.duration_s = round(time.monotonic() - began, 3)
        step.status = "fail" if problems else "pass"
        step.message = "; ".join(problems) if problems else (
            f"scratch removed, processes ended{f', port {port} free' if port else ''}")
        self.record.steps.append(step)
        self.record.teardown = {"ran": True, "problems": problems, "port_free": port_free,
                                "scratch_removed": not left}


def _stop(proc: subprocess.Popen | None) -> None:
    """End a started process group: SIGTERM, then SIGKILL after a grace."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything it left in its group
    except (ProcessLookupError, PermissionError):
        pass


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_free(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _listening(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _listeners(port: int) -> list[int]:
    import psutil

    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return []
    return sorted({c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   and c.pid})


def _tail(path: Path, limit: int = START_LOG_TAIL) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return REDACTOR.excerpt(" | ".join(line for line in text.strip().splitlines()[-5:]), limit, keep="tail")


def _shown(command: Any) -> str:
    return " ".join(command.argv) if command.argv else command.shell


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _elapsed(t0: float) -> str:
    return _clock(time.monotonic() - t0)


def _clock(seconds: float) -> str:
    """``1h02m03s`` / ``2m05s`` / ``4.2s``.

    >>> _clock(3723), _clock(125), _clock(4.24)
    ('1h02m03s', '2m05s', '4.2s')
    """
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
