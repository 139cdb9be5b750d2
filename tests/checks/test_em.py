"""EM checks pass on the reference algorithms and FAIL when a wrong step size is injected."""

from __future__ import annotations

import pytest

from iclkit.checks.registry import run_check

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gradient_em_to_em_passes_and_fails_with_wrong_step() -> None:
    ok = run_check("em.gradient_em_to_em")
    assert ok.status == "PASS" and ok.measured is not None and float(ok.measured) < 1e-10
    # alpha * lambda_max(S_k) > 2: the inner loop diverges
    bad = run_check("em.gradient_em_to_em", params={"alpha": 10.0})
    assert bad.status == "FAIL"
    assert bad.details["step_condition_alpha_lambda_max_lt_2"] is False
    # too few inner steps: gradient EM has not reached the EM step
    assert run_check("em.gradient_em_to_em", params={"T_inner": 2}).status == "FAIL"


def test_loglik_monotone_passes() -> None:
    r = run_check("em.loglik_monotone", params={"T": 10})
    assert r.status == "PASS" and r.details["log_likelihood_gain_mean"] > 0


def test_rate_check_fails_with_tiny_step() -> None:
    small = {"ns": [200, 800, 3200], "seed_groups": (4, 8)}
    assert run_check("em.rate_n_high_snr", params=small).status == "PASS"
    # alpha = 0.05 for 10 iterations: the estimate stays near the init, the error does not decay
    bad = run_check("em.rate_n_high_snr", params={**small, "alpha": 0.05})
    assert bad.status == "FAIL" and float(bad.measured) > -0.2  # type: ignore[arg-type]
