"""Figures 1-4 of the MoR paper (arXiv 2410.14183, Section 6 of v2), drawn from sweep results.

What each figure plots follows the issue brief and the v1 reviews (``mor.md`` §7.1 [READ
reviews / brief]); the exact axes of the paper are [NOT FOUND]:

- fig1: excess test risk vs prompt length n, one panel per K (2, 3, 5, 20); log-log axes.
- fig2: excess test risk at the full prompt vs the number of training prompts B; log-log.
- fig3: excess test risk at the full prompt vs the dimension d; log y.
- fig4: excess test risk at the full prompt vs the hidden size D; log-log (base 2 in x).

One colour per SNR; the transformer is a solid line with a +-1 standard-error band, the EM
baseline (random init, ``em``) the same colour dashed. Saved as PDF (TrueType fonts,
``pdf.fonttype = 42``) and PNG, each written atomically. With several seeds per point the
mean over seeds is drawn and the band is the combined standard error
``sqrt(sum se_i^2 / k^2 + var_between / k)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from iclkit.io import save_figure as save_figure_atomically
from iclkit.theory.validation import ParameterError

from .sweep import FIGURES, read_results

__all__ = ["FigureResult", "draw_figure"]

_X = {"fig2": ("B", "number of training prompts B"), "fig3": ("d", "dimension d"),
      "fig4": ("D", "hidden size D")}  # fmt: skip
_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]  # Okabe-Ito


@dataclass(frozen=True)
class FigureResult:
    """Paths of the written files and the aggregated points that were drawn."""

    figure: str
    pdf: str
    png: str
    points: pd.DataFrame


def _aggregate(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    def combine(g: pd.DataFrame) -> pd.Series:
        k = len(g)
        mean = float(g["excess_risk"].mean())
        var_mc = float((g["excess_risk_se"] ** 2).sum()) / k**2
        var_between = float(g["excess_risk"].var(ddof=1)) / k if k > 1 else 0.0
        return pd.Series({"excess_risk": mean, "se": math.sqrt(var_mc + var_between), "seeds": k})

    return frame.groupby(keys).apply(combine, include_groups=False).reset_index()


def _save(fig: Any, path_stem: str) -> tuple[str, str]:
    pdf, png = save_figure_atomically(fig, path_stem, bbox_inches="tight", dpi=150)
    return pdf, png


def _band(ax: object, x: np.ndarray, y: np.ndarray, se: np.ndarray, **kw: object) -> None:
    lo = np.maximum(y - se, y * 1e-3)  # keep the band positive on log axes
    ax.plot(x, y, **kw)  # type: ignore[attr-defined]
    ax.fill_between(x, lo, y + se, color=kw.get("color"), alpha=0.18, linewidth=0)  # type: ignore[attr-defined]


def draw_figure(figure: str, results: str | pd.DataFrame, out_stem: str) -> FigureResult:
    """Draw ``figure`` from a results folder (or its rows) to ``out_stem``.pdf and .png.

    Parameters
    ----------
    figure : "fig1" | "fig2" | "fig3" | "fig4"
    results : folder of ``cell-*.parquet`` files, or the rows as a DataFrame.
    out_stem : output path without extension.
    """
    if figure not in FIGURES:
        raise ParameterError(f"figure must be one of {FIGURES}, got {figure!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = read_results(results) if isinstance(results, str) else results
    frame = frame[frame["figure"] == figure]
    if frame.empty:
        raise ParameterError(f"--results: no rows for {figure}")
    methods = {"transformer": "-", "em": "--"}
    frame = frame[frame["method"].isin(list(methods))]
    snrs = sorted(frame["snr"].unique())
    colour = {s: _COLOURS[i % len(_COLOURS)] for i, s in enumerate(snrs)}
    with plt.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42, "font.size": 9}):
        if figure == "fig1":
            Ks = sorted(frame["K"].unique())
            fig, axes = plt.subplots(
                1, len(Ks), figsize=(3.0 * len(Ks), 2.9), squeeze=False, sharey=True
            )
            pts = _aggregate(frame, ["K", "snr", "method", "position"])
            for ax, K in zip(axes[0], Ks, strict=True):
                for s in snrs:
                    for meth, ls in methods.items():
                        g = pts[(pts.K == K) & (pts.snr == s) & (pts.method == meth)]
                        g = g.sort_values("position")
                        if g.empty:
                            continue
                        _band(
                            ax,
                            g["position"].to_numpy(float),
                            g["excess_risk"].to_numpy(float),
                            g["se"].to_numpy(float),
                            color=colour[s],
                            linestyle=ls,
                            marker="o" if meth == "transformer" else None,
                            markersize=2.5,
                            label=f"{'TF' if meth == 'transformer' else 'EM'}, SNR {s:g}",
                        )
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_title(f"K = {K}")
                ax.set_xlabel("prompt length n")
                ax.grid(True, which="both", alpha=0.25)
            axes[0][0].set_ylabel("excess test risk")
            axes[0][-1].legend(fontsize=7, frameon=False)
        else:
            xkey, xlabel = _X[figure]
            sub = frame[frame["position"] == frame["n"]]
            if figure == "fig2":
                sub = sub[sub["B"].notna()]
            pts = _aggregate(sub, ["snr", "method", xkey])
            fig, ax = plt.subplots(figsize=(4.2, 3.2))
            for s in snrs:
                for meth, ls in methods.items():
                    g = pts[(pts.snr == s) & (pts.method == meth)].sort_values(xkey)
                    if g.empty:
                        continue
                    _band(
                        ax,
                        g[xkey].to_numpy(float),
                        g["excess_risk"].to_numpy(float),
                        g["se"].to_numpy(float),
                        color=colour[s],
                        linestyle=ls,
                        marker="o" if meth == "transformer" else None,
                        markersize=3,
                        label=f"{'TF' if meth == 'transformer' else 'EM'}, SNR {s:g}",
                    )
            if figure in ("fig2", "fig4"):
                ax.set_xscale("log", base=2 if figure == "fig4" else 10)
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("excess test risk (full prompt)")
            ax.grid(True, which="both", alpha=0.25)
            ax.legend(fontsize=7, frameon=False)
        K_txt = "" if figure == "fig1" else f", K = {int(frame['K'].iloc[0])}"
        fig.suptitle(f"MoR {figure}: transformer (solid) vs EM (dashed){K_txt}", fontsize=9, y=1.02)
        pdf, png = _save(fig, out_stem)
        plt.close(fig)
    return FigureResult(figure, pdf, png, pts)
