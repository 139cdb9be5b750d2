"""Tests of iclkit.theory.linear (ZFB linear-regression prompts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iclkit.theory.linear import LinearConfig, sample_linear
from iclkit.theory.validation import ParameterError


def test_shapes_and_determinism() -> None:
    cfg = LinearConfig(d=3, n=5, sigma=0.1)
    a = sample_linear(cfg, 7, seed=3)
    b = sample_linear(cfg, 7, seed=3)
    assert a.X.shape == (7, 6, 3) and a.y.shape == (7, 6) and a.betas.shape == (7, 1, 3)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    assert not torch.equal(a.X, sample_linear(cfg, 7, seed=4).X)


def test_noiseless_labels_are_linear() -> None:
    cfg = LinearConfig(d=2, n=4, Lambda=((2.0, 0.5), (0.5, 1.0)))
    batch = sample_linear(cfg, 5, seed=0)
    # sigma = 0: y = <w, x> exactly (float64 round-off only)
    assert torch.allclose(
        batch.y, torch.einsum("bnd,bd->bn", batch.X, batch.betas[:, 0]), atol=1e-14
    )


def test_second_moment_of_x() -> None:
    lam = np.array([[2.0, 0.5], [0.5, 1.0]])
    cfg = LinearConfig(d=2, n=3, Lambda=tuple(map(tuple, lam)))
    X = sample_linear(cfg, 40_000, seed=1).X.reshape(-1, 2).numpy()
    emp = X.T @ X / X.shape[0]
    # 160k samples: entry se <= sqrt(2*2^2/160k) ~ 0.007; 0.05 is > 6 se
    assert np.abs(emp - lam).max() < 0.05


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"d": 0, "n": 3}, "d"),
        ({"d": 2, "n": 0}, "n"),
        ({"d": 2, "n": 3, "sigma": -1.0}, "sigma"),
        ({"d": 2, "n": 3, "Lambda": ((1.0, 0.0), (0.0, -1.0))}, "Lambda"),
        ({"d": 2, "n": 3, "Lambda": ((1.0, 0.3), (0.0, 1.0))}, "Lambda"),
    ],
)
def test_bad_config(kwargs: dict, name: str) -> None:
    with pytest.raises(ParameterError, match=f"^{name}"):
        LinearConfig(**kwargs)


def test_seed_and_generator_exclusive() -> None:
    with pytest.raises(ParameterError, match="seed"):
        sample_linear(LinearConfig(d=2, n=3), 4)
