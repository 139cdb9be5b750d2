"""Tests of iclkit.experiments.evaluation: the Bayes-optimal baseline lies below the others,
the low-variance and direct excess-risk estimators agree, EM improves with n, ``em_spectral`` is
EM from the spectral start, the fixed-sigma Bayes floor equals exact enumeration and its
Gibbs estimate is corrected for Monte Carlo noise, the transformer wrapper reproduces the
model's forward pass, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from iclkit.constructions.algorithms import em
from iclkit.constructions.bayes_optimal import enumerate_posterior_mean
from iclkit.constructions.predictors import initial_estimate
from iclkit.experiments.evaluation import (
    BAYES_FLOOR,
    TRANSFORMER_FIXED_SIGMA,
    EvalConfig,
    TransformerPredictor,
    evaluate,
)
from iclkit.experiments.models import ModelConfig, build_model
from iclkit.theory.mor import MoRBatch, MoRConfig, sample_mor
from iclkit.theory.rng import derive_seed, make_generator
from iclkit.theory.validation import ParameterError

DATA = MoRConfig(d=2, K=2, n=40, snr=10.0)
#: Fixed sigma: the model in which ``bayes_optimal`` is exactly Bayes-optimal.
DATA_SIGMA = MoRConfig(d=2, K=2, n=8, sigma=0.3)


def test_baselines_on_shared_prompts() -> None:
    res = evaluate(
        None,
        DATA,
        EvalConfig(prompts=400, positions=(5, 40), methods=("em_local", "ols", "zero")),
        seed=0,
    )
    df = res.to_frame()
    assert set(df.method) == {"em_local", "ols", "zero"}
    # two estimators of the same quantity (E(y_hat-y_orc)^2 vs the difference of risks) agree
    # within 4 combined standard errors
    for _, r in df.iterrows():
        tol = 4 * math.hypot(r.excess_risk_se, r.excess_risk_direct_se) + 1e-12
        assert abs(r.excess_risk - r.excess_risk_direct) <= tol
    # EM from a local init improves with the prompt length (40 vs 5 examples; d = 2)
    assert res.risk("em_local", 40) < 0.5 * res.risk("em_local", 5)
    assert res.stats["failures"] == {}


def test_bayes_optimal_baseline_is_below_the_learners_that_do_not_know_the_truth() -> None:
    """The posterior mean minimises E(y_hat - y)^2, hence E(y_hat - y_orc)^2, over predictors of
    the prompt: below OLS and zero at every position (400 shared prompts, fixed sigma), and above
    0 (it does not know the components)."""
    res = evaluate(
        None,
        DATA_SIGMA,
        EvalConfig(prompts=400, positions=(1, 4, 8), methods=("ols", "bayes_optimal", "zero")),
        seed=0,
    )
    for m in (1, 4, 8):
        bayes = res.risk("bayes_optimal", m)
        assert 0 < bayes < min(res.risk("ols", m), res.risk("zero", m))
    with pytest.raises(ParameterError, match="^prior"):
        evaluate(
            None,
            DATA_SIGMA.replace(prior="sphere"),
            EvalConfig(prompts=4, methods=("bayes_optimal",)),
            seed=0,
        )


def test_em_spectral_is_em_from_the_spectral_start() -> None:
    """``em_spectral`` equals EM run here from ``initial_estimate(method="spectral")`` on the
    same held-out prompts (same float64 computation: 1e-12 relative), and differs from EM from a
    random start."""
    data = MoRConfig(d=3, K=3, n=30, snr=5.0)
    cfg = EvalConfig(prompts=64, positions=(6, 30), methods=("em", "em_spectral"), em_T=15)
    res = evaluate(None, data, cfg, seed=3)
    batch = sample_mor(data, 64, seed=derive_seed(3, "eval"), dtype=torch.float64)
    for m in (6, 30):
        X, y = batch.X[:, :m], batch.y[:, :m]
        init = initial_estimate(
            batch.betas, method="spectral", generator=make_generator(0), X=X, y=y
        )
        fit = em(X, y, init, batch.sigma, None, T=15, estimate_pi=True)
        w = torch.einsum("bk,bkd->bd", fit.pi, fit.betas)
        want = float(((batch.X[:, m] * (w - batch.w_oracle)).sum(-1) ** 2).mean())
        assert res.risk("em_spectral", m) == pytest.approx(want, rel=1e-12)
        assert res.risk("em_spectral", m) != pytest.approx(res.risk("em", m), rel=1e-6)


def _exact_floor(batch: MoRBatch, m: int) -> torch.Tensor:
    """Per-prompt (y_B - y_orc)^2 with y_B by exact enumeration over all K^m assignments."""
    post = enumerate_posterior_mean(batch.X[:, :m], batch.y[:, :m], batch.sigma, batch.pi)
    return ((batch.X[:, m] * (post.w - batch.w_oracle)).sum(-1)) ** 2


def test_bayes_floor_is_exact_on_fixed_sigma_prompts_and_below_the_transformer() -> None:
    """With ``bayes_prompts`` the floor is measured on prompts drawn like the SNR data but with
    sigma fixed at the median sigma of the SNR prompts: it equals exact enumeration computed
    here (1e-9 relative, float64 sums in another order), is positive, falls with m, and the
    transformer on the same prompts is not below it (an untrained model: far above)."""
    data = MoRConfig(d=2, K=2, n=8, snr=5.0)
    model = build_model(ModelConfig(d=2, max_n=8, D=8, layers=1, heads=2, arch="relu_encoder"))
    cfg = EvalConfig(prompts=64, positions=(1, 4, 8), methods=("ols",), bayes_prompts=96)
    res = evaluate(model, data, cfg, seed=1)
    snr_batch = sample_mor(data, 64, seed=derive_seed(1, "eval"), dtype=torch.float64)
    sigma = float(snr_batch.sigma.median())
    assert res.stats["bayes_sigma"] == sigma
    fixed = sample_mor(
        MoRConfig(d=2, K=2, n=8, sigma=sigma), 96, seed=derive_seed(1, "eval-bayes"),
        dtype=torch.float64,
    )  # fmt: skip
    floors = [res.risk(BAYES_FLOOR, m) for m in (1, 4, 8)]
    for m, got in zip((1, 4, 8), floors, strict=True):
        assert got == pytest.approx(float(_exact_floor(fixed, m).mean()), rel=1e-9)
        assert res.risk(TRANSFORMER_FIXED_SIGMA, m) > got
    assert 0 < floors[2] < floors[1] < floors[0]
    assert {r["prompts"] for r in res.rows if r["method"] == BAYES_FLOOR} == {96}


def test_bayes_floor_gibbs_is_corrected_for_its_monte_carlo_noise() -> None:
    """At m = 15 (2^15 assignments > the enumeration limit) the floor comes from Gibbs; its
    stored excess risk subtracts the chains' variance estimate per prompt, and agrees with
    exact enumeration on the same prompts within 4 standard errors of the per-prompt
    difference (Monte Carlo over prompts)."""
    data = MoRConfig(d=2, K=2, n=15, sigma=0.5)
    cfg = EvalConfig(prompts=4, methods=(), bayes_prompts=24, bayes_sweeps=60, bayes_chains=4)
    row = next(r for r in evaluate(None, data, cfg, seed=2).rows if r["method"] == BAYES_FLOOR)
    fixed = sample_mor(data, 24, seed=derive_seed(2, "eval-bayes"), dtype=torch.float64)
    exact = _exact_floor(fixed, 15)
    tol = 4 * max(float(row["excess_risk_se"]), float(exact.std()) / math.sqrt(24))
    assert abs(row["excess_risk"] - float(exact.mean())) <= tol


def test_transformer_predictor_matches_forward() -> None:
    model = build_model(ModelConfig(d=2, max_n=40, D=8, layers=1, heads=2, arch="relu_encoder"))
    batch = sample_mor(DATA, 10, seed=1)
    got = TransformerPredictor(model, chunk=3)(batch, [1, 7, 40])
    want = model.double()(batch.X, batch.y)[:, [1, 7, 40]].detach()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)  # same float64 computation
    res = evaluate(model.float(), DATA, EvalConfig(prompts=8, methods=()), seed=0)
    assert [r["method"] for r in res.rows] == ["transformer"] and res.rows[0]["position"] == 40


def test_bad_input() -> None:
    with pytest.raises(ParameterError, match="methods"):
        EvalConfig(methods=("magic",))
    with pytest.raises(ParameterError, match="prompts"):
        EvalConfig(prompts=1)
    with pytest.raises(ParameterError, match="positions"):
        EvalConfig(positions=())
    with pytest.raises(ParameterError, match="bayes_prompts"):
        EvalConfig(bayes_prompts=1)
    with pytest.raises(ParameterError, match="bayes_chains"):
        EvalConfig(bayes_chains=1)
    with pytest.raises(ParameterError, match="bayes_sweeps"):
        EvalConfig(bayes_sweeps=0)
    with pytest.raises(ParameterError, match="^prior"):
        evaluate(
            None,
            DATA.replace(prior="sphere"),
            EvalConfig(prompts=4, methods=(), bayes_prompts=4),
            seed=0,
        )
    with pytest.raises(ParameterError, match="positions"):
        evaluate(None, DATA, EvalConfig(prompts=4, positions=(41,), methods=("ols",)), seed=0)
    model = build_model(ModelConfig(d=2, max_n=10))
    with pytest.raises(ParameterError, match="n must be"):
        TransformerPredictor(model)(sample_mor(DATA, 2, seed=0))
    with pytest.raises(ParameterError, match="risk|method"):
        evaluate(None, DATA, EvalConfig(prompts=4, methods=("ols",)), seed=0).risk("em", 40)
