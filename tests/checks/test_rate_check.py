"""Rate checks: the confidence interval is reported next to the band, and an interval wholly
outside the band FAILs even when the point estimate is inside."""

from __future__ import annotations

import math

from iclkit.checks.rate_check import SlopeBand, ci_outside, slope_outcome
from iclkit.theory.rates import RateFit


def _fit(slope: float, lo: float, hi: float) -> RateFit:
    return RateFit(slope, 0.0, lo, hi, 0.99, 4, 4, 0.95, "bootstrap over seeds")


def test_interval_is_shown_next_to_the_band() -> None:
    out = slope_outcome(_fit(-0.5, -0.55, -0.45), -0.5, SlopeBand(-0.6, -0.4), "why", {})
    assert out.passed
    assert out.tolerance.startswith("slope in [-0.60, -0.40], 95% CI [-0.550, -0.450]")
    assert out.details["ci_outside_band"] is False


def test_interval_outside_the_band_fails_with_the_point_inside() -> None:
    # a (pathological) bootstrap interval that misses the band although the point is inside
    fit = _fit(-0.41, -0.39, -0.30)
    band = SlopeBand(-0.6, -0.4)
    assert band.holds(fit) and ci_outside(fit, band)
    out = slope_outcome(fit, -0.5, band, "why", {})
    assert not out.passed and out.details["ci_outside_band"] is True


def test_interval_that_cannot_be_formed_is_never_outside() -> None:
    assert not ci_outside(_fit(-0.5, math.nan, math.nan), SlopeBand(-0.6, -0.4))
    assert not ci_outside(_fit(-0.5, -2.0, 1.0), SlopeBand.at_most(-0.35))


def test_resolution_is_the_band_half_width_over_the_exponent() -> None:
    out = slope_outcome(_fit(-0.5, -0.55, -0.45), -0.5, SlopeBand(-0.6, -0.4), "why", {})
    assert out.resolution is not None and math.isclose(out.resolution, 0.2)
    assert "CI half-width 0.050" in out.resolution_note
    # one-sided: the distance of the bound from the exponent
    one = slope_outcome(_fit(-0.6, -0.7, -0.5), -0.5, SlopeBand.at_most(-0.35), "why", {})
    assert one.resolution is not None and math.isclose(one.resolution, 0.3)
