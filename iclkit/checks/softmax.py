"""Checks of the softmax-attention GD dynamics (Huang-Cheng-Liang, :mod:`iclkit.dynamics.softmax`).

The paper's claims [READ abstract]: with balanced features, GD reaches near-zero error after two
phases; with imbalanced features, dominant-feature queries converge first in one phase and
under-represented ones later through four phases. The explicit phase-time bounds were not
readable, so the *scalings* checked here (phase I ~ K^2 / eta, last phase loss ~ 1 / t, dominant
time independent of K, GD tracking its gradient flow) are this project's derivations and
measurements [MEASURED] (``docs/provenance.md`` §11), not the paper's theorems.

Independent references: the phase times measured with an independent mean-field ODE integration
(``docs/provenance.md`` §11) (K = 5..40), and the exponents of
:func:`iclkit.theory.bounds.softmax_phase_scalings`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from iclkit.dynamics.softmax import (
    PhaseReport,
    SoftmaxConfig,
    SoftmaxResult,
    detect_phases,
    phase_time_scaling,
    simulate_softmax,
)
from iclkit.theory.bounds import softmax_phase_scalings
from iclkit.theory.features import FeatureConfig

from .rate_check import PlotLabels, SlopeBand, fit_and_plot, slope_outcome
from .registry import CheckContext, Outcome, register

_MARK = "[MEASURED: this project's derivation (docs/provenance.md §11), not the paper's theorem]"

#: docs/provenance.md §11: mean-field ODE time (eta t) to Attn_k >= 1/2, balanced, computed by an independent
#: integration, not by iclkit.dynamics.
_NOTES_T1 = {5: 31.6, 10: 143.9, 20: 544.8, 40: 1995.0, 80: 7383.0}
#: Half-width of the slope band of ``softmax.phase1_K2`` around 2: the measured slope over
#: K = 5..40 is 1.95-1.99 (lower-order corrections to the K^2 law).
PHASE1_BAND = 0.2
#: Loss level eps of the ``loss_eps`` phase event: small next to the Theta(1) initial loss.
EPS = 1e-3
#: Step size eta of the exact-GD checks: GD tracks its flow to ~0.4% here (``gd_tracks_flow``),
#: and each run needs 4x fewer steps than at eta = 1.
ETA = 4.0
#: Prompt length N of the exact-GD checks: the exact population sums stay cheap, and the
#: finite-N error floor only bends the last-phase tail slightly (``softmax.last_phase_rate``).
N_EXACT = 200
#: Extra horizon (in eta t) after the rarest feature's phase I (~ 4 / p_min^2) in
#: ``softmax.imbalanced_stagewise``: the dominant queries' time to EPS, O(1 / (eta eps)), with
#: room to spare; the run stops earlier once every query type reaches EPS.
STAGEWISE_EXTRA_TIME = 2e4


def _run(K: int, N: int, eta: float, **kw: Any) -> tuple[SoftmaxResult, PhaseReport]:
    """Exact population GD on K balanced (or ``p_mode``) features and its phase report."""
    fc_kw = {k: kw.pop(k) for k in ("p_mode", "p_dominant") if k in kw}
    traj = simulate_softmax(
        SoftmaxConfig(features=FeatureConfig(K=K, N=N, **fc_kw), eta=eta, method="exact", **kw)
    )
    return traj, detect_phases(traj, eps=EPS)


@register(
    "softmax.phase1_K2",
    theorem=(
        "Huang-Cheng-Liang, balanced: phase times quadratic in K; phase I (Attn_k -> 1/2) "
        "~ K^2 / eta derived here"
    ),
    mark="[READ review: bounds quadratic in K]; K^2 / eta law [MEASURED, derived here]",
)
def phase1_K2(ctx: CheckContext) -> Outcome:
    """Balanced features, mean-field GD (quick) or exact with N = 1000 (full), eta = 1: time to
    Attn_k = 1/2 vs K; log-log slope vs 2, and each time vs the independent ODE
    values. params: Ks, eta (a large step moves GD off its flow)."""
    Ks = ctx.param("Ks", ctx.pick([5, 10, 20, 40], [5, 10, 20, 40, 80]))
    method = ctx.pick("mean-field", "exact")
    res = phase_time_scaling(Ks, N=1000, eta=ctx.param("eta", 1.0), eps=1e-2, method=method)
    t1 = np.asarray(res.times["balanced:half_attention"], dtype=np.float64)
    expected = softmax_phase_scalings(Ks[0], 1e-2).exponents["phase1_K"]
    labels = PlotLabels(
        "K (features)", "eta t to Attn_k = 1/2", f"softmax attention GD, balanced, {method}"
    )
    fit, plots = fit_and_plot(ctx, "softmax_phase1_K2", Ks, t1, expected=expected, labels=labels)
    notes = {K: _NOTES_T1[K] for K in Ks if K in _NOTES_T1}
    dev = {str(K): float(t1[i] / notes[K] - 1) for i, K in enumerate(Ks) if K in notes}
    # finite N = 1000 sits ~0.5% above the mean field (docs/provenance.md §11); GD at eta = 1 ~0.2%
    dev_tol = 0.02 if method == "mean-field" else 0.05
    worst = max((abs(v) for v in dev.values()), default=0.0)
    return slope_outcome(
        fit,
        expected,
        SlopeBand.around(expected, PHASE1_BAND),
        "the K^2 law has lower-order corrections (measured 1.95-1.99); the reference times "
        "come from an independent mean-field ODE integration (docs/provenance.md §11)",
        {
            "Ks": Ks,
            "times": t1.tolist(),
            "T1_over_K2": (t1 / np.asarray(Ks) ** 2).tolist(),
            "relative_deviation_from_reference": dev,
            "max_relative_deviation": worst,
            "fit": fit.as_dict(),
        },
        plots,
        also=(worst <= dev_tol, f" and every time within {dev_tol:.0%} of the reference ODE"),
    )


@register(
    "softmax.last_phase_rate",
    theorem=(
        "Huang-Cheng-Liang, balanced: convergence in two phases; the last phase's rate "
        "L(t) ~ K / (4 eta t) is derived here"
    ),
    mark="[READ abstract: two phases]; 1/t rate [MEASURED, derived here]",
)
def last_phase_rate(ctx: CheckContext) -> Outcome:
    """Balanced K = 10, N = 200, eta = 4, exact population GD to eta t = 1e5: log-log slope of
    the loss from the start of the 1/t regime, vs -1. params: eta, N (prompt length; a short
    prompt raises the finite-N error floor that flattens the tail)."""
    K = 10
    N = ctx.param("N", N_EXACT)
    traj, rep = _run(K, N, ctx.param("eta", ETA), max_time=ctx.pick(1e5, 3e5))
    q = rep.by_query("balanced")
    slope = q.final_loss_slope
    expected = softmax_phase_scalings(K, EPS).exponents["last_phase_loss_t"]
    t_end, L_end = float(traj.time[-1]), float(traj.loss_per_type[-1, 0])
    ok = slope is not None and -1.1 <= slope <= -0.9 and q.n_phases == 2
    return Outcome(
        ok,
        None if slope is None else round(float(slope), 4),
        expected,
        "slope in [-1.1, -0.9] and 2 phases: the 1/t law is asymptotic; a finite-N error floor makes "
        "the fitted slope shallower (above -1), while the fit window's start just after phase I, "
        "where the loss still falls faster than 1/t, makes it steeper (measured -1.07 at N = 200)",
        {
            "events": q.events,
            "n_phases": q.n_phases,
            "t_L_at_end": t_end * L_end,
            "K_over_4": K / 4,
            "status": traj.status.value,
            "N": N,
        },
        resolution=0.1,
        resolution_note="band half-width 0.1 / |exponent -1|; the fitted slope is deterministic "
        "(exact population GD), its bias from the finite N and the window start is the noise",
    )


def _stagewise_row(K: int, max_time: float | None) -> dict[str, Any]:
    """Phase counts and event times of one imbalanced run (p_dominant = 1/2) with K features,
    to ``max_time`` (default: the rarest feature's phase I plus :data:`STAGEWISE_EXTRA_TIME`)."""
    p_min = 0.5 / (K - 1)  # each under-represented feature
    horizon = 4.0 / p_min**2 + STAGEWISE_EXTRA_TIME if max_time is None else max_time
    _, rep = _run(
        K, N_EXACT, ETA, p_mode="imbalanced", p_dominant=0.5, max_time=horizon, stop_loss=EPS,
    )  # fmt: skip
    dom, und = rep.by_query("dominant"), rep.by_query("under_represented")
    return {
        "dominant_phases": dom.n_phases,
        "under_phases": und.n_phases,
        "under_events_ordered": und.events_ordered,
        "dominant_time_to_eps": dom.events.get("loss_eps"),
        "under_loss_when_dominant_done": rep.summary.get("stagewise", {}).get(
            "under_represented_loss_then"
        ),
        "under_events": und.events,
    }


@register(
    "softmax.imbalanced_stagewise",
    theorem=(
        "Huang-Cheng-Liang, imbalanced: dominant queries converge first in one phase, "
        "under-represented ones later in four"
    ),
    mark="[READ abstract]; phase events and the K-independence [MEASURED]",
)
def imbalanced_stagewise(ctx: CheckContext) -> Outcome:
    """p_dominant = 1/2, exact population GD with N = 200, eta = 4, K = 10 and 20: what is tested
    is that under-represented queries have 4 phases with events in order, that at the time the
    dominant loss reaches 1e-3 the under-represented loss (largest K) is still >= 0.1 (the
    stage-wise claim) and that the dominant time differs by < 20% between the Ks. The dominant
    queries' "1 phase" is reported, not tested: their target attention starts at p_dominant, so
    the count is 1 by definition at p_dominant = 1/2 (2 below it). params: Ks, max_time (the
    run's horizon in eta t; too short a run is too few iterations)."""
    max_time = ctx.param("max_time", None)
    Ks_run = ctx.param("Ks", ctx.pick((10, 20), (10, 20, 40)))
    out = {str(K): _stagewise_row(K, max_time) for K in Ks_run}
    Ks = sorted(int(k) for k in out)
    times = [out[str(K)]["dominant_time_to_eps"] for K in Ks]
    spread = (
        (max(times) - min(times)) / min(times)
        if all(t is not None for t in times)
        else float("inf")
    )
    phases_ok = all(v["under_phases"] == 4 and v["under_events_ordered"] for v in out.values())
    stage = out[str(Ks[-1])]["under_loss_when_dominant_done"]
    ok = phases_ok and spread <= 0.2 and stage is not None and stage >= 0.1
    return Outcome(
        ok,
        round(spread, 4),
        "< 0.2",
        "under-represented queries in 4 phases, in order; spread over K <= 20%; "
        "under-represented loss >= 0.1: phase counts are exact; the dominant time to eps, O(1/(eta eps)), has no K; a "
        "Theta(1) loss of the under-represented queries when the dominant ones are done (largest "
        "K) is the stage-wise claim. The dominant queries' 1 phase is definitional at p_dominant "
        "= 1/2 (Attn starts at p_dominant) and is reported, not counted",
        {
            **out,
            "dominant_phases_note": "definitional: 1 iff p_dominant >= 1/2 (target attention "
            "starts at p_dominant); not part of the criterion",
        },
        resolution=0.2,
        resolution_note="relative spread of the dominant time to eps over K (the band); "
        f"measured {spread:.1%}; the phase counts are exact",
    )


@register(
    "softmax.gd_tracks_flow",
    theorem=(
        "Derived here: phase times in units of eta t do not depend on eta for small eta "
        "(GD ~ gradient flow)"
    ),
    mark=_MARK,
)
def gd_tracks_flow(ctx: CheckContext) -> Outcome:
    """Balanced K = 16, N = 400, exact population GD with eta in {0.25, 1, 4}: time to
    Attn_k = 1/2 in units of eta t. params: etas."""
    times = {}
    for eta in ctx.param("etas", (0.25, 1.0, 4.0)):
        _, rep = _run(16, 400, eta, max_time=1500.0)
        times[str(eta)] = rep.summary["time_to_half_attention"]["balanced"]
    vals = [v for v in times.values() if v is not None]
    spread = (max(vals) - min(vals)) / min(vals) if len(vals) == len(times) else float("inf")
    return Outcome(
        spread <= 0.02,
        round(spread, 5),
        0.0,
        "relative spread <= 2% (docs/provenance.md §11): the O(eta) discretisation error of GD is "
        "measured ~0.4% at eta = 4",
        {"time_to_half_attention": times},
        resolution=0.02,
        resolution_note=f"relative spread of the phase-I time over eta (the band); measured "
        f"{spread:.2%}",
    )
