"""Surrogate gradient EM: gradient EM with every nonlinearity replaced by its sum of ReLUs.

This is the algorithm the Theorem 3.1 transformer (``gradient_em_transformer``) runs *exactly*;
it is computed here directly, as sums over the examples, independently of the attention code.

Symmetric two components [RECON, the standard tanh form of symmetric gradient EM]: surrogate labels
``y~_j = f(y_j <x_j, beta> / sigma^2) y_j`` with ``f`` the ReLU sum of tanh, then ``T_inner``
least-squares gradient steps (:func:`symmetric_surrogate_iterates`; with ``f = tanh`` this is
``algorithms.gradient_em(symmetric=True)``).

General K (this project's design, ``docs/construction.md``). With ``t_jk = (y_j - <x_j, beta_k>)
/ sigma`` and the exact functions ``psi(t) = t^2 / 2``, ``softplus``, ``exp``:

    e_jk = psi(t_jk),                 l_jk = log pi_k - e_jk
    w_{j,K-1} = 0,  w_jk = softplus(l_{j,k+1} - l_jk + w_{j,k+1})       (k = K-2..0)
    gamma_jk = exp(l_jk - l_j0 - w_j0)            (= softmax_k l_jk, since l_0 + w_0 = LSE_k l_k)
    inner step:  beta_k += alpha (1/n) sum_j (sigma/2) [psi(gamma_jk + t_jk) - psi(gamma_jk - t_jk)] x_j

(the bracket is ``2 gamma t``, so the step is ``alpha (1/n) sum_j gamma_jk (y_j - <x_j, beta_k>) x_j``,
the gradient-EM M-step with frozen responsibilities). Replacing ``psi, softplus, exp`` by ReLU
sums gives the surrogate (:func:`general_surrogate_iterates`); with the exact functions it
equals ``algorithms.gradient_em`` (checked in the tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "EStepFunctions",
    "general_surrogate_iterates",
    "symmetric_gap_bound",
    "symmetric_surrogate_iterates",
]

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EStepFunctions:
    """The scalar nonlinearities of the general-K construction (exact or ReLU sums)."""

    psi: Fn
    softplus: Fn
    exp: Fn

    @staticmethod
    def exact() -> EStepFunctions:
        return EStepFunctions(lambda t: 0.5 * t * t, F.softplus, torch.exp)


def symmetric_surrogate_iterates(
    X: torch.Tensor,
    y: torch.Tensor,
    beta0: torch.Tensor,
    sigma: float | torch.Tensor,
    f: Fn,
    *,
    T_outer: int,
    T_inner: int,
    alpha: float,
) -> list[list[torch.Tensor]]:
    """Iterates of symmetric surrogate gradient EM.

    X : (B, n, d), y : (B, n), beta0 : (B, d), sigma : float or (B,). Returns ``iters[t][s]``
    (B, d): the estimate after inner step ``s + 1`` of outer iteration ``t + 1``.
    """
    n = X.shape[1]
    if isinstance(sigma, torch.Tensor):
        sigma = sigma.to(X.dtype).reshape(-1, 1)
    beta = beta0
    out: list[list[torch.Tensor]] = []
    for _ in range(T_outer):
        u = y * torch.einsum("bnd,bd->bn", X, beta) / sigma**2
        coef = f(u) * y  # surrogate labels y~_j
        row = []
        for _ in range(T_inner):
            s = torch.einsum("bnd,bd->bn", X, beta)
            beta = beta + alpha * torch.einsum("bn,bnd->bd", coef - s, X) / n
            row.append(beta)
        out.append(row)
    return out


def general_surrogate_iterates(
    X: torch.Tensor,
    y: torch.Tensor,
    init: torch.Tensor,
    sigma: float | torch.Tensor,
    pi: tuple[float, ...],
    fns: EStepFunctions,
    *,
    T_outer: int,
    T_inner: int,
    alpha: float,
) -> list[list[torch.Tensor]]:
    """Iterates of general-K (surrogate) gradient EM in the form above.

    X : (B, n, d), y : (B, n), init : (B, K, d), sigma : float or (B,).
    Returns ``iters[t][s]`` (B, K, d).
    """
    n = X.shape[1]
    if isinstance(sigma, torch.Tensor):
        sigma = sigma.to(X.dtype).reshape(-1, 1, 1)
    K = init.shape[1]
    logpi = [math.log(p) for p in pi]
    betas = init
    out: list[list[torch.Tensor]] = []
    for _ in range(T_outer):
        t = (y[:, :, None] - torch.einsum("bnd,bkd->bnk", X, betas)) / sigma  # (B, n, K)
        e = fns.psi(t)
        ell = torch.tensor(logpi, dtype=X.dtype) - e
        w = torch.zeros_like(ell[..., 0])
        for k in range(K - 2, -1, -1):
            arg = ell[..., k + 1] - ell[..., k] + (w if k + 1 <= K - 2 else 0.0)
            w = fns.softplus(arg)
        w0 = w if K >= 2 else torch.zeros_like(ell[..., 0])
        gam = fns.exp(ell - ell[..., :1] - w0[..., None])  # (B, n, K)
        row = []
        for _ in range(T_inner):
            tt = (y[:, :, None] - torch.einsum("bnd,bkd->bnk", X, betas)) / sigma
            r = 0.5 * sigma * (fns.psi(gam + tt) - fns.psi(gam - tt))  # ~ gamma * residual
            betas = betas + alpha * torch.einsum("bnk,bnd->bkd", r, X) / n
            row.append(betas)
        out.append(row)
    return out


def symmetric_gap_bound(
    X: torch.Tensor,
    y: torch.Tensor,
    exact_iterates: list[torch.Tensor],
    sigma: float,
    eps: float,
    *,
    T_inner: int,
    alpha: float,
) -> torch.Tensor:
    """Certificate ``eps`` propagated through symmetric gradient EM: a bound on
    ``||beta~_t - beta_t||`` for every outer iteration (this project's derivation, ``docs``).

    With ``P = (I - alpha S)^{T_inner}``, ``Q = sum_{r<T_inner} (I - alpha S)^r alpha``,
    ``S = X^T X / n`` and ``E_0 = 0``:

        E_{t+1} = ||P|| E_t + ||Q|| sqrt(lambda_max(S)) [ eps rms(y)
                  + E_t sqrt(mean_j lam_j(E_t)^2 y_j^4 ||x_j||^2) / sigma^2 ],
        lam_j(E) = sech^2(max(0, |u_j| - |y_j| ||x_j|| E / sigma^2)),  u_j = y_j <x_j, beta_t> / sigma^2,

    ``lam_j`` bounding tanh' between the exact and the surrogate argument. ``eps`` must bound
    ``|f - tanh|`` on the whole line (``Certificate.eps_global``).

    Parameters
    ----------
    exact_iterates : [beta_0, beta_1, ..., beta_{T-1}], each (B, d), exact gradient-EM iterates.

    Returns
    -------
    (B, T) bounds after outer iterations 1..T.
    """
    n = X.shape[1]
    S = X.transpose(1, 2) @ X / n
    lam = torch.linalg.eigvalsh(S)  # (B, d)
    one_minus = 1 - alpha * lam
    P = one_minus.abs().pow(T_inner).amax(-1)
    Qs = sum(one_minus**r for r in range(T_inner)) * alpha
    Qn = Qs.abs().amax(-1)
    root = lam.amax(-1).clamp_min(0).sqrt()
    xnorm = torch.linalg.vector_norm(X, dim=-1)
    rms_y = (y * y).mean(-1).sqrt()
    E = torch.zeros(X.shape[0], dtype=X.dtype)
    bounds = []
    for beta in exact_iterates:
        u = y * torch.einsum("bnd,bd->bn", X, beta) / sigma**2
        rho = y.abs() * xnorm * E[:, None] / sigma**2
        lam_j = torch.cosh((u.abs() - rho).clamp_min(0)).pow(-2)
        lip = ((lam_j * y * y * xnorm) ** 2).mean(-1).sqrt() / sigma**2
        E = P * E + Qn * root * (eps * rms_y + E * lip)
        bounds.append(E)
    return torch.stack(bounds, 1)
