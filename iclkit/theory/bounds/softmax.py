"""Phase-time scalings of one-layer softmax attention trained by GD on feature tokens.

Huang, Cheng, Liang (arXiv 2310.05249) describe the phases; their explicit phase-time bounds were
not readable, so the scalings here are this project's derivation and measurement [MEASURED]:
:func:`softmax_phase_scalings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import check_int, check_real

__all__ = [
    "BALANCED_PHASE1_FACTOR",
    "UNDER_REPRESENTED_PHASE1_FACTOR",
    "PhaseScalings",
    "softmax_phase_scalings",
]

#: Balanced phase 1 (target attention reaches 1/2) takes ``c K^2`` in units of eta * t; c was
#: measured between 1.15 and 1.45 over K, and 1.3 is the middle of that range.
BALANCED_PHASE1_FACTOR = 1.3

#: Same for under-represented queries of imbalanced data: measured 2.6-3.2, rounded to 3.
UNDER_REPRESENTED_PHASE1_FACTOR = 3.0


@dataclass(frozen=True)
class PhaseScalings:
    """Phase-time scalings of one-layer softmax attention GD (units of eta * t) [MEASURED].

    These are this project's derivations and measurements (``docs/provenance.md`` §11), **not** the
    theorems of Huang-Cheng-Liang, whose explicit phase-time bounds were not readable.

    Attributes
    ----------
    phase1 : float
        Balanced / under-represented: time for the target attention to reach 1/2, ``~ K^2``
        (measured 1.15-1.45 K^2 balanced; 2.6-3.2 K^2 for under-represented queries).
    last_phase : float
        Time to reach loss eps in the last (1/t) phase, ``~ K / eps`` (balanced,
        ``L(t) ~ K / (4 eta t)``).
    dominant : float or None
        Imbalanced dominant-feature queries, one phase: ``~ 1 / eps`` (independent of K).
    exponents : dict
        ``{"phase1_K": 2, "last_phase_loss_t": -1, "dominant_K": 0}``.
    """

    phase1: float
    last_phase: float
    dominant: float | None
    exponents: dict[str, float]
    mark: str = "[MEASURED: this project's derivation, not the paper's theorem]"


def softmax_phase_scalings(K: int, eps: float, *, p_dominant: float | None = None) -> PhaseScalings:
    """Leading-order phase times in units of ``eta * t`` [MEASURED] (see :class:`PhaseScalings`).

    Balanced: ``T1 ~ K^2``, ``T_eps ~ T1 + K/(4 eps)``. Imbalanced with dominant probability
    ``p_dominant``: dominant queries ``(1 + r)/(4 p_dominant eps)`` with r <= 1 (bounded here by
    ``1/(2 p_dominant eps)``); under-represented queries ``~ 3 K^2`` to reach attention 1/2.
    """
    K = check_int(K, "K", minimum=2)
    eps = check_real(eps, "eps", minimum=0.0, maximum=1.0, strict_minimum=True)
    exps = {"phase1_K": 2.0, "last_phase_loss_t": -1.0, "dominant_K": 0.0}
    if p_dominant is None:
        t1 = BALANCED_PHASE1_FACTOR * K * K
        return PhaseScalings(t1, t1 + K / (4 * eps), None, exps)
    p = check_real(
        p_dominant, "p_dominant", minimum=0.0, maximum=1.0, strict_minimum=True, strict_maximum=True
    )
    t1 = UNDER_REPRESENTED_PHASE1_FACTOR * K * K
    pk = (1 - p) / (K - 1)
    return PhaseScalings(t1, t1 + 1.0 / (2 * pk * eps), 1.0 / (2 * p * eps), exps)
