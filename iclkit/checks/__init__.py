"""Theorem checks: one small function per claim of the MoR and softmax-dynamics papers (and the
prior work they build on), their registry, the runner and the report.

Importing this package registers every check: :mod:`~iclkit.checks.em` (reference EM and
gradient EM rates), :mod:`~iclkit.checks.em_probability` (Theorem 3.1's probability statement),
:mod:`~iclkit.checks.construction` (the Theorem 3.1 transformer),
:mod:`~iclkit.checks.depth` (its depth vs log(n/d), measured on the transformer),
:mod:`~iclkit.checks.lsa` (LSA gradient flow), :mod:`~iclkit.checks.softmax` (softmax-attention
GD phases) and :mod:`~iclkit.checks.generalization` (the O(L / sqrt(B)) bound).
"""

from __future__ import annotations

from . import construction, depth, em, em_probability, generalization, lsa, softmax  # noqa: F401
from .registry import CheckResult, all_checks, run_check, select_checks
from .suite import CheckConfig, CheckRun, run_checks

__all__ = [
    "CheckConfig",
    "CheckResult",
    "CheckRun",
    "all_checks",
    "run_check",
    "run_checks",
    "select_checks",
]
