"""Checks of the LSA gradient flow (:mod:`iclkit.dynamics.lsa`).

- Zhang-Frei-Bartlett Theorem 4.1 [READ-2nd]: from the structured initialisation with
  ``s^2 ||Gamma||_op sqrt(d) < 2``, gradient flow on the population loss of one linear
  self-attention layer converges to ``u U = Gamma^-1``, ``u = [tr(Gamma^-2)]^(1/4)``, with the
  minimum loss ``L*``; ZFB Lemma 5.4: the convergence is linear.
- The MoR paper's training-dynamics claim (convergence to a global optimum) [READ abstract];
  its optimum ``G* = A^-1 Lambda M1`` is [RECON, MC-checked] (``docs/provenance.md`` §10).

The flow is the dynamics package's (``simulate`` on its reduced/eigen flows); the targets are
computed independently in :mod:`iclkit.theory.bounds` (closed forms in numpy) and the loss is
re-estimated by Monte Carlo on sampled prompts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from iclkit.dynamics.lsa import (
    EigenLSAFlow,
    LSAMoments,
    ReducedLSAFlow,
    Simulation,
    find_fixed_points,
    monte_carlo_loss,
    simulate,
    structured_init,
)
from iclkit.theory.bounds import lsa_convergence_condition, lsa_fixed_point, lsa_mor_optimum
from iclkit.theory.linear import LinearConfig
from iclkit.theory.mor import MoRConfig
from iclkit.theory.rates import fit_line

from .registry import CheckContext, Outcome, register

#: Dimension d and prompt length N of the linear-regression checks (ZFB's setting, small enough
#: for a tight integration in well under a second).
D, N = 4, 10
#: Scale s of the structured initialisation: it satisfies ZFB's condition
#: ``s^2 ||Gamma||_op sqrt(d) < 2`` for every Lambda used here (reported per check).
INIT_SCALE = 0.4
#: Stop the flow once ``||grad L|| <= GRADIENT_TOL``: two decades below the 1e-11 accuracy the
#: fixed-point checks demand of ``G``, so the stopping point does not limit them.
GRADIENT_TOL = 1e-13
#: Integration horizon of the linear-regression flow: the AR(0.8) flow meets GRADIENT_TOL near
#: t = 1e3; the horizon only guards against a flow that never converges.
HORIZON = 5e3
#: Correlation r of the AR(r) input covariance Lambda_ij = r^|i-j|: anisotropic enough that
#: Gamma^-1 is far from a multiple of the identity.
AR_CORRELATION = 0.8
#: The tail of L(t) - L* fitted by ``lsa.linear_rate``: below 1e-4 the flow is in its linear
#: regime near the optimum; above 1e-11 the gap is far from float64 round-off of the loss.
TAIL_WINDOW = (1e-11, 1e-4)
#: Relative band of ``lsa.linear_rate`` around the Jacobian's predicted rate: the fitted rate is
#: 0.5% low (the next-slowest mode, 27% faster, still contributes at the window's start); 3%
#: is six times that and far below the gap to the next mode or to a factor-2 error.
RATE_REL_BAND = 0.03


#: z-score band of the Monte Carlo loss comparisons: the integrand is heavy-tailed, so a
#: standard-error test; 4 s.e. keeps the false-alarm rate below 1e-4 per comparison.
MC_Z = 4.0


def _ar(d: int, r: float = AR_CORRELATION) -> np.ndarray:
    """The AR(r) covariance ``Lambda_ij = r^|i - j|``; (d, d)."""
    return np.array([[r ** abs(i - j) for j in range(d)] for i in range(d)])


def _linear_flow(ctx: CheckContext, lam: np.ndarray, scale: float) -> Simulation:
    """The reduced flow on linear prompts with covariance ``lam``, from the structured init,
    integrated to ``params["horizon"]`` (default :data:`HORIZON`)."""
    m = LSAMoments.linear(D, N, Lambda=lam)
    init = structured_init(m, scale, seed=ctx.stream_seed, warn=False)
    horizon = ctx.param("horizon", HORIZON)
    return simulate(ReducedLSAFlow(m), init, (0, horizon), gradient_tol=GRADIENT_TOL)


@register(
    "lsa.zfb_fixed_point",
    theorem="ZFB Thm 4.1: LSA gradient flow -> u U = Gamma^-1, u = tr(Gamma^-2)^(1/4)",
    mark="[READ-2nd]",
)
def zfb_fixed_point(ctx: CheckContext) -> Outcome:
    """Linear prompts, d = 4, N = 10, Lambda in {I, AR(0.8)}, structured init s = 0.4 (scale
    condition evaluated by theory.bounds): the integrated flow's G = uU and u vs the closed form
    Gamma^-1 and c = tr(Gamma^-2)^(1/4) computed in theory.bounds.
    params: scale, horizon (integration time; a short one stops the flow early)."""
    s = ctx.param("scale", INIT_SCALE)
    worst = 0.0
    details: dict[str, Any] = {}
    for name, lam in (("identity", np.eye(D)), ("ar0.8", _ar(D))):
        sim = _linear_flow(ctx, lam, s)
        fp = lsa_fixed_point(lam, N)
        r = float(np.linalg.norm(sim.G_final - fp.G_star) / np.linalg.norm(fp.G_star))
        u_final = float(sim.final_state[-1])
        worst = max(worst, r, abs(u_final - fp.c) / fp.c)
        cond = lsa_convergence_condition(s, lam, N)
        details[name] = {
            "rel_error_G": r,
            "u_final": u_final,
            "c": fp.c,
            "condition": cond.message,
            "condition_holds": cond.holds,
            "status": sim.status.value,
            "t_final": sim.t_final,
        }
    return Outcome(
        worst <= 1e-8,
        worst,
        0.0,
        "relative error of G and u <= 1e-8 (docs/provenance.md §10): rtol 1e-11 integration to "
        "||grad L|| <= 1e-13 reaches ~1e-13",
        details,
        resolution=1e-8,
        resolution_note="the band itself (relative error of G and u); integration error ~1e-13",
    )


@register(
    "lsa.mor_optimum",
    theorem="MoR §5 (v2): LSA gradient flow converges to a global optimum (MoR prompts)",
    mark="[READ abstract]; optimum G* = A^-1 Lambda M1 [RECON, MC-checked]",
)
def mor_optimum(ctx: CheckContext) -> Outcome:
    """MoR prompts (Gaussian components, tau = 1), d = 4, N = 12, sigma = 0.5, Lambda = AR(0.8),
    K in {1, 2, 3} with unequal pi: the flow's limit vs G* from theory.bounds.lsa_mor_optimum
    with M1 = |pi|^2 I, M2 = I; and the conserved u^2 - ||U||_F^2 along the (K = 2)
    trajectory; and a Monte Carlo estimate of the loss of the flow's limit weights on sampled
    MoR prompts vs the closed-form L(G*) (z-score). params: m1_scale (multiplies the
    reference's M1: a mis-scaled moment, fault injection), mc_prompts."""
    n_mor, sigma = 12, 0.5
    lam = _ar(D)
    rel: list[float] = []
    cons: list[float] = []
    zs: list[float] = []
    details: dict[str, Any] = {}
    for K, pi in ((1, None), (2, (0.7, 0.3)), (3, (0.5, 0.3, 0.2))):
        cfg = MoRConfig(d=D, K=K, n=n_mor, sigma=sigma, pi=pi, Lambda=tuple(map(tuple, lam)))
        m = LSAMoments.mor(cfg)
        init = structured_init(m, INIT_SCALE, seed=ctx.stream_seed + K, warn=False)
        sim = simulate(EigenLSAFlow(m), init, (0, 2 * HORIZON), gradient_tol=GRADIENT_TOL)
        p2 = float(sum(p * p for p in cfg.pi_vector))
        m1 = ctx.param("m1_scale", 1.0) * p2 * np.eye(D)
        opt = lsa_mor_optimum(lam, m1, np.eye(D), sigma, n_mor)
        r = float(np.linalg.norm(sim.G_final - opt.G_star) / np.linalg.norm(opt.G_star))
        rel.append(r)
        W_KQ, W_PV = np.zeros((D + 1, D + 1)), np.zeros((D + 1, D + 1))
        W_KQ[:D, :D], W_PV[D, D] = sim.G_final, 1.0  # the limit's prediction a^T G x_q
        est = monte_carlo_loss(
            cfg, W_KQ, W_PV, n_prompts=ctx.param("mc_prompts", ctx.pick(50_000, 1_000_000)),
            seed=ctx.stream_seed + 10 * K,
        )  # fmt: skip
        zs.append(float((est.mean - opt.loss_star) / est.se))
        details[f"K={K}"] = {
            "rel_error_G": r,
            "mc_loss": est.mean,
            "mc_se": est.se,
            "loss_star": opt.loss_star,
            "z_mc": zs[-1],
            "loss_final_minus_loss_star": float(sim.loss[-1] - opt.loss_star),
            "status": sim.status.value,
        }
        if K == 2:  # conservation along a tightly integrated (U, u) trajectory
            tight = simulate(
                ReducedLSAFlow(m), init, (0, 2e3), method="DOP853", rtol=1e-12, atol=1e-14,
                gradient_tol=1e-10,
            )  # fmt: skip
            c = float(np.abs(tight.conserved - tight.conserved[0]).max())
            cons.append(c)
            details["conserved_drift_K2"] = c
    mc_res = max(MC_Z * v["mc_se"] / v["loss_star"] for k, v in details.items() if k[:2] == "K=")
    return Outcome(
        max(rel) <= 1e-8 and max(cons) <= 1e-10 and max(abs(z) for z in zs) <= MC_Z,
        max(rel),
        0.0,
        f"rel. error of G <= 1e-8, drift of u^2 - ||U||_F^2 <= 1e-10 and |z| <= {MC_Z:g} for the "
        "Monte Carlo loss of the limit vs L(G*): DOP853 with rtol 1e-12 reaches ~1e-12 on both; "
        "the loss integrand is heavy-tailed, so a z-score (docs/provenance.md §10)",
        details,
        resolution=1e-8,
        resolution_note="relative error of G (the band); the Monte Carlo loss alone resolves "
        f"{mc_res:.1%} of L(G*) ({MC_Z:g} s.e.)",
    )


@register(
    "lsa.loss_monte_carlo",
    theorem="ZFB Thm 4.1: minimum loss L* = 1/2 (tr Lambda - tr(Gamma^-1 Lambda^2))",
    mark="[READ-2nd; L* DERIVED in docs/provenance.md §10]",
)
def loss_monte_carlo(ctx: CheckContext) -> Outcome:
    """The closed-form L* of theory.bounds vs the Monte Carlo loss of the limit weights
    (W^KQ, W^PV) = (c^-1 diag(Gamma^-1, 0), c diag(0, 1)) on sampled linear prompts.
    params: W_KQ (the weights evaluated), n_prompts."""
    lam = _ar(D)
    fp = lsa_fixed_point(lam, N)
    est = monte_carlo_loss(
        LinearConfig(d=D, n=N, Lambda=tuple(map(tuple, lam))),
        ctx.param("W_KQ", fp.W_KQ),
        fp.W_PV,
        n_prompts=ctx.param("n_prompts", ctx.pick(200_000, 2_000_000)),
        seed=ctx.stream_seed,
    )
    z = (est.mean - fp.loss_star) / est.se
    return Outcome(
        abs(z) <= MC_Z,
        round(float(z), 3),
        0.0,
        "|z| <= 4 with z = (MC - L*) / se: the integrand is heavy-tailed (docs/provenance.md §10), so "
        "a standard-error test, not a fixed relative tolerance",
        {"loss_star": fp.loss_star, "mc_mean": est.mean, "mc_se": est.se},
        resolution=MC_Z * est.se / fp.loss_star,
        resolution_note=f"{MC_Z:g} Monte Carlo s.e. over L*: the noise sets the band",
    )


@register(
    "lsa.linear_rate",
    theorem=(
        "ZFB Lemma 5.4: linear convergence of L(t) - L* (PL inequality); the rate predicted by "
        "the Jacobian at the optimum is derived here"
    ),
    mark="[READ-2nd; PL constant not re-derived]; Jacobian rate [derived here]",
)
def linear_rate(ctx: CheckContext) -> Outcome:
    """Linear prompts, d = 4, N = 10, Lambda = AR(0.8), structured init: minus the slope of
    log(L(t) - L*) vs t on its tail (1e-4 down to 1e-11), the fitted rate, vs the predicted
    rate: 2 x the smallest nonzero |eigenvalue| of the Jacobian of the reduced flow's vector
    field at the optimum on the init's conserved level (``find_fixed_points``: sympy solve,
    torch Jacobian; the zero eigenvalue of the rescaling symmetry (U, u) -> (cU, u/c) excluded;
    the 2 because L - L* is quadratic in the state's deviation). Also r^2 >= 0.98.
    params: trajectory (a pair (times, L - L*) that replaces the simulated one: fault
    injection of a trajectory with a wrong tail); predicted_factor (multiplies the predicted
    rate: fault injection of a wrong prediction)."""
    m = LSAMoments.linear(D, N, Lambda=_ar(D))
    init = structured_init(m, INIT_SCALE, seed=ctx.stream_seed, warn=False)
    level = float(init.u**2 - np.sum(init.U**2))
    fp = find_fixed_points(m, delta=level, sign=1.0 if init.u > 0 else -1.0)
    predicted = fp.tail_rate * float(ctx.param("predicted_factor", 1.0))
    if "trajectory" in ctx.params:
        times, gap = (np.asarray(a, dtype=np.float64) for a in ctx.params["trajectory"])
        t_final = float(times[-1])
    else:
        sim = _linear_flow(ctx, _ar(D), INIT_SCALE)
        times, gap, t_final = sim.times, sim.loss_gap, sim.t_final
    line = fit_line(times, gap, log_x=False, y_window=TAIL_WINDOW, min_points=5)
    if line is None:
        return Outcome(
            False, None, predicted, "need >= 5 points", {"points": 0},
            resolution=RATE_REL_BAND, resolution_note="the relative band of the rate",
        )  # fmt: skip
    rate = -line.slope
    rel = rate / predicted - 1.0
    ok = abs(rel) <= RATE_REL_BAND and line.r2 >= 0.98
    ev = next(f.eigenvalues for f in fp.fixed_points if f.name == "optimum")
    return Outcome(
        ok,
        round(rate, 6),
        round(predicted, 6),
        f"|fitted / predicted - 1| <= {RATE_REL_BAND:.0%} and r^2 >= 0.98: the fit window starts "
        "at L - L* = 1e-4, where the next-slowest mode (27% faster) and the nonlinear terms "
        "still bend log(L - L*) (measured -0.5%); a sublinear tail (e.g. 1/t) gives r^2 well "
        "below 0.98 and a rate near 0",
        {
            "fitted_rate": rate,
            "predicted_rate": predicted,
            "relative_error": rel,
            "band_relative": RATE_REL_BAND,
            "r2": line.r2,
            "jacobian_eigenvalues": [float(x) for x in ev],
            "conserved_level": level,
            "tail_points": line.n_points,
            "t_final": t_final,
        },
        resolution=RATE_REL_BAND,
        resolution_note=f"the relative band of the rate; the tail fit is deterministic, its bias "
        f"(measured {rel:+.1%}) is the noise",
    )
