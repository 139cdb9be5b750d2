"""Tests of iclkit.dynamics.lsa.flow (full, reduced and eigenbasis gradient-flow fields)."""

from __future__ import annotations

import numpy as np
import pytest

from iclkit.dynamics.lsa.flow import EigenLSAFlow, FullLSAFlow, ReducedLSAFlow
from iclkit.dynamics.lsa.init import LSAInit, random_init, structured_init
from iclkit.dynamics.lsa.loss import population_loss
from iclkit.dynamics.lsa.moments import LSAMoments
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError

LAM = np.array([[1.2, 0.3, 0.0], [0.3, 0.8, -0.2], [0.0, -0.2, 0.5]])


def _moments() -> list[LSAMoments]:
    return [
        LSAMoments.linear(3, 6, Lambda=LAM),
        LSAMoments.mor(
            MoRConfig(d=3, K=3, n=6, sigma=0.4, pi=(0.5, 0.3, 0.2), Lambda=tuple(map(tuple, LAM)))
        ),
    ]


@pytest.mark.parametrize("m", _moments())
def test_full_gradient_matches_finite_differences(m: LSAMoments) -> None:
    # docs/provenance.md §10: central differences h = 1e-6 are accurate to ~1e-9 relative here
    flow = FullLSAFlow(m)
    init = random_init(m, 1.0, seed=3, blocks="all")
    y = flow.initial_state(init)
    g = -flow.rhs(0.0, y)
    h = 1e-6
    D = m.d + 1

    def L(v: np.ndarray) -> float:
        return float(population_loss(m, v[: D * D].reshape(D, D), v[D * D :].reshape(D, D)))

    fd = np.array([(L(y + h * e) - L(y - h * e)) / (2 * h) for e in np.eye(y.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("m", _moments())
def test_full_flow_keeps_dead_blocks_and_equals_reduced(m: LSAMoments) -> None:
    full, red = FullLSAFlow(m), ReducedLSAFlow(m)
    rng = np.random.default_rng(0)
    U = structured_init(m, 0.4, seed=1).U + 0.1 * rng.normal(size=(3, 3))  # unbalanced, p = q = 0
    init2 = LSAInit.from_reduced(U, 0.7)
    yf = full.initial_state(init2)
    df = full.rhs(0.0, yf)
    D = 4
    dWk, dWp = df[: D * D].reshape(D, D), df[D * D :].reshape(D, D)
    # all blocks other than U and u have exactly zero velocity (odd moments vanish)
    mask_k = np.ones((D, D), bool)
    mask_k[:3, :3] = False
    mask_p = np.ones((D, D), bool)
    mask_p[3, 3] = False
    assert np.abs(dWk[mask_k]).max() < 1e-14 and np.abs(dWp[mask_p]).max() < 1e-14
    dr = red.rhs(0.0, red.initial_state(init2))
    np.testing.assert_allclose(dWk[:3, :3].ravel(), dr[:9], rtol=1e-12, atol=1e-14)
    assert dWp[3, 3] == pytest.approx(dr[9], rel=1e-12)
    assert full.gradient_norm(yf) == pytest.approx(
        red.gradient_norm(red.initial_state(init2)), rel=1e-12
    )


@pytest.mark.parametrize("m", _moments())
def test_eigen_flow_equals_reduced_flow(m: LSAMoments) -> None:
    rng = np.random.default_rng(1)
    init = LSAInit.from_reduced(rng.normal(size=(3, 3)), 0.8)
    red, eig = ReducedLSAFlow(m), EigenLSAFlow(m).bound(init)
    ye, yr = eig.initial_state(init), red.initial_state(init)
    _, V = m.eigenbasis
    dr = red.rhs(0.0, yr)
    de = eig.rhs(0.0, ye)
    dU_e = V.T @ dr[:9].reshape(3, 3) @ V
    np.testing.assert_allclose(de[2:], np.diag(dU_e), rtol=1e-11, atol=1e-13)
    assert de[0] == pytest.approx(dr[9], rel=1e-11)
    assert eig.gradient_norm(ye) == pytest.approx(red.gradient_norm(yr), rel=1e-11)
    assert eig.loss(ye) == pytest.approx(red.loss(yr), rel=1e-12)
    np.testing.assert_allclose(eig.G(ye), red.G(yr), atol=1e-13)
    # analytic Jacobian vs finite differences of the right-hand side
    ye2 = ye + np.r_[0.0, 0.3, np.zeros(3)]
    J = eig.jac(0.0, ye2)
    fd = np.array(
        [(eig.rhs(0, ye2 + 1e-6 * e) - eig.rhs(0, ye2 - 1e-6 * e)) / 2e-6 for e in np.eye(ye2.size)]
    ).T
    np.testing.assert_allclose(J, fd, rtol=1e-6, atol=1e-8)


def test_conserved_quantity_is_balancedness() -> None:
    m = _moments()[0]
    init = structured_init(m, 0.5, seed=2)
    for flow in (FullLSAFlow(m), ReducedLSAFlow(m), EigenLSAFlow(m).bound(init)):
        y = flow.initial_state(init)
        assert abs(flow.conserved(y)) < 1e-14  # ZFB init: u(0) = ||U(0)||_F


def test_bad_inits() -> None:
    m = _moments()[0]
    init = random_init(m, 1.0, seed=0, blocks="live")
    with pytest.raises(ParameterError, match="^init"):
        ReducedLSAFlow(m).initial_state(init)
    with pytest.raises(ParameterError, match="^init"):
        EigenLSAFlow(m).bound(init)
    with pytest.raises(ParameterError, match="^init"):
        FullLSAFlow(LSAMoments.linear(2, 3)).initial_state(init)
    with pytest.raises(ParameterError, match="EigenLSAFlow"):
        EigenLSAFlow(m).rhs(0.0, np.zeros(5))
