"""Closed-form population loss of one linear self-attention layer (ZFB eq. (3.8); MoR paper Sec. 5).

Model (``docs/provenance.md`` §10 [READ-2nd]): ``f(E) = E + W^PV E (E^T W^KQ E) / N``,
``y_hat = f(E)[d+1, N+1]``; blocks ``W^PV = [[W11, p], [p^T.., u]]`` (last row ``(p^T, u)``),
``W^KQ = [[U, .], [q^T, .]]`` (first d columns ``(U; q^T)``). Expanding,

    y_hat = p^T S U x_q + (1/N)(p^T x_q)(x_q^T U x_q) + a^T H x_q + u s q^T x_q,   H = u U + p q^T,

with S, a, s the prompt averages of :mod:`.lsa_moments`. Under a sign-symmetric component prior
the even-in-y terms (1st, 2nd, 4th) are uncorrelated with the odd ones, so [DERIVED here; checked
against sympy (:mod:`.lsa_symbolic`) and Monte Carlo (:mod:`.lsa_montecarlo`)]

    2 L = [tr(H^T A H Lambda) - 2 tr(H^T C) + E y^2]                       (reduced loss, ZFB Lemma 5.2
                                                                            form [READ-2nd]; MoR [RECON])
        + p^T E[S M S] p                              M = U Lambda U^T,  E[SMS] = Lambda M Lambda
                                                      + (Lambda M Lambda + tr(M Lambda) Lambda)/N
        + N^-2 [(p'Lp)((tr UsL)^2 + 2 tr(UsL UsL)) + 4 tr(UsL) p'L Us L p + 8 p'L Us L Us L p]
        + (2/N) p^T Lambda U [tr(Us Lambda) Lambda p + 2 Lambda Us Lambda p]
        + u^2 E[s^2] q^T Lambda q + 2 u p^T E[sS] U Lambda q
        + (2u/N) E[s] [(p^T Lambda q) tr(Us Lambda) + 2 p^T Lambda Us Lambda q],   Us = (U + U^T)/2.

Only the four live blocks (U, p, q, u) enter; the other blocks get zero gradient. With p = q = 0
this is the reduced loss ``L(G)``, G = uU, ``L(G) - L* = (1/2) tr((G-G*)^T A (G-G*) Lambda)``.
"""

from __future__ import annotations

import numpy as np
import torch

from iclkit.theory.validation import ParameterError

from .moments import LSAMoments

__all__ = ["live_blocks", "loss_gap", "population_loss", "reduced_loss"]

_F64 = torch.float64


def _t(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=_F64)


def live_blocks(
    W_KQ: torch.Tensor, W_PV: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U, q, p, u): ``U = W^KQ_11`` (d, d), ``q = w^KQ_21`` (d,), ``p = w^PV_21`` (d,), ``u = w^PV_22``."""
    if W_KQ.shape != W_PV.shape or W_KQ.ndim != 2 or W_KQ.shape[0] != W_KQ.shape[1]:
        raise ParameterError(
            f"W_KQ, W_PV must both be (d+1, d+1), got {tuple(W_KQ.shape)} and {tuple(W_PV.shape)}"
        )
    d = W_KQ.shape[0] - 1
    return W_KQ[:d, :d], W_KQ[d, :d], W_PV[d, :d], W_PV[d, d]


def reduced_loss(moments: LSAMoments, G: np.ndarray | torch.Tensor) -> torch.Tensor:
    """L(G) = (1/2)[tr(G^T A G Lambda) - 2 tr(G^T C) + E y^2] for G = uU (d, d); 0-dim tensor."""
    G = _t(G)
    if G.shape != (moments.d, moments.d):
        raise ParameterError(f"G must be ({moments.d}, {moments.d}), got {tuple(G.shape)}")
    A, C, L = (_t(m) for m in (moments.A, moments.C, moments.Lambda))
    return 0.5 * (torch.trace(G.T @ A @ G @ L) - 2 * torch.trace(G.T @ C) + moments.Ey2)


def loss_gap(moments: LSAMoments, G: np.ndarray) -> float:
    """L(G) - L* = (1/2) tr((G - G*)^T A (G - G*) Lambda), computed without cancellation."""
    D = np.asarray(G, dtype=np.float64) - moments.G_star
    return 0.5 * float(np.einsum("ij,ik,kl,jl->", D, moments.A, D, moments.Lambda))


def population_loss(
    moments: LSAMoments, W_KQ: np.ndarray | torch.Tensor, W_PV: np.ndarray | torch.Tensor
) -> torch.Tensor:
    """Closed-form population loss L(W^KQ, W^PV) = (1/2) E(y_hat - y_q)^2 (differentiable).

    Parameters
    ----------
    W_KQ, W_PV : (d+1, d+1) float64 arrays or tensors.

    Returns
    -------
    0-dim float64 tensor (keeps the autograd graph of tensor inputs).
    """
    W_KQ, W_PV = _t(W_KQ), _t(W_PV)
    d, N = moments.d, moments.N
    if W_KQ.shape != (d + 1, d + 1):
        raise ParameterError(f"W_KQ must be ({d + 1}, {d + 1}), got {tuple(W_KQ.shape)}")
    U, q, p, u = live_blocks(W_KQ, W_PV)
    L = _t(moments.Lambda)
    H = u * U + torch.outer(p, q)
    odd = 2 * reduced_loss(moments, H)
    M = U @ L @ U.T
    LML = L @ M @ L
    ESMS = LML + (LML + torch.trace(M @ L) * L) / N
    Us = 0.5 * (U + U.T)
    UsL = Us @ L
    pLp = p @ L @ p
    tr_UsL = torch.trace(UsL)
    sixth = (
        pLp * (tr_UsL**2 + 2 * torch.trace(UsL @ UsL))
        + 4 * tr_UsL * (p @ L @ Us @ L @ p)
        + 8 * (p @ L @ Us @ L @ Us @ L @ p)
    )
    Lq = L @ q
    Lp = L @ p
    cross12 = (2 / N) * (Lp @ U @ (Lp * tr_UsL + 2 * L @ Us @ Lp))  # 2 E[T1 T2]
    even = (
        p @ ESMS @ p
        + sixth / N**2
        + cross12
        + u**2 * moments.Es2 * (q @ Lq)
        + 2 * u * (p @ _t(moments.EsS) @ U @ Lq)
        + (2 * u / N) * moments.Ey2 * ((p @ Lq) * tr_UsL + 2 * (p @ L @ Us @ Lq))
    )
    return 0.5 * (odd + even)
