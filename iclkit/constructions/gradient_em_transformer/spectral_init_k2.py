"""Attention layers that compute the general K = 2 start with the first-moment correction
(:func:`iclkit.constructions.spectral_init.spectral_init_k2`) in context, in front of the
Theorem 3.1 construction (arXiv 2410.14183; this project's derivation and design [DERIVED /
RECON], ``docs/construction.md``, "Initialising in context").

For K = 2, ``E M_hat - 2 w w^T = 2 pi_1 pi_2 delta delta^T`` (``w = E[y x] = sum_k pi_k beta_k``,
``delta = beta_1 - beta_2``), and ``beta_1 = w + pi_2 delta``, ``beta_2 = w - pi_1 delta``. The
heads are those of :mod:`.spectral_init` (same token layout, :class:`~.spectral_init.InitLayout`
with ``k2=True``: one power vector ``v, w``, scalars ``q, r, s, m2, inv``, plus ``wh`` and
``g, rho, sg, t``), with one more exact product: ``w_hat = (1/n) sum_j y_j x_j`` is a head with
constant score ``relu(1 * 1)`` and value ``yx_j``. Phases:

1. ``m2`` (2 heads), ``v = e_1`` (1), ``w_hat`` (1);
2. ``inv ~ 1/m2`` (ReLU sum);
3. ``T_power`` times: ``q = ||v||^2``, ``r ~ q^(-1/2)``, ``v <- r v``; ``w = inv v``;
   ``v = A_hat w = (1/n) sum_j <w, yx_j> yx_j - m2 w - 2 <w_hat, w> w_hat`` (clearing head,
   ``relu(+-<w, yx_j>) (+-yx_j)``, ``relu(m2) (-w)``, then ``relu(+-<w, w_hat>) (-+2 w_hat)``:
   6 heads, 2 layers; the second layer's heads read ``w, w_hat`` only, which the first leaves);
4. ``q, r, v <- r v``, ``q, r``, ``NEWTON_STEPS`` Newton steps: ``u = r v`` (into ``w``);
   ``v = A_hat u`` (as in 3); ``g = relu(<u, v> / (2 pi_1 pi_2))`` (one head: the score
   ``<w_i, v_j> / (2 pi_1 pi_2)``, value 1); ``rho = f_gap(g)``, ``NEWTON_STEPS`` Newton steps;
   ``t = relu(g rho)``; ``beta_1 = w_hat + pi_2 t u``, ``beta_2 = w_hat - pi_1 t u`` (2 heads).
"""

from __future__ import annotations

from iclkit.constructions.attention import Head
from iclkit.constructions.relu_approx import ReluSum

from .heads import Pair, Phase, Write, coords
from .spectral_init import (
    InitLayout,
    _clear,
    _head,
    _layers,
    _normalise,
    _relu_sum,
    _rescale,
    _start,
    _unit,
    newton_step,
)
from .spectral_init_sign import sign_extra_layers, sign_h_heads, sign_output, sign_phases

__all__ = ["k2_init_layer_count", "k2_init_layer_formula_text", "k2_spectral_init_phases"]


def _apply(lay: InitLayout) -> list[list[Head]]:
    """``v = A_hat w``: [clear v, +-<w, yx_j> yx_j, -m2 w] and [-2 <w_hat, w> w_hat (+-)]."""
    one, yx, v, w = lay.base.one, coords(lay.base.yx), lay.v(0), lay.w(0)
    first = [_clear(lay, [v], "v")]
    for sgn in (1.0, -1.0):
        label = f"v += relu({sgn:+g} <w, yx_j>) ({sgn:+g} yx_j)"
        first.append(_head(lay, [(w, yx, sgn)], [(v, yx, sgn)], label))
    first.append(_head(lay, [([lay.m2], [one], 1.0)], [(v, w, -1.0)], "-m2 w"))
    second = [
        _head(lay, [(w, lay.wh, sgn)], [(v, lay.wh, -2.0 * sgn)],
              f"v -= 2 relu({sgn:+g} <w, w_hat>) ({sgn:+g} w_hat)")
        for sgn in (1.0, -1.0)
    ]  # fmt: skip
    return [first, second]


def _power_step(lay: InitLayout) -> list[list[Head]]:
    """``w = inv v`` (2 heads, one layer), then ``v = A_hat w`` (2 layers)."""
    one, v, w = lay.base.one, lay.v(0), lay.w(0)
    set_w = [
        _head(lay, [([lay.inv], [one], 1.0)], [(w, v, 1.0)], "w += inv v"),
        _clear(lay, [w], "w"),
    ]
    return [set_w, *_apply(lay)]


def k2_spectral_init_phases(
    lay: InitLayout,
    sigma: float,
    pi: tuple[float, float],
    sums: dict[str, ReluSum],
    T_power: int,
    newton_steps: int,
) -> list[Phase]:
    """The phases 1-4 of the module docstring, tagged ``("init", step, 0)``; with ``lay.sign``
    the sign decision of :mod:`.spectral_init_sign` before the output (``sigma`` enters there)."""
    one, v, w = lay.base.one, lay.v(0), lay.w(0)
    p1, p2 = float(pi[0]), float(pi[1])
    wh_head = _head(lay, _unit(lay), [(lay.wh, coords(lay.base.yx), 1.0)], "w_hat += yx_j")
    lists = [[*_start(lay), wh_head]]
    inv = _relu_sum(lay, [([lay.m2], [one], 1.0)], sums["inv"], lay.inv, "inv")
    lists.append(inv + sign_h_heads(lay) if lay.sign else inv)
    for _ in range(T_power):
        lists += _normalise(lay, sums["rsqrt"]) + _rescale(lay) + _power_step(lay)
    lists += _normalise(lay, sums["rsqrt"]) + _rescale(lay) + _normalise(lay, sums["rsqrt"])
    for _ in range(newton_steps):
        lists += newton_step(lay, [(lay.q(0), lay.r(0), lay.s(0), "0")])
    lists.append(
        [
            _head(lay, [([lay.r(0)], [one], 1.0)], [(w, v, 1.0)], "u = w += r v"),
            _clear(lay, [w], "w"),
        ]
    )
    lists += _apply(lay)
    c = 1.0 / (2.0 * p1 * p2)
    lists.append(
        [_head(lay, [(w, v, c)], [([lay.g], [one], 1.0)], "g = relu(<u, A u>/(2 pi1 pi2))")]
    )
    lists.append(_relu_sum(lay, [([lay.g], [one], 1.0)], sums["gap"], lay.rho, "rho"))
    for _ in range(newton_steps):
        lists += newton_step(lay, [(lay.g, lay.rho, lay.sg, "gap")])
    lists.append([_head(lay, [([lay.g], [lay.rho], 1.0)], [([lay.t], [one], 1.0)], "t = g rho")])
    if lay.sign:
        lists += sign_phases(lay, sigma, pi, sums, newton_steps)
        lists.append(sign_output(lay, pi))
        return [Phase(h, ("init", i, 0)) for i, h in enumerate(lists)]
    b0, b1 = coords(lay.base.beta(0)), coords(lay.base.beta(1))
    mean: list[Write] = [(b0, lay.wh, 1.0), (b1, lay.wh, 1.0)]
    gap: list[Write] = [(b0, w, p2), (b1, w, -p1)]
    t_pair: list[Pair] = [([lay.t], [one], 1.0)]
    lists.append(
        [_head(lay, _unit(lay), mean, "beta_k += w_hat"),
         _head(lay, t_pair, gap, "beta_1 += pi_2 t u, beta_2 -= pi_1 t u")]
    )  # fmt: skip
    return [Phase(h, ("init", i, 0)) for i, h in enumerate(lists)]


def k2_init_layer_count(
    T_power: int, sums: dict[str, ReluSum], newton_steps: int, *, sign: bool = False
) -> int:
    """Layers of :func:`k2_spectral_init_phases` (formula: :func:`k2_init_layer_formula_text`)."""
    N = 1 + _layers(sums["rsqrt"].M + 1)
    M_inv, M_gap = sums["inv"].M + (2 if sign else 0), sums["gap"].M
    L = 1 + _layers(M_inv) + T_power * (N + 4) + 2 * N + 4 * newton_steps + 7 + _layers(M_gap)
    return L + (sign_extra_layers(sums, newton_steps) if sign else 0)


def k2_init_layer_formula_text() -> str:
    """:func:`k2_init_layer_count` in words."""
    return (
        "L_init = 1 + ceil(M_inv/4) + T_power (N + 4) + 2 N + 4 N_newton + 7 + ceil(M_gap/4), "
        "N = 1 + ceil((M_rsqrt + 1)/4) (general K = 2, first-moment correction); pi_1 != pi_2: "
        "M_inv -> M_inv + 2 and + 11 + M_gap + ceil(M_sign/4) + 6 N_newton (sign decision)"
    )
