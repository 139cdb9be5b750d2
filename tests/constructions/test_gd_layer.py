"""Tests of iclkit.constructions.gd_layer: one ReLU-attention layer = one GD step."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from iclkit.constructions.gd_layer import build_gd_transformer, gd_step_closed_form
from iclkit.constructions.layout import embed, read_beta
from iclkit.theory.validation import ParameterError

f64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@given(
    d=st.integers(1, 8),
    n=st.integers(1, 60),
    T=st.integers(1, 4),
    eta=st.floats(0.05, 1.5),
    seed=st.integers(0, 2**31 - 1),
)
def test_gd_layers_equal_closed_form(d: int, n: int, T: int, eta: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(2, n, d, generator=g, dtype=f64)
    y = torch.randn(2, n, generator=g, dtype=f64)
    w0 = torch.randn(2, 1, d, generator=g, dtype=f64)
    model, lay = build_gd_transformer(d, T, eta)
    assert model.heads_per_layer() == [2] * T
    states = model.hidden_states(embed(lay, X, y, w0, torch.randn(2, d, generator=g, dtype=f64)))
    for t in range(1, T + 1):
        got = read_beta(lay, states[t])[:, 0]
        ref = gd_step_closed_form(X, y, w0[:, 0], eta, t)
        # float64 round-off of O(n d) sums of O(1) terms, amplified by at most (1 + eta ||S||)^T
        scale = 1 + ref.abs().max()
        assert float((got - ref).abs().max()) <= 1e-10 * scale
    # every token carries the same iterate (Bai's trick)
    final = states[-1][:, :, lay.beta(0)]
    assert float((final - final[:, -1:]).abs().max()) <= 1e-12 * (1 + final.abs().max())


def test_bad_input() -> None:
    with pytest.raises(ParameterError, match="T"):
        build_gd_transformer(3, 0, 0.1)
    with pytest.raises(ParameterError, match="eta"):
        build_gd_transformer(3, 1, 0.0)
    with pytest.raises(ParameterError, match="d"):
        build_gd_transformer(0, 1, 0.1)
