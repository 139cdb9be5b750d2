"""Figures of the softmax-attention GD dynamics (``docs/provenance.md`` §11: the paper's figure was NOT
read; these are this project's analogues, not a reproduction).

* :func:`plot_loss`: loss per query type vs eta t (log-log);
* :func:`plot_attention`: target / dominant attention and the two kinds of attention weights vs
  eta t, phases shaded;
* :func:`plot_scaling`: phase times vs K (log-log) with fitted slopes.

Each writes ``<stem>.pdf`` (TrueType fonts) and ``<stem>.png`` atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from iclkit.io import COLORS, new_figure, save_figure

from .phases import PhaseReport
from .result import SoftmaxResult
from .scaling import ScalingResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_attention", "plot_loss", "plot_scaling", "plot_softmax_dynamics"]

#: Alternating shades of successive phases.
_SHADES = ["#e8e8e8", "#ffffff"]

#: Floor of the lower 2-se band on log axes.
_LOG_FLOOR = 1e-300


def _save(fig: Figure, stem: str | Path) -> list[Path]:
    return [Path(p) for p in save_figure(fig, stem)]


def plot_loss(traj: SoftmaxResult, report: PhaseReport | None, stem: str | Path) -> list[Path]:
    """Loss per query type vs eta t on log-log axes (eps as a dotted line)."""
    fig = new_figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    sel = traj.time > 0
    for j, name in enumerate(traj.query_types):
        ax.loglog(
            traj.time[sel], traj.loss_per_type[sel, j], color=COLORS[j % 8], label=f"query: {name}"
        )
        if traj.loss_se_per_type is not None:
            lo = traj.loss_per_type[sel, j] - 2 * traj.loss_se_per_type[sel, j]
            hi = traj.loss_per_type[sel, j] + 2 * traj.loss_se_per_type[sel, j]
            ax.fill_between(
                traj.time[sel], np.maximum(lo, _LOG_FLOOR), hi, color=COLORS[j % 8], alpha=0.2, lw=0
            )
    if report is not None:
        ax.axhline(report.eps, color="0.4", ls=":", lw=1, label=f"eps = {report.eps:g}")
    ax.set_xlabel(r"$\eta t$")
    ax.set_ylabel("population loss per query type")
    ax.set_title(_title(traj), fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, stem)


def plot_attention(traj: SoftmaxResult, report: PhaseReport | None, stem: str | Path) -> list[Path]:
    """Per query type: attention (left) and attention weights (right) vs eta t, phases shaded."""
    J = len(traj.query_types)
    fig = new_figure(figsize=(10, 3.2 * J))
    axes = fig.subplots(J, 2, squeeze=False)
    sel = traj.time > 0
    t = traj.time[sel]
    for j, name in enumerate(traj.query_types):
        a0, a1 = axes[j]
        a0.semilogx(
            t, traj.attention_target[sel, j], color=COLORS[0], label=r"$\mathrm{Attn}_k$ (target)"
        )
        if np.all(np.isfinite(traj.attention_dominant[:, j])):
            a0.semilogx(
                t,
                traj.attention_dominant[sel, j],
                color=COLORS[1],
                label="attention on dominant feature",
            )
        a0.axhline(0.5, color="0.5", ls=":", lw=1)
        a0.set_ylim(-0.02, 1.02)
        a0.set_ylabel(f"query: {name}")
        a1.semilogx(
            t,
            traj.target_weight[sel, j],
            color=COLORS[0],
            label=r"$v_k^\top Q v_k$ (target weight)",
        )
        if np.all(np.isfinite(traj.offtarget_dominant[:, j])):
            a1.semilogx(
                t,
                traj.offtarget_dominant[sel, j],
                color=COLORS[1],
                label=r"$v_1^\top Q v_k$ (dominant off-target)",
            )
        if np.any(np.isfinite(traj.offtarget_other[:, j])):
            a1.semilogx(
                t,
                traj.offtarget_other[sel, j],
                color=COLORS[2],
                label=r"$v_m^\top Q v_k$ (other off-target)",
            )
        a1.axhline(0.0, color="0.5", lw=0.5)
        if report is not None:
            q = report.by_query(name)
            for ax in (a0, a1):
                for i, ph in enumerate(q.phases):
                    lo = max(ph.start, float(t[0]) if t.size else 1.0)
                    ax.axvspan(lo, ph.end, color=_SHADES[i % 2], zorder=0)
                    ax.text(
                        np.sqrt(lo * max(ph.end, lo)),
                        0.98,
                        f"{i + 1}",
                        transform=ax.get_xaxis_transform(),
                        ha="center",
                        va="top",
                        fontsize=8,
                        color="0.3",
                    )
            a0.set_title("phases: " + " | ".join(ph.name for ph in q.phases), fontsize=8)
        for ax in (a0, a1):
            ax.legend(fontsize=7, loc="center left")
            ax.grid(True, which="both", alpha=0.3)
    axes[-1, 0].set_xlabel(r"$\eta t$")
    axes[-1, 1].set_xlabel(r"$\eta t$")
    fig.suptitle(_title(traj), fontsize=9)
    return _save(fig, stem)


def plot_scaling(
    result: ScalingResult, stem: str | Path, keys: list[str] | None = None
) -> list[Path]:
    """Event times vs K on log-log axes with the fitted power laws."""
    fig = new_figure(figsize=(5.5, 4.0))
    ax = fig.subplots()
    use = keys if keys is not None else list(result.slopes)
    K = result.Ks
    for i, key in enumerate(use):
        if key not in result.slopes:
            continue
        y = result.times[key]
        c = COLORS[i % 8]
        slope = result.slopes[key]
        ax.loglog(K, y, "o", color=c, label=f"{key}  (slope {slope:.2f})")
        b = np.mean(np.log(y) - slope * np.log(K))
        ax.loglog(K, np.exp(b) * K**slope, "-", color=c, lw=1)
    ax.set_xticks(K)
    ax.set_xticklabels([str(int(k)) for k in K])
    ax.minorticks_off()
    ax.set_xlabel("K (number of features)")
    ax.set_ylabel(r"event time ($\eta t$)")
    s = result.settings
    ax.set_title(
        f"{s.get('p_mode')} p, {s.get('method')}, eta={s.get('eta')}, eps={s.get('eps')}",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, stem)


def plot_softmax_dynamics(
    traj: SoftmaxResult,
    report: PhaseReport,
    out_dir: str | Path,
    scaling: ScalingResult | None = None,
) -> list[Path]:
    """Write the loss and attention figures (and the scaling one if given) into ``out_dir``."""
    out_dir = Path(out_dir)
    paths = plot_loss(traj, report, out_dir / "softmax_loss")
    paths += plot_attention(traj, report, out_dir / "softmax_attention")
    if scaling is not None:
        paths += plot_scaling(scaling, out_dir / "softmax_phase_scaling")
    return paths


def _title(traj: SoftmaxResult) -> str:
    c = traj.config
    f = c.features
    pm = f.p_mode if f.p_mode != "imbalanced" else f"imbalanced p1={f.p_dominant}"
    return f"K={f.K}, N={f.N}, {pm}, eta={c.eta}, {c.method}" + (
        ", query in softmax" if c.include_query_in_softmax else ""
    )
