"""Robustness of the public theory entry points under generated, mixed valid and invalid input.

Every call either returns a finite result of the documented shape or raises ParameterError;
any other exception (or a NaN/inf result) fails. ``HYPOTHESIS_PROFILE=dev`` runs 1,200 examples
per test; the outcome counts are written where ``ROBUSTNESS_REPORT`` says.
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

from iclkit.theory.bounds.lsa import lsa_fixed_point, lsa_mor_optimum
from iclkit.theory.bounds.mor import (
    generalization_bound,
    theorem_3_1_conditions,
    theorem_3_1_error_bound,
    theorem_3_1_layers,
    two_mixture_rates,
)
from iclkit.theory.features import FeatureConfig
from iclkit.theory.metrics import parameter_error
from iclkit.theory.mor import MoRConfig, PromptPool, fresh_batch, sample_mor
from iclkit.theory.rates import fit_rate
from iclkit.theory.rng import derive_seed, make_generator
from iclkit.theory.validation import ParameterError

_BASE = settings.default.max_examples
EXAMPLES = settings(max_examples=_BASE if _BASE < 100 else 6 * _BASE)
Record = Callable[[str], None]

# Sizes beyond the robustness suites' memory budget must be refused by the estimates
# (check_memory), never allocated: see the ``small_memory`` fixture in conftest.py.
pytestmark = pytest.mark.usefixtures("small_memory")


JUNK = st.sampled_from([None, "abc", "3", True, [1], math.nan, math.inf, -math.inf, object()])


def ints(lo: int, hi: int) -> st.SearchStrategy[Any]:
    """Mostly valid ints in [lo, hi], numpy ints, and invalid values (out of range, floats, junk)."""
    return st.one_of(
        st.integers(lo, hi),
        st.integers(lo, hi).map(np.int64),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        JUNK,
    )


def reals(lo: float, hi: float) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.floats(lo, hi),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(10**400), 10**400),
        JUNK,
    )


SEEDS = st.one_of(st.integers(0, 2**63 - 1), st.integers(0, 9).map(np.int64), ints(-5, 5))


def outcome(record: Record, call: Callable[[], Any], check: Callable[[Any], None]) -> None:
    """Run ``call``: a ParameterError or a result that passes ``check``; nothing else."""
    try:
        result = call()
    except ParameterError:
        record("ParameterError")
        return
    check(result)
    record("finite")


def finite(*values: Any) -> None:
    for v in values:
        arr = v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float64)
        assert np.all(np.isfinite(arr)), v


MOR_FIELDS = st.fixed_dictionaries(
    {"d": ints(1, 4)},
    optional={
        "K": ints(1, 3),
        "n": ints(1, 12),
        "snr": reals(0.1, 1e3),
        "sigma": reals(1e-3, 10.0),
        "pi": st.one_of(st.lists(st.floats(allow_nan=True), max_size=4), JUNK),
        "pi_mode": st.sampled_from(["fixed", "dirichlet", "x", None]),
        "dirichlet_alpha": reals(0.1, 10.0),
        "prior": st.sampled_from(["gaussian", "sphere", "cauchy", 3]),
        "prior_scale": reals(1e-3, 1e3),
        "symmetric": st.one_of(st.booleans(), JUNK),
        "Lambda": st.one_of(st.just("identity"), st.just([[2.0, 0.0], [0.0, 1.0]]), JUNK),
    },
)


@EXAMPLES
@given(fields=MOR_FIELDS, B=ints(1, 4), seed=SEEDS, f32=st.booleans())
def test_sample_mor(
    fields: dict[str, Any], B: Any, seed: Any, f32: bool, robustness: Record
) -> None:
    def call() -> Any:
        cfg = MoRConfig(**fields)
        dtype = torch.float32 if f32 else torch.float64
        return cfg, sample_mor(cfg, B, seed=seed, dtype=dtype)

    def check(res: Any) -> None:
        cfg, batch = res
        assert batch.X.shape == (int(B), cfg.n + 1, cfg.d)
        finite(batch.X, batch.y, batch.betas, batch.pi, batch.sigma)

    outcome(robustness, call, check)


@EXAMPLES
@given(seed=SEEDS, step=ints(0, 100), B=ints(1, 3))
def test_seeded_streams(seed: Any, step: Any, B: Any, robustness: Record) -> None:
    cfg = MoRConfig(d=2, n=4)
    outcome(robustness, lambda: make_generator(seed), lambda g: None)
    outcome(robustness, lambda: derive_seed(seed, "k", 1), lambda s: None)
    outcome(robustness, lambda: fresh_batch(cfg, B, seed=seed, step=step), lambda b: finite(b.X))
    pool = PromptPool.draw(cfg, 3, seed=0)
    outcome(robustness, lambda: pool.minibatch(B, seed=seed, step=step), lambda b: finite(b.X))


@EXAMPLES
@given(
    n=ints(1, 10**6), d=ints(1, 100), K=ints(1, 5), delta=reals(1e-6, 0.1),
    pi=st.one_of(st.just([0.5, 0.5]), st.lists(st.floats(allow_nan=True), max_size=3), JUNK),
    snr=reals(0.1, 1e3), C=reals(0.1, 10.0), T=ints(1, 50),
)  # fmt: skip
def test_mor_bounds(
    n: Any, d: Any, K: Any, delta: Any, pi: Any, snr: Any, C: Any, T: Any, robustness: Record
) -> None:
    outcome(
        robustness,
        lambda: theorem_3_1_conditions(n, d, K, delta, pi, snr, C=C),
        lambda r: finite([c.lhs for c in r.conditions], [c.rhs for c in r.conditions]),
    )
    outcome(
        robustness,
        lambda: theorem_3_1_error_bound(n, d, K, delta, pi, C=C),
        lambda r: finite(r.rate),
    )
    outcome(robustness, lambda: theorem_3_1_layers(n, d, T, C=C), lambda r: finite(r.value))
    outcome(
        robustness,
        lambda: two_mixture_rates(n, d, snr, C=C),
        lambda r: finite(r.error.rate, r.iterations.value, r.layers.value),
    )


@EXAMPLES
@given(
    L=ints(1, 100), B=ints(1, 10**6), D=ints(1, 100), B_y=reals(0.1, 1e3), xi=reals(0.001, 0.5),
    scale=st.sampled_from([1e-300, 1e-3, 1.0, 1e3, 1e150, 1e300, math.nan, math.inf]),
    sigma=reals(0.0, 10.0), N=ints(1, 50),
)  # fmt: skip
def test_generalization_and_lsa_bounds(
    L: Any, B: Any, D: Any, B_y: Any, xi: Any, scale: float, sigma: Any, N: Any, robustness: Record
) -> None:
    outcome(
        robustness,
        lambda: generalization_bound(L, B, D=D, B_y=B_y, xi=xi),
        lambda r: finite(r.rate),
    )
    with np.errstate(invalid="ignore"):  # scale may be inf or nan: 0 * inf in the zeros
        lam = np.diag([1.0, 2.0]) * scale
        scaled = np.eye(2) * scale
    outcome(robustness, lambda: lsa_fixed_point(lam, N), lambda r: finite(r.G_star, r.loss_star))
    outcome(
        robustness,
        lambda: lsa_mor_optimum(np.eye(2), scaled, scaled, sigma, N),
        lambda r: finite(r.G_star, r.loss_star),
    )


@EXAMPLES
@given(K=ints(2, 6), N=ints(1, 20), d=st.one_of(st.none(), ints(1, 8)))
def test_feature_config(K: Any, N: Any, d: Any, robustness: Record) -> None:
    outcome(robustness, lambda: FeatureConfig(K=K, N=N, d=d), lambda c: finite(c.probabilities))


@EXAMPLES
@given(
    xs=st.one_of(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=6), JUNK),
    scale=st.sampled_from([1e-300, 1.0, 1e300, -1.0, 0.0, math.nan]),
    seed=SEEDS,
)  # fmt: skip
def test_fit_rate_and_metrics(xs: Any, scale: float, seed: Any, robustness: Record) -> None:
    errors = None if not isinstance(xs, list) else [scale * (1.0 + i) for i in range(len(xs))]
    outcome(
        robustness, lambda: fit_rate(xs, errors, seed=seed, n_boot=100), lambda r: finite(r.slope)
    )
    est = torch.ones(2, 2, 3) * scale
    outcome(robustness, lambda: parameter_error(est, torch.ones(2, 2, 3)), lambda r: finite(r))


@pytest.mark.parametrize("junk", [None, "abc", 1.5, True])
def test_junk_configs_are_parameter_errors(junk: object) -> None:
    with pytest.raises(ParameterError):
        MoRConfig(d=junk)  # type: ignore[arg-type]
