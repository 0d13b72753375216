"""``opsgate backup NAME --env ENV``: take a fresh backup of one ``backup`` item now, into its
configured place (the first fixed folder of its ``path`` glob, or its restic repository),
with its manifest line - the "emergency backup" step of incident runbooks, and what drills
start from. Exit 0 with the new backup's path, 1 with the cause.

>>> import argparse
>>> parser = argparse.ArgumentParser(); sub = parser.add_subparsers(dest="command")
>>> args = parser.parse_args(["backup", "demo-data", "--env", "production"]) if add_backup_parser(sub) else None
>>> args.name, args.env
('demo-data', 'production')
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..redact import REDACTOR


def add_backup_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``opsgate backup`` on the CLI's subparsers."""
    text = "take a fresh backup of a backup item now, with its manifest line"
    p = subparsers.add_parser("backup", help=text, description=text[0].upper() + text[1:] + ".",
                              epilog="example:\n  opsgate backup app-db --env production\n"
                                     "  pytest checks/weekly --env production   # then verify it",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="the backup item's name in the environment file")
    p.add_argument("--env", default=None, help="environment file or name (default: the embedded one)")
    p.set_defaults(func=backup_main)
    return p


def backup_main(args: argparse.Namespace) -> int:
    from .. import envfile
    from ..probes import ProbeContext
    from ..probes.backup import take_backup
    from .base import Scratch

    try:
        loaded = envfile.load(args.env, [Path.cwd()])
    except envfile.EnvFileError as exc:
        print(f"invalid environment ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    items = [i for i in loaded.env.items() if i.kind == "backup"]
    item = next((i for i in items if i.name == args.name), None)
    if item is None:
        known = ", ".join(i.name for i in items) or "none"
        print(f"no backup item named {args.name!r} in {loaded.source} (backup items: {known})", file=sys.stderr)
        return 1
    try:
        with Scratch(timeout=item.timeout, label=f"take-{item.name}") as scratch:
            new = take_backup(item, ProbeContext(base_dir=loaded.base_dir), scratch)
    except Exception as exc:  # one line with the cause, never a traceback with the environment in it
        print(REDACTOR.text(f"backup {item.name}: failed: {type(exc).__name__}: {exc}"), file=sys.stderr)
        return 1
    size = f", {new.stat().st_size:,} bytes" if new.is_file() else ""
    if item.source == "restic":
        from .restic import LAST_TAKEN

        size = f", snapshot {LAST_TAKEN.get(str(new), '?')}"
    manifest = f"; its sha256 line added to {item.manifest}" if item.manifest and new.is_file() else ""
    print(REDACTOR.text(f"backup {item.name} ({item.source}): {new}{size}{manifest}"))
    return 0
