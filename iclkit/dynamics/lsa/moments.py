"""Data moments that the LSA population loss depends on (ZFB Sec. 3; MoR paper Sec. 5).

The LSA prediction (``docs/provenance.md`` §10 [READ-2nd]) only sees the prompt through
``S = (1/N) sum_i x_i x_i^T``, ``a = (1/N) sum_i y_i x_i``, ``s = (1/N) sum_i y_i^2`` and the query.
For data ``x ~ N(0, Lambda)``, ``y = x^T beta_z + v``, ``z ~ pi`` per sample, ``v ~ N(0, sigma^2)``
and an isotropic component prior (Gaussian ``N(0, tau^2 I)`` or uniform on a sphere), the loss
needs these moments ([RECON] ``docs/provenance.md`` §10, re-derived and checked here by sympy and MC):

    M1 = E[beta_bar beta_bar^T],  beta_bar = sum_k pi_k beta_k      (= c2 ||pi||^2 I; 0 if symmetric)
    M2 = E[sum_k pi_k beta_k beta_k^T]                              (= c2 I)
    A  = E[a a^T] = (1/N)(2 Lambda M2 Lambda + E[y^2] Lambda) + (1 - 1/N) Lambda M1 Lambda
    C  = E[a y_q x_q^T] = Lambda M1 Lambda,   E[y^2] = tr(Lambda M2) + sigma^2,

plus the fourth-order moments ``E[s^2]`` and ``E[s S]`` used by the dead blocks of the full
(W^KQ, W^PV) loss. ``c2 = E[beta_j^2]`` and ``c4`` with
``E[beta_a beta_b beta_c beta_e] = c4 (d_ab d_ce + d_ac d_be + d_ae d_bc)`` describe the prior
(Gaussian: c2 = tau^2, c4 = tau^4; sphere of radius r: c2 = r^2/d, c4 = r^4/(d(d+2))).
Linear regression (ZFB) is K = 1, pi = 1, Gaussian prior with tau = 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np

from iclkit.theory.linear import LinearConfig
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import (
    ParameterError,
    check_finite_result,
    check_int,
    check_positive,
    check_real,
    no_overflow,
)

__all__ = ["LSAMoments"]

_T = TypeVar("_T")


def _cached(fn: Callable[[LSAMoments], _T]) -> property:
    """A read-only property computed once per instance (moments are immutable)."""
    name = fn.__name__

    def get(self: LSAMoments) -> _T:
        if name not in self._cache:
            args = self._scales()
            with no_overflow(f"LSAMoments.{name}", args):
                value = fn(self)
            check_finite_result(value, f"LSAMoments.{name}", args)
            self._cache[name] = value
        return self._cache[name]  # type: ignore[return-value]

    get.__doc__ = fn.__doc__
    return property(get)


#: The fields in :meth:`LSAMoments.describe`, in its order (Lambda as its eigenvalues).
_DESCRIBED_FIELDS = ("kind", "d", "N", "sigma", "pi", "symmetric", "prior", "c2", "c4")


@dataclass(frozen=True, eq=False)
class LSAMoments:
    """The prompt distribution of an LSA population loss, through its moments.

    Build with :meth:`linear` or :meth:`mor`; all arrays are float64.

    Attributes
    ----------
    kind : {"linear", "mor"}
    d, N : int
        Dimension and prompt length (N in-context examples).
    Lambda : (d, d)
    sigma : float
    pi : tuple of float (length K)
    symmetric : bool
        Symmetric two-component MoR (beta_2 = -beta_1, pi = (1/2, 1/2)).
    c2, c4 : float
        Second and fourth moment constants of the isotropic component prior.
    prior : str
    """

    kind: Literal["linear", "mor"]
    d: int
    N: int
    Lambda: np.ndarray
    sigma: float
    pi: tuple[float, ...]
    symmetric: bool
    c2: float
    c4: float
    prior: str = "gaussian"
    _cache: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def linear(
        cls, d: int, N: int, *, Lambda: np.ndarray | None = None, sigma: float = 0.0
    ) -> LSAMoments:
        """ZFB linear-regression prompts: w ~ N(0, I_d), x ~ N(0, Lambda), noise sigma >= 0."""
        cfg = LinearConfig(
            d=d,
            n=N,
            sigma=sigma,
            Lambda=None if Lambda is None else tuple(map(tuple, np.asarray(Lambda, float))),
        )
        return cls(
            "linear",
            cfg.d,
            cfg.n,
            cfg.Lambda_matrix(),
            float(cfg.sigma),
            (1.0,),
            False,
            1.0,
            1.0,
            "gaussian",
        )

    @classmethod
    def mor(cls, config: MoRConfig) -> LSAMoments:
        """MoR prompts of ``config`` (fixed pi and fixed sigma are required for a closed form)."""
        if not isinstance(config, MoRConfig):
            raise ParameterError(f"config must be a MoRConfig, got {type(config).__name__}")
        if config.sigma is None:
            raise ParameterError(
                "sigma: the closed-form LSA loss needs a fixed noise level; build the MoRConfig "
                "with sigma=... (snr sets sigma per prompt from the random components)"
            )
        if config.pi_mode != "fixed":
            raise ParameterError("pi_mode must be 'fixed' for the closed-form LSA loss")
        d = config.d
        r = float(config.prior_scale)
        with no_overflow("LSAMoments.mor", {"prior_scale": r, "d": d}):
            if config.prior == "gaussian":
                c2, c4 = r**2, r**4
            else:
                c2, c4 = r**2 / d, r**4 / (d * (d + 2))
        check_finite_result((c2, c4), "LSAMoments.mor", {"prior_scale": r, "d": d})
        return cls(
            "mor",
            d,
            config.n,
            config.Lambda_matrix().numpy().copy(),
            float(config.sigma),
            tuple(config.pi_vector),
            bool(config.symmetric),
            c2,
            c4,
            config.prior,
        )

    def __post_init__(self) -> None:
        check_int(self.d, "d", minimum=1)
        check_int(self.N, "N", minimum=1)
        check_positive(self.c2, "prior_scale")
        check_real(self.c4, "c4", minimum=0.0)
        check_real(self.sigma, "sigma", minimum=0.0)
        if not np.all(np.isfinite(self.Lambda)):
            raise ParameterError("Lambda must be finite")

    def _scales(self) -> dict[str, object]:
        """The inputs that set the size of every moment (named in an overflow error)."""
        return {"prior_scale": self.c2**0.5, "sigma": self.sigma, "Lambda": self.Lambda}

    # ------------------------------------------------------------------ moments
    @property
    def K(self) -> int:
        return len(self.pi)

    @property
    def pi_sq(self) -> float:
        """||pi||^2 (or (pi_1 - pi_2)^2 = 0 in the symmetric model): M1 = c2 * pi_sq * I."""
        if self.symmetric:
            return (self.pi[0] - self.pi[1]) ** 2
        return float(sum(p * p for p in self.pi))

    @_cached
    def M1(self) -> np.ndarray:
        return self.c2 * self.pi_sq * np.eye(self.d)

    @_cached
    def M2(self) -> np.ndarray:
        return self.c2 * np.eye(self.d)

    @property
    def Ey2(self) -> float:
        """E[y^2] = E[s] = tr(Lambda M2) + sigma^2."""
        args = self._scales()
        with no_overflow("LSAMoments.Ey2", args):
            value = self.c2 * float(np.trace(self.Lambda)) + self.sigma**2
        check_finite_result(value, "LSAMoments.Ey2", args)
        return value

    @_cached
    def Es2(self) -> float:
        """E[s^2], s = (1/N) sum_i y_i^2 (needs fourth moments of the prior)."""
        L = self.Lambda
        trL, trL2 = float(np.trace(L)), float(np.trace(L @ L))
        same = self.c4 * (trL**2 + 2 * trL2)  # E[q_k^2], q_k = beta_k^T Lambda beta_k
        indep = (self.c2 * trL) ** 2  # E[q_k q_l], k != l, independent components
        Eq, s2 = self.c2 * trL, self.sigma**2
        Ey4 = 3.0 * (same + 2 * s2 * Eq + s2**2)
        pi = np.asarray(self.pi)
        if self.symmetric or self.K == 1:
            Eqq = same  # q_1 = q_2 when beta_2 = -beta_1
        else:
            Eqq = float((pi**2).sum()) * same + (1.0 - float((pi**2).sum())) * indep
        Em2 = Eqq + 2 * s2 * Eq + s2**2
        return Ey4 / self.N + (1.0 - 1.0 / self.N) * Em2

    @_cached
    def A(self) -> np.ndarray:
        """E[a a^T] (d, d)."""
        L, N = self.Lambda, self.N
        return (2 * L @ self.M2 @ L + self.Ey2 * L) / N + (1 - 1 / N) * L @ self.M1 @ L

    @_cached
    def C(self) -> np.ndarray:
        """E[a y_q x_q^T] = Lambda M1 Lambda (d, d)."""
        return self.Lambda @ self.M1 @ self.Lambda

    @_cached
    def EsS(self) -> np.ndarray:
        """E[s S] (d, d)."""
        L, N = self.Lambda, self.N
        return (2 * L @ self.M2 @ L + self.Ey2 * L) / N + (1 - 1 / N) * self.Ey2 * L

    @property
    def Gamma(self) -> np.ndarray:
        """Gamma = A Lambda^{-1} / (c2 ||pi||^2): ZFB's Gamma for linear data (undefined if M1 = 0)."""
        if self.pi_sq * self.c2 == 0:
            raise ParameterError("Gamma: undefined for the symmetric model (M1 = 0, so G* = 0)")
        return self.A @ np.linalg.inv(self.Lambda) / (self.c2 * self.pi_sq)

    @_cached
    def G_star(self) -> np.ndarray:
        """The global minimiser G* = A^{-1} Lambda M1 of the reduced loss (numpy; see fixed_points)."""
        return np.linalg.solve(self.A, self.Lambda @ self.M1)

    @_cached
    def loss_star(self) -> float:
        """min L = (1/2)(E[y^2] - tr(G*^T C))."""
        return 0.5 * (self.Ey2 - float(np.trace(self.G_star.T @ self.C)))

    @property
    def eigenbasis(self) -> tuple[np.ndarray, np.ndarray]:
        """(lam, V): Lambda = V diag(lam) V^T; A, C, G* are diagonal in V (isotropic prior)."""
        if "eig" not in self._cache:
            lam, V = np.linalg.eigh(self.Lambda)
            self._cache["eig"] = (lam, V)
        return self._cache["eig"]  # type: ignore[return-value]

    def describe(self) -> dict[str, object]:
        """A JSON-friendly summary: the scalar fields and the eigenvalues of Lambda."""
        summary = {name: getattr(self, name) for name in _DESCRIBED_FIELDS}
        summary["pi"] = list(self.pi)
        summary["Lambda_eigenvalues"] = np.linalg.eigvalsh(self.Lambda).tolist()
        return summary
