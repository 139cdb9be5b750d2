"""Tests of the one-layer softmax attention model (iclkit.dynamics.softmax.model).

The central check (docs/provenance.md §11): the closed-form population gradient on
Z = V^T Q V equals autograd of the full d x d model and finite differences. The full model's
population loss is computed independently of the closed form: by enumerating every token
sequence (K^(N+1) of them, with their probabilities) and the d task vectors w = sqrt(d) e_j
(a distribution with E[w w^T] = I exactly), running the real embedding through the model.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from iclkit.dynamics.softmax.model import (
    SoftmaxAttention,
    prompt_squared_errors,
    softmax_attention_prediction,
    softmax_attention_weights,
)
from iclkit.dynamics.softmax.population import population_moments
from iclkit.theory.features import FeatureConfig, feature_basis, sample_feature_prompts
from iclkit.theory.validation import ParameterError


def _enumerated_population(V: torch.Tensor, p: np.ndarray, N: int):
    """All (sequence, task) prompts with their probabilities: E (M, d+1, N+1), y_q (M,), w (M,)."""
    d, K = V.shape
    Es, yq, wt = [], [], []
    for seq in itertools.product(range(K), repeat=N + 1):
        prob = float(np.prod(p[list(seq)]))
        X = V.T[list(seq)]  # (N+1, d)
        for j in range(d):
            w = torch.zeros(d, dtype=torch.float64)
            w[j] = np.sqrt(d)
            y = X @ w
            E = torch.cat([X.T, torch.cat([y[:-1], torch.zeros(1, dtype=torch.float64)])[None]])
            Es.append(E)
            yq.append(y[-1])
            wt.append(prob / d)
    return torch.stack(Es), torch.stack(yq), torch.tensor(wt, dtype=torch.float64)


@given(
    K=st.integers(2, 3),
    N=st.integers(1, 3),
    extra=st.integers(0, 2),
    scale=st.floats(0.0, 3.0),
    query=st.booleans(),
    seed=st.integers(0, 2**20),
)
def test_closed_form_gradient_equals_autograd_and_finite_differences(
    K, N, extra, scale, query, seed
):
    rng = np.random.default_rng(seed)
    d = K + extra
    p = rng.dirichlet(np.ones(K)) * 0.9 + 0.1 / K  # positive entries
    cfg = FeatureConfig(K=K, N=N, d=d, basis="random")
    V = feature_basis(cfg, seed=seed)
    Z = scale * rng.standard_normal((K, K))
    # Q = V Z V^T plus a part outside span{v_n v_k^T}, which the loss must ignore
    R = torch.as_tensor(rng.standard_normal((d, d)))
    P_perp = torch.eye(d, dtype=torch.float64) - V @ V.T
    Q = (V @ torch.as_tensor(Z) @ V.T + P_perp @ R).requires_grad_(True)
    E, yq, wt = _enumerated_population(V, p, N)
    loss = (wt * prompt_squared_errors(Q, E, yq, include_query_in_softmax=query)).sum()
    (gQ,) = torch.autograd.grad(loss, Q)
    m = population_moments(Z, p, N, include_query_in_softmax=query, tail_mass=0.0)
    # float64 sums over <= 3^4 * 5 terms: agreement to ~1e-15; 1e-9 is the tolerance
    assert abs(float(loss.detach()) - m.loss) <= 1e-9
    assert torch.allclose(gQ, V @ torch.as_tensor(m.grad) @ V.T, atol=1e-9, rtol=0)
    # central differences of the closed-form loss, h = 2e-6: truncation ~h^2 * |L'''| (< 1e-10
    # for logits of size <= 3) plus round-off ~1e-16 / h (< 1e-10)
    h = 2e-6
    fd = np.zeros((K, K))
    for i in range(K):
        for j in range(K):
            Zp, Zm = Z.copy(), Z.copy()
            Zp[i, j] += h
            Zm[i, j] -= h
            lp = population_moments(Zp, p, N, include_query_in_softmax=query, tail_mass=0.0).loss
            lm = population_moments(Zm, p, N, include_query_in_softmax=query, tail_mass=0.0).loss
            fd[i, j] = (lp - lm) / (2 * h)
    assert np.abs(fd - m.grad).max() <= 1e-9


def test_prediction_matches_explicit_formula():
    cfg = FeatureConfig(K=4, N=6, d=5, basis="random", p_mode="imbalanced", p_dominant=0.5)
    b = sample_feature_prompts(cfg, 9, seed=3)
    Q = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for query in (False, True):
        got = softmax_attention_prediction(Q, b.embedding, include_query_in_softmax=query)
        for i in range(9):
            X, y = b.X[i], b.y[i]
            logits = torch.stack([X[j] @ Q @ X[-1] for j in range(X.shape[0])])
            if not query:
                logits = logits[:-1]
            a = torch.softmax(logits, 0)
            want = (a[:6] * y[:6]).sum()  # the query's value slot is 0
            assert torch.allclose(got[i], want, atol=1e-12)
        attn = softmax_attention_weights(Q, b.X, include_query_in_softmax=query)
        assert attn.shape == (9, 7 if query else 6)
        assert torch.allclose(attn.sum(1), torch.ones(9, dtype=torch.float64))
    module = SoftmaxAttention(5, Q0=Q)
    assert torch.allclose(module(b.embedding), softmax_attention_prediction(Q, b.embedding))
    assert torch.equal(SoftmaxAttention(3).Q.detach(), torch.zeros(3, 3, dtype=torch.float64))


def test_bad_shapes_raise():
    with pytest.raises(ParameterError, match="^Q"):
        softmax_attention_weights(torch.zeros(3, 4), torch.zeros(2, 5, 3))
    with pytest.raises(ParameterError, match="^E"):
        softmax_attention_prediction(torch.zeros(3, 3), torch.zeros(5, 3))
    with pytest.raises(ParameterError, match="^Q0"):
        SoftmaxAttention(3, Q0=torch.zeros(2, 2))
