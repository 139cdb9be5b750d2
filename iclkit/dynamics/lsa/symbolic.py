"""Symbolic derivation (sympy) of the LSA population loss from the data moments (check of ZFB eq. (3.8)).

Independent of the hand-written closed form in :mod:`.lsa_loss`: the prediction is expanded
from the literal model ``y_hat = (p^T, u)(E E^T / N)(U; q^T) x_q`` in terms of the prompt
averages ``S = (1/N) sum x x^T``, ``a = (1/N) sum y x``, ``s = (1/N) sum y^2`` and the expectation
of ``(y_hat - y_q)^2`` is taken by exact moment rules:

1. prompt averages, given the components: ``E[F] = E1[f]``,
   ``E[F G] = E1[f g] / N + (1 - 1/N) E1[f] E1[g]`` with ``E1[g] = sum_k pi_k E_{x,v}[g(x, x^T beta_k + v)]``;
2. the query (its own component ``z_q ~ pi``), Gaussian moments of ``x ~ N(0, Lambda)`` by
   differentiating the moment generating function ``exp(t^T Lambda t / 2)``;
3. the isotropic component prior: ``E[beta^alpha] = c_|alpha| * (unit-Gaussian moment)`` with
   ``c_2 = c2``, ``c_4 = c4`` (rotation invariance), components independent, or
   ``beta_2 = -beta_1`` in the symmetric model.

Everything is kept symbolic in Lambda, N, sigma, pi, c2, c4 and the live weights (U, p, q, u), for a
concrete small d; the result is lambdified into fast numeric code. It is slow (seconds), so it is
cached per (d, K, symmetric).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy as sp

from iclkit.theory.validation import ParameterError, check_int

from .moments import LSAMoments

__all__ = ["SymbolicLoss", "derive_population_loss"]


@dataclass(frozen=True)
class SymbolicLoss:
    """The symbolic population loss and its lambdified numeric version.

    Attributes
    ----------
    expr : sympy.Expr
        ``L = (1/2) E (y_hat - y_q)^2`` in the symbols of ``symbols``.
    symbols : tuple of sympy.Symbol
        Argument order of ``numeric``: Lambda (upper triangle, row-major), N, sigma, pi_1..pi_K,
        c2, c4, U (row-major), p, q, u.
    numeric : callable
    d, K : int
    symmetric : bool
    """

    expr: sp.Expr
    symbols: tuple[sp.Symbol, ...]
    numeric: Callable[..., float]
    d: int
    K: int
    symmetric: bool

    def __call__(self, moments: LSAMoments, W_KQ: np.ndarray, W_PV: np.ndarray) -> float:
        """Evaluate at the data of ``moments`` and the weights (W^KQ, W^PV) (d+1, d+1)."""
        d = self.d
        if moments.d != d or moments.K != self.K or moments.symmetric != self.symmetric:
            raise ParameterError(
                f"moments: derived for d={d}, K={self.K}, symmetric={self.symmetric}; got "
                f"d={moments.d}, K={moments.K}, symmetric={moments.symmetric}"
            )
        Wk, Wp = np.asarray(W_KQ, float), np.asarray(W_PV, float)
        lam = [moments.Lambda[i, j] for i in range(d) for j in range(i, d)]
        args = [
            *lam,
            moments.N,
            moments.sigma,
            *moments.pi,
            moments.c2,
            moments.c4,
            *Wk[:d, :d].reshape(-1),
            *Wp[d, :d],
            *Wk[d, :d],
            Wp[d, d],
        ]
        return float(self.numeric(*args))


def _gauss_moment(cov: sp.Matrix, alpha: tuple[int, ...], cache: dict) -> sp.Expr:
    """E[x^alpha] for x ~ N(0, cov) by differentiating the MGF at 0."""
    if sum(alpha) % 2:
        return sp.Integer(0)
    key = (id(cov), alpha)
    if key not in cache:
        t = sp.symbols(f"t0:{len(alpha)}")
        tv = sp.Matrix(t)
        mgf = sp.exp((tv.T * cov * tv)[0, 0] / 2)
        expr = mgf
        for i, a in enumerate(alpha):
            if a:
                expr = sp.diff(expr, t[i], a)
        cache[key] = sp.expand(expr.subs({ti: 0 for ti in t}))
    return cache[key]


def _expect(poly_expr: sp.Expr, gens: list[sp.Symbol], cov: sp.Matrix, cache: dict) -> sp.Expr:
    """Expectation over gens ~ N(0, cov) of a polynomial in gens (other symbols are constants)."""
    P = sp.Poly(sp.expand(poly_expr), *gens)
    out = sp.Integer(0)
    for mon, coeff in P.terms():
        m = _gauss_moment(cov, mon, cache)
        if m != 0:
            out += coeff * m
    return sp.expand(out)


def _double_factorial_moment(alpha: tuple[int, ...]) -> int:
    """Unit-Gaussian moment prod_i (alpha_i - 1)!! (0 if any alpha_i is odd)."""
    out = 1
    for a in alpha:
        if a % 2:
            return 0
        out *= int(sp.factorial2(a - 1)) if a else 1
    return out


@lru_cache(maxsize=16)
def derive_population_loss(
    d: int, K: int, symmetric: bool = False, *, reduced: bool = False
) -> SymbolicLoss:
    """Derive ``L(W^KQ, W^PV)`` symbolically for dimension d and K components (cached).

    Parameters
    ----------
    d : int
        1 <= d <= 3 (the expansion grows fast with d: d = 1 takes ~1 s, d = 2 ~30-100 s
        for the full loss, ~1-3 s with ``reduced=True``).
    K : int
        1 <= K <= 3; ``symmetric=True`` needs K = 2.
    reduced : bool
        Set the blocks p = w^PV_21 and q = w^KQ_21 to zero before expanding (the reduced loss
        L(uU) of ZFB Lemma 5.2); the numeric function still takes p and q and ignores them.
    """
    d = check_int(d, "d", minimum=1, maximum=3)
    K = check_int(K, "K", minimum=1, maximum=3)
    if symmetric and K != 2:
        raise ParameterError(f"K must be 2 when symmetric=True, got K={K}")
    cache: dict = {}
    lam = {(i, j): sp.Symbol(f"Lambda{i}{j}") for i in range(d) for j in range(i, d)}
    Lam = sp.Matrix(d, d, lambda i, j: lam[(min(i, j), max(i, j))])
    N, sigma, c2, c4 = sp.symbols("N sigma c2 c4", positive=True)
    pis = sp.symbols(f"pi1:{K + 1}", positive=True)
    U = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"U{i}{j}"))
    p_syms, q_syms = sp.symbols(f"p0:{d}"), sp.symbols(f"q0:{d}")
    p = sp.zeros(d, 1) if reduced else sp.Matrix(p_syms)
    q = sp.zeros(d, 1) if reduced else sp.Matrix(q_syms)
    u = sp.Symbol("u")
    betas = [sp.Matrix(sp.symbols(f"beta{k}_0:{d}")) for k in range(K)]
    if symmetric:
        betas[1] = -betas[0]
    free_betas = [b for k, b in enumerate(betas) if not (symmetric and k == 1)]

    # statistics of the prompt (formal symbols) and the query
    Ssym = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"S{min(i, j)}{max(i, j)}"))
    asym = sp.Matrix(sp.symbols(f"a0:{d}"))
    ssym = sp.Symbol("s")
    xq = sp.Matrix(sp.symbols(f"xq0:{d}"))
    bq = sp.Matrix(sp.symbols(f"bq0:{d}"))  # the query's component, filled in per k
    vq = sp.Symbol("vq")
    EEt = sp.Matrix(sp.BlockMatrix([[Ssym + xq * xq.T / N, asym], [asym.T, sp.Matrix([[ssym]])]]))
    row = sp.Matrix.hstack(p.T, sp.Matrix([[u]]))
    col = sp.Matrix.vstack(U, q.T) * xq
    y_hat = (row * EEt * col)[0, 0]
    r2 = sp.expand((y_hat - (xq.T * bq)[0, 0] - vq) ** 2)

    # per-sample functions f behind each statistic symbol
    x = sp.Matrix(sp.symbols(f"x0:{d}"))
    v, b = sp.Symbol("v"), sp.Matrix(sp.symbols(f"b0:{d}"))
    y = (x.T * b)[0, 0] + v
    per_sample: dict[sp.Symbol, sp.Expr] = {ssym: y**2}
    for i in range(d):
        per_sample[asym[i]] = y * x[i]
        for j in range(i, d):
            per_sample[Ssym[i, j]] = x[i] * x[j]
    stats = list(per_sample)
    xv_gens = [*x, v]
    cov_xv = sp.diag(Lam, sp.Matrix([[sigma**2]]))

    def E1(g: sp.Expr) -> sp.Expr:  # per-sample expectation given the components
        base = _expect(g, xv_gens, cov_xv, cache)
        return sp.expand(
            sum(pis[k] * base.subs(dict(zip(b, betas[k], strict=False))) for k in range(K))
        )

    # 1. prompt averages
    P = sp.Poly(r2, *stats)
    after1 = sp.Integer(0)
    for mon, coeff in P.terms():
        factors = [s for s, e in zip(stats, mon, strict=False) for _ in range(e)]
        if not factors:
            val = sp.Integer(1)
        elif len(factors) == 1:
            val = E1(per_sample[factors[0]])
        else:
            f, g = (per_sample[s] for s in factors)
            val = E1(f * g) / N + (1 - 1 / N) * E1(f) * E1(g)
        after1 += coeff * val
    # 2. query
    q_gens = [*xq, vq]
    base = _expect(after1, q_gens, sp.diag(Lam, sp.Matrix([[sigma**2]])), cache)
    after2 = sp.expand(
        sum(pis[k] * base.subs(dict(zip(bq, betas[k], strict=False))) for k in range(K))
    )
    # 3. isotropic prior, component by component
    bgens = [s for bk in free_betas for s in bk]
    Pb = sp.Poly(after2, *bgens)
    after3 = sp.Integer(0)
    for mon, coeff in Pb.terms():
        val = sp.Integer(1)
        for k in range(len(free_betas)):
            alpha = mon[k * d : (k + 1) * d]
            deg = sum(alpha)
            m = _double_factorial_moment(alpha)
            if m == 0:
                val = sp.Integer(0)
                break
            val *= m * {0: 1, 2: c2, 4: c4}[deg] if deg in (0, 2, 4) else sp.nan
        after3 += coeff * val
    expr = sp.expand(after3 / 2)
    syms = (*[lam[k] for k in sorted(lam)], N, sigma, *pis, c2, c4, *U, *p_syms, *q_syms, u)
    numeric = sp.lambdify(syms, expr, modules="numpy")
    return SymbolicLoss(expr, tuple(syms), numeric, d, K, symmetric)
