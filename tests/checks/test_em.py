"""EM checks pass on the reference algorithms and FAIL when a wrong step size is injected."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iclkit.checks.em import PI3
from iclkit.checks.em_probability import quantile_slope
from iclkit.checks.inits import local_init
from iclkit.checks.registry import run_check
from iclkit.constructions.gradient_em_transformer import build_gradient_em_transformer
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.validation import ParameterError

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


# ---------------------------------------------------------------- Theorem 3.1 probability
def test_quantile_slope_recovers_a_known_power_and_its_interval() -> None:
    rng = np.random.default_rng(0)
    ns = [500, 1000, 2000, 4000, 8000]
    # q(n) of base * n^0.25 is the base quantile times n^0.25: the slope is 0.25 exactly
    ratios = [rng.exponential(size=400) * n**0.25 for n in ns]
    slope, ci, q, q_ci = quantile_slope(ratios, ns, 0.91, seed=1)
    assert abs(slope - 0.25) < 0.06 and ci[0] < 0.25 < ci[1]
    assert all(lo <= qq <= hi for qq, (lo, hi) in zip(q, q_ci, strict=True))
    flat = quantile_slope([rng.exponential(size=400) for _ in ns], ns, 0.91, seed=1)
    assert ci[0] > flat[0] + 0.1  # the power is resolved against a flat quantile
    with pytest.raises(ParameterError, match="ns"):
        quantile_slope(ratios[:1], ns[:1], 0.91, seed=1)


def test_thm31_probability_refuses_calibrating_at_a_tested_n() -> None:
    r = run_check("em.thm31_probability", params={"calibration_n": 500, "tested_n": [500, 1000]})
    assert r.status == "FAIL" and "calibration_n" in r.details["error"]


def test_transformer_is_equivariant_under_the_checks_rescaling() -> None:
    """The check runs every prompt through one construction built for sigma_0, after rescaling
    y and the start by c = sigma_0 / sigma_b: the prediction scaled back must equal the one of a
    construction built for the prompt's own sigma_b (to float64 round-off)."""
    cfg = MoRConfig(d=3, K=3, n=60, snr=20.0, pi=PI3, prior="sphere")
    batch = sample_mor(cfg, 2, seed=5)
    start = local_init(batch.betas, 0.1, 6)
    sig = [float(s) for s in batch.sigma]
    assert abs(sig[0] - sig[1]) > 1e-3  # two different sigmas: the rescaling is exercised
    c = sig[0] / sig[1]
    own = build_gradient_em_transformer(3, 3, 60, sig[1], 1, 1, 2.0, 4, symmetric=False, pi=PI3)
    one = build_gradient_em_transformer(3, 3, 60, sig[0], 1, 1, 2.0, 4, symmetric=False, pi=PI3)
    b = batch.select(slice(1, 2))
    _, y_own = own(b.X_train, b.y_train, start[1:], b.x_query)
    _, y_one = one(b.X_train, c * b.y_train, c * start[1:], b.x_query)
    assert torch.allclose(y_one / c, y_own, rtol=1e-9, atol=1e-12), (y_one / c, y_own)
