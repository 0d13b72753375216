"""Write a gate's result where it was asked for: Markdown, JUnit, Prometheus textfile,
and ``$GITHUB_STEP_SUMMARY`` when a GitHub Actions step is running.

>>> import tempfile, pathlib
>>> from opsgate.gate import evaluate, load_policy, read_report
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> result = evaluate([read_report("/nonexistent.json")], load_policy(None))
>>> sorted(p.name for p in write_outputs(result, junit=out / "j.xml", step_summary=None))
['j.xml']
"""

from __future__ import annotations

import os
from pathlib import Path

from ..gate.decide import GateResult
from ..report import atomic_write
from . import junit as junit_format
from . import markdown as markdown_format
from . import prometheus as prometheus_format


def write_outputs(result: GateResult, markdown: str | Path | None = None, junit: str | Path | None = None,
                  prometheus: str | Path | None = None,
                  step_summary: str | None = "$GITHUB_STEP_SUMMARY") -> list[Path]:
    """Write each requested file (atomically); append the Markdown to the step summary if set."""
    if step_summary == "$GITHUB_STEP_SUMMARY":
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY") or None
    written = []
    if markdown or step_summary:
        text = markdown_format.render(result)
        if markdown:
            written.append(_write(markdown, text))
        if step_summary:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(text + "\n")
    if junit:
        written.append(_write(junit, junit_format.render(result)))
    if prometheus:
        Path(prometheus).parent.mkdir(parents=True, exist_ok=True)
        prometheus_format.write(result, prometheus)
        written.append(Path(prometheus))
    return written


def _write(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)
    return path
