"""Theorem bounds as functions: each theorem's conditions, rate and size, in the papers' symbols.

One function per statement; every function validates its inputs (``ParameterError``), checks the
theorem's assumptions and returns a frozen result that says which hold and why. Constants that
the papers leave inside ``O(.)`` are an explicit argument ``C`` (default 1); the result marks the
constant as *unknown* so a check can fit it and say so.

Every statement carries a provenance mark:

- **[2nd]** restated by a third party (MoR paper body not readable here);
- **[READ]** read from a stored source (the source is named);
- **[RECON]** reconstructed from cited prior work or derived here: *not* the paper's theorem;
- **[MEASURED]** this project's derivation and measurement (softmax phase scalings), not a
  theorem of any paper.

Modules, by paper:

- :mod:`.mor` - MoR (arXiv 2410.14183): Theorem 3.1, the two-component rates (Theorems 3.2/3.3)
  and the generalization bound (Theorems 4.1/4.2);
- :mod:`.lsa` - LSA gradient flow (Zhang-Frei-Bartlett Theorem 4.1) and its MoR optimum;
- :mod:`.softmax` - softmax attention phase scalings (Huang-Cheng-Liang);
- :mod:`.results` - the shared result types.

Every public name is importable from :mod:`iclkit.theory.bounds` itself. This subpackage imports
nothing of iclkit beyond :mod:`iclkit.theory.validation`.
"""

from __future__ import annotations

from .lsa import (
    LSAFixedPoint,
    LSAMoROptimum,
    lsa_convergence_condition,
    lsa_fixed_point,
    lsa_gamma,
    lsa_mor_optimum,
)
from .mor import (
    THEOREM_3_1_MAX_HEADS,
    TwoMixtureRates,
    generalization_bound,
    gradient_em_iterations_slope,
    theorem_3_1_conditions,
    theorem_3_1_error_bound,
    theorem_3_1_layers,
    two_mixture_rates,
)
from .results import UNKNOWN_CONSTANT, Condition, ConditionReport, LayerCount, RateBound
from .softmax import PhaseScalings, softmax_phase_scalings

__all__ = [
    "THEOREM_3_1_MAX_HEADS",
    "UNKNOWN_CONSTANT",
    "Condition",
    "ConditionReport",
    "LSAFixedPoint",
    "LSAMoROptimum",
    "LayerCount",
    "PhaseScalings",
    "RateBound",
    "TwoMixtureRates",
    "generalization_bound",
    "gradient_em_iterations_slope",
    "lsa_convergence_condition",
    "lsa_fixed_point",
    "lsa_gamma",
    "lsa_mor_optimum",
    "softmax_phase_scalings",
    "theorem_3_1_conditions",
    "theorem_3_1_error_bound",
    "theorem_3_1_layers",
    "two_mixture_rates",
]
