"""The Theorem 3.1 transformer as built: the attention model, its token layout and its report.

:class:`GradientEMTransformer` is what :func:`build_gradient_em_transformer` returns; calling it
on prompts embeds them (every token carries the same estimates), runs the attention layers and
reads the estimates and the prediction back (arXiv 2410.14183, Theorem 3.1;
``docs/construction.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from iclkit.constructions.attention import AttentionPath, AttentionTransformer
from iclkit.constructions.layout import TokenLayout, embed, read_beta, read_y
from iclkit.constructions.relu_approx import ReluSum

from .heads import BlockEnd
from .mlp import AttentionMLPTransformer, cast_attention_layer

__all__ = ["ConstructionReport", "GradientEMTransformer"]


@dataclass(frozen=True)
class ConstructionReport:
    """What :func:`build_gradient_em_transformer` built.

    Attributes
    ----------
    L : int, number of layers.
    heads_per_layer : tuple of int (every entry <= 4).
    max_heads_per_layer : int
    layer_formula : str, ``L(T_outer, T_inner, M)`` in words.
    weight_norm : float, Bai's ``|||theta|||``.
    D : int, token width.
    certificates : dict name -> Certificate of each ReLU sum used.
    block_ends : tuple of (kind, t, s, layer): the layer after which the hidden state equals the
        algorithm's iterate (kind "inner": after inner step s of outer iteration t; "readout").
    architecture : "attention-only" or "attention-mlp" (then a layer is an attention + MLP
        block, and ``heads_per_layer`` counts its attention heads, 0 for an MLP-only block).
    mlp_widths : tuple of int, hidden units of each block's MLP (attention-mlp; else empty).
    """

    L: int
    heads_per_layer: tuple[int, ...]
    max_heads_per_layer: int
    layer_formula: str
    weight_norm: float
    D: int
    certificates: dict[str, object] = field(default_factory=dict)
    block_ends: tuple[BlockEnd, ...] = ()
    architecture: str = "attention-only"
    mlp_widths: tuple[int, ...] = ()


@dataclass(frozen=True)
class GradientEMTransformer:
    """The constructed transformer with its layout, ReLU sums and report."""

    model: AttentionTransformer | AttentionMLPTransformer
    layout: TokenLayout
    report: ConstructionReport
    sigma: float
    pi: tuple[float, ...]
    T_outer: int
    T_inner: int
    alpha: float
    tanh_sum: ReluSum | None = None
    relu_sums: dict[str, ReluSum] = field(default_factory=dict)

    def embed(
        self, X: torch.Tensor, y: torch.Tensor, init: torch.Tensor, x_query: torch.Tensor
    ) -> torch.Tensor:
        """The input tokens (B, n + 1, D) of the prompts, each carrying ``init``, in the dtype of
        the weights (:attr:`dtype`)."""
        return embed(self.layout, X, y, init, x_query).to(self.dtype)

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point type of the weights, in which the forward pass runs."""
        if isinstance(self.model, AttentionMLPTransformer):
            return self.model.dtype
        layers = self.model.attention_layers
        return layers[0].packed.Q.dtype if layers else torch.float64

    def astype(self, dtype: torch.dtype) -> GradientEMTransformer:
        """The same construction with every weight in ``dtype`` (e.g. a float32 forward pass;
        the ReLU sums and the report are unchanged)."""
        if isinstance(self.model, AttentionMLPTransformer):
            model: AttentionTransformer | AttentionMLPTransformer = self.model.astype(dtype)
        else:
            layers = [cast_attention_layer(a, dtype) for a in self.model.attention_layers]
            model = AttentionTransformer(layers, t_slot=self.model.t_slot)
        return replace(self, model=model)

    def __call__(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        init: torch.Tensor,
        x_query: torch.Tensor,
        *,
        R: float = float("inf"),
        attention: AttentionPath = "auto",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run on prompts; returns ``(beta_tf (B, K, d), y_hat (B,))``.

        ``attention``: "auto" (every head of this construction in O(n D), exact) or "dense"
        (full n x n scores); see :func:`iclkit.constructions.attention.attention`.
        """
        H = self.model(self.embed(X, y, init, x_query), path=attention)
        return read_beta(self.layout, H), read_y(self.layout, H, R)

    def block_iterates(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        init: torch.Tensor,
        x_query: torch.Tensor,
        *,
        attention: AttentionPath = "auto",
    ) -> list[list[torch.Tensor]]:
        """``iters[t][s]`` = the estimates (B, P, d) of the query token after inner step s + 1 of
        outer iteration t + 1 (its row of the hidden states at ``report.block_ends``; only these
        rows are kept)."""
        ends = [(t, layer) for kind, t, _s, layer in self.report.block_ends if kind == "inner"]
        rows = self.model.token_states(
            self.embed(X, y, init, x_query), [layer for _, layer in ends], path=attention
        )
        out: list[list[torch.Tensor]] = [[] for _ in range(self.T_outer)]
        for t, layer in ends:
            h = rows[layer]  # (B, D)
            out[t].append(torch.stack([h[:, self.layout.beta(k)] for k in range(self.layout.P)], 1))
        return out

    def estimate_copies_spread(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        init: torch.Tensor,
        x_query: torch.Tensor,
        *,
        attention: AttentionPath = "auto",
    ) -> float:
        """Largest difference between two tokens' copies of the estimates at the end."""
        H = self.model(self.embed(X, y, init, x_query), path=attention)
        sl = slice(self.layout.beta(0).start, self.layout.beta(self.layout.P - 1).stop)
        est = H[:, :, sl]
        return float((est - est[:, -1:]).abs().max())
