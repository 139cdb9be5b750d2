"""Tests of iclkit.dynamics.lsa.moments (data moments of the LSA loss)."""

from __future__ import annotations

import numpy as np
import pytest

from iclkit.dynamics.lsa.moments import LSAMoments
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError


def test_linear_reduces_to_zfb_gamma() -> None:
    # docs/provenance.md §10 [READ-2nd]: K = 1, sigma = 0, M1 = M2 = I gives A = Gamma Lambda with
    # Gamma = (1 + 1/N) Lambda + tr(Lambda)/N I; typed here independently of the module.
    lam = np.array([[1.5, 0.2, 0.0], [0.2, 1.0, 0.1], [0.0, 0.1, 0.5]])
    N = 7
    m = LSAMoments.linear(3, N, Lambda=lam)
    gamma = (1 + 1 / N) * lam + np.trace(lam) / N * np.eye(3)
    np.testing.assert_allclose(m.A, gamma @ lam, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(m.C, lam @ lam, rtol=1e-14)
    np.testing.assert_allclose(m.Gamma, gamma, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(m.G_star, np.linalg.inv(gamma), rtol=1e-12)
    # L* = (1/2)(tr Lambda - tr(Gamma^-1 Lambda^2)) (docs/provenance.md §10)
    ref = 0.5 * (np.trace(lam) - np.trace(np.linalg.inv(gamma) @ lam @ lam))
    assert m.loss_star == pytest.approx(ref, rel=1e-13)


def test_mor_isotropic_optimum_matches_notes() -> None:
    # docs/provenance.md §10 [RECON]: g* = N||pi||^2 / ((N-1)||pi||^2 + d + 2 + sigma^2/tau^2)
    d, N, pi, sigma, tau = 4, 10, (0.5, 0.3, 0.2), 0.5, 1.3
    m = LSAMoments.mor(MoRConfig(d=d, K=3, n=N, sigma=sigma, pi=pi, prior_scale=tau))
    r = sum(p * p for p in pi)
    g = N * r / ((N - 1) * r + d + 2 + sigma**2 / tau**2)
    np.testing.assert_allclose(m.G_star, g * np.eye(d), rtol=1e-13)


def test_symmetric_has_zero_first_moment() -> None:
    m = LSAMoments.mor(MoRConfig(d=3, K=2, n=5, sigma=0.5, symmetric=True))
    assert m.pi_sq == 0.0
    np.testing.assert_array_equal(m.C, np.zeros((3, 3)))
    np.testing.assert_array_equal(m.G_star, np.zeros((3, 3)))
    with pytest.raises(ParameterError, match="^Gamma"):
        _ = m.Gamma


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: LSAMoments.mor(MoRConfig(d=2, K=2, n=5, snr=3.0)), "sigma"),
        (
            lambda: LSAMoments.mor(MoRConfig(d=2, K=2, n=5, sigma=1.0, pi_mode="dirichlet")),
            "pi_mode",
        ),
        (lambda: LSAMoments.linear(2, 0), "n"),
        (lambda: LSAMoments.linear(2, 3, Lambda=np.diag([1.0, 0.0])), "Lambda"),
        (lambda: LSAMoments.linear(2, 3, sigma=-0.1), "sigma"),
        (lambda: LSAMoments.mor("not a config"), "config"),  # type: ignore[arg-type]
    ],
)
def test_bad_data(make, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError, match=f"^{name}"):
        make()
