"""Tests of iclkit.dynamics.lsa.loss (closed-form population loss)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iclkit.dynamics.lsa.loss import live_blocks, loss_gap, population_loss, reduced_loss
from iclkit.dynamics.lsa.moments import LSAMoments
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError


def _weights(d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(d + 1, d + 1)), rng.normal(size=(d + 1, d + 1))


def test_isotropic_minimum_value_exact() -> None:
    # docs/provenance.md §10: Lambda = I gives L* = (d/2)(d+1)/(N+d+1) exactly
    for d, N in [(1, 1), (3, 7), (20, 40)]:
        m = LSAMoments.linear(d, N)
        assert m.loss_star == pytest.approx(d / 2 * (d + 1) / (N + d + 1), rel=1e-13)


def test_full_loss_at_reduced_weights_is_reduced_loss() -> None:
    m = LSAMoments.mor(MoRConfig(d=3, K=2, n=6, sigma=0.4, pi=(0.7, 0.3)))
    Wk, Wp = _weights(3, 0)
    Wk[3, :3] = 0.0
    Wp[3, :3] = 0.0
    U, _, _, u = live_blocks(torch.as_tensor(Wk), torch.as_tensor(Wp))
    full = float(population_loss(m, Wk, Wp))
    assert full == pytest.approx(float(reduced_loss(m, (u * U).numpy())), rel=1e-14)


def test_dead_blocks_do_not_matter() -> None:
    m = LSAMoments.linear(2, 5, sigma=0.3)
    Wk, Wp = _weights(2, 1)
    Wk2, Wp2 = Wk.copy(), Wp.copy()
    Wk2[:, 2] += 5.0  # last column of W^KQ
    Wp2[:2, :] -= 3.0  # first d rows of W^PV
    assert float(population_loss(m, Wk, Wp)) == float(population_loss(m, Wk2, Wp2))


def test_loss_gap_is_loss_minus_minimum() -> None:
    m = LSAMoments.linear(3, 8, Lambda=np.diag([0.5, 1.0, 2.0]))
    G = np.random.default_rng(2).normal(size=(3, 3))
    direct = float(reduced_loss(m, G)) - m.loss_star
    assert loss_gap(m, G) == pytest.approx(direct, rel=1e-12)
    assert loss_gap(m, m.G_star) == 0.0
    assert float(reduced_loss(m, m.G_star)) == pytest.approx(m.loss_star, rel=1e-14)


def test_loss_is_minimised_at_G_star() -> None:
    m = LSAMoments.mor(MoRConfig(d=3, K=3, n=6, sigma=0.5, pi=(0.5, 0.3, 0.2)))
    rng = np.random.default_rng(3)
    base = float(reduced_loss(m, m.G_star))
    for _ in range(5):
        assert float(reduced_loss(m, m.G_star + 1e-3 * rng.normal(size=(3, 3)))) > base


def test_bad_shapes() -> None:
    m = LSAMoments.linear(2, 5)
    with pytest.raises(ParameterError, match="^W_KQ"):
        population_loss(m, np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ParameterError, match="^G"):
        reduced_loss(m, np.zeros((3, 3)))
    with pytest.raises(ParameterError, match="^W_KQ"):
        live_blocks(torch.zeros(3, 3), torch.zeros(2, 2))
