"""The shared numerical core of EM and gradient EM for mixtures of linear regressions.

Batched over B prompts (``X (B, n, d)``, ``y (B, n)``, ``betas (B, K, d)``, ``pi (B, K)``,
``sigma (B,)``), in the dtype of the inputs:

- :func:`check_em_inputs`, :func:`as_sigma`: validation of the common inputs;
- :func:`log_joint`, :func:`posterior`: the E-step
  ``gamma_ik = softmax_k(log pi_k - (y_i - x_i^T beta_k)^2 / (2 sigma^2))`` (log-sum-exp) and
  the observed-data log-likelihood from one pass;
- :func:`weighted_moments`, :func:`solve_spd`: the M-step's weighted second moments
  ``S_k = (1/n) X^T W_k X``, ``m_k = (1/n) X^T W_k y`` and the solve ``S_k beta_k = m_k``.

The algorithms themselves are in :mod:`iclkit.constructions.algorithms`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from iclkit.theory.mor import validate_prompts
from iclkit.theory.validation import (
    ParameterError,
    check_finite_tensor,
    check_positive,
    check_shape,
)

__all__ = [
    "Sigma",
    "as_sigma",
    "check_em_inputs",
    "log_joint",
    "posterior",
    "solve_spd",
    "weighted_moments",
]

#: A known noise level: one per prompt (B,), or one for all prompts.
Sigma = Tensor | float

# Size of the weighted copy of X built per chunk of prompts in the M-step (see weighted_moments).
_CHUNK_BYTES = 2 << 20
# Tolerance of pi summing to 1 per prompt (weights read from float32 files are off by ~1e-7).
_PI_SUM_ATOL = 1e-6


# --------------------------------------------------------------------------- validation
def check_em_inputs(
    X: Tensor,
    y: Tensor,
    betas: Tensor,
    sigma: Sigma,
    pi: Tensor | None,
    *,
    betas_name: str = "betas",
) -> tuple[Tensor, Tensor]:
    """Validate the common inputs; return (sigma (B,), pi (B, K))."""
    B, _, d = validate_prompts(X, y)
    check_shape(betas, betas_name, (B, None, d))
    check_finite_tensor(betas, betas_name)
    K = betas.shape[1]
    if K < 1:
        raise ParameterError(
            f"{betas_name} must have K >= 1 components, got shape {tuple(betas.shape)}"
        )
    sig = as_sigma(sigma, B, X.dtype)
    if pi is None:
        pi_t = torch.full((B, K), 1.0 / K, dtype=X.dtype)
    else:
        check_shape(pi, "pi", (B, K))
        check_finite_tensor(pi, "pi")
        if bool((pi < 0).any()):
            raise ParameterError("pi must be non-negative")
        if bool(((pi.sum(-1) - 1).abs() > _PI_SUM_ATOL).any()):
            raise ParameterError(
                f"pi must sum to 1 over components (within {_PI_SUM_ATOL}) for every prompt"
            )
        pi_t = pi.to(X.dtype)
    return sig, pi_t


def as_sigma(sigma: Sigma, B: int, dtype: torch.dtype) -> Tensor:
    if isinstance(sigma, Tensor):
        if sigma.dim() == 0:
            sigma = sigma.expand(B)
        check_shape(sigma, "sigma", (B,))
        check_finite_tensor(sigma, "sigma")
        if bool((sigma <= 0).any()):
            raise ParameterError("sigma must be > 0 for every prompt")
        return sigma.to(dtype)
    return torch.full((B,), check_positive(sigma, "sigma"), dtype=dtype)


# --------------------------------------------------------------------------- E-step
def log_joint(X: Tensor, y: Tensor, betas: Tensor, pi: Tensor, sigma: Tensor) -> Tensor:
    """log(pi_k phi(y_i; x_i^T beta_k, sigma^2)), shape (B, n, K).

    Computed in place on one (B, n, K) buffer: this is the hot loop of EM on long prompts.
    """
    out = torch.bmm(X, betas.transpose(1, 2)).neg_().add_(y[:, :, None])  # residuals
    out.div_(sigma[:, None, None]).square_().mul_(-0.5)
    log_pi = torch.log(pi.clamp_min(torch.finfo(pi.dtype).tiny))
    const = log_pi - 0.5 * torch.log(2 * math.pi * sigma * sigma)[:, None]  # (B, K)
    return out.add_(const[:, None, :])


def posterior(log_joint: Tensor) -> tuple[Tensor, Tensor]:
    """Responsibilities and the log-likelihood from one log-joint (B, n, K), consumed in place.

    Returns ``gamma (B, n, K)`` (softmax over k) and ``log_likelihood (B,)`` (log-sum-exp over k,
    summed over i): one pass serves both the E-step and the likelihood trace.
    """
    peak = log_joint.amax(-1, keepdim=True)
    expd = log_joint.sub_(peak).exp_()
    # sum over the (short) last axis as a matrix-vector product: torch's reduction kernel over
    # a last axis of length K ~ 3 is ~8x slower than this on (B, n, K)
    total = expd @ torch.ones(expd.shape[-1], 1, dtype=expd.dtype)
    ll = (peak + total.log()).sum((1, 2))
    return expd.div_(total), ll


def weighted_moments(X: Tensor, y: Tensor, gamma: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted second moments of the M-step.

    Parameters
    ----------
    X : (B, n, d)
    y : (B, n)
    gamma : (B, n, K)

    Returns
    -------
    S : (B, K, d, d), ``S_k = (1/n) sum_i gamma_ik x_i x_i^T``
    m : (B, K, d), ``m_k = (1/n) sum_i gamma_ik y_i x_i``

    Notes
    -----
    Per prompt this is one GEMM ``X^T [gamma_1 X, ..., gamma_K X]`` of shape
    (d x n) @ (n x K d). The weighted copy of X is built for a chunk of prompts at a time
    (about 2 MB), so that it is still in cache when the GEMM reads it.
    """
    B, n, d = X.shape
    K = gamma.shape[-1]
    S = torch.empty(B, d, K * d, dtype=X.dtype)
    m = torch.empty(B, 1, K * d, dtype=X.dtype)
    chunk = max(1, min(B, _CHUNK_BYTES // (X.element_size() * n * K * d)))
    buffer = torch.empty(chunk, n, K, d, dtype=X.dtype)  # reused: stays hot in cache
    for start in range(0, B, chunk):
        sl = slice(start, start + chunk)
        c = min(chunk, B - start)
        GX = torch.mul(gamma[sl, :, :, None], X[sl, :, None, :], out=buffer[:c]).view(c, n, K * d)
        torch.bmm(X[sl].transpose(1, 2), GX, out=S[sl])
        torch.bmm(y[sl, None, :], GX, out=m[sl])
    S = S.reshape(B, d, K, d).permute(0, 2, 1, 3).div_(n)
    return S, m.reshape(B, K, d).div_(n)


def solve_spd(S: Tensor, m: Tensor) -> Tensor:
    """Solve ``S beta = m`` for a batch of symmetric PSD S (..., d, d).

    Where S is singular (a component with too little mass, or fewer examples than d) the
    Cholesky factorisation fails and the minimum-norm least-squares solution is used instead
    (SVD-based ``gelsd`` on S scaled to unit max-norm, so that weights as small as 1e-300 do
    not break the SVD's convergence).
    """
    L, info = torch.linalg.cholesky_ex(S)
    sol = torch.cholesky_solve(m[..., None], L)[..., 0]
    bad = info != 0
    if bool(bad.any()):
        Sb, mb = S[bad], m[bad]
        scale = Sb.abs().amax((-2, -1), keepdim=True)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        fallback = torch.linalg.lstsq(Sb / scale, mb[..., None] / scale, driver="gelsd").solution
        sol[bad] = fallback[..., 0]
    return sol
