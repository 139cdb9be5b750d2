"""Tests of iclkit.constructions.surrogate_em against the reference gradient EM (algorithms.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iclkit.constructions import algorithms as A
from iclkit.constructions.gradient_em_transformer import general_relu_sums
from iclkit.constructions.relu_approx import tanh_relu_sum
from iclkit.constructions.surrogate_em import (
    EStepFunctions,
    general_surrogate_iterates,
    symmetric_gap_bound,
    symmetric_surrogate_iterates,
)
from iclkit.theory.mor import MoRConfig, sample_mor

f64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _local_init(betas: torch.Tensor, rho: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(betas.shape, generator=g, dtype=f64), dim=-1)
    return betas + rho * u


def test_symmetric_surrogate_with_tanh_is_gradient_em() -> None:
    b = sample_mor(MoRConfig(d=4, K=2, n=80, sigma=0.2, symmetric=True, prior="sphere"), 3, seed=0)
    init = _local_init(b.betas[:, 0], 0.3, 1)
    it = symmetric_surrogate_iterates(
        b.X_train, b.y_train, init, 0.2, torch.tanh, T_outer=3, T_inner=2, alpha=0.7
    )
    ref = A.gradient_em(
        b.X_train, b.y_train, init, 0.2, T_outer=3, T_inner=2, alpha=0.7, symmetric=True
    )
    # different summation order (moments vs per-example sums): round-off only
    torch.testing.assert_close(it[-1][-1], ref.betas[:, 0], rtol=1e-11, atol=1e-12)


def test_general_form_with_exact_functions_is_gradient_em() -> None:
    pi = (0.5, 0.3, 0.2)
    b = sample_mor(MoRConfig(d=4, K=3, n=120, sigma=0.3, pi=pi), 3, seed=2)
    init = _local_init(b.betas, 0.2, 3)
    it = general_surrogate_iterates(
        b.X_train, b.y_train, init, 0.3, pi, EStepFunctions.exact(), T_outer=3, T_inner=2, alpha=1.0
    )
    ref = A.gradient_em(
        b.X_train, b.y_train, init, 0.3, torch.tensor([pi] * 3, dtype=f64), T_outer=3, T_inner=2
    )
    # softplus chain + exp vs softmax / log-sum-exp: equal up to float64 round-off of exp/log
    torch.testing.assert_close(it[-1][-1], ref.betas, rtol=1e-9, atol=1e-10)


def test_gap_within_propagated_bound_and_shrinks_with_terms() -> None:
    d, n, sigma, T = 5, 300, 0.1, 6
    b = sample_mor(MoRConfig(d=d, K=2, n=n, sigma=sigma, symmetric=True, prior="sphere"), 8, seed=4)
    X, y = b.X_train, b.y_train
    init = _local_init(b.betas[:, 0], 0.3, 5)
    exact = symmetric_surrogate_iterates(
        X, y, init, sigma, torch.tanh, T_outer=T, T_inner=2, alpha=1.0
    )
    traj = [init] + [row[-1] for row in exact[:-1]]
    Ms = [8, 16, 32, 64, 128]
    gaps = []
    for M in Ms:
        f = tanh_relu_sum(M)
        sur = symmetric_surrogate_iterates(X, y, init, sigma, f, T_outer=T, T_inner=2, alpha=1.0)
        gap = torch.stack(
            [torch.linalg.vector_norm(sur[t][-1] - exact[t][-1], dim=-1) for t in range(T)], 1
        )
        assert f.certificate.eps_global is not None
        bound = symmetric_gap_bound(
            X, y, traj, sigma, f.certificate.eps_global, T_inner=2, alpha=1.0
        )
        assert bool((gap <= bound).all()), (M, gap, bound)
        gaps.append(float(gap[:, -1].median()))
    slope = np.polyfit(np.log(Ms), np.log(gaps), 1)[0]
    # the certificate eps decays like M^-2 (up to log M); the gap follows it
    assert -2.5 <= slope <= -1.3, slope


def test_general_gap_shrinks_with_terms() -> None:
    pi = (0.6, 0.4)
    b = sample_mor(MoRConfig(d=4, K=2, n=200, sigma=0.2, pi=pi, prior="sphere"), 4, seed=6)
    init = _local_init(b.betas, 0.2, 7)
    kw = {"T_outer": 4, "T_inner": 1, "alpha": 1.0}
    exact = general_surrogate_iterates(
        b.X_train, b.y_train, init, 0.2, pi, EStepFunctions.exact(), **kw
    )
    gaps = []
    for M in (16, 64, 256):
        s = general_relu_sums(M)
        fn = EStepFunctions(s["psi"], s["softplus"], s["exp"])
        sur = general_surrogate_iterates(b.X_train, b.y_train, init, 0.2, pi, fn, **kw)
        gaps.append(float((sur[-1][-1] - exact[-1][-1]).norm(dim=-1).max()))
    assert gaps[0] > gaps[1] > gaps[2]
