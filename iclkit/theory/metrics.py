"""Risk and parameter-error metrics for MoR in-context learning.

- Prediction MSE ``E(y_hat - y)^2`` and the *excess risk vs the oracle*
  ``E(y_hat - y)^2 - E(y_orc - y)^2`` (``docs/provenance.md`` §2; the paper measures the transformer
  relative to the oracle predictor, ``docs/provenance.md`` §2 [2nd]). Both come with a Monte Carlo
  standard error over prompts; the excess risk uses the paired per-prompt difference, which
  has a much smaller variance than the difference of two independent means.
- Parameter error up to relabelling: components are identifiable only up to a permutation
  (``docs/provenance.md`` §2), so the error is ``min_perm sqrt(sum_k ||beta_hat_perm(k) - beta_k||^2)``,
  found with the Hungarian algorithm (any K; K <= 20 is the paper's range). In the symmetric
  two-component model this is the error up to sign.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .validation import ParameterError, check_finite_tensor, check_shape

__all__ = [
    "RiskEstimate",
    "excess_risk",
    "excess_risk_vs_oracle",
    "parameter_error",
    "prediction_mse",
    "risk_ratio",
    "sign_invariant_error",
]


@dataclass(frozen=True)
class RiskEstimate:
    """A Monte Carlo mean over prompts with its standard error.

    Attributes
    ----------
    mean : float
    se : float
        Standard error of the mean (sample std / sqrt(count)); ``nan`` when count == 1.
    count : int
        Number of prompts averaged.
    """

    mean: float
    se: float
    count: int

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.se:.2g}"


def _mean_se(values: torch.Tensor) -> RiskEstimate:
    v = values.detach().to(torch.float64).reshape(-1)
    count = int(v.numel())
    mean = float(v.mean())
    se = float(v.std(unbiased=True) / math.sqrt(count)) if count > 1 else float("nan")
    return RiskEstimate(mean, se, count)


def _check_pair(y_hat: torch.Tensor, y: torch.Tensor) -> None:
    check_shape(y, "y", (None,))
    check_shape(y_hat, "y_hat", (y.shape[0],))
    check_finite_tensor(y_hat, "y_hat")
    check_finite_tensor(y, "y")


def prediction_mse(y_hat: torch.Tensor, y: torch.Tensor) -> RiskEstimate:
    """``mean (y_hat - y)^2`` over prompts with its standard error; y_hat, y : (B,)."""
    _check_pair(y_hat, y)
    return _mean_se((y_hat - y) ** 2)


def excess_risk(y_hat: torch.Tensor, y_oracle: torch.Tensor, y: torch.Tensor) -> RiskEstimate:
    """Excess risk vs the oracle, ``E(y_hat - y)^2 - E(y_orc - y)^2``, with its standard error.

    Parameters
    ----------
    y_hat, y_oracle, y : (B,)
    """
    _check_pair(y_hat, y)
    _check_pair(y_oracle, y)
    return _mean_se((y_hat - y) ** 2 - (y_oracle - y) ** 2)


def excess_risk_vs_oracle(y_hat: torch.Tensor, y_oracle: torch.Tensor) -> RiskEstimate:
    """Excess risk vs the oracle by the identity ``E(y_hat - y)^2 - E(y_orc - y)^2 = E(y_hat - y_orc)^2``.

    The identity holds whenever ``E[y | x, prompt, components] = y_orc``, which is the MoR model:
    the query's component z is drawn independently of the prompt and of x, so the cross term
    ``2 E[(y_hat - y_orc)(y_orc - y)]`` vanishes (``docs/provenance.md`` §3 [RECON], here without needing
    y_hat linear in x). It estimates the same quantity as :func:`excess_risk` with far smaller
    variance (the label noise and the mixture's label variance are integrated out), and it is
    never negative. ``tests/theory/test_metrics.py`` checks that the two agree.

    Parameters
    ----------
    y_hat, y_oracle : (B,)
    """
    _check_pair(y_hat, y_oracle)
    return _mean_se((y_hat - y_oracle) ** 2)


def risk_ratio(y_hat: torch.Tensor, y_oracle: torch.Tensor, y: torch.Tensor) -> float:
    """Ratio form ``E(y_hat - y)^2 / E(y_orc - y)^2`` (dtsip's ``excess_loss``)."""
    _check_pair(y_hat, y)
    _check_pair(y_oracle, y)
    denom = float(((y_oracle - y) ** 2).mean())
    if denom <= 0:
        raise ParameterError("y_oracle: the oracle risk is 0, so the ratio is undefined")
    return float(((y_hat - y) ** 2).mean()) / denom


def parameter_error(
    estimate: torch.Tensor, truth: torch.Tensor, *, relative: bool = False
) -> torch.Tensor:
    """Parameter error up to a permutation of the components, per prompt.

    Parameters
    ----------
    estimate, truth : (B, K, d)
    relative : bool
        Divide by ``sqrt(sum_k ||beta_k||^2)``.

    Returns
    -------
    (B,) tensor: ``min_perm sqrt(sum_k ||estimate_perm(k) - truth_k||^2)``.
    """
    check_shape(truth, "truth", (None, None, None))
    check_shape(estimate, "estimate", tuple(truth.shape))
    check_finite_tensor(estimate, "estimate")
    check_finite_tensor(truth, "truth")
    B, K, _ = truth.shape
    # cost[b, j, k] = ||estimate_j - truth_k||^2
    cost = torch.cdist(estimate.to(torch.float64), truth.to(torch.float64)) ** 2
    if K == 1:
        total = cost[:, 0, 0]
    elif K == 2:
        total = torch.minimum(cost[:, 0, 0] + cost[:, 1, 1], cost[:, 0, 1] + cost[:, 1, 0])
    else:
        c = cost.numpy()
        best = np.empty(B)
        for b in range(B):  # scipy's Hungarian solver is per matrix; O(K^3) each
            rows, cols = linear_sum_assignment(c[b])
            best[b] = c[b][rows, cols].sum()
        total = torch.from_numpy(best)
    err = total.clamp_min(0).sqrt()
    if relative:
        err = err / torch.linalg.vector_norm(truth.to(torch.float64).flatten(1), dim=1)
    return err.to(truth.dtype)


def sign_invariant_error(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``min(||b_hat - b||, ||b_hat + b||)`` per prompt; estimate, truth : (B, d) -> (B,).

    The parameter error of the symmetric two-component model (beta_2 = -beta_1).
    """
    check_shape(truth, "truth", (None, None))
    check_shape(estimate, "estimate", tuple(truth.shape))
    check_finite_tensor(estimate, "estimate")
    check_finite_tensor(truth, "truth")
    return torch.minimum(
        torch.linalg.vector_norm(estimate - truth, dim=-1),
        torch.linalg.vector_norm(estimate + truth, dim=-1),
    )
