"""Tests of iclkit.dynamics.lsa.model (literal ZFB LSA forward pass)."""

from __future__ import annotations

import pytest
import torch

from iclkit.dynamics.lsa.model import LSALayer, embed, lsa_prediction
from iclkit.theory.linear import LinearConfig, sample_linear
from iclkit.theory.validation import ParameterError


def test_reduced_weights_give_preconditioned_gd_step() -> None:
    # docs/provenance.md §10: with w21^PV = w21^KQ = 0, y_hat = u a^T U x_q, a = (1/N) sum y_i x_i
    batch = sample_linear(LinearConfig(d=3, n=6), 4, seed=0)
    g = torch.Generator().manual_seed(1)
    U = torch.randn(3, 3, generator=g, dtype=torch.float64)
    Wk, Wp = torch.zeros(4, 4, dtype=torch.float64), torch.zeros(4, 4, dtype=torch.float64)
    Wk[:3, :3] = U
    Wp[3, 3] = 0.7
    Wk[:, 3] = 9.0  # dead block
    Wp[:3] = -4.0  # dead blocks
    E = embed(batch.X_train, batch.y_train, batch.x_query)
    a = torch.einsum("bn,bnd->bd", batch.y_train, batch.X_train) / 6
    ref = 0.7 * torch.einsum("bi,ij,bj->b", a, U, batch.x_query)
    assert torch.allclose(lsa_prediction(E, Wk, Wp), ref, rtol=1e-13, atol=1e-13)


def test_layer_matches_function_and_embed_shape() -> None:
    batch = sample_linear(LinearConfig(d=2, n=5), 3, seed=2)
    E = embed(batch.X_train, batch.y_train, batch.x_query)
    assert E.shape == (3, 3, 6) and torch.all(E[:, -1, -1] == 0)
    Wk = torch.randn(3, 3, dtype=torch.float64)
    Wp = torch.randn(3, 3, dtype=torch.float64)
    assert torch.equal(LSALayer(Wk, Wp)(E), lsa_prediction(E, Wk, Wp))


def test_bad_shapes() -> None:
    with pytest.raises(ParameterError, match="^X_train"):
        embed(torch.zeros(2, 3, 4), torch.zeros(2, 2), torch.zeros(2, 4))
    with pytest.raises(ParameterError, match="^W_KQ"):
        LSALayer(torch.zeros(3, 3), torch.zeros(2, 2))
