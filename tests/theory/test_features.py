"""Tests of the feature-token data model (iclkit.theory.features)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iclkit.theory.features import (
    FeatureConfig,
    feature_basis,
    feature_probabilities,
    sample_feature_prompts,
)
from iclkit.theory.rng import make_generator
from iclkit.theory.validation import ParameterError


@given(
    K=st.integers(2, 6),
    extra=st.integers(0, 3),
    N=st.integers(1, 12),
    basis=st.sampled_from(["random", "standard"]),
    mode=st.sampled_from(["balanced", "imbalanced"]),
    seed=st.integers(0, 2**31),
)
def test_prompts_are_orthonormal_feature_tokens(K, extra, N, basis, mode, seed):
    cfg = FeatureConfig(
        K=K,
        N=N,
        d=K + extra,
        basis=basis,
        p_mode=mode,
        p_dominant=0.6 if mode == "imbalanced" else None,
    )
    batch = sample_feature_prompts(cfg, 7, seed=seed)
    V = batch.V
    # orthonormal frame: V^T V = I to float64 round-off
    assert torch.allclose(V.T @ V, torch.eye(K, dtype=torch.float64), atol=1e-12)
    assert batch.X.shape == (7, N + 1, K + extra)
    # every token is the feature its index says
    assert torch.equal(batch.X, V.T[batch.features])
    # labels are <w, x_i>, counts sum to N, the embedding has label 0 in the query slot
    assert torch.allclose(batch.y, torch.einsum("bnd,bd->bn", batch.X, batch.w), atol=1e-12)
    assert torch.equal(batch.counts.sum(1), torch.full((7,), N))
    E = batch.embedding
    assert E.shape == (7, K + extra + 1, N + 1)
    assert torch.all(E[:, -1, -1] == 0)
    assert torch.equal(E[:, -1, :-1], batch.y[:, :-1])
    # same seed -> identical output
    again = sample_feature_prompts(cfg, 7, seed=seed)
    assert torch.equal(again.X, batch.X) and torch.equal(again.w, batch.w)


def test_probabilities_modes():
    assert feature_probabilities(4) == (0.25,) * 4
    p = feature_probabilities(5, "imbalanced", p_dominant=0.6)
    assert p[0] == 0.6 and all(abs(v - 0.1) < 1e-15 for v in p[1:])
    assert feature_probabilities(3, "custom", p=[0.2, 0.3, 0.5]) == pytest.approx((0.2, 0.3, 0.5))
    assert FeatureConfig(K=5, N=3, p_mode="imbalanced", p_dominant=0.6).dominant == 0
    assert FeatureConfig(K=5, N=3).dominant is None


@pytest.mark.parametrize("prior", ["gaussian", "rademacher"])
def test_task_second_moment_and_token_frequencies(prior):
    cfg = FeatureConfig(K=3, N=40, d=4, p_mode="custom", p=(0.5, 0.3, 0.2), task_prior=prior)
    b = sample_feature_prompts(cfg, 20000, generator=make_generator(5))
    # E[w w^T] = I: each entry's sample mean within 5 standard errors (se <= sqrt(3/20000))
    M = (b.w.T @ b.w / b.w.shape[0]).numpy()
    se = np.sqrt(3.0 / 20000)
    assert np.abs(M - np.eye(4)).max() < 5 * se
    # token frequencies vs p: binomial standard error over 20000*41 tokens
    freq = np.bincount(b.features.reshape(-1).numpy(), minlength=3) / b.features.numel()
    p = np.array([0.5, 0.3, 0.2])
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / b.features.numel()))


def test_random_basis_depends_on_seed_only():
    cfg = FeatureConfig(K=3, N=2, d=5, basis="random")
    assert torch.equal(feature_basis(cfg, seed=1), feature_basis(cfg, seed=1))
    assert not torch.equal(feature_basis(cfg, seed=1), feature_basis(cfg, seed=2))
    assert torch.equal(
        feature_basis(FeatureConfig(K=3, N=2, d=5), seed=1), torch.eye(5, 3, dtype=torch.float64)
    )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"K": 1, "N": 3}, "K"),
        ({"K": 3, "N": 0}, "N"),
        ({"K": 4, "N": 3, "d": 3}, "d"),
        ({"K": 3, "N": 3, "p_mode": "imbalanced"}, "p_dominant"),
        ({"K": 3, "N": 3, "p_mode": "imbalanced", "p_dominant": 0.2}, "p_dominant"),
        ({"K": 3, "N": 3, "p_mode": "imbalanced", "p_dominant": 1.0}, "p_dominant"),
        ({"K": 3, "N": 3, "p_mode": "custom", "p": (0.5, 0.5)}, "p"),
        ({"K": 3, "N": 3, "p_mode": "custom", "p": (0.5, 0.5, 0.0)}, "p"),
        ({"K": 3, "N": 3, "p_mode": "custom"}, "p"),
        ({"K": 3, "N": 3, "p_mode": "weird"}, "p_mode"),
        ({"K": 3, "N": 3, "basis": "haar"}, "basis"),
        ({"K": 3, "N": 3, "task_prior": "cauchy"}, "task_prior"),
    ],
)
def test_bad_config_raises(kwargs, name):
    with pytest.raises(ParameterError, match=f"^{name}"):
        FeatureConfig(**kwargs)


def test_bad_sampler_input():
    cfg = FeatureConfig(K=3, N=2)
    with pytest.raises(ParameterError, match="^B"):
        sample_feature_prompts(cfg, 0, seed=0)
    with pytest.raises(ParameterError, match="^seed"):
        sample_feature_prompts(cfg, 2)
    with pytest.raises(ParameterError, match="^seed"):
        sample_feature_prompts(cfg, 2, seed=0, generator=make_generator(0))
    with pytest.raises(ParameterError, match="^V"):
        sample_feature_prompts(cfg, 2, seed=0, V=torch.eye(4))


@settings(max_examples=5)
@given(seed=st.integers(0, 1000))
def test_sampler_generator_stream(seed):
    cfg = FeatureConfig(K=3, N=4)
    a = sample_feature_prompts(cfg, 3, generator=make_generator(seed))
    b = sample_feature_prompts(cfg, 3, seed=seed)
    assert torch.equal(a.features, b.features)
