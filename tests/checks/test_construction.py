"""Construction checks pass on the Theorem 3.1 transformer and FAIL when it is built with a wrong
step size (injected through the API)."""

from __future__ import annotations

import pytest

from iclkit.checks.registry import run_check

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_equals_surrogate_passes_and_fails_with_wrong_step() -> None:
    ok = run_check("construction.equals_surrogate")
    assert ok.status == "PASS", ok.details
    # the transformer built with alpha = 0.5 while the reference gradient EM uses alpha = 1
    bad = run_check("construction.equals_surrogate", params={"construction_alpha": 0.5})
    assert bad.status == "FAIL" and float(bad.measured) > 1e-3  # type: ignore[arg-type]


def test_structure_checks() -> None:
    # the head count is a reported property (INFO), never a PASS
    r = run_check("construction.heads_and_depth")
    assert r.status == "INFO" and r.measured == 4, r.details
    per_iteration = r.details["layers_per_iteration_vs_M_symmetric"]
    assert per_iteration["128"] > 3 * per_iteration["16"]  # grows linearly in M
    r = run_check("construction.gap_within_certificate")
    assert r.status == "PASS", r.details


def test_rate_check_fails_with_wrong_step() -> None:
    # alpha = 0.3 over 4 iterations: the estimate stays near the init, the error stops decaying
    small = {"ns": [25, 50, 100], "seed_groups": (2, 4)}
    bad = run_check("construction.rate_n", params={**small, "construction_alpha": 0.3})
    assert bad.status == "FAIL" and float(bad.measured) > -0.3  # type: ignore[arg-type]


def test_rate_n_runs_the_transformer_with_its_floor_below_the_statistical_error() -> None:
    r = run_check("construction.rate_n", params={"ns": [200, 800, 3200], "seed_groups": (2, 4)})
    assert r.status == "PASS", r.details
    floor, stat = r.details["approximation_floor"], r.details["statistical_error"]
    assert len(floor) == len(stat) == 3
    assert all(f < 0.5 * s for f, s in zip(floor, stat, strict=True))
    assert r.details["layers"] > 100  # the transformer itself (M = 128, 4 iterations)


def test_rate_n_K3_reads_out_exactly_and_reports_both_floors() -> None:
    r = run_check(
        "construction.rate_n_K3", params={"ns": [640, 2560], "seed_groups": (2, 2), "T_outer": 4}
    )
    assert "error" not in r.details, r.details
    assert r.details["readout_relative_difference"] <= 1e-9
    for kind in ("prediction", "parameters"):
        assert max(r.details[f"floor_over_statistical_{kind}"]) < 1.0, r.details
    assert r.details["parameter_fit"]["slope"] < 0  # the parameter error falls with n
