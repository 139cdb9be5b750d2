"""Gradient flow of one-layer linear self-attention (LSA): condition, limit and MoR optimum.

- Zhang-Frei-Bartlett Theorem 4.1 [READ-2nd]: the initialisation condition
  (:func:`lsa_convergence_condition`) and the limit for linear-regression prompts
  (:func:`lsa_gamma`, :func:`lsa_fixed_point`);
- the optimum for MoR prompts [RECON, Monte-Carlo checked]: :func:`lsa_mor_optimum`.

Provenance marks: see :mod:`iclkit.theory.bounds`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..validation import (
    ParameterError,
    check_finite_result,
    check_int,
    check_real,
    check_spd,
    no_overflow,
    overflow_error,
)
from .results import Condition, ConditionReport

__all__ = [
    "LSAFixedPoint",
    "LSAMoROptimum",
    "lsa_convergence_condition",
    "lsa_fixed_point",
    "lsa_gamma",
    "lsa_mor_optimum",
]


def lsa_gamma(Lambda: np.ndarray | Sequence[Sequence[float]], N: int) -> np.ndarray:
    """``Gamma = (1 + 1/N) Lambda + tr(Lambda)/N I_d`` (ZFB §5 [READ-2nd, re-derived])."""
    lam = check_spd(Lambda, "Lambda")
    N = check_int(N, "N", minimum=1)
    d = lam.shape[0]
    args = {"Lambda": lam, "N": N}
    with no_overflow("lsa_gamma", args):
        gam = (1.0 + 1.0 / N) * lam + np.trace(lam) / N * np.eye(d)
    check_finite_result(gam, "lsa_gamma", args)
    return gam


def lsa_convergence_condition(
    s: float, Lambda: np.ndarray | Sequence[Sequence[float]], N: int
) -> ConditionReport:
    """Initialisation-scale condition of ZFB Theorem 4.1 [READ-2nd]: ``s^2 ||Gamma||_op sqrt(d) < 2``.

    ``s`` is the scale of the structured initialisation (ZFB Assumption 3.3:
    ``W^PV(0) = s diag(0_d, 1)``, ``W^KQ(0) = s diag(Theta Theta^T, 0)``). For MoR data the
    analogous condition is [RECON] (``docs/provenance.md`` §10).
    """
    s = check_real(s, "s", minimum=0.0, strict_minimum=True)
    gam = lsa_gamma(Lambda, N)
    d = gam.shape[0]
    args = {"s": s, "Lambda": gam, "N": N}
    with no_overflow("lsa_convergence_condition", args):
        lhs = s * s * float(np.linalg.norm(gam, 2)) * math.sqrt(d)
    check_finite_result(lhs, "lsa_convergence_condition", args)
    cond = Condition("init_scale", "s^2 ||Gamma||_op sqrt(d) < 2", lhs, 2.0, lhs < 2.0)
    return ConditionReport("ZFB Thm 4.1", "[READ-2nd]", (cond,), 1.0)


@dataclass(frozen=True)
class LSAFixedPoint:
    """Limit of the LSA gradient flow for linear-regression prompts (ZFB Thm 4.1 [READ-2nd]).

    Attributes
    ----------
    Gamma : (d, d)
    G_star : (d, d) ``u U -> Gamma^-1``
    c : float ``[tr(Gamma^-2)]^(1/4)``
    W_KQ, W_PV : (d+1, d+1) limits ``c^-1 diag(Gamma^-1, 0)`` and ``c diag(0_d, 1)``
    loss_star : float ``1/2 (tr Lambda - tr(Gamma^-1 Lambda^2))`` [DERIVED in docs/provenance.md §10]
    """

    Gamma: np.ndarray
    G_star: np.ndarray
    c: float
    W_KQ: np.ndarray
    W_PV: np.ndarray
    loss_star: float


def lsa_fixed_point(Lambda: np.ndarray | Sequence[Sequence[float]], N: int) -> LSAFixedPoint:
    """Closed-form global minimum of the one-layer LSA population loss (ZFB Thm 4.1 [READ-2nd]).

    Linear prompts: ``x ~ N(0, Lambda)``, ``w ~ N(0, I_d)``, noiseless labels, N examples.
    """
    lam = check_spd(Lambda, "Lambda")
    gam = lsa_gamma(lam, N)
    d = lam.shape[0]
    args = {"Lambda": lam, "N": N}
    with no_overflow("lsa_fixed_point", args):
        ginv = np.linalg.inv(gam)
        c = float(np.trace(ginv @ ginv)) ** 0.25
    check_finite_result((ginv, c), "lsa_fixed_point", args)
    if c <= 0:  # Gamma^-1 underflowed: Lambda too large
        raise overflow_error("lsa_fixed_point", args)
    W_KQ = np.zeros((d + 1, d + 1))
    W_KQ[:d, :d] = ginv / c
    W_PV = np.zeros((d + 1, d + 1))
    W_PV[d, d] = c
    with no_overflow("lsa_fixed_point", args):
        loss = 0.5 * (float(np.trace(lam)) - float(np.trace(ginv @ lam @ lam)))
    check_finite_result(loss, "lsa_fixed_point", args)
    return LSAFixedPoint(gam, ginv, c, W_KQ, W_PV, loss)


@dataclass(frozen=True)
class LSAMoROptimum:
    """Global optimum ``G* = u U`` of the LSA population loss under MoR prompts [RECON, MC-checked].

    Attributes
    ----------
    A : (d, d) ``E[a a^T]``; Cmat : (d, d) ``E[a y_q x_q^T] = Lambda M1 Lambda``
    G_star : (d, d) ``A^-1 C Lambda^-1 = A^-1 Lambda M1``
    loss_star : float ``L(G*)``
    """

    A: np.ndarray
    Cmat: np.ndarray
    G_star: np.ndarray
    loss_star: float


def lsa_mor_optimum(
    Lambda: np.ndarray | Sequence[Sequence[float]],
    M1: np.ndarray | Sequence[Sequence[float]],
    M2: np.ndarray | Sequence[Sequence[float]],
    sigma: float,
    N: int,
) -> LSAMoROptimum:
    """Optimum of the LSA population loss for MoR prompts (``docs/provenance.md`` §10 [RECON, MC-checked]).

    ``A = (1/N)(2 Lambda M2 Lambda + (tr(Lambda M2) + sigma^2) Lambda) + (1 - 1/N) Lambda M1 Lambda``,
    ``C = Lambda M1 Lambda``, ``L(G) = 1/2 [tr(G^T A G Lambda) - 2 tr(G^T C) + tr(Lambda M2) + sigma^2]``,
    ``G* = A^-1 Lambda M1``. ``M1 = E[beta_bar beta_bar^T]``, ``M2 = E[sum_k pi_k beta_k beta_k^T]``.
    Isotropic case (Lambda = I, beta_k ~ N(0, tau^2 I)): ``G* = g* I`` with
    ``g* = N ||pi||^2 / ((N-1)||pi||^2 + d + 2 + sigma^2/tau^2)``. Symmetric two-component MoR
    has M1 = 0, hence G* = 0.
    """
    lam = check_spd(Lambda, "Lambda")
    d = lam.shape[0]
    m1 = np.asarray(M1, dtype=np.float64)
    m2 = np.asarray(M2, dtype=np.float64)
    for name, m in (("M1", m1), ("M2", m2)):
        if m.shape != (d, d) or not np.all(np.isfinite(m)):
            raise ParameterError(f"{name} must be a finite ({d}, {d}) matrix, got shape {m.shape}")
    sigma = check_real(sigma, "sigma", minimum=0.0)
    N = check_int(N, "N", minimum=1)
    args = {"Lambda": lam, "M1": m1, "M2": m2, "sigma": sigma, "N": N}
    with no_overflow("lsa_mor_optimum", args):
        A = (2 * lam @ m2 @ lam + (float(np.trace(lam @ m2)) + sigma**2) * lam) / N + (
            1 - 1 / N
        ) * lam @ m1 @ lam
        Cm = lam @ m1 @ lam
        check_finite_result((A, Cm), "lsa_mor_optimum", args)
        try:
            G = np.linalg.solve(A, lam @ m1)
        except np.linalg.LinAlgError:
            raise ParameterError(
                "M2: A = (2 Lambda M2 Lambda + (tr(Lambda M2) + sigma^2) Lambda)/N + ... is "
                "singular (M2 = 0 and sigma = 0?): the optimum is not unique"
            ) from None
        loss = 0.5 * (
            float(np.trace(G.T @ A @ G @ lam))
            - 2 * float(np.trace(G.T @ Cm))
            + float(np.trace(lam @ m2))
            + sigma**2
        )
    check_finite_result((G, loss), "lsa_mor_optimum", args)
    return LSAMoROptimum(A, Cm, G, loss)
