"""Attention layers of the sign decision of the general K = 2 start when ``pi_1 != pi_2``
(:func:`iclkit.constructions.spectral_init.k2_sign`; this project's derivation and design
[DERIVED / RECON], ``docs/construction.md``, "Initialising in context").

Slots (:meth:`~.spectral_init.InitLayout.sign_slot`, in order): ``h`` (d), scalars ``a, W2, E,
Dl, Dd, Q, rQ, sQ, sh``, then ``z_k, rz_k, sz_k, S_k`` for the hypotheses k = (beta_1, +),
(beta_1, -), (beta_2, +), (beta_2, -). Phases (after ``t``, before the output):

1. ``h = (1/n) sum_j |y_j| y_j x_j``: ``relu(+-y_j) yx_j`` (2 heads, with the ``inv`` sum);
2. ``a = <w_hat, u>`` (2 heads), ``W2 = ||w_hat||^2`` (1), ``E = inv <h, u> / (2 sqrt(2/pi))``
   (2: score ``+-<u_i, h_j>``, value ``+-inv_j`` scaled);
3. ``z_k = W2 + sigma^2 +- 2 pi t a + pi^2 t^2`` (5 heads, each writing the 4 slots);
4. ``rz_k = f_gap(z_k)``, Newton steps, ``S_k = relu(z_k rz_k)``;
5. ``Dl = inv (G(+) - G(-))``, ``E -= inv (G(+) + G(-))/2``: heads ``relu(+-a S_k) (+-inv)``,
   ``relu(t S_k) inv`` (12);
6. ``Dd = E Dl`` (2), ``Q = relu(Dd Dd)`` (1), ``rQ = f_sign(Q)``, Newton steps,
   ``sh = Dd rQ`` (2): ``sign(Dd)`` to round-off while ``Q`` is in the domain.

The output is then ``beta_1 = w_hat + pi_2 sh t u``, ``beta_2 = w_hat - pi_1 sh t u``
(:func:`sign_output`).
"""

from __future__ import annotations

import math

from iclkit.constructions.attention import Head
from iclkit.constructions.relu_approx import ReluSum

from .heads import Write, coords
from .spectral_init import InitLayout, _head, _layers, _relu_sum, _unit, newton_step

__all__ = ["sign_extra_layers", "sign_h_heads", "sign_output", "sign_phases"]

_ABS3 = 2.0 * math.sqrt(2.0 / math.pi)


class _Slots:
    """Named coordinates of the sign decision on ``lay``."""

    def __init__(self, lay: InitLayout) -> None:
        d = lay.d
        self.h = [lay.sign_slot(i) for i in range(d)]
        names = ("a", "W2", "E", "Dl", "Dd", "Q", "rQ", "sQ", "sh")
        for i, name in enumerate(names):
            setattr(self, name, lay.sign_slot(d + i))
        base = d + len(names)
        self.z = [lay.sign_slot(base + k) for k in range(4)]
        self.rz = [lay.sign_slot(base + 4 + k) for k in range(4)]
        self.sz = [lay.sign_slot(base + 8 + k) for k in range(4)]
        self.S = [lay.sign_slot(base + 12 + k) for k in range(4)]

    a: int
    W2: int
    E: int
    Dl: int
    Dd: int
    Q: int
    rQ: int
    sQ: int
    sh: int


def sign_h_heads(lay: InitLayout) -> list[Head]:
    """``h += relu(+-y_j) yx_j`` (2 heads; they read ``y, yx`` only)."""
    one, y, yx = lay.base.one, lay.base.y, coords(lay.base.yx)
    h = _Slots(lay).h
    return [
        _head(lay, [([one], [y], sgn)], [(h, yx, 1.0)], f"h += relu({sgn:+g} y_j) yx_j")
        for sgn in (1.0, -1.0)
    ]


def _signed(
    lay: InitLayout, q: list[int], k: list[int], writes: list[Write], name: str
) -> list[Head]:
    """``<q, k> * value`` for a signed score: ``relu(+-<q, k>) (+-value)`` (2 heads)."""
    return [
        _head(lay, [(q, k, sgn)], [(o, i, sgn * w) for o, i, w in writes], f"{name} ({sgn:+g})")
        for sgn in (1.0, -1.0)
    ]


def sign_phases(
    lay: InitLayout,
    sigma: float,
    pi: tuple[float, float],
    sums: dict[str, ReluSum],
    newton_steps: int,
) -> list[list[Head]]:
    """Phases 2-6 of the module docstring (each list one phase)."""
    sl, one, u = _Slots(lay), lay.base.one, lay.w(0)
    p1, p2 = float(pi[0]), float(pi[1])
    pp = p1 * p2
    first = _signed(lay, u, lay.wh, [([sl.a], [one], 1.0)], "a = <u, w_hat>")
    first.append(_head(lay, [(lay.wh, lay.wh, 1.0)], [([sl.W2], [one], 1.0)], "W2 = |w_hat|^2"))
    first += _signed(lay, u, sl.h, [([sl.E], [lay.inv], 1.0 / _ABS3)], "E = inv <u, h> / c")
    lin = [2 * p2, -2 * p2, -2 * p1, 2 * p1]  # coefficient of t a in z_k
    sq = [p2 * p2, p2 * p2, p1 * p1, p1 * p1]  # coefficient of t^2
    zs = [([z], [one], 1.0) for z in sl.z]
    z_heads = [
        _head(lay, _unit(lay), [([z], [sl.W2], 1.0) for z in sl.z], "z_k += W2"),
        _head(lay, _unit(lay), [(o, i, sigma * sigma) for o, i, _ in zs], "z_k += sigma^2"),
        *_signed(lay, [lay.t], [sl.a], [([z], [one], c) for z, c in zip(sl.z, lin, strict=True)],
                 "z_k += c_k t a"),
        _head(lay, [([lay.t], [lay.t], 1.0)],
              [([z], [one], c) for z, c in zip(sl.z, sq, strict=True)], "z_k += c_k t^2"),
    ]  # fmt: skip
    rz: list[Head] = []
    for k in range(4):
        rz += _relu_sum(lay, [([sl.z[k]], [one], 1.0)], sums["gap"], sl.rz[k], f"rz_{k}")
    phases = [first, z_heads, rz]
    triples = [(sl.z[k], sl.rz[k], sl.sz[k], f"z{k}") for k in range(4)]
    for _ in range(newton_steps):
        phases += newton_step(lay, triples)
    phases.append(
        [_head(lay, [([sl.z[k]], [sl.rz[k]], 1.0)], [([sl.S[k]], [one], 1.0)], f"S_{k} = z rz")
         for k in range(4)]
    )  # fmt: skip
    # (Delta, -Sigma/2) coefficients of a S_k and t S_k (docstring of spectral_init.k2_sign)
    a_co = [(p1, p1), (-p1, p1), (p2, p2), (-p2, p2)]
    t_co = [(pp, pp), (pp, -pp), (-pp, -pp), (-pp, pp)]
    combo: list[Head] = []
    for k in range(4):
        (da, sa), (dt, st) = a_co[k], t_co[k]
        writes: list[Write] = [([sl.Dl], [lay.inv], da), ([sl.E], [lay.inv], -0.5 * sa)]
        combo += _signed(lay, [sl.a], [sl.S[k]], writes, f"Dl, E += a S_{k} inv")
        t_writes: list[Write] = [([sl.Dl], [lay.inv], dt), ([sl.E], [lay.inv], -0.5 * st)]
        combo.append(_head(lay, [([lay.t], [sl.S[k]], 1.0)], t_writes, f"Dl, E += t S_{k} inv"))
    phases.append(combo)
    phases.append(_signed(lay, [sl.E], [sl.Dl], [([sl.Dd], [one], 1.0)], "Dd = E Dl"))
    phases.append([_head(lay, [([sl.Dd], [sl.Dd], 1.0)], [([sl.Q], [one], 1.0)], "Q = Dd^2")])
    phases.append(_relu_sum(lay, [([sl.Q], [one], 1.0)], sums["sign"], sl.rQ, "rQ"))
    for _ in range(newton_steps):
        phases += newton_step(lay, [(sl.Q, sl.rQ, sl.sQ, "Q")])
    phases.append(_signed(lay, [sl.Dd], [sl.rQ], [([sl.sh], [one], 1.0)], "sh = Dd rQ"))
    return phases


def sign_output(lay: InitLayout, pi: tuple[float, float]) -> list[Head]:
    """``beta_k += w_hat`` and ``beta_1 += pi_2 sh t u``, ``beta_2 -= pi_1 sh t u`` (3 heads)."""
    sl, u = _Slots(lay), lay.w(0)
    b0, b1 = coords(lay.base.beta(0)), coords(lay.base.beta(1))
    mean: list[Write] = [(b0, lay.wh, 1.0), (b1, lay.wh, 1.0)]
    gap: list[Write] = [(b0, u, float(pi[1])), (b1, u, -float(pi[0]))]
    return [
        _head(lay, _unit(lay), mean, "beta_k += w_hat"),
        *_signed(lay, [sl.sh], [lay.t], gap, "beta_1 += pi_2 sh t u, beta_2 -= pi_1 sh t u"),
    ]


def sign_extra_layers(sums: dict[str, ReluSum], newton_steps: int) -> int:
    """Layers the sign decision adds (the ``h`` heads join the ``inv`` phase: counted there):
    ``11 + M_gap + ceil(M_sign/4) + 6 N_newton``."""
    first, z, combo = 2, 2, 3  # phases 2, 3 and the Dl / E heads
    z_roots = _layers(4 * sums["gap"].M) + 4 * newton_steps + 1  # rz, Newton, S
    sign = 1 + 1 + _layers(sums["sign"].M) + 2 * newton_steps + 1  # Dd, Q, rQ, Newton, sh
    return first + z + z_roots + combo + sign
