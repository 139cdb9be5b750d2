"""Tests of the SNR-model Bayes floor (iclkit.constructions.bayes_snr): the Metropolis-within-Gibbs
posterior mean against quadrature over the components with the assignments summed exactly
(K = 1 and K = 2, d = 1, m <= 3; chains from the prior or the truth), the conjugate fixed-sigma posterior is measurably off in the
same cases (so the comparison has power), the symmetric model predicts 0, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iclkit.constructions import bayes_snr as BS
from iclkit.constructions.bayes_optimal import enumerate_posterior_mean
from iclkit.theory.mor import MoRBatch, MoRConfig, component_separation, sample_mor
from iclkit.theory.rng import make_generator
from iclkit.theory.validation import ParameterError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Half-width of the quadrature box in units of tau: the prior mass outside is below 1e-11.
BOX = 7.0


def _quadrature(batch: MoRBatch, m: int, eta: float, tau: float, points: int) -> np.ndarray:
    """``E[sum_k pi_k beta_k | first m examples]`` per prompt (d = 1, K = 1 or 2) by a
    Riemann sum on a uniform grid over ``[-BOX tau, BOX tau]^K`` of the unnormalised
    posterior ``prior(beta) prod_i sum_k pi_k N(y_i; x_i beta_k, sigma(beta)^2)``,
    ``sigma = R(beta) / eta``, computed in log space in numpy (independent of the sampler)."""
    K = batch.K
    g = np.linspace(-BOX * tau, BOX * tau, points)
    grids = np.meshgrid(*([g] * K), indexing="ij")
    B = np.stack([a.ravel() for a in grids], 1)  # (G, K)
    R = np.abs(B[:, 0]) if K == 1 else np.abs(B[:, 0] - B[:, 1])
    out = []
    for b in range(batch.B):
        pi = batch.pi[b].numpy()
        x, y = batch.X[b, :m, 0].numpy(), batch.y[b, :m].numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            s = R / eta
            logp = -(B**2).sum(1) / (2 * tau**2)
            for i in range(m):
                r2 = (y[i] - x[i] * B) ** 2  # (G, K)
                comp = np.log(pi)[None] - r2 / (2 * s[:, None] ** 2)
                top = comp.max(1)
                logp = logp + top + np.log(np.exp(comp - top[:, None]).sum(1)) - np.log(s)
        logp = np.where(R > 0, logp, -np.inf)
        w = np.exp(logp - logp.max())
        out.append(float((w * (B @ pi)).sum() / w.sum()))
    return np.array(out)


CASES = [
    # (K, pi, eta, m, seed)
    (1, (1.0,), 2.0, 1, 0),
    (1, (1.0,), 5.0, 3, 1),
    (2, (0.5, 0.5), 2.0, 2, 2),
    (2, (0.5, 0.5), 5.0, 3, 3),
    (2, (0.3, 0.7), 1.0, 3, 4),
    (2, (0.3, 0.7), 5.0, 2, 5),
]


@pytest.mark.parametrize(
    ("K", "pi", "eta", "m", "seed", "start"),
    [(*c, "prior") for c in CASES] + [(*c, "truth") for c in CASES[3:5]],
)
def test_sampler_matches_quadrature(
    K: int, pi: tuple[float, ...], eta: float, m: int, seed: int, start: str
) -> None:
    """Per prompt, ``|w_MC - w_quad| <= 5 se + 2 q + 1e-9`` where se is the chains' standard
    error (16 chains: P(|t_15| > 5) ~ 2e-4 per prompt) and q the quadrature's own error,
    estimated as the change from a grid of half the points (the Riemann sum of this smooth,
    rapidly decaying integrand converges far faster than that, so 2 q is generous). Chains
    start from the prior, or all at the true components (``start="truth"``)."""
    tau = 1.0
    batch = sample_mor(MoRConfig(d=1, K=K, n=m, snr=eta, pi=pi), 5, seed=seed)
    fine = _quadrature(batch, m, eta, tau, 2401 if K == 1 else 1201)
    coarse = _quadrature(batch, m, eta, tau, 1201 if K == 1 else 601)
    q = np.abs(fine - coarse)
    post = BS.snr_posterior_mean(
        batch.X[:, :m], batch.y[:, :m], batch.pi, eta, tau=tau,
        sweeps=1200, burn_in=200, chains=16, generator=make_generator(seed),
        init=batch.betas if start == "truth" else None,
    )  # fmt: skip
    got = post.w[:, 0].numpy()
    se = (post.chain_w[:, :, 0].std(1) / 4.0).numpy()
    assert np.all(np.abs(got - fine) <= 5 * se + 2 * q + 1e-9), (got, fine, se, q)
    assert 0.2 < post.acceptance <= 1.0


def test_fixed_sigma_posterior_misses_the_snr_posterior() -> None:
    """The conjugate posterior at the prompt's true sigma (what a learner told sigma computes)
    is not the SNR model's posterior: on these prompts (K = 2, d = 1, eta = 5, m = 3) it differs
    from quadrature by more than 20 times the sampler's tolerance on some prompt, so the
    comparison above can tell the two apart."""
    eta, m = 5.0, 3
    batch = sample_mor(MoRConfig(d=1, K=2, n=m, snr=eta), 5, seed=3)
    quad = _quadrature(batch, m, eta, 1.0, 1201)
    conj = enumerate_posterior_mean(batch.X[:, :m], batch.y[:, :m], batch.sigma, batch.pi).w
    assert np.max(np.abs(conj[:, 0].numpy() - quad)) > 0.05


def test_separation_is_the_data_models() -> None:
    betas = torch.randn(7, 4, 3, generator=make_generator(0), dtype=torch.float64)
    torch.testing.assert_close(BS.separation(betas), component_separation(betas), rtol=0, atol=0)
    torch.testing.assert_close(
        BS.separation(betas[:, :1]), component_separation(betas[:, :1]), rtol=0, atol=0
    )


def test_predictor_symmetric_is_zero_and_positions() -> None:
    data = MoRConfig(d=2, K=2, n=6, snr=2.0, symmetric=True)
    batch = sample_mor(data, 4, seed=0)
    mean, se = BS.BayesSNRPredictor.for_data(data).with_error(batch, [1, 6])
    assert torch.equal(mean, torch.zeros(4, 2, dtype=torch.float64))
    assert torch.equal(se, torch.zeros(4, 2, dtype=torch.float64))
    data = MoRConfig(d=2, K=3, n=6, snr=2.0)
    pred = BS.BayesSNRPredictor.for_data(data, sweeps=6, burn_in=2, chains=2, seed=1)
    batch = sample_mor(data, 3, seed=1)
    mean, se = pred.with_error(batch, [2, 6])
    assert mean.shape == se.shape == (3, 2) and bool(torch.isfinite(mean).all())
    assert bool((se > 0).all())
    torch.testing.assert_close(pred(batch, [2, 6]), mean, rtol=0, atol=0)  # seeded per m


def test_bad_input() -> None:
    base = MoRConfig(d=2, K=2, n=4, snr=2.0)
    with pytest.raises(ParameterError, match="^prior"):
        BS.BayesSNRPredictor.for_data(base.replace(prior="sphere"))
    with pytest.raises(ParameterError, match="^pi_mode"):
        BS.BayesSNRPredictor.for_data(base.replace(pi_mode="dirichlet"))
    with pytest.raises(ParameterError, match="^snr"):
        BS.BayesSNRPredictor.for_data(base.replace(sigma=0.5))
    with pytest.raises(ParameterError, match="chains"):
        BS.BayesSNRPredictor(snr=2.0, chains=1)
    with pytest.raises(ParameterError, match="burn_in"):
        BS.BayesSNRPredictor(snr=2.0, sweeps=5, burn_in=5)
    batch = sample_mor(base, 2, seed=0)
    g = make_generator(0)
    with pytest.raises(ParameterError, match="snr"):
        BS.snr_posterior_mean(batch.X, batch.y, batch.pi, 0.0, generator=g)
    with pytest.raises(ParameterError, match="pi"):
        BS.snr_posterior_mean(batch.X, batch.y, batch.pi * 0, 2.0, generator=g)
