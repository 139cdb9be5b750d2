"""Fixed points of the reduced LSA gradient flow, solved with sympy (ZFB Lemma 5.3 / Thm 4.1; MoR Sec. 5).

- The loss depends on (U, u) through G = uU and is quadratic in G with
  ``grad_G L = A G Lambda - C`` (sympy matrix calculus, :func:`gradient_in_G`), so every global
  minimiser has ``G* = A^{-1} C Lambda^{-1} = A^{-1} Lambda M1`` ([RECON] ``docs/provenance.md`` §10; linear
  data: ``Gamma^{-1}``, ZFB Lemma 5.3 [READ-2nd]). This module solves ``A G Lambda = C`` with
  sympy: exactly (rational arithmetic, ``linsolve``) for d <= ``max_exact_d``, with ``nsolve``
  (mpmath Newton on the (U, u) equations) for larger d up to ``max_nsolve_d``, and says which.
- ``u^2 - ||U||_F^2 = delta`` is conserved, so the limit on the level set of the initialisation is
  ``u*^2 = (delta + sqrt(delta^2 + 4 ||G*||_F^2)) / 2``, ``U* = G*/u*`` (delta = 0:
  ``u* = ||G*||_F^{1/2}``, ZFB's ``c = tr(Gamma^{-2})^{1/4}`` [READ-2nd]).
- Classification by the eigenvalues of the Jacobian of the vector field (= -Hessian of L): the
  origin is a saddle (eigenvalues ``+-||C||_F``) unless C = 0; the optimum is stable with one zero
  eigenvalue along the rescaling symmetry ``(U, u) -> (e^-s U, e^s u)`` (transverse to the level set).
- Isotropic case (Lambda = I): :func:`isotropic_optimum` derives ``G* = g* I`` symbolically;
  ``g* = N ||pi||^2 c2 / ((N-1)||pi||^2 c2 + (d+2) c2 + sigma^2)`` ([RECON] ``docs/provenance.md`` §10), which
  for linear data is ``N / (N + d + 1)`` (ZFB/Ahn [READ-2nd]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy as sp
import torch

from iclkit.theory.validation import ParameterError, check_int

from .moments import LSAMoments

__all__ = [
    "FixedPoint",
    "FixedPointReport",
    "find_fixed_points",
    "gradient_in_G",
    "isotropic_optimum",
    "zfb_pl_constant",
]

#: Largest d solved exactly (sympy ``linsolve`` over the rationals, d^2 unknowns); beyond it
#: exact arithmetic is too slow for general Lambda.
MAX_EXACT_D = 4
#: Largest d solved by ``sympy.nsolve`` (mpmath Newton on the (U, u) equations); beyond, numpy.
MAX_NSOLVE_D = 6


@dataclass(frozen=True, eq=False)
class FixedPoint:
    """One fixed point (U, u) of the reduced flow with its Jacobian spectrum."""

    name: str
    U: np.ndarray
    u: float
    eigenvalues: np.ndarray
    classification: str


@dataclass(frozen=True, eq=False)
class FixedPointReport:
    """Result of :func:`find_fixed_points`.

    Attributes
    ----------
    G_star : (d, d) float64, the global minimiser of L(G).
    G_star_sympy : sympy.Matrix or None (exact rationals when ``method == "exact"``).
    method : {"exact", "nsolve", "numpy"}
    method_message : str
    delta : float, the level u^2 - ||U||_F^2 the limit was placed on.
    u_star : float, U_star : (d, d)
    loss_star : float
    conserved_quantity : str
    fixed_points : list of FixedPoint
    degenerate_reason : str or None, set when G* = 0.
    tail_rate : float, 2 * (smallest nonzero eigenvalue of -J at the optimum): the predicted
        exponent of L(t) - L* ~ exp(-rate t) (nan when G* = 0).
    """

    G_star: np.ndarray
    G_star_sympy: sp.Matrix | None
    method: str
    method_message: str
    delta: float
    u_star: float
    U_star: np.ndarray
    loss_star: float
    conserved_quantity: str
    fixed_points: list[FixedPoint]
    degenerate_reason: str | None
    tail_rate: float


@lru_cache(maxsize=1)
def gradient_in_G() -> tuple[sp.Expr, sp.Expr]:
    """sympy matrix calculus: (L(G), dL/dG) for ``L = (1/2)(tr(G^T A G Lam) - 2 tr(G^T C))``.

    sympy returns ``(A G Lam + A^T G Lam^T)/2 - C``, i.e. ``A G Lam - C`` for symmetric A, Lam.
    """
    n = sp.Symbol("d", integer=True, positive=True)
    G, A, Lam, C = (sp.MatrixSymbol(s, n, n) for s in ("G", "A", "Lambda", "C"))
    quad, lin = sp.trace(G.T * A * G * Lam), sp.trace(G.T * C)
    L = sp.Rational(1, 2) * quad - lin
    # sympy 1.14 differentiates each trace but returns 0 for their sum: do it term by term
    return L, sp.Rational(1, 2) * quad.diff(G) - lin.diff(G)


@lru_cache(maxsize=1)
def isotropic_optimum() -> tuple[sp.Expr, sp.Expr]:
    """(g*, L*) for Lambda = I: minimise L(g I) over g symbolically.

    Symbols: N, d, sigma, c2 (prior second moment), rho = ||pi||^2 (0 for the symmetric model).
    """
    N, d, sigma, c2 = sp.symbols("N d sigma c2", positive=True)
    rho, g = sp.symbols("rho g", nonnegative=True)
    Ey2 = c2 * d + sigma**2
    a = (2 * c2 + Ey2) / N + (1 - 1 / N) * c2 * rho  # A = a I
    c = c2 * rho  # C = c I
    L = sp.Rational(1, 2) * (d * a * g**2 - 2 * d * c * g + Ey2)
    (g_star,) = sp.solve(sp.diff(L, g), g)
    return sp.simplify(g_star), sp.simplify(L.subs(g, g_star))


def _rational(M: np.ndarray) -> sp.Matrix:
    return sp.Matrix(M.shape[0], M.shape[1], lambda i, j: sp.Rational(float(M[i, j])))


def _reduced_rhs_torch(m: LSAMoments) -> tuple[object, int]:
    A, C, L = (torch.as_tensor(x, dtype=torch.float64) for x in (m.A, m.C, m.Lambda))
    d = m.d

    def rhs(y: torch.Tensor) -> torch.Tensor:
        U, u = y[: d * d].view(d, d), y[-1]
        AUL = A @ U @ L
        dU = -(u * u * AUL - u * C)
        du = -(u * (U * AUL).sum() - (U * C).sum())
        return torch.cat([dU.reshape(-1), du.reshape(1)])

    return rhs, d


def _classify(ev: np.ndarray) -> str:
    tol = 1e-9 * max(1.0, float(np.abs(ev).max()))
    pos, neg = int((ev > tol).sum()), int((ev < -tol).sum())
    zero = ev.size - pos - neg
    if pos and neg:
        return f"saddle ({pos} unstable, {neg} stable, {zero} zero eigenvalues)"
    if pos:
        return f"unstable ({pos} unstable, {zero} zero eigenvalues)"
    if neg and zero == 0:
        return "stable (all eigenvalues < 0)"
    if neg:
        return (
            f"stable, non-isolated: {zero} zero eigenvalue(s) along the rescaling symmetry "
            "(U, u) -> (e^-s U, e^s u), transverse to the conserved level set"
        )
    return "degenerate (all eigenvalues 0): stability decided by higher-order terms"


def find_fixed_points(
    moments: LSAMoments,
    *,
    delta: float = 0.0,
    sign: float = 1.0,
    max_exact_d: int = MAX_EXACT_D,
    max_nsolve_d: int = MAX_NSOLVE_D,
) -> FixedPointReport:
    """Solve grad L = 0 for the reduced (U, u) system and classify the fixed points.

    Parameters
    ----------
    moments : LSAMoments
    delta : float
        The conserved level ``u^2 - ||U||_F^2`` (0 for ZFB's balanced initialisation).
    sign : {+1, -1}
        Sign of u along the trajectory (u cannot change sign when delta > 0).
    max_exact_d, max_nsolve_d : int
        Up to ``max_exact_d`` solve ``A G Lambda = C`` exactly (sympy ``linsolve`` over the
        rationals); up to ``max_nsolve_d`` use ``sympy.nsolve``; beyond, numpy.
    """
    m = moments
    d = m.d
    max_exact_d = check_int(max_exact_d, "max_exact_d", minimum=0)
    max_nsolve_d = check_int(max_nsolve_d, "max_nsolve_d", minimum=0)
    if sign not in (1, -1, 1.0, -1.0):
        raise ParameterError(f"sign must be +1 or -1, got {sign!r}")
    G_num = np.linalg.solve(m.A, m.C @ np.linalg.inv(m.Lambda))
    degenerate = None
    if m.c2 * m.pi_sq == 0:
        degenerate = (
            "G* = 0: in the symmetric two-component model beta_bar = (beta_1 + beta_2)/2 = 0, so "
            "M1 = E[beta_bar beta_bar^T] = 0 and C = E[a y_q x_q^T] = Lambda M1 Lambda = 0; the "
            "prompt statistic a = (1/N) sum y_i x_i carries no linear information on y_q, the best "
            "LSA prediction is 0 (which equals the oracle, whose mean component is 0), and the "
            "flow decays to 0 sub-linearly (||G(t)|| ~ 1/t) instead of converging linearly"
        )
    Gs_sym: sp.Matrix | None = None
    if d <= max_exact_d:
        Gm = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"G{i}{j}"))
        eqs = list(_rational(m.A) * Gm * _rational(m.Lambda) - _rational(m.C))
        (sol,) = sp.linsolve(eqs, list(Gm))
        Gs_sym = sp.Matrix(d, d, list(sol))
        G_star = np.array(Gs_sym.evalf(30).tolist(), dtype=np.float64)
        method = "exact"
        msg = (
            "closed form: A G Lambda = C solved exactly by sympy.linsolve over the rationals "
            "(G* = A^-1 Lambda M1)"
        )
    elif d <= max_nsolve_d and degenerate is None:
        Us = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"U{i}{j}"))
        us = sp.Symbol("u")
        A_, C_, L_ = (sp.Matrix(x) for x in (m.A, m.C, m.Lambda))
        eqs = [
            *list(us * us * A_ * Us * L_ - us * C_),
            us**2 - sum(Us.applyfunc(lambda e: e**2)) - delta,
        ]
        x0 = _limit_on_level(G_num, delta, sign)
        start = [*x0[1].reshape(-1), x0[0]]
        sol = sp.nsolve(eqs, [*Us, us], start, prec=30)
        u_ = float(sol[-1])
        G_star = u_ * np.array(sol[:-1], dtype=np.float64).reshape(d, d)
        method = "nsolve"
        msg = (
            f"no exact solve for d = {d} > {max_exact_d} with general Lambda (too slow in exact "
            "arithmetic): solved grad_U L = 0, u^2 - ||U||^2 = delta numerically with "
            "sympy.nsolve (mpmath, 30 digits)"
        )
    else:
        G_star = G_num
        method = "numpy"
        msg = f"d = {d} > {max_nsolve_d}: G* = A^-1 C Lambda^-1 by numpy.linalg.solve (float64)"
    u_star, U_star = _limit_on_level(G_star, delta, sign)
    rhs, _ = _reduced_rhs_torch(m)
    fps = []
    points = [("origin", np.zeros((d, d)), 0.0)]
    if degenerate is None:
        points += [("optimum", U_star, u_star), ("optimum (mirror)", -U_star, -u_star)]
    rate = math.nan
    for name, U, u in points:
        y = torch.as_tensor(np.concatenate([U.reshape(-1), [u]]), dtype=torch.float64)
        J = torch.autograd.functional.jacobian(rhs, y).numpy()
        ev = np.sort(np.linalg.eigvals(J).real)
        fps.append(FixedPoint(name, U, u, ev, _classify(ev)))
        if name == "optimum":
            tol = 1e-9 * max(1.0, float(np.abs(ev).max()))
            rate = 2.0 * float(-ev[ev < -tol].max())
    return FixedPointReport(
        G_star=G_star,
        G_star_sympy=Gs_sym,
        method=method,
        method_message=msg,
        delta=float(delta),
        u_star=u_star,
        U_star=U_star,
        loss_star=m.loss_star,
        conserved_quantity="u^2 - ||U||_F^2 (= ||p||^2 + u^2 - ||U||_F^2 - ||q||^2 on all blocks)",
        fixed_points=fps,
        degenerate_reason=degenerate,
        tail_rate=rate,
    )


def _limit_on_level(G: np.ndarray, delta: float, sign: float) -> tuple[float, np.ndarray]:
    """(u*, U*) with u* U* = G and u*^2 - ||U*||_F^2 = delta."""
    g2 = float(np.sum(G * G))
    if g2 == 0:
        return (math.copysign(math.sqrt(max(delta, 0.0)), sign), np.zeros_like(G))
    u2 = 0.5 * (delta + math.sqrt(delta * delta + 4 * g2))
    u = math.copysign(math.sqrt(u2), sign)
    return u, G / u


def zfb_pl_constant(moments: LSAMoments, U0: np.ndarray, scale: float) -> float:
    """ZFB Lemma 5.4's PL constant as restated by a third party [READ-2nd, NOT verified].

    ``mu = s^2 sqrt(d) ||Lambda||_op^2 tr(Gamma^-1 Lambda^-1) tr(Lambda^-1)
    / (||Lambda Theta||_F^2 [2 - sqrt(d) s^2 ||Gamma||_op])`` with ``||Lambda Theta||_F^2 =
    tr(Lambda^2 U(0)) / s`` for the structured init ``U(0) = s Theta Theta^T``. Report it next to
    the fitted rate; do not assert it (``docs/provenance.md`` §10). nan when not applicable.
    """
    if moments.kind != "linear" or scale <= 0:
        return math.nan
    L, Gam = moments.Lambda, moments.Gamma
    d = moments.d
    g_op = float(np.linalg.eigvalsh(0.5 * (Gam + Gam.T)).max())
    denom_cond = 2 - math.sqrt(d) * scale**2 * g_op
    lt2 = float(np.trace(L @ L @ U0)) / scale
    if denom_cond <= 0 or lt2 <= 0:
        return math.nan
    Li = np.linalg.inv(L)
    num = scale**2 * math.sqrt(d) * float(np.linalg.eigvalsh(L).max()) ** 2
    num *= float(np.trace(np.linalg.inv(Gam) @ Li)) * float(np.trace(Li))
    return num / (lt2 * denom_cond)
