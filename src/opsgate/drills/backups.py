"""A drill's restore from one of the environment's ``backup`` items: its newest recovery point,
checked end to end (L2) and restored into the drill's scratch (L3) by the backup source
itself (:mod:`opsgate.backups`), so a drill restores exactly as the weekly verification does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..backups.base import Scratch
from ..redact import REDACTOR
from .run import StepFailed


def restore_backup(name: str, ctx: Any, scratch: Scratch, take_first: bool = False
                   ) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Restore backup item ``name``'s newest recovery point into ``scratch`` (after taking a
    fresh one with ``take_first``): (what it was restored to - a DSN, a URL or a path -, the
    point used, the evidence)."""
    from .. import backups
    from ..probes import backup as backup_kind

    item = _backup_item(name, ctx)
    module = backups.source(item.source)
    options = backup_kind.resolved_options(item, ctx)
    taken = None
    if take_first:
        try:
            taken = backup_kind.take_backup(item, ctx, scratch, options)
        except Exception as exc:  # the source says why (a tool missing, the live side down)
            raise StepFailed(f"backup {name}: taking a fresh backup failed: {exc}") from None
    found = backup_kind.find_points(item, ctx, module, options, scratch)
    if not found:
        raise StepFailed(f"backup {name}: no recovery point found ({item.path or 'its repository'})")
    point = found[-1]
    integrity = module.integrity(point, options, scratch)
    if not integrity.ok:
        raise StepFailed(f"backup {name}: the newest recovery point {point.id} failed its integrity check: "
                         f"{integrity.message}")
    outcome, restored = module.restore(point, options, scratch)
    if not outcome.ok:
        raise StepFailed(f"backup {name}: restoring {point.id} failed: {outcome.message}")
    age = round(time.time() - point.taken_at, 3)
    used = {"id": point.id, "taken_at": point.taken_at, "age_s": age, "size": point.size, "source": item.source}
    evidence = {"message": f"restored {point.id} (age {age:.0f}s): {outcome.message}",
                "taken_first": str(taken) if taken else None,
                "integrity": integrity.message, "restore": outcome.message, "restore_s": round(outcome.duration_s, 3),
                "bytes": outcome.bytes or integrity.bytes, "items": outcome.items}
    return address(restored), used, evidence


def address(restored: Any) -> str:
    """What ``{{restored}}`` stands for: a URL a service can connect with (its password is a
    registered secret, masked in every output), or the restored path.

    >>> address(Path("/scratch/app.sqlite"))
    '/scratch/app.sqlite'
    """
    from urllib.parse import quote

    password = getattr(restored, "password", None)
    if hasattr(restored, "params") and hasattr(restored, "dbname"):  # a PostgreSQL database (backups.pgconn)
        if password:
            REDACTOR.add(password)
        auth = quote(restored.user, safe="") + (f":{quote(password, safe='')}" if password else "")
        host = restored.host if not restored.host.startswith("/") else "localhost"
        query = f"?host={quote(restored.host, safe='')}" if restored.host.startswith("/") else ""
        return f"postgresql://{auth}@{host}:{restored.port}/{quote(restored.dbname, safe='')}{query}"
    if hasattr(restored, "port") and hasattr(restored, "db"):  # a scratch redis-server (backups.redis)
        if password:
            REDACTOR.add(password)
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"redis://{auth}127.0.0.1:{restored.port}/{restored.db}"
    return str(restored)


def _backup_item(name: str, ctx: Any) -> Any:
    environment = getattr(ctx, "environment", None)
    items = environment.items("backup") if environment is not None else []
    for item in items:
        if item.name == name:
            return item
    known = ", ".join(i.name for i in items) or "none"
    raise StepFailed(f"no backup item named {name!r} in the environment (backup items: {known})")
