"""Spectral initialisation of mixed linear regression from the prompt alone, in the exact form
the in-context-init Theorem 3.1 construction computes (``docs/construction.md``, "Initialising
in context").

Moment matrix [standard for MoR with isotropic Gaussian x; DERIVED]: with ``y = <x, beta_z> + v``,
``x ~ N(0, I_d)``, ``E[y^2 x x^T] = sum_k pi_k (||beta_k||^2 + sigma^2) I + 2 sum_k pi_k beta_k
beta_k^T`` and ``E[y^2] = sum_k pi_k ||beta_k||^2 + sigma^2``, so

    M_hat = (1/n) sum_i y_i^2 (x_i x_i^T - I),     E M_hat = 2 sum_k pi_k beta_k beta_k^T,

whose top-P eigenvectors span the components (P = 1 in the symmetric model, P = K else), and
``m2 - sigma^2`` with ``m2 = (1/n) sum_i y_i^2`` estimates ``sum_k pi_k ||beta_k||^2``.

The algorithm (this project's design [RECON]; every step is realisable by ReLU attention):

1. ``m2 = (1/n) sum_i y_i^2``; ``inv = f_inv(m2) ~ 1/m2``; ``s = f_scale(m2 - sigma^2) ~
   sqrt(m2 - sigma^2)``;
2. ``v_k = e_k`` (k = 1..P, fixed directions), then ``T_power`` times
   ``w_k = inv v_k``, ``v_k = M_hat w_k = (1/n) sum_i <w_k, y_i x_i> y_i x_i - m2 w_k``
   (power / subspace iteration without intermediate orthogonalisation; ``inv`` only keeps the
   numbers in range: any positive factor leaves the span unchanged);
3. classical Gram-Schmidt, k = 1..P: ``v_k <- v_k - sum_{j<k} <v_k, u_j> u_j``, ``q = ||v_k||^2``,
   ``r = f_rsqrt(q)`` refined by ``NEWTON_STEPS`` Newton steps ``r <- r + r/2 - (q r^2) r / 2``
   for ``q^{-1/2}``, ``u_k = r v_k``;
4. the initial estimates by the fixed rule ``beta_k^(0) = s u_k``.

**General K = 2: first-moment correction** (this project's derivation [DERIVED]; the
algorithm :func:`spectral_init_k2`). With ``w = E[y x] = sum_k pi_k beta_k`` and
``E M_hat = 2 sum_k pi_k beta_k beta_k^T``, for K = 2

    E M_hat - 2 w w^T = 2 pi_1 pi_2 delta delta^T,     delta = beta_1 - beta_2,

and ``beta_1 = w + pi_2 delta``, ``beta_2 = w - pi_1 delta``. So: ``w_hat = (1/n) sum_i y_i x_i``;
power iteration (steps 2-3 with P = 1) on ``A_hat = M_hat - 2 w_hat w_hat^T``, i.e.
``A_hat w = (1/n) sum_i <w, y_i x_i> y_i x_i - m2 w - 2 <w_hat, w> w_hat``, to the unit vector
``u``; the Rayleigh quotient ``mu = <u, A_hat u> / (2 pi_1 pi_2)`` (``~ ||delta||^2``),
``g = relu(mu)``, ``rho = f_gap(g)`` refined by ``NEWTON_STEPS`` Newton steps for ``g^{-1/2}``,
``t = g rho ~ sqrt(g)``; ``beta_1^(0) = w_hat + pi_2 t u``, ``beta_2^(0) = w_hat - pi_1 t u``.
The sign of ``u`` is not identified by second moments: with ``pi_1 = pi_2`` the other sign is
a label swap; with ``pi_1 != pi_2`` it would give the mislabelled start ``(w_hat - pi_2 t u,
w_hat + pi_1 t u)``, so the sign ``s`` is decided from ``h = (1/n) sum_i |y_i| y_i x_i``
(:func:`k2_sign`) and ``beta_1^(0) = w_hat + s pi_2 t u``, ``beta_2^(0) = w_hat - s pi_1 t u``.
sigma enters that decision only. Every scalar function is refined by Newton steps, so with in-domain values the surrogate
equals the exact algorithm to round-off.

With the exact functions (:meth:`SpectralFunctions.exact`) this is the spectral initialisation
computed exactly (the Newton steps are then the identity up to round-off); with the ReLU sums of
:func:`spectral_relu_sums` it is the **surrogate** the transformer equals to round-off. The sums
only set scales: steps 2-3 produce the same span and, after the Newton refinement, the same unit
vectors as the exact computation; the init differs from the exact one by the scale ``s`` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from iclkit.constructions.relu_approx import Certificate, ReluSum
from iclkit.theory.validation import ParameterError, check_int, check_positive

__all__ = [
    "GAP_DOMAIN",
    "INV_DOMAIN",
    "NEWTON_STEPS",
    "RSQRT_DOMAIN",
    "SCALE_DOMAIN",
    "SIGN_DOMAIN",
    "SIGN_PI_ATOL",
    "SpectralFunctions",
    "SpectralInit",
    "geometric_relu_sum",
    "k2_sign",
    "spectral_init",
    "spectral_init_k2",
    "spectral_relu_sums",
]

Fn = Callable[[torch.Tensor], torch.Tensor]

#: (lo, knot ratio, terms) of the ReLU sum of ``1/z`` for ``z = m2``: knots ``lo 2^i`` up to
#: ``2^16``, relative error <= 12 % inside, flat (still > 0) outside.
INV_DOMAIN = (2.0**-16, 2.0, 34)
#: (lo, ratio, terms) of ``sqrt(z)`` for ``z = m2 - sigma^2``: ``4^-8 .. 4^8``, <= 6 % inside
#: (an increasing sum: terms cancel up to a factor ``sqrt(hi/lo)/2 = 2^15``, ~1e-12 relative).
SCALE_DOMAIN = (4.0**-8, 4.0, 18)
#: (lo, ratio, terms) of ``z^(-1/2)`` for ``z = ||v||^2``: ``4^-10 .. 4^6``; relative error
#: <= 19 % inside, well within the basin of the Newton steps (``|r sqrt(q) - 1| < 0.73``).
RSQRT_DOMAIN = (4.0**-10, 4.0, 18)
#: (lo, ratio, terms) of ``z^(-1/2)`` for ``z = g ~ ||beta_1 - beta_2||^2`` (general K = 2):
#: ``4^-10 .. 4^12``, <= 19 % inside; above ``3 hi`` the Newton steps would diverge, below
#: ``lo`` they underestimate ``sqrt(g)`` (a gap below 1e-3: the components nearly coincide).
GAP_DOMAIN = (4.0**-10, 4.0, 24)
#: (lo, ratio, terms) of ``z^(-1/2)`` for ``z = D'^2``, the squared scale-free sign statistic of
#: :func:`k2_sign`: ``4^-24 .. 4^8`` (|D'| from 6e-8 to 256), <= 19 % inside; below it the sign
#: comes out soft (``|s| < 1``: the two hypotheses nearly tie).
SIGN_DOMAIN = (4.0**-24, 4.0, 34)
#: Newton steps for ``q^{-1/2}`` after the ReLU sum: relative error 0.19 -> 5e-2 -> 4e-3 -> 3e-5
#: -> 1e-9 -> round-off (``e <- 1.5 e^2`` to leading order).
NEWTON_STEPS = 5
#: Points per factor 2 of the log grid on which a geometric sum's relative error is measured.
_GRID_PER_OCTAVE = 64


@dataclass(frozen=True)
class SpectralFunctions:
    """The scalar functions of the spectral initialisation (exact or ReLU sums); ``gap`` is
    the ``z^(-1/2)`` of the general K = 2 start (default: ``rsqrt``)."""

    inv: Fn
    scale: Fn
    rsqrt: Fn
    gap: Fn | None = None
    sign: Fn | None = None

    @staticmethod
    def exact() -> SpectralFunctions:
        """``1/z``, ``sqrt(max(z, lo))`` (``lo`` the scale sum's floor), ``z^(-1/2)``, and
        ``max(z, lo_gap)^(-1/2)`` (the gap sum's floor: finite at ``z = 0``, where ``t = 0``)."""
        lo, lo_gap, lo_sign = SCALE_DOMAIN[0], GAP_DOMAIN[0], SIGN_DOMAIN[0]
        return SpectralFunctions(
            lambda z: 1.0 / z,
            lambda z: z.clamp_min(lo).sqrt(),
            lambda z: z.rsqrt(),
            lambda z: z.clamp_min(lo_gap).rsqrt(),
            lambda z: z.clamp_min(lo_sign).rsqrt(),
        )


@dataclass(frozen=True)
class SpectralInit:
    """Output of :func:`spectral_init` (B prompts, P vectors).

    Attributes
    ----------
    init : (B, P, d) initial estimates ``s u_k``.
    basis : (B, P, d) the orthonormal vectors ``u_k`` (to the Newton residual).
    m2 : (B,) ``(1/n) sum_i y_i^2``.
    scale : (B,) ``s``.
    q_min, q_max : (B,) smallest / largest ``||v_k||^2`` normalised (the RSQRT domain's test).
    gap : (B,) or None; general K = 2 (:func:`spectral_init_k2`): ``mu ~ ||delta||^2``
        (the GAP domain's test; ``scale`` is then ``t ~ sqrt(relu(mu))`` and ``basis`` ``u``).
    """

    init: torch.Tensor
    basis: torch.Tensor
    m2: torch.Tensor
    scale: torch.Tensor
    q_min: torch.Tensor
    q_max: torch.Tensor
    gap: torch.Tensor | None = None


def geometric_relu_sum(g: Fn, lo: float, ratio: float, M: int) -> ReluSum:
    """Piecewise-linear interpolation of a positive scalar ``g`` on the geometric knots
    ``lo ratio^i`` (i = 0..M-2), flat (``g(lo)``, ``g(hi)``) outside, as ``M`` ReLU terms.

    A decreasing ``g`` is written with terms ``relu(z_i - z)`` (one constant term ``g(hi)
    relu(1)``, one slope change per knot, the last making ``f`` flat below ``lo``), an
    increasing one with ``relu(z - z_i)`` (constant ``g(lo)``, flat above ``hi``): inside the
    domain the active terms of a convex decreasing ``g`` (1/z, z^-1/2) all have one sign, so the
    sum loses no precision to cancellation over many decades. The certificate's ``eps`` is the
    measured **relative** error on a log grid of ``[lo, hi]`` (no proof).
    """
    lo = check_positive(lo, "lo")
    ratio = check_positive(ratio, "ratio")
    if ratio <= 1.0:
        raise ParameterError(f"ratio must be > 1, got {ratio}")
    M = check_int(M, "M", minimum=3)
    f64 = torch.float64
    knots = lo * ratio ** torch.arange(M - 1, dtype=f64)
    vals = g(knots)
    slopes = (vals[1:] - vals[:-1]) / (knots[1:] - knots[:-1])
    one = torch.ones((), dtype=f64)
    if bool(vals[0] > vals[-1]):  # decreasing: terms relu(z_i - z), active below each knot
        rows = [torch.tensor([0.0, 1.0], dtype=f64), torch.stack([-one, knots[-1]])]
        cs = [vals[-1], -slopes[-1]]
        for i in range(M - 3, 0, -1):
            rows.append(torch.stack([-one, knots[i]]))
            cs.append(slopes[i] - slopes[i - 1])
        rows.append(torch.stack([-one, knots[0]]))
        cs.append(slopes[0])
    else:  # increasing: terms relu(z - z_i), active above each knot
        rows = [torch.tensor([0.0, 1.0], dtype=f64), torch.stack([one, -knots[0]])]
        cs = [vals[0], slopes[0]]
        for i in range(1, M - 2):
            rows.append(torch.stack([one, -knots[i]]))
            cs.append(slopes[i] - slopes[i - 1])
        rows.append(torch.stack([one, -knots[-1]]))
        cs.append(-slopes[-1])
    a, c = torch.stack(rows), torch.stack(cs)
    s = a.abs().sum(-1)
    a, c = a / s[:, None], c * s
    hi = float(knots[-1])
    octaves = max(2, int(math.log2(hi / lo) * _GRID_PER_OCTAVE))
    z = torch.logspace(math.log10(lo), math.log10(hi), octaves, dtype=f64)
    f = ReluSum(a, c, Certificate(0.0, 0.0, None, hi, M, float(c.abs().sum())))
    rel = float(((f(z) - g(z)) / g(z)).abs().max())
    return ReluSum(a, c, Certificate(rel, rel, None, hi, M, float(c.abs().sum())))


def spectral_relu_sums() -> dict[str, ReluSum]:
    """The ReLU sums ``inv ~ 1/z``, ``scale ~ sqrt(z)``, ``rsqrt ~ z^(-1/2)`` and ``gap ~
    z^(-1/2)`` (domains above)."""
    return {
        "inv": geometric_relu_sum(lambda z: 1.0 / z, *INV_DOMAIN),
        "scale": geometric_relu_sum(torch.sqrt, *SCALE_DOMAIN),
        "rsqrt": geometric_relu_sum(torch.rsqrt, *RSQRT_DOMAIN),
        "gap": geometric_relu_sum(torch.rsqrt, *GAP_DOMAIN),
        "sign": geometric_relu_sum(torch.rsqrt, *SIGN_DOMAIN),
    }


def spectral_functions(sums: dict[str, ReluSum]) -> SpectralFunctions:
    """:class:`SpectralFunctions` of the sums of :func:`spectral_relu_sums`."""
    return SpectralFunctions(
        sums["inv"], sums["scale"], sums["rsqrt"], sums.get("gap"), sums.get("sign")
    )


def spectral_init(
    X: torch.Tensor,
    y: torch.Tensor,
    sigma: float | torch.Tensor,
    P: int,
    fns: SpectralFunctions,
    *,
    T_power: int,
    newton_steps: int = NEWTON_STEPS,
) -> SpectralInit:
    """The spectral initialisation of the module docstring (steps 1-4), batched.

    Parameters
    ----------
    X : (B, n, d), y : (B, n), sigma : float or (B,), P : number of vectors (1 <= P <= d).
    fns : exact functions or the construction's ReLU sums.
    T_power : power iterations (>= 0); newton_steps : Newton steps for ``q^{-1/2}``.
    """
    B, n, d = X.shape
    P = check_int(P, "P", minimum=1, maximum=d)
    dt = X.dtype
    sig = torch.as_tensor(sigma, dtype=dt).reshape(-1).expand(B)
    yx = y[:, :, None] * X  # (B, n, d)
    m2 = (y * y).mean(1)
    inv, scale = fns.inv(m2), fns.scale(m2 - sig * sig)
    V = torch.eye(d, dtype=dt)[:P].expand(B, P, d).clone()
    q_lo = torch.full((B,), math.inf, dtype=dt)
    q_hi = torch.zeros(B, dtype=dt)

    def seen(q: torch.Tensor) -> torch.Tensor:
        nonlocal q_lo, q_hi
        q_lo, q_hi = torch.minimum(q_lo, q.amin(-1)), torch.maximum(q_hi, q.amax(-1))
        return q

    for _ in range(T_power):
        q = seen((V * V).sum(-1))  # (B, P)
        V = fraction_free_gram_schmidt(fns.rsqrt(q)[..., None] * V)
        W = inv[:, None, None] * V
        proj = torch.einsum("bnd,bpd->bnp", yx, W)
        V = torch.einsum("bnp,bnd->bpd", proj, yx) / n - m2[:, None, None] * W
    q = seen((V * V).sum(-1))
    V = fraction_free_gram_schmidt(fns.rsqrt(q)[..., None] * V)
    q = seen((V * V).sum(-1))
    r = _newton_rsqrt(q, fns.rsqrt(q), newton_steps)
    U = r[..., None] * V
    return SpectralInit((r * scale[:, None])[..., None] * V, U, m2, scale, q_lo, q_hi)


def _newton_rsqrt(q: torch.Tensor, r: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` Newton steps ``r <- r + r/2 - (q r^2) r / 2`` for ``q^{-1/2}``."""
    for _ in range(steps):
        s = r * r
        r = r + 0.5 * r - 0.5 * (q * s) * r
    return r


def spectral_init_k2(
    X: torch.Tensor,
    y: torch.Tensor,
    sigma: float | torch.Tensor,
    pi: torch.Tensor | Sequence[float],
    fns: SpectralFunctions,
    *,
    T_power: int,
    newton_steps: int = NEWTON_STEPS,
) -> SpectralInit:
    """The general K = 2 start with the first-moment correction (module docstring), batched.

    Parameters
    ----------
    X : (B, n, d), y : (B, n); sigma : float or (B,) (enters the sign decision only);
    pi : the known weights ``(pi_1, pi_2)`` or (B, 2), all > 0; where ``pi_1 != pi_2`` the sign
    of ``u`` is decided by :func:`k2_sign` (else it is a label swap and left as it comes).
    fns : exact functions or the construction's ReLU sums (``inv``, ``rsqrt``, ``gap``).
    T_power : power iterations (>= 0); newton_steps : Newton steps for each ``z^{-1/2}``.

    Returns
    -------
    SpectralInit with ``init`` (B, 2, d), ``basis`` (B, 1, d) = ``u``, ``scale`` = ``t``,
    ``gap`` = ``mu``.
    """
    B, n, d = X.shape
    dt = X.dtype
    pis = torch.as_tensor(pi, dtype=dt)
    if pis.shape[-1:] != (2,) or pis.dim() > 2 or not bool((pis > 0).all()):
        raise ParameterError(f"pi must be two positive weights (or (B, 2) of them), got {pi}")
    pis = pis.reshape(-1, 2).expand(B, 2)
    p1, p2 = pis[:, 0:1], pis[:, 1:2]  # (B, 1)
    T_power = check_int(T_power, "T_power", minimum=0)
    gap_fn = fns.rsqrt if fns.gap is None else fns.gap
    yx = y[:, :, None] * X  # (B, n, d)
    m2 = (y * y).mean(1)
    inv = fns.inv(m2)
    wh = yx.mean(1)  # (B, d)

    def apply(W: torch.Tensor) -> torch.Tensor:
        proj = torch.einsum("bnd,bd->bn", yx, W)
        Aw = torch.einsum("bn,bnd->bd", proj, yx) / n - m2[:, None] * W
        return Aw - 2.0 * (wh * W).sum(-1, keepdim=True) * wh

    v = torch.zeros(B, d, dtype=dt)
    v[:, 0] = 1.0
    qs: list[torch.Tensor] = []
    for _ in range(T_power):
        qs.append((v * v).sum(-1))
        v = apply(inv[:, None] * (fns.rsqrt(qs[-1])[:, None] * v))
    qs.append((v * v).sum(-1))
    v = fns.rsqrt(qs[-1])[:, None] * v
    qs.append((v * v).sum(-1))
    r = _newton_rsqrt(qs[-1], fns.rsqrt(qs[-1]), newton_steps)
    u = r[:, None] * v
    mu = (u * apply(u)).sum(-1) * (1.0 / (2.0 * p1 * p2))[:, 0]
    g = mu.clamp_min(0.0)
    t = g * _newton_rsqrt(g, gap_fn(g), newton_steps)
    sig = torch.as_tensor(sigma, dtype=dt).reshape(-1).expand(B)
    unequal = (p1 - p2).abs()[:, 0] > SIGN_PI_ATOL
    sgn = torch.ones(B, dtype=dt)
    if bool(unequal.any()):
        yay = (y.abs() * y)[:, :, None] * X
        sign_fn = gap_fn if fns.sign is None else fns.sign
        dec = k2_sign(
            yay.mean(1), wh, u, t, sig, inv, p1[:, 0], p2[:, 0], (gap_fn, sign_fn), newton_steps
        )
        sgn = torch.where(unequal, dec, sgn)
    tu = (sgn * t)[:, None] * u
    init = torch.stack([wh + p2 * tu, wh - p1 * tu], 1)
    q = torch.stack(qs, -1)
    return SpectralInit(init, u[:, None], m2, t, q.amin(-1), q.amax(-1), mu)


#: ``|pi_1 - pi_2|`` above which the sign of ``u`` is decided (below it the other sign is a
#: label swap).
SIGN_PI_ATOL = 1e-12
#: ``E|N(0, s^2)|^3 / s^2 = 2 sqrt(2/pi) s`` (the constant of ``E[|y| y x]``).
_ABS3 = 2.0 * math.sqrt(2.0 / math.pi)


def k2_sign(
    h: torch.Tensor,
    wh: torch.Tensor,
    u: torch.Tensor,
    t: torch.Tensor,
    sigma: torch.Tensor,
    inv: torch.Tensor,
    p1: torch.Tensor,
    p2: torch.Tensor,
    rsqrt: tuple[Fn, Fn],
    newton_steps: int,
) -> torch.Tensor:
    """The sign ``s`` of ``u`` in ``beta_1 = w_hat + s pi_2 t u``, ``beta_2 = w_hat - s pi_1 t u``
    (this project's derivation [DERIVED]): given the component, ``(x, y)`` are jointly Gaussian, so
    ``E[|y| y x] = 2 sqrt(2/pi) sum_k pi_k S_k beta_k``, ``S_k = (||beta_k||^2 + sigma^2)^(1/2)``.
    With ``h = (1/n) sum_i |y_i| y_i x_i``, ``g_hat = <h, u> / (2 sqrt(2/pi))`` and
    ``G(s) = pi_1 S_1(s) (a + s pi_2 t) + pi_2 S_2(s) (a - s pi_1 t)`` (``a = <w_hat, u>``), the
    decision is the sign of ``D = (g_hat - (G(+) + G(-))/2) (G(+) - G(-))`` (the nearer ``G``).
    Made scale-free as ``D' = D inv^2`` (``inv ~ 1/m2 > 0`` does not change the sign), it is
    ``D' rsqrt(D'^2)`` with Newton steps: exactly ``+-1`` while ``D'^2`` is in the ``rsqrt``
    domain, a soft ``|s| < 1`` (a start nearer ``w_hat``) when the two hypotheses nearly tie
    (``D'^2`` below the domain). Each ``S`` is ``z rsqrt(z)`` with Newton steps.

    h, wh, u : (B, d); t, sigma, inv, p1, p2 : (B,); rsqrt : the ``z^(-1/2)`` of ``z`` (GAP
    domain) and of ``D'^2`` (SIGN domain) -> (B,) in [-1, 1].
    """
    a = (wh * u).sum(-1)
    base = (wh * wh).sum(-1) + sigma * sigma
    ta, tt = t * a, t * t
    z = torch.stack(
        [base + 2 * p2 * ta + p2 * p2 * tt, base - 2 * p2 * ta + p2 * p2 * tt,
         base - 2 * p1 * ta + p1 * p1 * tt, base + 2 * p1 * ta + p1 * p1 * tt], -1
    )  # fmt: skip  # ||beta_1(+)||^2, ||beta_1(-)||^2, ||beta_2(+)||^2, ||beta_2(-)||^2 + sigma^2
    S = z * _newton_rsqrt(z, rsqrt[0](z), newton_steps)
    s1p, s1m, s2p, s2m = S.unbind(-1)
    pp = p1 * p2
    delta = (
        p1 * a * (s1p - s1m) + pp * t * (s1p + s1m) + p2 * a * (s2p - s2m) - pp * t * (s2p + s2m)
    )
    total = (
        p1 * a * (s1p + s1m) + pp * t * (s1p - s1m) + p2 * a * (s2p + s2m) - pp * t * (s2p - s2m)
    )
    e = ((h * u).sum(-1) / _ABS3 - 0.5 * total) * inv
    dd = e * (delta * inv)
    q = dd * dd
    return dd * _newton_rsqrt(q, rsqrt[1](q), newton_steps)


def fraction_free_gram_schmidt(V: torch.Tensor) -> torch.Tensor:
    """``v_k <- ||v_j||^2 v_k - <v_k, v_j> v_j`` for j = 1..P-1 and every k > j (in order of j):
    exactly orthogonal columns with no division (each ``v_k`` is scaled by a positive number).

    V : (B, P, d) -> (B, P, d).
    """
    P = V.shape[1]
    for j in range(P - 1):
        vj = V[:, j]
        nj = (vj * vj).sum(-1)  # (B,)
        rest = V[:, j + 1 :]
        c = torch.einsum("bkd,bd->bk", rest, vj)
        rest = nj[:, None, None] * rest - c[..., None] * vj[:, None]
        V = torch.cat([V[:, : j + 1], rest], 1)
    return V
