"""Fault tests: every registered check FAILs, through its own criterion, under a plausible fault.

Each case injects one fault through the check's ``params`` (or, for the head count, through a
realistic mutant of the construction) and asserts on the measured quantity that crossed the
band, not only on the status. ``pytest -m fault`` runs them all; a last test asserts that the
cases cover every check that ``iclkit check --list`` prints. The grids are small so that all of
them together take under a minute of CPU (2-3 minutes wall on a loaded 2-core machine).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from iclkit.checks.registry import NO_RESOLUTION, CheckResult, run_check
from iclkit.cli import main
from iclkit.constructions.gradient_em_transformer import heads as construction_heads
from iclkit.theory.bounds import lsa_fixed_point

pytestmark = [pytest.mark.fault, pytest.mark.usefixtures("one_torch_thread")]


def _measured(r: CheckResult) -> float:
    assert r.measured is not None, r.details
    return float(r.measured)


def _band(r: CheckResult) -> tuple[float, float]:
    low, high = r.details["band"]
    return float(low), float(high)


@dataclass(frozen=True)
class Fault:
    """One injected fault: the check, its params, what the fault is, and the assertion on the
    measured value that must have crossed the check's band."""

    check: str
    params: dict[str, Any]
    what: str
    crossed: Callable[[CheckResult], bool]
    patch: dict[str, Any] = field(default_factory=dict)


def _ar(d: int = 4, r: float = 0.8) -> np.ndarray:
    return np.array([[r ** abs(i - j) for j in range(d)] for i in range(d)])


_TIMES = np.logspace(0, 12, 400)
#: A small transformer run for the thm31 faults that target gradient EM's criteria.
_THM31_SMALL_TF = {"transformer_n": 500, "transformer_prompts": 20, "transformer_iterations": 1}


def _slope(r: CheckResult) -> float:
    return float(r.details["quantile_slope"]["slope"])


FAULTS: tuple[Fault, ...] = (
    Fault(
        "em.rate_n_high_snr",
        {"ns": [200, 800, 3200], "seed_groups": (4, 8), "alpha": 0.05},
        "step 0.05 for 10 iterations: the error stays near the start, no decay in n",
        lambda r: _measured(r) > _band(r)[1],
    ),
    Fault(
        "em.rate_d",
        {"ds": [2, 8, 32], "n": 1000, "seed_groups": (4, 8), "alpha": 0.05},
        "step 0.05: the error is the start's, the same for every d",
        lambda r: _measured(r) < _band(r)[0] and r.details["ci_outside_band"],
    ),
    Fault(
        "em.rate_n_low_snr",
        {"ns": [250, 1000, 4000], "seed_groups": (4, 8), "T_outer": 2},
        "too few iterations (2 instead of 2 sqrt(n/d) + 20): the random start is kept",
        lambda r: _measured(r) > _band(r)[1] and r.details["ci_outside_band"],
    ),
    Fault(
        "em.iterations_vs_log_n_over_d",
        {"alpha_algorithm": 0.5, "ns": [200, 800, 3200], "prompts": 32},
        "the algorithm runs step 0.5 while the prediction assumes 0.2",
        lambda r: r.details["rel_error"] > 0.2,
    ),
    Fault(
        "em.loglik_monotone",
        {"step_noise": 0.1, "T": 5, "prompts": 8},
        "a perturbed EM iterate (Gaussian noise 0.1 added after every M-step)",
        lambda r: _measured(r) < -1e-10,
    ),
    Fault(
        "em.gradient_em_to_em",
        {"T_inner": 2},
        "too few inner steps (2 instead of 1000)",
        lambda r: _measured(r) > 1e-8,
    ),
    Fault(
        "em.thm31_probability",
        {"T_outer": 2, "alpha": 0.3, "prompts": 100, "tested_n": [500, 2000, 8000]}
        | _THM31_SMALL_TF,
        "too few iterations (2 steps of 0.3): the start's error, constant in n, is kept; the "
        "quantile of Delta_y / rate grows with n and the held-out fraction drops",
        lambda r: _measured(r) < r.details["fraction_floor"] and _slope(r) > _band(r)[1],
    ),
    Fault(
        "em.thm31_probability",
        {"rate_exponent_shift": -0.25} | _THM31_SMALL_TF,
        "a rate too fast by n^(1/4) (the theory's rate x n^(-1/4)): the quantile of "
        "Delta_y / rate grows with n",
        lambda r: _slope(r) > _band(r)[1],
    ),
    Fault(
        "em.thm31_probability",
        {"relu_terms": 4, "prompts": 100, "tested_n": [500, 2000], "transformer_prompts": 50},
        "an E-step of 4 ReLU terms: the transformer's approximation floor reaches the "
        "statistical error",
        lambda r: r.details["transformer"]["floor_over_statistical"] > 0.25,
    ),
    Fault(
        "construction.equals_surrogate",
        {"construction_alpha": 0.5},
        "the transformer built with step 0.5, the reference with 1",
        lambda r: _measured(r) > 1e-9,
    ),
    Fault(
        "construction.heads_and_depth",
        {},
        "a mutant construction packing 8 heads per layer",
        lambda r: _measured(r) > 4,
        patch={"MAX_HEADS": 8},
    ),
    Fault(
        "construction.gap_within_certificate",
        {"construction_alpha": 0.5},
        "the transformer built with step 0.5, the exact gradient EM with 1",
        lambda r: _measured(r) > 1.0,
    ),
    Fault(
        "construction.rate_n",
        {"ns": [25, 50, 100], "seed_groups": (2, 4), "construction_alpha": 0.3},
        "the transformer built with step 0.3: 4 iterations do not reach the statistical floor",
        lambda r: _measured(r) > _band(r)[1],
    ),
    Fault(
        "construction.depth_vs_log_n",
        {"ns": [40, 160, 640, 2560], "prompts": 8, "T_max": 16, "construction_alpha": 0.6},
        "the transformer runs step 0.6 while the prediction assumes 0.3: T(n) grows at half "
        "the predicted slope",
        lambda r: _measured(r) < _band(r)[0] and r.details["ci_outside_band"],
    ),
    Fault(
        "construction.depth_vs_log_n",
        {"ns": [40, 160, 640, 2560], "prompts": 8, "T_max": 16, "relu_terms": 8},
        "an E-step of 8 ReLU terms: its approximation floor, not the sample size, sets the "
        "converged error",
        lambda r: r.details["floor_over_statistical_max"] > 0.5,
    ),
    Fault(
        "lsa.zfb_fixed_point",
        {"horizon": 5.0},
        "the flow stopped early (t = 5)",
        lambda r: _measured(r) > 1e-8,
    ),
    Fault(
        "lsa.mor_optimum",
        {"m1_scale": 1.05},
        "the reference optimum with a mis-scaled moment M1 (x 1.05)",
        lambda r: _measured(r) > 1e-8,
    ),
    Fault(
        "lsa.loss_monte_carlo",
        {"W_KQ": 1.2 * lsa_fixed_point(_ar(), 10).W_KQ, "n_prompts": 100_000},
        "weights 20% off the optimum",
        lambda r: _measured(r) > 4.0,
    ),
    Fault(
        "lsa.linear_rate",
        {"trajectory": (_TIMES, 1.0 / _TIMES)},
        "a trajectory with a 1/t tail instead of an exponential one",
        lambda r: r.details["r2"] < 0.98 and abs(r.details["relative_error"]) > 0.03,
    ),
    Fault(
        "lsa.linear_rate",
        {"predicted_factor": 0.5},
        "a predicted rate off by a factor 2 (the loss gap taken as linear in the deviation)",
        lambda r: r.details["relative_error"] > 0.03 and r.details["r2"] >= 0.98,
    ),
    Fault(
        "softmax.phase1_K2",
        {"eta": 40.0},
        "step 40: GD leaves its flow, phase times shift off the reference ODE",
        lambda r: r.details["max_relative_deviation"] > 0.02,
    ),
    Fault(
        "softmax.last_phase_rate",
        {"N": 20},
        "prompts of 20 tokens: the finite-N floor flattens the tail",
        lambda r: _measured(r) > -0.9,
    ),
    Fault(
        "softmax.imbalanced_stagewise",
        {"max_time": 100.0},
        "too few iterations (eta t = 100): the dominant queries never reach eps",
        lambda r: math.isinf(_measured(r)),
    ),
    Fault(
        "softmax.gd_tracks_flow",
        {"etas": (0.5, 40.0)},
        "step 40: GD is far from its flow",
        lambda r: _measured(r) > 0.02,
    ),
    Fault(
        "generalization.gap_vs_B",
        {"gaps": [[1.0, 1.1, 0.9], [1.05, 0.95, 1.0], [1.0, 1.02, 0.98]]},
        "a synthetic gap that does not decay in B (slope 0)",
        lambda r: _measured(r) > _band(r)[1],
    ),
    Fault(
        "generalization.gap_vs_L",
        {"gaps": [[1.0, 1.1, 0.9], [4.0, 4.2, 3.9], [16.0, 15.5, 16.4]]},
        "a synthetic gap growing like L^2",
        lambda r: _measured(r) > _band(r)[1],
    ),
)


@pytest.fixture
def patched(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Apply a fault's module-level patch to the construction's head packing."""
    for attr, value in request.param.items():
        monkeypatch.setattr(construction_heads, attr, value)
    yield


@pytest.mark.parametrize(
    ("fault", "patched"), [(f, f.patch) for f in FAULTS], ids=[f.check for f in FAULTS],
    indirect=["patched"],
)  # fmt: skip
def test_check_fails_under_fault(fault: Fault, patched: None) -> None:
    r = run_check(fault.check, params=fault.params)
    assert r.status == "FAIL", (fault.what, r.measured, r.details)
    assert "error" not in r.details, r.details  # failed through its criterion, not a crash
    assert fault.crossed(r), (fault.what, r.measured, r.details)
    assert r.details["resolution"]["note"] != NO_RESOLUTION, r.details["resolution"]


def test_faults_cover_every_listed_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list", "--json"]) == 0
    listed = {json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()}
    assert listed == {f.check for f in FAULTS}
    # the plain listing a reader sees: every name it prints is in a fault test's id
    assert main(["check", "--list"]) == 0
    plain = {ln.split()[0] for ln in capsys.readouterr().out.splitlines() if ln[:1].strip()}
    ids = [f.check for f in FAULTS]  # the ids of test_check_fails_under_fault
    assert plain == listed and all(any(name in i for i in ids) for name in plain)


# --------------------------------------------------------------------------- construction rates
#: Faults of the rate checks that run the transformer at large n (appended here; the coverage
#: test above reads ``FAULTS`` at run time, so it sees them).
RATE_FAULTS: tuple[Fault, ...] = (
    Fault(
        "construction.rate_n",
        {"ns": [200, 800, 3200], "seed_groups": (2, 4), "relu_terms": 8},
        "an E-step of 8 ReLU terms: its approximation floor, not the sample size, sets the "
        "error at large n",
        lambda r: max(r.details["floor_over_statistical"]) > 0.5,
    ),
    Fault(
        "construction.rate_n_K3",
        {"ns": [640, 2560], "seed_groups": (2, 2), "T_outer": 1},
        "one gradient-EM iteration instead of 6: the error stays near the local start",
        lambda r: _measured(r) > _band(r)[1],
    ),
    Fault(
        "construction.rate_n_K3",
        {"ns": [640, 2560], "seed_groups": (2, 2), "construction_alpha": 0.5},
        "the transformer built with step 0.5, the exact gradient EM with 2.5: after 6 "
        "iterations the transformer is far from the reference iterate",
        lambda r: max(r.details["floor_over_statistical_parameters"]) > 1.0,
    ),
    Fault(
        "construction.rate_n_low_snr",
        {"ns": [250, 1000, 4000], "seed_groups": (4, 4), "T_outer": 2},
        "too few iterations (2 instead of 2 sqrt(n/d) + 20): the random start is kept",
        lambda r: _measured(r) > _band(r)[1] and r.details["ci_outside_band"],
    ),
)
FAULTS = FAULTS + RATE_FAULTS


@pytest.mark.parametrize("fault", RATE_FAULTS, ids=[f.check for f in RATE_FAULTS])
def test_construction_rate_check_fails_under_fault(fault: Fault) -> None:
    r = run_check(fault.check, params=fault.params)
    assert r.status == "FAIL", (fault.what, r.measured, r.details)
    assert "error" not in r.details, r.details  # failed through its criterion, not a crash
    assert fault.crossed(r), (fault.what, r.measured, r.details)
    assert r.details["resolution"]["note"] != NO_RESOLUTION, r.details["resolution"]
