"""Closed-form loss (iclkit.dynamics.lsa.loss) == sympy-derived loss (iclkit.dynamics.lsa.symbolic)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iclkit.dynamics.lsa.loss import population_loss
from iclkit.dynamics.lsa.moments import LSAMoments
from iclkit.dynamics.lsa.symbolic import derive_population_loss
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError


def _config(d: int, K: int, sym: bool, data: st.DataObject) -> MoRConfig:
    N = data.draw(st.integers(1, 12))
    sigma = data.draw(st.floats(0.05, 2.0))
    prior = data.draw(st.sampled_from(["gaussian", "sphere"]))
    scale = data.draw(st.floats(0.3, 2.0))
    A = np.asarray(data.draw(st.lists(st.floats(-1, 1), min_size=d * d, max_size=d * d))).reshape(
        d, d
    )
    lam = A @ A.T + 0.2 * np.eye(d)
    pi = None
    if K > 1 and not sym:
        w = np.asarray(data.draw(st.lists(st.floats(0.1, 1.0), min_size=K, max_size=K)))
        pi = tuple(w / w.sum())
    return MoRConfig(
        d=d,
        K=K,
        n=N,
        sigma=sigma,
        pi=pi,
        symmetric=sym,
        prior=prior,
        prior_scale=scale,
        Lambda=tuple(map(tuple, lam)),
    )


@settings(max_examples=10)
@given(case=st.sampled_from([(1, 1, False), (1, 2, True), (1, 2, False)]), data=st.data())
def test_full_loss_equals_sympy_d1(case: tuple[int, int, bool], data: st.DataObject) -> None:
    d, K, sym = case
    cfg = _config(d, K, sym, data)
    m = LSAMoments.mor(cfg)
    w = np.asarray(data.draw(st.lists(st.floats(-2, 2), min_size=8, max_size=8))).reshape(2, 2, 2)
    S = derive_population_loss(d, K, sym)
    closed = float(population_loss(m, w[0], w[1]))
    # two evaluations of the same polynomial in float64: agree to round-off (1e-10 relative)
    assert closed == pytest.approx(S(m, w[0], w[1]), rel=1e-10, abs=1e-12)


@settings(max_examples=8)
@given(data=st.data())
def test_reduced_loss_equals_sympy_d2(data: st.DataObject) -> None:
    cfg = _config(2, 1, False, data)
    m = LSAMoments.mor(cfg)
    w = np.asarray(data.draw(st.lists(st.floats(-2, 2), min_size=5, max_size=5)))
    Wk, Wp = np.zeros((3, 3)), np.zeros((3, 3))
    Wk[:2, :2] = w[:4].reshape(2, 2)
    Wp[2, 2] = w[4]
    S = derive_population_loss(2, 1, False, reduced=True)
    assert float(population_loss(m, Wk, Wp)) == pytest.approx(S(m, Wk, Wp), rel=1e-10, abs=1e-12)


def test_linear_data_is_K1_gaussian() -> None:
    lin = LSAMoments.linear(1, 4, Lambda=np.array([[1.7]]), sigma=0.3)
    S = derive_population_loss(1, 1, False)
    Wk, Wp = np.array([[0.4, 0.2], [-0.7, 0.1]]), np.array([[0.3, -0.5], [0.9, 1.1]])
    assert float(population_loss(lin, Wk, Wp)) == pytest.approx(S(lin, Wk, Wp), rel=1e-12)


def test_bad_arguments() -> None:
    with pytest.raises(ParameterError, match="^d"):
        derive_population_loss(5, 1)
    with pytest.raises(ParameterError, match="^K"):
        derive_population_loss(1, 3, True)
    S = derive_population_loss(1, 1, False)
    with pytest.raises(ParameterError, match="^moments"):
        S(LSAMoments.linear(2, 3), np.zeros((3, 3)), np.zeros((3, 3)))
