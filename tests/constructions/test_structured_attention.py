"""Structured (O(N D)) attention: ``path="auto"`` equals the dense ``N x N`` evaluation.

References: the dense path of :func:`iclkit.constructions.attention.attention` (itself tested
against a naive double loop in ``test_constructions_attention.py``) and that naive loop.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iclkit.constructions.attention import Head, PathCounts, attention
from iclkit.constructions.gradient_em_transformer import (
    ConstructionConfig,
    build_gradient_em_transformer,
    run_gradient_em_transformer,
)
from iclkit.constructions.layout import read_beta, read_y
from iclkit.constructions.structured_attention import TrainTokens
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.validation import ParameterError

f64 = torch.float64

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: auto vs dense: the same sums re-associated, so float64 round-off only.
REL = 1e-12


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _naive(H: torch.Tensor, heads: list[Head], mask: torch.Tensor, relu: bool) -> torch.Tensor:
    """``h_i + sum_m (1/n) sum_{j: t_j = 1} phi(<Q h_i, K h_j>) V h_j`` by loops."""
    out = H.clone()
    for b in range(H.shape[0]):
        keys = [j for j in range(H.shape[1]) if mask[b, j] > 0]
        for i in range(H.shape[1]):
            for h in heads:
                for j in keys:
                    s = (h.Q @ H[b, i]) @ (h.K @ H[b, j])
                    out[b, i] += (torch.relu(s) if relu else s) / len(keys) * (h.V @ H[b, j])
    return out


def _construction(
    d: int, n: int, K: int, symmetric: bool, T_outer: int, T_inner: int, M: int, seed: int
) -> tuple[object, torch.Tensor]:
    pi = (0.5, 0.5) if K == 2 else (0.5, 0.3, 0.2)
    cfg = MoRConfig(d=d, K=K, n=n, sigma=0.3, pi=pi, symmetric=symmetric, prior="sphere")
    b = sample_mor(cfg, 2, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    init = b.betas + 0.3 * torch.randn(b.betas.shape, generator=g, dtype=f64)
    tf = build_gradient_em_transformer(
        d, K, n, 0.3, T_outer, T_inner, 1.0, M, symmetric=symmetric, pi=pi
    )
    return tf, tf.embed(b.X_train, b.y_train, init, b.x_query)


@settings(max_examples=8)  # each example runs a construction twice (auto and dense)
@given(
    d=st.integers(1, 8),
    extra=st.integers(1, 60),
    K=st.sampled_from([2, 3]),
    sym=st.booleans(),
    T_outer=st.integers(0, 3),
    T_inner=st.integers(1, 2),
    M=st.sampled_from([4, 8, 12]),
    seed=st.integers(0, 10_000),
)
def test_auto_equals_dense_on_constructions(
    d: int, extra: int, K: int, sym: bool, T_outer: int, T_inner: int, M: int, seed: int
) -> None:
    symmetric = sym and K == 2
    tf, H = _construction(d, d + extra, K, symmetric, T_outer, T_inner, M, seed)
    model = tf.model  # type: ignore[attr-defined]
    layout = tf.layout  # type: ignore[attr-defined]
    counts = PathCounts()
    auto = model(H, path="auto", counts=counts)
    dense = model(H, path="dense")
    # every head of the construction has the structure: nothing falls back
    assert counts.dense == 0 and counts.own_rows == 0
    assert counts.structured == sum(model.heads_per_layer())
    assert _rel(read_beta(layout, auto), read_beta(layout, dense)) <= REL
    assert _rel(read_y(layout, auto), read_y(layout, dense)) <= REL
    # layer by layer from the same input: round-off of one layer
    key_mask = H[..., layout.t]
    for layer in model.attention_layers[:6]:
        a = layer(H, key_mask, path="auto")
        assert _rel(a, layer(H, key_mask, path="dense")) <= REL
        H = a


@settings(max_examples=10)
@given(
    B=st.integers(1, 3),
    N=st.integers(3, 9),  # at least two train tokens (one alone is trivially shared)
    D=st.integers(2, 6),
    m=st.integers(1, 4),
    r=st.integers(1, 3),
    relu=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_auto_falls_back_on_unstructured_heads(
    B: int, N: int, D: int, m: int, r: int, relu: bool, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    H = torch.randn(B, N, D, generator=g, dtype=f64)
    H[:, 1] = H[:, 0] + 1.0  # two train tokens that differ in every coordinate
    mask = torch.ones(B, N, dtype=f64)
    mask[:, -1] = 0
    heads = [
        Head(
            torch.randn(r, D, generator=g, dtype=f64),
            torch.randn(r, D, generator=g, dtype=f64),
            torch.randn(D, D, generator=g, dtype=f64),
        )
        for _ in range(m)
    ]
    kind = "relu" if relu else "linear"
    counts = PathCounts()
    got = attention(H, heads, mask, kind=kind, counts=counts)
    assert counts.dense == m and counts.structured == 0
    assert _rel(got, attention(H, heads, mask, kind=kind, path="dense")) <= REL


def _mixed_heads(D: int, g: torch.Generator) -> list[Head]:
    """Heads reading shared coordinates (0, 1) on one side and private ones (2..) on the other."""

    def head(q_cols: list[int], k_cols: list[int]) -> Head:
        Q = torch.zeros(2, D, dtype=f64)
        K = torch.zeros(2, D, dtype=f64)
        Q[:, q_cols] = torch.randn(2, len(q_cols), generator=g, dtype=f64)
        K[:, k_cols] = torch.randn(2, len(k_cols), generator=g, dtype=f64)
        return Head(Q, K, torch.randn(D, D, generator=g, dtype=f64))

    return [head([2, 3], [0, 1]), head([0, 1], [2, 4]), head([2, 4], [3, 4]), head([0], [1])]


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("query_differs", [True, False])
def test_mixed_layer_matches_naive_loop(relu: bool, query_differs: bool) -> None:
    """Shared-key, shared-query (query token equal to the train tokens' or its own row) and
    dense heads in one layer, against the naive loop."""
    g = torch.Generator().manual_seed(3)
    B, N, D = 3, 8, 5
    H = torch.randn(B, N, D, generator=g, dtype=f64)
    H[:, :, :2] = H[:, :1, :2]  # coordinates 0, 1 shared by every token of a prompt
    if query_differs:
        H[:, -1, :2] += 0.5  # ... except the query token
    mask = torch.ones(B, N, dtype=f64)
    mask[:, -1] = 0
    heads = _mixed_heads(D, g)
    counts = PathCounts()
    got = attention(H, heads, mask, kind="relu" if relu else "linear", counts=counts)
    assert (counts.shared_key, counts.shared_query, counts.dense) == (2, 1, 1)
    assert counts.own_rows == (B if query_differs else 0)
    assert _rel(got, _naive(H, heads, mask, relu)) <= REL


def test_irregular_masks() -> None:
    """Train tokens not in one block, and a prompt without train tokens (its heads add 0)."""
    g = torch.Generator().manual_seed(4)
    B, N, D = 3, 7, 5
    H = torch.randn(B, N, D, generator=g, dtype=f64)
    H[:, :, :2] = H[:, :1, :2]
    mask = torch.ones(B, N, dtype=f64)
    mask[0, 2] = 0
    mask[1, -1] = 0
    mask[2] = 0
    assert TrainTokens.from_mask(mask).span is None
    heads = _mixed_heads(D, g)
    counts = PathCounts()
    got = attention(H, heads, mask, counts=counts)
    assert counts.structured == 3
    torch.testing.assert_close(got[2], H[2], rtol=0, atol=0)
    assert _rel(got[:2], _naive(H[:2], heads, mask[:2], True)) <= REL


def test_inplace_and_nan() -> None:
    g = torch.Generator().manual_seed(5)
    H = torch.randn(2, 6, 5, generator=g, dtype=f64)
    H[:, :, :2] = H[:, :1, :2]
    mask = torch.ones(2, 6, dtype=f64)
    mask[:, -1] = 0
    heads = _mixed_heads(5, g)
    pure = attention(H, heads, mask)
    work = H.clone()
    assert attention(work, heads, mask, inplace=True) is work
    torch.testing.assert_close(work, pure, rtol=0, atol=0)
    H[0, 3, 0] = float("nan")  # a NaN is never "shared": those heads go dense
    counts = PathCounts()
    attention(H, heads, mask, counts=counts)
    assert counts.dense >= 2


def test_run_and_config_switch() -> None:
    cfg = MoRConfig(d=3, K=2, n=40, sigma=0.2, symmetric=False, prior="sphere")
    b = sample_mor(cfg, 3, seed=0)
    args = (b.X_train, b.y_train, b.betas + 0.05, b.x_query, b.sigma, b.pi)
    auto = run_gradient_em_transformer(*args, ConstructionConfig(T_outer=2, relu_terms=8))
    dense = run_gradient_em_transformer(
        *args, ConstructionConfig(T_outer=2, relu_terms=8, attention="dense")
    )
    assert _rel(auto.beta_tf, dense.beta_tf) <= REL
    assert _rel(auto.y_hat, dense.y_hat) <= REL
    with pytest.raises(ParameterError, match="attention"):
        ConstructionConfig(attention="sparse")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="path"):
        attention(b.X_train, [], torch.ones(3, 40), path="fast")  # type: ignore[arg-type]
