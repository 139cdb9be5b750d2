"""Multi-head attention layers with explicit per-head Q, K, V: MoR Def. 2.1 = Bai et al. Def. 1.

ReLU attention [READ-Bai, ``docs/provenance.md`` §6], token ``i`` of ``H``:

    h_i <- h_i + sum_m (1/n) sum_{j : t_j = 1} relu(<Q_m h_i, K_m h_j>) V_m h_j,

with ``n`` the number of train tokens (``t_j = 1``); the query token (``t_j = 0``) is masked out
of the keys. Bai masks through an offset ``-c (1 - t_j)`` inside the ReLU, which equals this
explicit mask whenever the scores are bounded by ``c``; the explicit mask is this project's
choice (exact for every score). Linear attention drops the ReLU; softmax attention replaces
``relu(.)/n`` by ``softmax_j`` over the train keys.

Layout (this project's choice): tokens are **rows**, ``H : (B, N, D)`` with ``N = n + 1``
(the papers write the transpose ``H in R^{D x N}``). A head stores ``Q, K : (r, D)`` (so
``Q h_i in R^r``; the paper's ``D x D`` matrix is this one padded with zero rows, same operator
norm) and ``V : (D, D)``. Everything runs in the dtype of the weights (float64 by default).

Two evaluation paths (``path``): "dense" evaluates a layer's heads together in blocks of
prompts x query rows x keys small enough to stay in cache (score product, ReLU in place and
value product of a block before the next; heads grouped by rank): O(N^2) per head. "auto" (the
default) first detects, on the layer's input, the heads whose train tokens all present the same
key or the same query, and evaluates those exactly in O(N D)
(:mod:`iclkit.constructions.structured_attention`); the other heads take the dense path.
Each layer is a ``torch.nn.Module``, so standard forward hooks see every layer;
:meth:`AttentionTransformer.hidden_states` records every hidden state and
:meth:`AttentionTransformer.token_states` only one token's row at chosen layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast, get_args

import torch
from torch import nn

from iclkit.constructions.structured_attention import (
    TrainTokens,
    plan_structured,
    structured_heads,
)
from iclkit.theory.validation import ParameterError, check_choice, check_int, check_shape

__all__ = [
    "AttentionKind",
    "AttentionLayer",
    "AttentionPath",
    "AttentionTransformer",
    "Head",
    "LayerStack",
    "PackedHeads",
    "PathCounts",
    "attention",
    "bai_norm",
    "pack_heads",
]

AttentionKind = Literal["relu", "linear", "softmax"]
#: How heads are evaluated: "auto" (O(N D) where the train tokens share a key or a query, exact;
#: dense otherwise) or "dense" (every head with its full N x N scores).
AttentionPath = Literal["auto", "dense"]

#: Memory of one block of attention scores (all heads): small enough that the block stays in
#: the core's cache between its score product, ReLU and value product (a block in main memory
#: made the dense path 3-5x slower, bound by memory traffic), large enough that the per-call
#: overhead of the block loop stays small. Measured in ``docs/construction.md``.
DEFAULT_CHUNK_BYTES = 2**19
#: A block takes whole rows of keys while at least this many query rows fit in it, else tiles of
#: query rows x keys (a score product of few rows is dominated by packing its key operand).
KEY_TILE_MIN_ROWS = 64


@dataclass(frozen=True)
class Head:
    """One attention head: ``score_ij = <Q h_i, K h_j>``, value ``V h_j``.

    Attributes
    ----------
    Q, K : (r, D)
    V : (D, D)
    label : str, the equation the head realises (for reports and docs).
    """

    Q: torch.Tensor
    K: torch.Tensor
    V: torch.Tensor
    label: str = ""


@dataclass(frozen=True)
class PackedHeads:
    """A layer's heads stacked for evaluation: ``q = H Q^T`` etc.

    Attributes
    ----------
    Q, K : (m, r, D), ranks zero-padded to the largest (exact: zero rows add 0 to a score).
    V : (m, c, D), the rows of the V's for the ``c`` output coordinates ``cols`` some head writes.
    cols : (c,) long.
    """

    Q: torch.Tensor
    K: torch.Tensor
    V: torch.Tensor
    cols: torch.Tensor


def pack_heads(heads: tuple[Head, ...] | list[Head]) -> PackedHeads:
    """Validate and stack heads (see :class:`PackedHeads`)."""
    if len(heads) == 0:
        raise ParameterError("heads must contain at least one head")
    D = heads[0].V.shape[0]
    if any(h.K.shape != h.Q.shape or h.Q.shape[1] != D or h.V.shape != (D, D) for h in heads):
        raise ParameterError(f"heads must have Q, K of shape (r, {D}) and V of shape ({D}, {D})")
    m = len(heads)
    rmax = max(h.Q.shape[0] for h in heads)
    dtype = heads[0].Q.dtype
    Q = torch.zeros(m, rmax, D, dtype=dtype)
    K = torch.zeros(m, rmax, D, dtype=dtype)
    for i, h in enumerate(heads):
        Q[i, : h.Q.shape[0]] = h.Q
        K[i, : h.K.shape[0]] = h.K
    Vs = torch.stack([h.V for h in heads])  # (m, D, D)
    cols = torch.nonzero(Vs.abs().sum((0, 2)) > 0).flatten()
    return PackedHeads(Q, K, Vs[:, cols].contiguous(), cols)


@dataclass
class PathCounts:
    """How many heads each evaluation path took (a mutable tally, summed over calls).

    Attributes
    ----------
    shared_key, shared_query : heads evaluated in O(N D) (:mod:`.structured_attention`).
    dense : heads evaluated with the full ``N x N`` score matrix.
    own_rows : (token, head) pairs of shared-query heads where a non-train token's query
        differed from the train tokens' and got its own O(N D) row.
    """

    shared_key: int = 0
    shared_query: int = 0
    dense: int = 0
    own_rows: int = 0

    @property
    def structured(self) -> int:
        """Heads evaluated in O(N D)."""
        return self.shared_key + self.shared_query


def attention(
    H: torch.Tensor,
    heads: tuple[Head, ...] | list[Head] | PackedHeads,
    key_mask: torch.Tensor,
    *,
    kind: AttentionKind = "relu",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    path: AttentionPath = "auto",
    counts: PathCounts | None = None,
    train: TrainTokens | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """One multi-head attention layer with residual connection (pure unless ``inplace``).

    Parameters
    ----------
    H : (B, N, D)
    heads : the layer's heads (at least one), or their :func:`pack_heads`.
    key_mask : (B, N) with entries in {0, 1}: ``t_j``, which tokens act as keys.
    kind : "relu" (1/n normalisation, n = number of keys), "linear" (same, no ReLU) or
        "softmax" (softmax over the keys).
    chunk_bytes : bytes allowed for one block of scores (dense path).
    path : "auto": heads whose train tokens share the key or the query are evaluated exactly in
        O(N D) (relu and linear; detected on ``H``, :mod:`.structured_attention`), the others
        densely; "dense": every head with the full ``N x N`` scores.
    counts : if given, the heads per path are added to it.
    train : ``TrainTokens.from_mask(key_mask)``, if already computed (a transformer reads it
        once for all its layers).
    inplace : write the result into ``H`` (after every head has read it) and return ``H``.

    Returns
    -------
    (B, N, D), ``H + sum_m attention_m(H)``.
    """
    check_choice(kind, "kind", get_args(AttentionKind))
    check_choice(path, "path", get_args(AttentionPath))
    P = heads if isinstance(heads, PackedHeads) else pack_heads(heads)
    check_shape(H, "H", (None, None, P.Q.shape[2]))
    B, N, _D = H.shape
    check_shape(key_mask, "key_mask", (B, N))
    out = H if inplace else H.clone()
    if P.cols.numel() == 0:
        return out
    cols = _as_slice(P.cols)
    mask = key_mask.to(H.dtype)
    m = P.Q.shape[0]
    if path == "dense" or kind == "softmax":
        if counts is not None:
            counts.dense += m
        out[:, :, cols] += _dense_by_rank(H, P, mask, kind, chunk_bytes)
        return out
    if train is None:
        train = TrainTokens.from_mask(mask)
    plan = plan_structured(H, P.Q, P.K, train)
    acc, own = structured_heads(H, P.Q, P.K, P.V, train, plan, relu=kind == "relu")
    if plan.dense.numel():
        g = plan.dense
        dense = PackedHeads(P.Q[g], P.K[g], P.V[g], P.cols)
        acc += _dense_by_rank(H, dense, mask, kind, chunk_bytes)
    if counts is not None:
        counts.shared_key += plan.shared_key.numel()
        counts.shared_query += plan.shared_query.numel()
        counts.dense += plan.dense.numel()
        counts.own_rows += own
    out[:, :, cols] += acc
    return out


def _as_slice(cols: torch.Tensor) -> slice | torch.Tensor:
    """``cols`` (sorted, distinct) as a slice when they are contiguous (a view, no gather)."""
    lo, hi = int(cols[0]), int(cols[-1]) + 1
    return slice(lo, hi) if hi - lo == cols.numel() else cols


def _dense_by_rank(
    H: torch.Tensor, P: PackedHeads, mask: torch.Tensor, kind: AttentionKind, chunk_bytes: int
) -> torch.Tensor:
    """:func:`_dense_heads` per group of heads of equal rank, the zero padding of Q, K trimmed.

    A head's rank here is one past its last row of ``Q`` or ``K`` with a nonzero entry; the
    trimmed rows add exact zeros to every score, so only the order of the sum over heads
    changes (round-off).
    """
    m, r, _ = P.Q.shape
    rank = _ranks(P)
    acc: torch.Tensor | None = None
    for rho in rank.unique().tolist():
        g = torch.nonzero(rank == rho).flatten()
        part = P if g.numel() == m and rho == r else PackedHeads(
            P.Q[g, :rho], P.K[g, :rho], P.V[g], P.cols
        )  # fmt: skip
        out = _dense_heads(H, part, mask, kind, chunk_bytes)
        acc = out if acc is None else acc.add_(out)
    assert acc is not None
    return acc


def _ranks(P: PackedHeads) -> torch.Tensor:
    """(m,) long: one past each head's last row of ``Q`` or ``K`` with a nonzero entry (>= 1)."""
    r = P.Q.shape[1]
    used = (P.Q != 0).any(2) | (P.K != 0).any(2)  # (m, r)
    return (used * torch.arange(1, r + 1)).amax(1).clamp_min(1)


def _dense_heads(
    H: torch.Tensor, P: PackedHeads, mask: torch.Tensor, kind: AttentionKind, chunk_bytes: int
) -> torch.Tensor:
    """The summed output (B, N, c) of the heads ``P`` with the full score matrix.

    Blocks of ``G`` prompts x ``k`` query rows x all ``N`` keys x all ``m`` heads: one batched
    score product ``(G m, k, r) x (G m, r, N)`` into a reused buffer of at most ``chunk_bytes``,
    the ReLU in place, one batched value product ``(G m, k, N) x (G m, N, c)`` and the sum over
    heads. The key mask and ``1/n`` are folded into the values, so no pass over the scores
    masks them (softmax masks its block once). Whole prompts are batched (``G > 1``) when one
    prompt's scores fit, else one prompt in chunks of query rows.
    """
    B, N, D = H.shape
    m, r, _ = P.Q.shape
    c = P.cols.numel()
    # values (B, m, N, c), masked to the keys and (relu / linear) divided by n
    v = (H @ P.V.reshape(m * c, D).T).reshape(B, N, m, c).transpose(1, 2)
    if kind != "softmax":
        v = v * (mask / mask.sum(-1).clamp_min(1)[:, None])[:, None, :, None]
    # keys as rows, queries as columns (contiguous once, so that the block loop never copies):
    # a block holds the transposed scores (keys, queries), so the value product is a row of
    # values times a row-major block, ~4x faster here than the block times a column of values
    vT = v.transpose(2, 3).contiguous().reshape(B * m, c, N)
    k_ = (H @ P.K.reshape(m * r, D).T).reshape(B, N, m, r).transpose(1, 2).contiguous()
    qT = (H @ P.Q.reshape(m * r, D).T).reshape(B, N, m, r).permute(0, 2, 3, 1).contiguous()
    k_, qT = k_.reshape(B * m, N, r), qT.reshape(B * m, r, N)
    G, rows, cols = _block_shape(B, N, m, H.element_size(), chunk_bytes, kind == "softmax")
    accT = H.new_empty(B, c, N)
    buf = H.new_empty(G * m * rows * cols)
    part = H.new_empty(G * m * rows * c)
    off = mask == 0
    key_tiles = [(j0, min(N, j0 + cols)) for j0 in range(0, N, cols)]
    # rank-1 scores are outer products: a broadcast multiply (the same single rounding as bmm's
    # one-term sum, so bit-identical) writes them ~2x faster than a GEMM with inner dimension 1
    outer = r == 1
    for b0 in range(0, B, G):
        b1 = min(B, b0 + G)
        g, hb = b1 - b0, slice(b0 * m, b1 * m)
        # the tiles' operands and score buffers are views made once per group of prompts, not
        # per block: with ~10^4 blocks per layer the per-call overhead of slicing was ~1/4 of
        # the dense path's time
        keys = [(k_[hb, j0:j1], vT[hb, :, j0:j1], j1 - j0) for j0, j1 in key_tiles]
        blocks: dict[tuple[int, int], torch.Tensor] = {}
        for s0 in range(0, N, rows):
            s1 = min(N, s0 + rows)
            k = s1 - s0
            q = qT[hb, :, s0:s1]
            o = part[: g * m * c * k].view(g * m, c, k)
            for t, (kk, vv, width) in enumerate(keys):
                ST = blocks.get((width, k))
                if ST is None:
                    ST = blocks[(width, k)] = buf[: g * m * width * k].view(g * m, width, k)
                if outer:
                    torch.mul(kk, q, out=ST)
                else:
                    torch.bmm(kk, q, out=ST)
                if kind == "relu":
                    ST.relu_()
                elif kind == "softmax":  # cols == N: the softmax sees every key
                    ST.view(g, m, N, k).masked_fill_(off[b0:b1, None, :, None], float("-inf"))
                    ST = ST.softmax(1)
                if t == 0:
                    torch.bmm(vv, ST, out=o)
                else:
                    o.baddbmm_(vv, ST)
            torch.sum(o.view(g, m, c, k), 1, out=accT[b0:b1, :, s0:s1])
    return accT.transpose(1, 2)


def _block_shape(
    B: int, N: int, m: int, itemsize: int, chunk_bytes: int, full_rows: bool
) -> tuple[int, int, int]:
    """(prompts, query rows, keys) of one score block ``(prompts m, rows, keys)``.

    At most ``chunk_bytes`` (at least one entry per head): whole prompts when one prompt's
    scores fit, else full rows of keys when ``full_rows`` (softmax) or ``KEY_TILE_MIN_ROWS``
    of them fit, else square-ish tiles of ``rows x keys``.
    """
    entries = max(1, chunk_bytes // (m * itemsize))
    if N * N <= entries:
        return max(1, min(B, entries // (N * N))), N, N
    if full_rows or N * KEY_TILE_MIN_ROWS <= entries:
        return 1, max(1, entries // N), N
    side = max(1, math.isqrt(entries))
    return 1, side, min(N, max(1, entries // side))


class AttentionLayer(nn.Module):
    """A fixed-weight multi-head attention layer (weights are plain tensors, not parameters)."""

    def __init__(self, heads: tuple[Head, ...], *, kind: AttentionKind = "relu") -> None:
        super().__init__()
        self.heads = tuple(heads)
        self.packed = pack_heads(self.heads)
        self.kind: AttentionKind = kind

    @property
    def num_heads(self) -> int:
        return len(self.heads)

    def forward(
        self,
        H: torch.Tensor,
        key_mask: torch.Tensor,
        *,
        path: AttentionPath = "auto",
        counts: PathCounts | None = None,
        train: TrainTokens | None = None,
        inplace: bool = False,
    ) -> torch.Tensor:
        """``attention(H, heads, key_mask)`` (keywords: see :func:`attention`)."""
        return attention(
            H, self.packed, key_mask, kind=self.kind, path=path, counts=counts, train=train,
            inplace=inplace,
        )  # fmt: skip

    def flops(self, B: int, N: int, *, performed: bool = False) -> int:
        """2 x multiply-adds of the score and value products of every head.

        Default: each head's own products, ``2 B N^2 (r_m + c_m)`` with ``r_m`` its score rank and
        ``c_m`` the coordinates its value writes (the useful work). ``performed=True``: what the
        dense path actually multiplies (each head's rank without the packing's zero padding,
        values over the union of the ``c`` written coordinates), ``2 B N^2 sum_m (r_m + c)``.
        """
        if performed:
            c = self.packed.cols.numel()
            return 2 * B * N * N * int((_ranks(self.packed) + c).sum())
        total = 0
        for h in self.heads:
            c_h = int((h.V.abs().sum(1) > 0).sum())
            total += 2 * B * N * N * (h.Q.shape[0] + c_h)
        return total


class LayerStack(nn.Module):
    """Layers applied in sequence to tokens, ``H^(l) = layer_l(H^(l-1))``, l = 1..L; every layer
    is called as ``layer(H, key_mask, path=, counts=, train=, inplace=)``, ``key_mask`` read from
    the train-indicator coordinate ``t_slot`` of the input tokens. The running of the stack
    (forward pass, all hidden states, selected token rows) shared by the attention-only and the
    attention + MLP transformers.
    """

    def __init__(self, layers: Sequence[nn.Module], *, t_slot: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.t_slot = check_int(t_slot, "t_slot", minimum=0)

    @property
    def L(self) -> int:
        return len(self.layers)

    def forward(
        self, H: torch.Tensor, *, path: AttentionPath = "auto", counts: PathCounts | None = None
    ) -> torch.Tensor:
        """``H^(L)`` from ``H^(0) = H`` (B, N, D); ``path`` and ``counts`` as in :func:`attention`.

        The layers update one working copy of ``H`` in place (no (B, N, D) tensor per layer), so
        a forward hook that keeps a layer's output must clone it; :meth:`hidden_states` and
        :meth:`token_states` return copies.
        """
        key_mask = H[..., self.t_slot].clone()
        train = TrainTokens.from_mask(key_mask.to(H.dtype))
        H = H.clone()
        for layer in self.layers:
            H = layer(H, key_mask, path=path, counts=counts, train=train, inplace=True)
        return H

    def hidden_states(self, H: torch.Tensor, *, path: AttentionPath = "auto") -> list[torch.Tensor]:
        """``[H^(0), H^(1), ..., H^(L)]`` (every layer's output; L + 1 tensors of H's size)."""
        key_mask = H[..., self.t_slot]
        train = TrainTokens.from_mask(key_mask.to(H.dtype))
        states = [H]
        for layer in self.layers:
            H = layer(H, key_mask, path=path, train=train)
            states.append(H)
        return states

    def token_states(
        self,
        H: torch.Tensor,
        layers: Sequence[int],
        *,
        token: int = -1,
        path: AttentionPath = "auto",
    ) -> dict[int, torch.Tensor]:
        """Token ``token``'s row of ``H^(l)`` for each ``l`` in ``layers`` (0 = the input).

        Keeps only these rows, (B, D) each, instead of every hidden state.
        """
        wanted = {check_int(l_, "layers", minimum=0, maximum=self.L) for l_ in layers}
        key_mask = H[..., self.t_slot]
        train = TrainTokens.from_mask(key_mask.to(H.dtype))
        rows = {0: H[:, token].clone()} if 0 in wanted else {}
        key_mask, H = key_mask.clone(), H.clone()
        for i, layer in enumerate(self.layers, start=1):
            H = layer(H, key_mask, path=path, train=train, inplace=True)
            if i in wanted:
                rows[i] = H[:, token].clone()
        return rows


class AttentionTransformer(LayerStack):
    """An attention-only transformer: ``H^(l) = Attn_l(H^(l-1))``, l = 1..L (Def. 2.2, no MLP).

    ``key_mask`` is read from the train-indicator coordinate ``t_slot`` of the input tokens.
    """

    def __init__(self, layers: list[AttentionLayer], *, t_slot: int) -> None:
        super().__init__(layers, t_slot=t_slot)

    @property
    def attention_layers(self) -> list[AttentionLayer]:
        return [cast(AttentionLayer, layer) for layer in self.layers]

    def heads_per_layer(self) -> list[int]:
        return [layer.num_heads for layer in self.attention_layers]

    def flops(self, B: int, N: int, *, performed: bool = False) -> int:
        """Sum of :meth:`AttentionLayer.flops` over the layers."""
        return sum(layer.flops(B, N, performed=performed) for layer in self.attention_layers)


def bai_norm(model: AttentionTransformer) -> float:
    """Bai et al. eq. (2), attention-only: ``max_l { max_m max(||Q_m||, ||K_m||) + sum_m ||V_m|| }``
    (operator norms) [RECON, recalled, ``docs/provenance.md`` §6]."""
    cache: dict[int, float] = {}

    def op(A: torch.Tensor) -> float:
        key = id(A)
        if key not in cache:
            cache[key] = float(torch.linalg.svdvals(A)[0]) if A.numel() else 0.0
        return cache[key]

    best = 0.0
    for layer in model.attention_layers:
        heads = layer.heads
        qk = max(max(op(h.Q), op(h.K)) for h in heads)
        v = sum(op(h.V) for h in heads)
        best = max(best, qk + v)
    return best
