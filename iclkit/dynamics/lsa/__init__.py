"""Gradient flow of one linear self-attention (LSA) layer on the population loss.

Zhang-Frei-Bartlett's linear-regression flow and its mixture-of-regressions analogue (MoR
paper, Sec. 5): moments, the loss, the sympy fixed point, the flows (eigen-reduced, reduced,
full), their integration, initialisations, a Monte Carlo check and SGD on the literal model.
"""

from __future__ import annotations

from .convergence import lsa_convergence
from .flow import EigenLSAFlow, FullLSAFlow, ReducedLSAFlow
from .init import random_init, structured_init
from .integrate import Simulation, simulate
from .moments import LSAMoments

__all__ = [
    "EigenLSAFlow",
    "FullLSAFlow",
    "LSAMoments",
    "ReducedLSAFlow",
    "Simulation",
    "lsa_convergence",
    "random_init",
    "simulate",
    "structured_init",
]
