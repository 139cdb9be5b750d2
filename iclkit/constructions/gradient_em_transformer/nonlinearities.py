"""The sums of ReLUs that stand in for the E-step / M-step nonlinearities of the general-K
Theorem 3.1 construction (``psi(t) = t^2/2``, softplus, exp; ``docs/construction.md``).

Each is an interpolating sum of ``M`` ReLU terms (:func:`iclkit.constructions.relu_approx.
interpolate_relu_sum`) with a certificate of its error; :func:`estep_functions` hands a built
construction's sums to the surrogate gradient EM of :mod:`iclkit.constructions.surrogate_em`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from iclkit.constructions.relu_approx import ReluSum, interpolate_relu_sum
from iclkit.constructions.surrogate_em import EStepFunctions
from iclkit.theory.validation import check_positive

from .config import ConstructionConfig
from .model import GradientEMTransformer

__all__ = ["estep_functions", "general_relu_sums"]

#: Smallest half-width of the logit domain of softplus and exp: their tail error is e^-R.
_MIN_R_LOGIT = 4.0
#: Bounds on the second derivatives that size the interpolation grids.
_PSI_CURVATURE, _SOFTPLUS_CURVATURE, _EXP_CURVATURE = 1.0, 0.25, 1.0


def general_relu_sums(
    M: int, *, R_residual: float = ConstructionConfig.R_residual, R_logit: float | None = None
) -> dict[str, ReluSum]:
    """The three ReLU sums of the general-K E-step / M-step (each with ``M`` terms).

    - ``psi``: ``t^2/2`` on ``[-R_residual, R_residual]``, linear beyond (``|psi''| = 1``);
    - ``softplus`` on ``[-R, R]``, constant below and slope 1 beyond (``|softplus''| <= 1/4``,
      tail error <= ``e^-R``);
    - ``exp`` on ``[-R, 0]``, constant below (tail <= ``e^-R``), slope continued above;
    with ``R = R_logit`` (default ``max(4, 2 log M)``: the tail error ``e^-R <= 1/M^2`` shrinks
    as fast as the interpolation error).
    """
    if R_logit is None:
        R = max(_MIN_R_LOGIT, 2 * math.log(M))
    else:
        R = check_positive(R_logit, "R_logit")
    psi = interpolate_relu_sum(
        lambda t: 0.5 * t * t,
        R_residual,
        M,
        second_derivative_bound=_PSI_CURVATURE,
        left="linear",
        right="linear",
    )
    sp = interpolate_relu_sum(
        F.softplus, R, M, second_derivative_bound=_SOFTPLUS_CURVATURE, right=1.0
    )
    ex = interpolate_relu_sum(
        torch.exp, R, M, domain=(-R, 0.0), second_derivative_bound=_EXP_CURVATURE, right="linear"
    )
    return {"psi": psi, "softplus": sp, "exp": ex}


def estep_functions(tf: GradientEMTransformer) -> EStepFunctions:
    """The ReLU sums of a general-K construction as :class:`EStepFunctions` (for the surrogate)."""
    s = tf.relu_sums
    return EStepFunctions(s["psi"], s["softplus"], s["exp"])
