"""Helpers of ``construction.depth_vs_log_n``: the iteration count and the layers per iteration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from iclkit.checks.depth import iterations_to_reach, layers_per_iteration
from iclkit.constructions.gradient_em_transformer import layer_count
from iclkit.theory.validation import ParameterError


def test_iterations_to_reach_interpolates_a_geometric_curve() -> None:
    """error_t = floor + c kappa^t: the crossing of 2 x final is found between iterations."""
    kappa, floor = 0.7, 1e-3
    curve = floor + 0.3 * kappa ** np.arange(40)
    t = iterations_to_reach(curve, 2.0)
    exact = math.log(0.3 / (2 * curve[-1] - floor)) / math.log(1 / kappa)
    assert abs(t - exact) < 0.1


def test_iterations_to_reach_start_below_target() -> None:
    assert iterations_to_reach(np.array([1.0, 1.0, 1.0]), 2.0) == 0.0


@pytest.mark.parametrize("bad", [0.5, -1.0])
def test_iterations_to_reach_rejects_factor(bad: float) -> None:
    with pytest.raises(ParameterError, match="factor"):
        iterations_to_reach(np.array([1.0, 0.5]), bad)


def test_iterations_to_reach_rejects_nonpositive_curve() -> None:
    with pytest.raises(ParameterError, match="curve"):
        iterations_to_reach(np.array([1.0, 0.0]), 2.0)


@pytest.mark.parametrize("M", [8, 16, 32, 64, 128])
def test_layers_per_iteration_is_linear_in_M(M: int) -> None:
    assert layers_per_iteration(M) == math.ceil((M + 2) / 4) + 1
    T = 7
    assert layer_count(2, T, 1, M, symmetric=True) == T * layers_per_iteration(M) + 1
