"""GD of one-layer softmax attention on feature-based tokens (Huang-Cheng-Liang).

The model, exact population sums, the simulators (exact, mean-field, Monte Carlo), phase
detection and the phase-time scaling in K.
"""

from __future__ import annotations

from .phases import detect_phases
from .simulate import SoftmaxDynamicsConfig, SoftmaxTrajectory, simulate_softmax

__all__ = ["SoftmaxDynamicsConfig", "SoftmaxTrajectory", "detect_phases", "simulate_softmax"]
