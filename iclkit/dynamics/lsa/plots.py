"""Figures of an LSA gradient-flow run (ZFB Thm 4.1 / Lemma 5.4; MoR Sec. 5 analogue).

Four panels: the loss gap ``L(t) - L*`` on a log axis (a straight tail = linear convergence,
with the fitted rate), ``||G(t) - G*||_F``, the conserved quantity ``u^2 - ||U||_F^2 - (its value
at t = 0)``, and the eigenvalues of the symmetric part of G(t) against those of G*. Saved as PDF
(TrueType fonts, ``pdf.fonttype = 42``) and PNG, each written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from iclkit.io import save_figure as save_figure_atomically

from .integrate import Simulation

__all__ = ["fit_tail_rate", "plot_lsa_flow"]


def fit_tail_rate(
    times: np.ndarray, gap: np.ndarray, *, lo: float = 1e-13, hi: float = 1e-4
) -> float:
    """Least-squares slope r of ``log gap = c - r t`` over the points with lo <= gap <= hi.

    Returns nan when fewer than 5 points fall in the window.
    """
    t, g = np.asarray(times, float), np.asarray(gap, float)
    sel = (g >= lo) & (g <= hi) & np.isfinite(g)
    if sel.sum() < 5:
        return float("nan")
    slope, _ = np.polyfit(t[sel], np.log(g[sel]), 1)
    return float(-slope)


def _save(fig: plt.Figure, path: Path) -> None:
    save_figure_atomically(fig, path.with_suffix(""), formats=(path.suffix[1:],), dpi=150)


def plot_lsa_flow(
    sim: Simulation,
    G_star: np.ndarray,
    out_dir: str | os.PathLike[str],
    *,
    stem: str = "lsa_flow",
    title: str = "",
    predicted_rate: float | None = None,
) -> list[Path]:
    """Plot a simulation against the fixed point ``G_star`` (d, d); returns the written paths."""
    plt.rcParams["pdf.fonttype"] = 42
    plt.rcParams["ps.fonttype"] = 42
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = sim.times
    flow = sim.flow
    Gs = np.array([flow.G(y) for y in sim.states])
    err = np.linalg.norm(Gs - G_star, axis=(1, 2))
    ev = np.linalg.eigvalsh(0.5 * (Gs + Gs.transpose(0, 2, 1)))
    ev_star = np.linalg.eigvalsh(0.5 * (G_star + G_star.T))
    fig, ax = plt.subplots(2, 2, figsize=(10, 7.5))
    gap = np.clip(sim.loss_gap, 1e-300, None)
    ax[0, 0].semilogy(t, gap, color="#0072B2")
    rate = fit_tail_rate(t, sim.loss_gap)
    label = f"fitted tail rate {rate:.4g}"
    if predicted_rate is not None and np.isfinite(predicted_rate):
        label += f"\n2 x slowest Jacobian eigenvalue {predicted_rate:.4g}"
    ax[0, 0].set(xlabel="t", ylabel="L(t) - L*", title="loss gap (log)")
    ax[0, 0].text(0.35, 0.85, label, transform=ax[0, 0].transAxes, fontsize=8)
    ax[0, 1].semilogy(t, np.clip(err, 1e-300, None), color="#D55E00")
    ax[0, 1].set(xlabel="t", ylabel="||G(t) - G*||_F", title="distance to the fixed point")
    ax[1, 0].plot(t, sim.conserved - sim.conserved[0], color="#009E73")
    ax[1, 0].set(xlabel="t", ylabel="Q(t) - Q(0)", title="conserved Q = u^2 - ||U||_F^2")
    for i in range(ev.shape[1]):
        ax[1, 1].plot(t, ev[:, i], color="#CC79A7", lw=1)
    for v in ev_star:
        ax[1, 1].axhline(v, color="k", ls=":", lw=0.8)
    ax[1, 1].set(xlabel="t", ylabel="eigenvalues of sym(G(t))", title="eigenvalues vs G* (dotted)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    paths = [out / f"{stem}.pdf", out / f"{stem}.png"]
    for p in paths:
        _save(fig, p)
    plt.close(fig)
    return paths
