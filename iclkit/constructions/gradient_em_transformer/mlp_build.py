"""The ``attention-mlp`` architecture of the Theorem 3.1 construction (arXiv 2410.14183): the
same surrogate gradient EM, with every per-token nonlinearity evaluated by one MLP instead of
one attention head per ReLU term (design in ``docs/construction.md``, attention + MLP).

Bai et al. Def. 2.2 blocks (:mod:`.mlp`): attention with at most 4 heads, then a per-token
ReLU MLP. Attention writes the *arguments* of the nonlinearities (bilinear in the token's
content and the shared estimates, so they need attention) into scratch slots; the MLP of the
same block applies the ReLU sum ``sum_m c_m relu(a_m z + b_m)`` to them (one hidden unit per
term, plus two units ``-relu(+-slot)`` that clear a slot it overwrites or has consumed):

- symmetric K = 2: ``u = <yx, beta> / sigma^2`` (2 heads, 2 more clear the old ``u``), MLP
  ``c = f(u)``; each gradient step is the attention-only design's 4 heads;
- general K, E-step: ``t_k = (y - <x, beta_k>) / sigma`` (2 heads per k), MLP ``e_k = psi(t_k)``;
  ``K - 1`` MLP-only blocks ``w_k = softplus(l_{k+1} - l_k + w_{k+1})``; one MLP-only block
  ``gamma_k = exp(l_k - l_0 - w_0)``; each gradient step: ``t_k`` again (2 heads per k) with MLP
  ``r_k = (sigma/2)[psi(gamma_k + t_k) - psi(gamma_k - t_k)]``, then
  ``beta_k += alpha (1/n) sum_j r_jk x_j`` (2 shared-query heads per k).

The ReLU sums and the order of operations are those of the attention-only design, so both
realise the same surrogate gradient EM (:mod:`iclkit.constructions.surrogate_em`). Depth:
``T_outer (1 + T_inner) + 1`` (symmetric) and ``T_outer (ceil(K/2) + K + 2 T_inner ceil(K/2))
+ 1`` (general K) blocks: independent of the number M of ReLU terms, which sets the MLP width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from iclkit.constructions.attention import AttentionLayer, Head
from iclkit.constructions.layout import TokenLayout
from iclkit.constructions.relu_approx import ReluSum, tanh_relu_sum
from iclkit.theory.validation import ParameterError

from .config import ConstructionConfig
from .heads import (
    MAX_HEADS,
    BlockEnd,
    Pair,
    coords,
    layer_count,
    layer_formula_text,
    make_head,
    readout_heads,
    reset_heads,
)
from .mlp import AttentionMLPTransformer, Block, MLPLayer, Unit, block_norm, mlp_layer
from .model import ConstructionReport, GradientEMTransformer
from .nonlinearities import general_relu_sums

__all__ = [
    "build_attention_mlp",
    "mlp_construction_bytes",
]

# (coordinate, weight) terms of an affine argument of the token's own coordinates
Affine = list[tuple[int, float]]
# One EM iteration as (kind, s, heads, mlp): s = -1 for E-step phases, None for the phases of
# a gradient step (repeated T_inner times, in order, by _schedule).
_PerIter = list[tuple[str, int | None, list[Head], MLPLayer | None]]


@dataclass(frozen=True)
class _Phase:
    """Heads (split over blocks of <= 4) and the MLP of the phase's last block."""

    heads: list[Head]
    mlp: MLPLayer | None
    tag: tuple[str, int, int]  # (kind, outer t, inner s)


def mlp_construction_bytes(d: int, K: int, cfg: ConstructionConfig) -> int:
    """Bytes of the weights (upper estimate): per block at most 4 heads as in
    ``build.construction_bytes`` plus ``W_1, W_2`` of at most ``2 K M + 4 K + 4`` units."""
    P = 1 if cfg.symmetric else K
    D = (2 + P) * d + 5 * K + 11
    L = layer_count(K, cfg.T_outer, cfg.T_inner, cfg.relu_terms, symmetric=cfg.symmetric,
                    architecture="attention-mlp")  # fmt: skip
    units = 2 * K * cfg.relu_terms + 4 * K + 4
    return 2 * 8 * L * (4 * (D * D + 4 * D * (d + 2)) + 2 * units * D)


def build_attention_mlp(
    d: int, K: int, sigma: float, cfg: ConstructionConfig, pi: tuple[float, ...]
) -> GradientEMTransformer:
    """The attention-mlp construction (arguments validated by the caller,
    ``build.build_gradient_em_transformer``)."""
    if cfg.symmetric:
        layout, per_iter, readout, sums = _symmetric(d, sigma, cfg, pi)
    else:
        layout, per_iter, readout, sums = _general(d, K, sigma, cfg, pi)
    blocks, ends = _pack(_schedule(per_iter, readout, cfg))
    model = AttentionMLPTransformer(blocks, t_slot=layout.t)
    expected = layer_count(
        K,
        cfg.T_outer,
        cfg.T_inner,
        cfg.relu_terms,
        symmetric=cfg.symmetric,
        architecture="attention-mlp",
    )
    if model.L != expected:  # internal consistency of the documented formula
        raise RuntimeError(f"layer formula gives {expected}, construction has {model.L}")
    norm = block_norm(model)
    if not math.isfinite(norm):
        raise ParameterError(
            f"sigma: the construction's weight norm overflows float64 (sigma = {sigma:g}, "
            f"R_residual = {cfg.R_residual:g}, alpha = {cfg.alpha:g}); use less extreme values"
        )
    hpl = tuple(model.heads_per_layer())
    report = ConstructionReport(
        L=model.L,
        heads_per_layer=hpl,
        max_heads_per_layer=max(hpl),
        layer_formula=layer_formula_text(cfg.symmetric, "attention-mlp"),
        weight_norm=norm,
        D=layout.D,
        certificates={name: s.certificate for name, s in sums.items()},
        block_ends=tuple(ends),
        architecture="attention-mlp",
        mlp_widths=tuple(model.mlp_widths()),
    )
    return GradientEMTransformer(
        model,
        layout,
        report,
        sigma,
        pi,
        cfg.T_outer,
        cfg.T_inner,
        cfg.alpha,
        tanh_sum=sums.get("tanh"),
        relu_sums=sums,
    )


def _schedule(per_iter: _PerIter, readout: list[Head], cfg: ConstructionConfig) -> list[_Phase]:
    """``T_outer`` times (the E-step phases, then ``T_inner`` times the gradient step's phases),
    then the read-out."""
    estep = [(k, h, m) for k, s, h, m in per_iter if s is not None]
    step = [(k, h, m) for k, s, h, m in per_iter if s is None]
    out: list[_Phase] = []
    for t in range(cfg.T_outer):
        out += [_Phase(h, m, (k, t, -1)) for k, h, m in estep]
        for s in range(cfg.T_inner):
            out += [_Phase(h, m, (k, t, s)) for k, h, m in step]
    out.append(_Phase(readout, None, ("readout", cfg.T_outer, 0)))
    return out


def _pack(phases: list[_Phase]) -> tuple[list[Block], list[BlockEnd]]:
    """Each phase's heads over blocks of at most 4 (a phase without heads: one MLP-only
    block); its MLP goes into its last block. Returns the blocks and where each phase ends."""
    blocks: list[Block] = []
    ends: list[BlockEnd] = []
    for ph in phases:
        chunks = [ph.heads[i : i + MAX_HEADS] for i in range(0, len(ph.heads), MAX_HEADS)] or [[]]
        for i, chunk in enumerate(chunks):
            attn = AttentionLayer(tuple(chunk)) if chunk else None
            blocks.append(Block(attn, ph.mlp if i == len(chunks) - 1 else None))
        ends.append((ph.tag[0], ph.tag[1], ph.tag[2], len(blocks)))
    return blocks, ends


def _sum_units(f: ReluSum, arg: Affine, one: int, slot: int, scale: float = 1.0) -> list[Unit]:
    """Units adding ``scale * f(arg)`` to ``slot``: one per ReLU term ``c_m relu(a_m z + b_m)``."""
    units: list[Unit] = []
    for m in range(f.M):
        a1, a0, c = float(f.a[m, 0]), float(f.a[m, 1]), float(f.c[m])
        reads = [(i, w * a1) for i, w in arg if w * a1 != 0.0]
        if a0 != 0.0:
            reads.append((one, a0))
        units.append((reads, [(slot, scale * c)]))
    return units


def _clear_units(slot: int) -> list[Unit]:
    """Two units ``slot -= relu(slot) - relu(-slot)`` (the MLP reads the old value)."""
    return [([(slot, s)], [(slot, -s)]) for s in (1.0, -1.0)]


def _signed_heads(lay: TokenLayout, pairs: list[Pair], slot: int, name: str) -> list[Head]:
    """Two heads writing the (shared-key) score into ``slot``: ``relu(+-score) (+-1)``."""
    return [
        make_head(
            lay.D,
            [(q, k, s * w) for q, k, w in pairs],
            [([slot], [lay.one], s)],
            f"{name} += {s:+g} relu({s:+g} score)",
        )
        for s in (1.0, -1.0)
    ]


def _symmetric(
    d: int, sigma: float, cfg: ConstructionConfig, pi: tuple[float, ...]
) -> tuple[TokenLayout, _PerIter, list[Head], dict[str, ReluSum]]:
    lay = TokenLayout(d, 2, True, ("u", "c"))
    f = tanh_relu_sum(cfg.relu_terms)
    u, c, one, b = lay.scratch("u"), lay.scratch("c"), lay.one, coords(lay.beta(0))
    x, yx, alpha = coords(lay.x), coords(lay.yx), cfg.alpha
    e_heads = reset_heads(lay, u, "u") + _signed_heads(
        lay, [(yx, b, 1.0 / sigma**2)], u, "u = <yx, beta> / sigma^2"
    )
    e_mlp = mlp_layer(lay.D, _clear_units(c) + _sum_units(f, [(u, 1.0)], one, c), "c = f(u)")
    step = [
        make_head(lay.D, [([one], [c], 1.0)], [(b, yx, alpha)], "beta += alpha relu(c_j) y_j x_j"),
        make_head(
            lay.D, [([one], [c], -1.0)], [(b, yx, -alpha)], "beta -= alpha relu(-c_j) y_j x_j"
        ),
        make_head(lay.D, [(b, x, 1.0)], [(b, x, -alpha)], "beta -= alpha relu(<beta, x_j>) x_j"),
        make_head(lay.D, [(b, x, -1.0)], [(b, x, alpha)], "beta += alpha relu(-<beta, x_j>) x_j"),
    ]
    per_iter: _PerIter = [("estep", -1, e_heads, e_mlp), ("inner", None, step, None)]
    return lay, per_iter, readout_heads(lay, [(0, pi[0] - pi[1])]), {"tanh": f}


def _general(
    d: int, K: int, sigma: float, cfg: ConstructionConfig, pi: tuple[float, ...]
) -> tuple[TokenLayout, _PerIter, list[Head], dict[str, ReluSum]]:
    names = [f"{v}{k}" for v in ("t", "e", "gamma", "r") for k in range(K)]
    names += [f"w{k}" for k in range(K - 1)]
    lay = TokenLayout(d, K, False, tuple(names))
    sums = general_relu_sums(cfg.relu_terms, R_residual=cfg.R_residual)
    psi, sp, ex = sums["psi"], sums["softplus"], sums["exp"]
    one, x, logpi = lay.one, coords(lay.x), [math.log(p) for p in pi]
    S = lay.scratch

    def t_heads() -> list[Head]:  # t_k = (y - <x, beta_k>) / sigma, every k
        heads: list[Head] = []
        for k in range(K):
            pairs: list[Pair] = [
                ([lay.y], [one], 1.0 / sigma),
                (x, coords(lay.beta(k)), -1 / sigma),
            ]
            heads += _signed_heads(lay, pairs, S(f"t{k}"), f"t{k}")
        return heads

    clear_t = [u_ for k in range(K) for u_ in _clear_units(S(f"t{k}"))]
    e_units = clear_t + [u_ for k in range(K) for u_ in _clear_units(S(f"e{k}"))]
    for k in range(K):
        e_units += _sum_units(psi, [(S(f"t{k}"), 1.0)], one, S(f"e{k}"))
    per_iter: _PerIter = [("estep", -1, t_heads(), mlp_layer(lay.D, e_units, "e_k = psi(t_k)"))]
    for k in range(K - 2, -1, -1):  # w_k = softplus(l_{k+1} - l_k + w_{k+1}), l_k = log pi_k - e_k
        arg: Affine = [(one, logpi[k + 1] - logpi[k]), (S(f"e{k + 1}"), -1.0), (S(f"e{k}"), 1.0)]
        if k + 1 <= K - 2:
            arg.append((S(f"w{k + 1}"), 1.0))
        units = _clear_units(S(f"w{k}")) + _sum_units(sp, arg, one, S(f"w{k}"))
        per_iter.append(("estep", -1, [], mlp_layer(lay.D, units, f"w{k} = softplus")))
    g_units: list[Unit] = []
    for k in range(K):  # gamma_k = exp(l_k - l_0 - w_0)
        arg = []
        if k > 0:
            arg += [(one, logpi[k] - logpi[0]), (S(f"e{k}"), -1.0), (S("e0"), 1.0)]
        if K >= 2:
            arg.append((S("w0"), -1.0))
        g_units += _clear_units(S(f"gamma{k}")) + _sum_units(ex, arg, one, S(f"gamma{k}"))
    per_iter.append(("estep", -1, [], mlp_layer(lay.D, g_units, "gamma_k = exp")))
    r_units = clear_t + [u_ for k in range(K) for u_ in _clear_units(S(f"r{k}"))]
    for k in range(K):  # r_k = (sigma/2) [psi(gamma_k + t_k) - psi(gamma_k - t_k)]
        for sgn in (1.0, -1.0):
            arg = [(S(f"gamma{k}"), 1.0), (S(f"t{k}"), sgn)]
            r_units += _sum_units(psi, arg, one, S(f"r{k}"), scale=sgn * 0.5 * sigma)
    step_heads: list[Head] = []
    for k in range(K):  # beta_k += alpha (1/n) sum_j r_jk x_j
        bk = coords(lay.beta(k))
        step_heads += [
            make_head(
                lay.D,
                [([one], [S(f"r{k}")], s)],
                [(bk, x, s * cfg.alpha)],
                f"beta_{k} += {s:+g} alpha relu({s:+g} r_j{k}) x_j",
            )
            for s in (1.0, -1.0)
        ]
    per_iter += [
        ("grad", None, t_heads(), mlp_layer(lay.D, r_units, "r_k = sigma gamma_k t_k")),
        ("inner", None, step_heads, None),
    ]
    return lay, per_iter, readout_heads(lay, [(k, pi[k]) for k in range(K)]), sums
