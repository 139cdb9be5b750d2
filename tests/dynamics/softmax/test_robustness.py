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


#: Invalid values of every kind: wrong type, out of range, non-finite, overflowing; ``HUGE``
#: are valid by type but must be refused by the memory estimates or the size bounds.
BAD_INTS = st.one_of(st.sampled_from([0, -1, -(2**70), 1.5, 10**400]), JUNK)
HUGE = st.sampled_from([10**6, 10**12, 2**70])
BAD_REALS = st.one_of(st.sampled_from([0.0, -1.0, -1e300, 10**400]), JUNK)

#: Valid values of each feature-model field.
FEATURES_VALID = {
    "K": st.one_of(st.integers(2, 4), st.integers(2, 4).map(np.int64)),
    "N": st.integers(1, 6),
    "d": st.one_of(st.none(), st.integers(4, 6)),
    "p_mode": st.just("balanced"),
    "basis": st.sampled_from(["random", "standard"]),
    "task_prior": st.sampled_from(["gaussian", "rademacher"]),
}
FEATURES_INVALID = {
    "K": st.one_of(BAD_INTS, HUGE),
    "N": st.one_of(BAD_INTS, HUGE),
    "d": st.one_of(BAD_INTS.filter(lambda v: v is not None), st.just(1)),  # d < K
    "p_mode": st.sampled_from(["imbalanced", "custom", "other"]),  # the first two lack p
    "basis": st.sampled_from(["other", 0]),
    "task_prior": st.sampled_from(["uniform", 0]),
}

#: Valid values of each GD field: at most ~100 steps (max_time / eta).
SOFTMAX_VALID = {
    "eta": st.one_of(st.floats(0.05, 20.0), st.sampled_from([1e3, 1e300])),  # large: diverges
    "method": st.sampled_from(["exact", "mean-field", "monte-carlo"]),
    "stop_loss": st.one_of(st.none(), st.floats(1e-4, 1.0)),
    "include_query_in_softmax": st.booleans(),
    "init": st.sampled_from(["zero", "random"]),
    "init_scale": st.one_of(st.floats(0.0, 2.0), st.just(1e300)),
    "batch_size": st.integers(2, 32),
    "resample": st.booleans(),
    "seed": st.integers(0, 2**63 - 1),
    "record_resolution": st.integers(1, 100),
    "store_Z": st.booleans(),
    "tail_mass": st.sampled_from([0.0, 1e-12, 1e-7]),
    "max_terms": st.sampled_from([1, 100, 10**6]),  # 1: the exact sums are refused
    "torch_threads": st.sampled_from([None, 1, 2]),
}
SOFTMAX_INVALID = {
    "eta": BAD_REALS,
    "method": st.sampled_from(["other", None]),
    "stop_loss": BAD_REALS.filter(lambda v: v is not None),
    "include_query_in_softmax": JUNK,
    "init": st.sampled_from(["ones", None]),
    "init_scale": BAD_REALS.filter(lambda v: v != 0.0),
    "batch_size": st.one_of(BAD_INTS, st.just(1), st.just(10**9)),
    "resample": JUNK,
    "seed": BAD_INTS.filter(lambda v: v != 0),
    "record_resolution": BAD_INTS,
    "store_Z": JUNK,
    "tail_mass": st.one_of(st.just(1e-3), BAD_REALS.filter(lambda v: v != 0.0)),
    "max_terms": BAD_INTS,
    "torch_threads": st.sampled_from([0, -1, 1.5, "2", 2**70]),
}

#: Exactly one of ``steps`` / ``max_time``, each short; or an invalid horizon.
HORIZON_VALID = st.one_of(
    st.fixed_dictionaries({"steps": st.integers(1, 40)}),
    st.fixed_dictionaries({"max_time": st.floats(0.1, 5.0)}),
)
HORIZON_INVALID = st.one_of(
    st.fixed_dictionaries({"steps": st.one_of(BAD_INTS, st.sampled_from([10**10, 2**70]))}),
    st.fixed_dictionaries({"max_time": BAD_REALS}),
    st.just({"steps": 3, "max_time": 1.0}),
)


@st.composite
def softmax_fields(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(feature fields, GD fields incl. the horizon): valid values (the optional ones now and
    then) and at most one field made invalid; about a quarter of the examples are entirely
    valid, so that the simulators themselves are exercised."""
    features = {
        k: draw(v) for k, v in FEATURES_VALID.items() if k in ("K", "N") or draw(st.booleans())
    }
    fields = {k: draw(v) for k, v in SOFTMAX_VALID.items() if draw(st.booleans())}
    names = [*FEATURES_INVALID, *SOFTMAX_INVALID, "horizon"]
    broken = draw(st.sampled_from([None] * (len(names) // 3) + names))
    fields |= draw(HORIZON_INVALID if broken == "horizon" else HORIZON_VALID)
    if broken in FEATURES_INVALID:
        features[broken] = draw(FEATURES_INVALID[broken])
    elif broken in SOFTMAX_INVALID:
        fields[broken] = draw(SOFTMAX_INVALID[broken])
    return features, fields


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
@given(drawn=softmax_fields())
def test_softmax_config_and_simulation(
    drawn: tuple[dict[str, Any], dict[str, Any]], robustness: Record
) -> None:
    features, fields = drawn
    try:
        res = simulate_softmax(SoftmaxConfig(FeatureConfig(**features), **fields))
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
