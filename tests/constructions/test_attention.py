"""Tests of iclkit.constructions.attention against a naive double loop (independent)."""

from __future__ import annotations

import pytest
import torch

from iclkit.constructions.attention import (
    AttentionLayer,
    AttentionTransformer,
    Head,
    _block_shape,
    attention,
    bai_norm,
)
from iclkit.theory.validation import ParameterError

f64 = torch.float64


def _random_heads(D: int, m: int, r: int, g: torch.Generator) -> list[Head]:
    return [
        Head(
            torch.randn(r, D, generator=g, dtype=f64),
            torch.randn(r, D, generator=g, dtype=f64),
            torch.randn(D, D, generator=g, dtype=f64),
        )
        for _ in range(m)
    ]


def _naive(H: torch.Tensor, heads: list[Head], mask: torch.Tensor, kind: str) -> torch.Tensor:
    B, N, _D = H.shape
    out = H.clone()
    for b in range(B):
        keys = [j for j in range(N) if mask[b, j] > 0]
        n = len(keys)
        for i in range(N):
            for h in heads:
                scores = torch.stack([(h.Q @ H[b, i]) @ (h.K @ H[b, j]) for j in keys])
                if kind == "relu":
                    w = torch.relu(scores) / n
                elif kind == "linear":
                    w = scores / n
                else:
                    w = torch.softmax(scores, 0)
                for wj, j in zip(w, keys, strict=True):
                    out[b, i] += wj * (h.V @ H[b, j])
    return out


@pytest.mark.parametrize("kind", ["relu", "linear", "softmax"])
def test_attention_matches_naive_loop(kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    B, N, D = 2, 7, 5
    H = torch.randn(B, N, D, generator=g, dtype=f64)
    mask = torch.ones(B, N, dtype=f64)
    mask[:, -1] = 0  # the query is not a key
    heads = _random_heads(D, 3, 2, g)
    got = attention(H, heads, mask, kind=kind)  # type: ignore[arg-type]
    # float64 sums of a few dozen O(1) terms: round-off well below 1e-12
    torch.testing.assert_close(got, _naive(H, heads, mask, kind), rtol=1e-12, atol=1e-12)


def test_chunking_does_not_change_result() -> None:
    g = torch.Generator().manual_seed(1)
    H = torch.randn(3, 40, 6, generator=g, dtype=f64)
    mask = torch.ones(3, 40, dtype=f64)
    heads = _random_heads(6, 4, 3, g)
    a = attention(H, heads, mask)
    b = attention(H, heads, mask, chunk_bytes=1)  # one query per chunk
    torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


@pytest.mark.parametrize("kind", ["relu", "linear", "softmax"])
@pytest.mark.parametrize("blocks", [1, 5, 40, 1100, 2000])
def test_score_blocks_match_naive_loop(kind: str, blocks: int) -> None:
    # score blocks of `blocks` entries per head: 1 x 1 tiles, partial tiles of query rows x keys
    # (relu, linear; softmax takes whole rows of keys), whole prompts, several prompts at once;
    # an irregular key mask (train tokens not in one block) so that every block is masked
    g = torch.Generator().manual_seed(4)
    B, N, D, m = 3, 23, 5, 3
    H = torch.randn(B, N, D, generator=g, dtype=f64)
    mask = (torch.rand(B, N, generator=g) > 0.3).to(f64)
    heads = _random_heads(D, m, 2, g)
    budget = blocks * m * 8
    got = attention(H, heads, mask, kind=kind, path="dense", chunk_bytes=budget)  # type: ignore[arg-type]
    # float64 sums of ~20 O(1) terms, summed in another order per key tile: round-off ~1e-15
    torch.testing.assert_close(got, _naive(H, heads, mask, kind), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["relu", "softmax"])
def test_heads_of_different_ranks_match_naive_loop(kind: str) -> None:
    # ranks 1, 3, 1, 2 (zero-padded to 3 when packed, trimmed per group of equal rank by the
    # dense path), one head whose last row of Q is zero but not of K
    g = torch.Generator().manual_seed(5)
    B, N, D = 2, 9, 4
    H = torch.randn(B, N, D, generator=g, dtype=f64)
    mask = torch.ones(B, N, dtype=f64)
    mask[:, -1] = 0
    heads = [_random_heads(D, 1, r, g)[0] for r in (1, 3, 1, 2)]
    heads[3].Q[-1] = 0.0
    got = attention(H, heads, mask, kind=kind, path="dense")  # type: ignore[arg-type]
    torch.testing.assert_close(got, _naive(H, heads, mask, kind), rtol=1e-12, atol=1e-12)


def test_block_shape_stays_within_budget() -> None:
    for B, N, m, budget in [
        (16, 1001, 4, 2**20),
        (16, 4001, 4, 2**20),
        (4, 50, 2, 2**20),
        (1, 7, 1, 1),
    ]:
        for full_rows in (False, True):
            G, rows, keys = _block_shape(B, N, m, 8, budget, full_rows)
            assert 1 <= G <= B and 1 <= rows <= N and 1 <= keys <= N
            assert G * m * rows * keys * 8 <= max(budget, m * 8) or (full_rows and rows == 1)
            assert keys == N or not full_rows


def test_masked_key_has_no_influence() -> None:
    g = torch.Generator().manual_seed(2)
    H = torch.randn(1, 6, 4, generator=g, dtype=f64)
    mask = torch.ones(1, 6, dtype=f64)
    mask[0, 5] = 0
    heads = _random_heads(4, 2, 2, g)
    H2 = H.clone()
    H2[0, 5] += 100.0  # change only the masked token
    a, b = attention(H, heads, mask), attention(H2, heads, mask)
    torch.testing.assert_close(a[0, :5], b[0, :5], rtol=0, atol=1e-12)


def test_transformer_hidden_states_and_norm() -> None:
    D = 4
    eye = torch.eye(D, dtype=f64)
    head = Head(2 * eye[:2], eye[:2], 3 * eye)  # ||Q|| = 2, ||K|| = 1, ||V|| = 3
    layers = [AttentionLayer((head, head)), AttentionLayer((head,))]
    model = AttentionTransformer(layers, t_slot=D - 1)
    H = torch.zeros(2, 5, D, dtype=f64)
    H[..., D - 1] = 1.0
    states = model.hidden_states(H)
    assert len(states) == model.L + 1 == 3
    torch.testing.assert_close(states[-1], model(H))
    assert model.heads_per_layer() == [2, 1]
    # Bai's norm: max over layers of (max_m max(||Q||, ||K||) + sum_m ||V||) = 2 + 3 + 3
    assert bai_norm(model) == pytest.approx(8.0, rel=1e-12)


def test_forward_hooks_see_every_layer() -> None:
    D = 3
    head = Head(torch.eye(D, dtype=f64)[:1], torch.eye(D, dtype=f64)[:1], torch.eye(D, dtype=f64))
    model = AttentionTransformer([AttentionLayer((head,)) for _ in range(3)], t_slot=2)
    seen: list[torch.Tensor] = []
    for layer in model.layers:
        layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    model(torch.ones(1, 4, D, dtype=f64))
    assert len(seen) == 3


def test_bad_input() -> None:
    H = torch.zeros(1, 3, 4, dtype=f64)
    mask = torch.ones(1, 3, dtype=f64)
    head = Head(torch.zeros(1, 4, dtype=f64), torch.zeros(1, 4, dtype=f64), torch.eye(4, dtype=f64))
    with pytest.raises(ParameterError, match="kind"):
        attention(H, [head], mask, kind="tanh")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="heads"):
        attention(H, [], mask)
    with pytest.raises(ParameterError, match="key_mask"):
        attention(H, [head], torch.ones(1, 4, dtype=f64))
    bad = Head(torch.zeros(1, 5, dtype=f64), torch.zeros(1, 5, dtype=f64), torch.eye(5, dtype=f64))
    with pytest.raises(ParameterError, match="H"):
        attention(H, [bad], mask)
