"""Theorem bounds as functions: each theorem's conditions, rate and size, in the papers' symbols.

One function per statement; every function validates its inputs (``ParameterError``), checks the
theorem's assumptions and returns a frozen result that says which hold and why. Constants that
the papers leave inside ``O(.)`` are an explicit argument ``C`` (default 1); the result marks the
constant as *unknown* so a check can fit it and say so.

Every statement carries the provenance mark of ``shared/papers/mor.md`` / ``dynamics.md``:

- **[2nd]** restated by a third party (MoR paper body not readable here);
- **[READ]** read from a stored source (the source is named);
- **[RECON]** reconstructed from cited prior work or derived here: *not* the paper's theorem;
- **[MEASURED]** this project's derivation and measurement (softmax phase scalings), not a
  theorem of any paper.

Contents

- MoR (Jin, Balasubramanian, Lai; arXiv 2410.14183), Theorem 3.1 [2nd]:
  :func:`theorem_3_1_conditions`, :func:`theorem_3_1_error_bound`, :func:`theorem_3_1_layers`.
- Two-component rates by SNR regime (Kwon-Ho-Caramanis table [READ abstract]; as the paper's
  Theorems 3.2/3.3 [RECON]): :func:`two_mixture_rates`.
- Generalization, Theorems 4.1/4.2 as ``O(L / sqrt(B))`` via Bai et al. Thm 20 [RECON]:
  :func:`generalization_bound`.
- LSA gradient flow (Zhang-Frei-Bartlett Thm 4.1 [READ-2nd]; MoR optimum [RECON, MC-checked]):
  :func:`lsa_convergence_condition`, :func:`lsa_fixed_point`, :func:`lsa_mor_optimum`.
- Softmax attention phases (Huang-Cheng-Liang; scalings [MEASURED]): :func:`softmax_phase_scalings`.

This module imports nothing of iclkit beyond :mod:`iclkit.theory.validation`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .validation import (
    ParameterError,
    check_int,
    check_positive,
    check_probability_vector,
    check_real,
)

__all__ = [
    "Condition",
    "ConditionReport",
    "LSAFixedPoint",
    "LSAMoROptimum",
    "LayerCount",
    "PhaseScalings",
    "RateBound",
    "TwoMixtureRates",
    "generalization_bound",
    "lsa_convergence_condition",
    "lsa_fixed_point",
    "lsa_gamma",
    "lsa_mor_optimum",
    "softmax_phase_scalings",
    "theorem_3_1_conditions",
    "theorem_3_1_error_bound",
    "theorem_3_1_layers",
    "two_mixture_rates",
]

Regime = Literal["high", "middle", "low"]

UNKNOWN_CONSTANT = "unknown: the paper states O(.); C is an argument (fit it, do not trust C=1)"


# --------------------------------------------------------------------------- result types
@dataclass(frozen=True)
class Condition:
    """One assumption ``lhs >= rhs`` (or ``lhs < rhs`` for strict upper bounds) of a theorem.

    Attributes
    ----------
    name : str
        Short identifier (``"n_vs_d"``).
    statement : str
        The inequality in the paper's symbols.
    lhs, rhs : float
        Both sides evaluated at the given parameters.
    holds : bool
    """

    name: str
    statement: str
    lhs: float
    rhs: float
    holds: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "statement": self.statement,
            "lhs": self.lhs,
            "rhs": self.rhs,
            "holds": self.holds,
        }


@dataclass(frozen=True)
class ConditionReport:
    """The assumptions of a theorem evaluated at given parameters.

    Attributes
    ----------
    theorem : str
    mark : str
        Provenance mark ([2nd], [RECON], ...).
    conditions : tuple of Condition
    constant : float
        The constant C used in the O(.)/Omega(.) conditions.
    """

    theorem: str
    mark: str
    conditions: tuple[Condition, ...]
    constant: float = 1.0

    @property
    def holds(self) -> bool:
        """True when every condition holds."""
        return all(c.holds for c in self.conditions)

    @property
    def status(self) -> str:
        return "satisfied" if self.holds else "violated"

    @property
    def message(self) -> str:
        """One line: all hold, or which fail and by how much (actionable)."""
        bad = [c for c in self.conditions if not c.holds]
        if not bad:
            return f"{self.theorem} {self.mark}: all {len(self.conditions)} conditions hold (C={self.constant:g})"
        parts = [f"{c.name}: {c.statement} fails ({c.lhs:.4g} vs {c.rhs:.4g})" for c in bad]
        return f"{self.theorem} {self.mark}: " + "; ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "theorem": self.theorem,
            "mark": self.mark,
            "constant": self.constant,
            "holds": self.holds,
            "conditions": [c.as_dict() for c in self.conditions],
        }


@dataclass(frozen=True)
class RateBound:
    """A rate-form bound ``value = C * rate(params)``.

    Attributes
    ----------
    theorem, mark : str
    formula : str
        The rate in the paper's symbols.
    rate : float
        The rate with C = 1.
    constant : float
    constant_status : str
        ``UNKNOWN_CONSTANT`` unless the caller fitted it.
    probability : float or None
        The probability with which the bound holds (high-probability bounds), else None.
    exponent : dict
        Power-law exponents of the rate in its main variables (e.g. ``{"n": -0.5, "d": 0.5}``),
        ignoring log factors: what a rate check fits.
    """

    theorem: str
    mark: str
    formula: str
    rate: float
    constant: float
    constant_status: str
    probability: float | None = None
    exponent: dict[str, float] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return self.constant * self.rate


@dataclass(frozen=True)
class LayerCount:
    """Depth of a construction in rate form ``L = C * layers(params)``."""

    theorem: str
    mark: str
    formula: str
    layers: float
    constant: float
    constant_status: str

    @property
    def value(self) -> float:
        return self.constant * self.layers


# --------------------------------------------------------------------------- validation
def _delta(delta: float) -> float:
    # The bound holds with probability 1 - 9 delta, which is a probability only for delta < 1/9.
    return check_real(delta, "delta", minimum=0.0, maximum=1.0 / 9.0, strict_minimum=True)


def _pi(pi: Sequence[float] | np.ndarray, K: int) -> np.ndarray:
    arr = np.asarray(check_probability_vector(pi, "pi", length=K), dtype=np.float64)
    if arr.min() <= 0:
        raise ParameterError(f"pi must have all entries > 0 (pi_min > 0), got {arr.tolist()}")
    return arr


# --------------------------------------------------------------------------- MoR Theorem 3.1
def theorem_3_1_conditions(
    n: int,
    d: int,
    K: int,
    delta: float,
    pi: Sequence[float] | np.ndarray,
    snr: float,
    *,
    C: float = 1.0,
) -> ConditionReport:
    """Assumptions of MoR Theorem 3.1 (v2, K components, high SNR) [2nd].

    ``n >= C max{ d log^2(d K^2 / delta), (K^2 / delta)^(1/3), (d / pi_min) log(K^2 / delta) }``
    and ``eta >= C K rho_pi log(K rho_pi)`` with ``rho_pi = pi_max / pi_min`` and
    ``eta = R_min / sigma`` (``mor.md`` §4.4 [2nd]; the SNR definition is [RECON]).
    C is the paper's unspecified "sufficiently large constant".

    Parameters
    ----------
    n, d, K : int
        Examples per prompt, dimension, components (n, d, K >= 1).
    delta : float
        Failure parameter, 0 < delta < 1/9 (the bound holds w.p. 1 - 9 delta).
    pi : (K,) mixing weights, all > 0.
    snr : float
        eta > 0.
    C : float
        The constant (> 0).
    """
    n = check_int(n, "n", minimum=1)
    d = check_int(d, "d", minimum=1)
    K = check_int(K, "K", minimum=1)
    delta = _delta(delta)
    p = _pi(pi, K)
    snr = check_positive(snr, "snr")
    C = check_positive(C, "C")
    rho = float(p.max() / p.min())
    lk = math.log(K * K / delta)
    req_d = C * d * math.log(d * K * K / delta) ** 2
    req_k = C * (K * K / delta) ** (1.0 / 3.0)
    req_pi = C * d / float(p.min()) * lk
    kr = K * rho
    req_snr = C * kr * math.log(kr) if kr > 1 else 0.0
    conds = (
        Condition("n_vs_d", "n >= C d log^2(d K^2/delta)", float(n), req_d, n >= req_d),
        Condition("n_vs_K", "n >= C (K^2/delta)^(1/3)", float(n), req_k, n >= req_k),
        Condition("n_vs_pi", "n >= C (d/pi_min) log(K^2/delta)", float(n), req_pi, n >= req_pi),
        Condition("snr", "eta >= C K rho_pi log(K rho_pi)", snr, req_snr, snr >= req_snr),
    )
    return ConditionReport("MoR Thm 3.1", "[2nd]", conds, C)


def theorem_3_1_error_bound(
    n: int,
    d: int,
    K: int,
    delta: float,
    pi: Sequence[float] | np.ndarray,
    *,
    C: float = 1.0,
) -> RateBound:
    """Prediction-error bound of MoR Theorem 3.1 in rate form [2nd].

    With probability >= 1 - 9 delta,

        Delta_y = |y_hat_{n+1} - y_orc_{n+1}|
                <= C sqrt(log(d/delta)) ( sqrt(d K rho_pi^2 log^2(n K^2/delta) / n)
                                          + sqrt(d K log(K^2/delta) / (n pi_min)) ).

    (``mor.md`` §4.4, a close transcription of a third-party note [2nd]. The note also has a
    garbled fragment "Delta_y <= ||w*_max||_2 / sqrt(n)": the bound may be relative to
    ``||w*_max||``; checks therefore fit C on data with ``||beta_k|| = 1``.)
    The constant is unknown (O(.) in the paper).
    """
    n = check_int(n, "n", minimum=1)
    d = check_int(d, "d", minimum=1)
    K = check_int(K, "K", minimum=1)
    delta = _delta(delta)
    p = _pi(pi, K)
    C = check_positive(C, "C")
    rho = float(p.max() / p.min())
    term1 = math.sqrt(d * K * rho**2 * math.log(n * K * K / delta) ** 2 / n)
    term2 = math.sqrt(d * K * math.log(K * K / delta) / (n * float(p.min())))
    rate = math.sqrt(math.log(d / delta)) * (term1 + term2)
    return RateBound(
        theorem="MoR Thm 3.1",
        mark="[2nd]",
        formula=(
            "sqrt(log(d/delta)) (sqrt(d K rho^2 log^2(n K^2/delta)/n) "
            "+ sqrt(d K log(K^2/delta)/(n pi_min)))"
        ),
        rate=rate,
        constant=C,
        constant_status=UNKNOWN_CONSTANT,
        probability=1.0 - 9.0 * delta,
        exponent={"n": -0.5, "d": 0.5},
    )


def theorem_3_1_layers(n: int, d: int, T: int, *, C: float = 1.0) -> LayerCount:
    """Depth of the Theorem 3.1 transformer: ``L = O(T log(n/d))`` with <= 4 heads per layer [2nd].

    Whether T counts inner gradient steps or outer EM iterations is ambiguous (``mor.md`` §4.3).
    Requires n > d (log(n/d) > 0).
    """
    n = check_int(n, "n", minimum=2)
    d = check_int(d, "d", minimum=1)
    T = check_int(T, "T", minimum=1)
    C = check_positive(C, "C")
    if n <= d:
        raise ParameterError(f"n must be > d for L = O(T log(n/d)), got n={n}, d={d}")
    return LayerCount(
        "MoR Thm 3.1", "[2nd]", "T log(n/d)", T * math.log(n / d), C, UNKNOWN_CONSTANT
    )


# --------------------------------------------------------------------------- two components by SNR
@dataclass(frozen=True)
class TwoMixtureRates:
    """Symmetric two-component MoR: regime, EM error rate, EM iterations and depth.

    Attributes
    ----------
    regime : {"high", "middle", "low"}
    error : RateBound
        Final error ``||beta_hat - beta*||`` (up to sign), rate form.
    iterations : LayerCount
        EM iterations to reach that error (rate form).
    layers : LayerCount
        Transformer depth (v1 review: ``L_high = O(log(n/d))``,
        ``L_low = O(sqrt(n/d) log log(n/d))``).
    """

    regime: Regime
    error: RateBound
    iterations: LayerCount
    layers: LayerCount


def two_mixture_rates(n: int, d: int, snr: float, *, C: float = 1.0) -> TwoMixtureRates:
    """EM rates for the symmetric two-component MoR by SNR regime.

    The table is Kwon, Ho, Caramanis (AISTATS 2021) [READ abstract]; that the MoR paper's
    two-mixture theorems (3.2/3.3) inherit it is [RECON] (``mor.md`` §2.4, §4.5):

    ==========================  =========================  =========================
    regime (eta = ||beta||/sigma)  EM iterations             final error
    ==========================  =========================  =========================
    high:   eta >= C            log(n/d)                   sqrt(d/n)
    middle: (d/n)^(1/4) < eta < C  eta^-2 log(n/d)         eta^-1 sqrt(d/n)
    low:    eta <= (d/n)^(1/4)  sqrt(n/d)                  (d/n)^(1/4)
    ==========================  =========================  =========================

    Transformer depth (v1 review [READ reviews]): ``O(log(n/d))`` high, ``O(sqrt(n/d) log log(n/d))`` low;
    the middle regime multiplies the high-SNR count by ``eta^-2`` [RECON].
    Requires n > d.
    """
    n = check_int(n, "n", minimum=2)
    d = check_int(d, "d", minimum=1)
    snr = check_positive(snr, "snr")
    C = check_positive(C, "C")
    if n <= d:
        raise ParameterError(f"n must be > d, got n={n}, d={d}")
    ratio = d / n
    log_nd = math.log(n / d)
    loglog = math.log(max(log_nd, math.e))  # log log(n/d), floored at 1 for n/d < e^e
    if snr >= C:
        regime: Regime = "high"
        err, err_f, err_exp = math.sqrt(ratio), "sqrt(d/n)", {"n": -0.5, "d": 0.5}
        it, it_f = log_nd, "log(n/d)"
        lay, lay_f = log_nd, "log(n/d)"
    elif snr > ratio**0.25:
        regime = "middle"
        err, err_f, err_exp = math.sqrt(ratio) / snr, "eta^-1 sqrt(d/n)", {"n": -0.5, "d": 0.5}
        it, it_f = log_nd / snr**2, "eta^-2 log(n/d)"
        lay, lay_f = log_nd / snr**2, "eta^-2 log(n/d)"
    else:
        regime = "low"
        err, err_f, err_exp = ratio**0.25, "(d/n)^(1/4)", {"n": -0.25, "d": 0.25}
        it, it_f = math.sqrt(n / d), "sqrt(n/d)"
        lay, lay_f = math.sqrt(n / d) * loglog, "sqrt(n/d) log log(n/d)"
    theorem = f"MoR two-mixture, {regime} SNR"
    return TwoMixtureRates(
        regime=regime,
        error=RateBound(
            theorem,
            "[READ Kwon-Ho-Caramanis abstract; RECON as MoR Thm 3.2/3.3]",
            err_f,
            err,
            1.0,
            UNKNOWN_CONSTANT,
            None,
            err_exp,
        ),
        iterations=LayerCount(
            theorem, "[READ Kwon-Ho-Caramanis abstract]", it_f, it, 1.0, UNKNOWN_CONSTANT
        ),
        layers=LayerCount(
            theorem, "[READ reviews of v1; RECON middle]", lay_f, lay, 1.0, UNKNOWN_CONSTANT
        ),
    )


# --------------------------------------------------------------------------- generalization
def generalization_bound(
    L: int,
    B: int,
    *,
    M: int = 4,
    D: int,
    D_mlp: int = 0,
    B_theta: float = 1.0,
    R: float = 1.0,
    B_y: float = 1.0,
    xi: float = 0.05,
    C: float = 1.0,
) -> RateBound:
    """Excess ICL risk of the ERM transformer, MoR Theorems 4.1/4.2 as ``O(L / sqrt(B))`` [RECON].

    The paper's exact statements are [NOT FOUND]; the abstracts [READ] give ``O(L/sqrt(B))`` for
    two mixtures. This is Bai et al. Thm 20 [READ-Bai text; displayed bound RECON, recalled]:
    with probability >= 1 - xi,

        L_icl(theta_hat) <= inf_theta L_icl(theta)
                           + C B_y^2 sqrt( (L^2 (M D^2 + D D_mlp) iota + log(1/xi)) / B ),
        iota = log(2 + max{B_theta, R, B_y}).

    Attention-only (D_mlp = 0) with M <= 4 heads and D = O(d) gives ``O(L / sqrt(B))``.

    Parameters
    ----------
    L : layers (>= 1); B : training prompts (>= 1); M : heads per layer; D : embedding size;
    D_mlp : MLP width (0: attention only); B_theta : weight-norm ball; R, B_y : clipping radii;
    xi : failure probability in (0, 1); C : the unknown constant.
    """
    L = check_int(L, "L", minimum=1)
    B = check_int(B, "B", minimum=1)
    M = check_int(M, "M", minimum=1)
    D = check_int(D, "D", minimum=1)
    D_mlp = check_int(D_mlp, "D_mlp", minimum=0)
    B_theta = check_positive(B_theta, "B_theta")
    R = check_positive(R, "R")
    B_y = check_positive(B_y, "B_y")
    xi = check_real(xi, "xi", minimum=0.0, maximum=1.0, strict_minimum=True)
    if xi >= 1.0:
        raise ParameterError(f"xi must be < 1, got {xi}")
    C = check_positive(C, "C")
    iota = math.log(2.0 + max(B_theta, R, B_y))
    rate = B_y**2 * math.sqrt((L * L * (M * D * D + D * D_mlp) * iota + math.log(1.0 / xi)) / B)
    return RateBound(
        theorem="MoR Thm 4.1/4.2 (via Bai Thm 20)",
        mark="[RECON]",
        formula="B_y^2 sqrt((L^2 (M D^2 + D D') iota + log(1/xi)) / B)  =  O(L / sqrt(B))",
        rate=rate,
        constant=C,
        constant_status=UNKNOWN_CONSTANT,
        probability=1.0 - xi,
        exponent={"B": -0.5, "L": 1.0},
    )


# --------------------------------------------------------------------------- LSA gradient flow
def _spd(Lambda: np.ndarray | Sequence[Sequence[float]], name: str = "Lambda") -> np.ndarray:
    lam = np.asarray(Lambda, dtype=np.float64)
    if lam.ndim != 2 or lam.shape[0] != lam.shape[1] or lam.shape[0] < 1:
        raise ParameterError(f"{name} must be a square (d, d) matrix, got shape {lam.shape}")
    if not np.all(np.isfinite(lam)):
        raise ParameterError(f"{name} must be finite")
    if not np.allclose(lam, lam.T, rtol=0, atol=1e-12 * max(1.0, float(np.abs(lam).max()))):
        raise ParameterError(f"{name} must be symmetric")
    if float(np.linalg.eigvalsh(lam).min()) <= 0:
        raise ParameterError(f"{name} must be positive definite")
    return lam


def lsa_gamma(Lambda: np.ndarray | Sequence[Sequence[float]], N: int) -> np.ndarray:
    """``Gamma = (1 + 1/N) Lambda + tr(Lambda)/N I_d`` (ZFB §5 [READ-2nd, re-derived])."""
    lam = _spd(Lambda)
    N = check_int(N, "N", minimum=1)
    d = lam.shape[0]
    return (1.0 + 1.0 / N) * lam + np.trace(lam) / N * np.eye(d)


def lsa_convergence_condition(
    s: float, Lambda: np.ndarray | Sequence[Sequence[float]], N: int
) -> ConditionReport:
    """Initialisation-scale condition of ZFB Theorem 4.1 [READ-2nd]: ``s^2 ||Gamma||_op sqrt(d) < 2``.

    ``s`` is the scale of the structured initialisation (ZFB Assumption 3.3:
    ``W^PV(0) = s diag(0_d, 1)``, ``W^KQ(0) = s diag(Theta Theta^T, 0)``). For MoR data the
    analogous condition is [RECON] (``mor.md`` §6.5).
    """
    s = check_real(s, "s", minimum=0.0, strict_minimum=True)
    gam = lsa_gamma(Lambda, N)
    d = gam.shape[0]
    lhs = s * s * float(np.linalg.norm(gam, 2)) * math.sqrt(d)
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
    loss_star : float ``1/2 (tr Lambda - tr(Gamma^-1 Lambda^2))`` [DERIVED in dynamics.md B.7]
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
    lam = _spd(Lambda)
    gam = lsa_gamma(lam, N)
    d = lam.shape[0]
    ginv = np.linalg.inv(gam)
    c = float(np.trace(ginv @ ginv)) ** 0.25
    W_KQ = np.zeros((d + 1, d + 1))
    W_KQ[:d, :d] = ginv / c
    W_PV = np.zeros((d + 1, d + 1))
    W_PV[d, d] = c
    loss = 0.5 * (float(np.trace(lam)) - float(np.trace(ginv @ lam @ lam)))
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
    """Optimum of the LSA population loss for MoR prompts (``mor.md`` §6.3-6.5 [RECON, MC-checked]).

    ``A = (1/N)(2 Lambda M2 Lambda + (tr(Lambda M2) + sigma^2) Lambda) + (1 - 1/N) Lambda M1 Lambda``,
    ``C = Lambda M1 Lambda``, ``L(G) = 1/2 [tr(G^T A G Lambda) - 2 tr(G^T C) + tr(Lambda M2) + sigma^2]``,
    ``G* = A^-1 Lambda M1``. ``M1 = E[beta_bar beta_bar^T]``, ``M2 = E[sum_k pi_k beta_k beta_k^T]``.
    Isotropic case (Lambda = I, beta_k ~ N(0, tau^2 I)): ``G* = g* I`` with
    ``g* = N ||pi||^2 / ((N-1)||pi||^2 + d + 2 + sigma^2/tau^2)``. Symmetric two-component MoR
    has M1 = 0, hence G* = 0.
    """
    lam = _spd(Lambda)
    d = lam.shape[0]
    m1 = np.asarray(M1, dtype=np.float64)
    m2 = np.asarray(M2, dtype=np.float64)
    for name, m in (("M1", m1), ("M2", m2)):
        if m.shape != (d, d) or not np.all(np.isfinite(m)):
            raise ParameterError(f"{name} must be a finite ({d}, {d}) matrix, got shape {m.shape}")
    sigma = check_real(sigma, "sigma", minimum=0.0)
    N = check_int(N, "N", minimum=1)
    A = (2 * lam @ m2 @ lam + (float(np.trace(lam @ m2)) + sigma**2) * lam) / N + (
        1 - 1 / N
    ) * lam @ m1 @ lam
    Cm = lam @ m1 @ lam
    G = np.linalg.solve(A, lam @ m1)
    loss = 0.5 * (
        float(np.trace(G.T @ A @ G @ lam))
        - 2 * float(np.trace(G.T @ Cm))
        + float(np.trace(lam @ m2))
        + sigma**2
    )
    return LSAMoROptimum(A, Cm, G, loss)


# --------------------------------------------------------------------------- softmax phases
@dataclass(frozen=True)
class PhaseScalings:
    """Phase-time scalings of one-layer softmax attention GD (units of eta * t) [MEASURED].

    These are this project's derivations and measurements (``dynamics.md`` A.4-A.5), **not** the
    theorems of Huang-Cheng-Liang, whose explicit phase-time bounds were not readable.

    Attributes
    ----------
    phase1 : float
        Balanced / under-represented: time for the target attention to reach 1/2, ``~ K^2``
        (measured 1.15-1.45 K^2 balanced; 2.6-3.2 K^2 for under-represented queries).
    last_phase : float
        Time to reach loss eps in the last (1/t) phase, ``~ K / eps`` (balanced,
        ``L(t) ~ K / (4 eta t)``).
    dominant : float or None
        Imbalanced dominant-feature queries, one phase: ``~ 1 / eps`` (independent of K).
    exponents : dict
        ``{"phase1_K": 2, "last_phase_loss_t": -1, "dominant_K": 0}``.
    """

    phase1: float
    last_phase: float
    dominant: float | None
    exponents: dict[str, float]
    mark: str = "[MEASURED: this project's derivation, not the paper's theorem]"


def softmax_phase_scalings(K: int, eps: float, *, p_dominant: float | None = None) -> PhaseScalings:
    """Leading-order phase times in units of ``eta * t`` [MEASURED] (see :class:`PhaseScalings`).

    Balanced: ``T1 ~ K^2``, ``T_eps ~ T1 + K/(4 eps)``. Imbalanced with dominant probability
    ``p_dominant``: dominant queries ``(1 + r)/(4 p_dominant eps)`` with r <= 1 (bounded here by
    ``1/(2 p_dominant eps)``); under-represented queries ``~ 3 K^2`` to reach attention 1/2.
    """
    K = check_int(K, "K", minimum=2)
    eps = check_real(eps, "eps", minimum=0.0, maximum=1.0, strict_minimum=True)
    exps = {"phase1_K": 2.0, "last_phase_loss_t": -1.0, "dominant_K": 0.0}
    if p_dominant is None:
        t1 = 1.3 * K * K
        return PhaseScalings(t1, t1 + K / (4 * eps), None, exps)
    p = check_real(p_dominant, "p_dominant", minimum=0.0, maximum=1.0, strict_minimum=True)
    if p >= 1.0:
        raise ParameterError(f"p_dominant must be < 1, got {p}")
    t1 = 3.0 * K * K
    pk = (1 - p) / (K - 1)
    return PhaseScalings(t1, t1 + 1.0 / (2 * pk * eps), 1.0 / (2 * p * eps), exps)
