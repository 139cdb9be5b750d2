"""The depth claim of MoR Theorem 3.1 measured on the constructed transformer itself.

MoR Theorem 3.1 [2nd]: the attention-only transformer that runs gradient EM has
``L = O(T log(n/d))`` layers. In this project's construction (``docs/construction.md``, [RECON])
one gradient-EM iteration costs ``layers_per_iteration(M) = ceil((M + 2) / 4) + T_inner`` layers
(symmetric K = 2), linear in the ReLU terms M of the E-step, so the depth the transformer needs
is ``L(n) = T(n) x layers_per_iteration(M) + 1`` (the ``+ 1`` is the read-out), and the claim's
``log(n/d)`` lives in ``T(n)``, the outer iterations needed. ``construction.depth_vs_log_n``
builds the transformer at a fixed M, reads its estimate after every outer iteration from the
hidden states (:meth:`GradientEMTransformer.block_iterates`) and measures ``T(n)`` as the first
(interpolated) outer iteration at which the transformer's RMS error is within a factor
:data:`DEPTH_FACTOR` of its own converged error; ``T(n)`` against ``log(n/d)`` is compared with
the slope :func:`iclkit.theory.bounds.gradient_em_iterations_slope` predicts [RECON].
"""

from __future__ import annotations

import math

import numpy as np
import torch

from iclkit.constructions.algorithms import symmetric_gradient_em_step
from iclkit.constructions.gradient_em_transformer import (
    build_gradient_em_transformer,
    layer_count,
)
from iclkit.theory.bounds import gradient_em_iterations_slope
from iclkit.theory.metrics import sign_invariant_error
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.rng import derive_seed
from iclkit.theory.validation import ParameterError

from .inits import HIGH_SNR, local_init
from .plots import line_plot
from .registry import CheckContext, Outcome, register

__all__ = [
    "DEPTH_ALPHA",
    "DEPTH_BAND",
    "DEPTH_FACTOR",
    "DEPTH_RELU_TERMS",
    "DEPTH_RHO",
    "FLOOR_RATIO_MAX",
    "iterations_to_reach",
    "layers_per_iteration",
]

#: Step size of the transformer's M-step in ``construction.depth_vs_log_n``: the contraction
#: factor 1 - alpha = 0.7 per outer iteration gives a predicted slope of 1.40 iterations per
#: unit of log(n/d), i.e. T(n) grows by ~8 iterations over the grid (alpha = 1 converges in O(1)
#: iterations at x ~ N(0, I) and leaves T(n) no room to grow).
DEPTH_ALPHA = 0.3
#: ReLU terms M of the E-step: eps_global ~ 4e-4, so the transformer's converged estimate lies
#: within ~4e-4 of exact gradient EM's, below the statistical error (>= 2e-3 at n = 10^4, d = 4,
#: eta = 10) on the whole grid; the check measures the ratio and FAILs above FLOOR_RATIO_MAX.
DEPTH_RELU_TERMS = 128
#: Relative distance of the fixed local start (farther than the rate checks' 0.1 so the error
#: falls more than a decade before the floor at every n).
DEPTH_RHO = 0.3
#: T(n): the first outer iteration whose RMS error is within this factor of the final one.
DEPTH_FACTOR = 2.0
#: Relative half-width of the slope band (see the check's tolerance for the reason).
DEPTH_BAND = 0.2
#: Largest allowed (E-step approximation floor) / (statistical error) over the grid: the floor is
#: the RMS distance between the transformer's and exact gradient EM's converged estimates.
FLOOR_RATIO_MAX = 0.5
#: Bootstrap resamples of the prompts for the slope's interval.
_N_BOOT = 400


def layers_per_iteration(M: int, T_inner: int = 1) -> int:
    """Layers one outer gradient-EM iteration of the symmetric construction costs, read off the
    layer formula :func:`layer_count` as ``L(T_outer = 2) - L(T_outer = 1)``."""
    return layer_count(2, 2, T_inner, M, symmetric=True) - layer_count(
        2, 1, T_inner, M, symmetric=True
    )


def iterations_to_reach(curve: np.ndarray, factor: float) -> float:
    """First (fractional) iteration at which ``curve`` (T + 1,) is within ``factor`` of its last
    value; log-linear interpolation between the bracketing iterations (the integer index when
    the curve starts below the target).

    Raises
    ------
    ParameterError
        ``factor < 1`` or a curve with a non-positive entry.
    """
    if factor < 1.0:
        raise ParameterError(f"factor must be >= 1, got {factor}")
    if np.any(curve <= 0):
        raise ParameterError("curve must be positive (an RMS error)")
    target = factor * curve[-1]
    k = int(np.argmax(curve <= target))
    if k == 0:
        return 0.0
    lo, hi = math.log(curve[k - 1]), math.log(curve[k])
    return k - 1 + (lo - math.log(target)) / (lo - hi)


def _slope(x: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of ``t`` on ``x``."""
    slope, intercept = np.polyfit(x, t, 1)
    return float(slope), float(intercept)


def _run_n(
    ctx: CheckContext, n: int, d: int, B: int, T_max: int, alpha: float, M: int
) -> tuple[np.ndarray, float, float]:
    """Build and run the symmetric transformer on B prompts of length n.

    Returns (squared error per prompt and outer iteration (B, T_max + 1), the RMS distance of the
    transformer's final estimate from exact gradient EM's after T_max iterations, exact gradient
    EM's final RMS error).
    """
    cfg = MoRConfig(d=d, K=2, n=n, snr=ctx.param("snr", HIGH_SNR), symmetric=True, prior="sphere")
    batch = sample_mor(cfg, B, seed=derive_seed(ctx.seed, "depth", n, d))
    beta = batch.betas[:, 0]
    init = local_init(batch.betas[:, :1], DEPTH_RHO, derive_seed(ctx.seed, "depth-init", n, d))
    init = torch.cat([init, -init], 1)
    sigma = float(batch.sigma[0])
    tf = build_gradient_em_transformer(d, 2, n, sigma, T_max, 1, alpha, M, symmetric=True)
    its = tf.block_iterates(batch.X_train, batch.y_train, init, batch.x_query)
    ests = [init[:, 0]] + [its[t][-1][:, 0] for t in range(T_max)]
    sq = torch.stack([sign_invariant_error(b, beta) ** 2 for b in ests], 1)
    exact = init[:, 0]
    for _ in range(T_max):  # exact gradient EM (tanh E-step) at the transformer's step
        exact = symmetric_gradient_em_step(
            batch.X_train, batch.y_train, exact, batch.sigma, alpha=alpha
        )
    gap = torch.linalg.vector_norm(ests[-1] - exact, dim=-1)
    stat = sign_invariant_error(exact, beta)
    return sq.numpy(), float(gap.pow(2).mean().sqrt()), float(stat.pow(2).mean().sqrt())


@register(
    "construction.depth_vs_log_n",
    theorem=(
        "MoR Thm 3.1: depth L = O(T log(n/d)) [2nd], on the transformer: outer iterations T(n) "
        "it needs grow like log(n/d), slope 1/(2 log(1/(1 - alpha))) derived here; "
        "L(n) = T(n) x layers_per_iteration(M) + 1 reported"
    ),
    mark="[2nd] statement; T(n) reading, slope and construction [RECON]",
)
def depth_vs_log_n(ctx: CheckContext) -> Outcome:
    """Symmetric K = 2, d = 4, eta = 10, fixed M = 128, step alpha = 0.3, fixed local start at
    relative distance 0.3: the constructed transformer runs T_max outer iterations; T(n) is the
    first (interpolated) outer iteration whose RMS error over the prompts is within 2x its own
    error after T_max, read from the hidden states after every outer iteration. T(n) vs
    log(n/d) over n/d = 10..2560 is fitted by least squares (bootstrap over prompts for the
    interval) and compared with gradient_em_iterations_slope(alpha); the E-step floor (RMS
    distance from exact gradient EM) must stay below FLOOR_RATIO_MAX x the statistical error.
    params: ns, prompts, T_max, relu_terms, alpha (the step the prediction assumes),
    construction_alpha (the step the transformer runs; fault injection), snr."""
    d = 4
    ns = ctx.param("ns", ctx.pick([40, 160, 640, 2560, 10240], [40, 160, 640, 2560, 10240, 40960]))
    B = ctx.param("prompts", ctx.pick(16, 32))
    T_max = ctx.param("T_max", ctx.pick(24, 30))
    M = ctx.param("relu_terms", DEPTH_RELU_TERMS)
    alpha = ctx.param("alpha", DEPTH_ALPHA)
    alpha_tf = ctx.param("construction_alpha", alpha)
    sq, floor, stat = [], [], []
    for n in ns:
        s, g, e = _run_n(ctx, n, d, B, T_max, alpha_tf, M)
        sq.append(s)
        floor.append(g)
        stat.append(e)
    curves = [np.sqrt(s.mean(axis=0)) for s in sq]
    T = np.array([iterations_to_reach(c, DEPTH_FACTOR) for c in curves])
    x = np.log(np.array(ns, dtype=np.float64) / d)
    slope, intercept = _slope(x, T)
    rng = np.random.default_rng(ctx.stream_seed)
    boot = []
    for _ in range(_N_BOOT):  # resample the prompts of every n independently
        Tb = [
            iterations_to_reach(np.sqrt(s[rng.integers(0, B, B)].mean(axis=0)), DEPTH_FACTOR)
            for s in sq
        ]
        boot.append(_slope(x, np.array(Tb))[0])
    ci = (float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975)))
    expected = gradient_em_iterations_slope(alpha)
    low, high = expected * (1 - DEPTH_BAND), expected * (1 + DEPTH_BAND)
    ci_outside = ci[1] < low or ci[0] > high
    ratio = max(f / e for f, e in zip(floor, stat, strict=True))
    lpi = layers_per_iteration(M)
    T_int = [math.ceil(t) for t in T]
    plots = line_plot(
        ctx.out_dir,
        "construction_depth_vs_log_n",
        x,
        T.tolist(),
        (slope, intercept),
        expected_slope=expected,
        labels=(
            "log(n/d)",
            f"outer iterations to reach {DEPTH_FACTOR:g}x final error",
            f"Thm 3.1 transformer, alpha={alpha_tf:g}, M={M}, d={d}",
        ),
    )
    passed = low <= slope <= high and not ci_outside and ratio <= FLOOR_RATIO_MAX
    return Outcome(
        passed,
        round(slope, 4),
        round(expected, 4),
        f"slope in [{low:.2f}, {high:.2f}] (expected +- {DEPTH_BAND:.0%}), 95% CI "
        f"[{ci[0]:.3f}, {ci[1]:.3f}] not wholly outside, E-step floor / statistical error <= "
        f"{FLOOR_RATIO_MAX:g}: kappa = 1 - alpha is the contraction for S = X^T X / n = I; at "
        "n/d = 10 the spread (1 +- sqrt(d/n))^2 of S's eigenvalues and the ReLU-sum E-step's "
        "Jacobian move T by a fraction of an iteration, and the interpolation of T between "
        "integer iterations limits the precision to ~10%",
        {
            "ns": list(ns),
            "d": d,
            "log_n_over_d": x.tolist(),
            "T_n": T.tolist(),
            "T_n_integer": T_int,
            "layers_per_iteration": lpi,
            "L_n": [t * lpi + 1 for t in T_int],
            "L_formula": f"L(n) = ceil(T(n)) x {lpi} + 1 (layers_per_iteration(M={M}))",
            "final_rms_error": [float(c[-1]) for c in curves],
            "estep_floor": floor,
            "statistical_error": stat,
            "floor_over_statistical_max": ratio,
            "fit": {"slope": slope, "intercept": intercept, "ci": list(ci), "n_boot": _N_BOOT},
            "band": [low, high],
            "ci_outside_band": ci_outside,
            "rel_error": abs(slope - expected) / expected,
            "alpha": alpha,
            "alpha_transformer": alpha_tf,
            "relu_terms": M,
            "T_max": T_max,
            "prompts": B,
            "factor": DEPTH_FACTOR,
        },
        plots,
        resolution=DEPTH_BAND,
        resolution_note=f"band half-width {DEPTH_BAND:.0%} of the expected slope; noise: CI "
        f"half-width {(ci[1] - ci[0]) / 2 / expected:.1%} of it",
    )
