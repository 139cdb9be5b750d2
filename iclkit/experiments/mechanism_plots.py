"""Figures of the mechanism metrics (:mod:`.mechanism_run`): layer-vs-iteration heatmaps and
per-layer probe curves, drawn from the stored tables on :func:`iclkit.io.new_figure` and saved
as PDF and PNG by :func:`iclkit.io.save_figure`.

- :func:`draw_alignment`: one panel per model; cell (layer l, iterate k) is the cosine between
  the model's prediction read out after layer l and gradient EM's prediction after k iterations
  (arXiv 2410.14183's algorithm of Theorem 3.1), over the same held-out prompts.
- :func:`draw_probes`: held-out R^2 of a linear probe of ``w_orc`` (solid) and of the last
  gradient-EM iterate ``w^(T)`` (dashed) against the relative depth of each model.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib
import pandas as pd

from iclkit.io import COLORS, new_figure, save_figure
from iclkit.theory.validation import ParameterError

__all__ = ["draw_alignment", "draw_probes"]

FONT_SIZE = 8  # points
TITLE_FONT_SIZE = 8
PANEL_WIDTH, PANEL_HEIGHT = 2.6, 2.6  # inches per panel
#: Heatmaps with at most this many cells are annotated with their values.
_ANNOTATE_MAX_CELLS = 80
#: Cosine colour range: -1 (opposite) to 1 (the same prediction vector up to scale).
_COSINE_RANGE = (-1.0, 1.0)
_MARKER_MAX_LAYERS = 20
#: Annotations are written in white on dark cells: a gap cell below this normalised colour
#: value (viridis is dark at the low end), a cosine cell farther than half of it from 0.5.
_DARK_CELL = 0.6
_COSINE_CMAP, _GAP_CMAP = "RdBu_r", "viridis"
#: Smallest gap of the log colour scale (an exact zero, e.g. a model against itself, is
#: drawn in the lowest colour).
_GAP_FLOOR = 1e-12


def _check(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if frame.empty or missing:
        raise ParameterError(f"{what}: no rows to draw (missing columns {missing})")


def _heatmap(ax: Any, grid: pd.DataFrame, depth: pd.Series, norm: Any, cmap: str, fmt: str) -> Any:
    """One (layer x iterate) panel; annotated (with the unclipped values) when small."""
    values = grid.to_numpy()
    shown = values.clip(min=norm.vmin) if cmap == _GAP_CMAP else values
    image = ax.imshow(shown, origin="lower", aspect="auto", cmap=cmap, norm=norm)
    ax.set_xticks(range(grid.shape[1]), [str(k) for k in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(depth[r]) for r in grid.index])
    if grid.size <= _ANNOTATE_MAX_CELLS:
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                v = values[i, j]
                u = float(norm(shown[i, j]))
                dark = u < _DARK_CELL if cmap == _GAP_CMAP else abs(u - 0.5) > _DARK_CELL / 2
                ax.text(
                    j, i, "nan" if math.isnan(v) else format(v, fmt), ha="center", va="center",
                    fontsize=FONT_SIZE - 2, color="white" if dark else "black",
                )  # fmt: skip
    return image


def draw_alignment(frame: pd.DataFrame, out_stem: str) -> tuple[str, str]:
    """Heatmaps per model from the ``alignment`` table (top: cosine; bottom: mean squared gap,
    log colour scale); returns (pdf, png)."""
    _check(frame, ("model", "layer", "depth", "iterate", "cosine", "mse_gap"), "alignment")
    from matplotlib.colors import LogNorm, Normalize

    models = list(dict.fromkeys(frame["model"]))
    positive = frame["mse_gap"][frame["mse_gap"] > 0]
    lo = float(positive.min()) if len(positive) else _GAP_FLOOR
    hi = max(float(frame["mse_gap"].max()), lo * 10)
    cos_norm, gap_norm = Normalize(*_COSINE_RANGE), LogNorm(max(lo, _GAP_FLOOR), hi, clip=True)
    with matplotlib.rc_context({"font.size": FONT_SIZE}):
        fig = new_figure(
            figsize=(PANEL_WIDTH * len(models) + 1.0, 2 * PANEL_HEIGHT), layout="constrained"
        )
        axes = fig.subplots(2, len(models), squeeze=False)
        images: list[Any] = [None, None]
        for col, name in enumerate(models):
            sub = frame[frame["model"] == name]
            depth = sub.groupby("layer")["depth"].first()
            for row, (value, norm, cmap, fmt) in enumerate(
                (("cosine", cos_norm, _COSINE_CMAP, ".2f"), ("mse_gap", gap_norm, _GAP_CMAP, ".1e"))
            ):
                grid = sub.pivot_table(index="layer", columns="iterate", values=value)
                ax = axes[row, col]
                images[row] = _heatmap(ax, grid, depth, norm, cmap, fmt)
                ax.set_xlabel("gradient-EM iterate k")
                ax.set_ylabel("layer")
            axes[0, col].set_title(name, fontsize=TITLE_FONT_SIZE)
        fig.colorbar(images[0], ax=list(axes[0]), label="cosine of prediction vectors")
        fig.colorbar(images[1], ax=list(axes[1]), label="mean squared gap")
        fig.suptitle(
            "layer read-out vs gradient-EM iterate, same held-out prompts",
            fontsize=TITLE_FONT_SIZE,
        )
        pdf, png = save_figure(fig, out_stem)
    return pdf, png


def draw_probes(frame: pd.DataFrame, out_stem: str) -> tuple[str, str]:
    """Probe R^2 of ``w_orc`` and of the last iterate vs relative depth; returns (pdf, png)."""
    _check(frame, ("model", "layer", "depth", "target", "iterate", "r2"), "probes")
    models = list(dict.fromkeys(frame["model"]))
    last = int(frame["iterate"].max())
    with matplotlib.rc_context({"font.size": FONT_SIZE}):
        fig = new_figure(figsize=(5.0, 3.2), layout="constrained")
        ax = fig.subplots()
        lows = [-0.1]
        for i, name in enumerate(models):
            sub = frame[frame["model"] == name]
            top = max(1, int(sub["depth"].max()))
            for target, k, style in (("w_orc", -1, "-"), ("iterate", last, "--")):
                rows = sub[(sub["target"] == target) & (sub["iterate"] == k)].sort_values("layer")
                marker = "o" if len(rows) < _MARKER_MAX_LAYERS else None
                label = f"{name}: " + ("w_orc" if k < 0 else f"w^({k})")
                ax.plot(rows["depth"] / top, rows["r2"], style, marker=marker, markersize=3,
                        color=COLORS[i % len(COLORS)], label=label)  # fmt: skip
                lows.append(float(rows["r2"].min()))
        ax.set_xlabel("relative depth (layer / L)")
        ax.set_ylabel("probe R^2 (held-out prompts)")
        ax.set_ylim(max(-1.0, min(lows)), 1.05)
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=FONT_SIZE - 2, frameon=False, loc="best")
        pdf, png = save_figure(fig, out_stem)
    return pdf, png
