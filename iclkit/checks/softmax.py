"""Checks of the softmax-attention GD dynamics (Huang, Cheng, Liang; :mod:`iclkit.dynamics`).

The paper's claims [READ abstract]: with balanced features, GD reaches near-zero error after two
phases; with imbalanced features, dominant-feature queries converge first in one phase and
under-represented ones later through four phases. The explicit phase-time bounds were not
readable, so the *scalings* checked here (phase I ~ K^2 / eta, last phase loss ~ 1 / t, dominant
time independent of K) are this project's derivations and measurements [MEASURED]
(``dynamics.md`` A.4-A.5), not the paper's theorems.

Independent references: the phase times that ``dynamics.md`` A.4 measured with the notes'
own mean-field ODE code (K = 5..40), and the exponents of
:func:`iclkit.theory.bounds.softmax_phase_scalings`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from iclkit.theory.bounds import softmax_phase_scalings
from iclkit.theory.rates import fit_rate

from .plots import rate_plot
from .registry import CheckContext, Outcome, register, require

_SIM = "iclkit.dynamics.softmax.simulate"
_PHASES = "iclkit.dynamics.softmax.phases"
_SCALING = "iclkit.dynamics.softmax.scaling"
_MARK = "[MEASURED: this project's derivation (dynamics.md A.4-A.5), not the paper's theorem]"

#: dynamics.md A.4: mean-field ODE time (eta t) to Attn_k >= 1/2, balanced, computed by the notes'
#: own code, independently of iclkit.dynamics.
_NOTES_T1 = {5: 31.6, 10: 143.9, 20: 544.8, 40: 1995.0, 80: 7383.0}


def _run(K: int, N: int, eta: float, method: str, **kw: Any) -> tuple[Any, Any]:
    sim = require(_SIM, "simulate_softmax", "SoftmaxDynamicsConfig")
    phases = require(_PHASES, "detect_phases")
    from iclkit.theory.features import FeatureConfig

    fc_kw = {k: kw.pop(k) for k in ("p_mode", "p_dominant") if k in kw}
    eps = kw.pop("eps", 1e-3)
    traj = sim.simulate_softmax(
        sim.SoftmaxDynamicsConfig(
            features=FeatureConfig(K=K, N=N, **fc_kw), eta=eta, method=method, **kw
        )
    )
    return traj, phases.detect_phases(traj, eps=eps)


@register(
    "softmax.phase1_K2",
    theorem="Huang-Cheng-Liang, balanced: phase I (Attn_k -> 1/2) lasts ~ K^2 / eta",
    mark=_MARK,
    requires=(_SCALING, _PHASES),
    description=(
        "Balanced features, mean-field GD (quick) or exact with N = 1000 (full), eta = 1: time to "
        "Attn_k = 1/2 vs K; log-log slope vs 2, and each time vs the notes' independent ODE values."
    ),
)
def phase1_K2(ctx: CheckContext) -> Outcome:
    scaling = require(_SCALING, "phase_time_scaling")
    Ks = ctx.param("Ks", ctx.pick([5, 10, 20, 40], [5, 10, 20, 40, 80]))
    method = ctx.pick("mean-field", "exact")
    res = scaling.phase_time_scaling(Ks, N=1000, eta=ctx.param("eta", 1.0), eps=1e-2, method=method)
    t1 = np.asarray(res.times["balanced:half_attention"], dtype=np.float64)
    fit = fit_rate(Ks, t1)
    expected = softmax_phase_scalings(Ks[0], 1e-2).exponents["phase1_K"]
    notes = {K: _NOTES_T1[K] for K in Ks if K in _NOTES_T1}
    dev = {str(K): float(t1[i] / notes[K] - 1) for i, K in enumerate(Ks) if K in notes}
    # finite N = 1000 sits ~0.5% above the mean field (dynamics.md A.4); GD at eta = 1 ~0.2%
    dev_tol = 0.02 if method == "mean-field" else 0.05
    ok = 1.8 <= fit.slope <= 2.2 and all(abs(v) <= dev_tol for v in dev.values())
    plots = rate_plot(
        ctx.out_dir,
        "softmax_phase1_K2",
        Ks,
        t1,
        fit,
        expected_slope=expected,
        xlabel="K (features)",
        ylabel="eta t to Attn_k = 1/2",
        title=f"softmax attention GD, balanced, {method}",
    )
    return Outcome(
        ok,
        round(fit.slope, 4),
        expected,
        f"slope in [1.8, 2.2] and every time within {dev_tol:.0%} of the notes' ODE values: the "
        "K^2 law has lower-order corrections (measured 1.95-1.99, band of issue 6); the notes' "
        "times come from independent code",
        {
            "Ks": Ks,
            "times": t1.tolist(),
            "T1_over_K2": (t1 / np.asarray(Ks) ** 2).tolist(),
            "relative_deviation_from_notes": dev,
            "fit": fit.as_dict(),
        },
        plots,
    )


@register(
    "softmax.last_phase_rate",
    theorem="Huang-Cheng-Liang, balanced: last phase converges sublinearly, L(t) ~ K / (4 eta t)",
    mark=_MARK,
    requires=(_SIM, _PHASES),
    description=(
        "Balanced K = 10, N = 200, eta = 4, exact population GD to eta t = 1e5: log-log slope of the "
        "loss from the start of the 1/t regime, vs -1."
    ),
)
def last_phase_rate(ctx: CheckContext) -> Outcome:
    K = 10
    traj, rep = _run(K, 200, ctx.param("eta", 4.0), "exact", max_time=ctx.pick(1e5, 3e5))
    q = rep.by_query("balanced")
    slope = q.final_loss_slope
    expected = softmax_phase_scalings(K, 1e-3).exponents["last_phase_loss_t"]
    t_end, L_end = float(traj.time[-1]), float(traj.loss_per_type[-1, 0])
    ok = slope is not None and -1.1 <= slope <= -0.9 and q.n_phases == 2
    return Outcome(
        ok,
        None if slope is None else round(float(slope), 4),
        expected,
        "slope in [-1.1, -0.9] (issue 6) and 2 phases: finite N adds an error floor that bends "
        "the tail slightly (measured -1.07)",
        {
            "events": q.events,
            "n_phases": q.n_phases,
            "t_L_at_end": t_end * L_end,
            "K_over_4": K / 4,
            "status": str(traj.status),
        },
    )


@register(
    "softmax.imbalanced_stagewise",
    theorem=(
        "Huang-Cheng-Liang, imbalanced: dominant queries converge first in one phase, "
        "under-represented ones later in four"
    ),
    mark="[READ abstract]; phase events and the K-independence [MEASURED]",
    requires=(_SIM, _PHASES),
    description=(
        "p_dominant = 1/2, exact population GD with N = 200, eta = 4, K = 10 and 20: dominant queries "
        "have 1 phase, under-represented 4 with events in order; at the time the dominant loss "
        "reaches 1e-3 the under-represented loss (K = 20) is still >= 0.1; the dominant time "
        "differs by < 20% between K = 10 and 20."
    ),
)
def imbalanced_stagewise(ctx: CheckContext) -> Outcome:
    out: dict[str, Any] = {}
    for K in ctx.param("Ks", ctx.pick((10, 20), (10, 20, 40))):
        _, rep = _run(
            K, 200, 4.0, "exact", p_mode="imbalanced", p_dominant=0.5,
            max_time=4.0 / ((0.5 / (K - 1)) ** 2) + 2e4, stop_loss=1e-3,
        )  # fmt: skip
        dom, und = rep.by_query("dominant"), rep.by_query("under_represented")
        out[str(K)] = {
            "dominant_phases": dom.n_phases,
            "under_phases": und.n_phases,
            "under_events_ordered": und.events_ordered,
            "dominant_time_to_eps": dom.events.get("loss_eps"),
            "under_loss_when_dominant_done": rep.summary.get("stagewise", {}).get(
                "under_represented_loss_then"
            ),
            "under_events": und.events,
        }
    Ks = sorted(int(k) for k in out)
    times = [out[str(K)]["dominant_time_to_eps"] for K in Ks]
    spread = (
        (max(times) - min(times)) / min(times)
        if all(t is not None for t in times)
        else float("inf")
    )
    phases_ok = all(
        v["dominant_phases"] == 1 and v["under_phases"] == 4 and v["under_events_ordered"]
        for v in out.values()
    )
    stage = out[str(Ks[-1])]["under_loss_when_dominant_done"]
    ok = phases_ok and spread <= 0.2 and stage is not None and stage >= 0.1
    return Outcome(
        ok,
        round(spread, 4),
        "< 0.2",
        "phases 1 / 4 in order, spread over K <= 20%, under-represented loss >= 0.1: phase counts "
        "are exact; the dominant time to eps, O(1/(eta eps)), has no K; a Theta(1) loss of the "
        "under-represented queries when the dominant ones are done (largest K) is the stage-wise claim",
        out,
    )


@register(
    "softmax.gd_tracks_flow",
    theorem="Phase times in units of eta t do not depend on eta for small eta (GD ~ gradient flow)",
    mark=_MARK,
    requires=(_SIM, _PHASES),
    description=(
        "Balanced K = 16, N = 400, exact population GD with eta in {0.25, 1, 4}: time to "
        "Attn_k = 1/2 in units of eta t."
    ),
)
def gd_tracks_flow(ctx: CheckContext) -> Outcome:
    times = {}
    for eta in ctx.param("etas", (0.25, 1.0, 4.0)):
        _, rep = _run(16, 400, eta, "exact", max_time=1500.0)
        times[str(eta)] = rep.summary["time_to_half_attention"]["balanced"]
    vals = [v for v in times.values() if v is not None]
    spread = (max(vals) - min(vals)) / min(vals) if len(vals) == len(times) else float("inf")
    return Outcome(
        spread <= 0.02,
        round(spread, 5),
        0.0,
        "relative spread <= 2% (dynamics.md D.3): the O(eta) discretisation error of GD is "
        "measured ~0.4% at eta = 4",
        {"time_to_half_attention": times},
    )
