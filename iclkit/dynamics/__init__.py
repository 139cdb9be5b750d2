"""Gradient-flow ODEs and GD simulators for linear and softmax attention.

Entry points:

- :func:`simulate` - integrate an LSA gradient flow (:class:`EigenLSAFlow`,
  :class:`ReducedLSAFlow`, :class:`FullLSAFlow`) from an initialisation (docs/lsa_dynamics.md).
- :func:`lsa_convergence` - flow vs the symbolic fixed point, in one call.
- :func:`simulate_softmax` - GD of one-layer softmax attention on feature tokens (exact,
  mean-field or Monte Carlo) and :func:`detect_phases` (docs/softmax_dynamics.md).
"""

from __future__ import annotations

from .integrate import Simulation, Status, simulate
from .lsa_convergence import lsa_convergence
from .lsa_flow import EigenLSAFlow, FullLSAFlow, ReducedLSAFlow
from .lsa_init import random_init, structured_init
from .lsa_moments import LSAMoments
from .phases import detect_phases
from .softmax_simulate import SoftmaxDynamicsConfig, SoftmaxTrajectory, simulate_softmax

__all__ = [
    "EigenLSAFlow",
    "FullLSAFlow",
    "LSAMoments",
    "ReducedLSAFlow",
    "Simulation",
    "SoftmaxDynamicsConfig",
    "SoftmaxTrajectory",
    "Status",
    "detect_phases",
    "lsa_convergence",
    "random_init",
    "simulate",
    "simulate_softmax",
    "structured_init",
]
