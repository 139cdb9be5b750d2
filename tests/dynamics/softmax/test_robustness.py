"""Robustness of :class:`SoftmaxConfig` + :func:`simulate_softmax` under generated, mixed valid
and invalid input.

Every call either returns a result with a documented status (finite losses and Z when the
status is ``ok``; DIVERGED for a step size past the stability limit), or raises ParameterError;
any other exception fails. Horizons are at most ~100 GD steps, so one call takes milliseconds;
sizes beyond the test's memory budget must be refused before allocating (``small_memory``).
``HYPOTHESIS_PROFILE=dev`` runs 400 examples per test; outcome counts go where
``ROBUSTNESS_REPORT`` says (see tests/conftest.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iclkit.dynamics.softmax import SoftmaxConfig, simulate_softmax
from iclkit.dynamics.status import Status
from iclkit.theory.features import FeatureConfig
from iclkit.theory.validation import ParameterError

_BASE = settings.default.max_examples
EXAMPLES = settings(max_examples=_BASE if _BASE < 100 else 2 * _BASE)
Record = Callable[[str], None]

pytestmark = pytest.mark.usefixtures("small_memory", "one_torch_thread")

JUNK = st.sampled_from([None, "abc", "3", True, [1], math.nan, math.inf, -math.inf, object()])


def ints(lo: int, hi: int, *, huge: bool = True) -> st.SearchStrategy[Any]:
    """Mostly valid ints in [lo, hi] (also numpy ints), and invalid ones; ``huge`` adds values
    far above ``hi`` that are valid by type but must be refused by the memory estimate."""
    bad = [lo - 1, -(2**70), 1.5, float(lo)] + ([10**6, 10**12, 2**70] if huge else [])
    return st.one_of(
        st.integers(lo, hi), st.integers(lo, hi).map(np.int64), st.sampled_from(bad), JUNK
    )


def reals(lo: float, hi: float) -> st.SearchStrategy[Any]:
    return st.one_of(st.floats(lo, hi), st.sampled_from([0.0, -1.0, 10**400]), JUNK)


FEATURES = st.fixed_dictionaries(
    {"K": ints(2, 4), "N": ints(1, 6)},
    optional={
        "d": st.one_of(st.none(), ints(1, 6)),
        "p_mode": st.sampled_from(["balanced", "imbalanced", "custom", "other"]),
        "p_dominant": st.one_of(st.none(), reals(0.3, 0.95)),
        "p": st.one_of(
            st.none(), st.just((0.5, 0.3, 0.2)), st.just((0.25, 0.25, 0.25, 0.25)),
            st.lists(st.floats(allow_nan=True), max_size=4).map(tuple), JUNK,
        ),
        "basis": st.sampled_from(["random", "standard", "other"]),
        "task_prior": st.sampled_from(["gaussian", "rademacher", 0]),
    },
)  # fmt: skip

#: Exactly one of ``steps`` / ``max_time`` (both, now and then: an error), each short.
HORIZON = st.one_of(
    st.fixed_dictionaries({"steps": ints(1, 40, huge=False)}),
    st.fixed_dictionaries({"steps": st.sampled_from([10**10, 2**70])}),
    st.fixed_dictionaries({"max_time": st.one_of(st.floats(0.1, 5.0), JUNK)}),
    st.just({"steps": 3, "max_time": 1.0}),
)

SOFTMAX_FIELDS = st.fixed_dictionaries(
    {"eta": st.one_of(st.floats(0.05, 20.0), st.sampled_from([1e3, 1e300, 0.0, -1.0]), JUNK)},
    optional={
        "method": st.sampled_from(["exact", "mean-field", "monte-carlo", "other", None]),
        "stop_loss": st.one_of(st.none(), reals(1e-4, 1.0)),
        "include_query_in_softmax": st.one_of(st.booleans(), JUNK),
        "init": st.sampled_from(["zero", "random", "ones"]),
        "init_scale": st.one_of(reals(0.0, 2.0), st.just(1e300)),
        "batch_size": ints(2, 32),
        "resample": st.one_of(st.booleans(), JUNK),
        "seed": ints(0, 2**63 - 1, huge=False),
        "record_resolution": ints(1, 100, huge=False),
        "store_Z": st.one_of(st.booleans(), JUNK),
        "tail_mass": st.one_of(st.sampled_from([0.0, 1e-12, 1e-7]), reals(0.0, 1e-6)),
        "max_terms": st.one_of(st.sampled_from([1, 100, 10**6]), ints(1, 10**7, huge=False)),
        "torch_threads": st.one_of(st.none(), st.sampled_from([1, 0, -1, 1.5, "2", 2**70])),
    },
)  # fmt: skip


def check_result(res: Any) -> str:
    """A SoftmaxResult: a documented status; finite records when the status is ok."""
    assert isinstance(res.status, Status)
    assert isinstance(res.message, str) and res.message
    K = res.config.features.K
    assert res.Z_final.shape == (K, K)
    assert res.loss.shape == res.steps.shape == res.time.shape
    if not res.status.ok:
        return f"status:{res.status.value}"
    for name in ("loss", "loss_per_type", "attention_target", "Z_final", "time"):
        values = getattr(res, name)
        assert np.all(np.isfinite(values)), (name, values)
    return "finite"


@EXAMPLES
@given(features=FEATURES, horizon=HORIZON, fields=SOFTMAX_FIELDS)
def test_softmax_config_and_simulation(
    features: dict[str, Any], horizon: dict[str, Any], fields: dict[str, Any], robustness: Record
) -> None:
    try:
        res = simulate_softmax(SoftmaxConfig(FeatureConfig(**features), **horizon, **fields))
    except ParameterError as exc:
        assert str(exc)
        robustness("ParameterError")
        return
    robustness(check_result(res))


@pytest.mark.parametrize(
    ("field", "value"),
    [("eta", math.nan), ("steps", 2.5), ("max_time", math.inf), ("stop_loss", "x"),
     ("seed", -1), ("init_scale", math.nan), ("batch_size", 1), ("record_resolution", None),
     ("store_Z", "no"), ("resample", 1), ("include_query_in_softmax", "yes")],
)  # fmt: skip
def test_bad_field_is_named(field: str, value: object) -> None:
    kwargs: dict[str, Any] = {field: value}
    if field != "max_time":
        kwargs.setdefault("steps", 3)
    with pytest.raises(ParameterError, match=field):
        SoftmaxConfig(FeatureConfig(K=3, N=4), **kwargs)


def test_simulate_softmax_refuses_a_non_config() -> None:
    with pytest.raises(ParameterError, match="config"):
        simulate_softmax("exact")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("N", "batch_size", "name"),
    [(10**12, 16, "N"), (10**6, 1024, "N"), (1000, 10**9, "batch_size")],
)
def test_oversized_monte_carlo_is_refused_by_its_memory_estimate(
    N: int, batch_size: int, name: str
) -> None:
    """Sizes the monte-carlo batch cannot hold are a ParameterError naming the larger size,
    before any allocation (not the allocator's error)."""
    with pytest.raises(ParameterError, match=f"^{name}: .* needs about"):
        SoftmaxConfig(FeatureConfig(K=2, N=N), steps=1, method="monte-carlo", batch_size=batch_size)


def test_prompt_length_beyond_the_int64_tables_is_refused() -> None:
    with pytest.raises(ParameterError, match="^N must be <="):
        SoftmaxConfig(FeatureConfig(K=2, N=2**70), steps=1)
