"""Robustness of the reference algorithms and the construction under generated input.

Tensors are drawn valid or broken (wrong shape, dtype among float16/bfloat16/int64/float32/
float64, requiring grad, NaN/inf entries, extreme scales, non-tensors); every call either
returns a finite result of the documented shape, a documented status (``diverged``, with finite
estimates), or raises ParameterError. ``HYPOTHESIS_PROFILE=dev`` runs 1,200 examples per test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iclkit.constructions.algorithms import (
    em,
    em_step,
    gradient_em,
    gradient_em_step,
    ols,
    ridge,
    symmetric_gradient_em_step,
)
from iclkit.constructions.estimate import ALGORITHMS, AlgorithmConfig, run_algorithm
from iclkit.constructions.gradient_em_transformer.build import build_gradient_em_transformer
from iclkit.constructions.gradient_em_transformer.config import ConstructionConfig
from iclkit.constructions.gradient_em_transformer.run import run_gradient_em_transformer
from iclkit.theory.mor import MoRConfig, sample_mor
from iclkit.theory.validation import ParameterError

_BASE = settings.default.max_examples
EXAMPLES = settings(max_examples=_BASE if _BASE < 100 else 6 * _BASE)
FEW = settings(max_examples=_BASE if _BASE < 100 else 2 * _BASE)  # construction: ~0.1 s a call
Record = Callable[[str], None]

# Sizes beyond the robustness suites' memory budget must be refused by the estimates
# (check_memory), never allocated: see the ``small_memory`` fixture in conftest.py.
pytestmark = pytest.mark.usefixtures("small_memory")


B, N, D, K = 3, 8, 2, 2
BATCH = sample_mor(MoRConfig(d=D, K=K, n=N), B, seed=0)
VALID = {
    "X": BATCH.X_train.contiguous(),
    "y": BATCH.y_train.contiguous(),
    "init": BATCH.betas + 0.1,
    "sigma": BATCH.sigma,
    "pi": BATCH.pi,
    "x_query": BATCH.x_query,
    "betas": BATCH.betas,
}
BROKEN = [
    "ok", "ok", "ok", "ok", "ok", "ok", "float32", "int64", "float16", "bfloat16", "grad",
    "nan", "inf", "shape", "scalar", "numpy", "list", "none", "tiny", "huge", "big",
]  # fmt: skip
JUNK = st.sampled_from([None, "abc", True, math.nan, math.inf, -1.0, 0.0, 10**400])


def variant(t: torch.Tensor, how: str) -> Any:
    """``t`` as drawn: valid, or broken in one way."""
    f = t.clone()
    if how == "float32":
        return f.float()
    if how == "int64":
        return f.round().long()
    if how in ("float16", "bfloat16"):
        return f.to(getattr(torch, how))
    if how == "grad":
        return f.requires_grad_()
    if how in ("nan", "inf"):
        f.view(-1)[0] = math.nan if how == "nan" else math.inf
        return f
    if how == "shape":
        return f[..., :1] if f.dim() > 1 else f[:1]
    if how == "scalar":
        return f.reshape(-1)[0]
    if how == "numpy":
        return f.numpy()
    if how == "list":
        return f.tolist()
    if how == "none":
        return None
    scale = {"tiny": 1e-300, "huge": 1e300, "big": 1e12}.get(how, 1.0)
    return f * scale


TENSORS = st.fixed_dictionaries({k: st.sampled_from(BROKEN) for k in VALID})


def outcome(record: Record, call: Callable[[], Any], check: Callable[[Any], str]) -> None:
    try:
        result = call()
    except ParameterError:
        record("ParameterError")
        return
    record(check(result))


def finite(*values: Any) -> None:
    for v in values:
        assert bool(torch.isfinite(v).all()), v


def em_result(X: Any) -> Callable[[Any], str]:
    """The check of an EMResult on prompts ``X``: (B, K, d) finite estimates and a status."""

    def check(res: Any) -> str:
        assert res.betas.dim() == 3 and res.betas.shape[0] == B
        assert res.betas.shape[2] == np.shape(X)[-1]
        finite(res.betas, res.pi)  # also when diverged: the last finite iterate
        assert res.status in ("converged", "max_iter", "diverged")
        assert (res.status == "diverged") == (res.first_nonfinite is not None)
        return "finite" if res.status != "diverged" else "status:diverged"

    return check


@EXAMPLES
@given(
    how=TENSORS, T=st.one_of(st.integers(0, 6), JUNK), alpha=st.one_of(st.floats(0.01, 200), JUNK),
    symmetric=st.booleans(), estimate_pi=st.booleans(), float_sigma=st.booleans(),
)  # fmt: skip
def test_em_and_gradient_em(
    how: dict[str, str], T: Any, alpha: Any, symmetric: bool, estimate_pi: bool,
    float_sigma: bool, robustness: Record,
) -> None:  # fmt: skip
    a = {k: variant(v, how[k]) for k, v in VALID.items()}
    sigma = 0.5 if float_sigma else a["sigma"]
    outcome(
        robustness,
        lambda: em(a["X"], a["y"], a["init"], sigma, a["pi"], T=T, estimate_pi=estimate_pi),
        em_result(a["X"]),
    )
    outcome(
        robustness,
        lambda: gradient_em(
            a["X"], a["y"], a["init"], sigma, None if symmetric else a["pi"], T_outer=T,
            alpha=alpha, symmetric=symmetric, estimate_pi=estimate_pi and not symmetric,
        ),
        em_result(a["X"]),
    )  # fmt: skip


@EXAMPLES
@given(how=TENSORS, lam=st.one_of(st.floats(0, 10), JUNK))
def test_ols_and_ridge(how: dict[str, str], lam: Any, robustness: Record) -> None:
    a = {k: variant(v, how[k]) for k, v in VALID.items()}

    def weights(w: torch.Tensor) -> str:
        assert tuple(w.shape) == (B, np.shape(a["X"])[-1])
        finite(w)
        return "finite"

    outcome(robustness, lambda: ols(a["X"], a["y"]), weights)
    outcome(robustness, lambda: ridge(a["X"], a["y"], lam), weights)


@EXAMPLES
@given(
    how=TENSORS, name=st.sampled_from([*ALGORITHMS, "nope"]), T=st.one_of(st.integers(0, 5), JUNK),
    alpha=st.one_of(st.floats(0.01, 100), JUNK), lam=st.one_of(st.none(), st.floats(0, 5), JUNK),
    drop=st.sampled_from([None, "init", "betas", "sigma", "X"]),
)  # fmt: skip
def test_run_algorithm(
    how: dict[str, str], name: str, T: Any, alpha: Any, lam: Any, drop: str | None,
    robustness: Record,
) -> None:  # fmt: skip
    prompts = {k: variant(v, how[k]) for k, v in VALID.items() if k != drop}

    def check(est: Any) -> str:
        d = np.shape(prompts["X"])[-1]
        assert est.beta.dim() == 3 and est.beta.shape[0] == B and est.beta.shape[2] == d
        finite(est.beta, est.pi)
        return "finite" if est.status != "diverged" else "status:diverged"

    outcome(
        robustness,
        lambda: run_algorithm(name, prompts, AlgorithmConfig(T_outer=T, alpha=alpha, lam=lam)),
        check,
    )


@FEW
@given(
    how=TENSORS, T=st.one_of(st.integers(0, 2), JUNK), K3=st.booleans(),
    sigma=st.one_of(st.floats(1e-3, 10), JUNK), R=st.one_of(st.floats(0.5, 20), JUNK),
    alpha=st.one_of(st.floats(0.01, 2), JUNK),
)  # fmt: skip
def test_construction(
    how: dict[str, str], T: Any, K3: bool, sigma: Any, R: Any, alpha: Any, robustness: Record
) -> None:
    a = {k: variant(v, how[k]) for k, v in VALID.items()}
    k = 3 if K3 else 2
    T_run = T if T in (0, 1, 2) and not isinstance(T, bool) else 1  # the run's config is valid

    def built(tf: Any) -> str:
        assert math.isfinite(tf.report.weight_norm)
        return "finite"

    outcome(
        robustness,
        lambda: build_gradient_em_transformer(D, k, N, sigma, T, alpha=alpha, relu_terms=8,
                                              R_residual=R),
        built,
    )  # fmt: skip

    def ran(run: Any) -> str:
        assert tuple(run.beta_tf.shape) == (B, K, D)
        finite(run.beta_tf, run.y_hat)
        return "finite"

    outcome(
        robustness,
        lambda: run_gradient_em_transformer(
            a["X"], a["y"], a["init"], a["x_query"], a["sigma"], a["pi"],
            ConstructionConfig(T_outer=T_run, relu_terms=8),
        ),
        ran,
    )  # fmt: skip


@EXAMPLES
@given(
    how=TENSORS, T_inner=st.one_of(st.integers(1, 4), JUNK),
    alpha=st.one_of(st.floats(0.01, 2.0), st.sampled_from([50.0, 1e6, 1e300]), JUNK),
    estimate_pi=st.booleans(),
)  # fmt: skip
def test_single_steps(
    how: dict[str, str], T_inner: Any, alpha: Any, estimate_pi: bool, robustness: Record
) -> None:
    """One step: finite (B, K, d) betas and (B, K) pi, or ParameterError; never NaN/inf."""
    a = {k: variant(v, how[k]) for k, v in VALID.items()}

    def pair(res: Any) -> str:
        betas, pi = res
        assert betas.shape == (B, K, np.shape(a["X"])[-1]) and pi.shape == (B, K)
        finite(betas, pi)
        return "finite"

    def single(beta: Any) -> str:
        assert beta.shape == (B, np.shape(a["X"])[-1])
        finite(beta)
        return "finite"

    args = (a["X"], a["y"], a["init"], a["pi"], a["sigma"])
    outcome(robustness, lambda: em_step(*args, estimate_pi=estimate_pi), pair)
    outcome(
        robustness,
        lambda: gradient_em_step(*args, T_inner=T_inner, alpha=alpha, estimate_pi=estimate_pi),
        pair,
    )
    beta = a["init"][:, 0] if isinstance(a["init"], torch.Tensor) and a["init"].dim() == 3 else None
    outcome(
        robustness,
        lambda: symmetric_gradient_em_step(
            a["X"], a["y"], beta, a["sigma"], T_inner=T_inner, alpha=alpha
        ),
        single,
    )


def test_a_diverging_step_is_a_parameter_error_naming_alpha() -> None:
    """The step contract: where gradient_em says ``diverged`` (keeping the last finite
    iterate), the single step raises ParameterError naming alpha, never returns NaN/inf."""
    X, y, init, sigma = VALID["X"], VALID["y"], VALID["init"], VALID["sigma"]
    res = gradient_em(X, y, init, sigma, T_outer=200, alpha=1e6)
    assert res.status == "diverged" and res.first_nonfinite is not None
    finite(res.betas)
    betas, pi = init, VALID["pi"]
    with pytest.raises(ParameterError, match=r"^alpha: the gradient-EM step \(alpha=1e\+06\)"):
        for _ in range(200):
            betas, pi = gradient_em_step(X, y, betas, pi, sigma, alpha=1e6)
    with pytest.raises(ParameterError, match="^alpha: the symmetric gradient-EM step"):
        beta = init[:, 0]
        for _ in range(200):
            beta = symmetric_gradient_em_step(X, y, beta, sigma, alpha=1e6)


def test_a_non_finite_em_step_is_a_parameter_error_naming_betas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The boundary refuses data whose Gram matrices would overflow, so a valid EM step is
    finite; the guard behind it is tested on an M-step made to return NaN for prompt 1."""
    import iclkit.constructions.algorithms as alg

    real = alg._m_step

    def broken(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        betas, pi = real(*args)
        betas = betas.clone()
        betas[1, 0, 0] = math.nan
        return betas, pi

    monkeypatch.setattr(alg, "_m_step", broken)
    with pytest.raises(ParameterError, match=r"^betas: the EM step .* 1 of 3 prompts \(prompt 1\)"):
        em_step(VALID["X"], VALID["y"], VALID["init"], None, VALID["sigma"])


def test_numpy_arrays_are_taken_as_tensors() -> None:
    res = em(*(np.asarray(VALID[k].numpy()) for k in ("X", "y", "init")), VALID["sigma"], T=2)
    assert res.betas.shape == (B, K, D)
