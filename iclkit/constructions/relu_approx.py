"""Sum-of-ReLU approximation with an (eps, R, M, C) certificate: MoR Definition A.1 = Bai et al. Def. 12.

Definition [READ-Bai statement, display formula RECON, ``docs/provenance.md`` §6]: ``g : R^k -> R`` is
``(eps, R, M, C)``-approximable by a sum of ReLUs if there is

    f(z) = sum_{m=1}^M c_m relu(a_m^T [z; 1]),   sum_m |c_m| <= C,   max_m ||a_m||_1 <= 1,

with ``sup_{z in [-R, R]^k} |g(z) - f(z)| <= eps``.

This module builds such sums (this project's design):

- :func:`interpolate_relu_sum` - scalar ``g``: piecewise-linear interpolation on ``M_int``
  uniform intervals of ``[-R, R]``, written exactly as a ReLU sum (one constant term
  ``relu(1)``, one slope-change term per knot, and for ``extension="flat"`` a final term making
  ``f`` constant beyond ``R``). Proven bound on ``[-R, R]``: ``max|g''| h^2 / 8`` with knot
  spacing ``h = 2R / M_int`` (standard interpolation error), e.g. ``0.0962 h^2`` for tanh.
- :func:`tanh_relu_sum` - tanh with ``R`` chosen to balance the interpolation bound against
  the tail ``1 - tanh R``, so the certificate holds on the whole real line.
- :func:`fit_bivariate_relu_sum` - bivariate ``g``: least-squares fit of ``c`` over random
  ridge directions ``a_m`` (no proven bound; measured sup error only).

Every certificate also carries the *measured* sup error on a dense grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from iclkit.theory.rng import make_generator
from iclkit.theory.validation import ParameterError, check_int, check_positive, check_real

__all__ = [
    "TANH_SECOND_DERIVATIVE_MAX",
    "Certificate",
    "ReluSum",
    "fit_bivariate_relu_sum",
    "interpolate_relu_sum",
    "tanh_relu_sum",
]

#: max_z |tanh''(z)| = 4 / (3 sqrt 3), attained at z = artanh(1/sqrt 3).
TANH_SECOND_DERIVATIVE_MAX = 4.0 / (3.0 * math.sqrt(3.0))

ScalarFunction = Callable[[torch.Tensor], torch.Tensor]

#: Points of the dense grid on which a scalar sum's sup error is measured: spacing R / 10^4,
#: far finer than any knot spacing used (the error between grid points is then negligible).
MEASURE_GRID_POINTS = 20001

#: Bivariate fits: least squares on a 121 x 121 grid, sup error measured on a finer 401 x 401.
BIVARIATE_FIT_POINTS = 121
BIVARIATE_GRID_POINTS = 401

#: Bracket of the bisection for the balancing R of tanh: at R = 0.1 the tail 1 - tanh R
#: dominates, at R = 50 the interpolation bound does, for every M >= 3. 100 halvings shrink it
#: below float64 resolution.
_TANH_R_BRACKET = (0.1, 50.0)
_BISECTION_STEPS = 100

#: Floor of an l1 norm before dividing by it (above float64's smallest normal number).
_TINY = 1e-300


@dataclass(frozen=True)
class Certificate:
    """The (eps, R, M, C) certificate of Def. A.1.

    Attributes
    ----------
    eps : float
        The certified sup error: ``eps_proven`` where a proof exists, else ``eps_measured``.
    eps_measured : float
        Sup error measured on a dense grid of ``[-R, R]^k`` (``grid_points`` per axis).
    eps_proven : float | None
        Proven bound on ``[-R, R]^k`` (None when no proof applies, e.g. least-squares fits).
    R : float
    M : int
        Number of ReLU terms.
    C : float
        ``sum_m |c_m|`` with the ``a_m`` normalised to ``||a_m||_1 <= 1``.
    eps_global : float | None
        A bound valid on the whole real line (scalar case with a known tail), else None.
    """

    eps: float
    eps_measured: float
    eps_proven: float | None
    R: float
    M: int
    C: float
    eps_global: float | None = None


@dataclass(frozen=True)
class ReluSum:
    """``f(z) = sum_m c_m relu(a_m^T [z; 1])`` with ``||a_m||_1 <= 1`` (Def. A.1 form).

    Attributes
    ----------
    a : (M, k+1) float64, last column the bias coefficient.
    c : (M,) float64.
    certificate : Certificate
    """

    a: torch.Tensor
    c: torch.Tensor
    certificate: Certificate

    @property
    def M(self) -> int:
        return int(self.c.shape[0])

    @property
    def k(self) -> int:
        return int(self.a.shape[1]) - 1

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """Evaluate on ``z`` of shape ``(...)`` (k = 1) or ``(..., k)``; returns ``(...)``.

        Evaluated term by term in the order the transformer's heads add them (the constant
        term first), so that the surrogate algorithm and the forward pass agree to round-off.
        """
        a = self.a.to(z.dtype)
        c = self.c.to(z.dtype)
        zz = z[..., None] if self.k == 1 else z
        pre = torch.einsum("...j,mj->...m", zz, a[:, :-1]) + a[:, -1]
        return (torch.relu(pre) * c).sum(-1)

    def piecewise_linear(self) -> ScalarFunction:
        """The same scalar function (k = 1) evaluated by binary search over the kinks in
        O(log M) per point instead of O(M): equal to :meth:`__call__` up to float64 round-off.
        For large evaluations (rate experiments at n in the thousands)."""
        if self.k != 1:
            raise ParameterError(
                f"piecewise_linear needs a scalar ReLU sum (k = 1), got k = {self.k}"
            )
        a1, a0, c = self.a[:, 0], self.a[:, 1], self.c
        const = float((c * torch.relu(a0))[a1 == 0].sum())
        groups = []
        for sel, right in ((a1 > 0, True), (a1 < 0, False)):
            kinks = -a0[sel] / a1[sel]
            slope = c[sel] * a1[sel]
            order = torch.argsort(kinks)
            kinks, slope = kinks[order], slope[order]
            zero = torch.zeros(1, dtype=torch.float64)
            if right:  # active for z > kink: prefix sums over kinks below z
                s1 = torch.cat([zero, torch.cumsum(slope, 0)])
                s0 = torch.cat([zero, torch.cumsum(slope * kinks, 0)])
            else:  # active for z < kink: suffix sums over kinks above z
                s1 = torch.cat([torch.flip(torch.cumsum(torch.flip(slope, [0]), 0), [0]), zero])
                s0 = torch.cat(
                    [torch.flip(torch.cumsum(torch.flip(slope * kinks, [0]), 0), [0]), zero]
                )
            groups.append((kinks, s1, s0))

        def f(z: torch.Tensor) -> torch.Tensor:
            out = torch.full_like(z, const)
            for kinks, s1, s0 in groups:
                idx = torch.searchsorted(kinks.to(z.dtype), z.contiguous())
                out = out + z * s1.to(z.dtype)[idx] - s0.to(z.dtype)[idx]
            return out

        return f


def _normalise(a: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescale each term so that ``||a_m||_1 = 1`` (relu is positively homogeneous)."""
    s = a.abs().sum(-1).clamp_min(_TINY)
    return a / s[:, None], c * s


def interpolate_relu_sum(
    g: ScalarFunction,
    R: float,
    M: int,
    *,
    second_derivative_bound: float | None = None,
    extension: str = "flat",
    domain: tuple[float, float] | None = None,
    left: str = "flat",
    right: str | float | None = None,
    grid_points: int = MEASURE_GRID_POINTS,
) -> ReluSum:
    """Piecewise-linear interpolation of a scalar ``g`` as a sum of ``M`` ReLUs.

    Parameters
    ----------
    g : callable, float64 tensor -> tensor (elementwise).
    R : float > 0, half-width of the domain ``[-R, R]`` (unless ``domain`` is given).
    M : int, total number of ReLU terms: one constant term ``relu(1)``, one slope-change term per
        interior knot and left end, plus one term for a non-"linear" right extension and one for
        a "linear" left extension. The number of intervals is what remains (>= 1).
    second_derivative_bound : float, optional
        ``max |g''|`` on the domain; gives the proven bound ``bound * h^2 / 8``.
    extension : "flat" or "linear", shorthand for ``right`` (kept for the scalar default).
    domain : (lo, hi), optional; overrides ``[-R, R]``.
    left : "flat" (constant ``g(lo)`` below ``lo``) or "linear" (first slope continued).
    right : "flat", "linear" (last slope continued) or a float (that slope beyond ``hi``).
    grid_points : int, the dense grid for the measured error.

    Returns
    -------
    ReluSum with its certificate; the certificate's ``R`` is ``max(|lo|, |hi|)``.
    """
    R = check_positive(R, "R")
    if right is None:
        right = extension
    if isinstance(right, str) and right not in ("flat", "linear"):
        raise ParameterError(f"right must be 'flat', 'linear' or a slope, got {right!r}")
    if left not in ("flat", "linear"):
        raise ParameterError(f"left must be 'flat' or 'linear', got {left!r}")
    lo, hi = (-R, R) if domain is None else (float(domain[0]), float(domain[1]))
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ParameterError(f"domain must be finite with lo < hi, got {domain}")
    extra = 1 + (0 if right == "linear" else 1) + (1 if left == "linear" else 0)
    M = check_int(M, "M", minimum=extra + 1)
    grid_points = check_int(grid_points, "grid_points", minimum=3)
    n_int = M - extra
    knots = torch.linspace(lo, hi, n_int + 1, dtype=torch.float64)
    vals = g(knots).to(torch.float64)
    slopes = (vals[1:] - vals[:-1]) / (knots[1:] - knots[:-1])  # (n_int,)
    one = torch.ones((), dtype=torch.float64)
    a_rows = [torch.tensor([0.0, 1.0], dtype=torch.float64)]  # constant term relu(1)
    c_vals = [vals[0]]
    prev = torch.zeros((), dtype=torch.float64)
    if left == "linear":
        # slope s_0 also below lo: s_0 (z - lo) = s_0 relu(z - lo) - s_0 relu(lo - z)
        a_rows.append(torch.stack([-one, knots[0]]))
        c_vals.append(-slopes[0])
    for m in range(n_int):
        a_rows.append(torch.stack([one, -knots[m]]))
        c_vals.append(slopes[m] - prev)
        prev = slopes[m]
    if right != "linear":
        s_r = 0.0 if right == "flat" else check_real(right, "right")
        a_rows.append(torch.stack([one, -knots[-1]]))
        c_vals.append(s_r - slopes[-1])
    a, c = _normalise(torch.stack(a_rows), torch.stack(c_vals))
    h = (hi - lo) / n_int
    proven = None
    if second_derivative_bound is not None:
        proven = check_real(second_derivative_bound, "second_derivative_bound", minimum=0.0)
        proven = proven * h * h / 8.0
    Rc = max(abs(lo), abs(hi))
    provisional = Certificate(0.0, 0.0, proven, Rc, M, float(c.abs().sum()))
    f = ReluSum(a, c, provisional)
    z = torch.linspace(lo, hi, grid_points, dtype=torch.float64)
    measured = float((g(z) - f(z)).abs().max())
    eps = proven if proven is not None else measured
    return ReluSum(a, c, Certificate(eps, measured, proven, Rc, M, float(c.abs().sum())))


def _tanh_R(M: int) -> float:
    """R balancing ``0.0962 (2R/(M-2))^2`` against the tail ``1 - tanh R`` (bisection)."""
    n_int = M - 2

    def gap(R: float) -> float:
        return TANH_SECOND_DERIVATIVE_MAX * (2 * R / n_int) ** 2 / 8 - (1 - math.tanh(R))

    lo, hi = _TANH_R_BRACKET
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if gap(mid) > 0:
            hi = mid
        else:
            lo = mid
    return hi


def tanh_relu_sum(
    M: int, R: float | None = None, *, grid_points: int = MEASURE_GRID_POINTS
) -> ReluSum:
    """tanh as a flat-extended interpolating ReLU sum of ``M >= 3`` terms.

    The certificate's ``eps_global = max(0.0962 h^2, 1 - tanh R)`` bounds the error on all
    of R (beyond ``R`` the sum is constant ``tanh(+-R)``). ``R=None`` picks the ``R`` that
    balances the two terms.
    """
    M = check_int(M, "M", minimum=3)
    R_val = _tanh_R(M) if R is None else check_positive(R, "R")
    f = interpolate_relu_sum(
        torch.tanh,
        R_val,
        M,
        second_derivative_bound=TANH_SECOND_DERIVATIVE_MAX,
        extension="flat",
        grid_points=grid_points,
    )
    cert = f.certificate
    proven = cert.eps_proven if cert.eps_proven is not None else cert.eps_measured
    eps_global = max(proven, 1.0 - math.tanh(R_val))
    return ReluSum(
        f.a,
        f.c,
        Certificate(
            cert.eps, cert.eps_measured, cert.eps_proven, cert.R, cert.M, cert.C, eps_global
        ),
    )


def fit_bivariate_relu_sum(
    g: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    R: float,
    M: int,
    *,
    seed: int = 0,
    fit_points: int = BIVARIATE_FIT_POINTS,
    grid_points: int = BIVARIATE_GRID_POINTS,
) -> ReluSum:
    """Least-squares sum of ``M`` ReLUs for a bivariate ``g(z1, z2)`` on ``[-R, R]^2``.

    Random ridge directions ``a_m`` (uniform on the l1 sphere of R^3, scaled so that the
    kinks cross the domain), coefficients ``c`` by least squares on a ``fit_points^2`` grid.
    No proven bound: the certificate's ``eps`` is the sup error on a ``grid_points^2`` grid.
    """
    R = check_positive(R, "R")
    M = check_int(M, "M", minimum=1)
    fit_points = check_int(fit_points, "fit_points", minimum=3)
    grid_points = check_int(grid_points, "grid_points", minimum=3)
    gen = make_generator(seed)
    dirs = torch.randn(M, 2, generator=gen, dtype=torch.float64)
    dirs = dirs / torch.linalg.vector_norm(dirs, dim=1, keepdim=True)
    offs = (torch.rand(M, generator=gen, dtype=torch.float64) * 2 - 1) * R * math.sqrt(2)
    a = torch.cat([dirs, -offs[:, None]], dim=1)
    a[0] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)  # constant term
    t = torch.linspace(-R, R, fit_points, dtype=torch.float64)
    Z = torch.cartesian_prod(t, t)
    feats = torch.relu(Z @ a[:, :2].T + a[:, 2])
    target = g(Z[:, 0], Z[:, 1])
    c = torch.linalg.lstsq(feats, target[:, None], driver="gelsd").solution[:, 0]
    a, c = _normalise(a, c)
    provisional = Certificate(0.0, 0.0, None, R, M, float(c.abs().sum()))
    f = ReluSum(a, c, provisional)
    tg = torch.linspace(-R, R, grid_points, dtype=torch.float64)
    G = torch.cartesian_prod(tg, tg)
    measured = float((g(G[:, 0], G[:, 1]) - f(G)).abs().max())
    return ReluSum(a, c, Certificate(measured, measured, None, R, M, float(c.abs().sum())))
