"""`iclkit check` end to end: cheap checks, report files, --list, exit codes, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from iclkit.checks import registry as R
from iclkit.cli import main

CHEAP = "em.gradient_em_to_em,em.loglik_monotone"


def test_check_quick_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep"
    rc = main(
        ["check", "--quick", "--only", CHEAP, "--out", str(out), "--seed", "3", "--no-progress"]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert (
        "em.gradient_em_to_em" in text and "PASS" in text and "2 passed, 0 failed, 0 info" in text
    )
    data = json.loads((out / "report.json").read_text())
    assert data["mode"] == "quick" and data["seed"] == 3
    assert [c["name"] for c in data["checks"]] == CHEAP.split(",")
    assert all(c["status"] == "PASS" for c in data["checks"])
    assert (out / "report.md").read_text().startswith("# iclkit check report")


def test_check_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list"]) == 0
    text = capsys.readouterr().out
    assert "em.rate_n_high_snr" in text
    # each check is followed by its description (the check function's docstring)
    assert "known-labels least squares" in text


def test_check_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == [c.name for c in R.all_checks()]
    for r in rows:
        assert {"name", "theorem", "mark", "group"} <= set(r) and r["mark"]
        assert r["name"].startswith(r["group"] + ".")


def test_table_has_mark_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["check", "--only", "em.gradient_em_to_em", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header[:3] == ["check", "theorem", "mark"]


@pytest.fixture
def failing_check() -> Iterator[None]:
    before = dict(R._REGISTRY)

    @R.register("dummy.fail", theorem="T", mark="[RECON]")
    def _f(ctx: R.CheckContext) -> R.Outcome:
        return R.Outcome(False, 2.0, 1.0, "== 1")

    yield
    R._REGISTRY.clear()
    R._REGISTRY.update(before)


def test_failing_check_exits_1(
    failing_check: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--only", "dummy.fail", "--out", str(tmp_path), "--no-progress"]) == 1
    assert "1 failed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["--only", "nope"], "--only"),
        (["--seed", "-1"], "seed"),
        (["--threads", "0"], "threads"),
    ],
)
def test_bad_input_exit_2(
    argv: list[str], name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert name in err and "Traceback" not in err


def test_quick_and_full_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "--quick", "--full"])
    assert exc.value.code == 2
