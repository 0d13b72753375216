"""The gate: policy + one or more reports -> PASS / WARN / FAIL / ERROR with an exit code.

>>> from opsgate.gate import evaluate, load_policy, read_report
>>> result = evaluate([read_report("/nonexistent.json")], load_policy(None))
>>> result.verdict, result.exit_code
('ERROR', 2)
"""

from .decide import EFFECTS, EXIT_CODES, Effect, Finding, GateResult, SourceVerdict, Verdict, evaluate
from .policy import DEFAULT_GATE, Gate, LoadedPolicy, Policy, PolicyError, find_policy, load_policy
from .reports import CheckRecord, Report, from_document, from_record, read_report

__all__ = [
    "EFFECTS", "EXIT_CODES", "DEFAULT_GATE", "Effect", "Verdict", "CheckRecord", "Finding", "Gate", "GateResult", "LoadedPolicy", "Policy",
    "PolicyError", "Report", "SourceVerdict", "evaluate", "find_policy", "from_document", "from_record", "load_policy", "read_report",
]
