"""Tests of iclkit.dynamics.lsa.fixed_points (sympy fixed points and their classification)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from iclkit.dynamics.lsa.fixed_points import (
    find_fixed_points,
    gradient_in_G,
    isotropic_optimum,
    zfb_pl_constant,
)
from iclkit.dynamics.lsa.init import structured_init
from iclkit.dynamics.lsa.moments import LSAMoments
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError

LAM = np.array([[1.0, 0.3, 0.0], [0.3, 1.2, 0.1], [0.0, 0.1, 0.6]])


def test_matrix_gradient() -> None:
    _, grad = gradient_in_G()
    # sympy's matrix calculus gives (A G Lam + A^T G Lam^T)/2 - C, i.e. A G Lam - C (symmetric A, Lam)
    assert "A*G*Lambda" in str(grad) and "C" in str(grad)


def test_isotropic_symbolic_optimum() -> None:
    g, _ = isotropic_optimum()
    N, d, sigma, c2, rho = sp.symbols("N d sigma c2 rho", positive=True)
    subs = {
        s: v
        for s in g.free_symbols
        for name, v in (("N", N), ("d", d), ("sigma", sigma), ("c2", c2), ("rho", rho))
        if s.name == name
    }
    g = g.subs(subs)
    # linear data (c2 = rho = 1, sigma = 0): N / (N + d + 1)  (ZFB / Ahn, docs/provenance.md §10)
    assert sp.simplify(g.subs({c2: 1, rho: 1, sigma: 0}) - N / (N + d + 1)) == 0
    # MoR, docs/provenance.md §10 [RECON]: N rho / ((N-1) rho + d + 2 + sigma^2/c2)
    assert sp.simplify(g - N * rho / ((N - 1) * rho + d + 2 + sigma**2 / c2)) == 0
    # Mahankali (docs/provenance.md §10, derived): noise gives N / (N + d + 1 + sigma^2)
    assert sp.simplify(g.subs({c2: 1, rho: 1}) - N / (N + d + 1 + sigma**2)) == 0


@pytest.mark.parametrize("kw", [{}, {"max_exact_d": 0}, {"max_exact_d": 0, "max_nsolve_d": 0}])
def test_linear_fixed_point_is_gamma_inverse(kw: dict) -> None:
    N = 8
    m = LSAMoments.linear(3, N, Lambda=LAM)
    rep = find_fixed_points(m, **kw)
    gamma = (1 + 1 / N) * LAM + np.trace(LAM) / N * np.eye(3)
    np.testing.assert_allclose(rep.G_star, np.linalg.inv(gamma), rtol=1e-12, atol=1e-14)
    assert rep.method == {0: "exact", 1: "nsolve", 2: "numpy"}[len(kw)]
    # ZFB Thm 4.1 limit: u* = c = tr(Gamma^-2)^(1/4), U* = Gamma^-1 / c
    c = np.trace(np.linalg.inv(gamma @ gamma)) ** 0.25
    assert rep.u_star == pytest.approx(c, rel=1e-12)
    np.testing.assert_allclose(rep.U_star, np.linalg.inv(gamma) / c, rtol=1e-11, atol=1e-14)
    names = [p.name for p in rep.fixed_points]
    assert names == ["origin", "optimum", "optimum (mirror)"]
    assert rep.fixed_points[0].classification.startswith("saddle")
    assert rep.fixed_points[1].classification.startswith("stable, non-isolated: 1 zero")


def test_exact_solution_is_rational() -> None:
    m = LSAMoments.linear(2, 4)
    rep = find_fixed_points(m)
    assert rep.G_star_sympy is not None
    assert rep.G_star_sympy == sp.Matrix([[sp.Rational(4, 7), 0], [0, sp.Rational(4, 7)]])


def test_origin_saddle_eigenvalues_are_plus_minus_norm_C() -> None:
    m = LSAMoments.mor(MoRConfig(d=2, K=3, n=5, sigma=0.5, pi=(0.5, 0.3, 0.2)))
    ev = find_fixed_points(m).fixed_points[0].eigenvalues
    assert ev.max() == pytest.approx(np.linalg.norm(m.C), rel=1e-12)
    assert ev.min() == pytest.approx(-np.linalg.norm(m.C), rel=1e-12)


def test_level_set_limit() -> None:
    m = LSAMoments.linear(2, 4)
    rep = find_fixed_points(m, delta=0.5, sign=-1)
    assert rep.u_star < 0
    assert rep.u_star**2 - np.sum(rep.U_star**2) == pytest.approx(0.5, rel=1e-12)
    np.testing.assert_allclose(rep.u_star * rep.U_star, rep.G_star, atol=1e-15)


def test_symmetric_model_says_why() -> None:
    m = LSAMoments.mor(MoRConfig(d=2, K=2, n=5, sigma=0.5, symmetric=True))
    rep = find_fixed_points(m)
    assert not rep.G_star.any()
    assert (
        rep.degenerate_reason is not None
        and "M1 = E[beta_bar beta_bar^T] = 0" in rep.degenerate_reason
    )
    assert rep.fixed_points[0].classification.startswith("degenerate")
    assert np.isnan(rep.tail_rate)


def test_pl_constant_reported_only_for_linear_structured() -> None:
    m = LSAMoments.linear(3, 6)
    init = structured_init(m, 0.5, seed=0)
    assert zfb_pl_constant(m, init.U, 0.5) > 0
    mm = LSAMoments.mor(MoRConfig(d=3, K=2, n=6, sigma=0.5))
    assert np.isnan(zfb_pl_constant(mm, init.U, 0.5))


def test_bad_arguments() -> None:
    m = LSAMoments.linear(2, 4)
    with pytest.raises(ParameterError, match="^sign"):
        find_fixed_points(m, sign=0.5)
    with pytest.raises(ParameterError, match="^max_exact_d"):
        find_fixed_points(m, max_exact_d=-1)
