"""The shared steps of a rate check: errors over a grid, a log-log slope fit, its plot, and the
acceptance band around the theorem's exponent.

Every ``*.rate_*`` check (and the other slope checks) measures an error or a time on a grid of
``n``, ``d``, ``K`` or ``B``, fits ``error ~ c x^slope`` with :func:`iclkit.theory.rates.fit_rate`
(bootstrap over seed groups) and compares the slope with the exponent of the theorem's rate
from :mod:`iclkit.theory.bounds`. The tolerance shows the slope's confidence interval next to the
band, and a slope whose interval lies entirely outside the band FAILs even when the point
estimate is inside. This module holds those steps once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from iclkit.theory.rates import RateFit, fit_rate

from .plots import rate_plot
from .registry import CheckContext, Outcome

__all__ = [
    "PlotLabels",
    "SlopeBand",
    "ci_outside",
    "fit_and_plot",
    "rate_check",
    "rate_details",
    "rms_by_group",
    "slope_outcome",
    "slope_resolution",
]


@dataclass(frozen=True)
class PlotLabels:
    """Axis labels and title of a rate plot."""

    xlabel: str
    ylabel: str
    title: str


@dataclass(frozen=True)
class SlopeBand:
    """Acceptance band ``[low, high]`` of a fitted slope."""

    low: float
    high: float

    @classmethod
    def at_most(cls, high: float) -> SlopeBand:
        """The one-sided band ``slope <= high`` (for an upper bound)."""
        return cls(-math.inf, high)

    @classmethod
    def around(cls, expected: float, half_width: float) -> SlopeBand:
        """``[expected - half_width, expected + half_width]``."""
        return cls(expected - half_width, expected + half_width)

    def holds(self, fit: RateFit) -> bool:
        return fit.within(self.low, self.high)

    @property
    def text(self) -> str:
        """``"slope in [low, high]"`` (or ``"slope <= high"``): the band of a tolerance."""
        if self.low == -math.inf:
            return f"slope <= {self.high:.2f}"
        return f"slope in [{self.low:.2f}, {self.high:.2f}]"


def rms_by_group(values: torch.Tensor | np.ndarray, groups: int) -> np.ndarray:
    """Root-mean-square of ``values`` (B,) over each of ``groups`` consecutive equal groups.

    The seed groups are independent samples, so the rate fit bootstraps over them.

    Returns
    -------
    (groups,)
    """
    v = values.detach().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    v = v.reshape(groups, -1)
    return np.sqrt((v**2).mean(axis=1))


def fit_and_plot(
    ctx: CheckContext,
    stem: str,
    xs: Sequence[float],
    errors: np.ndarray,
    *,
    expected: float,
    labels: PlotLabels,
    fit_values: np.ndarray | None = None,
) -> tuple[RateFit, tuple[str, ...]]:
    """Fit the log-log slope of ``errors`` (P, S) vs ``xs`` and plot it against the theorem's.

    Parameters
    ----------
    ctx : the check's context (bootstrap seed, output folder)
    stem : file name of the plot without suffix
    xs : (P,) grid
    errors : (P,) or (P, S) values per grid point and seed group (all plotted)
    expected : the theorem's exponent (the reference line of the plot)
    labels : axis labels and title
    fit_values : (P,) or (P, S), optional
        What is fitted, when not ``errors`` (e.g. a seed mean that is positive where single
        seeds may not be).

    Returns
    -------
    (RateFit, names of the plot files)
    """
    fit = fit_rate(xs, errors if fit_values is None else fit_values, seed=ctx.stream_seed)
    plots = rate_plot(
        ctx.out_dir,
        stem,
        xs,
        errors,
        fit,
        expected_slope=expected,
        xlabel=labels.xlabel,
        ylabel=labels.ylabel,
        title=labels.title,
    )
    return fit, plots


def rate_details(
    fit: RateFit, xs: Sequence[float], errors: np.ndarray, *, xs_key: str = "xs"
) -> dict[str, Any]:
    """The report details of a rate fit: the fit, the grid and the mean error per grid point."""
    return {"fit": fit.as_dict(), xs_key: list(xs), "mean_error": errors.mean(axis=1).tolist()}


def ci_outside(fit: RateFit, band: SlopeBand) -> bool:
    """True when the slope's confidence interval lies entirely outside ``band`` (an interval
    that cannot be formed, ``nan``, is never outside)."""
    lo, hi = fit.ci_low, fit.ci_high
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return False
    return hi < band.low or lo > band.high


def slope_outcome(
    fit: RateFit,
    expected: float,
    band: SlopeBand,
    reason: str,
    details: Mapping[str, Any],
    plots: tuple[str, ...] = (),
    *,
    also: tuple[bool, str] = (True, ""),
) -> Outcome:
    """The outcome of a slope check: passed when the slope is in ``band``, its confidence
    interval does not lie entirely outside ``band``, and ``also[0]`` holds.

    The measured value is the slope rounded to 4 decimals; the tolerance is the band with the
    fit's interval next to it, the extra condition's text ``also[1]`` and ``": "`` + ``reason``.
    """
    outside = ci_outside(fit, band)
    passed = band.holds(fit) and not outside and also[0]
    level = f"{fit.confidence:.0%}"
    interval = f"{level} CI [{fit.ci_low:.3f}, {fit.ci_high:.3f}]"
    tolerance = f"{band.text}, {interval} not wholly outside{also[1]}: {reason}"
    report = {**details, "ci_outside_band": outside, "band": [band.low, band.high]}
    res, note = slope_resolution(fit, expected, band)
    return Outcome(
        passed,
        round(fit.slope, 4),
        expected,
        tolerance,
        report,
        plots,
        resolution=res,
        resolution_note=note,
    )


def slope_resolution(fit: RateFit, expected: float, band: SlopeBand) -> tuple[float | None, str]:
    """The smallest relative error in the exponent that makes a slope check FAIL: the band's
    half-width (for a one-sided band, its distance from ``expected``) over ``|expected|``, with
    the fit's CI half-width (the measured noise) in the note. None when ``expected`` is 0."""
    half = (band.high - band.low) / 2 if math.isfinite(band.low) else band.high - expected
    h = (fit.ci_high - fit.ci_low) / 2
    noise = f"CI half-width {h:.3f}" if math.isfinite(h) else "no CI"
    if expected == 0:
        return None, f"band half-width {half:.3f} around 0 (absolute); {noise}"
    rel = abs(half) / abs(expected)
    side = "half-width" if math.isfinite(band.low) else "distance of the one-sided bound"
    note = (
        f"band {side} {abs(half):.3f} / |exponent {expected:.4g}|; noise: {noise} "
        f"({h / abs(expected):.1%} of the exponent)"
    )
    return rel, note


def rate_check(
    ctx: CheckContext,
    stem: str,
    xs: Sequence[float],
    errors: np.ndarray,
    *,
    expected: float,
    band: SlopeBand,
    labels: PlotLabels,
    reason: str,
    details: Mapping[str, Any],
    xs_key: str = "xs",
    also: tuple[bool, str] = (True, ""),
) -> Outcome:
    """A whole rate check: fit and plot ``errors`` (P, S) vs ``xs`` (:func:`fit_and_plot`),
    report the fit (:func:`rate_details`, then ``details``) and judge the slope against
    ``band`` (:func:`slope_outcome`)."""
    fit, plots = fit_and_plot(ctx, stem, xs, errors, expected=expected, labels=labels)
    report = {**rate_details(fit, xs, errors, xs_key=xs_key), **details}
    return slope_outcome(fit, expected, band, reason, report, plots, also=also)
