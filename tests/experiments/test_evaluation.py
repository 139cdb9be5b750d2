"""Tests of iclkit.experiments.evaluation: the Bayes-optimal baseline lies below the others,
the low-variance and direct excess-risk estimators agree, EM improves with n, ``em_spectral`` is
EM from the spectral start, the SNR-model Bayes floor's rows (floor corrected for Monte Carlo
noise, paired fall with m, paired transformer gap) follow from the sampler on the same prompts,
the transformer wrapper reproduces the model's forward pass, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from iclkit.constructions.algorithms import em
from iclkit.constructions.bayes_snr import BayesSNRPredictor
from iclkit.constructions.predictors import initial_estimate
from iclkit.experiments.evaluation import (
    BAYES_FLOOR,
    BAYES_FLOOR_FALL,
    BAYES_FLOOR_MC,
    BAYES_FLOOR_PRIOR_START,
    BAYES_START_GAP,
    TRANSFORMER_MINUS_FLOOR,
    EvalConfig,
    TransformerPredictor,
    evaluate,
)
from iclkit.experiments.models import ModelConfig, build_model
from iclkit.theory.mor import MoRConfig, sample_mor
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


def test_bayes_floor_rows_are_the_samplers_on_the_same_nested_prompts() -> None:
    """The floor rows are recomputed here from the sampler on the first ``bayes_prompts``
    held-out prompts (same seeds: equal to 1e-12 relative): the floor subtracts the chains'
    variance per prompt, the fall is floor(1) - floor(m) per prompt, the gap is the
    transformer's term minus the floor's on the same prompts, with their paired SEs; the
    floor's chains start at the truth, the ``prior_start`` rows' from the prior."""
    data = MoRConfig(d=2, K=2, n=8, snr=5.0)
    model = build_model(ModelConfig(d=2, max_n=8, D=8, layers=1, heads=2, arch="relu_encoder"))
    cfg = EvalConfig(prompts=40, positions=(1, 4, 8), methods=(), bayes_prompts=24,
                     bayes_updates=40, bayes_chains=3)  # fmt: skip
    res = evaluate(model, data, cfg, seed=1)
    batch = sample_mor(data, 40, seed=derive_seed(1, "eval"), dtype=torch.float64).select(
        slice(0, 24)
    )
    kw = {"sweeps": 20, "burn_in": 5, "chains": 3, "seed": derive_seed(1, "eval-bayes-snr")}
    y_b, se = BayesSNRPredictor.for_data(data, start="truth", **kw).with_error(batch, [1, 4, 8])
    y_p, se_p = BayesSNRPredictor.for_data(data, **kw).with_error(batch, [1, 4, 8])
    orc = torch.stack([(batch.X[:, m] * batch.w_oracle).sum(-1) for m in (1, 4, 8)], 1)
    floor = (y_b - orc) ** 2 - se**2
    floor_p = (y_p - orc) ** 2 - se_p**2
    y_t = TransformerPredictor(model)(batch, [1, 4, 8])
    for j, m in enumerate((1, 4, 8)):
        row = next(r for r in res.rows if r["method"] == BAYES_FLOOR and r["position"] == m)
        assert row["prompts"] == 24
        assert row["excess_risk"] == pytest.approx(float(floor[:, j].mean()), rel=1e-12)
        assert row["excess_risk_se"] == pytest.approx(float(floor[:, j].std()) / 24**0.5, rel=1e-9)
        assert res.risk(BAYES_FLOOR_MC, m) == pytest.approx(
            float((se[:, j] ** 2).mean()), rel=1e-12
        )
        assert res.risk(BAYES_FLOOR_PRIOR_START, m) == pytest.approx(
            float(floor_p[:, j].mean()), rel=1e-12
        )
        start_gap = float((floor_p[:, j] - floor[:, j]).mean())
        assert res.risk(BAYES_START_GAP, m) == pytest.approx(start_gap, rel=1e-9)
        gap = (y_t[:, j] - orc[:, j]) ** 2 - floor[:, j]
        assert res.risk(TRANSFORMER_MINUS_FLOOR, m) == pytest.approx(float(gap.mean()), rel=1e-9)
        if j:
            fall = floor[:, 0] - floor[:, j]
            row = next(
                r for r in res.rows if r["method"] == BAYES_FLOOR_FALL and r["position"] == m
            )
            assert row["excess_risk"] == pytest.approx(float(fall.mean()), rel=1e-9)
            assert row["excess_risk_se"] == pytest.approx(float(fall.std()) / 24**0.5, rel=1e-9)
    assert not any(r["method"] == BAYES_FLOOR_FALL and r["position"] == 1 for r in res.rows)
    assert set(res.stats["bayes_acceptance"]) == {
        f"{s}@{m}" for s in ("truth", "prior") for m in (1, 4, 8)
    }


def test_bayes_floor_is_below_the_untrained_transformer_and_falls() -> None:
    """On 200 prompts (K = 2, d = 2, SNR 5) the floor falls from m = 1 to m = 16 by more than 3
    paired SEs and the untrained transformer is above it by more than 3 paired SEs."""
    data = MoRConfig(d=2, K=2, n=16, snr=5.0)
    model = build_model(ModelConfig(d=2, max_n=16, D=8, layers=1, heads=2, arch="relu_encoder"))
    cfg = EvalConfig(prompts=200, positions=(1, 16), methods=(), bayes_prompts=200,
                     bayes_updates=200, bayes_chains=3)  # fmt: skip
    res = evaluate(model, data, cfg, seed=2)
    rows = {(r["method"], r["position"]): r for r in res.rows}
    fall = rows[(BAYES_FLOOR_FALL, 16)]
    assert fall["excess_risk"] > 3 * fall["excess_risk_se"]
    gap = rows[(TRANSFORMER_MINUS_FLOOR, 16)]
    assert gap["excess_risk"] > 3 * gap["excess_risk_se"]
    assert 0 < rows[(BAYES_FLOOR, 16)]["excess_risk"] < rows[(BAYES_FLOOR, 1)]["excess_risk"]


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
    with pytest.raises(ParameterError, match="bayes_updates"):
        EvalConfig(bayes_updates=0)
    with pytest.raises(ParameterError, match="^prior"):
        evaluate(
            None,
            DATA.replace(prior="sphere"),
            EvalConfig(prompts=4, methods=(), bayes_prompts=4),
            seed=0,
        )
    with pytest.raises(ParameterError, match="^snr"):
        evaluate(None, DATA_SIGMA, EvalConfig(prompts=4, methods=(), bayes_prompts=4), seed=0)
    with pytest.raises(ParameterError, match="positions"):
        evaluate(None, DATA, EvalConfig(prompts=4, positions=(41,), methods=("ols",)), seed=0)
    model = build_model(ModelConfig(d=2, max_n=10))
    with pytest.raises(ParameterError, match="n must be"):
        TransformerPredictor(model)(sample_mor(DATA, 2, seed=0))
    with pytest.raises(ParameterError, match="risk|method"):
        evaluate(None, DATA, EvalConfig(prompts=4, methods=("ols",)), seed=0).risk("em", 40)
