"""Figures of an LSA gradient-flow run (ZFB Thm 4.1 / Lemma 5.4; MoR Sec. 5 analogue).

Four panels: the loss gap ``L(t) - L*`` on a log axis (a straight tail = linear convergence,
with the fitted rate), ``||G(t) - G*||_F``, the conserved quantity ``u^2 - ||U||_F^2 - (its value
at t = 0)``, and the eigenvalues of the symmetric part of G(t) against those of G*. Saved as PDF
(TrueType fonts, ``pdf.fonttype = 42``) and PNG, each written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from iclkit.io import COLORS, new_figure, save_figure

from .convergence import LSAResult

__all__ = ["plot_lsa_flow"]

#: Floor of the log-scale curves, so that an exact zero does not vanish from the axis.
_LOG_FLOOR = 1e-300


def plot_lsa_flow(
    result: LSAResult,
    out_dir: str | os.PathLike[str],
    *,
    stem: str = "lsa_flow",
    title: str | None = None,
) -> list[Path]:
    """Plot a run against its fixed point; returns the written ``<stem>.pdf`` and ``.png``.

    ``title`` defaults to the data model, d and N of the run.
    """
    sim, G_star = result.simulation, result.fixed_points.G_star
    m = result.moments
    if title is None:
        title = f"LSA gradient flow, {m.kind} data, d={m.d}, N={m.N}"
    t = sim.times
    Gs = np.array([sim.flow.G(y) for y in sim.states])
    err = np.linalg.norm(Gs - G_star, axis=(1, 2))
    ev = np.linalg.eigvalsh(0.5 * (Gs + Gs.transpose(0, 2, 1)))
    ev_star = np.linalg.eigvalsh(0.5 * (G_star + G_star.T))
    fig = new_figure(figsize=(10, 7.5))
    ax = fig.subplots(2, 2)
    ax[0, 0].semilogy(t, np.clip(sim.loss_gap, _LOG_FLOOR, None), color=COLORS[0])
    label = f"fitted tail rate {result.tail_rate_fit:.4g}"
    predicted = result.fixed_points.tail_rate
    if np.isfinite(predicted):
        label += f"\n2 x slowest Jacobian eigenvalue {predicted:.4g}"
    ax[0, 0].set(xlabel="t", ylabel="L(t) - L*", title="loss gap (log)")
    ax[0, 0].text(0.35, 0.85, label, transform=ax[0, 0].transAxes, fontsize=8)
    ax[0, 1].semilogy(t, np.clip(err, _LOG_FLOOR, None), color=COLORS[1])
    ax[0, 1].set(xlabel="t", ylabel="||G(t) - G*||_F", title="distance to the fixed point")
    ax[1, 0].plot(t, sim.conserved - sim.conserved[0], color=COLORS[2])
    ax[1, 0].set(xlabel="t", ylabel="Q(t) - Q(0)", title="conserved Q = u^2 - ||U||_F^2")
    for i in range(ev.shape[1]):
        ax[1, 1].plot(t, ev[:, i], color=COLORS[3], lw=1)
    for v in ev_star:
        ax[1, 1].axhline(v, color="k", ls=":", lw=0.8)
    ax[1, 1].set(xlabel="t", ylabel="eigenvalues of sym(G(t))", title="eigenvalues vs G* (dotted)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_dir)
    return [Path(p) for p in save_figure(fig, out / stem)]
