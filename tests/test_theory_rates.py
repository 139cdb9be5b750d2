"""fit_rate: known slopes are recovered; the CI covers them; bad input is a ParameterError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iclkit.theory.rates import RateFit, fit_rate
from iclkit.theory.validation import ParameterError


@given(
    slope=st.floats(-2.0, 2.0),
    noise=st.floats(0.0, 0.2),
    seed=st.integers(0, 2**31 - 1),
)
def test_recovers_known_slope_with_seed_noise(slope: float, noise: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    xs = np.array([100.0, 200, 400, 800, 1600, 3200])
    # multiplicative log-normal noise per (point, seed): what repeated runs of an estimator give
    errors = 3.0 * xs[:, None] ** slope * np.exp(noise * rng.standard_normal((6, 16)))
    fit = fit_rate(xs, errors, seed=1)
    # The log of a mean of 16 log-normals has s.d. <= noise/4 * ~1.1 per point; over a log-x
    # span of ln 32 = 3.47 with 6 points the slope s.d. is <= 0.25 * noise / 1.7 <= 0.03;
    # 0.12 is > 4 s.d. for the largest noise and leaves room for the log-normal mean bias.
    assert abs(fit.slope - slope) <= 0.12 * noise / 0.2 + 1e-9
    assert fit.ci_low - 1e-12 <= fit.slope <= fit.ci_high + 1e-12
    assert fit.n_points == 6 and fit.n_seeds == 16
    assert fit.method == "bootstrap over seeds"


@given(slope=st.floats(-1.5, 1.5), c=st.floats(0.01, 100.0))
def test_exact_power_law_is_exact(slope: float, c: float) -> None:
    xs = np.array([2.0, 4, 8, 16])
    fit = fit_rate(xs, c * xs**slope)
    # noiseless data: slope and intercept to float64 round-off (1e-9 absolute is generous)
    assert fit.slope == pytest.approx(slope, abs=1e-9)
    assert np.exp(fit.intercept) == pytest.approx(c, rel=1e-9)
    # r^2 = 1 - SS_res / SS_tot is ill-conditioned for a (nearly) flat line, where SS_tot is
    # itself of the order of round-off; only assert it where the line has a visible slope.
    if abs(slope) > 1e-4:
        assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.method == "t-interval"
    np.testing.assert_allclose(fit.predict(xs), c * xs**slope, rtol=1e-9)


def test_bootstrap_ci_coverage_is_reasonable() -> None:
    # 40 independent experiments with true slope -0.5: a 95% CI should cover it in most of them
    # (binomial: P(covered <= 30 of 40 | p = 0.95) < 1e-4; the percentile bootstrap with 8 seeds
    # under-covers somewhat, so require >= 30).
    rng = np.random.default_rng(0)
    xs = np.array([100.0, 300, 1000, 3000])
    covered = 0
    for i in range(40):
        errs = xs[:, None] ** -0.5 * np.exp(0.3 * rng.standard_normal((4, 8)))
        f = fit_rate(xs, errs, seed=i)
        covered += f.ci_low <= -0.5 <= f.ci_high
    assert covered >= 30


def test_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(3)
    xs = np.array([1.0, 2, 4, 8])
    errs = np.exp(rng.standard_normal((4, 5)))
    a, b = fit_rate(xs, errs, seed=7), fit_rate(xs, errs, seed=7)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert isinstance(a, RateFit) and a.within(a.slope - 1e-12, a.slope + 1e-12)


def test_two_points_one_seed_has_no_interval() -> None:
    f = fit_rate([1.0, 10.0], [1.0, 0.1])
    assert f.slope == pytest.approx(-1.0)
    assert np.isnan(f.ci_low) and np.isnan(f.ci_high)


@pytest.mark.parametrize(
    ("xs", "errors", "match"),
    [
        ([1.0], [1.0], "xs"),
        ([1.0, 1.0], [1.0, 2.0], "xs"),
        ([1.0, -2.0], [1.0, 2.0], "xs"),
        ([[1.0, 2.0]], [1.0, 2.0], "xs"),
        ([1.0, 2.0], [1.0, 0.0], "errors"),
        ([1.0, 2.0], [1.0, np.nan], "errors"),
        ([1.0, 2.0], [1.0, 2.0, 3.0], "errors"),
        ([1.0, 2.0, 3.0], np.ones((2, 3)), "errors"),
    ],
)
def test_bad_input(xs: object, errors: object, match: str) -> None:
    with pytest.raises(ParameterError, match=f"^{match}"):
        fit_rate(xs, errors)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
        ({"n_boot": 5}, "n_boot"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_options(kw: dict[str, float], match: str) -> None:
    with pytest.raises(ParameterError, match=f"^{match}"):
        fit_rate([1.0, 2.0, 4.0], np.ones((3, 2)), **kw)  # type: ignore[arg-type]
