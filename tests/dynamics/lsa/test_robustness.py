"""Robustness of :class:`LSAConfig` + :func:`simulate_lsa` under generated, mixed valid and
invalid input.

Every call either returns a result whose status is one of the documented ones (finite flow
state and loss when the status is ``ok``; DIVERGED / FAILED say why the state is not usable),
or raises ParameterError; any other exception fails. The horizons are short (``t_max`` <= 2)
and the random init's full flow runs with RK45 at rtol 1e-6 (the implicit solvers at the
default tolerances take a minute on it), so that one call takes < 1 s.
``HYPOTHESIS_PROFILE=dev`` runs 400 examples per test;
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


#: Invalid values of every kind: wrong type, out of range, non-finite, overflowing.
BAD_INTS = st.one_of(st.sampled_from([0, -1, -(2**70), 2**70, 1.5, 10**400]), JUNK)
BAD_REALS = st.one_of(st.sampled_from([0.0, -1.0, -1e300, 10**400]), JUNK)

#: Valid values of each field (a short horizon: t_max <= 2).
VALID = {
    "d": st.one_of(st.integers(1, 3), st.integers(1, 3).map(np.int64), st.just(2.0)),
    "n": st.integers(1, 8),
    "t_max": st.floats(0.01, 2.0),
    "data": st.sampled_from(["linear", "mor"]),
    "K": st.integers(1, 3),
    "pi": st.sampled_from([(0.5, 0.5), (0.2, 0.3, 0.5), None]),
    "symmetric": st.booleans(),
    "prior": st.sampled_from(["gaussian", "sphere"]),
    "prior_scale": st.floats(0.1, 5.0),
    "sigma": st.one_of(st.none(), st.floats(0.05, 3.0)),
    "lambda_spectrum": st.one_of(
        st.none(), st.lists(st.floats(0.2, 5.0), min_size=1, max_size=3).map(tuple)
    ),
    "lambda_rotation_seed": st.one_of(st.none(), st.integers(0, 9)),
    "init": st.sampled_from(["structured"] * 3 + ["random"]),
    "init_scale": st.one_of(st.none(), st.floats(0.05, 3.0)),
    "seed": st.one_of(st.integers(0, 2**63 - 1), st.integers(0, 9).map(np.int64)),
    "flow": st.sampled_from([None, "eigen", "reduced", "full"]),
    "method": st.sampled_from(["LSODA", "RK45", "Radau"]),
    "rtol": st.sampled_from([1e-6, 1e-9]),
    "atol": st.sampled_from([1e-8, 1e-12]),
    "gradient_tol": st.sampled_from([1e-8, 1e-13]),
}

#: Invalid values of each field.
INVALID = {
    "d": st.one_of(BAD_INTS, st.just(2**40)),  # 2**40: valid type, refused by the memory estimate
    "n": BAD_INTS,
    "t_max": BAD_REALS,
    "data": st.sampled_from(["x", None, 3]),
    "K": BAD_INTS,
    "pi": st.one_of(st.lists(st.floats(allow_nan=True), max_size=3).map(tuple), JUNK),
    "symmetric": JUNK,
    "prior": st.sampled_from(["cauchy", 3, None]),
    "prior_scale": BAD_REALS,
    "sigma": BAD_REALS.filter(lambda v: v != 0.0 and v is not None),
    "lambda_spectrum": st.one_of(
        st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3).map(tuple), JUNK
    ),
    "lambda_rotation_seed": BAD_INTS.filter(lambda v: v is not None),
    "init": st.sampled_from(["zero", 1, None]),
    "init_scale": BAD_REALS.filter(lambda v: v is not None),
    "seed": BAD_INTS.filter(lambda v: v != 0),
    "flow": st.sampled_from(["other", 1]),
    "method": st.sampled_from(["euler", None]),
    "rtol": BAD_REALS,
    "atol": BAD_REALS,
    "gradient_tol": BAD_REALS,
}
REQUIRED = ("d", "n", "t_max")


@st.composite
def lsa_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Valid fields (the optional ones now and then), and at most one field made invalid: a
    quarter of the examples are entirely valid, so that the simulation itself is exercised."""
    fields = {k: draw(v) for k, v in VALID.items() if k in REQUIRED or draw(st.booleans())}
    if fields.get("init") == "random":  # the full flow (2 (d+1)^2 states): keep it cheap
        fields.update(method="RK45", rtol=1e-6, atol=1e-8)
    broken = draw(st.sampled_from([None] * (len(INVALID) // 3) + list(INVALID)))
    if broken is not None:
        fields[broken] = draw(INVALID[broken])
    return fields


LSA_FIELDS = lsa_fields()


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
