"""The ``opsgate`` command.

- ``opsgate validate ENV``  check an environment file alone (exit 0 ok, 1 invalid); an unset
  ``${VAR}`` is a placeholder (named in a note) unless ``--require-env``
- ``opsgate schema``        print the environment file's JSON Schema (for editors)
- ``opsgate list [ENV]``    the checks an environment defines: cadence, severity, retry and
  window, prerequisites, in columns; ``--runbook`` the runbook's steps traced to their
  checks (``--markdown [FILE]`` as Markdown)
- ``opsgate demo``          run the embedded demo target in the foreground
- ``opsgate backup NAME``   take a fresh backup of a ``backup`` item now (``--env ENV``)
- ``opsgate triage --env ENV`` collect an incident triage into ``reports/incidents/<id>/``
  (see :mod:`opsgate.triage`)
- ``opsgate gate REPORT...`` decide a gate over reports: PASS 0, WARN 0 (1 if the gate
  says WARN blocks), FAIL 1, ERROR 2; ``--environment NAME`` makes a report of another
  environment ERROR; ``--nagios`` prints one plugin line and exits 0/1/2/3.
  A report is read in bounded memory (``--max-report-size``); with a seal key
  (``--seal-key-file`` or the policy's ``seal_key``) only reports signed with it count; an
  output file (``--junit``, ``--markdown``, ``--prometheus``) that cannot be written is ERROR.

Every subcommand that prints ends quietly when its reader goes away (``opsgate schema | head``).

>>> main(["schema"]) == 0  # doctest: +ELLIPSIS
{...
True
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

from . import __version__
from . import severity as sev
from .backups.cli import add_backup_parser
from .discover import add_init_parser
from .triage import add_triage_parser


def _load_for_lint(args: argparse.Namespace):
    """The environment for validate/list: unset variables are placeholders unless
    ``--require-env``; None (problems printed) when it cannot be used."""
    from . import envfile

    try:
        return envfile.load(args.env, [Path.cwd()], allow_unset=not args.require_env)
    except envfile.EnvFileError as exc:
        print(f"invalid environment ({len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''}):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _unset_note(loaded) -> None:
    if loaded.unset:
        print(f"note: unset, shown as placeholders: {', '.join(loaded.unset)} "
              "(a run needs them; --require-env makes this an error)", file=sys.stderr)


def _validate(args: argparse.Namespace) -> int:
    loaded = _load_for_lint(args)
    if loaded is None:
        return 1
    items = loaded.env.items()
    print(f"ok: {loaded.path} - environment {loaded.env.name!r}, {len(items)} checks")
    _unset_note(loaded)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from .model import Environment

    schema = Environment.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "opsgate environment"
    print(json.dumps(schema, indent=2))
    return 0


def _seconds(value: float) -> str:
    """A duration as written in runbooks: ``_seconds(600.0)`` is ``10m``, ``_seconds(2.5)`` is ``2.5s``."""
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s"


def _list(args: argparse.Namespace) -> int:
    if args.env_option is not None:
        if args.env is not None and args.env != args.env_option:
            print(f"error: two environments given ({args.env} and --env {args.env_option}); give one", file=sys.stderr)
            return 2
        args.env = args.env_option
    if args.markdown is not None and not args.runbook:
        print("error: --markdown goes with --runbook (the runbook trace as Markdown)", file=sys.stderr)
        return 2
    loaded = _load_for_lint(args)
    if loaded is None:
        return 1
    if args.runbook:
        return _list_runbook(args, loaded)
    rows = [("CHECK", "CADENCE", "SEVERITY", "RETRY", "WINDOW", "AFTER")]
    from .kinds import REGISTRY  # the kinds' names: only the environment's kinds are imported

    copies: dict[str, list] = {}  # an item with hosts: -> its check@host copies (and each host's reachable@host first)
    for check in loaded.env.items() if loaded.env.hosts else ():
        if check.on_host is not None:
            copies.setdefault(check.name.rsplit("@", 1)[0], []).append(check)
    listed: set[str] = set()
    via = {c.name: c for c in loaded.env.items() if c.via} if loaded.env.hosts else {}  # with reachable@ first
    for kind in REGISTRY:
        for index, raw in enumerate(getattr(loaded.env, kind)):
            for item in copies.get(raw.name, [raw]) if raw.hosts else [via.get(raw.name, raw)]:
                host = item.on_host or item.via
                if host is not None and item.kind != "reachable" and f"reachable@{host}" not in listed:
                    listed.add(f"reachable@{host}")
                    reach = next(c for c in copies["reachable"] if c.name == f"reachable@{host}")
                    rows.append((f"test_reachable[{reach.name}]", ",".join(reach.cadence),
                                 sev.label(reach.severity, loaded.env.severity_scale), "-", "-", "-"))
                rows.append(_row(item, loaded, kind, index))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    _unset_note(loaded)
    return 0


def _row(item, loaded, kind: str, index: int) -> tuple[str, ...]:
    """One check's row of ``opsgate list``."""
    retry = f"{_seconds(item.retry.timeout)} every {_seconds(item.retry.interval)}" if item.retry else "-"
    window = f"{_seconds(item.window.duration)} every {_seconds(item.window.interval)}" if item.window else "-"
    after = ", ".join(item.depends_on) or "-"
    unset = loaded.unset_in.get((kind, index))
    if unset:  # its values hold placeholders: say so on its row
        after += "  (uses unset " + ", ".join(f"${{{n}}}" for n in unset) + ")"
    return (f"test_{item.kind}[{item.name}]", ",".join(item.cadence),
            sev.label(item.severity, loaded.env.severity_scale), retry, window, after)


def _list_runbook(args: argparse.Namespace, loaded) -> int:
    """The runbook trace: each step, how it is encoded and by which checks, or why not."""
    from . import runbook

    env = loaded.env
    if env.runbook is None:
        print(f"error: environment {env.name!r} ({loaded.path}) has no runbook: section to trace", file=sys.stderr)
        return 1
    items = {item.name: item for item in env.items()}
    label = lambda severity: sev.label(severity, env.severity_scale)  # noqa: E731
    if args.markdown is None:
        sys.stdout.write(runbook.render_text(env.runbook, items, label))
    else:
        text = runbook.render_markdown(env.runbook, items, label, title=env.name)
        if args.markdown == "-":
            sys.stdout.write(text)
        else:
            try:
                Path(args.markdown).write_text(text, encoding="utf-8")
            except OSError as exc:
                print(f"error: cannot write {args.markdown}: {exc.strerror or exc}", file=sys.stderr)
                return 1
            print(f"wrote {args.markdown}: {runbook.summary(env.runbook)}")
    _unset_note(loaded)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo.launcher import DemoProcess

    demo = DemoProcess.start(args.fault)
    print(f"demo target at {demo.url} (fault={demo.fault}, logs in {demo.dir}/logs); Ctrl-C stops it")
    for key, value in demo.environ().items():
        print(f"export {key}={value}")
    try:
        while demo.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        demo.stop()
    return 0


def _gate(args: argparse.Namespace) -> int:
    # A short-lived process holding reports of up to millions of objects that are never
    # cyclic garbage: without this the collector re-walks them all while they are parsed
    # (2 s of 4 for a 50,000-check report).
    gc.disable()
    from .exporters import nagios, terminal
    from .exporters.publish import publish
    from .gate import PolicyError, evaluate, find_policy, load_policy, read_report
    from .report import ReportError, read_key_file
    from .units import parse_size

    try:
        found = find_policy(args.policy, [Path.cwd()])
        if not args.nagios and not args.quiet:
            print(_policy_line(found))
        policy = load_policy(found)
        policy.gate(args.gate)
        key = policy.seal_key(args.gate)
        if args.seal_key_file:
            key = read_key_file(args.seal_key_file, "--seal-key-file")
        limit = parse_size(args.max_report_size)
    except (ReportError, ValueError) as exc:
        reason = str(exc) if isinstance(exc, ReportError) else f"--max-report-size: {exc}"
        if args.nagios:
            print(f"OPSGATE UNKNOWN - {reason}".replace("|", "/"))
            return 3
        print(f"ERROR: {reason}\nverdict: ERROR (exit 2)", file=sys.stderr)
        return 2
    except PolicyError as exc:
        reason = "; ".join(str(p) for p in exc.problems)
        if args.nagios:
            print(f"OPSGATE UNKNOWN - the gate policy cannot be used: {reason}".replace("|", "/"))
            return 3
        print("ERROR: the gate policy cannot be used:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    result = evaluate([read_report(path, key, limit) for path in args.reports], policy, args.gate,
                      environment=args.environment)
    args.broken_pipe_code = result.exit_code  # the verdict stands if the reader goes away
    publish(result, args.markdown, args.junit, args.prometheus)  # one that cannot be written makes it ERROR
    if args.nagios:
        line, code = nagios.render(result)
        print(line)
        return code
    if not args.quiet:
        colour = sys.stdout.isatty() and not args.no_color and not os.environ.get("NO_COLOR")  # no-color.org
        sys.stdout.write(terminal.render(result, colour=colour))
    return result.exit_code


def _policy_line(found: Path | None) -> str:
    """Which gates file the gate reads, or where it looked for one."""
    if found is not None:
        inside = found.is_absolute() and found.is_relative_to(Path.cwd())
        return f"policy: {found.relative_to(Path.cwd()) if inside else found}"
    looked = Path.cwd() / "config" / "gates.yaml"
    return (f"policy: none found (no --policy, no $OPSGATE_POLICY, no {looked} or .yml); "
            "only the built-in 'default' gate applies")


_ABOUT = """\
opsgate turns operational runbooks into checks: one environment file (config/NAME.yaml)
says what to probe - HTTP endpoints, ports, processes, disks, logs, PostgreSQL, Redis,
Prometheus, containers, files, commands - and the checks run through pytest, so every
pytest option works (-k, -m P0, -x, --junitxml). Each run writes a report; the gate
decides from reports whether to ship, page or go on.

three jobs, one per folder of checks (the environment's cadences):
  daily checks          pytest checks/daily --env production
  backup verification   pytest checks/weekly --env production
  DR drills             pytest checks/quarterly --env production
and on demand, after a fix: the runbook's diagnosis again and its post-fix watches
  incident              pytest checks/incident --env production

and the gate, over the reports they wrote:
  gate                  opsgate gate reports/production/daily-latest.json
"""

_EXAMPLES = """\
examples:
  opsgate validate production            lint config/production.yaml (secrets may be unset)
  opsgate list production                its checks: cadence, severity, retry, window, prerequisites
  opsgate gate reports/production/daily-latest.json --junit gate.xml
  opsgate schema > opsgate.schema.json   for your editor's YAML completion

'opsgate COMMAND --help' shows each command's options and an example.
"""


def _command(sub, name: str, help: str, example: str, func) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with an example."""
    parser = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                            epilog="example:\n  " + example.strip().replace("\n", "\n  "),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="opsgate", description=_ABOUT, epilog=_EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"opsgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = _command(sub, "validate", "check an environment file without running checks",
                 "opsgate validate config/production.yaml\n"
                 "opsgate validate production --require-env   # in the job that will run it", _validate)
    p.add_argument("env", help="environment file or name")
    p.add_argument("--require-env", action="store_true",
                   help="an unset ${VAR} is an error (default: a placeholder, named in a note)")
    _command(sub, "schema", "print the environment file's JSON Schema",
             "opsgate schema > opsgate.schema.json", _schema)
    p = _command(sub, "list", "list the checks an environment defines",
                 "opsgate list production\nopsgate list config/staging.yaml --require-env\n"
                 "opsgate list --env config/examples/aura.yaml --runbook --markdown config/examples/aura.md", _list)
    p.add_argument("env", nargs="?", default=None, help="environment file or name (default: the embedded one)")
    p.add_argument("--env", dest="env_option", default=None, metavar="ENV", help="the same, as an option")
    p.add_argument("--require-env", action="store_true",
                   help="an unset ${VAR} is an error (default: a placeholder, named in a note)")
    p.add_argument("--runbook", action="store_true",
                   help="list the runbook's steps instead: how each is encoded and by which checks, or why not")
    p.add_argument("--markdown", nargs="?", const="-", default=None, metavar="FILE",
                   help="with --runbook: as Markdown, to FILE or stdout (config/examples/<system>.md)")
    p = _command(sub, "demo", "run the embedded demo target in the foreground",
                 "opsgate demo --fault degraded   # then, in another shell: pytest checks/daily", _demo)
    p.add_argument("--fault", default=None, help="degraded, slow, errors, no-models or stale-metrics")
    p = _command(sub, "gate", "decide a gate (PASS/WARN/FAIL/ERROR) over one or more reports",
                 "opsgate gate reports/production/daily-latest.json reports/production/weekly-latest.json \\\n"
                 "    --gate release --junit gate.xml", _gate)
    p.add_argument("reports", nargs="+", metavar="REPORT", help="report files (reports/default/daily-latest.json ...)")
    p.add_argument("--environment", default=None, metavar="NAME",
                   help="the environment gated: a report of another one is ERROR (default: the gate's environment:)")
    p.add_argument("--policy", default=None,
                   help="gates file (default: $OPSGATE_POLICY, else config/gates.yaml, else the built-in default gate)")
    p.add_argument("--gate", default=None, help="gate name in the policy (default: 'default')")
    p.add_argument("--markdown", default=None, metavar="FILE", help="also write a Markdown summary")
    p.add_argument("--junit", default=None, metavar="FILE", help="also write JUnit XML")
    p.add_argument("--prometheus", default=None, metavar="FILE",
                   help="also write Prometheus text format (node_exporter textfile collector), atomically")
    p.add_argument("--nagios", action="store_true", help="print one Nagios plugin line; exit 0/1/2/3")
    p.add_argument("--seal-key-file", default=None, metavar="FILE",
                   help="trust only reports signed (HMAC-SHA256) with the key in this file; overrides the policy's seal_key")
    p.add_argument("--max-report-size", default="512MiB", metavar="SIZE",
                   help="a larger report file is ERROR, not read (default: 512MiB)")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing; the exit code is the verdict")
    p.add_argument("--no-color", action="store_true", help="no ANSI colours (as does NO_COLOR=1)")
    p.set_defaults(broken_pipe_code=2)  # a gate cut short before its verdict is ERROR, never PASS
    add_init_parser(sub)
    add_backup_parser(sub)
    add_triage_parser(sub)
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # the reader went away (opsgate schema | head): stop quietly, as the Python docs advise
        # (stdout onto devnull, so the flush at exit cannot raise again)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return getattr(args, "broken_pipe_code", 0)


if __name__ == "__main__":
    sys.exit(main())
