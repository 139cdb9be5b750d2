"""Tests of the Bayes-optimal predictor (iclkit.constructions.bayes_optimal): closed form at
K = 1, enumeration vs importance sampling from the prior, Gibbs vs enumeration within its
stated Monte Carlo error, excess risk over the oracle positive and falling with n, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from iclkit.constructions import bayes_optimal as BO
from iclkit.constructions.predictors import OraclePredictor
from iclkit.theory.mor import MoRBatch, MoRConfig, sample_mor
from iclkit.theory.rng import make_generator
from iclkit.theory.validation import ParameterError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _args(batch: MoRBatch, m: int) -> tuple[torch.Tensor, ...]:
    return batch.X[:, :m], batch.y[:, :m], batch.sigma, batch.pi


@given(
    d=st.integers(1, 4),
    m=st.integers(1, 9),
    tau=st.floats(0.3, 3.0),
    sigma=st.floats(0.05, 2.0),
    seed=st.integers(0, 10**6),
)
def test_k1_is_bayesian_linear_regression(
    d: int, m: int, tau: float, sigma: float, seed: int
) -> None:
    """Independent closed form: the kernel (dual) form of the posterior predictive mean,
    ``x_q^T tau^2 X^T (tau^2 X X^T + sigma^2 I)^{-1} y``, in numpy."""
    batch = sample_mor(MoRConfig(d=d, K=1, n=m, sigma=sigma, prior_scale=tau), 3, seed=seed)
    got = BO.enumerate_posterior_mean(*_args(batch, m), tau=tau).predict(batch.X[:, m])[0]
    gibbs = BO.gibbs_posterior_mean(
        *_args(batch, m), tau=tau, sweeps=2, burn_in=1, chains=2, generator=make_generator(0)
    )
    for b in range(3):
        X, y, xq = batch.X[b, :m].numpy(), batch.y[b, :m].numpy(), batch.X[b, m].numpy()
        gram = tau**2 * X @ X.T + sigma**2 * np.eye(m)
        want = float(xq @ (tau**2 * X.T @ np.linalg.solve(gram, y)))
        scale = max(1.0, abs(want))
        assert abs(got[b].item() - want) <= 1e-10 * scale
        # one assignment: every Gibbs draw is the same, exact answer
        assert abs(float(batch.X[b, m] @ gibbs.w[b]) - want) <= 1e-10 * scale


@given(seed=st.integers(0, 10**6), perm_seed=st.integers(0, 10**6))
def test_enumeration_does_not_depend_on_the_order_of_the_examples(
    seed: int, perm_seed: int
) -> None:
    batch = sample_mor(MoRConfig(d=2, K=3, n=6, sigma=0.5, pi=(0.2, 0.3, 0.5)), 2, seed=seed)
    perm = torch.randperm(6, generator=make_generator(perm_seed))
    a = BO.enumerate_posterior_mean(*_args(batch, 6)).w
    X, y, sigma, pi = _args(batch, 6)
    b = BO.enumerate_posterior_mean(X[:, perm], y[:, perm], sigma, pi).w
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_enumeration_matches_importance_sampling_from_the_prior() -> None:
    """Brute force: draw the components from the prior, weight by the mixture likelihood of
    the prompt (assignments summed out), and take the self-normalised mean of
    ``x_q^T sum_k pi_k beta_k``. Its delta-method standard error sets the band: 4.5 SE
    (2e5 draws; effective sample size is a few thousand at sigma = 0.7, m = 4)."""
    tau, pi = 1.0, (0.3, 0.7)
    batch = sample_mor(MoRConfig(d=2, K=2, n=4, sigma=0.7, pi=pi), 3, seed=11)
    got = BO.enumerate_posterior_mean(*_args(batch, 4), tau=tau).predict(batch.X[:, 4])[0]
    rng = np.random.default_rng(0)
    draws = 200_000
    for b in range(3):
        X, y, xq = batch.X[b, :4].numpy(), batch.y[b, :4].numpy(), batch.X[b, 4].numpy()
        s = batch.sigma[b].item()
        betas = tau * rng.standard_normal((draws, 2, 2))  # (M, K, d)
        resid = y[None, :, None] - np.einsum("md,skd->smk", X, betas)  # (M, m, K)
        lik = (np.asarray(pi) * np.exp(-(resid**2) / (2 * s * s))).sum(-1)
        logw = np.log(lik).sum(-1)
        w = np.exp(logw - logw.max())
        g = np.einsum("d,skd,k->s", xq, betas, np.asarray(pi))
        est = float((w * g).sum() / w.sum())
        se = float(np.sqrt((w**2 * (g - est) ** 2).sum()) / w.sum())
        assert abs(got[b].item() - est) <= 4.5 * se, (b, got[b].item(), est, se)


def test_gibbs_agrees_with_enumeration_within_its_standard_error() -> None:
    """n = 10, K = 2, d = 3 (1024 assignments): the Gibbs estimate, Rao-Blackwellised over 16
    independent chains, lies within 4.5 of its own standard errors of the exact value for every
    prompt, and the standard errors are calibrated (mean squared z-score within [0.2, 3])."""
    batch = sample_mor(MoRConfig(d=3, K=2, n=10, sigma=0.5, pi=(0.4, 0.6)), 16, seed=3)
    exact = BO.enumerate_posterior_mean(*_args(batch, 10)).predict(batch.X[:, 10])[0]
    gibbs = BO.gibbs_posterior_mean(
        *_args(batch, 10), sweeps=120, burn_in=20, chains=16, generator=make_generator(7)
    )
    mean, se = gibbs.predict(batch.X[:, 10])
    z = (mean - exact) / se
    assert bool((z.abs() <= 4.5).all()), z
    assert 0.2 <= float((z**2).mean()) <= 3.0, z
    assert bool((se > 0).all()) and gibbs.chain_w is not None


def test_excess_risk_over_the_oracle_is_positive_and_falls_with_n() -> None:
    """Fixed sigma (the model where the predictor is exactly Bayes-optimal), K = 2, d = 2:
    E(y_hat - y_orc)^2 on 400 shared prompts at m = 1, 2, 4, 8 (enumeration). It is > 5 SE
    above 0 everywhere (the learner does not know the components) and strictly decreasing."""
    batch = sample_mor(MoRConfig(d=2, K=2, n=8, sigma=0.3), 400, seed=5)
    positions = [1, 2, 4, 8]
    pred = BO.BayesOptimalPredictor()(batch, positions)
    gap = (pred - OraclePredictor()(batch, positions)) ** 2  # (B, P)
    risk, se = gap.mean(0), gap.std(0) / gap.shape[0] ** 0.5
    assert bool((risk > 5 * se).all()), (risk, se)
    assert bool((risk[1:] < risk[:-1]).all()), risk


def test_auto_switches_to_gibbs_and_is_seeded() -> None:
    batch = sample_mor(MoRConfig(d=2, K=2, n=6), 3, seed=0)
    pred = BO.BayesOptimalPredictor(max_assignments=8, sweeps=6, burn_in=2, chains=2, seed=1)
    assert pred.posterior(batch, 3).method == "enumerate"
    assert pred.posterior(batch, 4).method == "gibbs"
    mean, se = pred.with_error(batch, [2, 6])
    assert torch.equal(mean, pred(batch, [2, 6]))  # same seed stream: identical
    assert float(se[:, 0].abs().max()) == 0.0 and bool((se[:, 1] > 0).all())
    with pytest.raises(ParameterError, match="^max_assignments"):
        BO.BayesOptimalPredictor(method="enumerate", max_assignments=8)(batch, [4])


def test_symmetric_model_predicts_zero_like_the_oracle() -> None:
    data = MoRConfig(d=3, K=2, n=5, symmetric=True)
    batch = sample_mor(data, 4, seed=2)
    pred = BO.BayesOptimalPredictor.for_data(data)
    assert pred.symmetric
    assert torch.equal(pred(batch, [1, 5]), torch.zeros(4, 2, dtype=torch.float64))
    torch.testing.assert_close(
        OraclePredictor()(batch, [1, 5]), torch.zeros(4, 2, dtype=torch.float64)
    )


def test_bad_input_names_the_parameter() -> None:
    for kwargs, name in [
        ({"tau": 0.0}, "tau"),
        ({"method": "mcmc"}, "method"),
        ({"sweeps": 0}, "sweeps"),
        ({"sweeps": 5, "burn_in": 5}, "burn_in"),
        ({"chains": 1}, "chains"),
        ({"max_assignments": 0}, "max_assignments"),
    ]:
        with pytest.raises(ParameterError, match=f"^{name}"):
            BO.BayesOptimalPredictor(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="^prior"):
        BO.BayesOptimalPredictor.for_data(MoRConfig(d=2, prior="sphere"))
    with pytest.raises(ParameterError, match="^pi_mode"):
        BO.BayesOptimalPredictor.for_data(MoRConfig(d=2, pi_mode="dirichlet"))
    batch = sample_mor(MoRConfig(d=2, K=2, n=4, sigma=0.5), 2, seed=0)
    X, y, sigma, pi = _args(batch, 4)
    with pytest.raises(ParameterError, match="^sigma"):
        BO.enumerate_posterior_mean(X, y, -sigma, pi)
    with pytest.raises(ParameterError, match="^pi"):
        BO.enumerate_posterior_mean(X, y, sigma, pi[:1])
    with pytest.raises(ParameterError, match="^y"):
        BO.enumerate_posterior_mean(X, y[:, :3], sigma, pi)
    with pytest.raises(ParameterError, match="^tau"):
        BO.gibbs_posterior_mean(X, y, sigma, pi, tau=-1.0, generator=make_generator(0))
    with pytest.raises(ParameterError, match="^positions"):
        BO.BayesOptimalPredictor()(batch, [5])
    with pytest.raises(ParameterError, match="^x_query"):
        BO.enumerate_posterior_mean(X, y, sigma, pi).predict(batch.X[:, 0, :1])
