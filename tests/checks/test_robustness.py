"""Robustness of :class:`CheckConfig` + :func:`run_checks` under generated, mixed valid and
invalid input.

The checks run are two throw-away ones registered for the test (a pass and a failure, each
instant): what is exercised is the config and the runner, not the theorems. Every call either
returns a :class:`CheckRun` with one row per selected check and the report files written, or
raises ParameterError (a bad folder before any check ran); any other exception fails.
``HYPOTHESIS_PROFILE=dev`` runs 400 examples; outcome counts go where ``ROBUSTNESS_REPORT``
says (see tests/conftest.py).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iclkit.checks import CheckConfig, run_checks
from iclkit.checks import registry as R
from iclkit.theory.validation import ParameterError

_BASE = settings.default.max_examples
EXAMPLES = settings(max_examples=_BASE if _BASE < 100 else 2 * _BASE)
Record = Callable[[str], None]

JUNK = st.sampled_from([None, "abc", True, 1.5, math.nan, -1, 2**70, object(), b"x"])


@pytest.fixture(scope="module")
def probe_checks() -> Iterator[None]:
    """Register two instant checks in a 'probe' group; remove them afterwards."""
    before = dict(R._REGISTRY)

    @R.register("probe.pass", theorem="T1", mark="[RECON]")
    def _p(ctx: R.CheckContext) -> R.Outcome:
        return R.Outcome(True, 1.0, 1.0, "exact", {"seed": ctx.seed})

    @R.register("probe.fail", theorem="T2", mark="[RECON]")
    def _f(ctx: R.CheckContext) -> R.Outcome:
        return R.Outcome(bool(ctx.param("ok", False)), 2.0, 1.0, "== 1")

    yield
    R._REGISTRY.clear()
    R._REGISTRY.update(before)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "a_file").write_text("not a folder")
        yield root


#: Output folders: valid (fresh, existing) and invalid (a file, under a file, empty, not a
#: path, a name too long).
OUT_VALID = st.sampled_from(["new", "existing"])
OUT_INVALID = st.sampled_from(["a_file", "a_file/sub", "", None, 3, "x" * 300])

CHECK_VALID = {
    "seed": st.integers(0, 2**63 - 1),
    "only": st.sampled_from([("probe",), ("probe.pass",), "probe.fail,probe.pass"]),
    "threads": st.integers(1, 2),
    "progress": st.booleans(),
    "params": st.sampled_from([{}, {"probe.fail": {"ok": True}}]),
}
CHECK_INVALID = {
    "mode": st.sampled_from(["medium", None]),
    "seed": JUNK,
    "only": st.one_of(st.sampled_from([("nope",), (3,)]), JUNK.filter(lambda v: v != "abc")),
    "threads": st.one_of(st.sampled_from([0, -1, 2.5]), JUNK.filter(lambda v: v is not True)),
    "progress": JUNK.filter(lambda v: v is not True),
    "params": st.one_of(st.just({"probe.fail": 1}), JUNK),
    "out_dir": OUT_INVALID,
}


@st.composite
def check_fields(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    """(fields, out_dir kind): valid values and at most one field made invalid; a quarter of
    the examples are entirely valid, so that the runner itself is exercised."""
    fields = {k: draw(v) for k, v in CHECK_VALID.items() if draw(st.booleans())}
    broken = draw(st.sampled_from([None, None, *CHECK_INVALID]))
    out = draw(OUT_INVALID if broken == "out_dir" else OUT_VALID)
    if broken is not None and broken != "out_dir":
        fields[broken] = draw(CHECK_INVALID[broken])
    return fields, out


@EXAMPLES
@given(drawn=check_fields())
def test_check_config_and_run(
    drawn: tuple[dict[str, Any], Any], probe_checks: None, scratch: Path, robustness: Record
) -> None:
    fields, out = drawn
    fields = {"mode": "quick", "only": ("probe",), **fields}
    out_dir: Any = out if not isinstance(out, str) or not out else str(scratch / out)
    if out == "existing":
        Path(out_dir).mkdir(exist_ok=True)

    def call() -> Any:
        return run_checks(CheckConfig(out_dir=out_dir, **fields))

    try:
        run = call()
    except ParameterError as exc:
        assert str(exc)
        robustness("ParameterError")
        return
    assert len(run.results) == sum(run.counts.values()) >= 1
    assert run.json_path.is_file() and run.md_path.is_file()
    robustness("finite" if not run.failed else "status:FAIL")


@pytest.mark.parametrize(
    ("field", "value"),
    [("progress", "no"), ("only", 3), ("out_dir", ""), ("params", {"em": 1}), ("seed", 1.0)],
)
def test_bad_field_is_named(field: str, value: object) -> None:
    with pytest.raises(ParameterError, match=f"^{field}"):
        CheckConfig(**{field: value})  # type: ignore[arg-type]


def test_a_file_as_out_dir_fails_before_any_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``out_dir`` naming a file is refused by run_checks before the first check runs, in well
    under a second (the CLI checks the folder up front too), never after the checks."""
    ran: list[str] = []
    monkeypatch.setattr("iclkit.checks.suite.run_check", lambda *a, **k: ran.append("ran"))
    target = tmp_path / "README.md"
    target.write_text("x")
    t0 = time.perf_counter()
    with pytest.raises(ParameterError, match="^out_dir: .* is a file"):
        run_checks(CheckConfig(only=("em",), out_dir=target, progress=False))
    assert time.perf_counter() - t0 < 1.0 and ran == []


def test_an_unwritable_out_dir_fails_before_any_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    monkeypatch.setattr("iclkit.checks.suite.run_check", lambda *a, **k: ran.append("ran"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ParameterError, match="^out_dir: cannot create"):
        run_checks(CheckConfig(only=("em",), out_dir=blocker / "sub", progress=False))
    assert ran == []
