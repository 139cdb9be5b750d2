"""Tests of iclkit.dynamics.lsa.convergence (flow vs symbolic optimum, tail rate)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iclkit.dynamics.lsa.convergence import lsa_convergence
from iclkit.dynamics.lsa.init import random_init, structured_init
from iclkit.dynamics.lsa.moments import LSAMoments
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError


@pytest.mark.parametrize("data", ["linear", "mor"])
def test_converges_and_tail_rate_matches_jacobian(data: str) -> None:
    lam = np.diag([0.5, 1.0, 1.5, 2.0])
    m = (
        LSAMoments.linear(4, 12, Lambda=lam)
        if data == "linear"
        else LSAMoments.mor(
            MoRConfig(d=4, K=3, n=12, sigma=0.5, pi=(0.5, 0.3, 0.2), Lambda=tuple(map(tuple, lam)))
        )
    )
    res = lsa_convergence(m, structured_init(m, 0.4, seed=2))
    assert res.rel_error <= 1e-8 and not res.error_is_absolute
    assert res.conserved_drift <= 1e-9  # LSODA rtol 1e-11 on the eigenbasis state
    # log-linear tail: the fitted exponent equals 2 x the slowest Jacobian eigenvalue at the
    # optimum (local linearisation), within 2 % (fit window 1e-13 .. 1e-4)
    assert res.tail_rate_fit == pytest.approx(res.fixed_points.tail_rate, rel=0.02)
    out = res.to_json()
    json.dumps(out, allow_nan=False)  # strict JSON (no NaN)
    assert out["status"] == "converged" and out["rel_error"] == res.rel_error
    if data == "linear":
        assert out["pl_constant_restated_unverified"] is not None
    else:
        assert out["pl_constant_restated_unverified"] is None


def test_symmetric_reports_absolute_error_and_reason() -> None:
    m = LSAMoments.mor(MoRConfig(d=2, K=2, n=6, sigma=0.5, symmetric=True))
    res = lsa_convergence(m, structured_init(m, 0.5, seed=0), t_max=1e3)
    assert res.error_is_absolute and res.rel_error < 0.05
    assert "G* = 0" in str(res.to_json()["degenerate_reason"])


def test_bad_flow_choice() -> None:
    m = LSAMoments.linear(2, 4)
    with pytest.raises(ParameterError, match="^flow"):
        lsa_convergence(m, random_init(m, 0.5, seed=0, blocks="live"), flow="eigen")
    with pytest.raises(ParameterError, match="^flow"):
        lsa_convergence(m, structured_init(m, 0.5), flow="fast")
    with pytest.raises(ParameterError, match="^t_max"):
        lsa_convergence(m, structured_init(m, 0.5), t_max=0)
