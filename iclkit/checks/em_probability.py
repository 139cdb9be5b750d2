"""Check of MoR Theorem 3.1's probability statement, on gradient EM and on the transformer
(split from :mod:`iclkit.checks.em` by topic; registered right after it, so it keeps its place in
the report).

Theorem 3.1 [2nd]: with probability ``>= 1 - 9 delta``,
``Delta_y = |y_hat_{n+1} - y_orc_{n+1}| <= C rate(n, d, K, delta, pi)`` with the rate of
:func:`iclkit.theory.bounds.theorem_3_1_error_bound` and an unknown constant C. Three things
are tested, with C fixed before any tested prompt is seen (calibration prompts at an n that is
not tested, from their own seed stream):

1. the held-out fraction of prompts with ``Delta_y <= C rate(n)`` at every tested n is at least
   ``1 - 9 delta`` (3 standard errors of the fraction, C's calibration noise included);
2. the ``(1 - 9 delta)``-quantile ``q(n)`` of ``Delta_y / rate(n)`` does not trend with n: the
   log-log slope of ``q(n)`` over the tested n (bootstrap interval over the prompts) lies in
   :data:`QUANTILE_SLOPE_BAND` = [-0.2, 0.1];
3. the same held-out fraction for the constructed transformer itself at one tested n, whose
   E-step approximation floor (its distance from gradient EM on the same prompts) is measured
   and must lie below the statistical error.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from iclkit.constructions.algorithms import gradient_em
from iclkit.constructions.gradient_em_transformer import (
    Architecture,
    build_gradient_em_transformer,
)
from iclkit.theory.bounds import theorem_3_1_conditions, theorem_3_1_error_bound
from iclkit.theory.mor import MoRBatch, MoRConfig, sample_mor
from iclkit.theory.rng import derive_seed
from iclkit.theory.validation import ParameterError

from .em import PI3
from .inits import LOCAL_RHO, local_init
from .registry import CheckContext, Outcome, register

__all__ = [
    "QUANTILE_SLOPE_BAND",
    "THM31_ALPHA",
    "THM31_FLOOR_RATIO_MAX",
    "THM31_RELU_TERMS",
    "quantile_slope",
]

#: Band for the log-log slope of q(n) = the (1 - 9 delta)-quantile of Delta_y / rate(n) over the
#: tested n. The theorem's C is fixed, so q(n) must not grow; a rate too fast by n^(1/4) gives a
#: slope of 0.25 plus the drift of the rate's own log factors, which lower q(n) slowly when the
#: error is exactly parametric (about -0.06 on the quick grid, reported as
#: ``parametric_slope``), so >= 0.18; a rate too slow by n^(1/4) gives about -0.31. The slope's
#: bootstrap s.e. is ~0.04-0.05 (150 prompts per n over 1.2 decades): the parametric case lies
#: >= 3 s.e. inside either edge, the n^(1/4) errors ~2 s.e. outside.
QUANTILE_SLOPE_BAND = (-0.2, 0.1)
#: Step size of gradient EM (one gradient step per M-step, T_inner = 1, as in the transformer):
#: S_k = (1/n) sum_i gamma_ik x_i x_i^T has eigenvalues near pi_k, at most ~0.67 for pi_k = 0.5
#: at n = 400, so alpha lambda_max < 2 (the step converges) with the fastest contraction
#: ~ 1 - 2 lambda_min for the smallest component.
THM31_ALPHA = 2.0
#: ReLU terms M per nonlinearity of the transformer's E-step (64 layers per gradient-EM
#: iteration): near the converged estimate the (1 - 9 delta)-quantile of the transformer's
#: distance from gradient EM's prediction is ~1e-4 at n = 2000, ~0.03 of the statistical
#: Delta_y there; the gap shrinks ~M^-2 (measured mean gaps 1e-3, 3e-4, 7e-5 at M = 8, 16, 32,
#: n = 1000), and M = 4 brings it to ~0.4 of the statistical error.
THM31_RELU_TERMS = 32
#: Blocks of the transformer run here: attention then a per-token ReLU MLP, so a gradient-EM
#: iteration costs a fixed number of layers whatever M (9 for K = 3, T_inner = 1) and the
#: whole schedule from the local start fits the check's budget; it computes the same surrogate
#: gradient EM as the attention-only design (``docs/construction.md``).
THM31_ARCHITECTURE: Architecture = "attention-mlp"
#: Largest allowed ratio of the E-step floor to the statistical error at the tested level: the
#: (1 - 9 delta)-quantiles of |y_hat_tf - y_hat_gem| and of Delta_y of gradient EM. Below it the
#: transformer's quantile of Delta_y is gradient EM's within 25%, so its fraction tests the
#: statistical error, not the approximation (the premise that M suffices).
THM31_FLOOR_RATIO_MAX = 0.25
#: Bootstrap resamples of the prompts for the quantiles' and the slope's intervals.
_N_BOOT = 400


def quantile_slope(
    ratios: list[np.ndarray], ns: list[int], level: float, seed: int, n_boot: int = _N_BOOT
) -> tuple[float, tuple[float, float], list[float], list[tuple[float, float]]]:
    """Log-log slope of the ``level``-quantile of ``ratios[i]`` (B_i,) against ``ns[i]``.

    Returns the least-squares slope of ``log q(n)`` on ``log n``, its 95% bootstrap interval
    (the prompts of every n resampled independently), the quantiles ``q(n)`` and their own 95%
    bootstrap intervals.

    Raises
    ------
    ParameterError
        Fewer than two n, mismatched lengths, or a non-positive quantile.
    """
    if len(ns) < 2 or len(ratios) != len(ns):
        raise ParameterError(f"ns must hold >= 2 values, one per ratio array, got {ns}")
    x = np.log(np.asarray(ns, dtype=np.float64))
    q = np.array([np.quantile(r, level) for r in ratios])
    if np.any(q <= 0):
        raise ParameterError("ratios: the quantile must be positive at every n")
    slope = float(np.polyfit(x, np.log(q), 1)[0])
    rng = np.random.default_rng(seed)
    boot_q = np.array(
        [[np.quantile(r[rng.integers(0, r.size, r.size)], level) for r in ratios]
         for _ in range(n_boot)]
    )  # fmt: skip
    boot_q = np.maximum(boot_q, np.finfo(np.float64).tiny)
    boot_slope = np.polyfit(x, np.log(boot_q).T, 1)[0]
    ci = (float(np.quantile(boot_slope, 0.025)), float(np.quantile(boot_slope, 0.975)))
    q_ci = [
        (float(np.quantile(boot_q[:, i], 0.025)), float(np.quantile(boot_q[:, i], 0.975)))
        for i in range(len(ns))
    ]
    return slope, ci, q.tolist(), q_ci


def _y_hat(batch: MoRBatch, betas: torch.Tensor) -> torch.Tensor:
    """Prediction ``<x_query, sum_k pi_k beta_k>`` (B,) with the known pi."""
    return torch.einsum("bd,bd->b", batch.x_query, torch.einsum("bk,bkd->bd", batch.pi, betas))


@register(
    "em.thm31_probability",
    theorem="MoR Thm 3.1: Delta_y <= C rate(n, d, K, delta, pi) w.p. >= 1 - 9 delta, on gradient "
    "EM and on the transformer",
    mark="[2nd]",
)
def thm31_probability(ctx: CheckContext) -> Outcome:
    """K = 3, pi = (.5,.3,.2) known (as in the transformer, whose weights contain log pi),
    eta = 20, d = 5, local start at relative distance 0.1; gradient EM with one gradient step of
    size alpha = 2 per M-step for T_outer iterations; Delta_y = |y_hat - y_orc| at the query.
    C is the (1 - 9 delta)-quantile of Delta_y / rate on calibration prompts at calibration_n
    only (their own seed stream). On fresh prompts at every tested n: the fraction with
    Delta_y <= C rate must be >= 1 - 9 delta - 3 s.e. (binomial, with the calibration's own
    coverage noise over calibration_prompts added), and the log-log slope of the
    quantile of Delta_y / rate must lie in QUANTILE_SLOPE_BAND = [-0.2, 0.1] (bootstrap CI not
    wholly outside). At transformer_n (one of tested_n) the transformer built with
    M = relu_terms runs transformer_iterations (default all T_outer) of the gradient-EM iterations, ending where gradient EM ends, on the first
    transformer_prompts prompts, from gradient EM's iterate before them: its fraction is tested
    the same way, and its E-step floor (the quantile of |y_hat_tf - y_hat_gem|) must be
    <= 0.25 x gradient EM's quantile of Delta_y.
    params: snr, delta, calibration_n, calibration_prompts, tested_n, prompts, T_outer,
    T_inner, alpha, relu_terms, transformer_n, transformer_prompts, transformer_iterations,
    rate_exponent_shift (multiplies the theory's rate by n^shift: a mis-stated rate, fault
    injection)."""
    d, K, snr, delta = 5, 3, ctx.param("snr", 20.0), ctx.param("delta", 0.01)
    cal_n = ctx.param("calibration_n", 400)
    grid = ctx.pick([500, 1000, 2000, 4000, 8000], [500, 1000, 2000, 4000, 8000, 16000])
    tested = list(ctx.param("tested_n", grid))
    B = ctx.param("prompts", ctx.pick(150, 1000))
    B_cal = ctx.param("calibration_prompts", 4 * B)
    T_outer, T_inner = ctx.param("T_outer", 15), ctx.param("T_inner", 1)
    alpha = ctx.param("alpha", THM31_ALPHA)
    shift = ctx.param("rate_exponent_shift", 0.0)
    tf_n = ctx.param("transformer_n", ctx.pick(2000, 4000))
    tf_B = ctx.param("transformer_prompts", ctx.pick(100, 200))
    tf_k = ctx.param("transformer_iterations", T_outer)
    M = ctx.param("relu_terms", THM31_RELU_TERMS)
    if cal_n in tested:
        raise ParameterError(f"calibration_n = {cal_n} must not be one of tested_n = {tested}")
    if tf_n not in tested or not 0 < tf_B <= B or not 0 < tf_k <= T_outer:
        raise ParameterError(
            "transformer_n must be one of tested_n, 0 < transformer_prompts <= prompts and "
            f"0 < transformer_iterations <= T_outer, got {tf_n}, {tf_B}, {tf_k}"
        )
    level = 1.0 - 9.0 * delta

    def run(n: int, key: str, prompts: int) -> tuple[MoRBatch, torch.Tensor, torch.Tensor]:
        """Prompts, gradient EM's iterate after T_outer - tf_k iterations, and after T_outer."""
        cfg = MoRConfig(d=d, K=K, n=n, snr=snr, pi=PI3, prior="sphere")
        batch = sample_mor(cfg, prompts, seed=derive_seed(ctx.seed, key, n))
        betas = local_init(batch.betas, LOCAL_RHO, derive_seed(ctx.seed, key, "init", n))
        iterates = [betas]
        for T in (T_outer - tf_k, tf_k):
            betas = gradient_em(
                batch.X_train, batch.y_train, betas, batch.sigma, batch.pi,
                T_outer=T, T_inner=T_inner, alpha=alpha, estimate_pi=False,
            ).betas  # fmt: skip
            iterates.append(betas)
        return batch, iterates[1], iterates[2]

    def rate(n: int) -> float:
        return theorem_3_1_error_bound(n, d, K, delta, PI3).rate * n**shift

    cal_batch, _, cal_final = run(cal_n, "cal", B_cal)
    C_fit = float(np.quantile(_dy(cal_batch, cal_final) / rate(cal_n), level))
    # the fraction's s.e. includes C's own sampling noise: the calibration quantile's coverage
    # has variance level (1 - level) / B_cal
    se = math.sqrt(level * (1 - level) * (1 / B + 1 / B_cal))
    se_tf = math.sqrt(level * (1 - level) * (1 / tf_B + 1 / B_cal))
    floor, floor_tf = level - 3 * se, level - 3 * se_tf
    ratios, fracs = [], []
    tf_batch, tf_start, tf_alg = None, torch.empty(0), torch.empty(0)
    for n in tested:
        batch, start, final = run(n, "test", B)
        dy = _dy(batch, final)
        ratios.append(dy / rate(n))
        fracs.append(float(np.mean(dy <= C_fit * rate(n))))
        if n == tf_n:
            tf_batch, tf_start, tf_alg = batch.select(slice(0, tf_B)), start[:tf_B], final[:tf_B]
    assert tf_batch is not None
    # sigma = R_min / eta differs per prompt, the weights contain 1 / sigma^2: every prompt is
    # rescaled (y and the start by c_b = sigma_0 / sigma_b) to one sigma_0, and the prediction
    # scaled back; gradient EM is exactly equivariant under this rescaling, and any deviation
    # of the construction from it shows in the measured E-step floor below
    scale = tf_batch.sigma.median() / tf_batch.sigma
    tf = build_gradient_em_transformer(
        d, K, tf_n, float(tf_batch.sigma.median()), tf_k, T_inner, alpha, M,
        symmetric=False, pi=PI3, architecture=THM31_ARCHITECTURE,
    )  # fmt: skip
    _, y_tf = tf(
        tf_batch.X_train, scale[:, None] * tf_batch.y_train, scale[:, None, None] * tf_start,
        tf_batch.x_query,
    )  # fmt: skip
    y_tf = y_tf / scale
    dy_tf = (y_tf - tf_batch.y_oracle).abs().numpy()
    frac_tf = float(np.mean(dy_tf <= C_fit * rate(tf_n)))
    estep_gap = (y_tf - _y_hat(tf_batch, tf_alg)).abs().numpy()
    floor_ratio = float(np.quantile(estep_gap, level) / np.quantile(_dy(tf_batch, tf_alg), level))

    slope, ci, q, q_ci = quantile_slope(ratios, tested, level, ctx.stream_seed)
    low, high = QUANTILE_SLOPE_BAND
    ci_outside = ci[1] < low or ci[0] > high
    slope_ok = low <= slope <= high and not ci_outside
    x = np.log(np.asarray(tested, dtype=np.float64))
    parametric = -0.5 - float(np.polyfit(x, np.log([rate(n) for n in tested]), 1)[0])
    fracs_ok = min(fracs) >= floor and frac_tf >= floor_tf
    conds = [theorem_3_1_conditions(n, d, K, delta, PI3, snr) for n in tested]
    return Outcome(
        fracs_ok and slope_ok and floor_ratio <= THM31_FLOOR_RATIO_MAX,
        round(min(*fracs, frac_tf), 4),
        round(level, 4),
        f"held-out fraction >= 1 - 9 delta - 3 s.e. at every tested n (gradient EM: {floor:.3f}, "
        f"transformer: {floor_tf:.3f}); quantile slope in [{low}, {high}], 95% CI not wholly "
        f"outside; E-step floor / statistical error <= {THM31_FLOOR_RATIO_MAX}: binomial "
        f"proportions over {B} (transformer {tf_B}) independent prompts, the s.e. including C's "
        f"calibration on {B_cal} prompts at n = {cal_n}, which is not tested; a rate too fast "
        f"(slow) by n^(1/4) gives a slope >= 0.18 (~ -0.31), an exactly parametric error the "
        f"rate's log-factor drift {parametric:+.3f}",
        {
            "delta": delta,
            "C_fitted": C_fit,
            "constant_status": "fitted here at calibration_n (the paper's C is O(.), unknown)",
            "C_meaning": f"C = {C_fit:.2g}: at these n the theorem's rate form, with its "
            f"log factors and constants set to 1, exceeds the measured (1 - 9 delta)-quantile "
            f"of Delta_y by a factor ~{1 / C_fit:.0f}; the theorem only needs some C, "
            "'sufficiently large', so a C far below 1 says the bound is loose by that factor "
            "here, not that it fails",
            "calibration_n": cal_n,
            "calibration_prompts": B_cal,
            "tested_n": tested,
            "fraction_holding": fracs,
            "fraction_floor": floor,
            "quantile_ratio": q,
            "quantile_ratio_ci": [list(c) for c in q_ci],
            "quantile_slope": {"slope": slope, "ci": list(ci), "n_boot": _N_BOOT},
            "band": [low, high],
            "ci_outside_band": ci_outside,
            "parametric_slope": parametric,
            "rate_exponent_shift": shift,
            "transformer": {
                "n": tf_n,
                "prompts": tf_B,
                "iterations_run": tf_k,
                "start": f"gradient EM's iterate after {T_outer - tf_k} of {T_outer} iterations",
                "relu_terms": M,
                "layers": tf.report.L,
                "fraction_holding": frac_tf,
                "fraction_floor": floor_tf,
                "estep_floor_quantile": float(np.quantile(estep_gap, level)),
                "floor_over_statistical": floor_ratio,
            },
            "schedule": {"T_outer": T_outer, "T_inner": T_inner, "alpha": alpha},
            "conditions_C1": [c.message for c in conds],
            "conditions_C1_hold": [c.holds for c in conds],
        },
        resolution=(level - floor) / level,
        resolution_note=f"3 s.e. ({B} tested, {B_cal} calibration prompts) below the level "
        f"1 - 9 delta, relative to it: a probability of holding lower by more than this FAILs; "
        f"the quantile's trend: a trend beyond n^{high} or n^{low} FAILs (slope CI half-width "
        f"{(ci[1] - ci[0]) / 2:.3f})",
    )


def _dy(batch: MoRBatch, betas: torch.Tensor) -> np.ndarray:
    """``Delta_y = |y_hat - y_orc|`` (B,) of the estimates ``betas`` (B, K, d)."""
    return (_y_hat(batch, betas) - batch.y_oracle).abs().numpy()
