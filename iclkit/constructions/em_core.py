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
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from iclkit.theory.mor import validate_prompts
from iclkit.theory.validation import (
    ParameterError,
    check_finite_tensor,
    check_positive,
    check_shape,
)

from .inputs import Sigma

__all__ = [
    "CONVERGED_RTOL",
    "EMResult",
    "Sigma",
    "Status",
    "Trace",
    "as_sigma",
    "check_em_inputs",
    "log_joint",
    "posterior",
    "solve_spd",
    "weighted_moments",
]


#: How an iterative algorithm ended: "diverged" (a non-finite value appeared in some prompt's
#: iterate or log-likelihood), "converged" (the last iteration moved the estimates by at most
#: :data:`CONVERGED_RTOL` relative to their size), "max_iter" (all iterations ran, still moving).
Status = Literal["converged", "max_iter", "diverged"]

#: Relative change of the last iteration below which a finished run is labelled "converged"
#: (a label only: the number of iterations is always the one asked for).
CONVERGED_RTOL = 1e-10

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
    sig = as_sigma(sigma, B, X.dtype, X.device)
    if pi is None:
        pi_t = torch.full((B, K), 1.0 / K, dtype=X.dtype, device=X.device)
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


def as_sigma(
    sigma: Sigma, B: int, dtype: torch.dtype, device: torch.device | None = None
) -> Tensor:
    """The noise levels as a (B,) tensor: a float, a 0-d or one-element tensor (one level for
    every prompt) or a (B,) tensor, finite and > 0."""
    if isinstance(sigma, Tensor):
        if sigma.numel() == 1 and sigma.dim() <= 1:
            sigma = sigma.reshape(()).expand(B)
        check_shape(sigma, "sigma", (B,))
        check_finite_tensor(sigma, "sigma")
        if bool((sigma <= 0).any()):
            raise ParameterError("sigma must be > 0 for every prompt")
        return sigma.to(dtype)
    return torch.full((B,), check_positive(sigma, "sigma"), dtype=dtype, device=device)


# --------------------------------------------------------------------------- divergence
@dataclass(frozen=True)
class EMResult:
    """Output of :func:`em` and :func:`gradient_em`.

    Attributes
    ----------
    betas : (B, K, d) final component estimates.
    pi : (B, K) final mixing weights (the given ones when pi is known).
    log_likelihood : (B, T+1) observed-data log-likelihood after each outer iteration
        (column 0 is the initialisation); NaN/inf from a diverged prompt's first non-finite
        iteration on.
    iterations : int
        Number of outer (EM) iterations run.
    status : "converged", "max_iter" or "diverged" (see :data:`Status`).
    first_nonfinite : int or None
        The first iteration (0: the initial E-step) at which a non-finite value appeared in
        some prompt; None when none did.
    diverged : (B,) bool, the prompts whose iterate became non-finite: their ``betas`` and
        ``pi`` are their last finite iterate, not an estimate of the components.
    """

    betas: Tensor
    pi: Tensor
    log_likelihood: Tensor
    iterations: int
    status: Status
    first_nonfinite: int | None
    diverged: Tensor


def _finite_rows(*tensors: Tensor) -> Tensor:
    """(B,) True where every entry of the prompt's rows of ``tensors`` is finite."""
    ok = torch.isfinite(tensors[0]).flatten(1).all(1)
    for t in tensors[1:]:
        ok &= torch.isfinite(t).reshape(t.shape[0], -1).all(1)
    return ok


def check_finite_step(step: str, cause: str, hint: str, *tensors: Tensor) -> None:
    """The contract of the single-step functions (``em_step``, ``gradient_em_step``,
    ``symmetric_gradient_em_step``): a step whose output holds NaN/inf raises
    :class:`ParameterError` naming ``cause`` (the likeliest parameter), the prompts and what to
    do (``hint``); a step never returns a non-finite iterate. The iterative ``em`` /
    ``gradient_em`` report the same event as ``status="diverged"`` instead (they have a last
    finite iterate to return). One sync per step: the output is O(B K d).
    """
    ok = _finite_rows(*tensors)
    if bool(ok.all()):
        return
    bad = (~ok).nonzero().flatten().tolist()
    shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
    raise ParameterError(
        f"{cause}: {step} gave a non-finite iterate for {len(bad)} of {ok.numel()} prompts "
        f"(prompt {shown}); {hint}"
    )


@dataclass
class Trace:
    """Bookkeeping of an iterative algorithm: the likelihood trace, and per prompt the last
    finite iterate and whether it diverged.

    A prompt whose iterate, mixing weights or log-likelihood becomes non-finite at iteration
    ``t`` keeps its last finite iterate as its estimate (never NaN/inf); ``first_nonfinite`` is
    the first such ``t`` over the batch (0: the initial E-step). Costs O(B K d) per iteration.
    """

    betas: Tensor
    pi: Tensor
    ll: list[Tensor]
    ok: Tensor
    first_nonfinite: int | None
    previous: Tensor

    @classmethod
    def start(cls, betas: Tensor, pi: Tensor, ll0: Tensor) -> Trace:
        ok = _finite_rows(betas, pi, ll0)
        first = None if bool(ok.all()) else 0
        return cls(betas, pi, [ll0], ok, first, betas)

    def update(self, t: int, betas: Tensor, pi: Tensor, ll: Tensor) -> None:
        """Record iteration ``t``'s iterate ``betas (B, ...)``, ``pi (B, K)``, ``ll (B,)``."""
        self.ll.append(ll)
        self.previous = self.betas
        if self.first_nonfinite is None and math.isfinite(
            float(betas.sum() + pi.sum() + ll.sum())  # one sync; finite iff every entry is
        ):  # (a huge finite sum that overflows falls through to the exact test below)
            self.betas, self.pi = betas, pi
            return
        ok = _finite_rows(betas, pi, ll)
        if self.first_nonfinite is None and bool(ok.all()):
            self.betas, self.pi = betas, pi
            return
        if self.first_nonfinite is None:
            self.first_nonfinite = t
        self.ok = self.ok & ok
        keep = self.ok.reshape(-1, *([1] * (betas.dim() - 1)))
        self.betas = torch.where(keep, betas, self.betas)
        self.pi = torch.where(self.ok[:, None], pi, self.pi)

    def status(self, iterations: int) -> Status:
        """ "diverged", "converged" or "max_iter" (see :data:`Status`)."""
        if self.first_nonfinite is not None:
            return "diverged"
        if iterations == 0:
            return "max_iter"
        step = float((self.betas - self.previous).abs().max()) if self.betas.numel() else 0.0
        size = float(self.betas.abs().max()) if self.betas.numel() else 0.0
        return "converged" if step <= CONVERGED_RTOL * max(1.0, size) else "max_iter"

    def result(self, iterations: int, *, symmetric: bool = False) -> EMResult:
        """The :class:`EMResult` of a run of ``iterations`` iterations; ``symmetric``: the
        tracked iterate is ``beta (B, d)``, returned as ``betas = stack(beta, -beta)``."""
        betas = torch.stack([self.betas, -self.betas], 1) if symmetric else self.betas
        return EMResult(
            betas,
            self.pi,
            torch.stack(self.ll, dim=1),
            iterations,
            self.status(iterations),
            self.first_nonfinite,
            ~self.ok,
        )


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
    total = expd @ torch.ones(expd.shape[-1], 1, dtype=expd.dtype, device=expd.device)
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
    S = torch.empty(B, d, K * d, dtype=X.dtype, device=X.device)
    m = torch.empty(B, 1, K * d, dtype=X.dtype, device=X.device)
    chunk = max(1, min(B, _CHUNK_BYTES // (X.element_size() * n * K * d)))
    buffer = torch.empty(
        chunk, n, K, d, dtype=X.dtype, device=X.device
    )  # reused: stays hot in cache
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
        sol[bad] = _lstsq_fallback(S[bad], m[bad])
    return sol


def _lstsq_fallback(S: Tensor, m: Tensor) -> Tensor:
    """Minimum-norm solutions of singular systems; NaN where S or m is not finite or the SVD
    fails (never torch's internal errors: the caller's status reports the NaN)."""
    out = torch.full_like(m, math.nan)
    finite = torch.isfinite(S).flatten(-2).all(-1) & torch.isfinite(m).all(-1)
    if not bool(finite.any()):
        return out
    Sb, mb = S[finite], m[finite]
    scale = Sb.abs().amax((-2, -1), keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    try:
        sol = torch.linalg.lstsq(Sb / scale, mb[..., None] / scale, driver="gelsd").solution
    except RuntimeError:  # LinAlgError (SVD did not converge) and torch's internal asserts
        return out
    out[finite] = sol[..., 0]
    return out
