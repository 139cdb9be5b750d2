"""Training dynamics of one-layer attention: two systems, one shape.

- :mod:`iclkit.dynamics.lsa`: gradient flow of a linear self-attention layer on the population
  loss (linear regression and the MoR analogue) against its sympy fixed point:
  ``simulate_lsa(LSAConfig(...)) -> LSAResult``.
- :mod:`iclkit.dynamics.softmax`: GD of one-layer softmax attention on feature tokens, with
  phase detection: ``simulate_softmax(SoftmaxConfig(...)) -> SoftmaxResult``.

Both results carry the shared :class:`~iclkit.dynamics.status.Status`, a ``message`` and
:class:`~iclkit.dynamics.status.SolverStats`. Figures live in the ``plots`` modules, which
nothing here imports.
"""

from __future__ import annotations

from . import lsa, softmax
from .lsa import LSAConfig, LSAResult, simulate_lsa
from .softmax import SoftmaxConfig, SoftmaxResult, detect_phases, simulate_softmax
from .status import SolverStats, Status

__all__ = [
    "LSAConfig",
    "LSAResult",
    "SoftmaxConfig",
    "SoftmaxResult",
    "SolverStats",
    "Status",
    "detect_phases",
    "lsa",
    "simulate_lsa",
    "simulate_softmax",
    "softmax",
]
