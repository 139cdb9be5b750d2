"""Heads of the Theorem 3.1 construction and their packing into layers of at most 4 heads.

A head is given by its bilinear score pairs (query coordinates, key coordinates, weight) and its
value writes (output coordinates, input coordinates, weight) on the token layout of
:mod:`iclkit.constructions.layout`; the per-token stages (a ReLU sum, clearing a slot, the
read-out) are lists of such heads. Consecutive heads that read the same input form a
:class:`Phase`, split over layers of ``MAX_HEADS`` heads; :func:`layer_count` is the resulting
layer formula ``L(T_outer, T_inner, M)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from iclkit.constructions.attention import AttentionLayer, Head
from iclkit.constructions.layout import TokenLayout
from iclkit.constructions.relu_approx import ReluSum

from .config import Architecture

__all__ = [
    "MAX_HEADS",
    "BlockEnd",
    "Pair",
    "Phase",
    "Write",
    "coords",
    "layer_count",
    "layer_formula_text",
    "make_head",
    "pack",
    "readout_heads",
    "relu_sum_heads",
    "reset_heads",
]

#: Heads per layer, the bound of Theorem 3.1.
MAX_HEADS = 4

# (query coordinates, key coordinates, weight): score += weight * sum_a h_i[q_a] h_j[k_a]
Pair = tuple[Sequence[int], Sequence[int], float]
# (output coordinates, input coordinates, weight): V[out_a, in_a] = weight
Write = tuple[Sequence[int], Sequence[int], float]
# (kind, outer t, inner s, layer): the hidden state after `layer` holds an iterate of `kind`
BlockEnd = tuple[str, int, int, int]


def coords(s: slice) -> list[int]:
    """The coordinates of a layout slice as a list."""
    return list(range(s.start, s.stop))


def make_head(D: int, pairs: list[Pair], writes: list[Write], label: str) -> Head:
    """One ReLU-attention head on tokens of width ``D`` from its score pairs and value writes."""
    r = sum(len(q) for q, _, _ in pairs)
    Q = torch.zeros(max(r, 1), D, dtype=torch.float64)
    Kt = torch.zeros(max(r, 1), D, dtype=torch.float64)
    row = 0
    for q, k, w in pairs:
        for a, b in zip(q, k, strict=True):
            Q[row, a] = w
            Kt[row, b] = 1.0
            row += 1
    V = torch.zeros(D, D, dtype=torch.float64)
    for o, i, w in writes:
        for a, b in zip(o, i, strict=True):
            V[a, b] += w
    return Head(Q, Kt, V, label)


@dataclass(frozen=True)
class Phase:
    """Heads applied to the same input; split over layers of <= 4 heads in order."""

    heads: list[Head]
    tag: tuple[str, int, int]  # (kind, outer t, inner s)


def reset_heads(lay: TokenLayout, slot: int, name: str) -> list[Head]:
    """Two heads clearing a per-token scalar: ``slot_i -= relu(slot_i) - relu(-slot_i)``."""
    return [
        make_head(lay.D, [([slot], [lay.one], s)], [([slot], [lay.one], -s)], f"clear {name}: {c}")
        for s, c in ((1.0, "+"), (-1.0, "-"))
    ]


def relu_sum_heads(
    lay: TokenLayout, arg: list[Pair], f: ReluSum, slot: int, name: str
) -> list[Head]:
    """Per-token ReLU sum: ``slot_i += sum_m c_m relu(a_m arg_i + b_m)`` (one head per term)."""
    heads = []
    for m in range(f.M):
        a1, a0, c = float(f.a[m, 0]), float(f.a[m, 1]), float(f.c[m])
        pairs = [(q, k, w * a1) for q, k, w in arg if w * a1 != 0.0]
        if a0 != 0.0:
            pairs.append(([lay.one], [lay.one], a0))
        heads.append(
            make_head(lay.D, pairs, [([slot], [lay.one], c)], f"{name} += {c:+.4g} relu(...)")
        )
    return heads


def readout_heads(lay: TokenLayout, weights: list[tuple[int, float]]) -> list[Head]:
    """``y_i += <x_i, sum_k w_k beta_k>`` by ``relu(+-score)(+-1)``."""
    out = []
    for sign in (1.0, -1.0):
        pairs: list[Pair] = [(coords(lay.x), coords(lay.beta(k)), sign * w) for k, w in weights]
        label = f"y += {sign:+g} relu({sign:+g} <x, w>)"
        out.append(make_head(lay.D, pairs, [([lay.y], [lay.one], sign)], label))
    return out


def pack(phases: list[Phase]) -> tuple[list[AttentionLayer], list[BlockEnd]]:
    """Split each phase over layers of ``MAX_HEADS`` heads; the layer where each phase ends."""
    layers: list[AttentionLayer] = []
    ends = []
    for ph in phases:
        for i in range(0, len(ph.heads), MAX_HEADS):
            layers.append(AttentionLayer(tuple(ph.heads[i : i + MAX_HEADS])))
        ends.append((ph.tag[0], ph.tag[1], ph.tag[2], len(layers)))
    return layers, ends


def _layers(heads: int) -> int:
    """Layers that ``heads`` heads of one phase take: ``ceil(heads / 4)``."""
    return -(-heads // MAX_HEADS)


def layer_count(
    K: int,
    T_outer: int,
    T_inner: int,
    M: int,
    *,
    symmetric: bool,
    architecture: Architecture = "attention-only",
) -> int:
    """The documented layer formula ``L(T_outer, T_inner, M)`` (text: :func:`layer_formula_text`).

    attention-only, symmetric: ``T_outer (ceil((M + 2)/4) + T_inner) + 1``;
    general K: ``T_outer (2 ceil(K (M + 2)/4) + (K - 1) ceil((M + 2)/4)
    + T_inner (ceil(2 K M / 4) + ceil(K / 4))) + 1``.
    attention-mlp (blocks; M sets the MLP width, not the depth), symmetric:
    ``T_outer (1 + T_inner) + 1``; general K: ``T_outer (ceil(K/2) + K + 2 T_inner ceil(K/2)) + 1``.
    """
    if architecture == "attention-mlp":
        c2 = _layers(2 * K)  # blocks of the 2 K heads writing t_k (or updating beta_k)
        if symmetric:
            return T_outer * (1 + T_inner) + 1
        return T_outer * (c2 + K + 2 * T_inner * c2) + 1
    if symmetric:
        return T_outer * (_layers(M + 2) + T_inner) + 1
    e_step = _layers(K * (M + 2)) + (K - 1) * _layers(M + 2) + _layers(K * (M + 2))
    inner = _layers(2 * K * M) + _layers(K)
    return T_outer * (e_step + T_inner * inner) + 1


def layer_formula_text(symmetric: bool, architecture: Architecture = "attention-only") -> str:
    """:func:`layer_count` in words."""
    if architecture == "attention-mlp":
        if symmetric:
            return "L = T_outer * (1 + T_inner) + 1 (attention + MLP blocks; independent of M)"
        return (
            "L = T_outer * (ceil(K / 2) + K + 2 T_inner ceil(K / 2)) + 1"
            " (attention + MLP blocks; independent of M)"
        )
    if symmetric:
        return "L = T_outer * (ceil((M + 2) / 4) + T_inner) + 1"
    return (
        "L = T_outer * (2 ceil(K (M + 2) / 4) + (K - 1) ceil((M + 2) / 4)"
        " + T_inner (ceil(2 K M / 4) + ceil(K / 4))) + 1"
    )
