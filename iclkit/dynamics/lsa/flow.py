"""Gradient-flow vector fields of the LSA population loss (ZFB eq. (3.9), Lemma 5.2; MoR Sec. 5).

``d theta / dt = -grad L(theta)`` on three state spaces, all float64 numpy in / out:

- :class:`FullLSAFlow`: theta = (W^KQ, W^PV), both (d+1) x (d+1), flattened; the gradient is
  autograd of the closed-form loss :func:`.lsa_loss.population_loss`.
- :class:`ReducedLSAFlow`: (U, u) with the other blocks at 0 (ZFB Lemma 5.2 [READ-2nd]; MoR
  [RECON] ``docs/provenance.md`` §10), hand-written matrix products
  ``dU/dt = -u^2 A U Lambda + u C``, ``du/dt = -u tr(U^T A U Lambda) + tr(U^T C)``.
- :class:`EigenLSAFlow` (this project's fast form of the same ODE): in the eigenbasis of Lambda,
  ``Lambda = V diag(lam) V^T``, A and C are diagonal (``a``, ``c``; isotropic prior), so with
  ``U' = V^T U V`` each off-diagonal entry solves ``U'_ij(t) = U'_ij(0) exp(-a_i lam_j s(t))``,
  ``s(t) = int_0^t u^2``. The state is ``(u, s, diag U')``, d + 2 numbers, with an O(d^2)
  right-hand side and an analytic Jacobian (for implicit solvers). It is exact, not an
  approximation.

Every flow reports the loss, the effective matrix ``G = uU + p q^T`` (= uU on the reduced
manifold) in the original basis, the gradient norm, and the conserved quantity
``||p||^2 + u^2 - ||U||_F^2 - ||q||^2`` (``u^2 - ||U||_F^2`` when p = q = 0; rescaling symmetry of
the bilinear prediction, ZFB's balancedness [DERIVED, ``docs/provenance.md`` §10]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Self

import numpy as np
import torch

from iclkit.theory.validation import ParameterError

from .init import LSAInit
from .loss import loss_gap, population_loss
from .moments import LSAMoments

__all__ = [
    "FLOWS",
    "EigenLSAFlow",
    "FlowName",
    "FullLSAFlow",
    "LSAFlow",
    "ReducedLSAFlow",
    "make_flow",
]


class LSAFlow(Protocol):
    """What :func:`.integrate.simulate` needs from a flow."""

    @property
    def moments(self) -> LSAMoments: ...
    @property
    def name(self) -> str: ...

    def bound(self, init: LSAInit) -> LSAFlow: ...
    def initial_state(self, init: LSAInit) -> np.ndarray: ...
    def rhs(self, t: float, y: np.ndarray) -> np.ndarray: ...
    def jac(self, t: float, y: np.ndarray) -> np.ndarray | None: ...
    def parts(self, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]: ...
    def G(self, y: np.ndarray) -> np.ndarray: ...
    def loss(self, y: np.ndarray) -> float: ...
    def loss_gap(self, y: np.ndarray) -> float: ...
    def gradient_norm(self, y: np.ndarray) -> float: ...
    def conserved(self, y: np.ndarray) -> float: ...


def _check_init(moments: LSAMoments, init: LSAInit, *, reduced: bool) -> None:
    """The init matches the data's d and, for the reduced flows, has p = q = 0."""
    if init.d != moments.d:
        raise ParameterError(f"init: d = {init.d} does not match the data's d = {moments.d}")
    if reduced and (np.any(init.p) or np.any(init.q)):
        raise ParameterError(
            "init: the reduced flow needs w^PV_21 = w^KQ_21 = 0; use FullLSAFlow for this init"
        )


class _Common:
    moments: LSAMoments

    def parts(self, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def G(self, y: np.ndarray) -> np.ndarray:
        U, u, p, q = self.parts(y)
        return u * U + np.outer(p, q)

    def conserved(self, y: np.ndarray) -> float:
        U, u, p, q = self.parts(y)
        return float(p @ p + u * u - np.sum(U * U) - q @ q)

    def loss_gap(self, y: np.ndarray) -> float:
        return float(self.loss(y)) - self.moments.loss_star

    def loss(self, y: np.ndarray) -> float:
        raise NotImplementedError

    def jac(self, t: float, y: np.ndarray) -> np.ndarray | None:
        return None

    def bound(self, init: LSAInit) -> Self:
        return self


@dataclass(frozen=True, eq=False)
class FullLSAFlow(_Common):
    """Gradient flow on the full (W^KQ, W^PV); state = concat(W^KQ.ravel(), W^PV.ravel())."""

    moments: LSAMoments
    name: str = "full"

    @property
    def dim(self) -> int:
        return 2 * (self.moments.d + 1) ** 2

    def initial_state(self, init: LSAInit) -> np.ndarray:
        _check_init(self.moments, init, reduced=False)
        return np.concatenate([init.W_KQ.ravel(), init.W_PV.ravel()]).astype(np.float64)

    def _split(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        D = self.moments.d + 1
        return y[: D * D].reshape(D, D), y[D * D :].reshape(D, D)

    def parts(self, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        Wk, Wp = self._split(y)
        d = self.moments.d
        return Wk[:d, :d], float(Wp[d, d]), Wp[d, :d], Wk[d, :d]

    def gradient(self, y: np.ndarray) -> np.ndarray:
        """grad L at y (flattened like the state)."""
        w = torch.tensor(y, dtype=torch.float64, requires_grad=True)
        D = self.moments.d + 1
        loss = population_loss(self.moments, w[: D * D].view(D, D), w[D * D :].view(D, D))
        (g,) = torch.autograd.grad(loss, w)
        return g.numpy()

    def rhs(self, t: float, y: np.ndarray) -> np.ndarray:
        return -self.gradient(y)

    def loss(self, y: np.ndarray) -> float:
        Wk, Wp = self._split(y)
        return float(population_loss(self.moments, Wk, Wp))

    def loss_gap(self, y: np.ndarray) -> float:
        U, u, p, q = self.parts(y)
        if not (p.any() or q.any()):
            return loss_gap(self.moments, u * U)
        return self.loss(y) - self.moments.loss_star

    def gradient_norm(self, y: np.ndarray) -> float:
        return float(np.linalg.norm(self.gradient(y)))


@dataclass(frozen=True, eq=False)
class ReducedLSAFlow(_Common):
    """ZFB Lemma 5.2 flow on (U, u); state = concat(U.ravel(), [u])."""

    moments: LSAMoments
    name: str = "reduced"

    @property
    def dim(self) -> int:
        return self.moments.d**2 + 1

    def initial_state(self, init: LSAInit) -> np.ndarray:
        _check_init(self.moments, init, reduced=True)
        return np.concatenate([init.U.ravel(), [init.u]]).astype(np.float64)

    def parts(self, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        d = self.moments.d
        z = np.zeros(d)
        return y[: d * d].reshape(d, d), float(y[-1]), z, z

    def _grad(self, y: np.ndarray) -> tuple[np.ndarray, float]:
        U, u, _, _ = self.parts(y)
        m = self.moments
        AUL = m.A @ U @ m.Lambda
        gU = u * u * AUL - u * m.C
        gu = u * float(np.sum(U * AUL)) - float(np.sum(U * m.C))
        return gU, gu

    def rhs(self, t: float, y: np.ndarray) -> np.ndarray:
        gU, gu = self._grad(y)
        return -np.concatenate([gU.ravel(), [gu]])

    def loss(self, y: np.ndarray) -> float:
        return self.moments.loss_star + self.loss_gap(y)

    def loss_gap(self, y: np.ndarray) -> float:
        return loss_gap(self.moments, self.G(y))

    def gradient_norm(self, y: np.ndarray) -> float:
        gU, gu = self._grad(y)
        return float(np.sqrt(np.sum(gU * gU) + gu * gu))


@dataclass(frozen=True, eq=False)
class EigenLSAFlow(_Common):
    """The reduced flow in the eigenbasis of Lambda; state = (u, s, diag U'), d + 2 numbers.

    Call :meth:`bound` with the initialisation first (it fixes the off-diagonal entries of
    ``U'(0)``); :func:`.integrate.simulate` does this.
    """

    moments: LSAMoments
    name: str = "eigen"
    offdiag0: np.ndarray | None = None  # U'(0) with zero diagonal
    _basis: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        m = self.moments
        lam, V = m.eigenbasis
        A_e, C_e = V.T @ m.A @ V, V.T @ m.C @ V
        scale = max(1.0, float(np.abs(A_e).max()))
        if np.abs(A_e - np.diag(np.diag(A_e))).max() > 1e-10 * scale or np.abs(
            C_e - np.diag(np.diag(C_e))
        ).max() > 1e-10 * max(1.0, float(np.abs(C_e).max())):
            raise ParameterError("moments: A and C must commute with Lambda for EigenLSAFlow")
        a, c = np.diag(A_e).copy(), np.diag(C_e).copy()
        self._basis.update(lam=lam, V=V, a=a, c=c, R=np.outer(a, lam))  # R_ij = a_i lam_j
        if self.offdiag0 is not None:
            O2 = self.offdiag0**2
            self._basis.update(O2=O2, RO2=self._basis["R"] * O2)

    @property
    def dim(self) -> int:
        return self.moments.d + 2

    def bound(self, init: LSAInit) -> EigenLSAFlow:
        _check_init(self.moments, init, reduced=True)
        V = self._basis["V"]
        Up = V.T @ init.U @ V
        off = Up - np.diag(np.diag(Up))
        return EigenLSAFlow(self.moments, self.name, off)

    def initial_state(self, init: LSAInit) -> np.ndarray:
        V = self._basis["V"]
        return np.concatenate([[init.u, 0.0], np.diag(V.T @ init.U @ V)])

    def _need_bound(self) -> tuple[np.ndarray, np.ndarray]:
        if self.offdiag0 is None:
            raise ParameterError("EigenLSAFlow: call .bound(init) before integrating")
        return self._basis["O2"], self._basis["RO2"]

    def _off(self, s: float) -> tuple[float, float, np.ndarray]:
        """sum_ij R O2 e^{-2 s R}, its s-derivative, and e^{-2sR} (off-diagonal part)."""
        _O2, RO2 = self._need_bound()
        R = self._basis["R"]
        e = np.exp(-2.0 * s * R)
        t1 = RO2 * e
        return float(t1.sum()), float(-2.0 * (R * t1).sum()), e

    def rhs(self, t: float, y: np.ndarray) -> np.ndarray:
        b = self._basis
        u, s, D = y[0], y[1], y[2:]
        rl = b["a"] * b["lam"]
        off, _, _ = self._off(s)
        out = np.empty_like(y)
        out[0] = -u * (float(rl @ (D * D)) + off) + float(b["c"] @ D)
        out[1] = u * u
        out[2:] = -u * u * rl * D + u * b["c"]
        return out

    def jac(self, t: float, y: np.ndarray) -> np.ndarray:
        b = self._basis
        u, s, D = y[0], y[1], y[2:]
        rl = b["a"] * b["lam"]
        off, doff, _ = self._off(s)
        n = y.shape[0]
        J = np.zeros((n, n))
        J[0, 0] = -(float(rl @ (D * D)) + off)
        J[0, 1] = -u * doff
        J[0, 2:] = -2 * u * rl * D + b["c"]
        J[1, 0] = 2 * u
        J[2:, 0] = -2 * u * rl * D + b["c"]
        J[np.arange(2, n), np.arange(2, n)] = -u * u * rl
        return J

    def U_eigen(self, y: np.ndarray) -> np.ndarray:
        """U' = V^T U V at state y (d, d)."""
        _O2, _ = self._need_bound()
        assert self.offdiag0 is not None
        Up = self.offdiag0 * np.exp(-self._basis["R"] * y[1])
        Up[np.diag_indices_from(Up)] = y[2:]
        return Up

    def parts(self, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        V = self._basis["V"]
        z = np.zeros(self.moments.d)
        return V @ self.U_eigen(y) @ V.T, float(y[0]), z, z

    def loss_gap(self, y: np.ndarray) -> float:
        b = self._basis
        Gp = y[0] * self.U_eigen(y)
        Gp[np.diag_indices_from(Gp)] -= b["c"] / (b["a"] * b["lam"])
        return 0.5 * float(np.sum(b["R"] * Gp * Gp))

    def loss(self, y: np.ndarray) -> float:
        return self.moments.loss_star + self.loss_gap(y)

    def gradient_norm(self, y: np.ndarray) -> float:
        b = self._basis
        u, s, D = y[0], y[1], y[2:]
        rl = b["a"] * b["lam"]
        O2, _ = self._need_bound()
        e = np.exp(-2.0 * s * b["R"])
        off_g = u**4 * float(np.sum(b["R"] ** 2 * O2 * e))
        diag_g = float(np.sum((u * u * rl * D - u * b["c"]) ** 2))
        gu = u * (float(rl @ (D * D)) + float(np.sum(b["RO2"] * e))) - float(b["c"] @ D)
        return float(np.sqrt(off_g + diag_g + gu * gu))

    def conserved(self, y: np.ndarray) -> float:
        return float(y[0] ** 2 - np.sum(self.U_eigen(y) ** 2))


FlowName = Literal["eigen", "reduced", "full"]

#: The flows by name: ``eigen`` (reduced ODE in Lambda's eigenbasis, d + 2 numbers), ``reduced``
#: ((U, u), d^2 + 1 numbers) and ``full`` (all weights, 2 (d+1)^2 numbers, autograd).
FLOWS: dict[str, type[FullLSAFlow] | type[ReducedLSAFlow] | type[EigenLSAFlow]] = {
    "eigen": EigenLSAFlow,
    "reduced": ReducedLSAFlow,
    "full": FullLSAFlow,
}


def make_flow(name: str, moments: LSAMoments) -> LSAFlow:
    """The flow called ``name`` (a key of :data:`FLOWS`) on the data ``moments``."""
    if name not in FLOWS:
        raise ParameterError(f"flow must be one of {sorted(FLOWS)}, got {name!r}")
    flow: LSAFlow = FLOWS[name](moments)
    return flow
