"""Figures of the checks: log-log rate plots with the fitted line and the theorem's slope, and
a linear-fit plot for the iteration count of gradient EM.

Drawn on :func:`iclkit.io.new_figure` (never pyplot, so no backend is switched) and saved as PNG
and PDF with :func:`iclkit.io.save_figure` (atomic, TrueType fonts).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

from iclkit.io import new_figure, save_figure
from iclkit.theory.rates import RateFit

__all__ = ["line_plot", "rate_plot"]

#: Size of every check figure (inches): one column of a two-column page.
FIGSIZE = (4.6, 3.4)
#: Resolution of the PNG files: readable in the Markdown report, small on disk.
DPI = 120


def _save(fig: Any, out_dir: Path, stem: str) -> tuple[str, ...]:
    """Save ``fig`` as ``out_dir/stem.png`` and ``.pdf``; returns the file names."""
    paths = save_figure(fig, out_dir / stem, formats=("png", "pdf"), dpi=DPI)
    return tuple(Path(p).name for p in paths)


def rate_plot(
    out_dir: Path | None,
    stem: str,
    xs: Sequence[float] | np.ndarray,
    errors: np.ndarray,
    fit: RateFit,
    *,
    expected_slope: float,
    xlabel: str,
    ylabel: str,
    title: str,
) -> tuple[str, ...]:
    """Log-log plot of ``errors`` (P,) or (P, S) vs ``xs`` with the fit and the theorem's slope.

    Returns the written file names (empty when ``out_dir`` is None).
    """
    if out_dir is None:
        return ()
    x = np.asarray(xs, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    e2 = e if e.ndim == 2 else e[:, None]
    fig = new_figure(figsize=FIGSIZE)
    ax = fig.subplots()
    for s in range(e2.shape[1]):
        ax.scatter(x, e2[:, s], s=8, color="0.6", alpha=0.6, label="seeds" if s == 0 else None)
    mean = e2.mean(axis=1)
    ax.plot(x, mean, "o", color="C0", label="mean over seeds")
    ax.plot(x, fit.predict(x), "-", color="C0", label=f"fit: slope {fit.slope:.3f}")
    ref = mean[0] * (x / x[0]) ** expected_slope
    ax.plot(x, ref, "--", color="C3", label=f"theorem: slope {expected_slope:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(x.tolist()))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, stem)


def line_plot(
    out_dir: Path | None,
    stem: str,
    x: np.ndarray,
    y: Sequence[float],
    fit: tuple[float, float],
    *,
    expected_slope: float,
    labels: tuple[str, str, str],
) -> tuple[str, ...]:
    """Linear plot of measured ``y`` vs ``x`` with the fitted line ``(slope, intercept)`` and a
    line of the predicted slope through the first point.

    ``labels`` is ``(xlabel, ylabel, title)``. Returns the file names (empty without
    ``out_dir``).
    """
    if out_dir is None:
        return ()
    slope, intercept = fit
    fig = new_figure(figsize=FIGSIZE)
    ax = fig.subplots()
    ax.plot(x, y, "o", label="measured")
    ax.plot(x, intercept + slope * x, "-", label=f"fit: slope {slope:.2f}")
    ax.plot(
        x,
        y[0] + expected_slope * (x - x[0]),
        "--",
        color="C3",
        label=f"predicted slope {expected_slope:.2f}",
    )
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(labels[2], fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, stem)
