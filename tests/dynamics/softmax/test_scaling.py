"""Tests of the K-scaling sweep (iclkit.dynamics.softmax.scaling): phase I lasts ~K^2 / eta."""

from __future__ import annotations

import numpy as np
import pytest

from iclkit.dynamics.softmax.scaling import phase_time_scaling
from iclkit.theory.validation import ParameterError


def test_balanced_time_to_half_attention_scales_like_K_squared():
    res = phase_time_scaling([5, 10, 20, 40], N=1000, method="exact", eps=0.05)
    # docs/provenance.md §11: T1 ~ (1.15-1.45) K^2 / eta; the band for the fitted slope
    slope = res.slopes["balanced:half_attention"]
    assert 1.8 <= slope <= 2.2
    assert np.all(np.diff(res.times["balanced:half_attention"]) > 0)


def test_under_represented_phase_times_scale_like_K_squared():
    res = phase_time_scaling(
        [10, 20, 40], N=1000, p_mode="imbalanced", p_dominant=0.5, method="exact", eps=0.1
    )
    # t_b (overtake) and t_c (half attention) ~ 2.1 K^2 and ~3 K^2 (measured, §A.5)
    for ev in ("overtake_dominant", "half_attention"):
        assert 1.7 <= res.slopes[f"under_represented:{ev}"] <= 2.3
    assert "dominant:half_attention" not in res.slopes  # 0 at p_dominant = 1/2: no power law


def test_fit_slope_and_errors():
    with pytest.raises(ParameterError, match="^Ks"):
        phase_time_scaling([5])
    with pytest.raises(ParameterError, match="^method"):
        phase_time_scaling([5, 10], method="monte-carlo")
