"""Training-loss curves of transformers trained on MoR prompts (arXiv 2410.14183, Section 6 of v2).

:func:`draw_loss_curves` draws the per-step training loss of :func:`.training.train` (the squared
error averaged over prompt positions 1..n) of several models against the step, smoothed by a
running mean over ``window`` steps, with optional horizontal reference levels, e.g. Var y (the
loss of the zero predictor, the level of the plateau) and the oracle's loss
E(y - x^T w_orc)^2 with w_orc = sum_k pi_k beta_k. Drawn on :func:`iclkit.io.new_figure` and saved
as PDF and PNG by :func:`iclkit.io.save_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import matplotlib
import torch

from iclkit.io import COLORS, new_figure, save_figure
from iclkit.theory.validation import ParameterError, check_choice, check_int, check_real

__all__ = ["draw_loss_curves", "running_mean"]

FONT_SIZE = 8  # points
FIGURE_SIZE = (5.0, 3.2)  # inches
#: Default smoothing window in steps: the per-step loss of a batch of 64 prompts fluctuates by
#: a few percent; 50 steps make the curves readable without hiding a plateau exit (~100 steps).
DEFAULT_WINDOW = 50
REFERENCE_GREY = "0.45"
#: Legend positions accepted by :func:`draw_loss_curves` (matplotlib's names).
LegendLoc = Literal[
    "best", "upper right", "upper left", "lower left", "lower right", "center right", "center left"
]


def running_mean(losses: torch.Tensor, window: int) -> torch.Tensor:
    """Trailing mean of ``losses : (S,)`` over the last ``min(window, s + 1)`` steps at each
    step s: (S,) float64."""
    window = check_int(window, "window", minimum=1)
    x = torch.as_tensor(losses, dtype=torch.float64).reshape(-1)
    csum = torch.cat([x.new_zeros(1), torch.cumsum(x, 0)])
    s = torch.arange(x.numel())
    lo = (s + 1 - window).clamp_min(0)
    return (csum[s + 1] - csum[lo]) / (s + 1 - lo)


def draw_loss_curves(
    curves: Mapping[str, torch.Tensor],
    out_stem: str,
    *,
    references: Mapping[str, float] | None = None,
    window: int = DEFAULT_WINDOW,
    title: str = "",
    legend_loc: LegendLoc = "best",
    ylim: tuple[float, float] | None = None,
) -> tuple[str, str]:
    """Training loss vs step, one line per entry of ``curves`` (label -> (steps,) losses), and a
    dashed horizontal line per entry of ``references`` (label -> level); returns (pdf, png).
    ``legend_loc`` is matplotlib's legend location ("best" ignores the reference lines);
    ``ylim`` the loss axis' range (None: matplotlib's)."""
    if not curves:
        raise ParameterError("curves: no loss curve to draw")
    for name, losses in curves.items():
        x = torch.as_tensor(losses)
        if x.dim() != 1 or x.numel() < 1 or not bool(torch.isfinite(x).all()):
            raise ParameterError(f"curves[{name!r}] must be a non-empty finite 1-D loss trace")
    check_choice(legend_loc, "legend_loc", get_args(LegendLoc))
    refs = dict(references or {})
    for name, level in refs.items():
        check_real(level, f"references[{name!r}]")
    with matplotlib.rc_context({"font.size": FONT_SIZE}):
        fig = new_figure(figsize=FIGURE_SIZE, layout="constrained")
        ax = fig.subplots()
        for i, (name, losses) in enumerate(curves.items()):
            y = running_mean(torch.as_tensor(losses), window)
            ax.plot(range(1, y.numel() + 1), y.numpy(), color=COLORS[i % len(COLORS)], label=name)
        for j, (name, level) in enumerate(refs.items()):
            style = ("--", ":", "-.")[j % 3]
            ax.axhline(level, color=REFERENCE_GREY, linestyle=style, linewidth=1, label=name)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"training loss (mean of last {window} steps)")
        if title:
            ax.set_title(title, fontsize=FONT_SIZE)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=FONT_SIZE - 1, frameon=False, loc=legend_loc)
        pdf, png = save_figure(fig, out_stem)
    return pdf, png
