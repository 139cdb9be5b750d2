"""The builder of the Theorem 3.1 transformer of Jin, Balasubramanian, Lai (arXiv 2410.14183):
hand-set ReLU-attention weights, at most 4 heads per layer, that run (surrogate) gradient EM on
the prompt.

What the paper states [2nd]: an attention-only ReLU transformer with ``M^(l) <= 4`` heads per
layer and ``L = O(T log(n/d))`` layers simulates gradient EM and predicts with error
``O~(sqrt(d/n))`` at high SNR. Its layer-by-layer construction is [NOT FOUND]; everything below
is this project's design [RECON from Bai et al. Fig. 3 / Thm 13], documented in
``docs/construction.md``.

Design (every token carries the same estimates - Bai's trick - so all copies update alike):

- Per-token stage ("E-step layers"): a head whose query is token i's own content and whose
  key is the estimate / constant slot of any train token j scores ``a * arg_i + b`` with
  ``arg_i`` bilinear (e.g. ``<yx_i, beta>``) and writes ``c * 1`` (the key's constant) into a
  scratch slot of token i: ``(1/n) sum_j relu(a arg_i + b) c = c relu(a arg_i + b)``. ``M`` heads
  = the ``M`` ReLU terms of Def. A.1, 4 per layer, accumulating in the slot; 2 more heads
  ``-relu(+-slot_i)(+-1)`` clear the slot in the same (first) layer.
- Symmetric K = 2: scratch ``c_j = f(<yx_j, beta>/sigma^2) ~ tanh(y_j <x_j, beta>/sigma^2)``; each
  inner gradient step is exactly 4 heads: ``relu(+-c_j)(+-alpha yx_j)`` adds
  ``alpha (1/n) sum_j c_j y_j x_j`` and ``relu(+-<beta, x_j>)(-+alpha x_j)`` subtracts
  ``alpha S beta``.
- General K: the responsibilities by the chain ``psi, softplus, exp`` of ``surrogate_em``; each
  inner step accumulates the gradient in ``acc_k`` over ``ceil(2 K M / 4)`` layers, then one
  commit layer (one head per component) adds ``alpha acc_k`` to ``beta_k`` and clears ``acc_k``.
- Read-out: 2 heads write ``<x_i, sum_k pi_k beta_k>`` into the y slot (the query's is 0).

Entry point: :func:`build_gradient_em_transformer` -> :class:`GradientEMTransformer`. Its body
is the list of stages: validate, lay out the tokens and build the E-step, M-step and read-out
heads, schedule them ``T_outer x T_inner`` times, pack them into layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from iclkit.constructions.attention import AttentionTransformer, Head, bai_norm
from iclkit.constructions.layout import TokenLayout
from iclkit.constructions.relu_approx import ReluSum, tanh_relu_sum
from iclkit.theory.validation import (
    ParameterError,
    check_int,
    check_memory,
    check_positive,
    check_probability_vector,
)

from .config import Architecture, ConstructionConfig
from .heads import (
    BlockEnd,
    Pair,
    Phase,
    coords,
    layer_count,
    layer_formula_text,
    make_head,
    pack,
    readout_heads,
    relu_sum_heads,
    reset_heads,
)
from .mlp_build import build_attention_mlp, mlp_construction_bytes
from .model import ConstructionReport, GradientEMTransformer
from .nonlinearities import general_relu_sums

__all__ = ["build_gradient_em_transformer", "construction_bytes"]

#: Tolerance of "pi is uniform" when deciding or checking the symmetric construction.
_UNIFORM_PI_ATOL = 1e-12
#: Tolerance of pi summing to 1 (the weights usually come from a float32/float64 file).
_PI_SUM_ATOL = 1e-8


@dataclass(frozen=True)
class _Stages:
    """The heads of one construction: one gradient-EM iteration and the read-out."""

    layout: TokenLayout
    e_step: list[list[Head]]  # the E-step's phases, in order
    inner_step: list[tuple[str, list[Head]]]  # (kind, heads) of one gradient step; "inner" last
    readout: list[Head]
    relu_sums: dict[str, ReluSum]


def build_gradient_em_transformer(
    d: int,
    K: int,
    n: int,
    sigma: float,
    T_outer: int,
    T_inner: int = ConstructionConfig.T_inner,
    alpha: float = ConstructionConfig.alpha,
    relu_terms: int = ConstructionConfig.relu_terms,
    *,
    symmetric: bool | None = None,
    pi: Sequence[float] | None = None,
    R_residual: float = ConstructionConfig.R_residual,
    architecture: Architecture = ConstructionConfig.architecture,
) -> GradientEMTransformer:
    """Build the Theorem 3.1 transformer running ``T_outer`` gradient-EM iterations of
    ``T_inner`` gradient steps of size ``alpha`` each (then the read-out layer).

    Parameters
    ----------
    d, K, n : dimension, components, prompt length (``n`` only enters the report; the
        weights do not depend on it - the 1/n of the attention normalises).
    sigma : known noise level (the E-step weights contain ``1/sigma^2`` / ``1/sigma``).
    T_outer, T_inner, alpha : gradient-EM schedule.
    relu_terms : M, ReLU terms per nonlinearity (tanh; or psi, softplus, exp for general K).
    symmetric : tied two-component model (default: ``K == 2`` and ``pi`` uniform).
    pi : known mixing weights (default uniform); they enter the E-step and the read-out.
    R_residual : general K, half-width of the residual domain of ``psi`` (in units of sigma).
    architecture : "attention-only" (this module) or "attention-mlp" (attention + MLP blocks,
        :mod:`.mlp_build`; same surrogate, depth independent of ``relu_terms``).

    Returns
    -------
    GradientEMTransformer (``.model``, ``.layout``, ``.report``, callable on prompts).
    """
    d = check_int(d, "d", minimum=1)
    K = check_int(K, "K", minimum=1)
    check_int(n, "n", minimum=1)
    sigma = check_positive(sigma, "sigma")
    pi_t = check_probability_vector(
        [1.0 / K] * K if pi is None else list(pi), "pi", length=K, atol=_PI_SUM_ATOL
    )
    symmetric = _is_symmetric(K, pi_t, symmetric)
    cfg = ConstructionConfig(
        T_outer, T_inner, alpha, relu_terms, symmetric, R_residual, architecture=architecture
    )
    if cfg.architecture == "attention-mlp":
        check_memory(
            mlp_construction_bytes(d, K, cfg), "relu_terms",
            f"the attention-mlp construction with d = {d}, K = {K}, M = {cfg.relu_terms}",
        )  # fmt: skip
        return build_attention_mlp(d, K, sigma, cfg, pi_t)
    L = layer_count(K, cfg.T_outer, cfg.T_inner, cfg.relu_terms, symmetric=symmetric)
    check_memory(
        construction_bytes(d, K, cfg),
        "d" if d * d >= L else "T_outer",
        f"the construction with d = {d}, K = {K} and {L} layers",
    )
    if symmetric:
        stages = _symmetric_stages(d, sigma, cfg, pi_t)
    else:
        stages = _general_stages(d, K, sigma, cfg, pi_t)
    layers, ends = pack(_schedule(stages, cfg.T_outer, cfg.T_inner))
    model = AttentionTransformer(layers, t_slot=stages.layout.t)
    expected_L = layer_count(K, cfg.T_outer, cfg.T_inner, cfg.relu_terms, symmetric=symmetric)
    if model.L != expected_L:  # internal consistency of the documented formula
        raise RuntimeError(f"layer formula gives {expected_L}, construction has {model.L}")
    report = _report(model, ends, stages, layer_formula_text(symmetric))
    if not math.isfinite(report.weight_norm):
        raise ParameterError(
            f"sigma: the construction's weight norm overflows float64 (sigma = {sigma:g}, "
            f"R_residual = {cfg.R_residual:g}, alpha = {cfg.alpha:g}); use less extreme values"
        )
    return GradientEMTransformer(
        model,
        stages.layout,
        report,
        sigma,
        pi_t,
        cfg.T_outer,
        cfg.T_inner,
        cfg.alpha,
        tanh_sum=stages.relu_sums.get("tanh"),
        relu_sums=stages.relu_sums,
    )


def construction_bytes(d: int, K: int, cfg: ConstructionConfig) -> int:
    """Bytes the construction's weights take (an upper estimate): ``L`` layers of at most 6
    heads, each a (D, D) value matrix and query/key rows of width D, once as heads and once
    packed per layer, with the token width ``D <= (2 + 2K) d + 4K + 11`` float64 numbers."""
    P = 1 if cfg.symmetric else K
    D = (2 + P + K) * d + 4 * K + 11
    L = layer_count(K, cfg.T_outer, cfg.T_inner, cfg.relu_terms, symmetric=cfg.symmetric)
    return 2 * 8 * L * 6 * (D * D + 4 * D * (d + 2))


def _is_symmetric(K: int, pi: tuple[float, ...], symmetric: bool | None) -> bool:
    """Resolve ``symmetric`` (None: K = 2 with uniform pi) and check it against K and pi."""
    uniform_two = K == 2 and all(abs(p - 0.5) <= _UNIFORM_PI_ATOL for p in pi)
    if symmetric is None:
        symmetric = uniform_two
    if symmetric and K != 2:
        raise ParameterError(f"K must be 2 when symmetric=True, got {K}")
    if symmetric and not uniform_two:
        raise ParameterError(f"pi must be (0.5, 0.5) when symmetric=True, got {pi}")
    if not symmetric and any(p <= 0 for p in pi):
        raise ParameterError(f"pi must be > 0 for every component (log pi enters), got {pi}")
    return symmetric


def _schedule(stages: _Stages, T_outer: int, T_inner: int) -> list[Phase]:
    """``T_outer`` times (E-step, ``T_inner`` gradient steps), then the read-out."""
    phases: list[Phase] = []
    for t in range(T_outer):
        phases += [Phase(heads, ("estep", t, -1)) for heads in stages.e_step]
        for s in range(T_inner):
            phases += [Phase(heads, (kind, t, s)) for kind, heads in stages.inner_step]
    phases.append(Phase(stages.readout, ("readout", T_outer, 0)))
    return phases


def _report(
    model: AttentionTransformer, ends: list[BlockEnd], stages: _Stages, formula: str
) -> ConstructionReport:
    hpl = tuple(model.heads_per_layer())
    return ConstructionReport(
        L=model.L,
        heads_per_layer=hpl,
        max_heads_per_layer=max(hpl),
        layer_formula=formula,
        weight_norm=bai_norm(model),
        D=stages.layout.D,
        certificates={name: s.certificate for name, s in stages.relu_sums.items()},
        block_ends=tuple(ends),
    )


# --------------------------------------------------------------------------- symmetric K = 2
def _symmetric_stages(
    d: int, sigma: float, cfg: ConstructionConfig, pi: tuple[float, ...]
) -> _Stages:
    """E-step ``c ~ tanh(y <x, beta> / sigma^2)`` (M + 2 heads); 4 heads per gradient step."""
    lay = TokenLayout(d, 2, True, ("c",))
    f = tanh_relu_sum(cfg.relu_terms)
    c, one, b = lay.scratch("c"), lay.one, coords(lay.beta(0))
    x, yx = coords(lay.x), coords(lay.yx)
    alpha = cfg.alpha
    e_step = reset_heads(lay, c, "c") + relu_sum_heads(
        lay, [(yx, b, 1.0 / sigma**2)], f, c, "c ~ tanh(y <x, beta> / sigma^2)"
    )
    inner = [
        make_head(lay.D, [([one], [c], 1.0)], [(b, yx, alpha)], "beta += alpha relu(c_j) y_j x_j"),
        make_head(
            lay.D, [([one], [c], -1.0)], [(b, yx, -alpha)], "beta -= alpha relu(-c_j) y_j x_j"
        ),
        make_head(lay.D, [(b, x, 1.0)], [(b, x, -alpha)], "beta -= alpha relu(<beta, x_j>) x_j"),
        make_head(lay.D, [(b, x, -1.0)], [(b, x, alpha)], "beta += alpha relu(-<beta, x_j>) x_j"),
    ]
    readout = readout_heads(lay, [(0, pi[0] - pi[1])])
    return _Stages(lay, [e_step], [("inner", inner)], readout, {"tanh": f})


# --------------------------------------------------------------------------- general K
def _general_stages(
    d: int, K: int, sigma: float, cfg: ConstructionConfig, pi: tuple[float, ...]
) -> _Stages:
    """E-step ``psi -> softplus chain -> exp`` (responsibilities); accumulate, then commit."""
    names = [f"e{k}" for k in range(K)] + [f"w{k}" for k in range(K - 1)]
    lay = TokenLayout(d, K, False, (*names, *(f"gamma{k}" for k in range(K))), n_acc=K)
    sums = general_relu_sums(cfg.relu_terms, R_residual=cfg.R_residual)
    logpi = [math.log(p) for p in pi]
    e_step = [
        _residual_heads(lay, sums["psi"], sigma),
        *_logsumexp_heads(lay, sums["softplus"], logpi),
        _responsibility_heads(lay, sums["exp"], logpi),
    ]
    inner = [
        ("grad", _gradient_heads(lay, sums["psi"], sigma)),
        ("inner", _commit_heads(lay, cfg.alpha)),
    ]
    readout = readout_heads(lay, [(k, pi[k]) for k in range(K)])
    return _Stages(lay, e_step, inner, readout, sums)


def _residual_heads(lay: TokenLayout, psi: ReluSum, sigma: float) -> list[Head]:
    """E1: ``e_k = psi((y - <x, beta_k>) / sigma)`` for every k."""
    heads: list[Head] = []
    for k in range(lay.K):
        heads += reset_heads(lay, lay.scratch(f"e{k}"), f"e{k}")
    for k in range(lay.K):
        arg: list[Pair] = [
            ([lay.y], [lay.one], 1.0 / sigma),
            (coords(lay.x), coords(lay.beta(k)), -1.0 / sigma),
        ]
        heads += relu_sum_heads(lay, arg, psi, lay.scratch(f"e{k}"), f"e{k} ~ t^2/2")
    return heads


def _logsumexp_heads(lay: TokenLayout, sp: ReluSum, logpi: list[float]) -> list[list[Head]]:
    """E2: ``w_k = softplus(l_{k+1} - l_k + w_{k+1})`` for k = K-2..0, with
    ``l_k = log pi_k - e_k`` (one phase each: ``w_k`` reads ``w_{k+1}``)."""
    one, K = lay.one, lay.K
    phases = []
    for k in range(K - 2, -1, -1):
        w_k = lay.scratch(f"w{k}")
        arg: list[Pair] = [
            ([one], [one], logpi[k + 1] - logpi[k]),
            ([lay.scratch(f"e{k + 1}")], [one], -1.0),
            ([lay.scratch(f"e{k}")], [one], 1.0),
        ]
        if k + 1 <= K - 2:
            arg.append(([lay.scratch(f"w{k + 1}")], [one], 1.0))
        phases.append(
            reset_heads(lay, w_k, f"w{k}") + relu_sum_heads(lay, arg, sp, w_k, f"w{k} ~ softplus")
        )
    return phases


def _responsibility_heads(lay: TokenLayout, ex: ReluSum, logpi: list[float]) -> list[Head]:
    """E3: ``gamma_k = exp(l_k - l_0 - w_0)`` (``l_0 + w_0 = log sum_k exp l_k``)."""
    one, K = lay.one, lay.K
    e0 = lay.scratch("e0")
    heads: list[Head] = []
    for k in range(K):
        heads += reset_heads(lay, lay.scratch(f"gamma{k}"), f"gamma{k}")
    for k in range(K):
        arg: list[Pair] = []
        if k > 0:
            arg += [
                ([one], [one], logpi[k] - logpi[0]),
                ([lay.scratch(f"e{k}")], [one], -1.0),
                ([e0], [one], 1.0),
            ]
        if K >= 2:
            arg.append(([lay.scratch("w0")], [one], -1.0))
        heads += relu_sum_heads(lay, arg, ex, lay.scratch(f"gamma{k}"), f"gamma{k} ~ exp")
    return heads


def _gradient_heads(lay: TokenLayout, psi: ReluSum, sigma: float) -> list[Head]:
    """``acc_k += (1/n) sum_j (sigma/2) [psi(gamma + t) - psi(gamma - t)] x_j`` (= the
    gradient-EM step direction ``gamma_k t x_j sigma``), one head per ReLU term and sign."""
    one, yslot, x = lay.one, lay.y, coords(lay.x)
    heads: list[Head] = []
    for k in range(lay.K):
        bk, ak, gk = coords(lay.beta(k)), coords(lay.acc(k)), lay.scratch(f"gamma{k}")
        for m in range(psi.M):
            a1, a0, cm = float(psi.a[m, 0]), float(psi.a[m, 1]), float(psi.c[m])
            for sgn in (1.0, -1.0):
                pairs: list[Pair] = []
                if a1 != 0.0:
                    pairs += [
                        ([one], [gk], a1),
                        ([one], [yslot], sgn * a1 / sigma),
                        (bk, x, -sgn * a1 / sigma),
                    ]
                if a0 != 0.0:
                    pairs.append(([one], [one], a0))
                weight = sgn * 0.5 * sigma * cm
                label = f"acc_{k} += {weight:+.4g} relu(gamma {'+' if sgn > 0 else '-'} t) x_j"
                heads.append(make_head(lay.D, pairs, [(ak, x, weight)], label))
    return heads


def _commit_heads(lay: TokenLayout, alpha: float) -> list[Head]:
    """``beta_k += alpha acc_k; acc_k = 0`` (one head per component, score ``relu(1)``)."""
    return [
        make_head(
            lay.D,
            [([lay.one], [lay.one], 1.0)],
            [
                (coords(lay.beta(k)), coords(lay.acc(k)), alpha),
                (coords(lay.acc(k)), coords(lay.acc(k)), -1.0),
            ],
            f"beta_{k} += alpha acc_{k}; acc_{k} = 0",
        )
        for k in range(lay.K)
    ]
