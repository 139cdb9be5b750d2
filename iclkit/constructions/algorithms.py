"""Reference EM, gradient EM, OLS and ridge for mixtures of linear regressions, batched over prompts.

These are the algorithms the Theorem 3.1 transformer of Jin, Balasubramanian, Lai
(arXiv 2410.14183) runs in context, in the forms of the paper's Section 2:

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
the common float dtype of the inputs (float64 recommended) on their device; every entry point
first passes its tensors through :func:`iclkit.constructions.inputs.prepare_tensors` (dtype
promotion, one device, detached: these reference algorithms are never trained through).
Shapes: ``X (B, n, d)``, ``y (B, n)``, ``betas (B, K, d)``, ``pi (B, K)``, ``sigma (B,)``
(or one float for all prompts).

:func:`em` and :func:`gradient_em` never return NaN/inf as an estimate: a prompt whose iterate
becomes non-finite (a step size that diverges, data too extreme for the E-step) keeps its last
finite iterate, and the result says ``status="diverged"`` with the first such iteration. The
single-step functions (:func:`em_step`, :func:`gradient_em_step`,
:func:`symmetric_gradient_em_step`) have no earlier iterate to fall back on: a non-finite output
raises ``ParameterError`` naming the likeliest cause (``alpha`` for the gradient steps).

Implementation note: each M-step forms the weighted moments ``S_k = (1/n) X^T W_k X`` (B, K, d, d)
and ``m_k = (1/n) X^T W_k y`` (B, K, d) once; a gradient step is then
``beta_k <- beta_k + alpha (m_k - S_k beta_k)``, which is algebraically identical to the sum over
examples and costs O(d^2) instead of O(n d) per inner step. The E-step and these moments are
in :mod:`iclkit.constructions.em_core`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor

from iclkit.theory.mor import validate_prompts
from iclkit.theory.validation import (
    ParameterError,
    check_finite_tensor,
    check_int,
    check_positive,
    check_real,
    check_shape,
)

from .em_core import (
    EMResult,
    Sigma,
    Trace,
    as_sigma,
    check_em_inputs,
    check_finite_step,
    log_joint,
    posterior,
    solve_spd,
    weighted_moments,
)
from .inputs import MAX_ITERATIONS, prepare_prompts

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

Nonlinearity = Callable[[Tensor], Tensor]
#: An M-step: (responsibilities (B, n, K), betas (B, K, d), pi (B, K)) -> (betas, pi).
MStep = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]

# What to do when a single step's output is not finite (see check_finite_step).
_STEP_HINT = "rescale the data, or call em(), which keeps the last finite iterate"
_ALPHA_HINT = (
    "the step size diverges (alpha lambda_max(S_k) >= 2) or the data is too extreme: lower "
    "alpha, or call gradient_em(), which keeps the last finite iterate"
)

# Tolerance of "pi = (1/2, 1/2)" in the symmetric model (exact halves, up to round-off).
_HALF_ATOL = 1e-12


# --------------------------------------------------------------------------- E-step
def responsibilities(
    X: Tensor, y: Tensor, betas: Tensor, pi: Tensor | None, sigma: Sigma
) -> Tensor:
    """E-step: posterior component probabilities, computed with log-sum-exp.

    Returns
    -------
    gamma : (B, n, K), rows sum to 1.
    """
    X, y, sigma, t = prepare_prompts(X, y, sigma, betas=betas, pi=pi)
    betas, pi = cast(Tensor, t["betas"]), t["pi"]
    sig, pi_t = check_em_inputs(X, y, betas, sigma, pi)
    return posterior(log_joint(X, y, betas, pi_t, sig))[0]


def log_likelihood(X: Tensor, y: Tensor, betas: Tensor, pi: Tensor | None, sigma: Sigma) -> Tensor:
    """Observed-data log-likelihood ``sum_i log sum_k pi_k phi(y_i; x_i^T beta_k, sigma^2)``, (B,)."""
    X, y, sigma, t = prepare_prompts(X, y, sigma, betas=betas, pi=pi)
    betas, pi = cast(Tensor, t["betas"]), t["pi"]
    sig, pi_t = check_em_inputs(X, y, betas, sigma, pi)
    return posterior(log_joint(X, y, betas, pi_t, sig))[1]


def _e_step(
    X: Tensor, y: Tensor, betas: Tensor, sigma: Sigma, pi: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Validated E-step: responsibilities ``gamma (B, n, K)`` and the mixing weights (B, K)."""
    sig, pi_t = check_em_inputs(X, y, betas, sigma, pi)
    return posterior(log_joint(X, y, betas, pi_t, sig))[0], pi_t


# --------------------------------------------------------------------------- EM
def em_step(
    X: Tensor,
    y: Tensor,
    betas: Tensor,
    pi: Tensor | None,
    sigma: Sigma,
    *,
    estimate_pi: bool = True,
) -> tuple[Tensor, Tensor]:
    """One EM iteration: E-step, then the weighted-least-squares M-step.

    Returns
    -------
    betas : (B, K, d)
    pi : (B, K), re-estimated if ``estimate_pi`` else unchanged.

    Raises
    ------
    ParameterError
        Naming ``betas`` when the step's output is not finite (data or iterate too extreme for
        the dtype); :func:`em` reports the same event as ``status="diverged"``.
    """
    X, y, sigma, t = prepare_prompts(X, y, sigma, betas=betas, pi=pi)
    gamma, pi_t = _e_step(X, y, cast(Tensor, t["betas"]), sigma, t["pi"])
    new_betas, new_pi = _m_step(X, y, gamma, pi_t, estimate_pi)
    check_finite_step("the EM step", "betas", _STEP_HINT, new_betas, new_pi)
    return new_betas, new_pi


def _m_step(
    X: Tensor, y: Tensor, gamma: Tensor, pi: Tensor, estimate_pi: bool
) -> tuple[Tensor, Tensor]:
    """Weighted least squares for every component, and pi if estimated."""
    S, m = weighted_moments(X, y, gamma)
    new_pi = gamma.mean(dim=1) if estimate_pi else pi
    return solve_spd(S, m), new_pi


def em(
    X: Tensor,
    y: Tensor,
    init: Tensor,
    sigma: Sigma,
    pi: Tensor | None = None,
    *,
    T: int = 20,
    estimate_pi: bool = True,
) -> EMResult:
    """Run ``T`` EM iterations from ``init`` (B, K, d).

    ``pi`` is the initial (``estimate_pi=True``) or the known (``estimate_pi=False``) mixing
    weights; ``None`` means uniform. sigma is known (not re-estimated), as in the paper.
    EM never decreases the observed log-likelihood; the trace is returned, with a status.
    """
    T = check_int(T, "T", minimum=0, maximum=MAX_ITERATIONS)
    X, y, sigma, t = prepare_prompts(X, y, sigma, init=init, pi=pi)
    init, pi = cast(Tensor, t["init"]), t["pi"]
    return _iterate(
        X,
        y,
        init,
        sigma,
        pi,
        T,
        lambda gamma, _betas, pi_t: _m_step(X, y, gamma, pi_t, estimate_pi),
    )


def _iterate(
    X: Tensor,
    y: Tensor,
    init: Tensor,
    sigma: Sigma,
    pi: Tensor | None,
    T: int,
    m_step: MStep,
) -> EMResult:
    """``T`` iterations of (E-step, ``m_step``) from ``init``, with the likelihood trace."""
    sig, pi_t = check_em_inputs(X, y, init, sigma, pi, betas_name="init")
    betas = init.to(X.dtype)
    # one log-joint per iteration gives both the likelihood of the current iterate and the
    # responsibilities of the next E-step
    gamma, ll0 = posterior(log_joint(X, y, betas, pi_t, sig))
    trace = Trace.start(betas, pi_t, ll0)
    for t in range(1, T + 1):
        betas, pi_t = m_step(gamma, betas, pi_t)
        gamma, ll_t = posterior(log_joint(X, y, betas, pi_t, sig))
        trace.update(t, betas, pi_t, ll_t)
    return trace.result(T)


# --------------------------------------------------------------------------- gradient EM
def _check_step(T_inner: int, alpha: float) -> tuple[int, float]:
    T_inner = check_int(T_inner, "T_inner", minimum=1, maximum=MAX_ITERATIONS)
    alpha = check_positive(alpha, "alpha")
    return T_inner, alpha


def gradient_em_step(
    X: Tensor,
    y: Tensor,
    betas: Tensor,
    pi: Tensor | None,
    sigma: Sigma,
    *,
    T_inner: int = 1,
    alpha: float = 1.0,
    estimate_pi: bool = False,
) -> tuple[Tensor, Tensor]:
    """One gradient-EM iteration (general K): E-step, then ``T_inner`` gradient steps of size
    ``alpha`` on the Q-function with the responsibilities frozen.

    ``beta_k <- beta_k + alpha (1/n) sum_i gamma_ik (y_i - x_i^T beta_k) x_i`` (repeated T_inner
    times); ``pi_k <- (1/n) sum_i gamma_ik`` if ``estimate_pi``. A non-finite output raises
    :class:`ParameterError` naming ``alpha`` (:func:`gradient_em` says ``status="diverged"``).
    """
    T_inner, alpha = _check_step(T_inner, alpha)
    X, y, sigma, t = prepare_prompts(X, y, sigma, betas=betas, pi=pi)
    betas = cast(Tensor, t["betas"])
    gamma, pi_t = _e_step(X, y, betas, sigma, t["pi"])
    out = _gradient_m_step(X, y, gamma, betas, pi_t, T_inner, alpha, estimate_pi)
    check_finite_step(f"the gradient-EM step (alpha={alpha:g})", "alpha", _ALPHA_HINT, *out)
    return out


def _gradient_m_step(
    X: Tensor,
    y: Tensor,
    gamma: Tensor,
    betas: Tensor,
    pi: Tensor,
    T_inner: int,
    alpha: float,
    estimate_pi: bool,
) -> tuple[Tensor, Tensor]:
    """``T_inner`` gradient steps on the Q-function with the responsibilities ``gamma`` frozen."""
    S, m = weighted_moments(X, y, gamma)
    for _ in range(T_inner):
        betas = betas + alpha * (m - (S @ betas[..., None])[..., 0])
    new_pi = gamma.mean(dim=1) if estimate_pi else pi
    return betas, new_pi


def symmetric_gradient_em_step(
    X: Tensor,
    y: Tensor,
    beta: Tensor,
    sigma: Sigma,
    *,
    T_inner: int = 1,
    alpha: float = 1.0,
    nonlinearity: Nonlinearity = torch.tanh,
) -> Tensor:
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
    beta : (B, d); a non-finite one raises :class:`ParameterError` naming ``alpha``.
    """
    T_inner, alpha = _check_step(T_inner, alpha)
    X, y, sigma, t = prepare_prompts(X, y, sigma, beta=beta)
    beta, sig = _symmetric_inputs(X, y, cast(Tensor, t["beta"]), sigma, "beta")
    out = _symmetric_step(X, y, beta, sig, T_inner, alpha, nonlinearity)
    check_finite_step(
        f"the symmetric gradient-EM step (alpha={alpha:g})", "alpha", _ALPHA_HINT, out
    )
    return out


def _symmetric_inputs(
    X: Tensor, y: Tensor, beta: Tensor, sigma: Sigma, name: str
) -> tuple[Tensor, Tensor]:
    """Validate the symmetric model's estimate ``beta`` (B, d) (or ``init`` (B, 2, d), of which
    ``[:, 0]`` is used) and sigma; return them in the dtype of X."""
    B, _, d = validate_prompts(X, y)
    if isinstance(beta, Tensor) and beta.dim() == 3:
        check_shape(beta, name, (B, 2, d))
        check_finite_tensor(beta, name)
        beta = beta[:, 0]
    check_shape(beta, name, (B, d))
    check_finite_tensor(beta, name)
    return beta.to(X.dtype), as_sigma(sigma, B, X.dtype, X.device)


def _symmetric_step(
    X: Tensor,
    y: Tensor,
    beta: Tensor,
    sigma: Tensor,
    T_inner: int,
    alpha: float,
    nonlinearity: Nonlinearity,
    S: Tensor | None = None,
) -> Tensor:
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
    X: Tensor,
    y: Tensor,
    init: Tensor,
    sigma: Sigma,
    pi: Tensor | None = None,
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
    T_outer = check_int(T_outer, "T_outer", minimum=0, maximum=MAX_ITERATIONS)
    T_inner, alpha = _check_step(T_inner, alpha)
    X, y, sigma, t = prepare_prompts(X, y, sigma, init=init, pi=pi)
    init, pi = cast(Tensor, t["init"]), t["pi"]
    if symmetric:
        if estimate_pi:
            raise ParameterError(
                "estimate_pi must be False in the symmetric model (pi = 1/2 is known)"
            )
        beta, sig = _symmetric_inputs(X, y, init, sigma, "init")
        return _symmetric_gradient_em(X, y, beta, sig, pi, T_outer, T_inner, alpha, nonlinearity)

    def m_step(gamma: Tensor, betas: Tensor, pi_t: Tensor) -> tuple[Tensor, Tensor]:
        return _gradient_m_step(X, y, gamma, betas, pi_t, T_inner, alpha, estimate_pi)

    return _iterate(X, y, init, sigma, pi, T_outer, m_step)


def _symmetric_gradient_em(
    X: Tensor,
    y: Tensor,
    beta: Tensor,
    sigma: Tensor,
    pi: Tensor | None,
    T_outer: int,
    T_inner: int,
    alpha: float,
    nonlinearity: Nonlinearity,
) -> EMResult:
    """Symmetric gradient EM from ``beta (B, d)``; ``pi`` must be None or (1/2, 1/2)."""
    B = X.shape[0]
    if pi is not None:
        check_shape(pi, "pi", (B, 2))
        check_finite_tensor(pi, "pi")
        if bool(((pi - 0.5).abs() > _HALF_ATOL).any()):
            raise ParameterError("pi must be (1/2, 1/2) in the symmetric model")
    half = torch.full((B, 2), 0.5, dtype=X.dtype, device=X.device)

    def ll_of(b: Tensor) -> Tensor:
        return posterior(log_joint(X, y, torch.stack([b, -b], 1), half, sigma))[1]

    trace = Trace.start(beta, half, ll_of(beta))
    S = X.transpose(1, 2) @ X / X.shape[1]
    for t in range(1, T_outer + 1):
        beta = _symmetric_step(X, y, beta, sigma, T_inner, alpha, nonlinearity, S)
        trace.update(t, beta, half, ll_of(beta))
    return trace.result(T_outer, symmetric=True)


# --------------------------------------------------------------------------- single-component baselines
def ols(X: Tensor, y: Tensor) -> Tensor:
    """Least squares ``argmin_w sum_i (y_i - x_i^T w)^2`` per prompt, (B, d).

    The minimum-norm solution when n < d (pseudo-inverse).
    """
    X, y, _, _ = prepare_prompts(X, y, None)
    try:
        w = (torch.linalg.pinv(X) @ y[..., None])[..., 0]
    except RuntimeError as exc:  # LinAlgError: the SVD did not converge
        raise ParameterError(f"X: the least-squares solve failed ({exc})") from None
    return _finite_solution(w)


def _finite_solution(w: Tensor) -> Tensor:
    """``w``, or a ParameterError where the solve gave NaN/inf."""
    if not bool(torch.isfinite(w).all()):
        raise ParameterError(
            "X, y: the solve gave non-finite weights (data too extreme or too ill-conditioned "
            "for the dtype); rescale the data"
        )
    return w


def ridge(X: Tensor, y: Tensor, lam: Tensor | float) -> Tensor:
    """Ridge regression ``(X^T X + lam I)^{-1} X^T y`` per prompt, (B, d).

    With ``lam = sigma^2 / tau^2`` this is the posterior mean of a single Gaussian component
    beta ~ N(0, tau^2 I).
    """
    X, y, _, t = prepare_prompts(X, y, None, lam=lam if isinstance(lam, Tensor) else None)
    B, _, d = X.shape
    lam = cast(Tensor, t["lam"]) if isinstance(lam, Tensor) else lam
    if isinstance(lam, Tensor):
        if lam.dim() == 0:
            lam = lam.expand(B)
        check_shape(lam, "lam", (B,))
        check_finite_tensor(lam, "lam")
        if bool((lam < 0).any()):
            raise ParameterError("lam must be >= 0")
        lam_t = lam.to(X.dtype)
    else:
        lam_t = torch.full(
            (B,), check_real(lam, "lam", minimum=0.0), dtype=X.dtype, device=X.device
        )
    A = X.transpose(1, 2) @ X + lam_t[:, None, None] * torch.eye(d, dtype=X.dtype, device=X.device)
    b = X.transpose(1, 2) @ y[..., None]
    return _finite_solution(solve_spd(A, b[..., 0]))
