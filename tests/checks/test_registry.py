"""Check registry: registration, selection, skips (never PASS), failures, overrides, and the
runner :func:`iclkit.checks.run_checks`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from iclkit.checks import CheckConfig, run_checks
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

    @R.register("dummy.skipped", theorem="T3", mark="[2nd]")
    def _s(ctx: R.CheckContext) -> R.Outcome:
        """A check that cannot run here."""
        raise R.CheckSkipped("needs a GPU")

    @R.register("dummy.info", theorem="T4", mark="[RECON]")
    def _i(ctx: R.CheckContext) -> R.Outcome:
        return R.Outcome(True, 4, 4, "<= 4", info=True)

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
    run = run_checks(CheckConfig(only=("dummy",), out_dir=tmp_path, progress=False))
    res = {r.name: r for r in run.results}
    assert res["dummy.pass"].status == "PASS"
    assert res["dummy.fail"].status == "FAIL"
    # a check that cannot run is SKIPPED with the reason, never PASS
    assert res["dummy.skipped"].status == "SKIPPED"
    assert res["dummy.skipped"].details["reason"] == "needs a GPU"
    # a crash is a FAIL that keeps the error
    assert res["dummy.crash"].status == "FAIL" and "boom" in res["dummy.crash"].details["error"]
    # a reported property is INFO, never counted as a pass
    assert res["dummy.info"].status == "INFO"
    assert run.counts == {"PASS": 1, "FAIL": 2, "INFO": 1, "SKIPPED": 1} and run.failed
    assert run.json_path == tmp_path / "report.json" and run.md_path.exists()


def test_docstring_is_the_description(dummy_checks: None) -> None:
    (check,) = R.select_checks(["dummy.skipped"])
    assert check.description == "A check that cannot run here."


def test_groups_run_in_report_order() -> None:
    groups = [c.group for c in R.all_checks()]
    order = [g for g in R.GROUP_ORDER if g in groups]
    assert groups == sorted(groups, key=order.index)


def test_run_checks_restores_threads(dummy_checks: None, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    run_checks(CheckConfig(only=("dummy.pass",), out_dir=tmp_path, threads=2, progress=False))
    assert torch.get_num_threads() == before


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
        "mark",
        "status",
        "measured",
        "expected",
        "tolerance",
        "seconds",
        "details",
    ]
    assert d["mark"] == "[2nd]" and "mark" not in d["details"]
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
    for bad, name in (
        ({"mode": "medium"}, "^mode"),
        ({"seed": -1}, "^seed"),
        ({"threads": 0}, "^threads"),
    ):
        with pytest.raises(ParameterError, match=name):
            CheckConfig(**bad)  # type: ignore[arg-type]
