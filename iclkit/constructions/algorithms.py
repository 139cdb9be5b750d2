"""Reference EM, gradient EM, OLS and ridge for mixtures of linear regressions, batched over prompts.

These are the algorithms the Theorem 3.1 transformer of Jin, Balasubramanian, Lai
(arXiv 2410.14183) runs in context; ``SPEC.md`` "Algorithms" fixes the forms (``mor.md`` §2):

- E-step [2nd]: ``gamma_ik = softmax_k(log pi_k - (y_i - x_i^T beta_k)^2 / (2 sigma^2))``
  (log-sum-exp).
- EM M-step [2nd]: ``beta_k = (X^T W_k X)^{-1} X^T W_k y`` with ``W_k = diag(gamma_.k)``,
  ``pi_k = (1/n) sum_i gamma_ik`` when pi is estimated.
- Gradient EM [RECON, standard]: ``T_outer`` EM iterations, each M-step replaced by ``T_inner``
  gradient steps of size ``alpha`` on the Q-function with the responsibilities frozen:
  ``beta_k <- beta_k + alpha (1/n) sum_i gamma_ik (y_i - x_i^T beta_k) x_i``.
  ``T_inner = 1`` is Balakrishnan-Wainwright-Yu gradient EM.
- Symmetric two-component form (beta_2 = -beta_1, pi = (1/2, 1/2)) [RECON, standard]:
  ``beta <- beta + alpha (1/n) sum_i (tanh(y_i x_i^T beta / sigma^2) y_i - x_i^T beta) x_i``,
  i.e. least-squares gradient steps on the surrogate labels ``tanh(y_i x_i^T beta / sigma^2) y_i``.

Everything is batched over the B prompts in torch (no Python loop over prompts) and runs in
the dtype of the inputs (float64 recommended). Shapes: ``X (B, n, d)``, ``y (B, n)``,
``betas (B, K, d)``, ``pi (B, K)``, ``sigma (B,)``.

Implementation note: each M-step forms the weighted moments ``S_k = (1/n) X^T W_k X`` (B, K, d, d)
and ``m_k = (1/n) X^T W_k y`` (B, K, d) once; a gradient step is then
``beta_k <- beta_k + alpha (m_k - S_k beta_k)``, which is algebraically identical to the sum over
examples and costs O(d^2) instead of O(n d) per inner step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from iclkit.theory.mor import validate_prompts
from iclkit.theory.validation import (
    ParameterError,
    check_finite_tensor,
    check_int,
    check_positive,
    check_real,
    check_shape,
)

__all__ = [
    "EMResult",
    "em",
    "em_step",
    "gradient_em",
    "gradient_em_step",
    "log_likelihood",
    "ols",
    "responsibilities",
    "ridge",
    "symmetric_gradient_em_step",
    "weighted_moments",
]

Nonlinearity = Callable[[torch.Tensor], torch.Tensor]

# Size of the weighted copy of X built per chunk of prompts in the M-step (see weighted_moments).
_CHUNK_BYTES = 2 << 20


@dataclass(frozen=True)
class EMResult:
    """Output of :func:`em` and :func:`gradient_em`.

    Attributes
    ----------
    betas : (B, K, d) final component estimates.
    pi : (B, K) final mixing weights (the given ones when pi is known).
    log_likelihood : (B, T+1) observed-data log-likelihood after each outer iteration
        (column 0 is the initialisation).
    iterations : int
        Number of outer (EM) iterations run.
    """

    betas: torch.Tensor
    pi: torch.Tensor
    log_likelihood: torch.Tensor
    iterations: int


# --------------------------------------------------------------------------- validation
def _check_inputs(
    X: torch.Tensor,
    y: torch.Tensor,
    betas: torch.Tensor,
    sigma: torch.Tensor | float,
    pi: torch.Tensor | None,
    *,
    betas_name: str = "betas",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the common inputs; return (sigma (B,), pi (B, K))."""
    B, _, d = validate_prompts(X, y)
    check_shape(betas, betas_name, (B, None, d))
    check_finite_tensor(betas, betas_name)
    K = betas.shape[1]
    if K < 1:
        raise ParameterError(
            f"{betas_name} must have K >= 1 components, got shape {tuple(betas.shape)}"
        )
    sig = _as_sigma(sigma, B, X.dtype)
    if pi is None:
        pi_t = torch.full((B, K), 1.0 / K, dtype=X.dtype)
    else:
        check_shape(pi, "pi", (B, K))
        check_finite_tensor(pi, "pi")
        if bool((pi < 0).any()):
            raise ParameterError("pi must be non-negative")
        if bool(((pi.sum(-1) - 1).abs() > 1e-6).any()):
            raise ParameterError("pi must sum to 1 over components (within 1e-6) for every prompt")
        pi_t = pi.to(X.dtype)
    return sig, pi_t


def _as_sigma(sigma: torch.Tensor | float, B: int, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(sigma, torch.Tensor):
        if sigma.dim() == 0:
            sigma = sigma.expand(B)
        check_shape(sigma, "sigma", (B,))
        check_finite_tensor(sigma, "sigma")
        if bool((sigma <= 0).any()):
            raise ParameterError("sigma must be > 0 for every prompt")
        return sigma.to(dtype)
    return torch.full((B,), check_positive(sigma, "sigma"), dtype=dtype)


# --------------------------------------------------------------------------- E-step
def _log_joint(
    X: torch.Tensor, y: torch.Tensor, betas: torch.Tensor, pi: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """log(pi_k phi(y_i; x_i^T beta_k, sigma^2)), shape (B, n, K).

    Computed in place on one (B, n, K) buffer: this is the hot loop of EM on long prompts.
    """
    out = torch.bmm(X, betas.transpose(1, 2)).neg_().add_(y[:, :, None])  # residuals
    out.div_(sigma[:, None, None]).square_().mul_(-0.5)
    log_pi = torch.log(pi.clamp_min(torch.finfo(pi.dtype).tiny))
    const = log_pi - 0.5 * torch.log(2 * math.pi * sigma * sigma)[:, None]  # (B, K)
    return out.add_(const[:, None, :])


def _posterior(log_joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


def responsibilities(
    X: torch.Tensor,
    y: torch.Tensor,
    betas: torch.Tensor,
    pi: torch.Tensor | None,
    sigma: torch.Tensor | float,
) -> torch.Tensor:
    """E-step: posterior component probabilities, computed with log-sum-exp.

    Returns
    -------
    gamma : (B, n, K), rows sum to 1.
    """
    sig, pi_t = _check_inputs(X, y, betas, sigma, pi)
    return _posterior(_log_joint(X, y, betas, pi_t, sig))[0]


def log_likelihood(
    X: torch.Tensor,
    y: torch.Tensor,
    betas: torch.Tensor,
    pi: torch.Tensor | None,
    sigma: torch.Tensor | float,
) -> torch.Tensor:
    """Observed-data log-likelihood ``sum_i log sum_k pi_k phi(y_i; x_i^T beta_k, sigma^2)``, (B,)."""
    sig, pi_t = _check_inputs(X, y, betas, sigma, pi)
    return _posterior(_log_joint(X, y, betas, pi_t, sig))[1]


def weighted_moments(
    X: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
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


def _solve_spd(S: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
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


# --------------------------------------------------------------------------- EM
def em_step(
    X: torch.Tensor,
    y: torch.Tensor,
    betas: torch.Tensor,
    pi: torch.Tensor | None,
    sigma: torch.Tensor | float,
    *,
    estimate_pi: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One EM iteration: E-step, then the weighted-least-squares M-step.

    Returns
    -------
    betas : (B, K, d)
    pi : (B, K), re-estimated if ``estimate_pi`` else unchanged.
    """
    sig, pi_t = _check_inputs(X, y, betas, sigma, pi)
    gamma, _ = _posterior(_log_joint(X, y, betas, pi_t, sig))
    return _m_step(X, y, gamma, pi_t, estimate_pi)


def _m_step(
    X: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor, pi: torch.Tensor, estimate_pi: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted least squares for every component, and pi if estimated."""
    S, m = weighted_moments(X, y, gamma)
    new_pi = gamma.mean(dim=1) if estimate_pi else pi
    return _solve_spd(S, m), new_pi


def em(
    X: torch.Tensor,
    y: torch.Tensor,
    init: torch.Tensor,
    sigma: torch.Tensor | float,
    pi: torch.Tensor | None = None,
    *,
    T: int = 20,
    estimate_pi: bool = True,
) -> EMResult:
    """Run ``T`` EM iterations from ``init`` (B, K, d).

    ``pi`` is the initial (``estimate_pi=True``) or the known (``estimate_pi=False``) mixing
    weights; ``None`` means uniform. sigma is known (not re-estimated), as in the paper.
    EM never decreases the observed log-likelihood; the trace is returned.
    """
    T = check_int(T, "T", minimum=0)
    sig, pi_t = _check_inputs(X, y, init, sigma, pi, betas_name="init")
    betas = init.to(X.dtype)
    # one log-joint per iteration gives both the likelihood of the current iterate and the
    # responsibilities of the next E-step
    gamma, ll0 = _posterior(_log_joint(X, y, betas, pi_t, sig))
    ll = [ll0]
    for _ in range(T):
        betas, pi_t = _m_step(X, y, gamma, pi_t, estimate_pi)
        gamma, ll_t = _posterior(_log_joint(X, y, betas, pi_t, sig))
        ll.append(ll_t)
    return EMResult(betas, pi_t, torch.stack(ll, dim=1), T)


# --------------------------------------------------------------------------- gradient EM
def _check_step(T_inner: int, alpha: float) -> tuple[int, float]:
    T_inner = check_int(T_inner, "T_inner", minimum=1)
    alpha = check_positive(alpha, "alpha")
    return T_inner, alpha


def gradient_em_step(
    X: torch.Tensor,
    y: torch.Tensor,
    betas: torch.Tensor,
    pi: torch.Tensor | None,
    sigma: torch.Tensor | float,
    *,
    T_inner: int = 1,
    alpha: float = 1.0,
    estimate_pi: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One gradient-EM iteration (general K): E-step, then ``T_inner`` gradient steps of size
    ``alpha`` on the Q-function with the responsibilities frozen.

    ``beta_k <- beta_k + alpha (1/n) sum_i gamma_ik (y_i - x_i^T beta_k) x_i`` (repeated T_inner
    times); ``pi_k <- (1/n) sum_i gamma_ik`` if ``estimate_pi``.
    """
    T_inner, alpha = _check_step(T_inner, alpha)
    sig, pi_t = _check_inputs(X, y, betas, sigma, pi)
    betas = betas.to(X.dtype)
    gamma, _ = _posterior(_log_joint(X, y, betas, pi_t, sig))
    return _gradient_m_step(X, y, gamma, betas, pi_t, T_inner, alpha, estimate_pi)


def _gradient_m_step(
    X: torch.Tensor,
    y: torch.Tensor,
    gamma: torch.Tensor,
    betas: torch.Tensor,
    pi: torch.Tensor,
    T_inner: int,
    alpha: float,
    estimate_pi: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``T_inner`` gradient steps on the Q-function with the responsibilities ``gamma`` frozen."""
    S, m = weighted_moments(X, y, gamma)
    for _ in range(T_inner):
        betas = betas + alpha * (m - (S @ betas[..., None])[..., 0])
    new_pi = gamma.mean(dim=1) if estimate_pi else pi
    return betas, new_pi


def symmetric_gradient_em_step(
    X: torch.Tensor,
    y: torch.Tensor,
    beta: torch.Tensor,
    sigma: torch.Tensor | float,
    *,
    T_inner: int = 1,
    alpha: float = 1.0,
    nonlinearity: Nonlinearity = torch.tanh,
) -> torch.Tensor:
    """One gradient-EM iteration of the symmetric two-component model (tanh form).

    Surrogate labels ``y~_i = f(y_i x_i^T beta / sigma^2) y_i`` with ``f = tanh`` (the exact
    E-step; ``nonlinearity`` lets the Theorem 3.1 construction pass its sum-of-ReLU surrogate),
    then ``T_inner`` least-squares gradient steps
    ``beta <- beta + alpha (1/n) sum_i (y~_i - x_i^T beta) x_i``.

    Parameters
    ----------
    X : (B, n, d)
    y : (B, n)
    beta : (B, d)
    sigma : (B,) or float

    Returns
    -------
    beta : (B, d)
    """
    T_inner, alpha = _check_step(T_inner, alpha)
    B, _, d = validate_prompts(X, y)
    check_shape(beta, "beta", (B, d))
    check_finite_tensor(beta, "beta")
    sig = _as_sigma(sigma, B, X.dtype)
    return _symmetric_step(X, y, beta.to(X.dtype), sig, T_inner, alpha, nonlinearity)


def _symmetric_step(
    X: torch.Tensor,
    y: torch.Tensor,
    beta: torch.Tensor,
    sigma: torch.Tensor,
    T_inner: int,
    alpha: float,
    nonlinearity: Nonlinearity,
    S: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric gradient-EM iteration; ``S = (1/n) X^T X`` may be passed in (it does not
    change across iterations)."""
    n = X.shape[1]
    s = torch.bmm(X, beta[:, :, None])[..., 0]
    y_tilde = nonlinearity(y * s / (sigma * sigma)[:, None]) * y
    if S is None:
        S = X.transpose(1, 2) @ X / n
    m = torch.bmm(y_tilde[:, None, :], X)[:, 0] / n
    for _ in range(T_inner):
        beta = beta + alpha * (m - (S @ beta[..., None])[..., 0])
    return beta


def gradient_em(
    X: torch.Tensor,
    y: torch.Tensor,
    init: torch.Tensor,
    sigma: torch.Tensor | float,
    pi: torch.Tensor | None = None,
    *,
    T_outer: int = 10,
    T_inner: int = 1,
    alpha: float = 1.0,
    estimate_pi: bool = False,
    symmetric: bool = False,
    nonlinearity: Nonlinearity = torch.tanh,
) -> EMResult:
    """Gradient EM: ``T_outer`` EM iterations, each M-step ``T_inner`` gradient steps of size ``alpha``.

    Parameters
    ----------
    X : (B, n, d)
    y : (B, n)
    init : (B, K, d), or (B, d) / (B, 2, d) when ``symmetric`` (only ``init[:, 0]`` is used).
    sigma : (B,) or float, known noise level.
    pi : (B, K) or None (uniform); initial or known mixing weights.
    symmetric : bool
        Use the tied two-component tanh form (K = 2, beta_2 = -beta_1, pi = 1/2).
    nonlinearity : callable
        Symmetric form only: the E-step nonlinearity (default the exact ``tanh``).

    Returns
    -------
    EMResult; in the symmetric case ``betas = stack(beta, -beta)`` and ``pi = 1/2``.
    """
    T_outer = check_int(T_outer, "T_outer", minimum=0)
    T_inner, alpha = _check_step(T_inner, alpha)
    if symmetric:
        B, _, d = validate_prompts(X, y)
        if init.dim() == 3:
            check_shape(init, "init", (B, 2, d))
            beta = init[:, 0]
        else:
            check_shape(init, "init", (B, d))
            beta = init
        check_finite_tensor(beta, "init")
        if pi is not None:
            check_shape(pi, "pi", (B, 2))
            if bool(((pi - 0.5).abs() > 1e-12).any()):
                raise ParameterError("pi must be (1/2, 1/2) in the symmetric model")
        if estimate_pi:
            raise ParameterError(
                "estimate_pi must be False in the symmetric model (pi = 1/2 is known)"
            )
        sig = _as_sigma(sigma, B, X.dtype)
        beta = beta.to(X.dtype)
        half = torch.full((B, 2), 0.5, dtype=X.dtype)

        def ll_of(b: torch.Tensor) -> torch.Tensor:
            return _posterior(_log_joint(X, y, torch.stack([b, -b], 1), half, sig))[1]

        ll = [ll_of(beta)]
        S = X.transpose(1, 2) @ X / X.shape[1]
        for _ in range(T_outer):
            beta = _symmetric_step(X, y, beta, sig, T_inner, alpha, nonlinearity, S)
            ll.append(ll_of(beta))
        return EMResult(torch.stack([beta, -beta], 1), half, torch.stack(ll, 1), T_outer)

    sig, pi_t = _check_inputs(X, y, init, sigma, pi, betas_name="init")
    betas = init.to(X.dtype)
    gamma, ll0 = _posterior(_log_joint(X, y, betas, pi_t, sig))
    ll = [ll0]
    for _ in range(T_outer):
        betas, pi_t = _gradient_m_step(X, y, gamma, betas, pi_t, T_inner, alpha, estimate_pi)
        gamma, ll_t = _posterior(_log_joint(X, y, betas, pi_t, sig))
        ll.append(ll_t)
    return EMResult(betas, pi_t, torch.stack(ll, 1), T_outer)


# --------------------------------------------------------------------------- single-component baselines
def ols(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Least squares ``argmin_w sum_i (y_i - x_i^T w)^2`` per prompt, (B, d).

    The minimum-norm solution when n < d (pseudo-inverse).
    """
    validate_prompts(X, y)
    return (torch.linalg.pinv(X) @ y[..., None])[..., 0]


def ridge(X: torch.Tensor, y: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """Ridge regression ``(X^T X + lam I)^{-1} X^T y`` per prompt, (B, d).

    With ``lam = sigma^2 / tau^2`` this is the posterior mean of a single Gaussian component
    beta ~ N(0, tau^2 I).
    """
    B, _, d = validate_prompts(X, y)
    if isinstance(lam, torch.Tensor):
        if lam.dim() == 0:
            lam = lam.expand(B)
        check_shape(lam, "lam", (B,))
        check_finite_tensor(lam, "lam")
        if bool((lam < 0).any()):
            raise ParameterError("lam must be >= 0")
        lam_t = lam.to(X.dtype)
    else:
        lam_t = torch.full((B,), check_real(lam, "lam", minimum=0.0), dtype=X.dtype)
    A = X.transpose(1, 2) @ X + lam_t[:, None, None] * torch.eye(d, dtype=X.dtype)
    b = X.transpose(1, 2) @ y[..., None]
    return _solve_spd(A, b[..., 0])
