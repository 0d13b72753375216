"""The ``opsgate`` command.

- ``opsgate validate ENV``  check an environment file alone (exit 0 ok, 1 invalid)
- ``opsgate schema``        print the environment file's JSON Schema (for editors)
- ``opsgate list [ENV]``    the checks an environment defines, with severity and cadence
- ``opsgate demo``          run the embedded demo target in the foreground
- ``opsgate gate REPORT...`` decide a gate over reports: PASS 0, WARN 0 (1 if the gate
  says WARN blocks), FAIL 1, ERROR 2; ``--environment NAME`` makes a report of another
  environment ERROR; ``--nagios`` prints one plugin line and exits 0/1/2/3.
  A report is read in bounded memory (``--max-report-size``); with a seal key
  (``--seal-key-file`` or the policy's ``seal_key``) only reports signed with it count; an
  output file (``--junit``, ``--markdown``, ``--prometheus``) that cannot be written is ERROR.

>>> main(["schema"]) == 0  # doctest: +ELLIPSIS
{...
True
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

from . import __version__


def _validate(args: argparse.Namespace) -> int:
    from . import envfile

    try:
        loaded = envfile.load(args.env, [Path.cwd()])
    except envfile.EnvFileError as exc:
        print(f"invalid environment ({len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''}):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    items = loaded.env.items()
    print(f"ok: {loaded.path} - environment {loaded.env.name!r}, {len(items)} checks")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from .model import Environment

    schema = Environment.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "opsgate environment"
    print(json.dumps(schema, indent=2))
    return 0


def _list(args: argparse.Namespace) -> int:
    from . import envfile

    try:
        loaded = envfile.load(args.env, [Path.cwd()])
    except envfile.EnvFileError as exc:
        print(exc, file=sys.stderr)
        return 1
    for item in loaded.env.items():
        deps = f"  after {', '.join(item.depends_on)}" if item.depends_on else ""
        print(f"{item.severity}  {','.join(item.cadence):9} test_{item.kind}[{item.name}]{deps}")
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
        policy = load_policy(find_policy(args.policy, [Path.cwd()]))
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
    publish(result, args.markdown, args.junit, args.prometheus)  # one that cannot be written makes it ERROR
    if args.nagios:
        line, code = nagios.render(result)
        print(line)
        return code
    if not args.quiet:
        sys.stdout.write(terminal.render(result, colour=sys.stdout.isatty() and not args.no_color))
    return result.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="opsgate", description="Runbooks as pytest checks.")
    parser.add_argument("--version", action="version", version=f"opsgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check an environment file without running checks")
    p.add_argument("env", help="environment file or name")
    p.set_defaults(func=_validate)
    p = sub.add_parser("schema", help="print the environment file's JSON Schema")
    p.set_defaults(func=_schema)
    p = sub.add_parser("list", help="list the checks an environment defines")
    p.add_argument("env", nargs="?", default=None, help="environment file or name (default: the embedded one)")
    p.set_defaults(func=_list)
    p = sub.add_parser("demo", help="run the embedded demo target in the foreground")
    p.add_argument("--fault", default=None, help="degraded, slow, errors, no-models or stale-metrics")
    p.set_defaults(func=_demo)
    p = sub.add_parser("gate", help="decide a gate (PASS/WARN/FAIL/ERROR) over one or more reports")
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
    p.add_argument("--no-color", action="store_true", help="no ANSI colours")
    p.set_defaults(func=_gate)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
