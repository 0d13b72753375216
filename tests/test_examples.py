"""The reference systems' runbooks as environment files: each validates, and none makes the daily
suite wait for a post-fix watch. Each runs against its stand-in in tests/test_example_<system>.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsgate import envfile

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "config" / "examples").glob("*.yaml"))
LOAD_ENV = {"OPENROUTER_API_KEY": "example-token", "JARVIS_PG_PASSWORD": "pg-example", "JARVIS_REDIS_PASSWORD": "redis-example"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_environment_is_valid(path):
    loaded = envfile.load(path, environ=LOAD_ENV)
    assert loaded.env.items()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_daily_suite_waits_for_no_post_fix_watch(path):
    """A post-fix watch (a window sampled for minutes after a fix, tag postfix) is run on demand
    in checks/incident, and only there: no item of a scheduled suite (daily, weekly, monthly,
    quarterly) samples a window, so no scheduled run waits the runbooks' 10 or 30 minutes."""
    env = envfile.load(path, environ=LOAD_ENV).env
    for cadence in ("daily", "weekly", "monthly", "quarterly"):
        assert not [i.name for i in env.items(cadence=cadence) if i.window is not None], cadence
    watches = [i for i in env.items() if "postfix" in i.tags]
    assert all(i.cadence == ["incident"] for i in watches), [(i.name, i.cadence) for i in watches]
    if path.stem in ("living-codex", "personal-ai-chatbot", "aura"):  # their watches are the incident suite's
        assert watches and all(i.cadence == ["incident"] for i in watches)
        incident = {i.name for i in env.items(cadence="incident")}
        assert {i.name for i in env.items(cadence="daily")} < incident  # the diagnosis again, then the watches
