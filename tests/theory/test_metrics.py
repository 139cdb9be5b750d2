"""Tests of the risk and parameter-error metrics (iclkit.theory.metrics)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from iclkit.theory.metrics import (
    excess_risk,
    excess_risk_vs_oracle,
    parameter_error,
    prediction_mse,
    risk_ratio,
    sign_invariant_error,
)
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.validation import ParameterError


@given(K=st.integers(1, 20), d=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_parameter_error_is_invariant_under_relabelling(K: int, d: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(3, K, d, generator=g, dtype=torch.float64)
    est = truth + 0.3 * torch.randn(3, K, d, generator=g, dtype=torch.float64)
    perm = torch.randperm(K, generator=g)
    base = parameter_error(est, truth)
    torch.testing.assert_close(parameter_error(est[:, perm], truth), base)
    torch.testing.assert_close(parameter_error(est, truth[:, perm]), base)
    # never larger than the error without relabelling
    assert bool((base <= (est - truth).flatten(1).norm(dim=1) + 1e-12).all())


@given(K=st.integers(1, 5), seed=st.integers(0, 10**6))
def test_parameter_error_matches_brute_force(K: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(2, K, 3, generator=g, dtype=torch.float64)
    est = torch.randn(2, K, 3, generator=g, dtype=torch.float64)
    got = parameter_error(est, truth)
    for b in range(2):
        best = min(
            float((est[b, list(p)] - truth[b]).pow(2).sum().sqrt())
            for p in itertools.permutations(range(K))
        )
        assert got[b].item() == pytest.approx(best, rel=1e-12)


def test_sign_invariant_error() -> None:
    b = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    assert sign_invariant_error(-b, b).item() == 0.0
    assert sign_invariant_error(b * 0.5, b).item() == pytest.approx(0.5 * 5**0.5)


def test_excess_risk_estimators_agree_on_mor_data() -> None:
    """The paired estimator and the identity E(y_hat - y_orc)^2 estimate the same quantity.

    A predictor with a deliberate error (w_orc + 0.3 per coordinate) has true excess risk
    E(x^T delta)^2 = 0.09 d = 0.27 (Lambda = I). Both estimates must lie within 4 standard
    errors of it, and the identity's standard error must be smaller.
    """
    batch = sample_mor(MoRConfig(d=3, K=3, n=1, snr=3.0), 20000, seed=1)
    y_orc = batch.y_oracle
    y_hat = torch.einsum("bd,bd->b", batch.x_query, batch.w_oracle + 0.3)
    paired = excess_risk(y_hat, y_orc, batch.y_query)
    ident = excess_risk_vs_oracle(y_hat, y_orc)
    assert abs(paired.mean - 0.27) < 4 * paired.se
    assert abs(ident.mean - 0.27) < 4 * ident.se
    assert ident.se < paired.se
    mse = prediction_mse(y_hat, batch.y_query)
    oracle_mse = prediction_mse(y_orc, batch.y_query)
    assert mse.mean - oracle_mse.mean == pytest.approx(paired.mean, rel=1e-9)
    assert risk_ratio(y_hat, y_orc, batch.y_query) > 1.0


def test_metrics_reject_bad_input() -> None:
    y = torch.zeros(4, dtype=torch.float64)
    with pytest.raises(ParameterError, match="^y_hat"):
        prediction_mse(torch.zeros(3, dtype=torch.float64), y)
    with pytest.raises(ParameterError, match="^y_hat"):
        excess_risk(torch.full((4,), float("nan"), dtype=torch.float64), y, y)
    with pytest.raises(ParameterError, match="^estimate"):
        parameter_error(torch.zeros(2, 3, 4), torch.zeros(2, 2, 4))
    with pytest.raises(ParameterError, match="^y_oracle"):
        risk_ratio(y, y, y)


def test_relative_parameter_error() -> None:
    truth = torch.tensor(np.array([[[3.0, 4.0]]]))
    assert parameter_error(truth * 1.1, truth, relative=True).item() == pytest.approx(0.1)
