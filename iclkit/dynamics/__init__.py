"""Training dynamics of one-layer attention: two systems, one shape.

- :mod:`iclkit.dynamics.lsa`: gradient flow of a linear self-attention layer on the population
  loss (linear regression and the MoR analogue) against its sympy fixed point.
- :mod:`iclkit.dynamics.softmax`: GD of one-layer softmax attention on feature tokens, with
  phase detection.

Both return a result carrying the shared :class:`~iclkit.dynamics.status.Status`.
"""

from __future__ import annotations

from .lsa import (
    EigenLSAFlow,
    FullLSAFlow,
    LSAMoments,
    ReducedLSAFlow,
    Simulation,
    lsa_convergence,
    random_init,
    simulate,
    structured_init,
)
from .softmax import SoftmaxDynamicsConfig, SoftmaxTrajectory, detect_phases, simulate_softmax
from .status import SolverStats, Status

__all__ = [
    "EigenLSAFlow",
    "FullLSAFlow",
    "LSAMoments",
    "ReducedLSAFlow",
    "Simulation",
    "SoftmaxDynamicsConfig",
    "SoftmaxTrajectory",
    "SolverStats",
    "Status",
    "detect_phases",
    "lsa_convergence",
    "random_init",
    "simulate",
    "simulate_softmax",
    "structured_init",
]
