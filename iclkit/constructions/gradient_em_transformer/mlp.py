"""Attention + MLP blocks (Bai et al. Def. 2.2): the model of the ``attention-mlp`` architecture
of the Theorem 3.1 construction (arXiv 2410.14183; ``docs/construction.md``).

A block applies a multi-head ReLU-attention layer (:mod:`iclkit.constructions.attention`, with
residual), then a ReLU MLP to every token separately, with residual [READ-Bai Def. 2.2, MLP
``h_i <- h_i + W_2 relu(W_1 h_i)``; biases through the constant coordinate ``1`` of the token]:

    H <- Attn(H),    h_i <- h_i + W_2 relu(W_1 h_i)      (i = 1..n+1).

Either part may be absent (an attention layer with no heads or an MLP with no units is the
identity: both have residual connections). ``W_1 : (h, D)``, ``W_2 : (D, h)`` with ``h`` hidden
units; only the coordinates some unit writes are computed. The weight norm adds
``||W_1|| + ||W_2||`` (operator norms) per block to Bai's attention term [RECON, recalled].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from iclkit.constructions.attention import (
    AttentionLayer,
    AttentionPath,
    Head,
    LayerStack,
    PathCounts,
)
from iclkit.constructions.structured_attention import TrainTokens
from iclkit.theory.validation import ParameterError

__all__ = ["AttentionMLPTransformer", "Block", "MLPLayer", "Unit", "block_norm", "mlp_layer"]

#: Tokens per chunk of the MLP's evaluation: the (chunk, h) hidden block of a few MiB stays in
#: cache (measured ~3x faster than one (B N, h) block at n = 10^4, B = 16).
_MLP_CHUNK_TOKENS = 4096

# One hidden unit: (reads: [(coordinate, weight)], writes: [(coordinate, weight)]):
# pre-activation sum_a w_a h[c_a]; output h[o_b] += w_b relu(pre-activation).
Unit = tuple[Sequence[tuple[int, float]], Sequence[tuple[int, float]]]


class MLPLayer(nn.Module):
    """A fixed-weight per-token ReLU MLP with residual: ``h <- h + W2 relu(W1 h)``.

    Parameters
    ----------
    W1 : (h, D) first-layer weights (a bias is a weight on the constant coordinate).
    W2 : (D, h) second-layer weights.
    label : what the MLP computes (for reports).
    """

    def __init__(self, W1: torch.Tensor, W2: torch.Tensor, label: str = "") -> None:
        super().__init__()
        if W1.dim() != 2 or W2.dim() != 2 or W2.shape != (W1.shape[1], W1.shape[0]):
            raise ParameterError(
                f"W2 must have shape (D, h) for W1 of shape (h, D), got {tuple(W2.shape)} and "
                f"{tuple(W1.shape)}"
            )
        self.W1, self.W2, self.label = W1, W2, label
        self.cols = torch.nonzero(W2.abs().sum(1) > 0).flatten()
        self._W2c = W2[self.cols].contiguous()  # (c, h): only the written coordinates
        self.in_cols = torch.nonzero(W1.abs().sum(0) > 0).flatten()
        self._W1c = W1[:, self.in_cols].contiguous()  # (h, r): only the coordinates read

    @property
    def width(self) -> int:
        """Number of hidden units."""
        return int(self.W1.shape[0])

    def forward(self, H: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
        """H : (B, N, D) -> (B, N, D), every token separately (pure unless ``inplace``)."""
        out = H if inplace else H.clone()
        if self.cols.numel() == 0:
            return out
        flat = out.reshape(-1, out.shape[-1])  # a view: out is contiguous
        W1c, W2c = self._W1c.to(H.dtype), self._W2c.to(H.dtype)
        # token chunks keep the (chunk, h) hidden block in cache; rows are independent, and
        # each chunk is read (all of its hidden units) before it is written
        for start in range(0, flat.shape[0], _MLP_CHUNK_TOKENS):
            rows = flat[start : start + _MLP_CHUNK_TOKENS]
            hidden = torch.relu(rows[:, self.in_cols] @ W1c.T)
            rows[:, self.cols] += hidden @ W2c.T
        return out

    def astype(self, dtype: torch.dtype) -> MLPLayer:
        """A copy with weights in ``dtype``."""
        return MLPLayer(self.W1.to(dtype), self.W2.to(dtype), self.label)


def mlp_layer(D: int, units: list[Unit], label: str) -> MLPLayer:
    """An :class:`MLPLayer` on tokens of width ``D`` from its hidden units (float64)."""
    W1 = torch.zeros(len(units), D, dtype=torch.float64)
    W2 = torch.zeros(D, len(units), dtype=torch.float64)
    for u, (reads, writes) in enumerate(units):
        for c, w in reads:
            W1[u, c] += w
        for o, w in writes:
            W2[o, u] += w
    return MLPLayer(W1, W2, label)


class Block(nn.Module):
    """One block: attention (``None``: no heads) then the per-token MLP (``None``: no units)."""

    def __init__(self, attn: AttentionLayer | None, mlp: MLPLayer | None) -> None:
        super().__init__()
        self.attn = attn
        self.mlp = mlp

    @property
    def num_heads(self) -> int:
        return 0 if self.attn is None else self.attn.num_heads

    @property
    def mlp_width(self) -> int:
        return 0 if self.mlp is None else self.mlp.width

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
        """The block on H : (B, N, D) (keywords as in :func:`.attention.attention`)."""
        if self.attn is not None:
            H = self.attn(H, key_mask, path=path, counts=counts, train=train, inplace=inplace)
            inplace = True  # H is now our own copy (or the caller's, when inplace)
        if self.mlp is not None:
            H = self.mlp(H, inplace=inplace)
        elif not inplace:
            H = H.clone()
        return H


class AttentionMLPTransformer(LayerStack):
    """``H^(l) = MLP_l(Attn_l(H^(l-1)))``, l = 1..L (Bai et al. Def. 2.2).

    The same interface as :class:`iclkit.constructions.attention.AttentionTransformer`
    (``L``, ``heads_per_layer``, ``forward``, ``hidden_states``, ``token_states``, the last
    three from :class:`~iclkit.constructions.attention.LayerStack`); ``key_mask`` is read from
    the train-indicator coordinate ``t_slot`` of the input tokens.
    """

    def __init__(self, blocks: list[Block], *, t_slot: int) -> None:
        super().__init__(blocks, t_slot=t_slot)

    @property
    def blocks(self) -> list[Block]:
        return [cast(Block, b) for b in self.layers]

    @property
    def attention_layers(self) -> list[AttentionLayer]:
        """The blocks' attention layers that have heads (in order)."""
        return [b.attn for b in self.blocks if b.attn is not None]

    def heads_per_layer(self) -> list[int]:
        """Heads of each block's attention layer (0 where it has none)."""
        return [b.num_heads for b in self.blocks]

    def mlp_widths(self) -> list[int]:
        """Hidden units of each block's MLP (0 where it has none)."""
        return [b.mlp_width for b in self.blocks]

    @property
    def dtype(self) -> torch.dtype:
        for b in self.blocks:
            if b.attn is not None:
                return b.attn.packed.Q.dtype
            if b.mlp is not None:
                return b.mlp.W1.dtype
        return torch.float64

    def astype(self, dtype: torch.dtype) -> AttentionMLPTransformer:
        """A copy with every weight in ``dtype``."""
        return AttentionMLPTransformer(
            [
                Block(
                    None if b.attn is None else cast_attention_layer(b.attn, dtype),
                    None if b.mlp is None else b.mlp.astype(dtype),
                )
                for b in self.blocks
            ],
            t_slot=self.t_slot,
        )


def cast_attention_layer(layer: AttentionLayer, dtype: torch.dtype) -> AttentionLayer:
    """A copy of ``layer`` with its heads' weights in ``dtype``."""
    heads = tuple(Head(h.Q.to(dtype), h.K.to(dtype), h.V.to(dtype), h.label) for h in layer.heads)
    return AttentionLayer(heads, kind=layer.kind)


def block_norm(model: AttentionMLPTransformer) -> float:
    """Bai et al. eq. (2) with MLPs: ``max_l { max_m max(||Q_m||, ||K_m||) + sum_m ||V_m||
    + ||W_1^(l)|| + ||W_2^(l)|| }`` (operator norms) [RECON, recalled]."""

    def op(A: torch.Tensor) -> float:
        return float(torch.linalg.svdvals(A)[0]) if A.numel() else 0.0

    best = 0.0
    for b in model.blocks:
        total = 0.0
        if b.attn is not None:
            heads = b.attn.heads
            total += max(max(op(h.Q), op(h.K)) for h in heads) + sum(op(h.V) for h in heads)
        if b.mlp is not None:
            total += op(b.mlp.W1) + op(b.mlp.W2)
        best = max(best, total)
    return best
