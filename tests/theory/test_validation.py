"""Wrong types name the field; bounds that overflow float64 follow one convention."""

from __future__ import annotations

import math

import numpy as np
import pytest

from iclkit.dynamics.lsa.moments import LSAMoments
from iclkit.experiments.evaluation import EvalConfig
from iclkit.theory.bounds.lsa import lsa_fixed_point, lsa_mor_optimum
from iclkit.theory.bounds.mor import (
    generalization_bound,
    theorem_3_1_conditions,
    theorem_3_1_error_bound,
    theorem_3_1_layers,
    two_mixture_rates,
)
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError, check_finite_result, no_overflow

HUGE = 10**400  # an int beyond float64


@pytest.mark.parametrize(
    ("field", "value"),
    [("Lambda", "identity"), ("pi", "abc"), ("symmetric", "no"), ("d", "3"), ("snr", "1")],
)
def test_mor_config_wrong_types_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ParameterError, match=f"^{field} "):
        MoRConfig(**{"d": 2, field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value"), [("alpha", math.nan), ("rho", math.inf)])
def test_eval_config_refuses_non_finite(field: str, value: float) -> None:
    with pytest.raises(ParameterError, match=f"^{field} must be finite"):
        EvalConfig(**{field: value})  # type: ignore[arg-type]


OVERFLOWING = [
    ("L", lambda: generalization_bound(HUGE, 1, D=4)),
    ("B_y", lambda: generalization_bound(3, 1, D=4, B_y=1e300)),
    ("d", lambda: theorem_3_1_conditions(10, HUGE, 2, 0.01, [0.5, 0.5], 10.0)),
    ("d", lambda: theorem_3_1_error_bound(10, HUGE, 2, 0.01, [0.5, 0.5])),
    ("n", lambda: theorem_3_1_layers(HUGE, 1, 3)),
    ("n", lambda: two_mixture_rates(HUGE, 1, 10.0)),
    ("Lambda", lambda: lsa_mor_optimum(np.eye(2) * 1e200, np.eye(2), np.eye(2), 1.0, 3)),
    ("Lambda", lambda: lsa_fixed_point(np.eye(2) * 1e300, 3)),
    ("prior_scale", lambda: LSAMoments.mor(MoRConfig(d=2, sigma=1.0, prior_scale=1e100))),
    ("sigma", lambda: LSAMoments.mor(MoRConfig(d=2, sigma=1e200)).loss_star),
]


@pytest.mark.parametrize(
    ("name", "call"), OVERFLOWING, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OVERFLOWING)]
)
def test_overflowing_bounds_raise_one_clean_error(name: str, call: object) -> None:
    with pytest.raises(ParameterError, match=f"^{name}: .* overflows float64"):
        call()  # type: ignore[operator]


def test_convention_helpers() -> None:
    with pytest.raises(ParameterError, match="^x: f overflows float64"):
        with no_overflow("f", {"x": 1e300, "y": 1.0}):
            _ = math.exp(1e3)
    check_finite_result((1.0, np.ones(2)), "f", {"x": 1.0})
    with pytest.raises(ParameterError, match="overflows float64"):
        check_finite_result(np.array([1.0, math.inf]), "f", {"x": 1.0})


def test_singular_lsa_optimum_is_a_parameter_error() -> None:
    with pytest.raises(ParameterError, match="^M2: .* singular"):
        lsa_mor_optimum(np.eye(2), np.zeros((2, 2)), np.zeros((2, 2)), 0.0, 3)


def test_memory_estimates_refuse_before_allocating() -> None:
    from iclkit.theory.features import FeatureConfig
    from iclkit.theory.mor import sample_mor
    from iclkit.theory.validation import check_memory

    check_memory(1024, "x", "a small thing")  # never asks the system
    with pytest.raises(
        ParameterError, match=r"^batch_size: sampling .* GiB of memory, .* available"
    ):
        sample_mor(MoRConfig(d=5), 999_999_999_999, seed=0)
    with pytest.raises(ParameterError, match="^n: sampling"):
        sample_mor(MoRConfig(d=5, n=10**10), 10, seed=0)
    with pytest.raises(ParameterError, match="^K: .* features"):
        FeatureConfig(K=999_999_999_999, N=10)
