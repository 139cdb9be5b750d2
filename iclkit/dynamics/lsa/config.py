"""One LSA gradient-flow run as one validated object: :class:`LSAConfig` (ZFB Thm 4.1; MoR Sec. 5).

The config names the prompt distribution (linear regression or the mixture of regressions, with
``Lambda = Cov(x)`` given by a spectrum and an optional seeded rotation), the initialisation
(ZFB Assumption 3.3 or random, with the default scale ``s^2 ||Gamma||_op sqrt(d) = 1`` inside the
theorem's condition ``< 2``), the flow's state space and the solver. Its defaults are the
defaults of ``iclkit dynamics lsa``. :func:`iclkit.dynamics.lsa.simulate_lsa` runs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from iclkit.theory.linear import LinearConfig
from iclkit.theory.mor import MoRConfig
from iclkit.theory.rng import make_generator
from iclkit.theory.validation import (
    ParameterError,
    as_float_array,
    check_int,
    check_memory,
    check_positive,
    check_real,
    check_seed,
)

from .flow import FLOWS, FlowName
from .init import LSAInit, random_init, structured_init
from .integrate import METHODS
from .moments import LSAMoments

__all__ = [
    "DEFAULT_SIGMA",
    "LSAConfig",
    "default_init_scale",
    "rotated_lambda",
]

#: Label noise sd when none is given: noiseless linear regression (ZFB's setting), and a
#: moderate 0.5 for the MoR model, whose population moments need sigma > 0.
DEFAULT_SIGMA = {"linear": 0.0, "mor": 0.5}

#: Default scale of the structured init: ``s^2 ||Gamma||_op sqrt(d) = 1``, half the bound 2 of
#: ZFB Thm 4.1's condition (and of its MoR analogue).
INIT_CONDITION_TARGET = 1.0

#: Dense (state x state) arrays an implicit solver holds: the Jacobian, its LU factors and
#: Radau's complex pair count as four (a lower bound: the memory estimate refuses only what
#: cannot fit).
JACOBIAN_COPIES = 4

#: scipy solvers that form dense Jacobians.
IMPLICIT_METHODS = ("Radau", "BDF", "LSODA")

#: (d x d) float64 matrices of the moments and the fixed-point solution.
MOMENT_COPIES = 16

#: Default scale when the condition is void (symmetric MoR, G* = 0): any s > 0 converges.
SYMMETRIC_INIT_SCALE = 0.5


def rotated_lambda(spectrum: tuple[float, ...], seed: int | None) -> np.ndarray:
    """``Lambda = Q diag(spectrum) Q^T`` with Q the orthogonal factor of a seeded Gaussian matrix.

    Parameters
    ----------
    spectrum : (d,)
        Eigenvalues of Lambda, all finite and > 0.
    seed : int or None
        Seed of the Gaussian (d, d) matrix whose QR factor rotates ``diag(spectrum)``; None keeps
        Lambda diagonal.

    Returns
    -------
    Lambda : (d, d) symmetric positive definite, float64.
    """
    spec = np.asarray(spectrum, dtype=np.float64)
    Lambda = np.diag(spec)
    if seed is None:
        return Lambda
    d = spec.shape[0]
    g = make_generator(seed)
    Q, _ = np.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64).numpy())
    Lambda = Q @ Lambda @ Q.T
    return 0.5 * (Lambda + Lambda.T)


def default_init_scale(moments: LSAMoments) -> float:
    """The init scale s with ``s^2 ||Gamma||_op sqrt(d) = 1`` (ZFB Thm 4.1 needs ``< 2``).

    ``||Gamma||_op`` is the largest eigenvalue of the symmetric part of Gamma (= (G*)^{-1} for
    the MoR analogue); for the symmetric two-component MoR model (G* = 0, no condition) it is
    :data:`SYMMETRIC_INIT_SCALE`.
    """
    if moments.c2 * moments.pi_sq == 0:
        return SYMMETRIC_INIT_SCALE
    g_op = float(np.linalg.eigvalsh(0.5 * (moments.Gamma + moments.Gamma.T)).max())
    return math.sqrt(INIT_CONDITION_TARGET) / math.sqrt(g_op * math.sqrt(moments.d))


def _choice(value: object, name: str, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        raise ParameterError(f"{name} must be one of {list(allowed)}, got {value!r}")


@dataclass(frozen=True)
class LSAConfig:
    """A gradient-flow run of one LSA layer on the population loss.

    Parameters
    ----------
    d : int
        Dimension of x (>= 1).
    n : int
        In-context examples per prompt (the paper's N, >= 1).
    data : {"linear", "mor"}
        ``w ~ N(0, I_d)`` (ZFB) or K components ``beta_k`` from the prior (MoR).
    K, pi, symmetric, prior, prior_scale
        MoR only: components, mixing weights (default uniform), the symmetric model
        ``beta_2 = -beta_1`` (G* = 0), the prior ``N(0, tau^2 I)`` or the sphere of radius tau,
        and tau.
    sigma : float or None
        Label noise sd, fixed for every prompt as the closed-form loss needs (linear >= 0,
        MoR > 0); None means :data:`DEFAULT_SIGMA` of the data model.
    lambda_spectrum : tuple of d floats or None
        Eigenvalues of ``Lambda = Cov(x)`` (default all 1).
    lambda_rotation_seed : int or None
        Rotate ``diag(lambda_spectrum)`` by a random orthogonal matrix (:func:`rotated_lambda`).
    init : {"structured", "random"}
        ZFB Assumption 3.3 (MoR analogue) or Gaussian live blocks.
    init_scale : float or None
        s > 0; None means :func:`default_init_scale`.
    seed : int
        Seed of Theta (structured) or of the random init.
    flow : {"eigen", "reduced", "full"} or None
        State space; None means ``eigen`` for the structured init, ``full`` for the random one
        (whose p, q != 0 leave the reduced manifold).
    method : {"LSODA", "Radau", "BDF", "RK45", "DOP853"}
        scipy solver.
    t_max, rtol, atol, gradient_tol : float
        Final time, solver tolerances, and the steady-state stop ``||grad L|| <= gradient_tol``.
    """

    d: int
    n: int
    data: Literal["linear", "mor"] = "linear"
    K: int = 2
    pi: tuple[float, ...] | None = None
    symmetric: bool = False
    prior: Literal["gaussian", "sphere"] = "gaussian"
    prior_scale: float = 1.0
    sigma: float | None = None
    lambda_spectrum: tuple[float, ...] | None = None
    lambda_rotation_seed: int | None = None
    init: Literal["structured", "random"] = "structured"
    init_scale: float | None = None
    seed: int = 0
    flow: FlowName | None = None
    method: str = "LSODA"
    t_max: float = 1e4
    rtol: float = 1e-11
    atol: float = 1e-13
    gradient_tol: float = 1e-13

    def __post_init__(self) -> None:
        # sizes are stored as Python ints (3.0 and np.int64(3) become 3)
        for name in ("d", "n"):
            object.__setattr__(self, name, check_int(getattr(self, name), name, minimum=1))
        if self.data == "mor":
            object.__setattr__(self, "K", check_int(self.K, "K", minimum=1))
        _choice(self.data, "data", ("linear", "mor"))
        _choice(self.init, "init", ("structured", "random"))
        _choice(self.flow, "flow", (None, *FLOWS))
        _choice(self.method, "method", tuple(METHODS))
        if self.init == "random" and self.flow not in (None, "full"):
            raise ParameterError(
                "flow: the random init has w^PV_21, w^KQ_21 != 0, so only flow='full' applies"
            )
        check_memory(float(min(self.memory_estimate(), 2**1000)), "d", "the LSA gradient flow")
        if self.lambda_spectrum is not None:
            spec = as_float_array(self.lambda_spectrum, "lambda_spectrum")
            if spec.shape != (self.d,):
                raise ParameterError(
                    f"lambda_spectrum must have d = {self.d} values, got {spec.size}"
                )
            if not np.all(np.isfinite(spec)) or spec.min() <= 0:
                raise ParameterError(
                    "lambda_spectrum: Lambda must be positive definite (all eigenvalues > 0), "
                    f"got {spec.tolist()}"
                )
        if self.pi is not None:  # a tuple of floats (MoRConfig checks it is a distribution)
            pi = as_float_array(self.pi, "pi").reshape(-1)
            object.__setattr__(self, "pi", tuple(float(v) for v in pi))
        if self.lambda_rotation_seed is not None:
            check_seed(self.lambda_rotation_seed, "lambda_rotation_seed")
        if self.sigma is not None:
            object.__setattr__(self, "sigma", check_real(self.sigma, "sigma", minimum=0.0))
        if self.init_scale is not None:
            check_positive(self.init_scale, "init_scale")
        check_seed(self.seed, "seed")
        for name in ("t_max", "rtol", "atol", "gradient_tol"):
            check_positive(getattr(self, name), name)
        self.data_config()  # the data model validates K, pi, prior, prior_scale and MoR's sigma

    def memory_estimate(self) -> int:
        """Bytes the flow's solver needs at least, from the state dimension ``D_s`` of the flow:
        ``d + 2`` (eigen), ``d^2 + 1`` (reduced), ``2 (d + 1)^2`` (full). The implicit solvers
        hold a few dense ``D_s x D_s`` Jacobians and factors (counted as
        :data:`JACOBIAN_COPIES`), the moments a few ``d x d`` matrices (:data:`MOMENT_COPIES`);
        an exact Python int (``d`` may be any int until this refuses it)."""
        d = int(self.d)
        dim = {"eigen": d + 2, "reduced": d * d + 1, "full": 2 * (d + 1) ** 2}[self.flow_name]
        copies = JACOBIAN_COPIES if self.method in IMPLICIT_METHODS else 0
        return 8 * (copies * dim * dim + MOMENT_COPIES * d * d + dim)

    @property
    def noise_sd(self) -> float:
        """The label noise sd: :attr:`sigma`, or :data:`DEFAULT_SIGMA` of the data model."""
        return float(DEFAULT_SIGMA[self.data] if self.sigma is None else self.sigma)

    @property
    def flow_name(self) -> FlowName:
        """The flow that runs: :attr:`flow`, or its default for the init."""
        if self.flow is not None:
            return self.flow
        return "eigen" if self.init == "structured" else "full"

    def Lambda(self) -> np.ndarray | None:
        """``Cov(x)`` (d, d) from the spectrum and rotation, or None for the identity."""
        if self.lambda_spectrum is None:
            return None
        return rotated_lambda(self.lambda_spectrum, self.lambda_rotation_seed)

    def data_config(self) -> LinearConfig | MoRConfig:
        """The prompt distribution as the sampler's config (also what the moments describe)."""
        Lambda = self.Lambda()
        lam = None if Lambda is None else tuple(map(tuple, Lambda))
        if self.data == "linear":
            return LinearConfig(d=self.d, n=self.n, sigma=self.noise_sd, Lambda=lam)
        return MoRConfig(
            d=self.d,
            K=self.K,
            n=self.n,
            sigma=self.noise_sd,
            pi=None if self.pi is None else tuple(self.pi),
            symmetric=self.symmetric,
            prior=self.prior,
            prior_scale=self.prior_scale,
            Lambda=lam,
        )

    def moments(self) -> LSAMoments:
        """The population moments of the prompt distribution."""
        if self.data == "linear":
            return LSAMoments.linear(self.d, self.n, Lambda=self.Lambda(), sigma=self.noise_sd)
        data = self.data_config()
        assert isinstance(data, MoRConfig)
        return LSAMoments.mor(data)

    def initialisation(self, moments: LSAMoments) -> LSAInit:
        """The initial weights (structured or random live blocks) at the configured scale."""
        scale = default_init_scale(moments) if self.init_scale is None else self.init_scale
        if self.init == "structured":
            return structured_init(moments, scale, seed=self.seed, warn=True)
        return random_init(moments, scale, seed=self.seed, blocks="live")
