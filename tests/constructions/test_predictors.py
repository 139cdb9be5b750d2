"""Tests of the shared predictor interface (iclkit.constructions.predictors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate

from iclkit.constructions import predictors as P
from iclkit.constructions.bayes_optimal import BayesOptimalPredictor
from iclkit.theory.mor import MoRBatch, MoRConfig, sample_mor
from iclkit.theory.validation import ParameterError

ALL = [
    P.ZeroPredictor(),
    P.OraclePredictor(),
    P.KnownComponentsPredictor(),
    BayesOptimalPredictor(),
    P.EMPredictor(T=3),
    P.GradientEMPredictor(T_outer=3),
    P.OLSPredictor(),
    P.RidgePredictor(),
]


@pytest.mark.parametrize("pred", ALL, ids=lambda p: p.name)
def test_shapes_and_default_position(pred: P.Predictor) -> None:
    batch = sample_mor(MoRConfig(d=3, K=2, n=12), 5, seed=0)
    out = pred(batch, [1, 4, 12])
    assert out.shape == (5, 3) and out.dtype == torch.float64
    torch.testing.assert_close(pred(batch)[:, 0], out[:, 2])


@given(m=st.integers(1, 9), seed=st.integers(0, 10**6))
def test_prediction_at_m_uses_only_the_first_m_examples(m: int, seed: int) -> None:
    """Causal convention: tokens after position m must not change the prediction at m."""
    batch = sample_mor(MoRConfig(d=2, K=2, n=10), 3, seed=seed)
    y = batch.y.clone()
    X = batch.X.clone()
    y[:, m:] += 100.0
    X[:, m + 1 :] *= -3.0
    changed = MoRBatch(X, y, batch.z, batch.betas, batch.pi, batch.sigma)
    for pred in (
        P.EMPredictor(T=2),
        P.GradientEMPredictor(T_outer=2),
        P.OLSPredictor(),
        P.RidgePredictor(),
        BayesOptimalPredictor(),
    ):
        torch.testing.assert_close(pred(batch, [m]), pred(changed, [m]))


def test_known_components_equals_oracle_with_fixed_pi() -> None:
    batch = sample_mor(MoRConfig(d=3, K=3, n=20), 4, seed=1)
    torch.testing.assert_close(
        P.KnownComponentsPredictor()(batch, [5, 20]), P.OraclePredictor()(batch, [5, 20])
    )


def test_known_components_with_dirichlet_pi_matches_adaptive_quadrature() -> None:
    """Independent computation: scipy's adaptive quad of the posterior mean of pi_1."""
    config = MoRConfig(d=2, K=2, n=15, sigma=0.8, pi_mode="dirichlet", dirichlet_alpha=2.0)
    batch = sample_mor(config, 3, seed=4)
    got = P.KnownComponentsPredictor(dirichlet_alpha=2.0)(batch, [15])[:, 0]
    for b in range(3):
        X, y = batch.X[b, :15].numpy(), batch.y[b, :15].numpy()
        s = batch.sigma[b].item()
        phi = np.exp(-((y[:, None] - X @ batch.betas[b].numpy().T) ** 2) / (2 * s * s))

        def post(p: float, moment: int, phi: np.ndarray = phi) -> float:
            return p**moment * (p * (1 - p)) * np.prod(p * phi[:, 0] + (1 - p) * phi[:, 1])

        num = integrate.quad(post, 0, 1, args=(1,), epsabs=0, epsrel=1e-12, limit=200)[0]
        den = integrate.quad(post, 0, 1, args=(0,), epsabs=0, epsrel=1e-12, limit=200)[0]
        pi1 = num / den
        w = pi1 * batch.betas[b, 0] + (1 - pi1) * batch.betas[b, 1]
        assert got[b].item() == pytest.approx(float(batch.X[b, 15] @ w), rel=1e-7, abs=1e-10)


def test_em_predictor_is_deterministic_and_close_to_oracle_at_high_snr() -> None:
    batch = sample_mor(MoRConfig(d=3, K=2, n=2000, snr=20.0, pi=(0.3, 0.7)), 16, seed=2)
    pred = P.EMPredictor(T=10, seed=5)
    a, b = pred(batch), pred(batch)
    assert torch.equal(a, b)
    orc = P.OraclePredictor()(batch)
    scale = float(orc.abs().mean())
    assert float((a - orc).abs().mean()) < 0.05 * scale


def test_bad_positions_and_init() -> None:
    batch = sample_mor(MoRConfig(d=2, K=2, n=5), 2, seed=0)
    with pytest.raises(ParameterError, match="^positions"):
        P.OLSPredictor()(batch, [0])
    with pytest.raises(ParameterError, match="^positions"):
        P.OLSPredictor()(batch, [6])
    with pytest.raises(ParameterError, match="^init"):
        P.initial_estimate(batch.betas, method="kmeans", generator=torch.Generator())  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="^K"):
        P.KnownComponentsPredictor(dirichlet_alpha=1.0)(
            sample_mor(MoRConfig(d=2, K=3, n=5), 2, seed=0)
        )


def test_spectral_init_recovers_the_symmetric_component() -> None:
    """E[y^2 (x x^T - I)] = 2 beta beta^T for the symmetric model: the spectral estimate is
    consistent up to sign. Its error shrinks with n; at n = 20000, d = 5 it is ~3% (fourth
    moments make it noisier than sqrt(d/n)); the tolerance 0.08 is > 2x that."""
    errs = []
    for n in (1000, 20000):
        b = sample_mor(MoRConfig(d=5, K=2, n=n, snr=10.0, symmetric=True), 8, seed=0)
        init = P.initial_estimate(
            b.betas,
            method="spectral",
            generator=torch.Generator(),
            X=b.X_train,
            y=b.y_train,
            symmetric=True,
        )
        assert torch.equal(init[:, 1], -init[:, 0])
        from iclkit.theory.metrics import sign_invariant_error

        errs.append(
            float(
                (
                    sign_invariant_error(init[:, 0], b.betas[:, 0]) / b.betas[:, 0].norm(dim=-1)
                ).mean()
            )
        )
    assert errs[1] < errs[0] and errs[1] < 0.08, errs
    with pytest.raises(ParameterError, match="^X and y"):
        P.initial_estimate(b.betas, method="spectral", generator=torch.Generator())
