"""Tests of iclkit.dynamics.lsa.training (finite-sample GD approaches the population flow)."""

from __future__ import annotations

import numpy as np
import pytest

from iclkit.dynamics.lsa.flow import ReducedLSAFlow
from iclkit.dynamics.lsa.init import structured_init
from iclkit.dynamics.lsa.integrate import simulate
from iclkit.dynamics.lsa.moments import LSAMoments
from iclkit.dynamics.lsa.training import train_lsa
from iclkit.theory.linear import LinearConfig
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError


def test_gd_approaches_flow_as_batch_grows() -> None:
    d, N, lr, steps = 2, 6, 0.05, 60
    cfg = LinearConfig(d=d, n=N)
    m = LSAMoments.linear(d, N)
    init = structured_init(m, 0.5, seed=0)
    flow = simulate(
        ReducedLSAFlow(m),
        init,
        (0, lr * steps),
        method="DOP853",
        rtol=1e-10,
        atol=1e-12,
        gradient_tol=None,
    )
    errs = []
    for B in (16, 4096):
        tr = train_lsa(cfg, init, steps=steps, lr=lr, batch_size=B, seed=1)
        errs.append(np.linalg.norm(tr.G[-1] - flow.G_final) / np.linalg.norm(flow.G_final))
        assert tr.times[-1] == pytest.approx(lr * steps)
    # sampling error ~ 1/sqrt(B): 256x more prompts should shrink it clearly (measured ~16x);
    # the large-batch error is GD's O(lr) discretisation error plus sampling noise (~1e-2)
    assert errs[1] < errs[0] / 4 and errs[1] < 0.03


def test_adam_on_mor_runs_and_lowers_loss() -> None:
    cfg = MoRConfig(d=2, K=2, n=6, sigma=0.5, pi=(0.7, 0.3))
    m = LSAMoments.mor(cfg)
    tr = train_lsa(
        cfg,
        structured_init(m, 0.5, seed=0),
        steps=40,
        lr=0.05,
        batch_size=512,
        optimizer="adam",
        seed=2,
        record_every=10,
    )
    assert tr.G.shape == (5, 2, 2) and tr.batch_loss.shape == (40,)
    assert tr.batch_loss[-10:].mean() < tr.batch_loss[:10].mean()


def test_bad_arguments() -> None:
    cfg = LinearConfig(d=2, n=3)
    m = LSAMoments.linear(2, 3)
    init = structured_init(m, 0.5)
    with pytest.raises(ParameterError, match="^steps"):
        train_lsa(cfg, init, steps=0, lr=0.1, batch_size=4)
    with pytest.raises(ParameterError, match="^lr"):
        train_lsa(cfg, init, steps=1, lr=0.0, batch_size=4)
    with pytest.raises(ParameterError, match="^optimizer"):
        train_lsa(cfg, init, steps=1, lr=0.1, batch_size=4, optimizer="sgd")
    with pytest.raises(ParameterError, match="^init"):
        train_lsa(LinearConfig(d=3, n=3), init, steps=1, lr=0.1, batch_size=4)
