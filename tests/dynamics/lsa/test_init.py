"""Tests of iclkit.dynamics.lsa.init (ZFB Assumption 3.3, MoR analogue, random inits)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from iclkit.dynamics.lsa.init import (
    InitConditionWarning,
    LSAInit,
    random_init,
    scale_condition,
    structured_init,
)
from iclkit.dynamics.lsa.moments import LSAMoments
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError


def test_structured_init_is_assumption_3_3() -> None:
    m = LSAMoments.linear(3, 6, Lambda=np.diag([0.5, 1.0, 2.0]))
    init = structured_init(m, 0.4, seed=7)
    assert init.u == 0.4
    np.testing.assert_allclose(init.U, init.U.T)  # U(0) = s Theta Theta^T is symmetric PSD
    assert np.linalg.eigvalsh(init.U).min() >= -1e-15
    assert np.linalg.norm(init.U) == pytest.approx(0.4, rel=1e-14)  # ||Theta Theta^T||_F = 1
    assert not init.p.any() and not init.q.any()
    others = init.W_KQ.copy()
    others[:3, :3] = 0
    assert not others.any() and np.count_nonzero(init.W_PV) == 1
    # the same seed gives the same Theta
    np.testing.assert_array_equal(init.U, structured_init(m, 0.4, seed=7).U)


def test_condition_value_is_zfb() -> None:
    lam = np.diag([0.5, 1.0, 2.0])
    N = 6
    m = LSAMoments.linear(3, N, Lambda=lam)
    gamma_op = (1 + 1 / N) * 2.0 + 3.5 / N  # largest eigenvalue of Gamma, typed by hand
    cond = scale_condition(m, 0.4)
    assert cond.value == pytest.approx(0.16 * gamma_op * np.sqrt(3), rel=1e-12)
    assert cond.holds and "READ-2nd" in cond.source


def test_violated_condition_warns_with_the_bound() -> None:
    m = LSAMoments.mor(MoRConfig(d=3, K=2, n=6, sigma=0.5, pi=(0.7, 0.3)))
    with pytest.warns(InitConditionWarning, match="condition fails; use scale <"):
        init = structured_init(m, 5.0, seed=0)
    assert init.condition is not None and not init.condition.holds
    assert "RECON" in init.condition.source
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        structured_init(m, 5.0, seed=0, warn=False)


def test_symmetric_condition_not_applicable() -> None:
    m = LSAMoments.mor(MoRConfig(d=2, K=2, n=6, sigma=0.5, symmetric=True))
    cond = structured_init(m, 3.0, seed=0).condition
    assert cond is not None and "G* = 0" in cond.message


def test_random_init_blocks() -> None:
    m = LSAMoments.linear(3, 5)
    live = random_init(m, 1.0, seed=1, blocks="live")
    assert live.p.any() and live.q.any() and live.W_KQ[:, 3].sum() == 0
    red = random_init(m, 1.0, seed=1, blocks="reduced")
    assert not red.p.any() and not red.q.any() and red.u != 0
    full = random_init(m, 1.0, seed=1, blocks="all")
    assert np.count_nonzero(full.W_KQ) == 16


def test_bad_inputs() -> None:
    m = LSAMoments.linear(2, 5)
    with pytest.raises(ParameterError, match="^scale"):
        structured_init(m, 0.0)
    with pytest.raises(ParameterError, match="^scale"):
        random_init(m, -1.0)
    with pytest.raises(ParameterError, match="^Theta"):
        structured_init(m, 0.5, Theta=np.zeros((2, 2)))
    with pytest.raises(ParameterError, match="^Theta"):
        structured_init(m, 0.5, Theta=np.ones((3, 3)))
    with pytest.raises(ParameterError, match="^blocks"):
        random_init(m, 1.0, blocks="some")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="^U"):
        LSAInit.from_reduced(np.zeros((2, 3)), 1.0)
