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

Heads of a layer are evaluated together, one prompt at a time and queries in chunks so that
the ``(heads, chunk, N)`` score block stays below a memory budget. Each layer is a ``torch.nn.Module``, so standard
forward hooks see every hidden state; :meth:`AttentionTransformer.hidden_states` records them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast, get_args

import torch
from torch import nn

from iclkit.theory.validation import ParameterError, check_choice, check_int, check_shape

__all__ = [
    "AttentionKind",
    "AttentionLayer",
    "AttentionTransformer",
    "Head",
    "PackedHeads",
    "attention",
    "bai_norm",
    "pack_heads",
]

AttentionKind = Literal["relu", "linear", "softmax"]

#: Memory allowed for one block of attention scores (256 MiB): large enough that the loop over
#: query chunks adds no measurable overhead, small enough for a laptop at n in the thousands.
DEFAULT_CHUNK_BYTES = 256 * 2**20


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


def attention(
    H: torch.Tensor,
    heads: tuple[Head, ...] | list[Head] | PackedHeads,
    key_mask: torch.Tensor,
    *,
    kind: AttentionKind = "relu",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> torch.Tensor:
    """One multi-head attention layer with residual connection (pure function).

    Parameters
    ----------
    H : (B, N, D)
    heads : the layer's heads (at least one), or their :func:`pack_heads`.
    key_mask : (B, N) with entries in {0, 1}: ``t_j``, which tokens act as keys.
    kind : "relu" (1/n normalisation, n = number of keys), "linear" (same, no ReLU) or
        "softmax" (softmax over the keys).
    chunk_bytes : bytes allowed for one block of scores.

    Returns
    -------
    (B, N, D), ``H + sum_m attention_m(H)``.
    """
    check_choice(kind, "kind", get_args(AttentionKind))
    P = heads if isinstance(heads, PackedHeads) else pack_heads(heads)
    check_shape(H, "H", (None, None, P.Q.shape[2]))
    B, N, D = H.shape
    check_shape(key_mask, "key_mask", (B, N))
    m, r, _ = P.Q.shape
    c = P.cols.numel()
    out = H.clone()
    if c == 0:
        return out
    mask = key_mask.to(H.dtype)
    # values (B, m, N, c), masked to the keys and (relu / linear) divided by n
    v = (H @ P.V.reshape(m * c, D).T).reshape(B, N, m, c).transpose(1, 2)
    if kind != "softmax":
        v = v * (mask / mask.sum(-1).clamp_min(1)[:, None])[:, None, :, None]
    v = v.contiguous()
    # contiguous once, so that the chunk loop below never copies
    q = (H @ P.Q.reshape(m * r, D).T).reshape(B, N, m, r).transpose(1, 2).contiguous()
    kT = (H @ P.K.reshape(m * r, D).T).reshape(B, N, m, r).permute(0, 2, 3, 1).contiguous()
    # one prompt at a time, queries in chunks: the (m, chunk, N) score block is written into one
    # reused buffer and consumed at once (the score GEMMs have inner dimension r only, so their
    # speed is set by writing this block; a hot, pre-faulted buffer is ~2x faster than fresh memory)
    chunk = max(1, min(N, chunk_bytes // max(1, m * N * H.element_size())))
    acc = H.new_empty(B, N, c)
    buf = H.new_empty(m, chunk, N)
    for b in range(B):
        for start in range(0, N, chunk):
            stop = min(N, start + chunk)
            S = buf[:, : stop - start]
            torch.matmul(q[b, :, start:stop], kT[b], out=S)  # (m, chunk, N)
            if kind == "relu":
                S.relu_()
            elif kind == "softmax":
                S = S.masked_fill(mask[b, None, None, :] == 0, float("-inf")).softmax(-1)
            acc[b, start:stop] = torch.matmul(S, v[b]).sum(0)
    out[:, :, P.cols] += acc
    return out


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

    def forward(self, H: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        return attention(H, self.packed, key_mask, kind=self.kind)

    def flops(self, B: int, N: int, *, performed: bool = False) -> int:
        """2 x multiply-adds of the score and value products of every head.

        Default: each head's own products, ``2 B N^2 (r_m + c_m)`` with ``r_m`` its score rank and
        ``c_m`` the coordinates its value writes (the useful work). ``performed=True``: what the
        stacked evaluation actually multiplies (ranks zero-padded to the layer's largest, values
        over the union of written coordinates), ``2 B N^2 m (r_max + c)``.
        """
        if performed:
            m, r, _ = self.packed.Q.shape
            c = self.packed.cols.numel()
            return 2 * B * N * N * m * (r + c)
        total = 0
        for h in self.heads:
            c_h = int((h.V.abs().sum(1) > 0).sum())
            total += 2 * B * N * N * (h.Q.shape[0] + c_h)
        return total


class AttentionTransformer(nn.Module):
    """An attention-only transformer: ``H^(l) = Attn_l(H^(l-1))``, l = 1..L (Def. 2.2, no MLP).

    ``key_mask`` is read from the train-indicator coordinate ``t_slot`` of the input tokens.
    """

    def __init__(self, layers: list[AttentionLayer], *, t_slot: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.t_slot = check_int(t_slot, "t_slot", minimum=0)

    @property
    def attention_layers(self) -> list[AttentionLayer]:
        return [cast(AttentionLayer, layer) for layer in self.layers]

    @property
    def L(self) -> int:
        return len(self.layers)

    def heads_per_layer(self) -> list[int]:
        return [layer.num_heads for layer in self.attention_layers]

    def forward(self, H: torch.Tensor) -> torch.Tensor:
        key_mask = H[..., self.t_slot]
        for layer in self.layers:
            H = layer(H, key_mask)
        return H

    def hidden_states(self, H: torch.Tensor) -> list[torch.Tensor]:
        """``[H^(0), H^(1), ..., H^(L)]`` (a copy of every layer's output)."""
        key_mask = H[..., self.t_slot]
        states = [H]
        for layer in self.layers:
            H = layer(H, key_mask)
            states.append(H)
        return states

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
