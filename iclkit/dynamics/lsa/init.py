"""Initialisations of the LSA layer: ZFB Assumption 3.3 and its MoR analogue, and random ones.

ZFB Assumption 3.3 [READ-2nd, ``docs/provenance.md`` §10]: ``W^PV(0) = s [[0, 0], [0, 1]]``,
``W^KQ(0) = s [[Theta Theta^T, 0], [0, 0]]`` with ``||Theta Theta^T||_F = 1`` and ``Theta Lambda != 0``;
Theorem 4.1 needs ``s^2 ||Gamma||_op sqrt(d) < 2`` [READ-2nd].

MoR analogue [RECON, this project]: with ``kappa = c2 ||pi||^2`` (so ``M1 = kappa I``) the MoR
reduced flow is ZFB's flow with ``Gamma -> Gamma_MoR = A Lambda^{-1} / kappa`` after rescaling
``(U, u) -> (U, u)/sqrt(kappa)`` and time by kappa, so the analogous condition is
``s^2 ||Gamma_MoR||_op sqrt(d) < 2`` (``Gamma_MoR = (G*)^{-1}``). For the symmetric two-component
model ``kappa = 0`` and the condition is void (G* = 0).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from iclkit.theory.rng import make_generator
from iclkit.theory.validation import ParameterError, check_positive, check_seed

from .moments import LSAMoments

__all__ = ["InitCondition", "InitConditionWarning", "LSAInit", "random_init", "structured_init"]


class InitConditionWarning(UserWarning):
    """The initialisation violates the scale condition of the convergence theorem."""


@dataclass(frozen=True)
class InitCondition:
    """The scale condition ``s^2 ||Gamma||_op sqrt(d) < bound`` and whether it holds."""

    value: float
    bound: float
    holds: bool
    source: str
    message: str


@dataclass(frozen=True, eq=False)
class LSAInit:
    """Initial weights (W^KQ, W^PV), both (d+1, d+1) float64, and how they were made."""

    W_KQ: np.ndarray
    W_PV: np.ndarray
    kind: Literal["structured", "random", "given"]
    scale: float
    condition: InitCondition | None = None

    @property
    def d(self) -> int:
        return int(self.W_KQ.shape[0]) - 1

    @property
    def U(self) -> np.ndarray:
        return self.W_KQ[: self.d, : self.d]

    @property
    def u(self) -> float:
        return float(self.W_PV[self.d, self.d])

    @property
    def p(self) -> np.ndarray:
        return self.W_PV[self.d, : self.d]

    @property
    def q(self) -> np.ndarray:
        return self.W_KQ[self.d, : self.d]

    @classmethod
    def from_reduced(cls, U: np.ndarray, u: float) -> LSAInit:
        """Weights with only the live blocks U = W^KQ_11 and u = w^PV_22 set."""
        U = np.asarray(U, dtype=np.float64)
        if U.ndim != 2 or U.shape[0] != U.shape[1]:
            raise ParameterError(f"U must be square (d, d), got {U.shape}")
        d = U.shape[0]
        W_KQ, W_PV = np.zeros((d + 1, d + 1)), np.zeros((d + 1, d + 1))
        W_KQ[:d, :d] = U
        W_PV[d, d] = float(u)
        return cls(W_KQ, W_PV, "given", float(np.linalg.norm(U)))


def scale_condition(moments: LSAMoments, scale: float) -> InitCondition:
    """Evaluate ``s^2 ||Gamma||_op sqrt(d) < 2`` (ZFB Thm 4.1 [READ-2nd]; MoR analogue [RECON])."""
    if moments.c2 * moments.pi_sq == 0:
        return InitCondition(
            math.nan,
            2.0,
            True,
            "n/a",
            "symmetric two-component MoR: M1 = 0, so G* = 0 and no scale condition applies",
        )
    gamma_op = float(np.linalg.eigvals(moments.Gamma).real.max())
    value = scale**2 * gamma_op * math.sqrt(moments.d)
    source = "ZFB Thm 4.1 [READ-2nd]" if moments.kind == "linear" else "MoR analogue [RECON]"
    holds = value < 2.0
    msg = f"s^2 ||Gamma||_op sqrt(d) = {value:.4g} {'<' if holds else '>='} 2 ({source})"
    if not holds:
        msg += (
            f": the theorem's condition fails; use scale < "
            f"{math.sqrt(2.0 / (gamma_op * math.sqrt(moments.d))):.4g}"
        )
    return InitCondition(value, 2.0, holds, source, msg)


def structured_init(
    moments: LSAMoments,
    scale: float,
    *,
    seed: int | None = 0,
    Theta: np.ndarray | None = None,
    warn: bool = True,
) -> LSAInit:
    """ZFB Assumption 3.3 initialisation (MoR analogue for MoR data).

    Parameters
    ----------
    moments : LSAMoments
    scale : float
        s > 0: ``u(0) = s``, ``U(0) = s Theta Theta^T``.
    seed : int
        Seed of the Gaussian Theta (ignored when ``Theta`` is given).
    Theta : (d, d) or None
        Used after normalising ``||Theta Theta^T||_F = 1``.
    warn : bool
        Emit :class:`InitConditionWarning` when the scale condition fails.
    """
    s = check_positive(scale, "scale")
    d = moments.d
    if Theta is None:
        g = make_generator(check_seed(seed, "seed"))
        Theta = torch.randn(d, d, generator=g, dtype=torch.float64).numpy()
    Theta = np.asarray(Theta, dtype=np.float64)
    if Theta.shape != (d, d) or not np.all(np.isfinite(Theta)):
        raise ParameterError(f"Theta must be a finite ({d}, {d}) array, got shape {Theta.shape}")
    TT = Theta @ Theta.T
    nrm = float(np.linalg.norm(TT))
    if nrm == 0 or np.linalg.norm(Theta @ moments.Lambda) == 0:
        raise ParameterError("Theta must satisfy Theta Lambda != 0 (ZFB Assumption 3.3)")
    init = LSAInit.from_reduced(s * TT / nrm, s)
    cond = scale_condition(moments, s)
    if warn and not cond.holds:
        warnings.warn(cond.message, InitConditionWarning, stacklevel=2)
    return LSAInit(init.W_KQ, init.W_PV, "structured", s, cond)


def random_init(
    moments: LSAMoments,
    scale: float,
    *,
    seed: int = 0,
    blocks: Literal["live", "reduced", "all"] = "live",
) -> LSAInit:
    """Gaussian initialisation with entries ``N(0, scale^2 / (d+1))``.

    ``blocks="reduced"`` fills only U and u (unbalanced in general); ``"live"`` also p and q;
    ``"all"`` every entry of both matrices (the dead blocks then simply never move).
    """
    s = check_positive(scale, "scale")
    if blocks not in ("live", "reduced", "all"):
        raise ParameterError(f"blocks must be 'live', 'reduced' or 'all', got {blocks!r}")
    d = moments.d
    g = make_generator(check_seed(seed, "seed"))
    W = (
        torch.randn(2, d + 1, d + 1, generator=g, dtype=torch.float64).numpy()
        * s
        / math.sqrt(d + 1)
    )
    W_KQ, W_PV = W[0].copy(), W[1].copy()
    if blocks != "all":
        mask_kq = np.zeros((d + 1, d + 1), bool)
        mask_kq[:d, :d] = True
        mask_pv = np.zeros((d + 1, d + 1), bool)
        mask_pv[d, d] = True
        if blocks == "live":
            mask_kq[d, :d] = True
            mask_pv[d, :d] = True
        W_KQ[~mask_kq] = 0.0
        W_PV[~mask_pv] = 0.0
    return LSAInit(W_KQ, W_PV, "random", s, None)
