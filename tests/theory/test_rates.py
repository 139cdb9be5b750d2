"""fit_rate: known slopes are recovered; the CI covers them; bad input is a ParameterError.
fit_line: exact power laws and exponentials are recovered, windows and resampling behave."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iclkit.theory.rates import RateFit, fit_line, fit_rate
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


# --------------------------------------------------------------------------- fit_line
_GRID = np.geomspace(1.0, 1000.0, 12)


@given(slope=st.floats(-3.0, 3.0), c=st.floats(1e-3, 1e3))
def test_fit_line_recovers_exact_power_law(slope: float, c: float) -> None:
    fit = fit_line(_GRID, c * _GRID**slope)
    assert fit is not None
    # noiseless data over a log-x span of ln 1000: the slope to float64 round-off
    assert fit.slope == pytest.approx(slope, abs=1e-9)
    assert np.exp(fit.intercept) == pytest.approx(c, rel=1e-8)
    assert fit.n_points == _GRID.size
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)


@given(rate=st.floats(0.01, 2.0), c=st.floats(1e-2, 1e2))
def test_fit_line_recovers_exponential_decay_on_semilog_axes(rate: float, c: float) -> None:
    t = np.linspace(0.0, 10.0, 15)
    fit = fit_line(t, c * np.exp(-rate * t), log_x=False)
    assert fit is not None
    assert -fit.slope == pytest.approx(rate, abs=1e-9)
    assert fit.intercept == pytest.approx(np.log(c), abs=1e-9)


@given(slope=st.floats(-2.0, 2.0), seed=st.integers(0, 2**31 - 1))
def test_fit_line_is_the_polyfit_of_the_logs(slope: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = _GRID**slope * np.exp(0.3 * rng.standard_normal(_GRID.size))
    fit = fit_line(_GRID, y)
    assert fit is not None
    expected = np.polyfit(np.log(_GRID), np.log(y), 1)
    assert (fit.slope, fit.intercept) == (float(expected[0]), float(expected[1]))  # bit-identical


@given(
    slope=st.one_of(st.floats(-2.0, -0.1), st.floats(0.1, 2.0)),  # y strictly monotone
    junk=st.lists(st.floats(1e-6, 1e6), min_size=4, max_size=4),
)
def test_fit_line_windows_ignore_points_outside(slope: float, junk: list[float]) -> None:
    y = _GRID**slope
    # points outside the x window carry arbitrary values: they must not move the fit
    spoiled = y.copy()
    spoiled[:2], spoiled[-2:] = junk[:2], junk[2:]
    inside = (_GRID[2], _GRID[-3])
    fit = fit_line(_GRID, spoiled, x_window=inside)
    assert fit is not None and fit.n_points == _GRID.size - 4
    assert fit.slope == pytest.approx(slope, abs=1e-9)
    # a y window keeps exactly the values inside it (bounds inclusive)
    lo, hi = sorted((float(y[3]), float(y[8])))
    by_y = fit_line(_GRID, y, y_window=(lo, hi))
    assert by_y is not None and by_y.n_points == 6
    assert by_y.slope == pytest.approx(slope, abs=1e-9)


@given(slope=st.floats(-2.0, 2.0), points=st.integers(2, 50), seed=st.integers(0, 2**31 - 1))
def test_fit_line_resampling(slope: float, points: int, seed: int) -> None:
    # densely recorded at small x, sparsely at large x, in shuffled order: the resampled fit of
    # an exact power law still recovers the slope and uses exactly `points` points
    x = np.concatenate([np.linspace(1.0, 2.0, 200), np.geomspace(2.5, 100.0, 5)])
    x = np.random.default_rng(seed).permutation(x)
    fit = fit_line(x, x**slope, x_window=(1.5, 80.0), resample=points)
    assert fit is not None and fit.n_points == points
    # linear interpolation of a convex/concave log-log straight line is exact: a line stays a line
    assert fit.slope == pytest.approx(slope, abs=1e-9)
    # a window that leaves the recorded range cannot be resampled
    assert fit_line(x, x**slope, x_window=(0.5, 80.0), resample=points) is None


def test_fit_line_too_few_points_gives_none() -> None:
    x = np.array([1.0, 2.0, 4.0, 8.0])
    assert fit_line(x[:1], x[:1]) is None
    assert fit_line(x, x, min_points=5) is None
    # non-positive values are dropped on a log axis: two points remain, which is enough
    fit = fit_line(x, np.array([-1.0, 0.0, 4.0, 8.0]))
    assert fit is not None and fit.n_points == 2
    assert fit_line(x, np.array([-1.0, 0.0, 0.0, 8.0])) is None
    # non-finite values are dropped too; two equal abscissae cannot give a slope
    assert fit_line(np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, np.nan])) is None
    assert fit_line(x, x, x_window=(3.0, 5.0)) is None  # one point inside


def test_fit_line_bad_input() -> None:
    with pytest.raises(ParameterError, match="same length"):
        fit_line([1.0, 2.0], [1.0])
    with pytest.raises(ParameterError, match="resample needs x_window"):
        fit_line([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], resample=10)
    with pytest.raises(ParameterError, match="x_window"):
        fit_line([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], x_window=(0.0, 2.0), resample=10)
