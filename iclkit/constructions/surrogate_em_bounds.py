"""A propagated error certificate for the general-K Theorem 3.1 transformer (arXiv 2410.14183).

The general-K construction (``gradient_em_transformer``) runs, to round-off, the surrogate
gradient EM of :func:`iclkit.constructions.surrogate_em.general_surrogate_iterates`: exact
gradient EM on the mixture of K regressions (known ``sigma``, ``pi``) with the E-step chain
``psi -> softplus -> exp`` and the M-step product ``gamma t = (1/2)[psi(gamma + t) - psi(gamma -
t)]`` evaluated by ReLU sums. :func:`general_gap_bound` bounds, for every component k and after
every inner step, ``||beta~_k - beta_k||``: the distance between the surrogate's (transformer's)
iterate and the iterate of EXACT gradient EM from the same start with the same schedule
(``T_outer`` iterations of ``T_inner`` steps of size ``alpha``).

Derivation (this project's, [DERIVED]; ``docs/construction.md``, "Per-layer certificate (general
K)"). Symbols: ``t_jk = (y_j - <x_j, beta_k>)/sigma``, ``l_k = log pi_k - t_k^2/2``, ``u_k = l_k +
w_k = LSE_{i >= k} l_i`` (the softplus chain ``w_k = softplus(u_{k+1} - l_k)``), ``a_k = l_k -
u_0``, ``gamma_k = exp a_k``; a tilde marks the surrogate's value, ``E_k`` the bound on
``||beta~_k - beta_k||``. Every quantity without tilde is evaluated per token at the exact
iterate (local Lipschitz factors, as ``lam_j`` in ``surrogate_em.symmetric_gap_bound``).

1. E-step on the box ``|t~_jk - t_jk| <= rho_jk = ||x_j|| E_k / sigma`` by interval arithmetic:
   ``e~ = psi~(t~)`` in the exact range of the convex sum ``psi~`` over the box (which keeps the
   one-sided error ``psi~ <= psi`` far off its domain); ``u~_0`` within the LSE of the ``l~``
   intervals plus the summed signed softplus errors (each stage is a 1-Lipschitz two-argument
   LSE);
   ``a~_k`` within the log-softmax range over the box (increasing in ``l_k``, decreasing in the
   others) plus that sum; ``gamma~ = exp~(a~)`` with its error. Gives ``Dg_jk >= |gamma~_jk -
   gamma_jk|``. The chain rule on the box (slope ranges of the convex sums; ``d u~_0 / d l~_i =
   c_i`` are convex weights) gives ``Lam_jki >= |d gamma~_k / d t~_i|``, hence also
   ``|gamma~_jk - gamma_jk| <= A_jk + sum_i Lam_jki |x_j^T e_i| / sigma``, ``A = Dg`` at ``rho = 0``.
2. Inner step (``gamma``, ``gamma~`` frozen): with ``r = sigma gamma t`` and the surrogate's
   ``r~ = (sigma/2)[psi~(gamma~ + t~) - psi~(gamma~ - t~)]``, the error ``e_k = beta~_k - beta_k``
   obeys exactly ``e_k' = (I - alpha S_k) e_k + alpha (1/n) sum_j [sigma P_jk + sigma (gamma~ -
   gamma)_jk t_jk] x_j - alpha (1/n) sum_j (gamma~ - gamma)_jk x_j x_j^T e_k`` with ``S_k = (1/n)
   sum_j gamma_jk x_j x_j^T`` and the pair error ``P = (1/2)[psi~(g~ + t~) - psi~(g~ - t~)] - g~ t~``,
   so ``E_k' = ||I - alpha S_k|| E_k + alpha N_k + alpha ||(1/n) sum_j Dg_jk x_j x_j^T|| E_k`` with
   ``N_k`` the smaller of ``V(sigma DP + sigma Dg |t|)`` and ``V(sigma DP + sigma A |t|) + sum_i
   ||(1/n) sum_j |t_jk| Lam_jki x_j x_j^T|| E_i``, ``V(v) = min(sqrt(lambda_max(X^T X/n)) rms(v),
   mean_j v_j ||x_j||)`` (Cauchy-Schwarz or the triangle inequality). With ``err = psi - psi~``,
   ``P = (1/2)[err(g~ - t~) - err(g~ + t~)]`` is bounded by the smaller of ``(1/2) max(hi_- -
   lo_+, hi_+ - lo_-)`` (signed ranges of ``err`` over ``g +- t +- (Dg + rho)``: ``eps / 2`` on the
   domain) and ``(g + Dg) Slope_psi[|t| + rho + g + Dg]``, the mean-value theorem over the segment
   ``[g~ - t~, g~ + t~]`` (length ``2 g~``), which keeps the near-cancellation of the two terms
   off the certified domain.

:class:`SumError` gives signed ranges of ``f - f~`` over an interval and ``Slope_f[m] >=
sup_[-m,m] |f' - f~'|``: on the certified domain ``f - f~`` lies in ``[-eps, 0]`` (the
certificate ``eps = C h^2/8``; an interpolant of a convex ``f`` lies above it) and the slope
error is at most ``C h/2``; off it the ReLU sum is affine and ``f`` is convex, so ``f - f~`` and
``f' - f~'`` are monotone there or have their extremum inside the domain, and their extremes
over an interval are the domain's or are attained at its ends, which are evaluated exactly.
Nothing is clipped: arguments far off the domain get the (large) endpoint errors, which then
meet tiny local slopes or weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from iclkit.constructions.relu_approx import ReluSum
from iclkit.theory.validation import ParameterError, check_int, check_positive

__all__ = ["GeneralGapBound", "SumError", "general_gap_bound"]

Fn = Callable[[torch.Tensor], torch.Tensor]

#: The exact E-step functions and their derivatives, by the names of ``general_relu_sums``.
EXACT: dict[str, tuple[Fn, Fn]] = {
    "psi": (lambda z: 0.5 * z * z, lambda z: z),
    "softplus": (torch.nn.functional.softplus, torch.sigmoid),
    "exp": (torch.exp, torch.exp),
}


@dataclass(frozen=True)
class SumError:
    """Pointwise error bounds of one interpolating ReLU sum ``f~`` of a convex ``f``.

    Attributes
    ----------
    f, df : the exact function and its derivative.
    approx : the ReLU sum.
    lo, hi : its outermost kinks: the sum is affine below ``lo`` and above ``hi``; its certified
        domain lies within ``[lo - h, hi + h]`` (a "linear" end continues the last knot interval).
    eps : the certificate's proven sup error on its domain (or the measured one where float64
        round-off puts it above).
    h : the largest knot spacing.
    slope_eps : ``C h / 2``, the slope error on ``[lo, hi]`` (``C = 8 eps / h^2`` the curvature
        bound behind ``eps``, ``h`` the largest knot spacing).
    s_left, s_right : slopes of ``f~`` below ``lo`` and above ``hi``.
    convex : whether ``f~`` is convex (its slopes increase).
    argmin : a minimiser of ``f~`` (nan unless convex with slopes increasing through 0).
    """

    f: Fn
    df: Fn
    approx: ReluSum
    lo: float
    hi: float
    eps: float
    h: float
    slope_eps: float
    s_left: float
    s_right: float
    convex: bool
    argmin: float

    @staticmethod
    def of(name: str, approx: ReluSum) -> SumError:
        """The bounds of the sum ``approx`` of the exact function ``name`` (psi/softplus/exp)."""
        if name not in EXACT:
            raise ParameterError(f"relu_sums: no exact function named {name!r}")
        cert = approx.certificate
        if cert.eps_proven is None or approx.k != 1:
            raise ParameterError(f"relu_sums[{name!r}] must be a scalar sum with a proven bound")
        eps = max(cert.eps_proven, cert.eps_measured)  # the grid sees the round-off, ~1e-14
        a1, a0 = approx.a[:, 0], approx.a[:, 1]
        kinks = torch.unique(-a0[a1 != 0] / a1[a1 != 0])
        lo, hi = float(kinks.min()), float(kinks.max())
        h = float(torch.diff(kinks).max()) if kinks.numel() > 1 else hi - lo
        slope_eps = 4.0 * eps / h if h > 0 else 0.0  # C h / 2 with C = 8 eps / h^2
        pts = torch.cat([(lo - 2.0 + kinks[:1]) - kinks[:1], kinks, kinks[-1:] + 1.0])
        pts[0] = lo - 1.0
        v = approx(pts)  # f~ is affine between consecutive points
        slopes = torch.diff(v) / torch.diff(pts)
        convex = bool((torch.diff(slopes) >= -1e-12 * slopes.abs().max()).all())
        tol = 1e-12 * float(slopes.abs().max())
        bounded = bool(slopes[0] <= tol) and bool(slopes[-1] >= -tol)
        argmin = float(pts[int(v.argmin())]) if convex and bounded else math.nan
        f, df = EXACT[name]
        return SumError(f, df, approx, lo, hi, eps, h, slope_eps, float(slopes[0]),
                        float(slopes[-1]), convex, argmin)  # fmt: skip

    def value_range(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds ``(lo, hi)`` on ``f - f~`` over ``[a, b]``: on the certified domain ``[-eps, 0]``
        (an interpolant of a convex ``f`` lies above it), off it the signed ends."""
        near = (b >= self.lo - self.h) & (a <= self.hi + self.h)
        lo, hi = -near.to(a.dtype) * self.eps, torch.zeros_like(a)
        for z in (a, b):
            outside = (z < self.lo) | (z > self.hi)
            d = self.f(z) - self.approx(z)
            bad = torch.isnan(d)  # inf - inf far off the domain: no information
            lo = torch.where(outside, torch.minimum(lo, torch.where(bad, -math.inf, d)), lo)
            hi = torch.where(outside, torch.maximum(hi, torch.where(bad, math.inf, d)), hi)
        return lo, hi

    def convex_range(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(min, max)`` of ``f~`` over ``[a, b]`` (elementwise), for a convex sum ``f~``."""
        if not math.isfinite(self.argmin):
            raise ParameterError("relu_sums: the range needs a convex sum with a minimum")
        low = self.approx(torch.clamp(torch.full_like(a, self.argmin), a, b))
        return low, torch.maximum(self.approx(a), self.approx(b))

    def slope_range(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds on ``f~'`` over ``[a, b]`` for a convex sum (slopes increase): the secants
        over ``[a - h, a]`` and ``[b, b + h]``."""
        if not self.convex:
            raise ParameterError("relu_sums: the slope range needs a convex sum")
        h = self.h
        lo = (self.approx(a) - self.approx(a - h)) / h
        return lo, (self.approx(b + h) - self.approx(b)) / h

    def slope_sup(self, m: torch.Tensor) -> torch.Tensor:
        """Bound on ``sup_{|z| <= m} |f' - f~'|`` (``m >= 0`` elementwise)."""
        out = torch.full_like(m, self.slope_eps)
        left = (self.df(-m) - self.s_left).abs()
        right = (self.df(m) - self.s_right).abs()
        out = torch.where(-m < self.lo, torch.maximum(out, left), out)
        return torch.where(m > self.hi, torch.maximum(out, right), out)


@dataclass(frozen=True)
class GeneralGapBound:
    """Result of :func:`general_gap_bound`.

    Attributes
    ----------
    bound : (B, T_outer, T_inner, K), bound on ``||beta~_k - beta_k||`` after inner step s of
        outer iteration t (indices from 0).
    exact : (B, T_outer, T_inner, K, d), exact gradient-EM iterates at the same points.
    """

    bound: torch.Tensor
    exact: torch.Tensor

    def outer(self) -> torch.Tensor:
        """(B, T_outer): the bound after each outer iteration, max over the components."""
        return self.bound[:, :, -1].amax(-1)


def _e_step(
    t: torch.Tensor, rho: torch.Tensor, logpi: torch.Tensor, errs: Mapping[str, SumError]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 1-3 on the box ``|t~ - t| <= rho`` (B, n, K) around the exact residuals.

    Returns the exact responsibilities ``gamma`` (B, n, K), ``Dg`` (B, n, K) bounding
    ``|gamma~(t~) - gamma(t)|`` (intervals holding the surrogate's ``e~, u~, a~, gamma~``) and
    ``Lam`` (B, n, K, K) bounding ``|d gamma~_k / d t~_i|`` on the box (chain rule with the
    slope ranges of the convex sums; ``c_i = d u~_0 / d l~_i`` are convex weights).
    """
    K = t.shape[-1]
    psi, sp, ex = errs["psi"], errs["softplus"], errs["exp"]
    t_lo, t_hi = t - rho, t + rho
    e_lo, e_hi = psi.convex_range(t_lo, t_hi)  # exact range of e~ = psi~(t~)
    l_lo, l_hi = logpi - e_hi, logpi - e_lo
    u_lo, u_hi = l_lo[..., K - 1], l_hi[..., K - 1]  # u_k = l_k + w_k = LSE_{i >= k} l_i
    S_up, S_dn = torch.zeros_like(u_lo), torch.zeros_like(u_lo)
    s_lo, s_hi = [torch.zeros_like(u_lo)] * K, [torch.zeros_like(u_lo)] * K  # sp~' on chain
    for k in range(K - 2, -1, -1):  # u~_k = LSE(l~_k, u~_{k+1}) - (sp - sp~)(v~_k)
        v_lo, v_hi = u_lo - l_hi[..., k], u_hi - l_lo[..., k]
        err_lo, err_hi = sp.value_range(v_lo, v_hi)
        up, dn = err_hi.clamp_min(0), (-err_lo).clamp_min(0)
        S_up, S_dn = S_up + up, S_dn + dn  # the errors add up in u_0 (LSE is 1-Lipschitz)
        s_lo[k], s_hi[k] = sp.slope_range(v_lo, v_hi)
        u_lo = torch.logaddexp(l_lo[..., k], u_lo) - up
        u_hi = torch.logaddexp(l_hi[..., k], u_hi) + dn
    eye = torch.eye(K, dtype=torch.bool)  # a~_k = l~_k - u~_0 = log softmax_k(l~) - (u~_0 - LSE)
    a_lo = l_lo - torch.logsumexp(torch.where(eye, l_lo[..., None, :], l_hi[..., None, :]), -1)
    a_hi = l_hi - torch.logsumexp(torch.where(eye, l_hi[..., None, :], l_lo[..., None, :]), -1)
    a_lo, a_hi = a_lo - S_dn[..., None], a_hi + S_up[..., None]  # (incr. in l_k, decr. else)
    x_lo, x_hi = ex.value_range(a_lo, a_hi)  # exp - exp~
    gamma = torch.softmax(logpi - 0.5 * t * t, dim=-1)
    Dg = torch.maximum(torch.exp(a_hi) - x_lo - gamma, gamma - torch.exp(a_lo) + x_hi)
    # c_i = (prod_{m < i} sp~'_m) (1 - sp~'_i), the last without the factor (1 - .)
    c_lo, c_hi, p_lo, p_hi = [], [], torch.ones_like(u_lo), torch.ones_like(u_lo)
    for i in range(K):
        last = i == K - 1
        c_lo.append(p_lo * (1.0 if last else 1 - s_hi[i]))
        c_hi.append(p_hi * (1.0 if last else 1 - s_lo[i]))
        p_lo, p_hi = p_lo * s_lo[i], p_hi * s_hi[i]
    c_lo_t, c_hi_t = torch.stack(c_lo, -1), torch.stack(c_hi, -1)  # (B, n, K)
    da = torch.where(eye, 1 - c_lo_t[..., None, :], c_hi_t[..., None, :])  # |delta_ki - c_i|
    dpsi = torch.maximum(*(x.abs() for x in psi.slope_range(t_lo, t_hi)))  # |psi~'| on the box
    dexp = ex.slope_range(a_lo, a_hi)[1]
    return gamma, Dg, dexp[..., :, None] * da * dpsi[..., None, :]


def _pair_error(
    g: torch.Tensor, Dg: torch.Tensor, tt: torch.Tensor, rho: torch.Tensor, psi: SumError
) -> torch.Tensor:
    """Bound on ``|(1/2)[psi~(g~ + t~) - psi~(g~ - t~)] - g~ t~|`` (step 4)."""
    delta = Dg + rho  # P = (1/2)[err(g~ - t~) - err(g~ + t~)], err = psi - psi~
    plus, minus = g + tt, g - tt
    p_lo, p_hi = psi.value_range(plus - delta, plus + delta)
    m_lo, m_hi = psi.value_range(minus - delta, minus + delta)
    by_value = 0.5 * torch.maximum(m_hi - p_lo, p_hi - m_lo)
    by_slope = (g + Dg) * psi.slope_sup(tt.abs() + rho + g + Dg)
    return torch.minimum(by_value, by_slope)


def _weighted_norm(w: torch.Tensor, xx: torch.Tensor, n: int) -> torch.Tensor:
    """``||(1/n) sum_j w_j. x_j x_j^T||`` (B, ...) for ``w >= 0`` (B, n, ...); inf where ``w`` is."""
    finite = torch.isfinite(w)
    M = torch.einsum("bn...,bnde->b...de", torch.where(finite, w, 0.0), xx) / n
    norm = torch.linalg.eigvalsh(M).amax(-1)
    return torch.where(finite.all(1), norm, math.inf)


def _vec_norm(v: torch.Tensor, root: torch.Tensor, xnorm: torch.Tensor) -> torch.Tensor:
    """Bound on ``||(1/n) sum_j c_j x_j||`` for ``|c_j| <= v_j`` (B, n, K) -> (B, K):
    Cauchy-Schwarz ``sqrt(lambda_max(S)) rms(v)`` or the triangle inequality."""
    return torch.minimum(root[:, None] * (v * v).mean(1).sqrt(), (v * xnorm).mean(1))


def general_gap_bound(
    X: torch.Tensor,
    y: torch.Tensor,
    init: torch.Tensor,
    sigma: float,
    pi: tuple[float, ...],
    relu_sums: Mapping[str, ReluSum],
    *,
    T_outer: int,
    T_inner: int,
    alpha: float,
) -> GeneralGapBound:
    """Certificate of the general-K construction propagated through gradient EM (module doc).

    Parameters
    ----------
    X : (B, n, d), y : (B, n), float64 prompts.
    init : (B, K, d), the common start of the transformer and of exact gradient EM.
    sigma : known noise level; pi : known mixing weights (length K, positive).
    relu_sums : the sums ``{"psi", "softplus", "exp"}`` the transformer was built with
        (``GradientEMTransformer.relu_sums``); their certificates enter the bound.
    T_outer, T_inner, alpha : the gradient-EM schedule.

    Returns
    -------
    GeneralGapBound: ``bound`` (B, T_outer, T_inner, K) per component (the max over k bounds
    the max-over-components distance, the root of the sum of squares the Frobenius one) and
    the exact iterates ``exact`` (B, T_outer, T_inner, K, d) it is centred on.
    """
    sigma = check_positive(sigma, "sigma")
    T_outer = check_int(T_outer, "T_outer", minimum=1)
    T_inner = check_int(T_inner, "T_inner", minimum=1)
    alpha = check_positive(alpha, "alpha")
    if X.ndim != 3 or y.shape != X.shape[:2] or init.ndim != 3 or init.shape[0] != X.shape[0]:
        raise ParameterError(
            f"X, y, init must be (B, n, d), (B, n), (B, K, d); got {tuple(X.shape)}, "
            f"{tuple(y.shape)}, {tuple(init.shape)}"
        )
    K = init.shape[1]
    if len(pi) != K or any(p <= 0 for p in pi):
        raise ParameterError(f"pi must have {K} positive entries, got {pi}")
    missing = {"psi", "softplus", "exp"} - set(relu_sums)
    if missing:
        raise ParameterError(f"relu_sums lacks {sorted(missing)}")
    errs = {name: SumError.of(name, relu_sums[name]) for name in ("psi", "softplus", "exp")}
    X, y, betas = X.double(), y.double(), init.double()
    n = X.shape[1]
    logpi = torch.tensor([math.log(p) for p in pi], dtype=torch.float64)
    xnorm = torch.linalg.vector_norm(X, dim=-1)[..., None]  # (B, n, 1)
    root = torch.linalg.eigvalsh(X.transpose(1, 2) @ X / n)[:, -1].clamp_min(0).sqrt()
    eye = torch.eye(X.shape[2], dtype=torch.float64)
    E = torch.zeros(X.shape[0], K, dtype=torch.float64)
    bounds, exact = [], []
    for _ in range(T_outer):
        t = (y[..., None] - torch.einsum("bnd,bkd->bnk", X, betas)) / sigma
        gamma, Dg, Lam = _e_step(t, xnorm * E[:, None] / sigma, logpi, errs)
        A = _e_step(t, torch.zeros_like(t), logpi, errs)[1]  # approximation at the exact t
        xx = torch.einsum("bnd,bne->bnde", X, X)
        S_k = torch.einsum("bnk,bnde->bkde", gamma, xx) / n
        contraction = torch.linalg.eigvalsh(eye - alpha * S_k).abs().amax(-1)  # (B, K)
        G_k = _weighted_norm(Dg, xx, n)
        b_row, x_row, E0 = [], [], E
        for _ in range(T_inner):
            tt = (y[..., None] - torch.einsum("bnd,bkd->bnk", X, betas)) / sigma
            rho = xnorm * E[:, None] / sigma
            pair = sigma * _pair_error(gamma, Dg, tt, rho, errs["psi"])
            N = torch.minimum(  # gamma~ - gamma <= Dg, or <= A + sum_i Lam_ki |x^T e_i| / sigma
                _vec_norm(pair + sigma * Dg * tt.abs(), root, xnorm),
                _vec_norm(pair + sigma * A * tt.abs(), root, xnorm)
                + (_weighted_norm(tt.abs()[..., None] * Lam, xx, n) * E0[:, None]).sum(-1),
            )  # (B, K)
            E = contraction * E + alpha * N + alpha * G_k * E
            E = torch.nan_to_num(E, nan=math.inf)  # inf * 0 of a vacuous bound stays vacuous
            r = gamma * tt * sigma
            betas = betas + alpha * torch.einsum("bnk,bnd->bkd", r, X) / n
            b_row.append(E)
            x_row.append(betas)
        bounds.append(torch.stack(b_row, 1))
        exact.append(torch.stack(x_row, 1))
    return GeneralGapBound(torch.stack(bounds, 1), torch.stack(exact, 1))
