"""Tests of iclkit.dynamics.lsa.config and simulate_lsa (one config, one entry point)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from iclkit.dynamics import LSAConfig, LSAResult, Status, simulate_lsa
from iclkit.dynamics.lsa import (
    EigenLSAFlow,
    FullLSAFlow,
    LSAMoments,
    default_init_scale,
    random_init,
    rotated_lambda,
    simulate,
    structured_init,
)
from iclkit.theory.validation import ParameterError


def test_simulate_lsa_equals_the_building_blocks() -> None:
    config = LSAConfig(d=3, n=8, lambda_spectrum=(0.5, 1.0, 2.0), lambda_rotation_seed=4)
    res = simulate_lsa(config)
    assert isinstance(res, LSAResult) and res.config is config
    m = LSAMoments.linear(3, 8, Lambda=rotated_lambda((0.5, 1.0, 2.0), 4))
    scale = 1.0 / math.sqrt(
        float(np.linalg.eigvalsh(0.5 * (m.Gamma + m.Gamma.T)).max()) * math.sqrt(3)
    )
    assert default_init_scale(m) == scale
    sim = simulate(
        EigenLSAFlow(m), structured_init(m, scale, seed=0), (0.0, 1e4), gradient_tol=1e-13
    )
    np.testing.assert_array_equal(res.simulation.times, sim.times)
    np.testing.assert_array_equal(res.simulation.G_final, sim.G_final)
    assert res.status is Status.CONVERGED and res.status == sim.status
    assert res.stats.steps == sim.stats.steps and res.stats.method == "LSODA"
    assert res.to_json()["data"]["N"] == 8


def test_random_init_runs_the_full_flow() -> None:
    config = LSAConfig(d=2, n=5, init="random", seed=3, t_max=5.0)
    res = simulate_lsa(config)
    m = LSAMoments.linear(2, 5)
    sim = simulate(
        FullLSAFlow(m),
        random_init(m, default_init_scale(m), seed=3),
        (0.0, 5.0),
        gradient_tol=1e-13,
    )
    assert config.flow_name == "full" and res.simulation.flow.name == "full"
    np.testing.assert_array_equal(res.simulation.final_state, sim.final_state)
    assert res.status is Status.MAX_TIME and "t1" in res.message


def test_defaults_resolve_per_data_model() -> None:
    assert LSAConfig(d=2, n=3).noise_sd == 0.0
    assert LSAConfig(d=2, n=3, data="mor").noise_sd == 0.5
    assert LSAConfig(d=2, n=3).Lambda() is None


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"d": 0}, "d"),
        ({"n": 0}, "n"),
        ({"data": "logistic"}, "data"),
        ({"init": "zero"}, "init"),
        ({"flow": "fast"}, "flow"),
        ({"init": "random", "flow": "reduced"}, "flow"),
        ({"method": "Euler"}, "method"),
        ({"lambda_spectrum": (1.0,)}, "lambda_spectrum"),
        ({"lambda_spectrum": (1.0, 0.0)}, "lambda_spectrum"),
        ({"lambda_rotation_seed": -1}, "lambda_rotation_seed"),
        ({"sigma": -0.1}, "sigma"),
        ({"init_scale": 0.0}, "init_scale"),
        ({"seed": -1}, "seed"),
        ({"t_max": 0.0}, "t_max"),
        ({"rtol": -1.0}, "rtol"),
        ({"gradient_tol": 0.0}, "gradient_tol"),
        ({"data": "mor", "K": 3, "pi": (0.5, 0.5)}, "pi"),
        ({"data": "mor", "sigma": 0.0}, "sigma"),
    ],
)
def test_bad_field_names_itself(kwargs: dict, name: str) -> None:
    fields = {"d": 2, "n": 3, **kwargs}
    with pytest.raises(ParameterError, match=f"^{name}"):
        LSAConfig(**fields)


def test_simulate_lsa_needs_a_config() -> None:
    with pytest.raises(ParameterError, match="^config"):
        simulate_lsa({"d": 2, "n": 3})  # type: ignore[arg-type]


def test_importing_the_dynamics_and_its_plots_keeps_the_backend() -> None:
    code = (
        "import matplotlib; matplotlib.use('svg'); import iclkit, iclkit.dynamics, "
        "iclkit.dynamics.lsa.plots, iclkit.dynamics.softmax.plots; "
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
