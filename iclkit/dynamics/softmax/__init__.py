"""GD of one-layer softmax attention on feature-based tokens (Huang-Cheng-Liang).

The entry point is :func:`simulate_softmax` on one :class:`SoftmaxConfig`, returning a
:class:`SoftmaxResult`; :func:`detect_phases` finds the phases of a result and
:func:`phase_time_scaling` their times over a grid of K. Building blocks: the model
(:mod:`.model`), exact population sums (:mod:`.population`, :mod:`.exact`), the simulators
(:mod:`.methods`). Figures: :mod:`.plots`.
"""

from __future__ import annotations

from ..status import SolverStats, Status
from .config import SoftmaxConfig, default_horizon
from .phases import PhaseReport, detect_phases
from .population import mean_field_moments, population_moments
from .result import SoftmaxResult
from .scaling import ScalingResult, phase_time_scaling
from .simulate import simulate_softmax

__all__ = [
    "PhaseReport",
    "ScalingResult",
    "SoftmaxConfig",
    "SoftmaxResult",
    "SolverStats",
    "Status",
    "default_horizon",
    "detect_phases",
    "mean_field_moments",
    "phase_time_scaling",
    "population_moments",
    "simulate_softmax",
]
