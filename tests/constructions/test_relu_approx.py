"""Tests of iclkit.constructions.relu_approx (Def. A.1 certificates)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iclkit.constructions.relu_approx import (
    TANH_SECOND_DERIVATIVE_MAX,
    fit_bivariate_relu_sum,
    interpolate_relu_sum,
    tanh_relu_sum,
)
from iclkit.theory.validation import ParameterError

f64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tanh_constant() -> None:
    # max |tanh''| / 8 = 0.0962 (the constant quoted in the issue), checked on a fine grid
    z = torch.linspace(-3, 3, 200001, dtype=f64)
    t = torch.tanh(z)
    second = (-2 * t * (1 - t * t)).abs().max()
    assert float(second) == pytest.approx(TANH_SECOND_DERIVATIVE_MAX, rel=1e-9)
    assert TANH_SECOND_DERIVATIVE_MAX / 8 == pytest.approx(0.0962, abs=5e-5)


@pytest.mark.parametrize("M", [5, 16, 64])
def test_tanh_certificate(M: int) -> None:
    f = tanh_relu_sum(M)
    c = f.certificate
    h = 2 * c.R / (M - 2)
    assert c.eps_proven == pytest.approx(TANH_SECOND_DERIVATIVE_MAX * h * h / 8, rel=1e-12)
    # measured on the grid never exceeds the proof (1e-12 slack: round-off of the evaluation)
    assert c.eps_measured <= c.eps_proven + 1e-12
    # Def. A.1 normalisation: ||a_m||_1 <= 1 and C = sum |c_m|
    assert float(f.a.abs().sum(1).max()) <= 1 + 1e-12
    assert c.C == pytest.approx(float(f.c.abs().sum()), rel=1e-12)
    assert f.M == M
    # global bound: checked far outside [-R, R] on an independent grid
    z = torch.linspace(-40, 40, 40001, dtype=f64)
    assert c.eps_global is not None
    assert float((f(z) - torch.tanh(z)).abs().max()) <= c.eps_global + 1e-12


def test_tanh_error_order() -> None:
    Ms = [16, 32, 64, 128, 256]
    eps = [tanh_relu_sum(M).certificate.eps_measured for M in Ms]
    slope = np.polyfit(np.log(Ms), np.log(eps), 1)[0]
    # interpolation error h^2 with R ~ log M growing slowly: order slightly below 2
    assert -2.0 <= slope <= -1.5


def test_piecewise_linear_is_reproduced_exactly() -> None:
    # a function that is itself piecewise linear on the knots is (0, inf, M, C)-approximable
    def g(z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z - 1) - 2 * torch.relu(-z) + 0.5

    f = interpolate_relu_sum(g, 2.0, 6, left="linear", right="linear")  # knots -2..2 step 1
    z = torch.linspace(-10, 10, 2001, dtype=f64)
    assert float((f(z) - g(z)).abs().max()) < 1e-13


def test_extensions_and_domain() -> None:
    sp = interpolate_relu_sum(
        torch.nn.functional.softplus, 8.0, 40, second_derivative_bound=0.25, right=1.0
    )
    z = torch.linspace(-100, 100, 4001, dtype=f64)
    # beyond the domain the error is at most e^-R (asymptotes 0 and z)
    assert (
        float((sp(z) - torch.nn.functional.softplus(z)).abs().max())
        <= max(sp.certificate.eps, math.exp(-8.0)) + 1e-12
    )
    ex = interpolate_relu_sum(torch.exp, 6.0, 30, domain=(-6.0, 0.0), second_derivative_bound=1.0)
    assert ex.certificate.R == 6.0
    assert ex.certificate.eps_measured <= ex.certificate.eps + 1e-12


def test_bivariate_fit_improves_with_terms() -> None:
    def g(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y * torch.tanh(y * s)

    small = fit_bivariate_relu_sum(g, 2.0, 16, fit_points=41, grid_points=81)
    large = fit_bivariate_relu_sum(g, 2.0, 256, fit_points=41, grid_points=81)
    assert small.certificate.eps_proven is None
    assert large.certificate.eps < small.certificate.eps
    assert large.k == 2


def test_piecewise_linear_evaluation_matches_term_sum() -> None:
    f = interpolate_relu_sum(lambda t: 0.5 * t * t, 6.0, 40, left="linear", right="linear")
    g = tanh_relu_sum(33)
    z = torch.linspace(-30, 30, 6001, dtype=f64)
    for h in (f, g):
        # two float64 evaluation orders of the same sum: relative round-off only
        assert float(((h.piecewise_linear()(z) - h(z)).abs() / (1 + h(z).abs())).max()) < 1e-12
    b = fit_bivariate_relu_sum(lambda s, y: s * y, 1.0, 4, fit_points=5, grid_points=5)
    with pytest.raises(ParameterError, match="k = 1"):
        b.piecewise_linear()


def test_bad_input() -> None:
    with pytest.raises(ParameterError, match="R"):
        interpolate_relu_sum(torch.tanh, -1.0, 8)
    with pytest.raises(ParameterError, match="M"):
        interpolate_relu_sum(torch.tanh, 1.0, 2)
    with pytest.raises(ParameterError, match="right"):
        interpolate_relu_sum(torch.tanh, 1.0, 8, right="cubic")
    with pytest.raises(ParameterError, match="left"):
        interpolate_relu_sum(torch.tanh, 1.0, 8, left="cubic")
    with pytest.raises(ParameterError, match="domain"):
        interpolate_relu_sum(torch.tanh, 1.0, 8, domain=(1.0, 0.0))
    with pytest.raises(ParameterError, match="M"):
        tanh_relu_sum(2)
    with pytest.raises(ParameterError, match="M"):
        fit_bivariate_relu_sum(lambda s, y: s, 1.0, 0)
