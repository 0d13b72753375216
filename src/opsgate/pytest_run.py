"""An opsgate run as pytest plugins: environment -> checks -> concurrent probes -> report.

Imported only once the light entry point (:mod:`opsgate.plugin`) has decided the run is an
opsgate run; :func:`activate` then loads the environment and registers the run's plugin
objects, each doing one job (as pytest's own ``junitxml`` and ``terminal`` plugins do):

- ``opsgate-demo`` (:class:`opsgate.demo.plugin.DemoPlugin`): with no environment given, the
  embedded default's demo target, started before the environment is loaded, stopped last.
- ``opsgate-collect`` (:class:`CheckCollection`): every configured item of a cadence becomes a
  test item of that cadence's folder (``checks/daily::test_http[api-health]``) with no stub
  file (:class:`ConfiguredCheck`); a hand-written ``def test_http(http_check, verify)`` stub
  takes the place of the collected items of its kind; -k/-m deselection is remembered.
- ``opsgate-run`` (:class:`CheckRun`): before the first test every selected check is submitted
  to the engine; each test waits for its own result (``verify``); hand-written checks'
  ``depends_on``; a warned check shows ``W``.
- ``opsgate-check-reports`` (:class:`CheckReports`): a configured check's failure report is
  its message, built without formatting a traceback.
- ``opsgate-record`` (:class:`RunRecorder`): the report's ``opsgate`` block, the report written
  to ``reports/<environment>/<cadence>-<UTC timestamp>.json`` and ``-latest.json`` (older
  ones beyond ``--keep-reports`` pruned), and the end-of-run gate (``--gate``). Before the
  first check ``-latest`` is replaced by a "run started" marker, so a killed run leaves a
  gate ERROR. A configured item of the run's cadence that did not run is listed in
  ``opsgate.not_run`` (a gate ERROR); -k/-m deselection makes the run partial instead. A
  report that cannot be built or written makes the exit status 2.
- ``opsgate-summary`` (:class:`Summary`): the terminal's closing block.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import re
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _pytest.runner import check_interactive_exception, get_reraise_exceptions

from . import envfile, severity as sev
from .demo.plugin import DemoPlugin
from .engine import Engine
from .model import CheckItem
from .plugin import STATE, arg_paths, cadence_of, environment_wanted, is_cadence_dir, marker_severity, scale
from .probes import ProbeContext
from .progress import Progress
from .record import RunRecord
from .redact import REDACTOR, sink, sink_document
from .remedy import of_check as remedy_of, of_marker, remedy_for, suffix as remedy_suffix
from .report import ReportError, prune_reports, read_key_file, report_folder, seal_key_from_environment, write_marker, write_report
from .hosts import hosts_block
from .results import CheckResult, Status, status_word
from .runner import forget_shared, run_check
from .scheduler import blocked, prerequisites_first
from .summary import write_summary

WAIT_SLICE_S = 0.25  # a test waits for its check in slices this long, drawing progress between them
GRACE_S = 30.0  # how long a test waits for its check beyond the check's own budget
BACKSTOP_S = GRACE_S + 10  # pytest-timeout fires later still, so the engine's own message wins

RESULT = pytest.StashKey[CheckResult]()
ITEM = pytest.StashKey[CheckItem]()


@dataclass
class RunState:
    """Everything one opsgate run holds between pytest's hooks."""

    loaded: envfile.LoadedEnvironment
    cadence: str
    reports_dir: Path  # this environment's folder: <reports root>/<environment>
    write_reports: bool
    concurrency: int
    keep_reports: int = 50
    demo: Any = None  # a DemoProcess when the embedded default's target was started
    engine: Engine | None = None
    progress: Progress | None = None  # the live line while tests wait for their checks
    started: float = field(default_factory=time.time)
    finished: float | None = None
    report_path: Path | None = None
    results: dict[str, CheckResult] = field(default_factory=dict)
    gate_name: str | None = None  # --gate: the run's exit status is this gate's
    policy: Any = None  # the LoadedPolicy --gate reads
    gate: Any = None  # the GateResult decided at the end of the run
    deselected: list[str] = field(default_factory=list)
    session: pytest.Session | None = None
    # outcome of each hand-written check so far, by test id and function name (for depends_on)
    python_outcomes: dict[str, str] = field(default_factory=dict)
    seal_key: bytes | None = None  # HMAC key for the report's seal (never printed)
    not_written: str | None = None  # why the report (or its started marker) could not be written
    checks_of_nodes: dict[str, str] = field(default_factory=dict)  # nodeid -> configured check name (this process)
    drill_records: list[Path] = field(default_factory=list)  # reports/drills/<environment>/*.md, *.html
    incident: str | None = None  # the automatic incident triage's line for the summary (triage: on_failure)
    record: RunRecord | None = None  # the run's record, built once at the end of the run
    checked: Any = None  # the gate's view of the record (a gate.Report), built once

    _ctx: ProbeContext | None = None

    @property
    def ctx(self) -> ProbeContext:
        """One context per run: its checks share their database connections through it."""
        if self._ctx is None:
            env = self.loaded.env
            fleet = None
            if env.hosts:  # one target per host, made when its first check runs, closed with the run
                from .targets.fleet import Fleet

                fleet = Fleet(env.hosts, env.host_options, self.loaded.base_dir)
            self._ctx = ProbeContext(self.loaded.base_dir, environment=env, fleet=fleet)
        return self._ctx

    _inline: dict[str, CheckResult] = field(default_factory=dict)

    def params(self, kind: str, cadence: str) -> list[Any]:
        """``pytest.param`` of each configured check of ``kind`` and ``cadence`` (for ``<kind>_check``)."""
        return [pytest.param(item, id=item.name, marks=_marks(item, cadence, self.loaded.env.severity_scale))
                for item in self.loaded.env.items(kind, cadence)]

    def result_for(self, item: CheckItem) -> CheckResult:
        """Wait for the engine's result, or run the check here when no engine runs it (a
        pytest-xdist worker, whose checks arrive one by one)."""
        if self.engine and item.name in self.engine.futures:
            deadline = time.monotonic() + item.budget() + GRACE_S
            try:
                while True:
                    try:
                        return self.engine.result(item.name, timeout=min(WAIT_SLICE_S, max(0.0, deadline - time.monotonic())))
                    except TimeoutError:
                        if time.monotonic() >= deadline:
                            return CheckResult(item.name, item.kind, item.severity, Status.ERROR,
                                               f"did not finish within its budget of {item.budget():g}s")
                        if self.progress:
                            self.progress.tick()
            finally:
                if self.progress:
                    self.progress.clear()
        return self._run_inline(item)

    def _run_inline(self, item: CheckItem) -> CheckResult:
        """Run a check and, first, its configured prerequisites (each once per process), in an
        explicit order (prerequisites first), not by recursion: a long chain cannot overflow."""
        if item.name in self._inline:
            return self._inline[item.name]
        configured = self._configured()
        configured.setdefault(item.name, item)
        order = prerequisites_first(item.name, lambda n: [d for d in configured[n].depends_on if d in configured])
        for name in order:
            if name in self._inline:
                continue
            check = configured[name]
            deps = [(d, self._inline[d].status) for d in check.depends_on if d in configured]
            self._inline[name] = blocked(check.name, check.kind, check.severity, deps) or run_check(check, self.ctx)
        return self._inline[item.name]

    _by_name: dict[str, CheckItem] | None = None

    def _configured(self) -> dict[str, CheckItem]:
        """Every configured check by name (any cadence: a prerequisite may be of another)."""
        if self._by_name is None:
            self._by_name = {c.name: c for c in self.loaded.env.items()}
        return dict(self._by_name)

    def stop_probes(self) -> None:
        """The tests are over: checks not started are not run, and the engine lets go of its
        per-check bookkeeping and idle probe threads before the record is built (a run of
        thousands of checks held them through its most memory-hungry step). A probe still
        running ends at its own deadline, as at the end of the run."""
        engine, self.engine, self.progress = self.engine, None, None
        if engine:
            engine.shutdown()

    def close(self) -> None:
        self.stop_probes()
        if self._ctx is not None:
            self._ctx.shared.close()
            if self._ctx.fleet is not None:
                self._ctx.fleet.close()
        client = sys.modules.get("opsgate.httpclient")
        if client is not None:  # the run's kept-alive HTTP connections
            client.close_pools()


def activate(config: pytest.Config, cadence: str) -> RunState:
    """Load the environment (starting the demo for the embedded default) before any check runs,
    and register the run's plugins. A run that cannot start stops here, before any check."""
    if STATE in config.stash:
        return config.stash[STATE]
    demo = DemoPlugin.for_run(config)
    try:
        state = _load(config, cadence, demo.process if demo else None)
    except BaseException:
        if demo:
            demo.stop()
        raise
    config.stash[STATE] = state
    if demo:
        config.pluginmanager.register(demo, "opsgate-demo")  # first in, last out: stopped after the engine
    for plugin, name in ((CheckCollection(state), "opsgate-collect"), (CheckRun(state), "opsgate-run"),
                         (CheckReports(), "opsgate-check-reports"), (RunRecorder(config, state), "opsgate-record"),
                         (Summary(state), "opsgate-summary")):
        config.pluginmanager.register(plugin, name)
    return state


def _load(config: pytest.Config, cadence: str, demo: Any) -> RunState:
    try:
        loaded = envfile.load(environment_wanted(config), _search(config))
    except envfile.EnvFileError as exc:
        raise pytest.UsageError(f"opsgate: the environment cannot be used; no check was run:\n{exc}") from None
    from .plugin import add_kind_markers

    add_kind_markers(config)
    # tls_verify: false is the user's explicit choice; pytest re-enables warnings per test
    config.addinivalue_line("filterwarnings", "ignore::urllib3.exceptions.InsecureRequestWarning")
    for item in loaded.env.items():
        for tag in item.tags:
            config.addinivalue_line("markers", f"{tag}: tag from the environment file")
    reports = config.getoption("opsgate_reports_dir") or Path(config.rootpath) / "reports"
    try:
        keep = _keep_reports(config)
    except ValueError as exc:
        raise pytest.UsageError(f"opsgate: {exc}; no check was run") from None
    state = RunState(loaded, cadence, report_folder(Path(reports), loaded.env.name),
                     not config.getoption("opsgate_no_report"),
                     config.getoption("opsgate_concurrency") or loaded.env.concurrency, keep, demo)
    state.gate_name = config.getoption("opsgate_gate")
    state.policy = _policy(config, state.gate_name)
    try:
        key_file = config.getoption("opsgate_seal_key_file")
        state.seal_key = read_key_file(key_file, "--seal-key-file") if key_file else seal_key_from_environment()
    except ReportError as exc:
        raise pytest.UsageError(f"opsgate: {exc}; no check was run") from None
    if state.seal_key:
        REDACTOR.add(state.seal_key.decode("utf-8", "replace"))
    return state


def _keep_reports(config: pytest.Config) -> int:
    """--keep-reports, else $OPSGATE_KEEP_REPORTS, else 50; 0 keeps every report."""
    value = config.getoption("opsgate_keep_reports")
    source = "--keep-reports"
    if value is None:
        text = os.environ.get("OPSGATE_KEEP_REPORTS", "").strip()
        source = "OPSGATE_KEEP_REPORTS"
        try:
            value = int(text) if text else 50
        except ValueError:
            raise ValueError(f"{source}: expected a whole number of reports to keep, seen {text[:40]!r}") from None
    if value < 0:
        raise ValueError(f"{source}: expected 0 (keep all) or more reports to keep, seen {value}")
    return value


def _policy(config: pytest.Config, gate_name: str | None) -> Any:
    """The gates file --gate reads, checked now: a bad policy stops the run before any check."""
    from .gate import PolicyError, find_policy, load_policy

    try:
        policy = load_policy(find_policy(config.getoption("opsgate_policy"), _search(config)) if gate_name else None)
        policy.gate(gate_name)
    except PolicyError as exc:
        # the gate's ERROR, with its exit code 2, as `opsgate gate` gives for the same policy
        pytest.exit(f"opsgate: the gate policy cannot be used; no check was run:\n{exc}\nverdict: ERROR (exit 2)",
                    returncode=2)
    return policy


def _search(config: pytest.Config) -> list[Path]:
    return [Path(config.invocation_params.dir), Path(config.rootpath)]


def _marks(item: CheckItem, cadence: str, on_scale: str = "P0-P3") -> list[pytest.MarkDecorator]:
    """A configured check's markers: ``-m P0``, ``-m http``, ``-m weekly``, its tags; the
    severity in the environment's own labels (``-m P1`` on a P1-P4 scale is its P1)."""
    return list(_shared_marks(item.severity, item.kind, tuple(item.tags), cadence, on_scale))


@functools.lru_cache(maxsize=1024)
def _shared_marks(severity: str, kind: str, tags: tuple[str, ...], cadence: str, on_scale: str) -> tuple:
    """One set of mark objects per (severity, kind, tags, cadence): marks are immutable, and
    thousands of checks share a few of these sets instead of building their own."""
    shown = sev.label(severity, on_scale)
    return (
        # positional for readers, keyword for `-m "severity(level='P0')"` selection
        pytest.mark.severity(shown, level=shown), getattr(pytest.mark, sev.marker(severity, on_scale)),
        pytest.mark.cadence(cadence, name=cadence), getattr(pytest.mark, cadence), getattr(pytest.mark, kind),
        *(getattr(pytest.mark, tag) for tag in tags),
    )


@functools.lru_cache(maxsize=1024)
def _timeout_mark(seconds: float) -> pytest.MarkDecorator:
    return pytest.mark.timeout(seconds)


# ---------------------------------------------------------------------------------------------
# collection


class ConfiguredCheck(pytest.Item):
    """One configured check as a test item, ``test_<kind>[<name>]``, collected from the
    environment by the cadence folder itself (pytest's non-Python collection): no stub file,
    no fixtures to set up, and its failure report is the check's message. Much cheaper per
    check than a parametrized function, which matters for runs of thousands of checks."""

    def __init__(self, *, check: CheckItem, cadence: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check, self.cadence = check, cadence
        for mark in _marks(check, cadence, scale(self.config)):
            self.add_marker(mark)
        self.stash[ITEM] = check

    def runtest(self) -> None:
        conclude(self, self.config.stash[STATE], self.check)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        # line 0 of the cadence folder: a check has no line, and pytest's report of a skip mark
        # given to an item needs one (None crashed the run with an INTERNALERROR)
        return self.path, 0, f"{self.check.kind} check {self.check.name} ({self.cadence})"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, pytest.fail.Exception) and not excinfo.value.pytrace:
            return str(excinfo.value.msg)
        return super().repr_failure(excinfo, style)


class _WithConfigured:
    """A cadence folder's collector: what pytest finds in it, then its configured checks."""

    def collect(self):  # type: ignore[override]
        state = self.config.stash.get(STATE, None)
        if state is not None:
            for check in state.loaded.env.items(cadence=self.path.name):
                yield ConfiguredCheck.from_parent(self, name=f"test_{check.kind}[{check.name}]", check=check,
                                                  cadence=self.path.name)
        yield from super().collect()


class _CadenceDir(_WithConfigured, pytest.Dir):
    pass


class _CadencePackage(_WithConfigured, pytest.Package):
    pass


class StubDeprecationWarning(pytest.PytestWarning):
    """A per-kind stub file parametrizes checks the cadence folder now collects by itself."""


def _check_of(item: pytest.Item) -> CheckItem | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    for value in callspec.params.values():
        if isinstance(value, CheckItem):
            return value
    return None


def _is_empty_param(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return bool(callspec) and "NOTSET" in item.name and not any(isinstance(v, CheckItem) for v in callspec.params.values())


class CheckCollection:
    """Collection: cadence folders collect their configured checks; stubs; deselection."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path: Path, parent: pytest.Collector) -> pytest.Collector | None:
        """``checks/<cadence>`` collects its configured checks, whatever files it holds."""
        if not is_cadence_dir(path):
            return None
        cls = _CadencePackage if (path / "__init__.py").is_file() else _CadenceDir
        return cls.from_parent(parent, path=path)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Drop kinds with no configured item (not a test, not a skip); a check a user's stub file
        parametrizes is run by the stub, not twice; give every check a timeout backstop.
        Last: what a conftest or plugin removed without deselecting it was not collected."""
        items[:] = [i for i in items if not _is_empty_param(i)]
        self._drop_stubbed(items)
        for item in items:
            check = item.check if isinstance(item, ConfiguredCheck) else _check_of(item)
            if check is None:
                continue
            self.state.checks_of_nodes[item.nodeid] = check.name
            item.stash[ITEM] = check
            if item.get_closest_marker("timeout") is None:
                item.add_marker(_timeout_mark(check.budget() + BACKSTOP_S))

    @staticmethod
    def _drop_stubbed(items: list[pytest.Item]) -> None:
        """A hand-written ``def test_http(http_check, verify)`` stub (the old per-kind files) runs
        the checks it is parametrized with; the collected item of the same check and cadence
        steps aside, and the user is told the stub is no longer needed."""
        stubbed: dict[tuple[str, str], str] = {}
        for item in items:
            check = None if isinstance(item, ConfiguredCheck) else _check_of(item)
            if check is not None:
                mark = item.get_closest_marker("cadence")
                stubbed[(check.name, cadence_of(Path(item.path), [mark] if mark else []))] = str(item.path)
        if not stubbed:
            return
        files = sorted({stubbed[k] for i in items if isinstance(i, ConfiguredCheck) and (k := (i.check.name, i.cadence)) in stubbed})
        items[:] = [i for i in items if not (isinstance(i, ConfiguredCheck) and (i.check.name, i.cadence) in stubbed)]
        for path in files:
            warnings.warn(StubDeprecationWarning(
                f"{path}: opsgate collects every configured check of a cadence folder by itself; this per-kind "
                "stub is no longer needed (its checks run once, through it). Delete it to use the built-in item."))

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        """Remember what -m/-k left out: a gate that requires one of them says so."""
        self.state.deselected.extend(i.nodeid for i in items)
        for item in items:
            check = item.check if isinstance(item, ConfiguredCheck) else _check_of(item)
            if check is not None:
                self.state.checks_of_nodes[item.nodeid] = check.name


# ---------------------------------------------------------------------------------------------
# running


def conclude(node: pytest.Item, state: RunState, item: CheckItem) -> CheckResult:
    """The test's outcome from its check's result: fail with the cause, skip when blocked."""
    result = state.result_for(item)
    if result.host is None and item.on_host is not None:  # run inline (a pytest-xdist worker): name the host
        result.host = item.on_host
    node.stash[RESULT] = result
    state.results[node.nodeid] = result
    where = f"[{sev.label(item.severity, state.loaded.env.severity_scale)}] {item.kind} {item.name}"
    if result.status in (Status.BLOCKED, Status.SKIPPED):  # not run: blocked, or not applicable on this machine
        pytest.skip(sink(f"{where}: {result.message}"))
    if result.failed:
        pytest.fail(sink(f"{where}: {result.message}{remedy_suffix(result.status, item.remedy)}"), pytrace=False)
    return result


class CheckRun:
    """Running: the engine before the first test, hand-written depends_on, the WARN status."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.state.started = time.time()
        self.state.session = session

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        """Start every selected check before the first test: wall time follows the slowest probe."""
        state = self.state
        if session.config.option.collectonly:
            return
        checks = {i.stash[ITEM].name: i.stash[ITEM] for i in session.items if ITEM in i.stash}
        if session.config.getoption("opsgate_plan"):
            _print_plans(session, checks.values())
            return True  # nothing runs: pytest's own loop is skipped
        if hasattr(session.config, "workerinput"):
            # a pytest-xdist worker collects every item but runs only those sent to it: starting
            # them all here would run each probe once per worker
            return
        mark_started(session, state)
        if checks:
            # Start-up's objects (modules, models, test items) live until exit: move them out of
            # the collector's reach so the probes' garbage is collected without re-walking them.
            gc.freeze()
            if any(c.kind == "http" for c in checks.values()):
                from . import httpclient

                httpclient.size_pools(state.concurrency)  # a connection kept alive per concurrent check
            _add_prerequisites(checks, state._configured())
            state.engine = Engine(checks.values(), state.ctx, state.concurrency)
            state.engine.start()
            state.progress = _progress(session.config, state.engine)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session):
        """Before pytest-json-report's sessionfinish builds the record: the engine stops."""
        self.state.stop_probes()
        return (yield)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        """A configured check's slim protocol: it has no fixtures and prints nothing, so its
        setup, call and teardown run without the per-phase capture, logging and timeout
        wrappers (~0.3 ms per check); every report hook still runs (makereport, so
        pytest-json-report's entry and opsgate's metadata; logreport, so -x/--maxfail, the
        terminal and pytest-xdist's worker see it). Anything else takes pytest's own protocol:
        hand-written tests, a check given skip/xfail marks, --setup-show/--setup-only, and a
        run where a plugin or conftest not known here implements a phase hook."""
        if type(item) is not ConfiguredCheck or not self._slim_protocol(item):
            return None
        ihook = item.ihook
        previous, self._previous = self._previous, item
        if previous is not None:
            # pytest-timeout keeps its cancel closure on every item once its timer is cancelled;
            # the previous item's protocol (and pytest-timeout's wrapper around it) has ended
            previous.__dict__.pop("cancel_timeout", None)
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        item._json_report_extra = {"setup": {}, "call": {}, "teardown": {}}  # what json-report's phase wrappers set
        session = item.session
        reraise = get_reraise_exceptions(item.config)
        kept = self._terminal_stats(item.config)
        reports = [_phase(item, "setup", lambda: session._setupstate.setup(item), reraise, kept)]
        if reports[0].passed:
            reports.append(_phase(item, "call", item.runtest, reraise, kept))
        if session.shouldfail or session.shouldstop:
            nextitem = None  # tear everything down, as pytest's protocol does
        reports.append(_phase(item, "teardown", lambda: session._setupstate.teardown_exact(nextitem), reraise, kept))
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        for report in reports:
            # pytest-json-report's per-phase scratch (its test entry is built): not kept until
            # the end by the reports the terminal holds
            report.__dict__.pop("_json_report_extra", None)
        return True

    _previous: pytest.Item | None = None
    _stats: dict | None = None

    def _terminal_stats(self, config: pytest.Config) -> dict | None:
        if self._stats is None:
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            self._stats = getattr(reporter, "stats", None)
            if not isinstance(self._stats, dict):
                self._stats = {}
        return self._stats

    _slim: bool | None = None

    def _slim_protocol(self, item: pytest.Item) -> bool:
        if self._slim is None:
            config = item.config
            hook = config.pluginmanager.hook
            impls = [*hook.pytest_runtest_setup.get_hookimpls(), *hook.pytest_runtest_call.get_hookimpls(),
                     *hook.pytest_runtest_teardown.get_hookimpls()]
            self._slim = not any(config.getoption(o, False) for o in ("setupshow", "setuponly", "setupplan")) and \
                all(i.plugin_name in SLIM_PHASE_PLUGINS or type(i.plugin).__module__ == "pytest_jsonreport.plugin"
                    for i in impls)
        return self._slim and not any(m.name in ("skip", "skipif", "xfail") for m in item.iter_markers())

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """``@pytest.mark.depends_on("db-port", "test_schema")``: a hand-written check runs only when
        those checks (configured ones by name, hand-written ones by test name) passed; otherwise it
        is reported as blocked by them, and the gate counts the one root cause."""
        mark = item.get_closest_marker("depends_on")
        state = self.state
        if mark is None or ITEM in item.stash:
            return
        configured = state._configured()
        prerequisites = []
        for name in mark.args:
            if name in configured:
                status = state.result_for(configured[name]).status
            else:
                status = state.python_outcomes.get(name, "not run before it" + (
                    " in this pytest-xdist worker; keep both in one file and use --dist loadfile"
                    if hasattr(item.config, "workerinput") else ""))
            prerequisites.append((name, status))
        severity = marker_severity(item.get_closest_marker("severity"), scale(item.config))
        result = blocked(item.name, "python", severity, prerequisites)
        if result is not None:
            item.stash[RESULT] = result
            state.results[item.nodeid] = result
            pytest.skip(result.message)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        result = item.stash.get(RESULT, None)
        if result is not None and report.when == "call":
            report.opsgate_status = status_word(result.status)  # a plain str: pytest-xdist sends reports through execnet
        if report.failed and ITEM not in item.stash and (shown := remedy_for("fail", of_marker(item))):
            report.sections.append(("opsgate remedy", sink(shown)))  # a hand-written check's next step

    def pytest_report_teststatus(self, report: pytest.TestReport):
        if report.when == "call" and report.passed and getattr(report, "opsgate_status", None) == Status.WARN:
            return "warned", "W", ("WARN", {"yellow": True})
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A hand-written check's outcome, by test id and function name, for depends_on."""
        state = self.state
        if state.results.get(report.nodeid) is not None:
            return
        if report.when == "call" or report.failed or report.skipped:
            status = Status.FAIL if report.failed else Status.SKIPPED if report.skipped else Status.PASS
            name = report.nodeid.rsplit("::", 1)[-1]
            for key in (name, name.split("[", 1)[0]):
                if state.python_outcomes.get(key) not in (Status.FAIL, Status.SKIPPED):
                    state.python_outcomes[key] = status

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.state.close()


#: plugins whose setup/call/teardown hooks a configured check can do without: pytest's capture,
#: logging, skip marks (items with such marks take the full protocol), unraisable and thread
#: exception hooks, pytest-timeout's per-call timer (its per-test timer stays), hypothesis,
#: pytest-json-report's log capture, and opsgate's own depends_on (for hand-written tests)
SLIM_PHASE_PLUGINS = frozenset({"runner", "capturemanager", "logging-plugin", "skipping", "threadexception",
                                "unraisableexception", "timeout", "hypothesispytest", "opsgate-run"})


def _phase(item: pytest.Item, when: str, run: Any, reraise: tuple, stats: dict | None = None) -> pytest.TestReport:
    """One phase of the slim protocol, reported as pytest's ``call_and_report`` does.

    A passing setup or teardown with nothing captured is then dropped from the terminal's
    ``stats[""]``: the terminal keeps every report to look for teardown output of failed
    tests (by scanning them all, per failure), and a configured check's has none. Thousands
    of checks then neither hold two reports each until the end nor make a run with many
    failures quadratic in its summary. pytest-json-report has its entry from the hooks."""
    call = pytest.CallInfo.from_call(run, when=when, reraise=reraise)
    ihook = item.ihook
    report = ihook.pytest_runtest_makereport(item=item, call=call)
    ihook.pytest_runtest_logreport(report=report)
    if stats and when != "call" and report.passed and not report.sections:
        unlabelled = stats.get("")
        if unlabelled and unlabelled[-1] is report:
            unlabelled.pop()
    if check_interactive_exception(call, report):
        ihook.pytest_exception_interact(node=item, call=call, report=report)
    return report


def _add_prerequisites(checks: dict[str, CheckItem], configured: dict[str, CheckItem]) -> None:
    """Add to ``checks`` every configured prerequisite of them that -k/-m left out (a host's
    ``reachable@host`` under ``-k server``): it runs unseen and still blocks its dependents, as
    it does on a pytest-xdist worker, instead of letting them run as if it had passed.

    >>> from opsgate.probes.file import FileCheck
    >>> a, b = FileCheck(name="a", path="/x"), FileCheck(name="b", path="/x", depends_on=["a"])
    >>> chosen = {"b": b}
    >>> _add_prerequisites(chosen, {"a": a, "b": b})
    >>> sorted(chosen)
    ['a', 'b']
    """
    todo = list(checks.values())
    while todo:
        for name in todo.pop().depends_on:
            if name not in checks and name in configured:
                checks[name] = configured[name]
                todo.append(configured[name])


def _print_plans(session: pytest.Session, checks) -> None:
    """--plan: each drill's steps with the scratch place and port it would use; nothing is run."""
    from .drills.plan import describe

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter is not None else print
    drills = [c for c in checks if c.kind == "drill"]
    write(f"opsgate plan: {len(drills)} drill(s) in this run; nothing is run, no report is written")
    for drill in drills:
        for line in describe(drill):
            write(sink(line))
    others = [c for c in checks if c.kind != "drill"]
    if others:
        write(f"and {len(others)} other check(s), not run: {', '.join(c.name for c in others[:20])}"
              + (" ..." if len(others) > 20 else ""))


def _progress(config: pytest.Config, engine: Engine) -> Progress | None:
    """The progress line, written through pytest's terminal with output capture suspended (as
    pytest's live logging does); none without a terminal reporter (``-p no:terminal``)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    writer = getattr(reporter, "_tw", None)
    stream = getattr(writer, "_file", None)
    if writer is None or stream is None:
        return None
    capture = config.pluginmanager.get_plugin("capturemanager")
    delay, interval = (_seconds(name, default) for name, default in
                       (("OPSGATE_PROGRESS_DELAY", 2.0), ("OPSGATE_PROGRESS_INTERVAL", 10.0)))

    def write(text: str) -> None:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            stream.write(text)
            stream.flush()

    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return Progress(engine.waiting, len(engine.futures), write, tty, writer.fullwidth,
                    lambda: getattr(writer, "_current_line", ""), delay, interval)


def _seconds(name: str, default: float) -> float:
    """A duration in seconds from the environment (tests shorten the progress intervals)."""
    text = os.environ.get(name, "").strip()
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise pytest.UsageError(f"opsgate: {name}: expected a number of seconds (0 or more), seen {text[:40]!r}")
    return value


class CheckReports:
    """A configured check's failure is its message: its report is built without formatting a
    traceback (pytest would filter the frames of ``verify``, ~2-6 ms per failed check, which
    is most of a 1,000-failure run's time after its probes ended). Its passing phases' reports
    share one keywords dict and the item's parsed node id (a run keeps every report)."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport | None:
        excinfo = call.excinfo
        if ITEM not in item.stash:
            return None
        if excinfo is None:
            outcome, message = "passed", None
        elif call.when == "call" and isinstance(excinfo.value, pytest.fail.Exception) and not excinfo.value.pytrace:
            outcome, message = "failed", str(excinfo.value.msg)
        else:
            return None  # anything but a pass or verify()'s own pytest.fail: pytest's full report
        sections = [(f"Captured {key} {when}", content) for when, key, content in item._report_sections]
        # the item's own structured id where pytest has one (9.x): not parsed again per report
        return pytest.TestReport(getattr(item, "id", item.nodeid), item.location, _keywords(item), outcome, message,
                                 call.when, sections, call.duration, call.start, call.stop,
                                 user_properties=item.user_properties)


KEYWORDS = pytest.StashKey[dict]()


def _keywords(item: pytest.Item) -> dict:
    """The item's keywords as its reports carry them: one dict for its setup, call and teardown
    reports (pytest builds one per report; a run keeps every report until it ends)."""
    keywords = item.stash.get(KEYWORDS, None)
    if keywords is None:
        keywords = item.stash[KEYWORDS] = dict.fromkeys(item.keywords, 1)
    return keywords


# ---------------------------------------------------------------------------------------------
# the record


def mark_started(session: pytest.Session, state: RunState) -> None:
    """Before the first check: replace ``-latest`` with a "run started" marker, so a run killed
    from here on (SIGKILL, SIGTERM, out of memory) leaves the gate an ERROR, not the last verdict."""
    if not state.write_reports:
        return
    try:
        write_marker(state.reports_dir, state.cadence.replace("+", "-"), _latest_name(session.config, state),
                     state.loaded.env.name, state.started, state.seal_key)
    except (OSError, ReportError) as exc:
        # the final write will most likely fail too; if it does not, its report replaces this
        state.not_written = f"the run could not mark itself started in {state.reports_dir}: {_reason(exc)}"


def _latest_name(config: pytest.Config, state: RunState) -> str:
    return "partial-latest" if _partial(config, state) else "latest"


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__


def _partial(config: pytest.Config, state: RunState) -> str | None:
    """Why this run covers less than its cadence folders (a file or test named, -k/-m), or None.
    A partial run's report does not replace ``<cadence>-latest.json``."""
    paths = arg_paths(config)
    whole = [p for a, p in paths.items() if "::" not in a and p.is_dir() and is_cadence_dir(p)]
    narrowed = [a for a, p in paths.items() if p not in whole and not any(w in p.parents for w in whole)]
    reasons = [f"only {', '.join(narrowed)}"] if narrowed else []
    if state.deselected:
        reasons.append(f"{len(state.deselected)} deselected (-k/-m/--deselect)")
    elif (config.option.keyword or config.option.markexpr) and getattr(config.option, "numprocesses", None):
        reasons.append("selected with -k/-m (pytest-xdist: the controller cannot count what was left out)")
    return "; ".join(reasons) or None


_TEST_ID = re.compile(r"test_(?P<kind>[a-z]+)\[(?P<name>[^\[\]]+)\]$")


def _not_run(config: pytest.Config, state: RunState, json_report: dict[str, Any]) -> list[dict[str, str]]:
    """Configured checks of the cadence folders this run was pointed at (whole) that have no
    result in the report and were not deselected by the user: each one a gate ERROR."""
    paths = arg_paths(config)
    cadences = sorted({p.name for a, p in paths.items() if "::" not in a and p.is_dir() and is_cadence_dir(p)})
    if not cadences:
        return []
    controller = hasattr(config, "workerinput") is False and bool(getattr(config.option, "numprocesses", None))
    if controller and (config.option.keyword or config.option.markexpr):
        # pytest-xdist's controller does not see what its workers' -k/-m left out: the run is
        # partial (it keeps -latest as it was), and what did not run cannot be told apart
        return []
    ran, deselected, skipped = set(), set(), set()
    for test in json_report.get("tests") or ():
        nodeid = str(test.get("nodeid", ""))
        meta = (test.get("metadata") or {}).get("opsgate") or {}
        match = _TEST_ID.search(nodeid)
        names = {n for n in (meta.get("name"), state.checks_of_nodes.get(nodeid), match and match["name"]) if n}
        if test.get("outcome") == "skipped" and not meta.get("status") and nodeid in state.checks_of_nodes:
            # a skip mark or a conftest skipped a configured check before it ran: it has no result
            skipped.update(names)
            continue
        ran.update(names)
    for nodeid in state.deselected:
        match = _TEST_ID.search(nodeid)
        deselected.update(n for n in (state.checks_of_nodes.get(nodeid), match and match["name"]) if n)
    collected = set(state.checks_of_nodes.values())
    stopped = _stopped_early(state, json_report)
    out = []
    for cadence in cadences:
        for check in state.loaded.env.items(cadence=cadence):
            if check.name in ran or check.name in deselected:
                continue
            if check.name in skipped:
                reason = ("skipped before it ran (a skip mark or a conftest): a configured check runs or is "
                          "deselected with -k/-m, it is never skipped")
            elif stopped and check.name in collected:
                reason = f"the run stopped early ({stopped})"
            elif check.name in collected:
                reason = "collected but never run (a pytest-xdist worker that never got it, or a crashed worker)"
            elif controller:
                reason = "no pytest-xdist worker reported it (a worker crashed or collected something else)"
            else:
                reason = (f"not collected from checks/{cadence} (a conftest or plugin removed it without "
                          "deselecting it, or the folder's collector was replaced)")
            out.append({"name": check.name, "kind": check.kind, "severity": check.severity,
                        "cadence": cadence, "reason": reason})
    return out


def _stopped_early(state: RunState, json_report: dict[str, Any]) -> str | None:
    """Why selected checks did not run (-x, --maxfail, pytest.exit), or None."""
    session = state.session
    if session is None:
        return None
    missing = len(session.items) - len(json_report.get("tests") or ())
    if missing <= 0:
        return None
    reason = session.shouldstop or session.shouldfail or "the session ended early"
    return f"{reason}; {missing} of {len(session.items)} selected checks did not run"


def _handwritten_failure(item: pytest.Item, call: pytest.CallInfo) -> str | None:
    """A hand-written check's failure as the gate shows it: where, the exception and its message
    (``AssertionError: assert 503 == 200``), not just ``test_x.py:16: AssertionError``."""
    excinfo = call.excinfo
    if excinfo is None or excinfo.errisinstance((pytest.skip.Exception, pytest.xfail.Exception)):
        return None
    if item.get_closest_marker("xfail") is not None:
        return None  # an expected failure is not the check's failure
    from .gate.reports import failure_line

    entries = list(excinfo.traceback)
    own = [e for e in entries if Path(e.path) == Path(item.path)]  # the check's own line, not a library's
    entry = (own or entries or [None])[-1]
    where = ""
    if entry is not None:
        path = Path(entry.path)
        try:
            path = path.relative_to(item.config.invocation_params.dir)
        except ValueError:
            pass
        where = f"{path}:{entry.lineno + 1}"
    return failure_line(excinfo.exconly(tryshort=True), excinfo.typename, where)


class RunRecorder:
    """The run's record: each test's opsgate metadata, the ``opsgate`` block, the written
    report and the end-of-run gate."""

    def __init__(self, config: pytest.Config, state: RunState) -> None:
        self.config, self.state = config, state

    @pytest.hookimpl(optionalhook=True)  # declared by pytest-json-report, on for opsgate runs only
    def pytest_json_runtest_metadata(self, item: pytest.Item, call: pytest.CallInfo) -> dict[str, Any] | None:
        result = item.stash.get(RESULT, None)
        blocked_at_setup = call.when == "setup" and result is not None and result.status == Status.BLOCKED
        failure = _handwritten_failure(item, call) if result is None and ITEM not in item.stash else None
        if call.when != "call" and not blocked_at_setup and failure is None:
            return None
        level = item.get_closest_marker("severity")
        cadence = item.get_closest_marker("cadence")
        on_scale = scale(item.config)
        meta: dict[str, Any] = {
            "severity": result.severity if result else marker_severity(level, on_scale),
            "cadence": cadence_of(Path(item.path), [cadence] if cadence else []),
        }
        check = item.stash.get(ITEM, None)
        if check is not None:
            meta["tags"] = check.tags
            meta["depends_on"] = check.depends_on
        if result is not None:
            meta.update(result.to_json())
        else:
            meta["kind"] = "python"
            if failure:
                meta["message"] = failure
        # gates read the P0-P3 "severity"; people read the environment's own name for it
        meta["severity_label"] = sev.label(meta["severity"], on_scale)
        if shown := remedy_for(meta.get("status") or ("fail" if failure else "pass"), remedy_of(check, item)):
            meta["remedy"] = shown  # the runbook's next step, beside a failure or warning only
        return {"opsgate": meta}

    @pytest.hookimpl(optionalhook=True)  # declared by pytest-json-report, on for opsgate runs only
    def pytest_json_modifyreport(self, json_report: dict[str, Any]) -> None:
        """Build the run's record once, gate it in memory (the report's own counts and verdict:
        the built-in default gate), and put its block in the document, redacted at the sink
        as the last step before the document is serialised (by write_report, or by
        pytest-json-report for --json-report-file)."""
        from .gate import evaluate, from_record, load_policy

        config, state = self.config, self.state
        state.finished = time.time()
        record = RunRecord(
            environment=state.loaded.env.name, environment_file=state.loaded.source, cadence=state.cadence,
            host=socket.gethostname(), started=state.started, finished=state.finished, concurrency=state.concurrency,
            demo_fault=state.demo.fault if state.demo else None, deselected=state.deselected,
            stopped_early=_stopped_early(state, json_report), partial=_partial(config, state),
            not_run=_not_run(config, state, json_report), results=state.results,
            tests=json_report.get("tests") or [], exitcode=json_report.get("exitcode"),
            collectors=json_report.get("collectors") or [], hosts=hosts_block(state.loaded.env))
        state.record, state.checked = record, from_record(record)
        plain = evaluate([state.checked], load_policy(None))
        json_report["opsgate"] = record.opsgate_block(plain.counts, plain.verdict)
        forget_shared()  # evidence mappings shared by checks are redacted in place next: no later check gets one
        sink_document(json_report)  # in place: the results' evidence is shared, not copied

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """pytest-json-report has built the report (tryfirst); write it where the gate reads it."""
        state = self.state
        plugin = getattr(session.config, "_json_report", None)
        if plugin is None or getattr(plugin, "report", None) is None:
            return
        if hasattr(session.config, "workerinput"):
            return
        if session.config.option.collectonly or session.config.getoption("opsgate_plan"):
            return  # nothing ran: no report, no verdict
        not_written = None
        if state.write_reports:
            latest = "partial-latest" if state.record is not None and state.record.partial else "latest"
            try:
                state.report_path = write_report(plugin.report, state.reports_dir, state.cadence.replace("+", "-"),
                                                 state.started, latest, state.seal_key)
                # only reports older than this run's start: a concurrent run's report is never ours to delete
                prune_reports(state.reports_dir, state.cadence.replace("+", "-"), state.keep_reports,
                              state.report_path, state.started)
                if any(r.kind == "drill" for r in state.results.values()):
                    from .drills.record import write_records

                    # the auditor's record of each drill, beside (never pruned with) the reports
                    state.drill_records = write_records(plugin.report, state.report_path, state.reports_dir.parent)
            except ReportError as exc:
                not_written = f"{exc}; no report was written to {state.reports_dir}"
            except OSError as exc:
                not_written = f"the report could not be written to {state.reports_dir}: {_reason(exc)}"
            except Exception as exc:  # any other failure still must not leave a pass behind
                not_written = REDACTOR.excerpt(f"the report could not be written to {state.reports_dir}: "
                                               f"{type(exc).__name__}: {exc}", 300)  # cut redaction-aware
        state.not_written = not_written
        if state.report_path is not None and state.loaded.env.triage is not None:
            from .triage import after_run  # a P0/P1 failure collects reports/incidents/<id>/ (never raises)

            state.incident = after_run(state.loaded, plugin.report, state.reports_dir.parent)
        from .gate import Report, Verdict, evaluate

        # the record the report was written from, gated in memory: not read back from the document
        label = str(state.report_path) if state.report_path else "this run"
        checked = state.checked.relabel(label) if state.checked is not None else \
            Report(label, problems=[f"{label}: the run's record was not built (pytest-json-report did not finish)"])
        state.gate = evaluate([checked], state.policy, state.gate_name)
        if not_written:  # nothing downstream can gate on this run: never a pass, with or without --gate
            state.gate.errors.insert(0, not_written)
            state.gate.verdict, state.gate.exit_code = Verdict.ERROR, 2
            session.exitstatus = 2
        if state.gate_name:
            # one code path decides: the same evaluate() as `opsgate gate`, and its exit code
            session.exitstatus = state.gate.exit_code


class Summary:
    """The terminal's closing block (not on a pytest-xdist worker, not with --collect-only)."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        if not hasattr(config, "workerinput") and not config.option.collectonly and not config.getoption("opsgate_plan"):
            write_summary(terminalreporter, self.state)
