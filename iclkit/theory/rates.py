"""Rate fitting: the exponent of a power law ``error ~ c x^slope`` by log-log least squares.

Every rate claim of the papers (``O(sqrt(d/n))``, ``O((d/n)^(1/4))``, ``O(L/sqrt(B))``, phase
times ``~ K^2``) is checked by fitting the slope of ``log error`` against ``log x`` and comparing it
with the theorem's exponent inside a stated band (the diffrax order-of-convergence pattern).

With repeated runs (``errors`` of shape ``(n_points, n_seeds)``) the point estimate fits the
log of the mean over seeds, and the confidence interval is a percentile bootstrap over seeds
(columns resampled with replacement, seeded, so the CI is reproducible). With one run per point
the interval is the classical t-interval of the least-squares slope.

:func:`fit_line` is the one plain least-squares line of the package (no interval): log-log
slopes of phase times and loss curves, and semi-log decay rates of a loss gap, with the
windowing and resampling those callers need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .validation import ParameterError, as_float_array, check_int, check_real, check_seed

__all__ = ["LineFit", "RateFit", "fit_line", "fit_rate"]


@dataclass(frozen=True)
class RateFit:
    """Result of :func:`fit_rate`: ``error ~ exp(intercept) * x^slope``.

    Attributes
    ----------
    slope, intercept : float
        Least-squares fit of ``log(mean error)`` on ``log x``.
    ci_low, ci_high : float
        Confidence interval of the slope at level ``confidence`` (``nan`` when it cannot be
        formed: two points and one seed).
    r2 : float
        Coefficient of determination of the point fit.
    n_points, n_seeds : int
    confidence : float
    method : str
        ``"bootstrap over seeds"`` or ``"t-interval"``.
    """

    slope: float
    intercept: float
    ci_low: float
    ci_high: float
    r2: float
    n_points: int
    n_seeds: int
    confidence: float
    method: str

    def predict(self, x: float | np.ndarray) -> np.ndarray:
        """``exp(intercept) * x^slope``."""
        return np.exp(self.intercept) * np.asarray(x, dtype=np.float64) ** self.slope

    def within(self, low: float, high: float) -> bool:
        """True when ``low <= slope <= high``."""
        return low <= self.slope <= high

    def as_dict(self) -> dict[str, object]:
        return {
            "slope": self.slope,
            "intercept": self.intercept,
            "ci": [self.ci_low, self.ci_high],
            "confidence": self.confidence,
            "r2": self.r2,
            "n_points": self.n_points,
            "n_seeds": self.n_seeds,
            "method": self.method,
        }


@dataclass(frozen=True)
class LineFit:
    """Result of :func:`fit_line`: ``v(y) ~ intercept + slope * u(x)``.

    ``u`` is ``log`` when ``log_x`` (else the identity), ``v`` is ``log`` when ``log_y``.
    """

    slope: float
    intercept: float
    r2: float
    n_points: int


def fit_line(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    log_x: bool = True,
    log_y: bool = True,
    x_window: tuple[float, float] | None = None,
    y_window: tuple[float, float] | None = None,
    resample: int | None = None,
    min_points: int = 2,
) -> LineFit | None:
    """Least-squares line through ``(u(x), v(y))``, on the points inside the windows.

    Parameters
    ----------
    x, y : (P,)
        Abscissae and values. Points with a non-finite value, or a non-positive one on a log
        axis, are dropped.
    log_x, log_y : bool
        Fit on log axes (``log_x=False, log_y=True``: the exponential rate ``-slope`` of a
        decaying gap).
    x_window, y_window : (lo, hi), optional
        Keep only points with ``lo <= x <= hi`` (resp. ``y``), bounds inclusive.
    resample : int, optional
        Interpolate ``v`` at this many points evenly spaced in ``u`` over ``x_window`` before
        fitting, so that densely recorded stretches do not dominate. Needs ``x_window``, which
        must then lie inside the recorded range (the points may come in any order).
    min_points : int
        Fewer kept points than this (before resampling) gives ``None``.

    Returns
    -------
    LineFit or None
        ``None`` when too few points remain or the resampling window leaves the data.
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.ndim != 1 or xa.shape != ya.shape:
        raise ParameterError(
            f"x and y must be one-dimensional of the same length, got {xa.shape} and {ya.shape}"
        )
    if resample is not None and x_window is None:
        raise ParameterError("resample needs x_window (the interval to resample over)")
    if log_x and x_window is not None and x_window[0] <= 0:
        raise ParameterError(f"x_window must lie in x > 0 on a log axis, got {x_window}")
    keep = np.isfinite(xa) & np.isfinite(ya)
    if log_x:
        keep &= xa > 0
    if log_y:
        keep &= ya > 0
    if y_window is not None:
        keep &= (ya >= y_window[0]) & (ya <= y_window[1])
    if x_window is not None and resample is None:
        keep &= (xa >= x_window[0]) & (xa <= x_window[1])
    if int(keep.sum()) < max(min_points, 2):
        return None
    u = np.log(xa[keep]) if log_x else xa[keep]
    v = np.log(ya[keep]) if log_y else ya[keep]
    if resample is not None:
        assert x_window is not None
        lo, hi = (math.log(x_window[0]), math.log(x_window[1])) if log_x else x_window
        order = np.argsort(u, kind="stable")  # np.interp needs increasing abscissae
        u, v = u[order], v[order]
        grid = np.linspace(lo, hi, int(resample))
        if grid[0] < u[0] or grid[-1] > u[-1]:
            return None
        u, v = grid, np.interp(grid, u, v)
    if np.unique(u).size < 2:
        return None
    slope, intercept = np.polyfit(u, v, 1)
    resid = v - (intercept + slope * u)
    ss_tot = float(((v - v.mean()) ** 2).sum())
    r2 = 1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else 1.0
    return LineFit(float(slope), float(intercept), r2, int(u.size))


def _slopes(lx: np.ndarray, ly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of the columns of ``ly`` (P, m) on ``lx`` (P,)."""
    xc = lx - lx.mean()
    sxx = float(xc @ xc)
    slope = xc @ (ly - ly.mean(axis=0)) / sxx
    intercept = ly.mean(axis=0) - slope * lx.mean()
    return slope, intercept


def fit_rate(
    xs: Sequence[float] | np.ndarray,
    errors: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> RateFit:
    """Fit ``errors ~ c xs^slope`` by least squares in log-log coordinates.

    Parameters
    ----------
    xs : (P,)
        Positive abscissae (n, d, B, K, ...), at least two distinct values.
    errors : (P,) or (P, S)
        Positive errors; with S >= 2 seeds per point the CI is a bootstrap over seeds.
    confidence : float
        Level of the confidence interval, in (0, 1).
    n_boot : int
        Bootstrap resamples (>= 100).
    seed : int
        Seed of the bootstrap (same seed, same interval).

    Returns
    -------
    RateFit
    """
    x = as_float_array(xs, "xs")
    e = as_float_array(errors, "errors")
    if x.ndim != 1:
        raise ParameterError(f"xs must be one-dimensional, got shape {x.shape}")
    if e.ndim == 1:
        e = e[:, None]
    if e.ndim != 2 or e.shape[0] != x.shape[0]:
        raise ParameterError(
            f"errors must have shape ({x.shape[0]},) or ({x.shape[0]}, n_seeds), got {np.shape(errors)}"
        )
    if x.shape[0] < 2 or np.unique(x).size < 2:
        raise ParameterError(f"xs must hold at least 2 distinct values, got {x.tolist()}")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ParameterError("xs must be finite and > 0 (log-log fit)")
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ParameterError("errors must be finite and > 0 (log-log fit)")
    confidence = check_real(
        confidence, "confidence", minimum=0.0, maximum=1.0, strict_minimum=True, strict_maximum=True
    )
    n_boot = check_int(n_boot, "n_boot", minimum=100)
    seed = check_seed(seed, "seed")

    P, S = e.shape
    lx = np.log(x)
    ly = np.log(e.mean(axis=1))
    slope_arr, icpt_arr = _slopes(lx, ly[:, None])
    slope, intercept = float(slope_arr[0]), float(icpt_arr[0])
    resid = ly - (intercept + slope * lx)
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else 1.0
    alpha = 1.0 - confidence
    if S >= 2:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, S, size=(n_boot, S))
        boot = np.log(e[:, idx].mean(axis=2))  # (P, n_boot)
        bslopes, _ = _slopes(lx, boot)
        lo, hi = np.quantile(bslopes, [alpha / 2, 1 - alpha / 2])
        method = "bootstrap over seeds"
    elif P >= 3:
        xc = lx - lx.mean()
        se = math.sqrt(float(resid @ resid) / (P - 2) / float(xc @ xc))
        q = float(stats.t.ppf(1 - alpha / 2, P - 2))
        lo, hi = slope - q * se, slope + q * se
        method = "t-interval"
    else:
        lo = hi = float("nan")
        method = "t-interval"
    return RateFit(slope, intercept, float(lo), float(hi), r2, P, S, confidence, method)
