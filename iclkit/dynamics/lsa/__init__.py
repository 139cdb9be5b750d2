"""Gradient flow of one linear self-attention (LSA) layer on the population loss.

Zhang-Frei-Bartlett's linear-regression flow and its mixture-of-regressions analogue (MoR
paper, Sec. 5). The entry point is :func:`simulate_lsa` on one :class:`LSAConfig`; its building
blocks are the moments, the flows (eigen-reduced, reduced, full), :func:`simulate` (their
integration), the initialisations, :func:`lsa_convergence` (flow vs the sympy fixed point), a
Monte Carlo check of the loss and SGD on the literal model. Figures: :mod:`.plots`.
"""

from __future__ import annotations

from ..status import SolverStats, Status
from .config import LSAConfig, default_init_scale, rotated_lambda
from .convergence import LSAResult, lsa_convergence, simulate_lsa
from .fixed_points import find_fixed_points
from .flow import FLOWS, EigenLSAFlow, FullLSAFlow, ReducedLSAFlow, make_flow
from .init import LSAInit, random_init, structured_init
from .integrate import Simulation, simulate
from .moments import LSAMoments
from .montecarlo import monte_carlo_loss
from .training import train_lsa

__all__ = [
    "FLOWS",
    "EigenLSAFlow",
    "FullLSAFlow",
    "LSAConfig",
    "LSAInit",
    "LSAMoments",
    "LSAResult",
    "ReducedLSAFlow",
    "Simulation",
    "SolverStats",
    "Status",
    "default_init_scale",
    "find_fixed_points",
    "lsa_convergence",
    "make_flow",
    "monte_carlo_loss",
    "random_init",
    "rotated_lambda",
    "simulate",
    "simulate_lsa",
    "structured_init",
    "train_lsa",
]
