"""The reference systems' runbooks as environment files: each validates. Each runs against its
stand-in in tests/test_example_<system>.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsgate import envfile

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "config" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_environment_is_valid(path):
    loaded = envfile.load(path, environ={"OPENROUTER_API_KEY": "example-token", "JARVIS_PG_PASSWORD": "pg-example",
                                         "JARVIS_REDIS_PASSWORD": "redis-example"})
    assert loaded.env.items()
