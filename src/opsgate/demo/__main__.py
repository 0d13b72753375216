"""``python -m opsgate.demo serve|selftest`` (see opsgate.demo.server)."""

from .server import main

raise SystemExit(main())
