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

from ..gate.decide import GateResult, Verdict
from ..redact import sink
from ..report import atomic_write
from . import junit as junit_format
from . import markdown as markdown_format
from . import prometheus as prometheus_format


def write_outputs(result: GateResult, markdown: str | Path | None = None, junit: str | Path | None = None,
                  prometheus: str | Path | None = None,
                  step_summary: str | None = "$GITHUB_STEP_SUMMARY") -> list[Path]:
    """Write each requested file (atomically, into an existing folder); append the Markdown to
    the step summary if set. OSError when one cannot be written (``publish`` makes that ERROR)."""
    if step_summary == "$GITHUB_STEP_SUMMARY":
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY") or None
    written = []
    if markdown or step_summary:
        text = sink(markdown_format.render(result))
        if markdown:
            written.append(_write(markdown, text))
        if step_summary:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(text + "\n")
    if junit:
        written.append(_write(junit, sink(junit_format.render(result))))
    if prometheus:
        prometheus_format.write(result, prometheus)
        written.append(Path(prometheus))
    return written


def publish(result: GateResult, markdown: str | Path | None = None, junit: str | Path | None = None,
            prometheus: str | Path | None = None, step_summary: str | None = "$GITHUB_STEP_SUMMARY") -> list[str]:
    """Write every requested output; one that cannot be written makes the result ERROR (exit 2)
    with the reason, and the outputs that could be written are written again with that
    verdict, so none of them claims a pass. Returns the reasons (empty: all written).

    >>> from opsgate.gate import evaluate, load_policy, read_report
    >>> result = evaluate([read_report("/nonexistent.json")], load_policy(None))
    >>> publish(result, junit="/nonexistent/dir/x.xml", step_summary=None)
    ['--junit /nonexistent/dir/x.xml: cannot be written: No such file or directory']
    """
    wanted = {"markdown": markdown, "junit": junit, "prometheus": prometheus}
    failures, written = _try_each(result, wanted, step_summary)
    if failures:
        result.errors[:0] = failures
        result.verdict, result.exit_code = Verdict.ERROR, 2
        _try_each(result, {k: v for k, v in wanted.items() if k in written}, None)
    return failures


def _try_each(result: GateResult, wanted: dict[str, str | Path | None],
              step_summary: str | None) -> tuple[list[str], set[str]]:
    failures, written = [], set()
    for option, path in wanted.items():
        if not path:
            continue
        try:
            write_outputs(result, step_summary=None, **{option: path})
            written.add(option)
        except OSError as exc:
            failures.append(f"--{option} {path}: cannot be written: {exc.strerror or exc}")
    try:
        write_outputs(result, step_summary=step_summary)
    except OSError as exc:
        failures.append(f"$GITHUB_STEP_SUMMARY {step_summary}: cannot be appended to: {exc.strerror or exc}")
    return failures, written


def _write(path: str | Path, text: str) -> Path:
    path = Path(path)
    # no folder is created: a mistyped path (a textfile folder node_exporter never reads) is
    # an error to see now, not a file nobody reads
    atomic_write(path, text)
    return path
