"""Quarterly disaster-recovery drills: the ``drill`` kind's machinery.

- :mod:`.placeholders` fills ``{{port}}``, ``{{scratch}}``, ``{{copy}}``, ``{{restored}}``;
- :mod:`.run` runs a drill's steps in scratch, timed, with teardown always;
- :mod:`.backups` restores a backup item's newest recovery point for a drill;
- :mod:`.record` writes the auditor's record (Markdown and HTML) under ``reports/drills/``;
- :mod:`.plan` says what a drill would do, touching nothing (``--plan``).

The kind itself (schema, probe, limits) is :mod:`opsgate.probes.drill`.
"""
