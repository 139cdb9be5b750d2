"""Rate fitting: the exponent of a power law ``error ~ c x^slope`` by log-log least squares.

Every rate claim of the papers (``O(sqrt(d/n))``, ``O((d/n)^(1/4))``, ``O(L/sqrt(B))``, phase
times ``~ K^2``) is checked by fitting the slope of ``log error`` against ``log x`` and comparing it
with the theorem's exponent inside a stated band (the diffrax order-of-convergence pattern).

With repeated runs (``errors`` of shape ``(n_points, n_seeds)``) the point estimate fits the
log of the mean over seeds, and the confidence interval is a percentile bootstrap over seeds
(columns resampled with replacement, seeded, so the CI is reproducible). With one run per point
the interval is the classical t-interval of the least-squares slope.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .validation import ParameterError, check_int, check_real

__all__ = ["RateFit", "fit_rate"]


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
    x = np.asarray(xs, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
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
    confidence = check_real(confidence, "confidence", minimum=0.0, maximum=1.0, strict_minimum=True)
    if confidence >= 1.0:
        raise ParameterError(f"confidence must be < 1, got {confidence}")
    n_boot = check_int(n_boot, "n_boot", minimum=100)
    seed = check_int(seed, "seed", minimum=0)

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
