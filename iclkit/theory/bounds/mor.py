"""Bounds of the MoR paper (Jin, Balasubramanian, Lai; arXiv 2410.14183), in its symbols.

- Theorem 3.1 [2nd]: :func:`theorem_3_1_conditions`, :func:`theorem_3_1_error_bound`,
  :func:`theorem_3_1_layers`.
- Two-component rates by SNR regime (Kwon-Ho-Caramanis table [READ abstract]; as the paper's
  Theorems 3.2/3.3 [RECON]): :func:`two_mixture_rates`.
- Generalization, Theorems 4.1/4.2 as ``O(L / sqrt(B))`` via Bai et al. Thm 20 [RECON]:
  :func:`generalization_bound`.

Provenance marks: see :mod:`iclkit.theory.bounds`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..validation import (
    ParameterError,
    check_finite_result,
    check_int,
    check_positive,
    check_probability_vector,
    check_real,
    no_overflow,
)
from .results import UNKNOWN_CONSTANT, Condition, ConditionReport, LayerCount, RateBound

__all__ = [
    "THEOREM_3_1_MAX_HEADS",
    "TwoMixtureRates",
    "generalization_bound",
    "gradient_em_iterations_slope",
    "theorem_3_1_conditions",
    "theorem_3_1_error_bound",
    "theorem_3_1_layers",
    "two_mixture_rates",
]

Regime = Literal["high", "middle", "low"]

#: Heads per attention layer that MoR Theorem 3.1's transformer may use, ``M^(l) <= 4`` [2nd].
THEOREM_3_1_MAX_HEADS = 4


def _delta(delta: float) -> float:
    # The bound holds with probability 1 - 9 delta, which is a probability only for delta < 1/9.
    return check_real(delta, "delta", minimum=0.0, maximum=1.0 / 9.0, strict_minimum=True)


def _pi(pi: Sequence[float] | np.ndarray, K: int) -> np.ndarray:
    arr = np.asarray(check_probability_vector(pi, "pi", length=K), dtype=np.float64)
    if arr.min() <= 0:
        raise ParameterError(f"pi must have all entries > 0 (pi_min > 0), got {arr.tolist()}")
    return arr


def _theorem_3_1_arguments(
    n: int, d: int, K: int, delta: float, pi: Sequence[float] | np.ndarray, C: float
) -> tuple[int, int, int, float, np.ndarray, float]:
    """The validated arguments shared by the Theorem 3.1 statements: ``(n, d, K, delta, pi, C)``."""
    n = check_int(n, "n", minimum=1)
    d = check_int(d, "d", minimum=1)
    K = check_int(K, "K", minimum=1)
    return n, d, K, _delta(delta), _pi(pi, K), check_positive(C, "C")


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
    ``eta = R_min / sigma`` (``docs/provenance.md`` §7 [2nd]; the SNR definition is [RECON]).
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
    n, d, K, delta, p, C = _theorem_3_1_arguments(n, d, K, delta, pi, C)
    snr = check_positive(snr, "snr")
    args = {"n": n, "d": d, "K": K, "delta": delta, "pi": p, "snr": snr, "C": C}
    with no_overflow("theorem_3_1_conditions", args):
        rho = float(p.max() / p.min())
        lk = math.log(K * K / delta)
        req_d = C * d * math.log(d * K * K / delta) ** 2
        req_k = C * (K * K / delta) ** (1.0 / 3.0)
        req_pi = C * d / float(p.min()) * lk
        kr = K * rho
        req_snr = C * kr * math.log(kr) if kr > 1 else 0.0
        values = (float(n), req_d, req_k, req_pi, req_snr)
    check_finite_result(values, "theorem_3_1_conditions", args)
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

    (``docs/provenance.md`` §7, a close transcription of a third-party note [2nd]. The note also has a
    garbled fragment "Delta_y <= ||w*_max||_2 / sqrt(n)": the bound may be relative to
    ``||w*_max||``; checks therefore fit C on data with ``||beta_k|| = 1``.)
    The constant is unknown (O(.) in the paper).
    """
    n, d, K, delta, p, C = _theorem_3_1_arguments(n, d, K, delta, pi, C)
    args = {"n": n, "d": d, "K": K, "delta": delta, "pi": p, "C": C}
    with no_overflow("theorem_3_1_error_bound", args):
        rho = float(p.max() / p.min())
        term1 = math.sqrt(d * K * rho**2 * math.log(n * K * K / delta) ** 2 / n)
        term2 = math.sqrt(d * K * math.log(K * K / delta) / (n * float(p.min())))
        rate = math.sqrt(math.log(d / delta)) * (term1 + term2)
    check_finite_result(rate, "theorem_3_1_error_bound", args)
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

    Whether T counts inner gradient steps or outer EM iterations is ambiguous (``docs/provenance.md`` §7).
    Requires n > d (log(n/d) > 0).
    """
    n = check_int(n, "n", minimum=2)
    d = check_int(d, "d", minimum=1)
    T = check_int(T, "T", minimum=1)
    C = check_positive(C, "C")
    if n <= d:
        raise ParameterError(f"n must be > d for L = O(T log(n/d)), got n={n}, d={d}")
    args = {"n": n, "d": d, "T": T, "C": C}
    with no_overflow("theorem_3_1_layers", args):
        layers = T * math.log(n / d)
    check_finite_result(layers, "theorem_3_1_layers", args)
    return LayerCount("MoR Thm 3.1", "[2nd]", "T log(n/d)", layers, C, UNKNOWN_CONSTANT)


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
    two-mixture theorems (3.2/3.3) inherit it is [RECON] (``docs/provenance.md`` §5):

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
    args = {"n": n, "d": d, "snr": snr, "C": C}
    with no_overflow("two_mixture_rates", args):
        return _two_mixture_rates(n, d, snr, C, args)


def _two_mixture_rates(
    n: int, d: int, snr: float, C: float, args: Mapping[str, object]
) -> TwoMixtureRates:
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
    check_finite_result((err, it, lay), "two_mixture_rates", args)
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
    xi = check_real(xi, "xi", minimum=0.0, maximum=1.0, strict_minimum=True, strict_maximum=True)
    C = check_positive(C, "C")
    args = {"L": L, "B": B, "M": M, "D": D, "D_mlp": D_mlp, "B_theta": B_theta, "R": R}
    args |= {"B_y": B_y, "xi": xi, "C": C}
    with no_overflow("generalization_bound", args):
        iota = math.log(2.0 + max(B_theta, R, B_y))
        inner = (L * L * (M * D * D + D * D_mlp) * iota + math.log(1.0 / xi)) / B
        rate = B_y**2 * math.sqrt(inner)
    check_finite_result(rate, "generalization_bound", args)
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


def gradient_em_iterations_slope(alpha: float) -> float:
    """Slope of the iterations gradient EM needs vs ``log(n/d)`` at step ``alpha`` [RECON].

    This project's reading of the ``log(n/d)`` factor of MoR Theorem 3.1's depth and of the
    two-mixture iteration count (``docs/provenance.md`` §5): near the high-SNR fixed point the
    error contracts by about ``kappa = 1 - alpha`` per iteration (exact EM contracts by
    ``O(eta^-2)``), so reaching a fixed multiple of the statistical floor ``sqrt(d/n)`` from a
    fixed start takes ``t*(n) ~ log(rho / sqrt(d/n)) / log(1/kappa)``, whose slope in
    ``log(n/d)`` is ``1 / (2 log(1/(1 - alpha)))``.

    Parameters
    ----------
    alpha : float
        Step size, ``0 < alpha < 1`` (then ``0 < kappa < 1``).
    """
    alpha = check_real(
        alpha, "alpha", minimum=0.0, maximum=1.0, strict_minimum=True, strict_maximum=True
    )
    return 1.0 / (2.0 * math.log(1.0 / (1.0 - alpha)))
