"""Tests of the reference algorithms (iclkit.constructions.algorithms).

Independent computations used here: a per-example Python/numpy loop for the E-step and the
gradient step, numpy's least squares for the weighted M-step, the closed form
Sigma_hat^{-1} m of the exact EM step, and the algebraic identity between the tied (symmetric)
and untied two-component updates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from iclkit.constructions import algorithms as alg
from iclkit.theory.metrics import parameter_error, sign_invariant_error
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.rng import make_generator
from iclkit.theory.validation import ParameterError


def _prompts(d: int, K: int, n: int, B: int, seed: int, snr: float = 5.0, symmetric: bool = False):
    batch = sample_mor(MoRConfig(d=d, K=K, n=n, snr=snr, symmetric=symmetric), B, seed=seed)
    g = make_generator(seed + 1)
    init = batch.betas + 0.3 * torch.randn(batch.betas.shape, generator=g, dtype=torch.float64)
    return batch, init


def _numpy_responsibilities(X, y, betas, pi, sigma):
    """Per-example loop, written independently of the batched code."""
    B, n, _ = X.shape
    K = betas.shape[1]
    gamma = np.zeros((B, n, K))
    for b in range(B):
        for i in range(n):
            logp = np.array(
                [
                    math.log(pi[b, k])
                    - (y[b, i] - X[b, i] @ betas[b, k]) ** 2 / (2 * sigma[b] ** 2)
                    for k in range(K)
                ]
            )
            logp -= logp.max()
            gamma[b, i] = np.exp(logp) / np.exp(logp).sum()
    return gamma


@given(d=st.integers(1, 4), K=st.integers(1, 4), n=st.integers(2, 12), seed=st.integers(0, 10**6))
def test_responsibilities_match_per_example_loop(d: int, K: int, n: int, seed: int) -> None:
    batch, init = _prompts(d, K, n, 3, seed)
    X, y = batch.X_train, batch.y_train
    got = alg.responsibilities(X, y, init, batch.pi, batch.sigma).numpy()
    ref = _numpy_responsibilities(
        X.numpy(), y.numpy(), init.numpy(), batch.pi.numpy(), batch.sigma.numpy()
    )
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


@given(d=st.integers(1, 4), K=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_em_m_step_is_weighted_least_squares(d: int, K: int, seed: int) -> None:
    n = 6 * d + 10
    batch, init = _prompts(d, K, n, 2, seed)
    X, y = batch.X_train, batch.y_train
    betas, pi = alg.em_step(X, y, init, None, batch.sigma, estimate_pi=True)
    gamma = alg.responsibilities(X, y, init, None, batch.sigma).numpy()
    for b in range(2):
        for k in range(K):
            w = np.sqrt(gamma[b, :, k])
            ref = np.linalg.lstsq(w[:, None] * X[b].numpy(), w * y[b].numpy(), rcond=None)[0]
            np.testing.assert_allclose(betas[b, k].numpy(), ref, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(pi[b].numpy(), gamma[b].mean(0), rtol=1e-12)


@given(
    d=st.integers(1, 5),
    K=st.integers(1, 4),
    n=st.integers(5, 60),
    seed=st.integers(0, 10**6),
    estimate_pi=st.booleans(),
)
def test_em_never_decreases_log_likelihood(
    d: int, K: int, n: int, seed: int, estimate_pi: bool
) -> None:
    batch, init = _prompts(d, K, n, 4, seed, snr=2.0)
    res = alg.em(batch.X_train, batch.y_train, init, batch.sigma, T=8, estimate_pi=estimate_pi)
    ll = res.log_likelihood
    # EM's monotonicity is exact; allow float64 round-off relative to |ll|.
    assert bool((ll.diff(dim=1) >= -1e-9 * ll.abs()[:, :-1].clamp_min(1.0)).all())


@given(d=st.integers(1, 5), K=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_gradient_em_with_many_inner_steps_equals_em(d: int, K: int, seed: int) -> None:
    """T_inner -> infinity: the inner loop is GD on a strongly convex quadratic, converging to
    the weighted least-squares solution S_k^{-1} m_k computed by a linear solve. With
    alpha = 1/lambda_max the error contracts by (1 - 1/kappa) per step (kappa = global condition
    number over prompts and components), so 40 kappa steps shrink it by e^-40 ~ 4e-18."""
    n = 20 * d + 40
    batch, init = _prompts(d, K, n, 3, seed, snr=4.0)
    X, y = batch.X_train, batch.y_train
    gamma = alg.responsibilities(X, y, init, None, batch.sigma)
    S, m = alg.weighted_moments(X, y, gamma)
    closed = torch.linalg.solve(S, m[..., None])[..., 0]
    eig = torch.linalg.eigvalsh(S)
    kappa = float(eig.max() / eig.min())
    if kappa > 1e3:  # a component with (almost) no mass: the limit is ill-conditioned
        return
    alpha = 1.0 / float(eig.max())
    steps = int(40 * kappa) + 10
    g_betas, _ = alg.gradient_em_step(X, y, init, None, batch.sigma, T_inner=steps, alpha=alpha)
    assert (g_betas - closed).abs().max().item() < 1e-8
    e_betas, _ = alg.em_step(X, y, init, None, batch.sigma, estimate_pi=False)
    assert (e_betas - closed).abs().max().item() < 1e-10


@given(d=st.integers(1, 5), seed=st.integers(0, 10**6))
def test_symmetric_gradient_em_with_many_inner_steps_equals_tanh_em(d: int, seed: int) -> None:
    """Closed form of the symmetric EM step (docs/provenance.md §4): beta = Sigma_hat^{-1} m with
    m = (1/n) sum_i tanh(y_i x_i^T beta / sigma^2) y_i x_i. alpha = 1 and n >= 40 d keep
    ||I - Sigma_hat|| well below 1, so 400 inner steps converge to round-off."""
    n = 40 * d + 40
    batch, init = _prompts(d, 2, n, 3, seed, symmetric=True)
    X, y, beta = batch.X_train, batch.y_train, init[:, 0]
    c = torch.tanh(y * torch.einsum("bnd,bd->bn", X, beta) / batch.sigma[:, None] ** 2)
    m = torch.einsum("bn,bnd->bd", c * y, X) / n
    closed = torch.linalg.solve(X.transpose(1, 2) @ X / n, m[..., None])[..., 0]
    got = alg.symmetric_gradient_em_step(X, y, beta, batch.sigma, T_inner=400, alpha=1.0)
    assert (got - closed).abs().max().item() < 1e-8


@given(
    d=st.integers(1, 4),
    n=st.integers(2, 25),
    seed=st.integers(0, 10**6),
    alpha=st.floats(0.05, 1.5),
)
def test_symmetric_step_is_average_of_untied_steps(d: int, n: int, seed: int, alpha: float) -> None:
    """With betas = (b, -b) and pi = 1/2, gamma_1 - gamma_2 = tanh(y x^T b / sigma^2), so the
    tied update with step alpha equals (b1' - b2')/2 of the untied update with step 2 alpha."""
    batch, init = _prompts(d, 2, n, 3, seed, symmetric=True)
    X, y, b = batch.X_train, batch.y_train, init[:, 0]
    tied = alg.symmetric_gradient_em_step(X, y, b, batch.sigma, T_inner=1, alpha=alpha)
    untied, _ = alg.gradient_em_step(
        X, y, torch.stack([b, -b], 1), None, batch.sigma, T_inner=1, alpha=2 * alpha
    )
    torch.testing.assert_close(tied, (untied[:, 0] - untied[:, 1]) / 2, rtol=1e-10, atol=1e-12)


@given(d=st.integers(1, 4), K=st.integers(1, 3), n=st.integers(2, 15), seed=st.integers(0, 10**6))
def test_gradient_step_matches_per_example_sum(d: int, K: int, n: int, seed: int) -> None:
    batch, init = _prompts(d, K, n, 2, seed)
    X, y = batch.X_train, batch.y_train
    got, _ = alg.gradient_em_step(X, y, init, batch.pi, batch.sigma, T_inner=1, alpha=0.7)
    gamma = _numpy_responsibilities(
        X.numpy(), y.numpy(), init.numpy(), batch.pi.numpy(), batch.sigma.numpy()
    )
    Xn, yn, bn = X.numpy(), y.numpy(), init.numpy()
    for b in range(2):
        for k in range(K):
            grad = (
                sum(gamma[b, i, k] * (yn[b, i] - Xn[b, i] @ bn[b, k]) * Xn[b, i] for i in range(n))
                / n
            )
            np.testing.assert_allclose(
                got[b, k].numpy(), bn[b, k] + 0.7 * grad, rtol=1e-10, atol=1e-12
            )


@pytest.mark.parametrize("K", [1, 2, 3])
def test_true_parameters_are_near_fixed_point_at_high_snr(K: int) -> None:
    """At SNR 50 and n = 4000, one EM step from the truth moves it by about the statistical
    error sigma sqrt(d K / n) (here ~0.01 relative), far less than the 0.05 tolerance."""
    batch = sample_mor(MoRConfig(d=4, K=K, n=4000, snr=50.0), 8, seed=K)
    betas, _ = alg.em_step(
        batch.X_train, batch.y_train, batch.betas, batch.pi, batch.sigma, estimate_pi=False
    )
    rel = parameter_error(betas, batch.betas, relative=True)
    assert float(rel.max()) < 0.05
    sym = sample_mor(MoRConfig(d=4, K=2, n=4000, snr=50.0, symmetric=True), 8, seed=9)
    b = alg.symmetric_gradient_em_step(
        sym.X_train, sym.y_train, sym.betas[:, 0], sym.sigma, T_inner=5
    )
    assert (
        float((sign_invariant_error(b, sym.betas[:, 0]) / sym.betas[:, 0].norm(dim=-1)).max())
        < 0.05
    )


def test_gradient_em_converges_from_local_init() -> None:
    batch, init = _prompts(5, 3, 2000, 16, 0, snr=8.0)
    res = alg.gradient_em(
        batch.X_train, batch.y_train, init, batch.sigma, T_outer=30, T_inner=2, estimate_pi=True
    )
    start = parameter_error(init, batch.betas, relative=True)
    end = parameter_error(res.betas, batch.betas, relative=True)
    assert float(end.median()) < 0.1 * float(start.median())


def test_symmetric_output_is_tied() -> None:
    batch, init = _prompts(3, 2, 50, 4, 1, symmetric=True)
    res = alg.gradient_em(
        batch.X_train, batch.y_train, init, batch.sigma, T_outer=3, symmetric=True
    )
    assert torch.equal(res.betas[:, 1], -res.betas[:, 0])
    assert res.log_likelihood.shape == (4, 4)
    res2 = alg.gradient_em(
        batch.X_train, batch.y_train, init[:, 0], batch.sigma, T_outer=3, symmetric=True
    )
    assert torch.equal(res.betas, res2.betas)


def test_ols_and_ridge_closed_forms() -> None:
    batch, _ = _prompts(4, 1, 30, 3, 2)
    X, y = batch.X_train, batch.y_train
    for b in range(3):
        Xn, yn = X[b].numpy(), y[b].numpy()
        np.testing.assert_allclose(
            alg.ols(X, y)[b].numpy(), np.linalg.lstsq(Xn, yn, rcond=None)[0], rtol=1e-9
        )
        ref = np.linalg.solve(Xn.T @ Xn + 0.3 * np.eye(4), Xn.T @ yn)
        np.testing.assert_allclose(alg.ridge(X, y, 0.3)[b].numpy(), ref, rtol=1e-10)
    # underdetermined: minimum-norm solution interpolates
    w = alg.ols(X[:, :2], y[:, :2])
    torch.testing.assert_close(torch.einsum("bnd,bd->bn", X[:, :2], w), y[:, :2])


def test_empty_component_does_not_produce_nan() -> None:
    batch, init = _prompts(3, 3, 40, 2, 4)
    init = init.clone()
    init[:, 2] = 1e3  # a component far from every point gets zero responsibility
    betas, pi = alg.em_step(batch.X_train, batch.y_train, init, None, batch.sigma)
    assert torch.isfinite(betas).all() and torch.isfinite(pi).all()


# --------------------------------------------------------------------------- bad input
def _good():
    batch, init = _prompts(3, 2, 10, 2, 0)
    return batch.X_train, batch.y_train, init, batch.sigma


@pytest.mark.parametrize(
    ("mutate", "name"),
    [
        (lambda X, y, i, s: (X[:, :, :2], y, i, s), "init"),
        (lambda X, y, i, s: (X, y[:, :5], i, s), "y"),
        (lambda X, y, i, s: (X[0], y, i, s), "X"),
        (lambda X, y, i, s: (X, y, i, -s), "sigma"),
        (lambda X, y, i, s: (X, y, i, s * float("nan")), "sigma"),
        (lambda X, y, i, s: (X * float("nan"), y, i, s), "X"),
        (lambda X, y, i, s: (X, y + float("inf"), i, s), "y"),
        (lambda X, y, i, s: (X, y, i * float("nan"), s), "init"),
        (lambda X, y, i, s: (X[:, :0], y[:, :0], i, s), "X"),
    ],
)
def test_em_rejects_bad_input(mutate, name: str) -> None:
    X, y, init, sigma = mutate(*_good())
    with pytest.raises(ParameterError, match=f"^{name}"):
        alg.em(X, y, init, sigma, T=2)


def test_bad_hyperparameters() -> None:
    X, y, init, sigma = _good()
    with pytest.raises(ParameterError, match="^T_inner"):
        alg.gradient_em(X, y, init, sigma, T_inner=0)
    with pytest.raises(ParameterError, match="^alpha"):
        alg.gradient_em(X, y, init, sigma, alpha=-1.0)
    with pytest.raises(ParameterError, match="^T_outer"):
        alg.gradient_em(X, y, init, sigma, T_outer=-1)
    with pytest.raises(ParameterError, match="^pi"):
        alg.em(X, y, init, sigma, torch.tensor([[0.5, 0.6], [0.5, 0.5]], dtype=torch.float64))
    with pytest.raises(ParameterError, match="^sigma"):
        alg.em(X, y, init, 0.0)
    with pytest.raises(ParameterError, match="^lam"):
        alg.ridge(X, y, -1.0)
    with pytest.raises(ParameterError, match="^estimate_pi"):
        alg.gradient_em(X, y, init, sigma, symmetric=True, estimate_pi=True)


@pytest.mark.parametrize(("K", "n"), [(3, 1), (3, 2), (20, 2), (20, 10)])
def test_em_on_fewer_examples_than_unknowns_stays_finite(K: int, n: int) -> None:
    """n < d or n < K makes every weighted Gram matrix singular; the M-step must fall back to
    the minimum-norm solution instead of raising (eigh used to fail to converge on weights
    ~1e-300) or returning NaN. The sweep of MoR Figure 1 evaluates EM at such prefixes."""
    batch = sample_mor(MoRConfig(d=4, K=K, n=n, snr=10.0), 64, seed=0)
    init = torch.randn(64, K, 4, generator=make_generator(3), dtype=torch.float64)
    res = alg.em(batch.X_train, batch.y_train, init, batch.sigma, T=10)
    assert torch.isfinite(res.betas).all() and torch.isfinite(res.pi).all()
    # the fallback solves the weighted least squares: the residual of S beta = m is ~0
    gamma = alg.responsibilities(batch.X_train, batch.y_train, init, None, batch.sigma)
    S, m = alg.weighted_moments(batch.X_train, batch.y_train, gamma)
    one, _ = alg.em_step(batch.X_train, batch.y_train, init, None, batch.sigma)
    resid = (S @ one[..., None])[..., 0] - m
    assert float(resid.abs().max()) < 1e-8 * max(1.0, float(m.abs().max()))
