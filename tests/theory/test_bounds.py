"""Theorem bounds: assumption checks (hold / fail at the right place), formulas vs hand values,
and bad input as ParameterError naming the parameter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iclkit.theory import bounds
from iclkit.theory.validation import ParameterError

PI3 = (0.5, 0.3, 0.2)


# --------------------------------------------------------------------------- Theorem 3.1
def test_thm31_conditions_hand_values() -> None:
    r = bounds.theorem_3_1_conditions(400, 5, 3, 0.01, PI3, 20.0)
    by = {c.name: c for c in r.conditions}
    # hand-computed: d log^2(d K^2/delta) = 5 log^2(4500); (K^2/delta)^(1/3) = 900^(1/3);
    # (d/pi_min) log(K^2/delta) = 25 log(900); K rho log(K rho) = 7.5 log 7.5
    assert by["n_vs_d"].rhs == pytest.approx(5 * math.log(4500) ** 2)
    assert by["n_vs_K"].rhs == pytest.approx(900 ** (1 / 3))
    assert by["n_vs_pi"].rhs == pytest.approx(25 * math.log(900))
    assert by["snr"].rhs == pytest.approx(7.5 * math.log(7.5))
    assert r.holds and r.status == "satisfied" and "all 4 conditions hold" in r.message
    assert r.mark == "[2nd]"


def test_thm31_conditions_report_each_failure() -> None:
    r = bounds.theorem_3_1_conditions(300, 5, 3, 0.01, PI3, 15.0)
    failed = {c.name for c in r.conditions if not c.holds}
    assert failed == {"n_vs_d", "snr"}  # 300 < 354.1 and 15 < 15.11
    assert not r.holds and "n_vs_d" in r.message and "snr" in r.message
    # a larger constant C makes every condition harder
    strict = bounds.theorem_3_1_conditions(400, 5, 3, 0.01, PI3, 20.0, C=10.0)
    assert not strict.holds and strict.constant == 10.0
    assert strict.as_dict()["holds"] is False


@given(
    n=st.integers(2, 10**6),
    d=st.integers(1, 50),
    K=st.integers(1, 20),
    delta=st.floats(1e-6, 0.11),
    C=st.floats(0.1, 10.0),
)
def test_thm31_conditions_monotone_in_n(n: int, d: int, K: int, delta: float, C: float) -> None:
    pi = np.full(K, 1.0 / K)
    a = bounds.theorem_3_1_conditions(n, d, K, delta, pi, 50.0, C=C)
    b = bounds.theorem_3_1_conditions(2 * n, d, K, delta, pi, 50.0, C=C)
    for ca, cb in zip(a.conditions, b.conditions, strict=True):
        assert cb.holds >= ca.holds  # more data never breaks a sample-size condition
        assert ca.holds == (ca.lhs >= ca.rhs)


def test_thm31_error_bound_formula_and_rate() -> None:
    b = bounds.theorem_3_1_error_bound(1000, 5, 3, 0.01, PI3)
    rho, pmin = 2.5, 0.2
    want = math.sqrt(math.log(5 / 0.01)) * (
        math.sqrt(5 * 3 * rho**2 * math.log(1000 * 9 / 0.01) ** 2 / 1000)
        + math.sqrt(5 * 3 * math.log(9 / 0.01) / (1000 * pmin))
    )
    assert b.rate == pytest.approx(want, rel=1e-12)
    assert b.value == b.rate and b.probability == pytest.approx(0.91)
    assert "unknown" in b.constant_status and b.exponent == {"n": -0.5, "d": 0.5}
    # the rate decays like n^(-1/2) up to the log^2 factor
    b4 = bounds.theorem_3_1_error_bound(4000, 5, 3, 0.01, PI3, C=2.0)
    assert 0.5 < b4.rate / b.rate < 0.6 and b4.value == pytest.approx(2 * b4.rate)


def test_thm31_layers() -> None:
    L = bounds.theorem_3_1_layers(1000, 10, 3)
    assert L.layers == pytest.approx(3 * math.log(100)) and L.mark == "[2nd]"
    with pytest.raises(ParameterError, match="^n must be > d"):
        bounds.theorem_3_1_layers(10, 10, 3)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"n": 0}, "n"),
        ({"d": 0}, "d"),
        ({"K": 0}, "K"),
        ({"delta": 0.0}, "delta"),
        ({"delta": 0.2}, "delta"),  # 1 - 9 delta < 0
        ({"pi": (0.5, 0.5)}, "pi"),  # wrong length
        ({"pi": (0.5, 0.5, 0.0)}, "pi"),  # pi_min = 0
        ({"pi": (0.5, 0.3, 0.3)}, "pi"),  # does not sum to 1
        ({"snr": -1.0}, "snr"),
        ({"snr": float("nan")}, "snr"),
        ({"C": 0.0}, "C"),
    ],
)
def test_thm31_bad_input(kw: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"n": 400, "d": 5, "K": 3, "delta": 0.01, "pi": PI3, "snr": 20.0}
    args.update(kw)
    with pytest.raises(ParameterError, match=f"^{match}"):
        bounds.theorem_3_1_conditions(**args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- two mixtures
def test_two_mixture_regimes_and_rates() -> None:
    hi = bounds.two_mixture_rates(1000, 10, 5.0)
    assert hi.regime == "high" and hi.error.rate == pytest.approx(0.1)
    assert hi.layers.layers == pytest.approx(math.log(100))
    mid = bounds.two_mixture_rates(1000, 10, 0.5)  # (d/n)^(1/4) = 0.316 < 0.5 < 1
    assert mid.regime == "middle" and mid.error.rate == pytest.approx(0.2)
    assert mid.iterations.layers == pytest.approx(math.log(100) / 0.25)
    lo = bounds.two_mixture_rates(1000, 10, 0.1)
    assert lo.regime == "low" and lo.error.rate == pytest.approx(0.01**0.25)
    assert lo.error.exponent["n"] == -0.25 and hi.error.exponent["n"] == -0.5
    # low-SNR depth sqrt(n/d) log log(n/d) is far above the high-SNR log(n/d) (v1 review)
    assert lo.layers.layers == pytest.approx(10 * math.log(math.log(100)))
    assert lo.layers.layers > 3 * hi.layers.layers
    # with C = 10 the same eta = 5 is no longer "high"
    assert bounds.two_mixture_rates(1000, 10, 5.0, C=10.0).regime == "middle"


@pytest.mark.parametrize(
    ("args", "match"),
    [((10, 10, 1.0), "n must be > d"), ((100, 0, 1.0), "d"), ((100, 5, 0.0), "snr")],
)
def test_two_mixture_bad_input(args: tuple[int, int, float], match: str) -> None:
    with pytest.raises(ParameterError, match=f"^{match}"):
        bounds.two_mixture_rates(*args)


# --------------------------------------------------------------------------- generalization
def test_generalization_bound_scaling() -> None:
    g = bounds.generalization_bound(4, 1000, D=13, xi=0.05)
    iota = math.log(3.0)
    want = math.sqrt((16 * 4 * 169 * iota + math.log(20)) / 1000)
    assert g.rate == pytest.approx(want) and g.mark == "[RECON]"
    assert g.probability == pytest.approx(0.95)
    # O(L / sqrt(B)): x4 prompts halves it, x2 layers doubles it (up to the log(1/xi) term)
    g4 = bounds.generalization_bound(4, 4000, D=13)
    g8 = bounds.generalization_bound(8, 1000, D=13)
    assert g4.rate / g.rate == pytest.approx(0.5)
    assert g8.rate / g.rate == pytest.approx(2.0, rel=1e-3)
    assert g.exponent == {"B": -0.5, "L": 1.0}


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"L": 0}, "L"),
        ({"B": 0}, "B"),
        ({"D": 0}, "D"),
        ({"xi": 1.0}, "xi"),
        ({"xi": 0.0}, "xi"),
        ({"B_y": -1.0}, "B_y"),
        ({"M": 0}, "M"),
    ],
)
def test_generalization_bad_input(kw: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"L": 2, "B": 10, "D": 5}
    args.update(kw)
    with pytest.raises(ParameterError, match=f"^{match}"):
        bounds.generalization_bound(**args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- LSA
def test_lsa_condition_and_fixed_point_isotropic() -> None:
    d, N = 4, 20
    fp = bounds.lsa_fixed_point(np.eye(d), N)
    gamma = 1 + (d + 1) / N
    np.testing.assert_allclose(fp.G_star, np.eye(d) / gamma, rtol=1e-14)
    # ZFB isotropic minimum: L* = (d/2)(d+1)/(N+d+1)
    assert fp.loss_star == pytest.approx(d / 2 * (d + 1) / (N + d + 1), rel=1e-13)
    assert fp.c == pytest.approx((d / gamma**2) ** 0.25)
    np.testing.assert_allclose(fp.W_KQ[:d, :d] * fp.W_PV[d, d], fp.G_star, rtol=1e-14)
    # s^2 ||Gamma||_op sqrt(d) < 2 at the boundary s^2 = 2 / (gamma sqrt(d))
    s_crit = math.sqrt(2 / (gamma * math.sqrt(d)))
    assert bounds.lsa_convergence_condition(0.99 * s_crit, np.eye(d), N).holds
    bad = bounds.lsa_convergence_condition(1.01 * s_crit, np.eye(d), N)
    assert not bad.holds and "init_scale" in bad.message and bad.mark == "[READ-2nd]"


def test_lsa_fixed_point_is_stationary_non_isotropic() -> None:
    # independent check: the gradient of 2L(B) = tr(B Lam B^T Gam Lam) - 2 tr(B Lam^2) + tr Lam
    # (docs/provenance.md §10) vanishes at B = Gamma^-1
    lam = np.array([[1.0, 0.8, 0.64], [0.8, 1.0, 0.8], [0.64, 0.8, 1.0]])
    fp = bounds.lsa_fixed_point(lam, 15)
    G = fp.G_star
    grad = fp.Gamma @ lam @ G @ lam - lam @ lam
    assert np.abs(grad).max() < 1e-12


def test_lsa_mor_optimum_limits() -> None:
    d, N = 3, 10
    # K = 1, sigma = 0, tau = 1: the one-step GD optimum N / (N + d + 1)
    o = bounds.lsa_mor_optimum(np.eye(d), np.eye(d), np.eye(d), 0.0, N)
    np.testing.assert_allclose(o.G_star, N / (N + d + 1) * np.eye(d), rtol=1e-13)
    # isotropic MoR closed form g* = N |pi|^2 / ((N - 1)|pi|^2 + d + 2 + sigma^2 / tau^2)
    pi = np.array(PI3)
    p2, sigma = float(pi @ pi), 0.5
    o2 = bounds.lsa_mor_optimum(np.eye(d), p2 * np.eye(d), np.eye(d), sigma, N)
    g = N * p2 / ((N - 1) * p2 + d + 2 + sigma**2)
    np.testing.assert_allclose(o2.G_star, g * np.eye(d), rtol=1e-13)
    # symmetric two-component MoR: M1 = 0 -> G* = 0
    o3 = bounds.lsa_mor_optimum(np.eye(d), np.zeros((d, d)), np.eye(d), 0.1, N)
    assert np.abs(o3.G_star).max() == 0.0


@pytest.mark.parametrize(
    ("lam", "match"),
    [
        (np.array([[1.0, 2.0], [2.0, 1.0]]), "positive definite"),
        (np.array([[1.0, 0.1], [0.0, 1.0]]), "symmetric"),
        (np.ones(3), "a square"),
    ],
)
def test_lsa_bad_lambda(lam: np.ndarray, match: str) -> None:
    with pytest.raises(ParameterError, match=f"^Lambda must be {match}"):
        bounds.lsa_fixed_point(lam, 5)


def test_lsa_bad_scalars() -> None:
    with pytest.raises(ParameterError, match="^N"):
        bounds.lsa_gamma(np.eye(2), 0)
    with pytest.raises(ParameterError, match="^s"):
        bounds.lsa_convergence_condition(0.0, np.eye(2), 5)
    with pytest.raises(ParameterError, match="^M1"):
        bounds.lsa_mor_optimum(np.eye(2), np.eye(3), np.eye(2), 0.1, 5)
    with pytest.raises(ParameterError, match="^sigma"):
        bounds.lsa_mor_optimum(np.eye(2), np.eye(2), np.eye(2), -0.1, 5)


# --------------------------------------------------------------------------- softmax
def test_softmax_scalings_marked_as_measurements() -> None:
    bal = bounds.softmax_phase_scalings(10, 1e-3)
    assert bal.phase1 == pytest.approx(130.0) and bal.dominant is None
    assert bal.last_phase == pytest.approx(130.0 + 10 / 4e-3)
    assert "MEASURED" in bal.mark and "not the paper" in bal.mark
    imb = bounds.softmax_phase_scalings(10, 1e-3, p_dominant=0.5)
    assert imb.dominant == pytest.approx(1000.0) and imb.exponents["phase1_K"] == 2.0
    with pytest.raises(ParameterError, match="^K"):
        bounds.softmax_phase_scalings(1, 1e-3)
    with pytest.raises(ParameterError, match="^eps"):
        bounds.softmax_phase_scalings(5, 0.0)
    with pytest.raises(ParameterError, match="^p_dominant"):
        bounds.softmax_phase_scalings(5, 0.1, p_dominant=1.0)


def test_gradient_em_iterations_slope() -> None:
    gradient_em_iterations_slope = bounds.gradient_em_iterations_slope
    # alpha = 0.2: the error shrinks by 0.8 per iteration, so log(n/d) costs 1/(2 log 1.25)
    assert gradient_em_iterations_slope(0.2) == pytest.approx(1 / (2 * math.log(1.25)))
    assert gradient_em_iterations_slope(0.5) < gradient_em_iterations_slope(0.2)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ParameterError, match="^alpha"):
            gradient_em_iterations_slope(bad)
