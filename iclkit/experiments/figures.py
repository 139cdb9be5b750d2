"""Figures 1-4 of the MoR paper (arXiv 2410.14183, Section 6 of v2), drawn from sweep results.

What each figure plots follows the issue brief and the v1 reviews (``docs/provenance.md`` §9 [READ
reviews / brief]); the exact axes of the paper are [NOT FOUND]:

- fig1: excess test risk vs prompt length n, one panel per K (2, 3, 5, 20); log-log axes.
- fig2: excess test risk at the full prompt vs the number of training prompts B; log-log.
- fig3: excess test risk at the full prompt vs the dimension d; log y.
- fig4: excess test risk at the full prompt vs the hidden size D; log-log (base 2 in x).

One colour per SNR; the transformer is a solid line with a +-1 standard-error band, the EM
baseline (random init, ``em``) the same colour dashed, EM from the spectral start
(``em_spectral``) dash-dotted. Where the rows hold it (fig1), the Bayes floor of the data model
itself (``bayes_floor``, :mod:`iclkit.experiments.evaluation`: posterior mean with sigma coupled
to the components, on a subset of the same held-out prompts; chains started at the true
components) is a thick dotted line, and the same sampler with chains started from the prior
(``bayes_floor_prior_start``) a thin dotted line with triangles: where the two differ the
chains have not mixed, and the floor lies between them. Fig1's y
axis is clipped at :data:`CLIP_FACTOR` times the largest transformer or floor value (plus its
SE), so that EM curves that run away at short prompts do not squash the rest; a curve's points
above the limit are drawn as triangles on the upper edge (``off_scale`` in the returned
points). Every curve is excess risk over the oracle, so the oracle is the 0 line (not
drawable on a log axis; the title says so). Drawn on a figure that pyplot never
sees (:func:`iclkit.io.new_figure`) and saved as PDF (TrueType fonts) and PNG, each written
atomically (:func:`iclkit.io.save_figure`). With several seeds per point the
mean over seeds is drawn and the band is the combined standard error
``sqrt(sum se_i^2 / k^2 + var_between / k)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

from iclkit.io import COLORS, new_figure, save_figure
from iclkit.theory.validation import ParameterError

from .cells import FIGURES
from .evaluation import BAYES_FLOOR, BAYES_FLOOR_PRIOR_START
from .storage import read_results

__all__ = ["FigureResult", "draw_figure"]

_X = {"fig2": ("B", "number of training prompts B"), "fig3": ("d", "dimension d"),
      "fig4": ("D", "hidden size D")}  # fmt: skip

#: Method drawn -> (line style, marker, line width, legend label).
_METHODS: dict[str, tuple[str, str | None, float, str]] = {
    "transformer": ("-", "o", 1.5, "TF"),
    "em": ("--", None, 1.5, "EM, random start"),
    "em_spectral": ("-.", None, 1.5, "EM, spectral start"),
    BAYES_FLOOR: (":", None, 2.5, "Bayes floor"),
    BAYES_FLOOR_PRIOR_START: (":", "v", 0.8, "Bayes floor, chains from prior"),
}

#: Fig1's upper y limit is this many times the largest transformer / Bayes-floor value + SE.
CLIP_FACTOR = 4.0
#: Methods whose values set fig1's y range.
_SCALE_METHODS = ("transformer", BAYES_FLOOR)
#: Off-scale markers sit this fraction below the upper limit (log axis).
_EDGE = 0.93

FONT_SIZE = 9  # points: legible at a single-column width of ~3.3 in
LEGEND_FONT_SIZE = 7
PANEL_SIZE = (3.0, 2.9)  # inches, one fig1 panel per K
SINGLE_SIZE = (4.2, 3.2)  # inches, figs 2-4
BAND_ALPHA = 0.18  # opacity of the +-1 standard-error band
GRID_ALPHA = 0.25

#: The band's lower edge is kept above this fraction of the curve, so it stays positive (and
#: drawable) on a log axis when the standard error exceeds the mean.
_BAND_FLOOR = 1e-3


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


def _band(ax: Any, x: np.ndarray, y: np.ndarray, se: np.ndarray, **kw: Any) -> None:
    lo = np.maximum(y - se, y * _BAND_FLOOR)
    ax.plot(x, y, **kw)
    ax.fill_between(x, lo, y + se, color=kw.get("color"), alpha=BAND_ALPHA, linewidth=0)


def _curves(ax: Any, pts: pd.DataFrame, xkey: str, snrs: list[float], markersize: float) -> None:
    """One curve with its band per SNR (colour) and method (line style), along ``xkey``."""
    for i, s in enumerate(snrs):
        for meth, (ls, marker, width, label) in _METHODS.items():
            g = pts[(pts.snr == s) & (pts.method == meth)].sort_values(xkey)
            if g.empty:
                continue
            _band(
                ax,
                g[xkey].to_numpy(float),
                g["excess_risk"].to_numpy(float),
                g["se"].to_numpy(float),
                color=COLORS[i % len(COLORS)],
                linestyle=ls,
                linewidth=width,
                marker=marker,
                markersize=markersize,
                label=f"{label}, SNR {s:g}",
            )


def _upper_limit(pts: pd.DataFrame) -> float:
    """:data:`CLIP_FACTOR` times the largest transformer / floor value + SE (inf if none)."""
    ref = pts[pts.method.isin(_SCALE_METHODS)]
    vals = (ref["excess_risk"] + ref["se"]).to_numpy(float)
    vals = vals[np.isfinite(vals)]
    return float(CLIP_FACTOR * vals.max()) if vals.size else math.inf


def _lower_limit(pts: pd.DataFrame, top: float) -> float:
    """The smallest positive value of any drawn curve / 1.5 (the panels share their y axis)."""
    lows = pts["excess_risk"].to_numpy(float)
    lows = lows[np.isfinite(lows) & (lows > 0)]
    return float(lows.min()) / 1.5 if lows.size else top / 100


def _mark_off_scale(
    ax: Any, pts: pd.DataFrame, snrs: list[float], bottom: float, top: float
) -> None:
    """Clip the y axis to [bottom, top]; triangles on the upper edge where a curve leaves it."""
    ax.set_ylim(bottom, top)
    label: str | None = "off scale (above the axis)"
    for i, s in enumerate(snrs):
        off = pts[(pts.snr == s) & pts.off_scale]
        if off.empty:
            continue
        ax.plot(
            off["position"].to_numpy(float),
            np.full(len(off), top * _EDGE),
            linestyle="none",
            marker="^",
            markersize=4,
            color=COLORS[i % len(COLORS)],
            label=label,
        )
        label = None


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
    frame = read_results(results) if isinstance(results, str) else results
    frame = frame[frame["figure"] == figure]
    if frame.empty:
        raise ParameterError(f"--results: no rows for {figure}")
    frame = frame[frame["method"].isin(list(_METHODS))]
    snrs = sorted(frame["snr"].unique())
    with matplotlib.rc_context({"font.size": FONT_SIZE}):
        if figure == "fig1":
            Ks = sorted(frame["K"].unique())
            fig = new_figure(figsize=(PANEL_SIZE[0] * len(Ks), PANEL_SIZE[1]))
            axes = fig.subplots(1, len(Ks), squeeze=False, sharey=True)
            pts = _aggregate(frame, ["K", "snr", "method", "position"])
            top = _upper_limit(pts)
            pts["off_scale"] = pts["excess_risk"] > top
            for ax, K in zip(axes[0], Ks, strict=True):
                panel = pts[pts.K == K]
                _curves(ax, panel, "position", snrs, markersize=2.5)
                if math.isfinite(top):
                    _mark_off_scale(ax, panel, snrs, _lower_limit(pts, top), top)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_title(f"K = {K}")
                ax.set_xlabel("prompt length n")
                ax.grid(True, which="both", alpha=GRID_ALPHA)
            axes[0][0].set_ylabel("excess test risk over the oracle")
            legend: dict[str, Any] = {}
            for ax in axes[0]:
                for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                    legend.setdefault(lab, h)
            labels, handles = list(legend), list(legend.values())
            fig.legend(
                handles,
                labels,
                fontsize=LEGEND_FONT_SIZE,
                frameon=False,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.06),
                ncol=len(snrs),  # one column per SNR
            )
        else:
            xkey, xlabel = _X[figure]
            sub = frame[frame["position"] == frame["n"]]
            if figure == "fig2":
                sub = sub[sub["B"].notna()]
            pts = _aggregate(sub, ["snr", "method", xkey])
            fig = new_figure(figsize=SINGLE_SIZE)
            ax = fig.subplots()
            _curves(ax, pts, xkey, snrs, markersize=3)
            if figure in ("fig2", "fig4"):
                ax.set_xscale("log", base=2 if figure == "fig4" else 10)
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("excess test risk (full prompt)")
            ax.grid(True, which="both", alpha=GRID_ALPHA)
            ax.legend(fontsize=LEGEND_FONT_SIZE, frameon=False)
        K_txt = "" if figure == "fig1" else f", K = {int(frame['K'].iloc[0])}"
        fig.suptitle(
            f"MoR {figure}: transformer (solid) vs EM (dashed){K_txt}; oracle = 0"
            + (
                f"; y clipped at {CLIP_FACTOR:g}x the TF / floor maximum"
                if figure == "fig1"
                else ""
            ),
            fontsize=FONT_SIZE,
            y=1.02,
        )
        pdf, png = save_figure(fig, out_stem)
    return FigureResult(figure, pdf, png, pts)
