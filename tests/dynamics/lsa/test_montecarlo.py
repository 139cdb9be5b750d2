"""Closed-form LSA loss == Monte Carlo over sampled prompts (docs/provenance.md §10)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iclkit.dynamics.lsa.loss import population_loss
from iclkit.dynamics.lsa.moments import LSAMoments
from iclkit.dynamics.lsa.montecarlo import monte_carlo_loss
from iclkit.theory.linear import LinearConfig
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError


# Expensive (1.5e5 prompts each): a few examples only.
@settings(max_examples=5)
@given(
    K=st.sampled_from([1, 2, 3]),
    sym=st.booleans(),
    N=st.integers(2, 6),
    sigma=st.floats(0.1, 1.0),
    seed=st.integers(0, 1000),
)
def test_mor_closed_form_within_4se(K: int, sym: bool, N: int, sigma: float, seed: int) -> None:
    d = 2
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    lam = A @ A.T / d + 0.3 * np.eye(d)
    sym = sym and K == 2
    cfg = MoRConfig(
        d=d,
        K=K,
        n=N,
        sigma=sigma,
        symmetric=sym,
        Lambda=tuple(map(tuple, lam)),
        pi=None if K == 1 or sym else tuple(rng.dirichlet(np.ones(K)) * 0.8 + 0.2 / K),
    )
    Wk, Wp = 0.5 * rng.normal(size=(d + 1, d + 1)), 0.5 * rng.normal(size=(d + 1, d + 1))
    est = monte_carlo_loss(cfg, Wk, Wp, n_prompts=150_000, seed=seed)
    closed = float(population_loss(LSAMoments.mor(cfg), Wk, Wp))
    # heavy-tailed integrand (degree 8 in Gaussians): compare in standard errors, not relative;
    # 4 se leaves a false-failure rate ~1e-4 per example if se is well estimated.
    assert abs(est.mean - closed) <= 4 * est.se


def test_linear_closed_form_within_4se() -> None:
    lam = np.array([[1.2, 0.4], [0.4, 0.6]])
    cfg = LinearConfig(d=2, n=5, sigma=0.2, Lambda=tuple(map(tuple, lam)))
    m = LSAMoments.linear(2, 5, Lambda=lam, sigma=0.2)
    rng = np.random.default_rng(5)
    Wk, Wp = 0.5 * rng.normal(size=(3, 3)), 0.5 * rng.normal(size=(3, 3))
    est = monte_carlo_loss(cfg, Wk, Wp, n_prompts=200_000, seed=1)
    assert abs(est.z_score(float(population_loss(m, Wk, Wp)))) <= 4


def test_monte_carlo_detects_a_wrong_loss() -> None:
    # the MC check has power: the loss without the dead-block terms (p != 0) is rejected
    cfg = MoRConfig(d=2, K=2, n=4, sigma=0.3, pi=(0.6, 0.4))
    m = LSAMoments.mor(cfg)
    Wk, Wp = np.zeros((3, 3)), np.zeros((3, 3))
    Wk[:2, :2] = [[0.8, 0.1], [-0.2, 0.5]]
    Wp[2, :2] = [0.7, -0.6]
    Wp[2, 2] = 0.9
    est = monte_carlo_loss(cfg, Wk, Wp, n_prompts=200_000, seed=2)
    Wp0 = Wp.copy()
    Wp0[2, :2] = 0.0
    wrong = float(population_loss(m, Wk, Wp0))
    assert abs(est.z_score(wrong)) > 10
    assert abs(est.z_score(float(population_loss(m, Wk, Wp)))) <= 4


def test_bad_arguments() -> None:
    cfg = LinearConfig(d=2, n=3)
    with pytest.raises(ParameterError, match="^n_prompts"):
        monte_carlo_loss(cfg, np.zeros((3, 3)), np.zeros((3, 3)), n_prompts=1)
    with pytest.raises(ParameterError, match="^W_KQ"):
        monte_carlo_loss(cfg, np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ParameterError, match="^data"):
        monte_carlo_loss("x", np.zeros((3, 3)), np.zeros((3, 3)))  # type: ignore[arg-type]
