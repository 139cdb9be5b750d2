"""Tests of iclkit.experiments.evaluation: the Bayes-optimal baseline lies below the others,
the low-variance and direct excess-risk estimators agree, EM improves with n, the transformer
wrapper reproduces the model's forward pass, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from iclkit.experiments.evaluation import EvalConfig, TransformerPredictor, evaluate
from iclkit.experiments.models import ModelConfig, build_model
from iclkit.theory.mor import MoRConfig, sample_mor
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
    with pytest.raises(ParameterError, match="positions"):
        evaluate(None, DATA, EvalConfig(prompts=4, positions=(41,), methods=("ols",)), seed=0)
    model = build_model(ModelConfig(d=2, max_n=10))
    with pytest.raises(ParameterError, match="n must be"):
        TransformerPredictor(model)(sample_mor(DATA, 2, seed=0))
    with pytest.raises(ParameterError, match="risk|method"):
        evaluate(None, DATA, EvalConfig(prompts=4, methods=("ols",)), seed=0).risk("em", 40)
