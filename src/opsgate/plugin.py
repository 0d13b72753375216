"""opsgate's pytest entry point (``pytest11``): light, so a pytest run that is not an opsgate run pays nothing.

Every pytest run in an environment where opsgate is installed imports this module. It holds
only the standard library and pytest: it declares opsgate's options, markers and fixtures
and decides whether the run is an opsgate run. Only then does it import the real plugin
(:mod:`opsgate.pytest_run`: the environment model, the engine, the gate ...) and register
its parts. A run is an opsgate run when

- a path argument is, or lies in, a cadence folder (``checks/daily``, ``checks/weekly/test_x.py``),
- ``--env`` or ``--gate`` is given, or
- a test asks for ``verify``, ``opsgate_env`` or a ``<kind>_check`` fixture (``http_check``).

``-p no:opsgate`` disables all of it (the entry point's name). What an opsgate run does is
described in :mod:`opsgate.pytest_run`.

>>> is_cadence_dir(Path("checks/daily")), is_cadence_dir(Path("tests/daily"))
(True, False)
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import pytest

from . import severity as sev

#: the cadence folders; a test proves this is ``opsgate.model.CADENCES`` (the entry point
#: must not import the model to know them)
CADENCES = ("daily", "weekly", "monthly", "quarterly", "incident")

#: the run's state (an ``opsgate.pytest_run.RunState``), once the run is an opsgate run
STATE = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("opsgate", "opsgate operational checks")
    group.addoption("--env", dest="opsgate_env", default=None,
                    help="environment file or name (default: $OPSGATE_ENV, else the embedded demo environment)")
    group.addoption("--reports-dir", dest="opsgate_reports_dir", default=None,
                    help="where run reports are written (default: <rootdir>/reports)")
    group.addoption("--no-report", dest="opsgate_no_report", action="store_true",
                    help="do not write reports/<environment>/<cadence>-*.json")
    group.addoption("--keep-reports", dest="opsgate_keep_reports", type=int, default=None,
                    help="timestamped reports kept per environment and cadence; older ones are deleted "
                         "(default: $OPSGATE_KEEP_REPORTS, else 50; 0 keeps them all)")
    group.addoption("--concurrency", dest="opsgate_concurrency", type=int, default=None,
                    help="probes run at once (default: the environment's concurrency, 50)")
    group.addoption("--plan", dest="opsgate_plan", action="store_true",
                    help="print what each drill of the run would do, step by step (scratch place, port), and run "
                         "nothing: no check, no report, no demo")
    group.addoption("--gate", dest="opsgate_gate", default=None,
                    help="decide this gate at the end of the run; the exit status is the gate's "
                         "(PASS 0, WARN 0 or 1, FAIL 1, ERROR 2)")
    group.addoption("--policy", dest="opsgate_policy", default=None,
                    help="gates file for --gate (default: $OPSGATE_POLICY, else config/gates.yaml)")
    group.addoption("--seal-key-file", dest="opsgate_seal_key_file", default=None,
                    help="sign the report with HMAC-SHA256 using the key in this file "
                         "(default: $OPSGATE_SEAL_KEY_FILE, else $OPSGATE_SEAL_KEY, else a plain SHA-256 digest)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "severity(level): the check's severity, P0 (critical) .. P3 (low)",
        "cadence(name): daily, weekly, monthly, quarterly or incident",
        *(f"{level}: severity {level} (on the environment's own scale)" for level in sev.MARKERS),
        *(f"{name}: {name} cadence" for name in CADENCES),
        "depends_on(*names): run only when these checks passed",
        "remedy(text): the runbook's next step, shown beside this check's failure",
    ):
        config.addinivalue_line("markers", line)
    if config.option.markers or config.option.strict_markers:
        add_kind_markers(config)  # the kinds' names come from the registry: only a run that lists or enforces markers pays
    cadences = cadences_in_args(config)
    missing = [a for a, p in arg_paths(config).items() if is_cadence_dir(p) and not p.exists()]
    if missing:  # before any report: a run that cannot start must not leave one (outside the checkout, even)
        raise pytest.UsageError(f"opsgate: {', '.join(missing)} does not exist; no check was run. Create the folder "
                                "(a README in it is enough: opsgate collects the configured checks itself)")
    if cadences or config.getoption("opsgate_env") or config.getoption("opsgate_gate"):
        # pytest-json-report builds the report's test entries in memory; opsgate writes it
        if not hasattr(config.option, "json_report"):
            raise pytest.UsageError("opsgate: pytest-json-report is needed for opsgate runs (was it disabled with -p no:...?)")
        if not config.option.json_report:
            config.option.json_report = True
            config.option.json_report_file = None
            config.option.json_report_verbosity = 0
        activate(config, "+".join(sorted(cadences)) if cadences else "adhoc")


def add_kind_markers(config: pytest.Config) -> None:
    from .kinds import REGISTRY  # the kinds' names: no kind module is imported

    for kind in REGISTRY:
        config.addinivalue_line("markers", f"{kind}: an opsgate {kind} check")


def activate(config: pytest.Config, cadence: str = "adhoc") -> Any:
    """Make this run an opsgate run (once): import the real plugin, load the environment, register."""
    if STATE in config.stash:
        return config.stash[STATE]
    # pytest's start-up objects leave the collector's reach: the full collections that opsgate's
    # imports and the environment's load trigger then walk only what they made (one ~15 ms less)
    gc.freeze()
    from .pytest_run import activate as activate_run

    return activate_run(config, cadence)


def arg_paths(config: pytest.Config) -> dict[str, Path]:
    """Each path argument of the run (``checks/daily/test_http.py::test_http``) -> its resolved file or folder."""
    base = Path(config.invocation_params.dir)
    return {str(arg): (base / str(arg).split("::")[0]).resolve() for arg in config.args}


def is_cadence_dir(path: Path) -> bool:
    """``checks/<cadence>``."""
    return path.name in CADENCES and path.parent.name == "checks"


def cadences_in_args(config: pytest.Config) -> set[str]:
    """Cadence folders named by the run's paths (``checks/daily``, ``checks/daily/test_http.py``)."""
    found = set()
    for path in arg_paths(config).values():
        cadence = next((part.name for part in [path, *path.parents] if is_cadence_dir(part)), None)
        if cadence:
            found.add(cadence)
    return found


def cadence_of(path: Path, markers: list[pytest.Mark]) -> str:
    """A test's cadence: its ``cadence`` marker, else the cadence folder it lies in, else daily.

    >>> cadence_of(Path("checks/weekly/test_backup.py"), [])
    'weekly'
    """
    for mark in markers:
        if mark.name == "cadence" and (mark.args or "name" in mark.kwargs):
            return str(mark.args[0] if mark.args else mark.kwargs["name"])
    for part in [path, *path.parents]:
        if part.name in CADENCES:
            return part.name
    return "daily"


def scale(config: pytest.Config | None) -> str:
    """The run's severity scale (the environment's), P0-P3 before or without one."""
    state = config.stash.get(STATE, None) if config is not None else None
    return state.loaded.env.severity_scale if state is not None else "P0-P3"


def marker_severity(mark: pytest.Mark | None, on_scale: str = "P0-P3") -> str:
    """A hand-written check's severity, its marker read on the environment's scale (P2 without one).

    >>> marker_severity(pytest.mark.severity("critical").mark), marker_severity(None)
    ('P0', 'P2')
    """
    value = (mark.args[0] if mark.args else mark.kwargs.get("level")) if mark else None
    try:
        return sev.normalise(value, on_scale) if value is not None else "P2"
    except ValueError:
        return "P2"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test asking for ``<kind>_check`` is parametrized with that kind's configured checks."""
    wanted = [f for f in metafunc.fixturenames if f.endswith("_check")]
    if not wanted:
        return
    from .kinds import REGISTRY  # the kinds' names: no kind module is imported

    for fixture in wanted:
        kind = fixture[: -len("_check")]
        if kind not in REGISTRY:
            continue
        state = activate(metafunc.config)
        cadence = cadence_of(Path(metafunc.definition.path), list(metafunc.definition.iter_markers()))
        metafunc.parametrize(fixture, state.params(kind, cadence))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A hand-written check with a severity marker is selected by ``-m P1`` too (on the
    environment's scale). An item that has the alias already (every configured check) is left
    as it is: not a second mark object per check, which a run of thousands keeps to its end."""
    on_scale = scale(config)
    for item in items:
        mark = item.get_closest_marker("severity")
        if mark is not None:
            alias = sev.marker(marker_severity(mark, on_scale), on_scale)
            if item.get_closest_marker(alias) is None:
                item.add_marker(getattr(pytest.mark, alias))


@pytest.fixture
def opsgate_env(request: pytest.FixtureRequest) -> Any:
    """The loaded environment, for hand-written checks (``opsgate_env.env.http`` ...)."""
    return activate(request.config).loaded


@pytest.fixture
def verify(request: pytest.FixtureRequest):
    """Assert one configured check: fail with its cause, skip when blocked, pass (maybe warned).

    Example check module::

        def test_http(http_check, verify):
            verify(http_check)
    """
    state = activate(request.config)
    from .pytest_run import conclude

    def _verify(item: Any) -> Any:
        return conclude(request.node, state, item)

    return _verify


def environment_wanted(config: pytest.Config) -> str | None:
    """--env, else $OPSGATE_ENV, else None (the embedded default)."""
    return config.getoption("opsgate_env") or os.environ.get("OPSGATE_ENV")
