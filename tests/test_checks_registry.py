"""Check registry: registration, selection, capability skips (never PASS), failures, overrides."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iclkit.checks import registry as R
from iclkit.theory.validation import ParameterError


@pytest.fixture
def dummy_checks() -> Iterator[None]:
    """Register throw-away checks in a 'dummy' group and remove them afterwards."""
    before = dict(R._REGISTRY)

    @R.register("dummy.pass", theorem="T1", mark="[RECON]")
    def _p(ctx: R.CheckContext) -> R.Outcome:
        return R.Outcome(True, 1.0, 1.0, "exact", {"seed": ctx.seed, "mode": ctx.mode})

    @R.register("dummy.fail", theorem="T2", mark="[2nd]")
    def _f(ctx: R.CheckContext) -> R.Outcome:
        # fails unless the override says otherwise: fault injection through params
        ok = ctx.param("ok", False)
        return R.Outcome(ok, 2.0, 1.0, "== 1", {"nan": float("nan")})

    @R.register("dummy.missing", theorem="T3", mark="[2nd]", requires=("iclkit.no_such_module",))
    def _m(ctx: R.CheckContext) -> R.Outcome:  # pragma: no cover - never reached
        return R.Outcome(True, 0.0, 0.0, "-")

    @R.register("dummy.missing_attr", theorem="T4", mark="[2nd]")
    def _a(ctx: R.CheckContext) -> R.Outcome:
        R.require("iclkit.theory.bounds", "no_such_function")
        return R.Outcome(True, 0.0, 0.0, "-")  # pragma: no cover

    @R.register("dummy.crash", theorem="T5", mark="[2nd]")
    def _c(ctx: R.CheckContext) -> R.Outcome:
        raise RuntimeError("boom")

    yield
    R._REGISTRY.clear()
    R._REGISTRY.update(before)


def test_every_registered_check_is_well_formed() -> None:
    checks = R.all_checks()
    assert len(checks) >= 7
    names = [c.name for c in checks]
    assert len(names) == len(set(names))
    for c in checks:
        assert c.group in {"em", "construction", "lsa", "softmax", "generalization"}
        assert c.theorem and c.description
        # every check carries a provenance mark from the notes
        assert any(m in c.mark for m in ("READ", "2nd", "RECON", "MEASURED", "standard")), c.mark


def test_select_by_name_group_and_commas(dummy_checks: None) -> None:
    assert [c.name for c in R.select_checks(["dummy.pass"])] == ["dummy.pass"]
    group = [c.name for c in R.select_checks(["dummy"])]
    assert group[:2] == ["dummy.pass", "dummy.fail"] and len(group) == 5
    assert [c.name for c in R.select_checks(["dummy.fail,dummy.pass"])] == [
        "dummy.fail",
        "dummy.pass",
    ]
    with pytest.raises(ParameterError, match="^--only: no check or group named 'nope'"):
        R.select_checks(["nope"])


def test_statuses(dummy_checks: None, tmp_path: Path) -> None:
    res = {
        r.name: r
        for r in R.run_checks(R.select_checks(["dummy"]), out_dir=tmp_path, progress=False)
    }
    assert res["dummy.pass"].status == "PASS"
    assert res["dummy.fail"].status == "FAIL"
    # a missing capability is SKIPPED with the reason, never PASS
    assert res["dummy.missing"].status == "SKIPPED"
    assert "iclkit.no_such_module" in res["dummy.missing"].details["reason"]
    assert res["dummy.missing_attr"].status == "SKIPPED"
    assert "no_such_function" in res["dummy.missing_attr"].details["reason"]
    # a crash is a FAIL that keeps the error
    assert res["dummy.crash"].status == "FAIL" and "boom" in res["dummy.crash"].details["error"]


def test_overrides_and_seed_derivation(dummy_checks: None) -> None:
    assert R.run_check("dummy.fail", params={"ok": True}).status == "PASS"
    a = R.run_check("dummy.pass", seed=1).details["seed"]
    b = R.run_check("dummy.pass", seed=2).details["seed"]
    assert a != b and a == R.run_check("dummy.pass", seed=1).details["seed"]
    assert R.run_check("dummy.pass", mode="full").details["mode"] == "full"


def test_result_dict_has_report_fields(dummy_checks: None) -> None:
    d = R.run_check("dummy.fail").as_dict()
    assert list(d) == [
        "name",
        "theorem",
        "status",
        "measured",
        "expected",
        "tolerance",
        "seconds",
        "details",
    ]
    assert d["details"]["mark"] == "[2nd]"
    assert d["details"]["nan"] is None  # NaN is not valid JSON: written as null


def test_bad_arguments() -> None:
    with pytest.raises(ParameterError, match="^check: no check named"):
        R.run_check("em.nope")
    with pytest.raises(ParameterError, match="^mode"):
        R.run_check("em.loglik_monotone", mode="medium")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="^seed"):
        R.run_check("em.loglik_monotone", seed=-1)
    with pytest.raises(ParameterError, match="^name"):
        R.register("nogroup", theorem="x", mark="y")


def test_require_propagates_real_import_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a module that exists but is broken is an error (FAIL), not a missing capability (SKIPPED)
    (tmp_path / "broken_capability_mod.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError):
        R.require("broken_capability_mod")
    with pytest.raises(R.CheckSkipped):
        R.require("iclkit.no_such_module")
