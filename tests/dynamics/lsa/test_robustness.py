"""Robustness of :class:`LSAConfig` + :func:`simulate_lsa` under generated, mixed valid and
invalid input.

Every call either returns a result whose status is one of the documented ones (finite flow
state and loss when the status is ``ok``; DIVERGED / FAILED say why the state is not usable),
or raises ParameterError; any other exception fails. The horizons are short (``t_max`` <= 2)
so that one call takes milliseconds. ``HYPOTHESIS_PROFILE=dev`` runs 400 examples per test;
outcome counts go where ``ROBUSTNESS_REPORT`` says (see tests/conftest.py).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iclkit.dynamics.lsa import LSAConfig, simulate_lsa
from iclkit.dynamics.status import Status
from iclkit.theory.validation import ParameterError

_BASE = settings.default.max_examples
EXAMPLES = settings(max_examples=_BASE if _BASE < 100 else 2 * _BASE)
Record = Callable[[str], None]

pytestmark = pytest.mark.usefixtures("small_memory", "one_torch_thread")

JUNK = st.sampled_from([None, "abc", "3", True, [1], math.nan, math.inf, -math.inf, object()])


def ints(lo: int, hi: int) -> st.SearchStrategy[Any]:
    """Mostly valid ints in [lo, hi] (also numpy ints), and invalid values."""
    return st.one_of(
        st.integers(lo, hi),
        st.integers(lo, hi).map(np.int64),
        st.sampled_from([lo - 1, -(2**70), 2**70, 1.5, float(lo)]),
        JUNK,
    )


def reals(lo: float, hi: float) -> st.SearchStrategy[Any]:
    """Mostly valid floats in [lo, hi], and invalid ones (out of range, non-finite, junk)."""
    return st.one_of(
        st.floats(lo, hi),
        st.sampled_from([0.0, -1.0, -1e300, 10**400]),
        JUNK,
    )


SPECTRA = st.one_of(
    st.none(),
    st.lists(st.floats(0.2, 5.0), min_size=1, max_size=3).map(tuple),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3).map(tuple),
    JUNK,
)

LSA_FIELDS = st.fixed_dictionaries(
    {"d": ints(1, 3), "n": ints(1, 8), "t_max": reals(0.01, 2.0)},
    optional={
        "data": st.sampled_from(["linear", "mor", "mor", "x", None]),
        "K": ints(1, 3),
        "pi": st.one_of(
            st.just((0.5, 0.5)), st.just((0.2, 0.3, 0.5)),
            st.lists(st.floats(allow_nan=True), max_size=3).map(tuple), JUNK,
        ),
        "symmetric": st.one_of(st.booleans(), JUNK),
        "prior": st.sampled_from(["gaussian", "sphere", "cauchy", 3]),
        "prior_scale": reals(0.1, 5.0),
        "sigma": st.one_of(st.none(), reals(0.0, 3.0)),
        "lambda_spectrum": SPECTRA,
        "lambda_rotation_seed": st.one_of(st.none(), ints(0, 9)),
        "init": st.sampled_from(["structured", "random", "zero", 1]),
        "init_scale": st.one_of(st.none(), reals(0.05, 3.0)),
        "seed": ints(0, 2**63 - 1),
        "flow": st.sampled_from([None, "eigen", "reduced", "full", "other"]),
        "method": st.sampled_from(["LSODA", "RK45", "Radau", "euler", None]),
        "rtol": st.one_of(st.sampled_from([1e-6, 1e-9]), reals(1e-10, 1e-3)),
        "atol": st.one_of(st.sampled_from([1e-8, 1e-12]), reals(1e-14, 1e-6)),
        "gradient_tol": st.one_of(st.sampled_from([1e-8, 1e-13]), reals(1e-14, 1e-3)),
    },
)  # fmt: skip


def check_result(res: Any) -> str:
    """An LSAResult: a documented status; finite state and loss when the status is ok."""
    assert isinstance(res.status, Status)
    assert isinstance(res.message, str) and res.message
    sim = res.simulation
    d = res.config.d
    assert sim.G_final.shape == (d, d)
    if not res.status.ok:
        return f"status:{res.status.value}"
    assert np.all(np.isfinite(sim.G_final)), sim.G_final
    assert np.all(np.isfinite(sim.loss)), sim.loss
    assert np.all(np.isfinite(sim.final_state))
    assert math.isfinite(res.rel_error), res.rel_error
    return "finite"


@EXAMPLES
@given(fields=LSA_FIELDS)
def test_lsa_config_and_simulation(fields: dict[str, Any], robustness: Record) -> None:
    def call() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the init-condition warning is a documented outcome
            return simulate_lsa(LSAConfig(**fields))

    try:
        res = call()
    except ParameterError as exc:
        assert str(exc)
        robustness("ParameterError")
        return
    robustness(check_result(res))


@pytest.mark.parametrize(
    ("field", "value"),
    [("d", None), ("n", 1.5), ("t_max", math.nan), ("rtol", "1e-6"), ("seed", True),
     ("init_scale", math.inf), ("lambda_spectrum", ("a",)), ("sigma", -1.0)],
)  # fmt: skip
def test_bad_field_is_named(field: str, value: object) -> None:
    kwargs: dict[str, Any] = {"d": 2, "n": 4, "t_max": 1.0, field: value}
    with pytest.raises(ParameterError, match=field):
        LSAConfig(**kwargs)


def test_simulate_lsa_refuses_a_non_config() -> None:
    with pytest.raises(ParameterError, match="config"):
        simulate_lsa({"d": 2, "n": 4})  # type: ignore[arg-type]
