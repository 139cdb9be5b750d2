"""Tests of the MoR data model (iclkit.theory.mor)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from iclkit.theory.mor import MoRConfig, PromptPool, component_separation, fresh_batch, sample_mor
from iclkit.theory.validation import ParameterError


@given(
    d=st.integers(1, 8),
    K=st.integers(1, 5),
    n=st.integers(1, 30),
    B=st.integers(1, 6),
    seed=st.integers(0, 2**31),
    f32=st.booleans(),
)
def test_sampler_shapes_and_dtypes(d: int, K: int, n: int, B: int, seed: int, f32: bool) -> None:
    dtype = torch.float32 if f32 else torch.float64
    batch = sample_mor(MoRConfig(d=d, K=K, n=n, snr=5.0), B, seed=seed, dtype=dtype)
    assert batch.X.shape == (B, n + 1, d) and batch.X.dtype == dtype
    assert batch.y.shape == (B, n + 1) and batch.y.dtype == dtype
    assert batch.z.shape == (B, n + 1) and batch.z.dtype == torch.int64
    assert batch.betas.shape == (B, K, d) and batch.pi.shape == (B, K) and batch.sigma.shape == (B,)
    assert int(batch.z.min()) >= 0 and int(batch.z.max()) < K
    assert (batch.B, batch.n, batch.d, batch.K) == (B, n, d, K)
    # labels follow the model exactly: y - <x, beta_z> is the noise, which is finite
    assert torch.isfinite(batch.y).all()


@given(seed=st.integers(0, 2**40), symmetric=st.booleans())
def test_same_seed_same_bytes(seed: int, symmetric: bool) -> None:
    config = MoRConfig(d=4, K=2, n=20, snr=3.0, symmetric=symmetric)
    a = sample_mor(config, 5, seed=seed)
    b = sample_mor(config, 5, seed=seed)
    for name in ("X", "y", "z", "betas", "pi", "sigma"):
        assert getattr(a, name).numpy().tobytes() == getattr(b, name).numpy().tobytes()
    c = sample_mor(config, 5, seed=seed + 1)
    assert not torch.equal(a.X, c.X)


def test_float32_is_float64_rounded() -> None:
    config = MoRConfig(d=3, K=3, n=10, sigma=0.5)
    a = sample_mor(config, 4, seed=7)
    b = sample_mor(config, 4, seed=7, dtype=torch.float32)
    assert torch.equal(a.X.float(), b.X) and torch.equal(a.y.float(), b.y)


def test_generator_argument_equals_seed() -> None:
    config = MoRConfig(d=3, K=2, n=10)
    g = torch.Generator().manual_seed(11)
    assert torch.equal(sample_mor(config, 3, generator=g).y, sample_mor(config, 3, seed=11).y)


def test_empirical_moments_match_config() -> None:
    """x ~ N(0, Lambda), z ~ pi, noise ~ N(0, sigma^2), beta ~ N(0, tau^2 I).

    With N = B (n+1) = 400 * 101 = 40,400 samples, entries of the empirical covariance have
    standard error about sqrt(2/N) ~ 0.007 (diagonal); the tolerance 0.05 is > 5 standard errors.
    Label frequencies have standard error sqrt(p(1-p)/N) < 0.0025; tolerance 0.015.
    """
    lam = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]])
    pi = (0.5, 0.3, 0.2)
    config = MoRConfig(
        d=3, K=3, n=100, sigma=0.7, pi=pi, prior_scale=1.5, Lambda=tuple(map(tuple, lam))
    )
    b = sample_mor(config, 400, seed=3)
    x = b.X.reshape(-1, 3).numpy()
    assert np.abs(np.cov(x.T) - lam).max() < 0.05
    assert np.abs(x.mean(0)).max() < 0.03
    freq = np.bincount(b.z.reshape(-1).numpy(), minlength=3) / b.z.numel()
    assert np.abs(freq - np.array(pi)).max() < 0.015
    chosen = torch.gather(b.betas, 1, b.z[:, :, None].expand(-1, -1, 3))
    noise = (b.y - (b.X * chosen).sum(-1)).reshape(-1).numpy()
    assert abs(noise.std() - 0.7) < 0.01 and abs(noise.mean()) < 0.01
    # 1200 components, var tau^2 = 2.25: se of the sample variance ~ 2.25 * sqrt(2/1200) = 0.09
    assert abs(b.betas.var().item() - 2.25) < 0.3


def test_snr_sets_sigma_per_prompt() -> None:
    b = sample_mor(MoRConfig(d=4, K=3, n=5, snr=4.0), 6, seed=0)
    assert torch.allclose(b.sigma * 4.0, component_separation(b.betas))
    s = sample_mor(MoRConfig(d=4, K=2, n=5, snr=2.0, symmetric=True), 6, seed=0)
    assert torch.allclose(s.betas[:, 1], -s.betas[:, 0])
    assert torch.allclose(s.sigma * 2.0, s.betas[:, 0].norm(dim=-1))
    assert torch.allclose(s.pi, torch.full((6, 2), 0.5, dtype=torch.float64))


def test_component_separation_is_min_pairwise_distance() -> None:
    betas = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]]], dtype=torch.float64)
    assert component_separation(betas).item() == pytest.approx(1.0)


def test_sphere_prior_has_fixed_norm() -> None:
    b = sample_mor(MoRConfig(d=6, K=3, n=2, sigma=1.0, prior="sphere", prior_scale=2.5), 10, seed=1)
    assert torch.allclose(b.betas.norm(dim=-1), torch.full((10, 3), 2.5, dtype=torch.float64))


def test_dirichlet_pi_is_random_and_normalised() -> None:
    b = sample_mor(MoRConfig(d=2, K=4, n=3, sigma=1.0, pi_mode="dirichlet"), 2000, seed=5)
    assert torch.allclose(b.pi.sum(1), torch.ones(2000, dtype=torch.float64))
    # Dirichlet(1,1,1,1): mean 1/4, var = (1/4)(3/4)/5 = 0.0375 -> se of mean ~ 0.0043
    assert torch.allclose(b.pi.mean(0), torch.full((4,), 0.25, dtype=torch.float64), atol=0.02)
    assert b.pi.std(0).min() > 0.15


def test_oracle_and_views() -> None:
    b = sample_mor(MoRConfig(d=3, K=2, n=4, sigma=0.1, pi=(0.25, 0.75)), 3, seed=2)
    w = 0.25 * b.betas[:, 0] + 0.75 * b.betas[:, 1]
    assert torch.allclose(b.w_oracle, w)
    assert torch.allclose(b.y_oracle, (b.x_query * w).sum(-1))
    assert b.X_train.shape == (3, 4, 3) and b.y_query.shape == (3,)
    t = b.truncate(2)
    assert t.n == 2 and torch.equal(t.x_query, b.x_query) and torch.equal(t.X_train, b.X[:, :2])


def test_fresh_batches_are_reproducible_per_step() -> None:
    config = MoRConfig(d=3, K=2, n=8)
    a, b = fresh_batch(config, 4, seed=1, step=10), fresh_batch(config, 4, seed=1, step=10)
    assert torch.equal(a.X, b.X)
    assert not torch.equal(a.X, fresh_batch(config, 4, seed=1, step=11).X)


def test_prompt_pool_only_serves_its_prompts() -> None:
    pool = PromptPool.draw(MoRConfig(d=3, K=2, n=8), 5, seed=0)
    mb = pool.minibatch(32, seed=0, step=3)
    pool_rows = {tuple(r.tolist()) for r in pool.prompts.y}
    assert all(tuple(r.tolist()) in pool_rows for r in mb.y)
    assert torch.equal(mb.y, pool.minibatch(32, seed=0, step=3).y)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"d": 0}, "d"),
        ({"d": 3, "K": 0}, "K"),
        ({"d": 3, "n": 0}, "n"),
        ({"d": 3, "snr": -1.0}, "snr"),
        ({"d": 3, "snr": math.nan}, "snr"),
        ({"d": 3, "snr": 0.0}, "snr"),
        ({"d": 3, "sigma": -0.5, "snr": None}, "sigma"),
        ({"d": 3, "sigma": math.inf, "snr": None}, "sigma"),
        ({"d": 3, "snr": 1.0, "sigma": 1.0}, "snr and sigma"),
        ({"d": 3, "K": 2, "pi": (0.5, 0.6)}, "pi"),
        ({"d": 3, "K": 3, "pi": (0.5, 0.5)}, "pi"),
        ({"d": 3, "K": 2, "pi": (1.5, -0.5)}, "pi"),
        ({"d": 3, "K": 3, "symmetric": True}, "K"),
        ({"d": 2, "Lambda": ((1.0, 2.0), (2.0, 1.0))}, "Lambda"),
        ({"d": 2, "Lambda": ((1.0, 0.0), (0.5, 1.0))}, "Lambda"),
        ({"d": 2, "Lambda": ((1.0, 0.0, 0.0),)}, "Lambda"),
        ({"d": 2, "prior": "laplace"}, "prior"),
        ({"d": 2.5}, "d"),
    ],
)
def test_config_rejects_bad_input(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ParameterError, match=f"^{name}"):
        MoRConfig(**kwargs)  # type: ignore[arg-type]


def test_sampler_rejects_bad_input() -> None:
    config = MoRConfig(d=2, K=2, n=3)
    with pytest.raises(ParameterError, match="^batch_size"):
        sample_mor(config, 0, seed=0)
    with pytest.raises(ParameterError, match="^seed and generator"):
        sample_mor(config, 2)
    with pytest.raises(ParameterError, match="^seed"):
        sample_mor(config, 2, seed=-1)
    with pytest.raises(ParameterError, match="^dtype"):
        sample_mor(config, 2, seed=0, dtype=torch.int32)
