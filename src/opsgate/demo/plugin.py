"""The embedded demo target as a pytest plugin of its own: started for a run of the embedded
default environment (no ``--env``, no ``$OPSGATE_ENV``), stopped when pytest unconfigures.

It is started before the environment is loaded (the embedded environment reads the demo's
URL, port and folder from the variables it sets) and registered as ``opsgate-demo``.
Not on a pytest-xdist worker: the controller's demo serves the workers (they inherit its
variables).

>>> DemoPlugin.wanted(None, embedded=True, worker=False), DemoPlugin.wanted("prod", embedded=False, worker=False)
(True, False)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .launcher import DemoError, DemoProcess


class DemoPlugin:
    """Owns one running :class:`DemoProcess`; stops it at ``pytest_unconfigure`` (or ``stop``)."""

    def __init__(self, process: DemoProcess) -> None:
        self.process: DemoProcess | None = process

    @staticmethod
    def wanted(name: str | None, embedded: bool, worker: bool) -> bool:
        """The demo runs for the embedded default environment, in the controlling process only."""
        return embedded and name in (None, "", "default") and not worker

    @classmethod
    def for_run(cls, config: pytest.Config) -> "DemoPlugin | None":
        """Start the demo when this run checks the embedded default (and export its variables)."""
        from .. import envfile
        from ..plugin import environment_wanted

        wanted = environment_wanted(config)
        try:
            _, embedded = envfile.resolve(wanted, [Path(config.invocation_params.dir), Path(config.rootpath)])
        except envfile.EnvFileError:
            return None  # loading the environment says why, with the file's own message
        if not cls.wanted(wanted, embedded, hasattr(config, "workerinput")) or config.getoption("opsgate_plan"):
            return None  # --plan touches nothing: the demo's own defaults stand in for its address
        try:
            process = DemoProcess.start()
        except DemoError as exc:
            raise pytest.UsageError(f"opsgate: the environment cannot be used; no check was run:\n{exc}") from None
        os.environ.update(process.environ())
        return cls(process)

    def stop(self) -> None:
        """Stop the demo (once)."""
        process, self.process = self.process, None
        if process is not None:
            process.stop()

    def pytest_unconfigure(self) -> None:
        self.stop()
