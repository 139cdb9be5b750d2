"""The algorithms' boundary: dtype promotion, device, autograd, scale, status of divergence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iclkit.constructions.algorithms import em, gradient_em, ols, ridge
from iclkit.constructions.estimate import run_algorithm
from iclkit.constructions.gradient_em_transformer.config import ConstructionConfig
from iclkit.constructions.gradient_em_transformer.run import run_gradient_em_transformer
from iclkit.constructions.inputs import check_data_scale, prepare_tensors
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.validation import ParameterError

BATCH = sample_mor(MoRConfig(d=3, K=3, n=20), 4, seed=0)
X, Y, SIGMA, INIT = BATCH.X_train, BATCH.y_train, BATCH.sigma, BATCH.betas + 0.1


def test_promotion_to_the_common_float_dtype() -> None:
    t = prepare_tensors({"X": X.float(), "y": Y.float(), "init": INIT, "pi": None})
    assert {v.dtype for v in t.values() if v is not None} == {torch.float64}
    assert t["pi"] is None
    t32 = prepare_tensors({"X": X.float(), "y": Y.float(), "sigma": 0.5})
    assert t32["X"].dtype == torch.float32 and "sigma" not in t32  # type: ignore[union-attr]
    ints = prepare_tensors({"X": X.round().long()})
    assert ints["X"].dtype == torch.float64  # type: ignore[union-attr]
    assert prepare_tensors({"X": X.numpy()})["X"].dtype == torch.float64  # type: ignore[union-attr]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.complex64])
def test_half_and_complex_refused_by_name(dtype: torch.dtype) -> None:
    with pytest.raises(ParameterError, match="^init must be"):
        em(X, Y, INIT.to(dtype), SIGMA)


def test_non_tensor_refused_by_name() -> None:
    with pytest.raises(ParameterError, match="^init must be a torch.Tensor"):
        em(X, Y, [[1.0]], SIGMA)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="^X must hold numbers"):
        prepare_tensors({"X": np.array(["a"])})


def test_mixed_dtypes_and_integers_give_the_float64_result() -> None:
    ref = em(X, Y, INIT, SIGMA, T=3).betas
    got = em(X.float(), Y.float(), INIT, SIGMA.float(), T=3).betas
    assert got.dtype == torch.float64
    assert torch.allclose(got, ref, atol=1e-4)
    assert em(X.round().long(), Y, INIT, SIGMA, T=2).betas.dtype == torch.float64


def test_requires_grad_inputs_are_detached() -> None:
    Xg = X.clone().requires_grad_()
    for out in (
        em(Xg, Y, INIT.clone().requires_grad_(), SIGMA, T=2).betas,
        gradient_em(Xg, Y, INIT, SIGMA, T_outer=2).betas,
        ols(Xg, Y),
        ridge(Xg, Y, torch.tensor(0.1, requires_grad=True)),
    ):
        assert not out.requires_grad
    assert torch.equal(em(Xg, Y, INIT, SIGMA, T=2).betas, em(X, Y, INIT, SIGMA, T=2).betas)


def test_extreme_data_refused_before_the_linear_algebra() -> None:
    check_data_scale(X * 1e100, Y)
    for call in (
        lambda: em(X * 1e200, Y, INIT, SIGMA),
        lambda: ols(X * 1e200, Y),
        lambda: ridge(X, Y * 1e300, 1.0),
    ):
        with pytest.raises(ParameterError, match="overflow"):
            call()


def test_diverging_step_size_gives_a_status_and_finite_estimates() -> None:
    res = gradient_em(X, Y, INIT, SIGMA, alpha=50.0, T_outer=300)
    assert res.status == "diverged"
    assert res.first_nonfinite is not None and 1 <= res.first_nonfinite <= 300
    assert bool(res.diverged.any())
    assert bool(torch.isfinite(res.betas).all()) and bool(torch.isfinite(res.pi).all())
    sym = gradient_em(X, Y, INIT[:, :2], SIGMA, alpha=50.0, T_outer=300, symmetric=True)
    assert sym.status == "diverged" and bool(torch.isfinite(sym.betas).all())


def test_tiny_sigma_diverges_at_the_initial_e_step() -> None:
    res = em(X, Y, INIT, 1e-200, T=3)
    assert (res.status, res.first_nonfinite) == ("diverged", 0)
    assert torch.equal(res.betas, INIT)


def test_statuses_of_finite_runs() -> None:
    assert em(X, Y, INIT, SIGMA, T=0).status == "max_iter"
    assert em(X, Y, INIT, SIGMA, T=200).status == "converged"
    res = gradient_em(X, Y, INIT, SIGMA, T_outer=1, alpha=0.1)
    assert (res.status, res.first_nonfinite) == ("max_iter", None)
    assert not bool(res.diverged.any())


def test_nan_in_pi_or_init_refused_by_name() -> None:
    bad = INIT.clone()
    bad[0, 1, 0] = math.nan
    with pytest.raises(ParameterError, match="^init"):
        gradient_em(X, Y, bad, SIGMA)
    with pytest.raises(ParameterError, match="^init"):
        gradient_em(X, Y, bad[:, :2], SIGMA, symmetric=True)
    with pytest.raises(ParameterError, match="^pi"):
        gradient_em(X, Y, INIT[:, :2], SIGMA, torch.full((4, 2), math.nan), symmetric=True)
    with pytest.raises(ParameterError, match="^pi"):
        em(X, Y, INIT, SIGMA, torch.full((4, 3), math.nan))


def test_plain_float_sigma_everywhere() -> None:
    assert run_algorithm("em", {"X": X, "y": Y, "sigma": 0.5, "init": INIT}).status in (
        "converged",
        "max_iter",
    )
    assert run_algorithm("ridge", {"X": X, "y": Y, "sigma": 0.5}).beta.shape == (4, 1, 3)
    cfg = ConstructionConfig(T_outer=1)
    run = run_gradient_em_transformer(X, Y, INIT, BATCH.x_query, 0.5, None, cfg)
    assert run.beta_tf.shape == (4, 3, 3)


def test_transformer_on_float32_inputs_with_default_pi() -> None:
    cfg = ConstructionConfig(T_outer=1)
    f = [t.float() for t in (X, Y, INIT, BATCH.x_query, SIGMA)]
    run = run_gradient_em_transformer(*f, None, cfg)
    assert bool(torch.isfinite(run.beta_tf).all())
    run32 = run_gradient_em_transformer(*f, BATCH.pi.float(), cfg)
    assert bool(torch.isfinite(run32.beta_tf).all())


def test_construction_memory_and_weight_norm_checked_before_use() -> None:
    from iclkit.constructions.gradient_em_transformer.build import build_gradient_em_transformer

    with pytest.raises(ParameterError, match="^d: the construction .* GiB of memory"):
        build_gradient_em_transformer(10**6, 2, 100, 1.0, 2)
    with pytest.raises(ParameterError, match="^T_outer: the construction"):
        build_gradient_em_transformer(3, 3, 100, 1.0, 50_000, relu_terms=4096)
    for bad in (math.nan, math.inf, 1e300):
        with pytest.raises(ParameterError, match="^R_residual"):
            ConstructionConfig(R_residual=bad)
