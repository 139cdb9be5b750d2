"""LSA and softmax checks: pass on the simulators, and fail on a broken input."""

from __future__ import annotations

import numpy as np

from iclkit.checks.registry import run_check


def test_lsa_fixed_point_and_rate_pass() -> None:
    for name in ("lsa.zfb_fixed_point", "lsa.linear_rate"):
        r = run_check(name)
        assert r.status == "PASS", (name, r.details)


def test_lsa_monte_carlo_detects_wrong_weights() -> None:
    assert run_check("lsa.loss_monte_carlo").status == "PASS"
    # weights 20% off the optimum: the Monte Carlo loss is far above L* (many standard errors)
    from iclkit.theory.bounds import lsa_fixed_point

    lam = np.array([[0.8 ** abs(i - j) for j in range(4)] for i in range(4)])
    wrong = 1.2 * lsa_fixed_point(lam, 10).W_KQ
    bad = run_check("lsa.loss_monte_carlo", params={"W_KQ": wrong})
    assert bad.status == "FAIL" and float(bad.measured) > 4  # type: ignore[arg-type]


def test_softmax_flow_check_passes_and_fails_with_large_step() -> None:
    assert run_check("softmax.gd_tracks_flow", params={"etas": (0.5, 1.0)}).status == "PASS"
    # eta = 40 is far from the flow: phase times in eta t shift by more than 2%
    bad = run_check("softmax.gd_tracks_flow", params={"etas": (0.5, 40.0)})
    assert bad.status == "FAIL"
