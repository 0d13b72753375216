"""The reference systems' runbooks as environment files: each validates, and Living Codex's
runs against a stand-in that answers like the real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsgate import envfile
from tests.support.http_target import StaticTarget

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "config" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_environment_is_valid(path):
    loaded = envfile.load(path, environ={"UPSTREAM_API_TOKEN": "example-token", "JARVIS_PG_PASSWORD": "pg-example",
                                         "JARVIS_REDIS_PASSWORD": "redis-example"})
    assert loaded.env.items()


class CodexStandIn(StaticTarget):
    """A loopback server shaped like Living Codex's /health, /health/memory, /health/ai-pipeline
    and /metrics/prometheus."""

    def __init__(self, heap_mb: float, modules: list[dict], latency_s: float = 0.2):
        super().__init__({
            "/health": {"status": "healthy", "moduleLoading": {"asyncInitializationComplete": True},
                        "modules": modules, "database": {"status": "ok"}},
            "/health/memory": {"memoryUsage": {"heapSizeMB": heap_mb}},
            "/health/ai-pipeline": {"metrics": {"queued": 0}},
            "/metrics/prometheus": "# TYPE http_request_duration_seconds gauge\n"
                                   f"http_request_duration_seconds {latency_s}\n",
        })
        self.url = self.base


def codex_env(url: str) -> dict:
    return {"CODEX_URL": url, "CODEX_WINDOW": "1s", "CODEX_INTERVAL": "0.25s", "CODEX_STARTUP": "0.5s"}


def test_living_codex_runbook_warns_on_heap_and_holds_stable(run_suite):
    with CodexStandIn(heap_mb=1700, modules=[{"name": "core", "status": "loaded"}]) as codex:
        run = run_suite("--env", "living-codex", "-m", "not process", env=codex_env(codex.url))
    assert run.returncode == 0, run.output
    assert "test_http[memory]: memoryUsage.heapSizeMB < 1500: observed 1700" in run.output
    samples = run.check("stable-after-fix")["metadata"]["opsgate"]["evidence"]["samples"]
    assert len(samples) == 5 and all(s["status"] == "pass" for s in samples)


def test_living_codex_runbook_fails_when_a_module_is_not_loaded(run_suite):
    modules = [{"name": "core", "status": "loaded"}, {"name": "ai", "status": "failed"}]
    with CodexStandIn(heap_mb=2100, modules=modules) as codex:
        run = run_suite("--env", "living-codex", "-m", "not process and not postfix", env=codex_env(codex.url))
    assert run.returncode == 1
    assert "length(modules[?status != 'loaded']) == 0: observed 1" in run.output
    assert "blocked by health" in run.output  # memory and ai-pipeline were not run
