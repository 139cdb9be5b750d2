"""Attention layers that compute the spectral initialisation of
:mod:`iclkit.constructions.spectral_init` in context, in front of the Theorem 3.1 construction
(arXiv 2410.14183; this project's design [RECON], ``docs/construction.md``, "Initialising in
context").

Every head is a hand-set ReLU-attention head ``(1/n) sum_j relu(<Q h_i, K h_j>) V h_j`` on the
token layout of the gradient-EM construction extended by the slots of :class:`InitLayout`
(``v_k, w_k`` of width d; scalars ``q_k, r_k, s_k, m2, inv, sc``). The quantities are the same in
every token, so three kinds of exact products are available (with ``relu(t) - relu(-t) = t``):

- ``m2 = (1/n) sum_j y_j^2``: scores ``+-y_j`` (query the constant 1), values ``+-y_j``;
- ``A w = (1/n) sum_j <w, y_j x_j> y_j x_j``: scores ``+-<w, yx_j>`` (query ``w``), values ``+-yx_j``;
- a product of shared quantities ``a b u`` (scalars a, b, vector or scalar u): score ``a_i b_j``,
  value ``u_j`` (``a b >= 0`` where only one sign is used: squared norms, ReLU-sum outputs > 0);
- scalar functions of a shared scalar by the per-token ReLU sums (one head per term).

Phases (each a list of heads reading the same input; packed into layers of <= 4 heads; heads
that read the slot they write share one layer):

1. ``m2``; ``v_k = e_k`` (the fixed start, in the weights of one head);
2. ``inv ~ 1/m2`` and ``sc ~ sqrt(m2 - sigma^2)`` (ReLU sums);
3. ``T_power`` times: ``q_k = ||v_k||^2``; ``r_k ~ q_k^(-1/2)``; ``v_k <- r_k v_k``; fraction-free
   Gram-Schmidt ``v_k <- ||v_j||^2 v_k - <v_k, v_j> v_j`` (j < k); ``w_k = inv v_k``;
   ``v_k = A w_k - m2 w_k``;
4. ``q, r, v <- r v``, Gram-Schmidt, ``q, r``, ``NEWTON_STEPS`` Newton steps
   ``r <- r + r/2 - (q r^2) r/2`` (``s_k = r_k^2`` first), then ``beta_k = r_k sc v_k``.
"""

from __future__ import annotations

from dataclasses import dataclass

from iclkit.constructions.attention import Head
from iclkit.constructions.layout import TokenLayout
from iclkit.constructions.relu_approx import ReluSum
from iclkit.theory.validation import ParameterError

from .heads import MAX_HEADS, Pair, Phase, Write, coords, make_head

__all__ = [
    "InitLayout",
    "init_layer_count",
    "init_layer_formula_text",
    "newton_step",
    "spectral_init_phases",
]


@dataclass(frozen=True)
class InitLayout:
    """The gradient-EM layout ``base`` extended, after its last coordinate, by the slots of the
    spectral initialisation of ``P`` vectors (the base coordinates keep their indices).

    ``k2``: the general K = 2 start with the first-moment correction (P = 1 power vector for a
    base of 2 estimates), whose extra slots ``wh`` (width d) and scalars ``g, rho, sg, t`` follow
    ``sc``; ``sign`` (k2 with pi_1 != pi_2): ``SIGN_SLOTS(d)`` more slots after ``t`` for the sign
    decision (:func:`sign_slot`, laid out by :mod:`.spectral_init_sign`)."""

    base: TokenLayout
    P: int
    k2: bool = False
    sign: bool = False

    def __post_init__(self) -> None:
        if self.sign and not self.k2:
            raise ParameterError("sign: the sign decision exists for the k2 layout only")
        if self.k2:
            if self.P != 1 or self.base.P != 2 or self.base.symmetric:
                raise ParameterError(
                    f"P must be 1 on a general two-estimate layout for the K = 2 start, got "
                    f"P = {self.P}, estimate slots {self.base.P}"
                )
        elif self.P != self.base.P:
            raise ParameterError(f"P must equal the layout's estimate slots {self.base.P}")

    @property
    def d(self) -> int:
        return self.base.d

    def v(self, k: int) -> list[int]:
        start = self.base.D + k * self.d
        return list(range(start, start + self.d))

    def w(self, k: int) -> list[int]:
        start = self.base.D + (self.P + k) * self.d
        return list(range(start, start + self.d))

    def _scalar(self, i: int) -> int:
        return self.base.D + 2 * self.P * self.d + i

    def q(self, k: int) -> int:
        return self._scalar(k)

    def r(self, k: int) -> int:
        return self._scalar(self.P + k)

    def s(self, k: int) -> int:
        return self._scalar(2 * self.P + k)

    @property
    def m2(self) -> int:
        return self._scalar(3 * self.P)

    @property
    def inv(self) -> int:
        return self._scalar(3 * self.P + 1)

    @property
    def sc(self) -> int:
        return self._scalar(3 * self.P + 2)

    @property
    def wh(self) -> list[int]:
        """``w_hat = (1/n) sum_j y_j x_j`` (k2 only)."""
        start = self._scalar(3 * self.P + 3)
        return list(range(start, start + self.d))

    def _k2_scalar(self, i: int) -> int:
        return self._scalar(3 * self.P + 3 + self.d + i)

    @property
    def g(self) -> int:
        """``relu(mu)``, ``mu = <u, A_hat u> / (2 pi_1 pi_2)`` (k2 only)."""
        return self._k2_scalar(0)

    @property
    def rho(self) -> int:
        """``~ g^(-1/2)`` (k2 only)."""
        return self._k2_scalar(1)

    @property
    def sg(self) -> int:
        """``rho^2``, the Newton steps' temporary (k2 only)."""
        return self._k2_scalar(2)

    @property
    def t(self) -> int:
        """``g rho ~ ||beta_1 - beta_2||`` (k2 only)."""
        return self._k2_scalar(3)

    def sign_slot(self, i: int) -> int:
        """The i-th coordinate of the sign decision's slots (sign only)."""
        return self._k2_scalar(4 + i)

    @property
    def D(self) -> int:
        if not self.k2:
            return self._scalar(3 * self.P + 3)
        return self._k2_scalar(4 + (sign_slots(self.d) if self.sign else 0))


def sign_slots(d: int) -> int:
    """Coordinates of the sign decision: ``h`` (d), ``a, W2, E, Dl, Dd, Q, rQ, sQ, sh``, and
    ``z, rz, sz, S`` for the 4 hypotheses' norms."""
    return d + 9 + 16


def _head(lay: InitLayout, pairs: list[Pair], writes: list[Write], label: str) -> Head:
    return make_head(lay.D, pairs, writes, label)


def _unit(lay: InitLayout) -> list[Pair]:
    """Score ``relu(1 * 1) = 1``."""
    one = lay.base.one
    return [([one], [one], 1.0)]


def _relu_sum(lay: InitLayout, arg: list[Pair], f: ReluSum, slot: int, name: str) -> list[Head]:
    """``slot += sum_m c_m relu(a_m arg + b_m)`` (one head per term; value ``c_m * 1``)."""
    one, heads = lay.base.one, []
    for m in range(f.M):
        a1, a0, c = float(f.a[m, 0]), float(f.a[m, 1]), float(f.c[m])
        pairs: list[Pair] = [(q, k, w * a1) for q, k, w in arg if w * a1 != 0.0]
        if a0 != 0.0:
            pairs.append(([one], [one], a0))
        heads.append(_head(lay, pairs, [([slot], [one], c)], f"{name} += {c:+.4g} relu(...)"))
    return heads


def _clear(lay: InitLayout, slots: list[list[int]], name: str) -> Head:
    """One head ``slot -= slot`` for shared slots (``relu(1) (-slot_j)``, exact)."""
    return _head(lay, _unit(lay), [(s, s, -1.0) for s in slots], f"clear {name}")


def _start(lay: InitLayout) -> list[Head]:
    """``m2 = (1/n) sum_j y_j^2`` (2 heads) and ``v_k = e_k`` (1 head)."""
    one, y = lay.base.one, lay.base.y
    heads = [
        _head(
            lay, [([one], [y], sgn)], [([lay.m2], [y], sgn)], f"m2 += relu({sgn:+g} y) ({sgn:+g} y)"
        )
        for sgn in (1.0, -1.0)
    ]
    writes: list[Write] = [([lay.v(k)[k]], [one], 1.0) for k in range(lay.P)]
    heads.append(_head(lay, _unit(lay), writes, "v_k = e_k"))
    return heads


def _group(units: list[list[Head]]) -> list[list[Head]]:
    """Pack units (heads that read what they write: they must share one layer) greedily into
    layers of at most ``MAX_HEADS`` heads; each returned list is one layer."""
    layers: list[list[Head]] = []
    for unit in units:
        if layers and len(layers[-1]) + len(unit) <= MAX_HEADS:
            layers[-1] += unit
        else:
            layers.append(list(unit))
    return layers


def _normalise(lay: InitLayout, rsqrt: ReluSum) -> list[list[Head]]:
    """``q_k = ||v_k||^2`` (unit: the new value and the clearing head, 2 heads per k); then
    ``r_k = f_rsqrt(q_k)`` (one phase, its clearing head first: the terms read ``q`` only)."""
    P, one = lay.P, lay.base.one
    units = [
        [
            _head(lay, [(lay.v(k), lay.v(k), 1.0)], [([lay.q(k)], [one], 1.0)], f"q_{k} = |v_{k}|^2"),
            _clear(lay, [[lay.q(k)]], f"q_{k}"),
        ]
        for k in range(P)
    ]  # fmt: skip
    r_heads = [_clear(lay, [[lay.r(k)] for k in range(P)], "r")]
    for k in range(P):
        r_heads += _relu_sum(lay, [([lay.q(k)], [one], 1.0)], rsqrt, lay.r(k), f"r_{k}")
    return [*_group(units), r_heads]


def _rescale(lay: InitLayout) -> list[list[Head]]:
    """``v_k <- r_k v_k`` (2 heads per k, one layer)."""
    one = lay.base.one
    units = [
        [
            _head(lay, [([lay.r(k)], [one], 1.0)], [(lay.v(k), lay.v(k), 1.0)], f"v_{k} += r_{k} v_{k}"),
            _clear(lay, [lay.v(k)], f"v_{k}"),
        ]
        for k in range(lay.P)
    ]  # fmt: skip
    return _group(units)


def _gram_schmidt(lay: InitLayout) -> list[list[Head]]:
    """Fraction-free Gram-Schmidt: for j < k, ``v_k <- ||v_j||^2 v_k - <v_k, v_j> v_j``
    (4 heads, one layer, per pair; in order of j, then k)."""
    layers = []
    for j in range(lay.P - 1):
        vj = lay.v(j)
        for k in range(j + 1, lay.P):
            vk = lay.v(k)
            heads = [_head(lay, [(vj, vj, 1.0)], [(vk, vk, 1.0)], f"v_{k} += |v_{j}|^2 v_{k}")]
            for sgn in (1.0, -1.0):
                label = f"v_{k} -= <v_{k}, v_{j}> v_{j} ({sgn:+g})"
                heads.append(_head(lay, [(vk, vj, sgn)], [(vk, vj, -sgn)], label))
            heads.append(_clear(lay, [vk], f"v_{k}"))
            layers.append(heads)
    return layers


def _power_step(lay: InitLayout) -> list[list[Head]]:
    """``w_k = inv v_k`` (2 heads, one layer); ``v_k = (1/n) sum_j <w_k, yx_j> yx_j - m2 w_k``
    (4 heads, one layer, per k)."""
    P, one, yx = lay.P, lay.base.one, coords(lay.base.yx)
    w_all: list[Write] = [(lay.w(k), lay.v(k), 1.0) for k in range(P)]
    layers = [
        [
            _head(lay, [([lay.inv], [one], 1.0)], w_all, "w_k += inv v_k"),
            _clear(lay, [lay.w(k) for k in range(P)], "w"),
        ]
    ]
    for k in range(P):
        heads = []
        for sgn in (1.0, -1.0):
            label = f"v_{k} += relu({sgn:+g} <w_{k}, yx_j>) ({sgn:+g} yx_j)"
            heads.append(_head(lay, [(lay.w(k), yx, sgn)], [(lay.v(k), yx, sgn)], label))
        heads.append(_head(lay, [([lay.m2], [one], 1.0)], [(lay.v(k), lay.w(k), -1.0)], "-m2 w"))
        heads.append(_clear(lay, [lay.v(k)], f"v_{k}"))
        layers.append(heads)
    return layers


def _newton(lay: InitLayout) -> list[list[Head]]:
    """One Newton step for ``q_k^(-1/2)`` on the slots ``(q_k, r_k, s_k)``, k < P."""
    return newton_step(lay, [(lay.q(k), lay.r(k), lay.s(k), str(k)) for k in range(lay.P)])


def newton_step(lay: InitLayout, slots: list[tuple[int, int, int, str]]) -> list[list[Head]]:
    """One Newton step for ``q^(-1/2)`` on each ``(q, r, s, name)``: ``s = r^2``;
    ``r += r/2 - (q s) r/2`` (2 heads per slot triple and step, one layer each)."""
    one = lay.base.one
    s_units = [
        [
            _head(lay, [([r], [r], 1.0)], [([s], [one], 1.0)], f"s_{k} = r_{k}^2"),
            _clear(lay, [[s]], f"s_{k}"),
        ]
        for _, r, s, k in slots
    ]
    r_units = []
    for q, r, s, k in slots:
        half = 0.5
        r_units.append(
            [
                _head(lay, _unit(lay), [([r], [r], half)], f"r_{k} += r_{k} / 2"),
                _head(lay, [([q], [s], 1.0)], [([r], [r], -half)], f"r_{k} -= q s r/2"),
            ]
        )
    return _group(s_units) + _group(r_units)


def spectral_init_phases(
    lay: InitLayout, sigma: float, sums: dict[str, ReluSum], T_power: int, newton_steps: int
) -> list[Phase]:
    """The phases 1-4 of the module docstring, tagged ``("init", step, 0)``."""
    one = lay.base.one
    pre = _start(lay)
    sums_phase = _relu_sum(lay, [([lay.m2], [one], 1.0)], sums["inv"], lay.inv, "inv")
    scale_arg: list[Pair] = [([lay.m2], [one], 1.0), ([one], [one], -sigma * sigma)]
    sums_phase += _relu_sum(lay, scale_arg, sums["scale"], lay.sc, "sc")
    lists = [pre, sums_phase]
    for _ in range(T_power):
        lists += _normalise(lay, sums["rsqrt"]) + _rescale(lay) + _gram_schmidt(lay)
        lists += _power_step(lay)
    lists += _normalise(lay, sums["rsqrt"]) + _rescale(lay) + _gram_schmidt(lay)
    lists += _normalise(lay, sums["rsqrt"])
    for _ in range(newton_steps):
        lists += _newton(lay)
    out = [
        _head(lay, [([lay.r(k)], [lay.sc], 1.0)], [(coords(lay.base.beta(k)), lay.v(k), 1.0)],
              f"beta_{k} = r_{k} sc v_{k}")
        for k in range(lay.P)
    ]  # fmt: skip
    lists.append(out)
    return [Phase(h, ("init", i, 0)) for i, h in enumerate(lists)]


def _layers(heads: int) -> int:
    return -(-heads // MAX_HEADS)


def init_layer_count(P: int, T_power: int, sums: dict[str, ReluSum], newton_steps: int) -> int:
    """Layers of :func:`spectral_init_phases` (formula: :func:`init_layer_formula_text`)."""
    Mi, Ms, Mr = sums["inv"].M, sums["scale"].M, sums["rsqrt"].M
    half = -(-P // 2)
    norm = half + _layers(P * Mr + 1)
    gs = P * (P - 1) // 2
    step = norm + half + gs + 1 + P
    final = norm + half + gs + norm + newton_steps * 2 * half + _layers(P)
    return 1 + _layers(Mi + Ms) + T_power * step + final


def init_layer_formula_text() -> str:
    """:func:`init_layer_count` in words."""
    return (
        "L_init = 1 + ceil((M_inv + M_sc)/4) + T_power (N + h + G + 1 + P) "
        "+ (2 N + h + G + 2 N_newton h + ceil(P/4)), N = h + ceil((P M_rsqrt + 1)/4), "
        "h = ceil(P/2), G = P (P - 1)/2"
    )
