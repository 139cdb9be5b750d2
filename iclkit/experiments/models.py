"""Transformers trained on MoR prompts (MoR paper, arXiv 2410.14183, Section 6 of v2: Figures 1-4).

Two architectures, both predicting at every prompt position in one forward pass, so one call
gives the risk curve over prompt lengths (the causal convention of
:mod:`iclkit.constructions.predictors`: the prediction at position m uses the first m examples
and x_m).

- ``"gpt2"``: a GPT-2-style decoder (pre-LayerNorm blocks, causal softmax attention through
  :func:`torch.nn.functional.scaled_dot_product_attention`, GELU MLP of width 4D, learned
  positional embeddings). The prompt is read in as the interleaved sequence
  ``x_0, y_0, x_1, y_1, ..., x_n`` (Garg et al.'s format; ``docs/provenance.md`` §9 [RECON, community
  default]): an x token is ``[x; 0]`` in R^{d+1}, mapped to R^D by a linear read-in; the
  prediction of y_m is read out (linear) at the token of x_m. The y token is ``[x; y]`` by
  default (``y_token="xy"``, this project's choice) or ``[0; y]`` (``y_token="y"``, Garg et
  al.'s). With ``[0; y]`` a pair (x_j, y_j) is spread over two tokens, and the model must first
  learn to bind them (attend from the y token to the x token before it) before any in-context
  regression pays off: on MoR prompts it sits on the plateau loss ≈ Var y for thousands of
  steps (docs/experiments.md, measured). With ``[x; y]`` every y token carries its pair, as the
  encoder's tokens do, and the plateau is left within a few hundred steps.
- ``"relu_encoder"``: the ReLU-attention transformer of the theory (Bai et al. Def. 1, ``docs/provenance.md`` §6 [READ-Bai]): ``h_i <- h_i + sum_m (1/N_i) sum_j ReLU(<Q_m h_i, K_m h_j>) V_m h_j``. Token
  layout ``[x_j; y_j; t_j]`` with ``t_j = 1`` for the n examples; to predict at every position in
  one pass, the sequence holds the n example tokens followed by one query token ``[x_m; 0; 0]``
  per position m, and a mask lets example token i see examples j <= i and query token m see
  examples j < m (query tokens are never keys). N_i is the number of keys token i sees (at
  least 1): the paper's 1/N normalisation with the train mask (``docs/provenance.md`` §6 is ambiguous
  between 1/n and 1/(n+1); this is the project's choice). The theory's model is attention-only
  (``mlp=False, norm=False``); MLP and LayerNorm are options that make training easier.

Parameters are initialised from an explicit seed (GPT-2 scheme: N(0, 0.02^2) weights, zero
biases, residual projections scaled by 1/sqrt(2 * layers)); there is no dropout, so training is
deterministic given the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from iclkit.theory.rng import make_generator
from iclkit.theory.validation import (
    ParameterError,
    check_bool,
    check_choice,
    check_int_fields,
    check_shape,
)

__all__ = ["ARCHITECTURES", "Y_TOKENS", "ICLTransformer", "ModelConfig", "build_model"]

Architecture = Literal["gpt2", "relu_encoder"]
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)
#: What the GPT-2 decoder's y token holds: "xy" = ``[x_j; y_j]``, "y" = ``[0; y_j]`` (Garg et al.).
YToken = Literal["xy", "y"]
Y_TOKENS: tuple[str, ...] = get_args(YToken)

#: Standard deviation of the GPT-2 weight initialisation, N(0, 0.02^2) (Radford et al.).
INIT_STD = 0.02

#: Width of the MLP after attention, in multiples of the hidden size D (GPT-2's 4D).
MLP_EXPANSION = 4


@dataclass(frozen=True)
class ModelConfig:
    """Size and kind of the transformer.

    Parameters
    ----------
    d : int
        Dimension of x (the read-in takes d + 1 or d + 2 inputs).
    max_n : int
        Largest number of in-context examples n the model is built for (positional table size).
    D : int
        Embedding (hidden) size, the paper's D (Figure 4 varies it: 32, 64, 128 [READ reviews]).
    layers : int
        Number of transformer blocks L.
    heads : int
        Attention heads per block M; must divide D.
    arch : {"gpt2", "relu_encoder"}
    mlp : bool
        ``relu_encoder`` only: add a ReLU MLP (width 4D) after each attention layer.
    norm : bool
        ``relu_encoder`` only: pre-LayerNorm before each sublayer and before the read-out.
    y_token : {"xy", "y"}
        ``gpt2`` only: the y token of example j is ``[x_j; y_j]`` ("xy", this project's default)
        or ``[0; y_j]`` ("y", Garg et al.'s format, which plateaus far longer; module docstring).
    """

    d: int
    max_n: int
    D: int = 64
    layers: int = 3
    heads: int = 4
    arch: Architecture = "gpt2"
    mlp: bool = True
    norm: bool = True
    y_token: YToken = "xy"

    def __post_init__(self) -> None:
        check_int_fields(self, dict.fromkeys(("d", "max_n", "D", "layers", "heads"), 1))
        if self.D % self.heads != 0:
            raise ParameterError(
                f"heads must divide D (D={self.D}, heads={self.heads}): head size is D / heads"
            )
        check_choice(self.arch, "arch", ARCHITECTURES)
        check_bool(self.mlp, "mlp")
        check_bool(self.norm, "norm")
        check_choice(self.y_token, "y_token", Y_TOKENS)


class _CausalSelfAttention(nn.Module):
    """GPT-2 multi-head causal softmax attention (one fused QKV projection)."""

    def __init__(self, D: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(D, 3 * D)
        self.c_proj = nn.Linear(D, D)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, T, D = h.shape
        q, k, v = self.c_attn(h).split(D, dim=2)
        shape = (B, T, self.heads, D // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(out.transpose(1, 2).reshape(B, T, D))


class _ReLUAttention(nn.Module):
    """Bai et al. Def. 1: sum over heads of (1/N_i) sum_j ReLU(<Q h_i, K h_j>) V h_j.

    ``mask`` (T, Tk) says which keys each token sees; N_i = max(1, mask[i].sum()).
    """

    def __init__(self, D: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.out = nn.Linear(D, D, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, n_keys: int) -> torch.Tensor:
        B, T, D = h.shape
        q, k, v = self.qkv(h).split(D, dim=2)
        dh = D // self.heads
        q = q.view(B, T, self.heads, dh).transpose(1, 2)
        k = k[:, :n_keys].reshape(B, n_keys, self.heads, dh).transpose(1, 2)
        v = v[:, :n_keys].reshape(B, n_keys, self.heads, dh).transpose(1, 2)
        weights = torch.relu(q @ k.transpose(-1, -2)) * mask  # (B, M, T, Tk)
        count = mask.sum(-1, keepdim=True).clamp_min(1.0)
        out = (weights / count) @ v
        return self.out(out.transpose(1, 2).reshape(B, T, D))


class _MLP(nn.Module):
    def __init__(self, D: int, activation: str) -> None:
        super().__init__()
        self.c_fc = nn.Linear(D, MLP_EXPANSION * D)
        self.c_proj = nn.Linear(MLP_EXPANSION * D, D)
        self.activation = activation

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        u = self.c_fc(h)
        u = F.gelu(u, approximate="tanh") if self.activation == "gelu" else torch.relu(u)
        return self.c_proj(u)


class _GPT2Block(nn.Module):
    def __init__(self, D: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(D)
        self.attn = _CausalSelfAttention(D, heads)
        self.ln_2 = nn.LayerNorm(D)
        self.mlp = _MLP(D, "gelu")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.ln_1(h))
        return h + self.mlp(self.ln_2(h))


class _ReLUBlock(nn.Module):
    def __init__(self, D: int, heads: int, mlp: bool, norm: bool) -> None:
        super().__init__()
        self.ln_1: nn.Module = nn.LayerNorm(D) if norm else nn.Identity()
        self.attn = _ReLUAttention(D, heads)
        self.ln_2: nn.Module = nn.LayerNorm(D) if (norm and mlp) else nn.Identity()
        self.mlp: nn.Module | None = _MLP(D, "relu") if mlp else None

    def forward(self, h: torch.Tensor, mask: torch.Tensor, n_keys: int) -> torch.Tensor:
        h = h + self.attn(self.ln_1(h), mask, n_keys)
        if self.mlp is not None:
            h = h + self.mlp(self.ln_2(h))
        return h


class ICLTransformer(nn.Module):
    """A transformer that maps a prompt to predictions at every position.

    ``forward(X, y)`` with ``X : (B, N, d)`` and ``y : (B, N)`` (N = n + 1 tokens; the last
    label, the query's, is never read) returns ``(B, N)``: entry m predicts y_m from
    ``(x_0, y_0), ..., (x_{m-1}, y_{m-1})`` and x_m.
    """

    def __init__(self, config: ModelConfig, *, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        c = config
        self.blocks: nn.ModuleList
        if c.arch == "gpt2":
            self.read_in = nn.Linear(c.d + 1, c.D)
            self.wpe = nn.Embedding(2 * c.max_n + 1, c.D)
            self.blocks = nn.ModuleList(_GPT2Block(c.D, c.heads) for _ in range(c.layers))
            self.ln_f: nn.Module = nn.LayerNorm(c.D)
        else:
            self.read_in = nn.Linear(c.d + 2, c.D)
            self.blocks = nn.ModuleList(
                _ReLUBlock(c.D, c.heads, c.mlp, c.norm) for _ in range(c.layers)
            )
            self.ln_f = nn.LayerNorm(c.D) if c.norm else nn.Identity()
        self.read_out = nn.Linear(c.D, 1)
        self._initialise(seed)

    def _initialise(self, seed: int) -> None:
        g = make_generator(seed)
        resid_scale = 1.0 / math.sqrt(2 * self.config.layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif ".ln_" in name or name.startswith("ln_f"):
                    p.fill_(1.0)
                else:
                    std = INIT_STD * (
                        resid_scale if name.endswith(("c_proj.weight", "out.weight")) else 1
                    )
                    p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * std)

    # ------------------------------------------------------------------ read-in
    def _check(self, X: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
        check_shape(X, "X", (None, None, self.config.d))
        B, N, _ = X.shape
        check_shape(y, "y", (B, N))
        if N < 1 or N > self.config.max_n + 1:
            raise ParameterError(
                f"X must have 1 <= N <= max_n + 1 = {self.config.max_n + 1} tokens, got N={N}"
            )
        return int(B), int(N)

    def hidden_states(self, X: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """The residual stream at the token that predicts the query (position n), after the
        read-in and after each block: ``L + 1`` tensors of shape (B, D) (for probes)."""
        B, N = self._check(X, y)
        states: list[torch.Tensor] = []
        if self.config.arch == "gpt2":
            self._forward_gpt2(X, y, B, N, states)
        else:
            self._forward_encoder(X, y, B, N, states)
        return states

    def forward(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        B, N = self._check(X, y)
        if self.config.arch == "gpt2":
            return self._forward_gpt2(X, y, B, N)
        return self._forward_encoder(X, y, B, N)

    def _forward_gpt2(
        self, X: torch.Tensor, y: torch.Tensor, B: int, N: int, states: list | None = None
    ) -> torch.Tensor:
        d = self.config.d
        tokens = X.new_zeros(B, 2 * N - 1, d + 1)
        tokens[:, 0::2, :d] = X
        if self.config.y_token == "xy":
            tokens[:, 1::2, :d] = X[:, : N - 1]
        tokens[:, 1::2, d] = y[:, : N - 1]
        h = self.read_in(tokens) + self.wpe.weight[: 2 * N - 1]
        if states is not None:
            states.append(h[:, -1])
        for block in self.blocks:
            h = block(h)
            if states is not None:
                states.append(h[:, -1])
        return self.read_out(self.ln_f(h[:, 0::2]))[..., 0]

    def _forward_encoder(
        self, X: torch.Tensor, y: torch.Tensor, B: int, N: int, states: list | None = None
    ) -> torch.Tensor:
        d = self.config.d
        n_train = N - 1
        tokens = X.new_zeros(B, n_train + N, d + 2)
        tokens[:, :n_train, :d] = X[:, :n_train]
        tokens[:, :n_train, d] = y[:, :n_train]
        tokens[:, :n_train, d + 1] = 1.0
        tokens[:, n_train:, :d] = X
        mask = _encoder_mask(n_train, N, X.dtype, X.device)
        h = self.read_in(tokens)
        if states is not None:
            states.append(h[:, -1])
        for block in self.blocks:
            h = block(h, mask, n_train)
            if states is not None:
                states.append(h[:, -1])
        return self.read_out(self.ln_f(h[:, n_train:]))[..., 0]


def _encoder_mask(n_train: int, N: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n_train + N, n_train) visibility: example i sees j <= i, query m sees j < m."""
    j = torch.arange(max(n_train, 1), device=device)[:n_train]
    i = torch.arange(n_train, device=device)
    m = torch.arange(N, device=device)
    train = (j[None, :] <= i[:, None]).to(dtype)
    query = (j[None, :] < m[:, None]).to(dtype)
    return torch.cat([train, query], dim=0)


def build_model(config: ModelConfig, *, seed: int = 0) -> ICLTransformer:
    """The one entry point: a float32 :class:`ICLTransformer` initialised from ``seed``."""
    return ICLTransformer(config, seed=seed)
