"""The Theorem 3.1 transformer of Jin, Balasubramanian, Lai (arXiv 2410.14183): hand-set ReLU-attention
weights, at most 4 heads per layer, that run (surrogate) gradient EM on the prompt.

What is the paper's [2nd, ``mor.md`` §4.3-4.4]: an attention-only ReLU transformer with
``M^(l) <= 4`` heads per layer and ``L = O(T log(n/d))`` layers simulates gradient EM and
predicts with error ``O~(sqrt(d/n))`` at high SNR. Its layer-by-layer construction is
[NOT FOUND]; everything below is this project's design [RECON from Bai et al. Fig. 3 / Thm 13],
documented in ``docs/construction.md``.

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

Entry point: :func:`build_gradient_em_transformer` -> :class:`GradientEMTransformer`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from iclkit.constructions.attention import (
    AttentionLayer,
    AttentionTransformer,
    Head,
    bai_norm,
)
from iclkit.constructions.layout import TokenLayout, embed, read_beta, read_y
from iclkit.constructions.relu_approx import ReluSum, interpolate_relu_sum, tanh_relu_sum
from iclkit.constructions.surrogate_em import EStepFunctions
from iclkit.theory.validation import (
    ParameterError,
    check_int,
    check_positive,
    check_probability_vector,
    check_shape,
)

__all__ = [
    "ConstructionReport",
    "ConstructionRun",
    "GradientEMTransformer",
    "build_gradient_em_transformer",
    "estep_functions",
    "general_relu_sums",
    "layer_count",
    "layer_formula_text",
    "layerwise_relative_error",
    "run_gradient_em_transformer",
    "surrogate_iterates",
]

MAX_HEADS = 4

# (query coordinates, key coordinates, weight): score += weight * sum_a h_i[q_a] h_j[k_a]
Pair = tuple[Sequence[int], Sequence[int], float]
# (output coordinates, input coordinates, weight): V[out_a, in_a] = weight
Write = tuple[Sequence[int], Sequence[int], float]


def _rng(s: slice) -> list[int]:
    return list(range(s.start, s.stop))


def _head(D: int, pairs: list[Pair], writes: list[Write], label: str) -> Head:
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
class _Phase:
    """Heads applied to the same input; split over layers of <= 4 heads in order."""

    heads: list[Head]
    tag: tuple[str, int, int]  # (kind, outer t, inner s)


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
    """

    L: int
    heads_per_layer: tuple[int, ...]
    max_heads_per_layer: int
    layer_formula: str
    weight_norm: float
    D: int
    certificates: dict[str, object] = field(default_factory=dict)
    block_ends: tuple[tuple[str, int, int, int], ...] = ()


@dataclass(frozen=True)
class GradientEMTransformer:
    """The constructed transformer with its layout, ReLU sums and report."""

    model: AttentionTransformer
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
        return embed(self.layout, X, y, init, x_query)

    def __call__(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        init: torch.Tensor,
        x_query: torch.Tensor,
        *,
        R: float = float("inf"),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run on prompts; returns ``(beta_tf (B, K, d), y_hat (B,))``."""
        H = self.model(self.embed(X, y, init, x_query))
        return read_beta(self.layout, H), read_y(self.layout, H, R)

    def block_iterates(
        self, X: torch.Tensor, y: torch.Tensor, init: torch.Tensor, x_query: torch.Tensor
    ) -> list[list[torch.Tensor]]:
        """``iters[t][s]`` = the estimates (B, P, d) of the query token after inner step s + 1 of
        outer iteration t + 1 (read from the hidden states at ``report.block_ends``)."""
        states = self.model.hidden_states(self.embed(X, y, init, x_query))
        out: list[list[torch.Tensor]] = [[] for _ in range(self.T_outer)]
        for kind, t, _s, layer in self.report.block_ends:
            if kind == "inner":
                H = states[layer]
                out[t].append(
                    torch.stack([H[:, -1, self.layout.beta(k)] for k in range(self.layout.P)], 1)
                )
        return out

    def estimate_copies_spread(
        self, X: torch.Tensor, y: torch.Tensor, init: torch.Tensor, x_query: torch.Tensor
    ) -> float:
        """Largest difference between two tokens' copies of the estimates at the end."""
        H = self.model(self.embed(X, y, init, x_query))
        sl = slice(self.layout.beta(0).start, self.layout.beta(self.layout.P - 1).stop)
        est = H[:, :, sl]
        return float((est - est[:, -1:]).abs().max())


# --------------------------------------------------------------------------- stages
def _reset_heads(lay: TokenLayout, slot: int, name: str) -> list[Head]:
    """Two heads clearing a per-token scalar: ``slot_i -= relu(slot_i) - relu(-slot_i)``."""
    return [
        _head(lay.D, [([slot], [lay.one], 1.0)], [([slot], [lay.one], -1.0)], f"clear {name}: +"),
        _head(lay.D, [([slot], [lay.one], -1.0)], [([slot], [lay.one], 1.0)], f"clear {name}: -"),
    ]


def _relu_stage(lay: TokenLayout, arg: list[Pair], f: ReluSum, slot: int, name: str) -> list[Head]:
    """Per-token ReLU sum: ``slot_i += sum_m c_m relu(a_m arg_i + b_m)`` (one head per term)."""
    heads = []
    for m in range(f.M):
        a1, a0, c = float(f.a[m, 0]), float(f.a[m, 1]), float(f.c[m])
        pairs = [(q, k, w * a1) for q, k, w in arg if w * a1 != 0.0]
        if a0 != 0.0:
            pairs.append(([lay.one], [lay.one], a0))
        heads.append(_head(lay.D, pairs, [([slot], [lay.one], c)], f"{name} += {c:+.4g} relu(...)"))
    return heads


def _readout(lay: TokenLayout, weights: list[tuple[int, float]]) -> list[Head]:
    """``y_i += <x_i, sum_k w_k beta_k>`` by ``relu(+-score)(+-1)``."""
    out = []
    for sign in (1.0, -1.0):
        pairs: list[Pair] = [(_rng(lay.x), _rng(lay.beta(k)), sign * w) for k, w in weights]
        out.append(
            _head(
                lay.D, pairs, [([lay.y], [lay.one], sign)], f"y += {sign:+g} relu({sign:+g} <x, w>)"
            )
        )
    return out


def _pack(phases: list[_Phase]) -> tuple[list[AttentionLayer], list[tuple[str, int, int, int]]]:
    layers: list[AttentionLayer] = []
    ends = []
    for ph in phases:
        for i in range(0, len(ph.heads), MAX_HEADS):
            layers.append(AttentionLayer(tuple(ph.heads[i : i + MAX_HEADS])))
        ends.append((ph.tag[0], ph.tag[1], ph.tag[2], len(layers)))
    return layers, ends


def _ceil4(x: int) -> int:
    return -(-x // MAX_HEADS)


def layer_count(K: int, T_outer: int, T_inner: int, M: int, *, symmetric: bool) -> int:
    """The documented layer formula ``L(T_outer, T_inner, M)`` (text: :func:`layer_formula_text`).

    symmetric: ``T_outer (ceil((M + 2)/4) + T_inner) + 1``;
    general K: ``T_outer (2 ceil(K (M + 2)/4) + (K - 1) ceil((M + 2)/4)
    + T_inner (ceil(2 K M / 4) + ceil(K / 4))) + 1``.
    """
    if symmetric:
        return T_outer * (_ceil4(M + 2) + T_inner) + 1
    e_step = _ceil4(K * (M + 2)) + (K - 1) * _ceil4(M + 2) + _ceil4(K * (M + 2))
    inner = _ceil4(2 * K * M) + _ceil4(K)
    return T_outer * (e_step + T_inner * inner) + 1


def layer_formula_text(symmetric: bool) -> str:
    if symmetric:
        return "L = T_outer * (ceil((M + 2) / 4) + T_inner) + 1"
    return (
        "L = T_outer * (2 ceil(K (M + 2) / 4) + (K - 1) ceil((M + 2) / 4)"
        " + T_inner (ceil(2 K M / 4) + ceil(K / 4))) + 1"
    )


def general_relu_sums(
    M: int, *, R_residual: float = 6.0, R_logit: float | None = None
) -> dict[str, ReluSum]:
    """The three ReLU sums of the general-K E-step / M-step (each with ``M`` terms).

    - ``psi``: ``t^2/2`` on ``[-R_residual, R_residual]``, linear beyond (``|psi''| = 1``);
    - ``softplus`` on ``[-R, R]``, constant below and slope 1 beyond (``|softplus''| <= 1/4``,
      tail error <= ``e^-R``);
    - ``exp`` on ``[-R, 0]``, constant below (tail <= ``e^-R``), slope continued above;
    with ``R = R_logit`` (default ``max(4, 2 log M)``).
    """
    R = max(4.0, 2 * math.log(M)) if R_logit is None else check_positive(R_logit, "R_logit")
    psi = interpolate_relu_sum(
        lambda t: 0.5 * t * t,
        R_residual,
        M,
        second_derivative_bound=1.0,
        left="linear",
        right="linear",
    )
    sp = interpolate_relu_sum(F.softplus, R, M, second_derivative_bound=0.25, right=1.0)
    ex = interpolate_relu_sum(
        torch.exp, R, M, domain=(-R, 0.0), second_derivative_bound=1.0, right="linear"
    )
    return {"psi": psi, "softplus": sp, "exp": ex}


# --------------------------------------------------------------------------- builder
def build_gradient_em_transformer(
    d: int,
    K: int,
    n: int,
    sigma: float,
    T_outer: int,
    T_inner: int = 1,
    alpha: float = 1.0,
    relu_terms: int = 32,
    *,
    symmetric: bool | None = None,
    pi: Sequence[float] | None = None,
    R_residual: float = 6.0,
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

    Returns
    -------
    GradientEMTransformer (``.model``, ``.layout``, ``.report``, callable on prompts).
    """
    d = check_int(d, "d", minimum=1)
    K = check_int(K, "K", minimum=1)
    n = check_int(n, "n", minimum=1)
    sigma = check_positive(sigma, "sigma")
    T_outer = check_int(T_outer, "T_outer", minimum=0)
    T_inner = check_int(T_inner, "T_inner", minimum=1)
    alpha = check_positive(alpha, "alpha")
    pi_t = check_probability_vector(
        [1.0 / K] * K if pi is None else list(pi), "pi", length=K, atol=1e-8
    )
    if symmetric is None:
        symmetric = K == 2 and all(abs(p - 0.5) < 1e-12 for p in pi_t)
    if symmetric and K != 2:
        raise ParameterError(f"K must be 2 when symmetric=True, got {K}")
    if symmetric and any(abs(p - 0.5) > 1e-12 for p in pi_t):
        raise ParameterError(f"pi must be (0.5, 0.5) when symmetric=True, got {pi_t}")
    if symmetric:
        relu_terms = check_int(relu_terms, "relu_terms", minimum=3)
        return _build_symmetric(d, n, sigma, T_outer, T_inner, alpha, relu_terms, pi_t)
    if any(p <= 0 for p in pi_t):
        raise ParameterError(f"pi must be > 0 for every component (log pi enters), got {pi_t}")
    relu_terms = check_int(relu_terms, "relu_terms", minimum=4)
    R_residual = check_positive(R_residual, "R_residual")
    return _build_general(d, K, n, sigma, T_outer, T_inner, alpha, relu_terms, pi_t, R_residual)


def _finish(
    phases: list[_Phase],
    lay: TokenLayout,
    formula: str,
    expected_L: int,
    certs: dict[str, object],
) -> tuple[AttentionTransformer, ConstructionReport]:
    layers, ends = _pack(phases)
    model = AttentionTransformer(layers, t_slot=lay.t)
    if model.L != expected_L:  # internal consistency of the documented formula
        raise RuntimeError(f"layer formula gives {expected_L}, construction has {model.L}")
    hpl = tuple(model.heads_per_layer())
    report = ConstructionReport(
        L=model.L,
        heads_per_layer=hpl,
        max_heads_per_layer=max(hpl),
        layer_formula=formula,
        weight_norm=bai_norm(model),
        D=lay.D,
        certificates=certs,
        block_ends=tuple(ends),
    )
    return model, report


def _build_symmetric(
    d: int,
    n: int,
    sigma: float,
    T_outer: int,
    T_inner: int,
    alpha: float,
    M: int,
    pi: tuple[float, ...],
) -> GradientEMTransformer:
    lay = TokenLayout(d, 2, True, ("c",))
    f = tanh_relu_sum(M)
    c, one, b = lay.scratch("c"), lay.one, _rng(lay.beta(0))
    x, yx = _rng(lay.x), _rng(lay.yx)
    e_step = _reset_heads(lay, c, "c") + _relu_stage(
        lay, [(yx, b, 1.0 / sigma**2)], f, c, "c ~ tanh(y <x, beta> / sigma^2)"
    )
    inner = [
        _head(lay.D, [([one], [c], 1.0)], [(b, yx, alpha)], "beta += alpha relu(c_j) y_j x_j"),
        _head(lay.D, [([one], [c], -1.0)], [(b, yx, -alpha)], "beta -= alpha relu(-c_j) y_j x_j"),
        _head(lay.D, [(b, x, 1.0)], [(b, x, -alpha)], "beta -= alpha relu(<beta, x_j>) x_j"),
        _head(lay.D, [(b, x, -1.0)], [(b, x, alpha)], "beta += alpha relu(-<beta, x_j>) x_j"),
    ]
    phases: list[_Phase] = []
    for t in range(T_outer):
        phases.append(_Phase(e_step, ("estep", t, -1)))
        for s in range(T_inner):
            phases.append(_Phase(inner, ("inner", t, s)))
    phases.append(_Phase(_readout(lay, [(0, pi[0] - pi[1])]), ("readout", T_outer, 0)))
    model, report = _finish(
        phases,
        lay,
        layer_formula_text(True),
        layer_count(2, T_outer, T_inner, M, symmetric=True),
        {"tanh": f.certificate},
    )
    return GradientEMTransformer(
        model, lay, report, sigma, pi, T_outer, T_inner, alpha, tanh_sum=f, relu_sums={"tanh": f}
    )


def _build_general(
    d: int,
    K: int,
    n: int,
    sigma: float,
    T_outer: int,
    T_inner: int,
    alpha: float,
    M: int,
    pi: tuple[float, ...],
    R_residual: float,
) -> GradientEMTransformer:
    e_names = tuple(f"e{k}" for k in range(K))
    w_names = tuple(f"w{k}" for k in range(K - 1))
    g_names = tuple(f"gamma{k}" for k in range(K))
    lay = TokenLayout(d, K, False, e_names + w_names + g_names, n_acc=K)
    sums = general_relu_sums(M, R_residual=R_residual)
    psi, sp, ex = sums["psi"], sums["softplus"], sums["exp"]
    one, yslot, x = lay.one, lay.y, _rng(lay.x)
    logpi = [math.log(p) for p in pi]
    e = [lay.scratch(nm) for nm in e_names]
    w = [lay.scratch(nm) for nm in w_names]
    g = [lay.scratch(nm) for nm in g_names]

    # E1: e_k = psi((y - <x, beta_k>) / sigma)
    e1: list[Head] = []
    for k in range(K):
        e1 += _reset_heads(lay, e[k], e_names[k])
    for k in range(K):
        arg: list[Pair] = [([yslot], [one], 1.0 / sigma), (x, _rng(lay.beta(k)), -1.0 / sigma)]
        e1 += _relu_stage(lay, arg, psi, e[k], f"{e_names[k]} ~ t^2/2")
    # E2: w_k = softplus(l_{k+1} - l_k + w_{k+1}), l_k = log pi_k - e_k
    e2: list[list[Head]] = []
    for k in range(K - 2, -1, -1):
        arg = [
            ([one], [one], logpi[k + 1] - logpi[k]),
            ([e[k + 1]], [one], -1.0),
            ([e[k]], [one], 1.0),
        ]
        if k + 1 <= K - 2:
            arg.append(([w[k + 1]], [one], 1.0))
        e2.append(
            _reset_heads(lay, w[k], w_names[k])
            + _relu_stage(lay, arg, sp, w[k], f"{w_names[k]} ~ softplus")
        )
    # E3: gamma_k = exp(l_k - l_0 - w_0)
    e3: list[Head] = []
    for k in range(K):
        e3 += _reset_heads(lay, g[k], g_names[k])
    for k in range(K):
        arg = []
        if k > 0:
            arg += [
                ([one], [one], logpi[k] - logpi[0]),
                ([e[k]], [one], -1.0),
                ([e[0]], [one], 1.0),
            ]
        if K >= 2:
            arg.append(([w[0]], [one], -1.0))
        e3 += _relu_stage(lay, arg, ex, g[k], f"{g_names[k]} ~ exp")
    # inner step: acc_k += (1/n) sum_j (sigma/2)[psi(gamma+t) - psi(gamma-t)] x_j ; then commit
    grad: list[Head] = []
    for k in range(K):
        bk, ak = _rng(lay.beta(k)), _rng(lay.acc(k))
        for m in range(psi.M):
            a1, a0, cm = float(psi.a[m, 0]), float(psi.a[m, 1]), float(psi.c[m])
            for sgn in (1.0, -1.0):
                pairs: list[Pair] = []
                if a1 != 0.0:
                    pairs += [
                        ([one], [g[k]], a1),
                        ([one], [yslot], sgn * a1 / sigma),
                        (bk, x, -sgn * a1 / sigma),
                    ]
                if a0 != 0.0:
                    pairs.append(([one], [one], a0))
                grad.append(
                    _head(
                        lay.D,
                        pairs,
                        [(ak, x, sgn * 0.5 * sigma * cm)],
                        f"acc_{k} += {sgn * 0.5 * sigma * cm:+.4g} relu(gamma {'+' if sgn > 0 else '-'} t) x_j",
                    )
                )
    commit = [
        _head(
            lay.D,
            [([one], [one], 1.0)],
            [
                (_rng(lay.beta(k)), _rng(lay.acc(k)), alpha),
                (_rng(lay.acc(k)), _rng(lay.acc(k)), -1.0),
            ],
            f"beta_{k} += alpha acc_{k}; acc_{k} = 0",
        )
        for k in range(K)
    ]
    phases: list[_Phase] = []
    for t in range(T_outer):
        phases.append(_Phase(e1, ("estep", t, -1)))
        phases += [_Phase(hs, ("estep", t, -1)) for hs in e2]
        phases.append(_Phase(e3, ("estep", t, -1)))
        for s in range(T_inner):
            phases.append(_Phase(grad, ("grad", t, s)))
            phases.append(_Phase(commit, ("inner", t, s)))
    phases.append(_Phase(_readout(lay, [(k, pi[k]) for k in range(K)]), ("readout", T_outer, 0)))
    model, report = _finish(
        phases,
        lay,
        layer_formula_text(False),
        layer_count(K, T_outer, T_inner, M, symmetric=False),
        {name: s.certificate for name, s in sums.items()},
    )
    return GradientEMTransformer(
        model, lay, report, sigma, pi, T_outer, T_inner, alpha, relu_sums=sums
    )


def estep_functions(tf: GradientEMTransformer) -> EStepFunctions:
    """The ReLU sums of a general-K construction as :class:`EStepFunctions` (for the surrogate)."""
    s = tf.relu_sums
    return EStepFunctions(s["psi"], s["softplus"], s["exp"])


# --------------------------------------------------------------------------- running on prompts
@dataclass(frozen=True)
class ConstructionRun:
    """Outputs of :func:`run_gradient_em_transformer` on B prompts.

    Attributes
    ----------
    beta_tf : (B, K, d) the transformer's read_beta.
    y_hat : (B,) the transformer's read_y.
    beta_surrogate : (B, K, d) surrogate gradient EM run directly.
    beta_gradient_em : (B, K, d) exact gradient EM (``algorithms.gradient_em``).
    report : ConstructionReport of the first construction (all share L and heads).
    weight_norm : float, the largest ``|||theta|||`` over the constructions built.
    max_abs_diff_vs_surrogate, max_abs_diff_vs_gradient_em : float
    constructions : int, number of distinct (sigma, pi) constructions built.
    """

    beta_tf: torch.Tensor
    y_hat: torch.Tensor
    beta_surrogate: torch.Tensor
    beta_gradient_em: torch.Tensor
    report: ConstructionReport
    weight_norm: float
    max_abs_diff_vs_surrogate: float
    max_abs_diff_vs_gradient_em: float
    constructions: int


def run_gradient_em_transformer(
    X: torch.Tensor,
    y: torch.Tensor,
    init: torch.Tensor,
    x_query: torch.Tensor,
    sigma: torch.Tensor,
    pi: torch.Tensor | None = None,
    *,
    T_outer: int = 4,
    T_inner: int = 1,
    alpha: float = 1.0,
    relu_terms: int = 32,
    symmetric: bool = False,
) -> ConstructionRun:
    """Build the construction for each distinct ``(sigma_b, pi_b)`` and run it on the prompts,
    next to the surrogate and the exact gradient EM.

    Parameters
    ----------
    X : (B, n, d), y : (B, n), init : (B, K, d), x_query : (B, d), sigma : (B,), pi : (B, K).
    symmetric : use the tied two-component construction (needs K = 2, pi = 1/2; ``init[:, 0]``).
    """
    from iclkit.constructions.algorithms import gradient_em
    from iclkit.constructions.surrogate_em import (
        general_surrogate_iterates,
        symmetric_surrogate_iterates,
    )
    from iclkit.theory.mor import validate_prompts

    B, n, d = validate_prompts(X, y)
    check_shape(init, "init", (B, None, d))
    K = init.shape[1]
    check_shape(x_query, "x_query", (B, d))
    check_shape(sigma, "sigma", (B,))
    if bool((sigma <= 0).any()):
        raise ParameterError("sigma must be > 0 for every prompt")
    if pi is None:
        pi = torch.full((B, K), 1.0 / K, dtype=X.dtype)
    check_shape(pi, "pi", (B, K))
    if symmetric and K != 2:
        raise ParameterError(f"init must have K = 2 components when symmetric, got {K}")
    X, y = X.to(torch.float64), y.to(torch.float64)
    init, x_query = init.to(torch.float64), x_query.to(torch.float64)
    beta_tf = torch.empty(B, K, d, dtype=torch.float64)
    y_hat = torch.empty(B, dtype=torch.float64)
    beta_sur = torch.empty(B, K, d, dtype=torch.float64)
    groups: dict[tuple[float, ...], list[int]] = {}
    for b in range(B):
        key = (float(sigma[b]), *(round(float(p), 15) for p in pi[b]))
        groups.setdefault(key, []).append(b)
    first: GradientEMTransformer | None = None
    norm = 0.0
    for key, idx_list in groups.items():
        idx = torch.tensor(idx_list)
        tf = build_gradient_em_transformer(
            d, K, n, key[0], T_outer, T_inner, alpha, relu_terms,
            symmetric=symmetric, pi=key[1:],
        )  # fmt: skip
        first = first or tf
        norm = max(norm, tf.report.weight_norm)
        Xg, yg, ig, qg = X[idx], y[idx], init[idx], x_query[idx]
        bt, yh = tf(Xg, yg, ig, qg)
        beta_tf[idx], y_hat[idx] = bt, yh
        if T_outer == 0:
            beta_sur[idx] = torch.stack([ig[:, 0], -ig[:, 0]], 1) if symmetric else ig
        elif symmetric:
            assert tf.tanh_sum is not None
            it = symmetric_surrogate_iterates(
                Xg, yg, ig[:, 0], key[0], tf.tanh_sum,
                T_outer=T_outer, T_inner=T_inner, alpha=alpha,
            )  # fmt: skip
            beta_sur[idx] = torch.stack([it[-1][-1], -it[-1][-1]], 1)
        else:
            it = general_surrogate_iterates(
                Xg, yg, ig, key[0], key[1:], estep_functions(tf),
                T_outer=T_outer, T_inner=T_inner, alpha=alpha,
            )  # fmt: skip
            beta_sur[idx] = it[-1][-1]
    assert first is not None
    ref = gradient_em(
        X, y, init, sigma.to(torch.float64), None if symmetric else pi.to(torch.float64),
        T_outer=T_outer, T_inner=T_inner, alpha=alpha, symmetric=symmetric,
    ).betas  # fmt: skip
    return ConstructionRun(
        beta_tf=beta_tf,
        y_hat=y_hat,
        beta_surrogate=beta_sur,
        beta_gradient_em=ref,
        report=first.report,
        weight_norm=norm,
        max_abs_diff_vs_surrogate=float((beta_tf - beta_sur).abs().max()),
        max_abs_diff_vs_gradient_em=float((beta_tf - ref).abs().max()),
        constructions=len(groups),
    )


def surrogate_iterates(
    tf: GradientEMTransformer,
    X: torch.Tensor,
    y: torch.Tensor,
    init: torch.Tensor,
    *,
    alpha: float | None = None,
) -> list[list[torch.Tensor]]:
    """The surrogate gradient-EM iterates ``[t][s]`` (B, P, d) that ``tf`` is built to reproduce,
    computed directly (``surrogate_em``), with the construction's sigma, pi, T's and ReLU sums;
    ``alpha`` overrides the step size (e.g. the *intended* one, to expose a mis-built ``tf``)."""
    from iclkit.constructions.surrogate_em import (
        general_surrogate_iterates,
        symmetric_surrogate_iterates,
    )

    a = tf.alpha if alpha is None else check_positive(alpha, "alpha")
    To, Ti = tf.T_outer, tf.T_inner
    if tf.layout.symmetric:
        assert tf.tanh_sum is not None
        beta0 = init[:, 0] if init.dim() == 3 else init
        it = symmetric_surrogate_iterates(
            X, y, beta0, tf.sigma, tf.tanh_sum, T_outer=To, T_inner=Ti, alpha=a
        )
        return [[b[:, None] for b in row] for row in it]
    return general_surrogate_iterates(
        X, y, init, tf.sigma, tf.pi, estep_functions(tf), T_outer=To, T_inner=Ti, alpha=a
    )


def layerwise_relative_error(
    tf: GradientEMTransformer,
    X: torch.Tensor,
    y: torch.Tensor,
    init: torch.Tensor,
    x_query: torch.Tensor,
    *,
    alpha: float | None = None,
) -> float:
    """``max_{t,s,b} ||H-state estimate - surrogate iterate|| / ||surrogate iterate||`` over every
    inner step: ~1e-14 for a correct construction (the check's tolerance is 1e-9)."""
    got = tf.block_iterates(X, y, init, x_query)
    ref = surrogate_iterates(tf, X, y, init, alpha=alpha)
    worst = 0.0
    for row_g, row_r in zip(got, ref, strict=True):
        for g, r in zip(row_g, row_r, strict=True):
            num = (g - r).flatten(1).norm(dim=1)
            den = r.flatten(1).norm(dim=1).clamp_min(1e-300)
            worst = max(worst, float((num / den).max()))
    return worst
