"""Wires this repository's suite to the opsgate plugin (installed via its pytest11 entry
point) and to the shared fixtures in ``fixtures/``."""

pytest_plugins = ["fixtures.environment"]
