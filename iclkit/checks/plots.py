"""Figures of the checks: log-log rate plots with the fitted line and the theorem's slope.

matplotlib with the Agg backend, TrueType fonts in PDF (``pdf.fonttype = 42``); every figure is
saved as PDF and PNG, atomically (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iclkit.io import save_figure as save_figure_atomically
from iclkit.theory.rates import RateFit

__all__ = ["rate_plot", "save_figure"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["pdf.fonttype"] = 42
    matplotlib.rcParams["ps.fonttype"] = 42
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out_dir: Path, stem: str) -> tuple[str, ...]:
    """Save ``fig`` as ``out_dir/stem.png`` and ``.pdf`` atomically; returns the file names."""
    paths = save_figure_atomically(
        fig, out_dir / stem, formats=("png", "pdf"), dpi=120, bbox_inches="tight"
    )
    names = [Path(p).name for p in paths]
    _pyplot().close(fig)
    return tuple(names)


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
    plt = _pyplot()
    x = np.asarray(xs, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    e2 = e if e.ndim == 2 else e[:, None]
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for s in range(e2.shape[1]):
        ax.scatter(x, e2[:, s], s=8, color="0.6", alpha=0.6, label="seeds" if s == 0 else None)
    mean = e2.mean(axis=1)
    ax.plot(x, mean, "o", color="C0", label="mean over seeds")
    ax.plot(x, fit.predict(x), "-", color="C0", label=f"fit: slope {fit.slope:.3f}")
    ref = mean[0] * (x / x[0]) ** expected_slope
    ax.plot(x, ref, "--", color="C3", label=f"theorem: slope {expected_slope:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(FixedLocator(x.tolist()))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, out_dir, stem)
