"""Hostile-target benchmarks, one module per area, gathered by ``bench/bench_hostile.py``.

Each module has ``run(quick: bool = False) -> list[dict]``; a row is
``{"case": str, "measured": str, "goal": str, "ok": bool}`` (``measured`` and ``goal``
printed side by side, with the ratio where one applies).
"""
